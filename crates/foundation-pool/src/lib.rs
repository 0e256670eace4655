//! Elastic object pools over [`deadpool`]: bounds with warm-up, auto-scaling,
//! proactive health checks, fail-fast degradation and a one-deadline helper.
//!
//! Bursty AI workloads need pools of connections and clients that grow when
//! demand spikes and shrink when it passes, replace broken objects before a
//! user gets one, and shed load instead of queueing forever when the backend
//! is down. [`ElasticPool`] wraps a deadpool managed pool (deadpool does the
//! slot accounting, queueing and recycling) and adds:
//!
//! - **Bounds and warm-up**: `min_size..=max_size`; a background task brings
//!   the pool to `min_size` ready objects at start and after failures.
//! - **Auto-scaling**: a [`Controller`] (a pure state machine, property-tested)
//!   watches smoothed utilization, waiters and checkout waits, grows fast and
//!   shrinks slowly with hysteresis and cooldowns, and moves deadpool's
//!   capacity with `resize`. Decisions are logged, counted, kept
//!   ([`ElasticPool::scale_events`]) and published ([`ElasticPool::decisions`]).
//! - **Proactive health**: idle objects are checked in the background with the
//!   manager's `recycle` (bounded in time and concurrency); objects past
//!   `max_lifetime` are closed on checkout, on return and by the reaper; idle
//!   objects above `min_size` past `idle_timeout` are closed. An object that
//!   failed its check is never handed out.
//! - **Graceful degradation**: creation failures back off exponentially with
//!   jitter and only one probe at a time (no connection storm); while the
//!   backend is down and nothing is idle, checkouts fail at once with
//!   [`PoolError::Unavailable`]; when saturated, a checkout whose deadline is
//!   predicted unreachable fails at once with [`PoolError::Overloaded`].
//!   [`Status::health`] reports it; recovery needs no restart.
//! - **One deadline**: [`ElasticPool::run`] covers checkout and operation with
//!   one deadline and tells checkout failure, operation timeout and the
//!   operation's own error apart; the object is returned or discarded, also on
//!   cancellation and panic.
//! - **Load-aware sharing**: [`Multiplexed`] leases objects that serve several
//!   requests at once (HTTP/2 clients) least-in-flight first, up to a
//!   per-object limit; exclusive checkouts keep LIFO or FIFO
//!   ([`QueueMode`]).
//! - **Replicas**: [`Replicas`] spreads checkouts over one pool per backend
//!   by health and load, probes a failing one once its backoff expires, and
//!   fails over.
//! - **Runtime reconfiguration**: [`ElasticPool::reconfigure`] swaps in a new
//!   validated [`PoolConfig`] (bounds, timeouts, intervals, controller).
//! - **Observability**: [`ElasticPool::status`], metrics through the `metrics`
//!   facade (sizes, checkout-wait histogram, scale events, closed objects by
//!   reason, creation failures, rejections) and `tracing` events.
//!
//! Any deadpool [`Manager`] works unchanged; [`FnManager`] makes one from two
//! async closures, and `postgres::PgManager` (feature `postgres`) pools
//! PostgreSQL connections.
//!
//! ```
//! use std::time::Duration;
//! use foundation_pool::{ElasticPool, FnManager, RunError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = FnManager::new(
//!     || async { Ok::<_, std::io::Error>(Vec::<u8>::new()) },
//!     |buf: &mut Vec<u8>| Box::pin(async move { buf.len() < 1024 }),
//! );
//! let pool = ElasticPool::builder(manager, 2, 16)
//!     .with_name("buffers")
//!     .with(|c| c.health.max_lifetime = Some(Duration::from_secs(1800)))
//!     .build()?;
//! pool.start()?; // warm-up, controller, health checks
//!
//! let n = pool
//!     .run(Duration::from_secs(1), async |buf: &mut Vec<u8>| {
//!         buf.push(1);
//!         Ok::<_, std::io::Error>(buf.len())
//!     })
//!     .await?;
//! assert!(n >= 1);
//! assert!(pool.status().size >= 1);
//! pool.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
#![cfg_attr(
    feature = "postgres",
    doc = "- `postgres`: [`postgres::PgManager`], PostgreSQL connections on"
)]
#![cfg_attr(
    not(feature = "postgres"),
    doc = "- `postgres`: `postgres::PgManager`, PostgreSQL connections on"
)]
//!   `tokio-postgres` (no TLS), checked with `SELECT 1`.
//!
//! The crate always depends on tokio (`rt`, `sync`, `time`, `macros`) for its
//! background tasks and timers; no task is spawned until
//! [`ElasticPool::start`].
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
pub mod config;
pub mod controller;
mod error;
mod maintenance;
mod manager;
mod multiplex;
mod pool;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
mod replicas;
mod shared;

pub use config::{BackoffConfig, ControllerConfig, HealthConfig, PoolConfig, QueueMode};
pub use controller::{Controller, Decision, Reason, Sample, Smoothed};
pub use error::{BuildError, PoolError, RunError};
pub use manager::{CheckFuture, FnManager, Manager};
pub use multiplex::{Lease, Multiplexed};
pub use pool::{Builder, ElasticPool, Health, Pooled, Status};
pub use replicas::{ReplicaObject, Replicas};
pub use shared::{ControllerSnapshot, ScaleEvent};

/// deadpool's manager vocabulary, for implementing [`Manager`].
pub mod deadpool_managed {
    pub use deadpool::managed::{Metrics, RecycleError, RecycleResult};
}
