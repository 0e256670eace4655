//! Foundation: building blocks for reliable services that call AI model
//! providers and other rate-limited, bursty, failure-prone upstreams.
//!
//! This umbrella crate re-exports each Foundation crate behind a feature of the
//! same name; `full` enables all of them. Depend on a single crate
//! (`foundation-ratelimit`, …) when that is all you need.
//!
//! ```
//! use foundation::core::{ErrorKind, Tokens};
//!
//! assert!(ErrorKind::Transient.is_retryable());
//! assert_eq!(Tokens::new(3).get(), 3);
//! ```
//!
//! # Feature flags
//!
//! | feature | crate |
//! |---|---|
//! | (always) | [`core`] = `foundation-core` |
//! | `full` | every capability below |
//! | `ratelimit` | `foundation::ratelimit` = `foundation-ratelimit`: multi-dimensional limits (RPM + TPM + concurrency), fair waiting, provider profiles, header feedback, tower layer |
//! | `pool` | `foundation::pool` = `foundation-pool`: elastic pools over deadpool (auto-scaling, health checks, fail-fast) |
//! | `trace` | `foundation::trace` = `foundation-trace`: step-by-step execution traces attached to errors |
//! | `metrics` | `foundation::metrics` = `foundation-metrics`: accurate latency/token/cost distributions, rolling windows, Prometheus histograms, baselines |
//! | `events` | `foundation::events` = `foundation-events`: append-only event log with schemas, queries (API and text language), subscriptions, causal trace trees (memory, SQLite, PostgreSQL) |
//! | `cache` | `foundation::cache` = `foundation-cache`: tiered cache (moka L1, Redis L2, SQLite L3), single-flight loads, stale-while-revalidate, scoped semantic lookup with verifiers, cost-aware admission, predictive warming |
#![cfg_attr(docsrs, feature(doc_cfg))]

/// Shared vocabulary: error classification, clocks, units, configuration.
pub use foundation_core as core;

/// Multi-dimensional rate limits: atomic GCRA across requests, tokens and
/// concurrency, FIFO waiting with backpressure, reserve-then-reconcile,
/// provider profiles, header feedback, fallbacks, keyed limiters, tower layer.
#[cfg(feature = "ratelimit")]
#[cfg_attr(docsrs, doc(cfg(feature = "ratelimit")))]
pub use foundation_ratelimit as ratelimit;

/// Step-by-step execution traces on `tracing`: hierarchical operations,
/// redacted and bounded step data, operation history attached to errors.
#[cfg(feature = "trace")]
#[cfg_attr(docsrs, doc(cfg(feature = "trace")))]
pub use foundation_trace as trace;

/// Elastic pools over deadpool: auto-scaling, background health checks,
/// fail-fast degradation, one-deadline checkout.
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
pub use foundation_pool as pool;

/// Accurate distributions for the `metrics` facade: relative-error sketches,
/// rolling windows, a cardinality-bounded recorder, Prometheus exposition and
/// exporter, cost tracking and baseline regression detection.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use foundation_metrics as metrics;

/// Durable, queryable, append-only event log with schemas: streams with
/// optimistic concurrency, gap-free global order, catch-up subscriptions,
/// a text query language and causal trace trees.
#[cfg(feature = "events")]
#[cfg_attr(docsrs, doc(cfg(feature = "events")))]
pub use foundation_events as events;

/// Tiered, semantic, adaptive caching: moka L1, Redis L2, SQLite L3,
/// single-flight loading, scoped semantic lookup, cost-aware admission and
/// predictive warming.
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use foundation_cache as cache;
