//! Errors of the event store.

use foundation_core::{BoxError, Classify, ErrorKind};

use crate::envelope::{EventId, ExpectedVersion, StreamId};
use crate::lang::ParseError;
use crate::schema::SchemaViolation;

/// An event envelope that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event {id} at batch index {index}: {field}: {reason}")]
pub struct InvalidEvent {
    /// Index of the event in its batch.
    pub index: usize,
    /// The event's id.
    pub id: EventId,
    /// The envelope field at fault.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Everything that can go wrong in an [`EventStore`](crate::EventStore).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream was not at the expected version: someone else appended first.
    #[error(
        "wrong expected version for stream `{stream}`: expected {expected}, actual version {actual}"
    )]
    WrongExpectedVersion {
        /// The stream.
        stream: StreamId,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's version (0 = no stream).
        actual: u64,
    },
    /// Some events of the batch are already stored (with another stream or
    /// type, or only part of the batch): not a clean idempotent retry.
    #[error(
        "event {id} is already stored and the batch is not an exact retry of an earlier append"
    )]
    DuplicateEvent {
        /// The first offending id.
        id: EventId,
    },
    /// An envelope failed validation.
    #[error(transparent)]
    InvalidEvent(#[from] InvalidEvent),
    /// An event's data does not match its registered JSON Schema.
    #[error(transparent)]
    Schema(#[from] SchemaViolation),
    /// The stream name is invalid.
    #[error("invalid stream id `{stream}`: {reason}")]
    InvalidStream {
        /// The rejected name.
        stream: String,
        /// What is wrong.
        reason: String,
    },
    /// The batch is empty or too large.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// A query could not be parsed.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A query is well-formed but cannot run (e.g. a limit of 0).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// Serializing a typed event failed.
    #[error("cannot encode event of type `{event_type}`: {reason}")]
    Encode {
        /// The event type.
        event_type: String,
        /// Serde's message.
        reason: String,
    },
    /// Decoding a stored event into a typed event (or upcasting it) failed.
    #[error("cannot decode event {id} of type `{event_type}`: {reason}")]
    Decode {
        /// The event.
        id: EventId,
        /// Its type.
        event_type: String,
        /// What went wrong.
        reason: String,
    },
    /// A stored row could not be read back (corrupt or written by an incompatible version).
    #[error("corrupt stored event at position {position}: {reason}")]
    Corrupt {
        /// Its position.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// Invalid store configuration.
    #[error(transparent)]
    Config(#[from] foundation_core::ValidationErrors),
    /// The database failed.
    #[error("event store backend failed: {message}")]
    Backend {
        /// What the caller should do.
        kind: ErrorKind,
        /// Short description.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            // A lost race: re-read the stream, decide again, append again.
            Self::WrongExpectedVersion { .. } => ErrorKind::Transient,
            Self::DuplicateEvent { .. }
            | Self::InvalidEvent(_)
            | Self::Schema(_)
            | Self::InvalidStream { .. }
            | Self::InvalidBatch(_)
            | Self::Parse(_)
            | Self::InvalidQuery(_)
            | Self::Encode { .. }
            | Self::Config(_) => ErrorKind::InvalidInput,
            Self::Decode { .. } | Self::Corrupt { .. } => ErrorKind::Permanent,
            Self::Backend { kind, .. } => *kind,
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        let kind = match &e {
            sqlx::Error::Io(io) => foundation_core::error::classify(io),
            sqlx::Error::PoolTimedOut => ErrorKind::Overloaded,
            sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => ErrorKind::Unavailable,
            sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => ErrorKind::Transient,
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // PostgreSQL: serialization failure, deadlock, too many connections,
                // admin shutdown; SQLite: BUSY (5), LOCKED (6).
                Some("40001" | "40P01" | "53300" | "57P01" | "5" | "6" | "517" | "261") => {
                    ErrorKind::Transient
                }
                _ => ErrorKind::Permanent,
            },
            _ => ErrorKind::Permanent,
        };
        let kind = if kind == ErrorKind::Unclassified {
            ErrorKind::Transient
        } else {
            kind
        };
        Self::Backend {
            kind,
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_kinds_sensible() {
        let e = Error::WrongExpectedVersion {
            stream: StreamId::new("s").unwrap(),
            expected: ExpectedVersion::NoStream,
            actual: 3,
        };
        assert_eq!(
            e.to_string(),
            "wrong expected version for stream `s`: expected no stream, actual version 3"
        );
        assert!(e.kind().is_retryable());
        assert_eq!(
            Error::InvalidBatch("empty".into()).kind(),
            ErrorKind::InvalidInput
        );
    }
}
