//! Errors of this crate.

use foundation_core::{Classify, ErrorKind, ValidationErrors};

/// What went wrong setting up metrics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the errors name each field.
    #[error("invalid metrics configuration: {0}")]
    InvalidConfig(#[from] ValidationErrors),
    /// A global `metrics` recorder is already installed.
    #[error("a global metrics recorder is already installed")]
    RecorderAlreadyInstalled,
    /// The exporter could not listen on its address.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A baseline file or JSON could not be read or written.
    #[error("baseline {what}")]
    Baseline {
        /// What was being done (`"decode"`, `"read /path"`, …).
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidConfig(_) | Self::RecorderAlreadyInstalled => ErrorKind::InvalidInput,
            Self::Bind { .. } => ErrorKind::Unavailable,
            Self::Baseline { .. } => ErrorKind::Permanent,
        }
    }
}
