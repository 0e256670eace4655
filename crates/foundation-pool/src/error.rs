//! Errors of checkouts, of the one-deadline helper and of building a pool.

use std::time::Duration;

use foundation_core::{Classify, ErrorKind, ValidationErrors};

/// Why a checkout failed. `E` is the manager's error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError<E> {
    /// The deadline passed while waiting for an object.
    #[error("checkout timed out after {waited:?}")]
    Timeout {
        /// How long the checkout waited.
        waited: Duration,
    },
    /// The pool is saturated and the predicted wait exceeds what is left of
    /// the deadline, so the checkout failed at once instead of waiting it out.
    #[error(
        "pool overloaded: predicted wait {predicted:?} exceeds the {remaining:?} left of the deadline"
    )]
    Overloaded {
        /// Predicted wait, from the queue length and observed hold times.
        predicted: Duration,
        /// Time left until the deadline when the checkout was refused.
        remaining: Duration,
    },
    /// The backend is failing and creation is backing off; no idle object
    /// was available.
    #[error(
        "backend unavailable after {failures} consecutive creation failures (next attempt in {retry_in:?})"
    )]
    Unavailable {
        /// Consecutive creation failures so far.
        failures: u32,
        /// Time until the next creation attempt is allowed.
        retry_in: Duration,
    },
    /// The manager failed to create an object.
    #[error("creating a pooled object failed")]
    Create(#[source] E),
    /// The manager did not create an object within `create_timeout`.
    #[error("creating a pooled object timed out after {0:?}")]
    CreateTimeout(Duration),
    /// The pool was shut down.
    #[error("pool is closed")]
    Closed,
}

impl<E> Classify for PoolError<E> {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Timeout { .. } | Self::CreateTimeout(_) => ErrorKind::Timeout,
            Self::Overloaded { .. } => ErrorKind::Overloaded,
            Self::Unavailable { .. } | Self::Create(_) => ErrorKind::Unavailable,
            Self::Closed => ErrorKind::Cancelled,
        }
    }
}

/// Why [`ElasticPool::run`](crate::ElasticPool::run) failed: the checkout,
/// the deadline during the operation, or the operation itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError<E, ME> {
    /// No object could be checked out before the deadline (or at all).
    #[error("checkout failed")]
    Checkout(#[source] PoolError<ME>),
    /// The operation did not finish before the deadline; its object was
    /// discarded because its state is unknown.
    #[error("operation timed out after {elapsed:?} (the deadline covered checkout and operation)")]
    OperationTimeout {
        /// Time from the start of the call to the deadline.
        elapsed: Duration,
    },
    /// The operation returned an error; its object went back to the pool.
    #[error("operation failed")]
    Operation(#[source] E),
}

impl<E: Classify, ME> Classify for RunError<E, ME> {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Checkout(e) => e.kind(),
            Self::OperationTimeout { .. } => ErrorKind::Timeout,
            Self::Operation(e) => e.kind(),
        }
    }
}

/// Why a pool could not be built or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration is invalid; the message names the fields.
    #[error(transparent)]
    Config(#[from] ValidationErrors),
    /// Background tasks need a tokio runtime and none is running.
    #[error("no tokio runtime: call start() from within a tokio runtime")]
    NoRuntime,
    /// A runtime reconfiguration tried to change a field fixed at build.
    #[error("{0} cannot be changed at runtime")]
    Immutable(&'static str),
}

impl Classify for BuildError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("op")]
    struct Op;

    impl Classify for Op {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Permanent
        }
    }

    #[test]
    fn kinds_and_messages() {
        let e: PoolError<std::io::Error> = PoolError::Overloaded {
            predicted: Duration::from_secs(2),
            remaining: Duration::from_millis(100),
        };
        assert_eq!(e.kind(), ErrorKind::Overloaded);
        assert_eq!(
            e.to_string(),
            "pool overloaded: predicted wait 2s exceeds the 100ms left of the deadline"
        );
        let e: RunError<Op, std::io::Error> = RunError::Operation(Op);
        assert_eq!(e.kind(), ErrorKind::Permanent);
        let e: RunError<Op, std::io::Error> = RunError::Checkout(PoolError::Unavailable {
            failures: 3,
            retry_in: Duration::ZERO,
        });
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(std::error::Error::source(&e).is_some());
    }
}
