//! Multi-dimensional rate limits for services that call AI providers.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod charge;
pub mod config;
mod error;
pub mod fallback;
mod gcra;
pub mod headers;
mod keyed;
mod limiter;
mod permit;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod profile;
pub mod telemetry;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
mod wait;

pub use charge::Charge;
pub use config::{DimensionConfig, LimiterConfig, MAX_DIMENSIONS, QueueConfig};
pub use error::{AcquireError, ConfigError, UnknownDimension};
pub use headers::RateLimitInfo;
pub use limiter::{Builder, DimensionStatus, RateLimiter, Snapshot};
pub use permit::Permit;
pub use keyed::{KeyedBuilder, KeyedRateLimiter};
