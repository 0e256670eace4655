//! [`RateLimitError`].

use std::time::Duration;

use foundation_core::{Classify, ErrorKind};

use crate::error::AcquireError;

/// The request was not admitted by the limiter (the inner service was not called).
#[derive(Debug, Clone, thiserror::Error)]
#[error("request not admitted: {0}")]
pub struct RateLimitError(#[source] pub AcquireError);

impl RateLimitError {
    /// When a retry may be admitted, if known.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after()
    }
}

impl Classify for RateLimitError {
    fn kind(&self) -> ErrorKind {
        self.0.kind()
    }
}
