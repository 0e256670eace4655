//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use foundation_core::{Clock, ManualClock, TokioClock};
use foundation_ratelimit::{DimensionConfig, LimiterConfig, RateLimiter};

/// `requests` per minute and `tokens` per minute, bursts equal to the limits.
pub fn rpm_tpm(rpm: u64, tpm: u64) -> LimiterConfig {
    LimiterConfig::new()
        .with_name("test")
        .with_dimension(DimensionConfig::per_minute("requests", rpm))
        .with_dimension(DimensionConfig::per_minute("tokens", tpm))
}

/// A limiter on a manual clock.
pub fn manual(cfg: LimiterConfig) -> (RateLimiter, ManualClock) {
    let clock = ManualClock::new();
    let l = RateLimiter::builder(cfg)
        .with_clock(clock.clone())
        .build()
        .unwrap();
    (l, clock)
}

/// A limiter on tokio's (pausable) clock.
pub fn tokio_clock(cfg: LimiterConfig) -> RateLimiter {
    RateLimiter::builder(cfg)
        .with_clock(TokioClock)
        .build()
        .unwrap()
}

/// Any clock works.
pub fn with_clock(cfg: LimiterConfig, clock: impl Clock) -> RateLimiter {
    RateLimiter::builder(cfg).with_clock(clock).build().unwrap()
}
