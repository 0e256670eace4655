//! The crate's error type.

use std::error::Error as StdError;
use std::sync::Arc;

use foundation_core::{Classify, ErrorKind, ValidationErrors};

/// A shareable error source: loads are single-flight, so one failure is
/// handed to every waiter.
pub type SharedError = Arc<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong in a cache operation.
///
/// Backend failures of lower tiers during reads are *not* returned: they are
/// counted and the tier is treated as a miss (a cache must not fail a request
/// its loader can serve). They are returned by explicit tier operations and
/// by invalidation, where silently skipping a tier would leave stale data.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The loader passed to `get_or_compute` failed; every waiter of the
    /// single-flight load gets the same error.
    #[error("loader failed: {0}")]
    Load(SharedError),
    /// A negative entry (a cached failure, see `negative_ttl`) answered the request.
    #[error("cached failure of an earlier load: {message}")]
    CachedFailure {
        /// The message of the original failure.
        message: Arc<str>,
        /// The classification of the original failure.
        kind: ErrorKind,
    },
    /// A tier's backend (Redis, SQLite) failed.
    #[error("{tier} tier failed: {source}")]
    Backend {
        /// The tier's name.
        tier: &'static str,
        /// The backend error.
        source: SharedError,
    },
    /// A stored value could not be encoded or decoded.
    #[error("cannot encode or decode a cache entry: {0}")]
    Codec(String),
    /// The embedder failed (the semantic cache falls back to exact keys).
    #[error("embedder failed: {0}")]
    Embed(String),
    /// Invalid configuration or argument.
    #[error(transparent)]
    Config(#[from] ValidationErrors),
}

// === impl Error ===

impl Error {
    pub(crate) fn backend(tier: &'static str, e: impl StdError + Send + Sync + 'static) -> Self {
        Self::Backend {
            tier,
            source: Arc::new(e),
        }
    }
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Load(e) => foundation_core::error::classify(e.as_ref()),
            Self::CachedFailure { kind, .. } => *kind,
            Self::Backend { .. } => ErrorKind::Unavailable,
            Self::Codec(_) => ErrorKind::Permanent,
            Self::Embed(_) => ErrorKind::Transient,
            Self::Config(_) => ErrorKind::InvalidInput,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_errors_keep_the_source_kind() {
        let src = foundation_core::Classified::new(ErrorKind::Timeout, "slow");
        let e = Error::Load(Arc::new(src));
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(e.to_string(), "loader failed: slow");
    }
}
