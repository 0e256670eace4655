//! The shared vocabulary of the Foundation crates.
//!
//! Foundation is a workspace of small crates for services that call AI model
//! providers and other rate-limited, bursty, failure-prone upstreams. This crate
//! is the small, stable part they all speak:
//!
//! - [`error`]: [`ErrorKind`] says what a caller should do about an error
//!   (retry? wait for a rate limit? give up?), [`Classify`] lets errors say it,
//!   [`classify`](error::classify) finds it in any boxed error chain, and
//!   [`cause_ref`](error::cause_ref)/[`is_caused_by`](error::is_caused_by) walk causes.
//! - [`clock`]: the [`Clock`] trait, the system clock and a [`ManualClock`] for
//!   deterministic tests of synchronous time-based code.
//! - [`units`]: [`Tokens`], and money as integer micro-units ([`Cost`], [`Price`])
//!   with checked arithmetic.
//! - [`config`]: the [`Validate`] trait whose errors name the field path, and
//!   [`Reloadable`], a lock-free live configuration handle for runtime
//!   reconfiguration.
//!
//! ```
//! use foundation_core::{Cost, ErrorKind, ManualClock, Clock, Price, Tokens};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let t0 = clock.now();
//! clock.advance(Duration::from_secs(1));
//! assert_eq!(clock.now() - t0, Duration::from_secs(1));
//!
//! let price: Price = "0.15".parse()?; // per 1M tokens
//! assert_eq!(price.cost_of(Tokens::new(2_000_000)), Some(Cost::from_micros(300_000)));
//!
//! assert!(ErrorKind::Timeout.is_retryable());
//! # Ok::<(), foundation_core::units::ParseAmountError>(())
//! ```
//!
//! # Feature flags
//!
//! - `serde`: serde for units, `ErrorKind` and the duration helpers in [`serde_util`](crate).
//! - `schemars`: JSON Schema for units (implies `serde`).
//! - `tokio`: `TokioClock`, which follows tokio's paused time, and change
//!   notification on [`Reloadable`].
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
pub mod config;
pub mod error;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod serde_util;
pub mod units;

#[cfg(feature = "tokio")]
pub use clock::TokioClock;
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::{FieldPath, Reloadable, Validate, ValidationError, ValidationErrors, Validator};
pub use error::{BoxError, Classified, Classify, ErrorKind};
pub use units::{Cost, Price, Tokens};
