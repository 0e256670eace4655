//! Multi-dimensional rate limits for services that call AI providers: use
//! close to 100% of what a provider allows, with zero 429s.
//!
//! Providers enforce several limits at once — requests per minute, tokens per
//! minute, sometimes input and output tokens separately, per day — and answer
//! 429 when a client guesses wrong. A [`RateLimiter`] holds any number of
//! named *dimensions* (each a GCRA rate with a burst) plus an optional
//! concurrency limit, and admits a request only if every dimension admits its
//! [`Charge`]; a denial charges nothing.
//!
//! - **Atomic admission** without a lock on the hot path: one `AtomicU64` per
//!   dimension, compare-and-swap each, exact rollback on a later denial
//!   ([`RateLimiter`] docs state the semantics).
//! - **Check and peek**: [`RateLimiter::try_acquire`] / [`RateLimiter::check`]
//!   name the dimension and the earliest retry; [`RateLimiter::snapshot`] and
//!   [`RateLimiter::would_admit`] consume nothing.
//! - **Fair waiting with backpressure**: [`RateLimiter::acquire`] queues FIFO
//!   (bounded by count and queued cost), only the head sleeps, a deadline
//!   fails at once with the predicted wait, and cancellation leaves nothing.
//! - **Reserve, then reconcile**: charge `max_tokens`, settle with
//!   [`Permit::reconcile`] when the usage is known.
//! - **Provider profiles** ([`profile`]) and **server feedback** ([`headers`],
//!   [`RateLimiter::observe`]) so local state never believes it has more than
//!   the server says.
//! - [`fallback`] strategies, [`KeyedRateLimiter`] with idle-key eviction,
//!   runtime [`reconfigure`](RateLimiter::reconfigure), a `tower` layer and
//!   a Redis backend; [`telemetry`] through `tracing` and `metrics`.
//!
//! ```
//! use std::time::Duration;
//! use foundation_ratelimit::profile::ProfileSet;
//! use foundation_ratelimit::{AcquireError, Charge, RateLimiter};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // OpenAI gpt-4o, tier 1: 500 requests and 30 000 tokens per minute.
//! let profile = ProfileSet::shipped()?.get("openai/tier-1/gpt-4o")?.limiter.clone();
//! let limiter = RateLimiter::try_new(profile)?;
//!
//! // Reserve the prompt plus max_tokens, wait (FIFO) at most 10 s for it ...
//! let charge = limiter.charge([("requests", 1), ("tokens", 1_200 + 4_000)])?;
//! let mut permit = limiter.acquire_within(charge, Duration::from_secs(10)).await?;
//! // ... call the provider, then settle with the real usage.
//! permit.reconcile(limiter.charge([("requests", 1), ("tokens", 1_200 + 850)])?);
//! assert_eq!(limiter.snapshot().dimensions[1].remaining, 30_000 - 2_050);
//!
//! // A charge that can never fit is a typed error, not a hang.
//! let err = limiter.try_acquire(Charge::from([1, 40_000])).unwrap_err();
//! assert!(matches!(err, AcquireError::ExceedsBurst { .. }));
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! - `quanta` (default): `QuantaClock`, a TSC-based clock read directly by
//!   the limiter, as its default clock (the clock governor uses by default).
//!   Without it the default is `foundation_core::SystemClock`.
//! - `tower`: `tower::RateLimitLayer`, whose clones share one limiter.
//! - `redis`: `redis::RedisRateLimiter`, the same atomic multi-dimension
//!   semantics across processes (one Lua script per decision).
//! - `schemars`: JSON Schema for the configuration types.
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
pub mod profile;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod telemetry;
mod time;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
mod wait;

pub use charge::Charge;
pub use config::{DimensionConfig, LimiterConfig, MAX_DIMENSIONS, QueueConfig};
pub use error::{AcquireError, ConfigError, UnknownDimension};
pub use headers::RateLimitInfo;
pub use keyed::{KeyedBuilder, KeyedRateLimiter};
pub use limiter::{Builder, DimensionStatus, RateLimiter, Snapshot};
pub use permit::Permit;
#[cfg(feature = "quanta")]
pub use time::QuantaClock;
