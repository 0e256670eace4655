//! Errors of the limiter.

use std::sync::Arc;
use std::time::Duration;

use foundation_core::{Classify, ErrorKind, ValidationErrors};

/// Why a charge was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcquireError {
    /// A dimension has no room now; it will after `retry_after`.
    #[error("rate limited on {dimension}: retry after {retry_after:?}")]
    RateLimited {
        /// The dimension that denied (the first one found short).
        dimension: Arc<str>,
        /// The earliest time from now the same charge could be admitted, all
        /// else staying equal.
        retry_after: Duration,
    },
    /// All concurrency slots are taken.
    #[error("concurrency limit of {limit} reached")]
    ConcurrencyLimited {
        /// The configured limit.
        limit: u32,
    },
    /// `try_acquire` found waiters queued ahead; admitting would jump the FIFO queue.
    #[error("{waiters} waiters are queued ahead")]
    Queued {
        /// How many waiters were queued.
        waiters: usize,
    },
    /// The charge is larger than a dimension's burst, so it can never be admitted.
    #[error(
        "charge of {cost} on {dimension} exceeds its burst of {burst} and can never be admitted"
    )]
    ExceedsBurst {
        /// The dimension.
        dimension: Arc<str>,
        /// The charged amount.
        cost: u64,
        /// The dimension's burst.
        burst: u64,
    },
    /// The wait queue is at its bound (count or queued cost).
    #[error("wait queue is full ({reason})")]
    QueueFull {
        /// Which bound was hit.
        reason: String,
    },
    /// The predicted wait exceeds the caller's deadline; failed without waiting.
    #[error("predicted wait of {predicted:?} exceeds the deadline of {deadline:?}")]
    WouldExceedDeadline {
        /// The predicted wait (FIFO position and current state).
        predicted: Duration,
        /// The caller's deadline.
        deadline: Duration,
    },
    /// The deadline passed while waiting (e.g. concurrency slots stayed taken).
    #[error("deadline of {deadline:?} passed while waiting")]
    DeadlineElapsed {
        /// The caller's deadline.
        deadline: Duration,
    },
    /// A keyed limiter holds its most keys and none is idle.
    #[error("keyed limiter is full ({max_keys} keys, none idle)")]
    TooManyKeys {
        /// The configured bound.
        max_keys: usize,
    },
    /// A shared (Redis) backend failed.
    #[error("rate limit backend failed: {0}")]
    Backend(String),
}

// === impl AcquireError ===

impl AcquireError {
    /// When retrying may succeed: the dimension's refill time or the
    /// predicted wait, when known.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            Self::WouldExceedDeadline { predicted, .. } => Some(*predicted),
            _ => None,
        }
    }

    /// The dimension named in the error, if any.
    #[must_use]
    pub fn dimension(&self) -> Option<&str> {
        match self {
            Self::RateLimited { dimension, .. } | Self::ExceedsBurst { dimension, .. } => {
                Some(dimension)
            }
            _ => None,
        }
    }
}

impl Classify for AcquireError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::RateLimited { retry_after, .. } => ErrorKind::RateLimited {
                retry_after: Some(*retry_after),
            },
            Self::WouldExceedDeadline { predicted, .. } => ErrorKind::RateLimited {
                retry_after: Some(*predicted),
            },
            Self::Queued { .. } => ErrorKind::RateLimited { retry_after: None },
            Self::ConcurrencyLimited { .. } | Self::QueueFull { .. } | Self::TooManyKeys { .. } => {
                ErrorKind::Overloaded
            }
            Self::ExceedsBurst { .. } => ErrorKind::InvalidInput,
            Self::DeadlineElapsed { .. } => ErrorKind::Timeout,
            Self::Backend(_) => ErrorKind::Unavailable,
        }
    }
}

/// A charge named a dimension the limiter does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dimension {name:?} (the limiter has {known})")]
pub struct UnknownDimension {
    /// The name given.
    pub name: String,
    /// The limiter's dimensions, comma separated.
    pub known: String,
}

impl Classify for UnknownDimension {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

/// Building or reconfiguring a limiter failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration text did not parse (syntax, unknown field, wrong type).
    #[error("configuration does not parse: {0}")]
    Parse(String),
    /// The configuration parsed but is invalid; each error names its field.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    /// A reconfiguration changed the set or order of dimensions, which would
    /// change the meaning of charges already issued.
    #[error("reconfiguration must keep the dimensions {expected:?} in order, got {got:?}")]
    DimensionsChanged {
        /// The current dimension names.
        expected: Vec<String>,
        /// The new dimension names.
        got: Vec<String>,
    },
    /// No shipped profile has that name.
    #[error("no profile named {name:?}; shipped profiles: {known}")]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// The shipped profile names, comma separated.
        known: String,
    },
}

impl Classify for ConfigError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}
