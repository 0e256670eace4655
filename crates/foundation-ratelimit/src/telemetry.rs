//! Metrics handles, registered once per limiter through the `metrics` facade.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `foundation_ratelimit_wait_seconds` | histogram | `limiter` |
//! | `foundation_ratelimit_denied_total` | counter | `limiter`, `dimension` (`concurrency`, `queue` for those) |
//! | `foundation_ratelimit_remaining` | gauge | `limiter`, `dimension` |
//!
//! Handles are taken from the recorder installed when the limiter is built:
//! install the recorder first (as with any `metrics` user that caches handles).
//! The remaining-capacity gauge is refreshed on denials, on server feedback and
//! on [`RateLimiter::snapshot`](crate::RateLimiter::snapshot); the admission
//! hot path does not touch it.

use metrics::{Counter, Gauge, Histogram};

pub(crate) const WAIT: &str = "foundation_ratelimit_wait_seconds";
pub(crate) const DENIED: &str = "foundation_ratelimit_denied_total";
pub(crate) const REMAINING: &str = "foundation_ratelimit_remaining";

#[derive(Debug)]
pub(crate) struct Telemetry {
    pub(crate) wait: Histogram,
    pub(crate) denied: Box<[Counter]>,
    pub(crate) denied_concurrency: Counter,
    pub(crate) denied_queue: Counter,
    pub(crate) remaining: Box<[Gauge]>,
}

impl Telemetry {
    pub(crate) fn register(limiter: &str, dimensions: &[String]) -> Self {
        let l = limiter.to_owned();
        let denied = dimensions
            .iter()
            .map(|d| metrics::counter!(DENIED, "limiter" => l.clone(), "dimension" => d.clone()))
            .collect();
        let remaining = dimensions
            .iter()
            .map(|d| metrics::gauge!(REMAINING, "limiter" => l.clone(), "dimension" => d.clone()))
            .collect();
        Self {
            wait: metrics::histogram!(WAIT, "limiter" => l.clone()),
            denied,
            denied_concurrency: metrics::counter!(DENIED, "limiter" => l.clone(), "dimension" => "concurrency"),
            denied_queue: metrics::counter!(DENIED, "limiter" => l, "dimension" => "queue"),
            remaining,
        }
    }
}
