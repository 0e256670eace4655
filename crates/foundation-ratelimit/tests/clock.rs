//! The default clock: with the `quanta` feature a limiter built without a
//! clock reads `QuantaClock` directly, and it behaves like any other clock.
#![cfg(feature = "quanta")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod support;

use std::time::Duration;

use foundation_core::Clock;
use foundation_ratelimit::{
    AcquireError, Charge, DimensionConfig, KeyedRateLimiter, LimiterConfig, QuantaClock,
    RateLimiter,
};

/// 10 per second, burst 10: one unit every 100 ms.
fn ten_per_second() -> LimiterConfig {
    LimiterConfig::new().with_dimension(DimensionConfig::per_second("requests", 10))
}

/// Drains the burst and checks the denial that follows. Real time passes
/// between the calls, so allow for refill of at most one unit.
fn drains_then_denies(check: impl Fn() -> Result<(), AcquireError>) {
    let mut admitted = 0;
    while check().is_ok() {
        admitted += 1;
        assert!(admitted <= 11, "admitted far beyond the burst");
    }
    assert!((10..=11).contains(&admitted), "admitted {admitted}");
    match check().unwrap_err() {
        AcquireError::RateLimited {
            dimension,
            retry_after,
        } => {
            assert_eq!(&*dimension, "requests");
            assert!(
                retry_after > Duration::ZERO && retry_after <= Duration::from_millis(100),
                "{retry_after:?}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn default_limiter_admits_the_burst_then_denies_with_a_retry_after() {
    let limiter = RateLimiter::try_new(ten_per_second()).unwrap();
    drains_then_denies(|| limiter.check(Charge::from([1])));
    let snap = limiter.snapshot();
    assert_eq!(snap.dimensions[0].remaining, 0);
    assert!(snap.dimensions[0].full_in <= Duration::from_secs(1));
}

#[test]
fn explicit_quanta_clock_and_keyed_default_behave_alike() {
    let limiter = support::with_clock(ten_per_second(), QuantaClock::new());
    drains_then_denies(|| limiter.check(Charge::from([1])));
    let keyed = KeyedRateLimiter::<u32>::try_new(ten_per_second()).unwrap();
    drains_then_denies(|| keyed.check(&7, Charge::from([1])));
    // Another key has its own full burst.
    keyed.check(&8, Charge::from([10])).unwrap();
}

#[test]
fn quanta_clock_is_monotonic_across_threads() {
    let clock = QuantaClock::new();
    std::thread::scope(|s| {
        for _ in 0..2 {
            let clock = clock.clone();
            s.spawn(move || {
                let mut last = clock.now();
                for _ in 0..100_000 {
                    let now = clock.now();
                    assert!(now >= last, "went back by {:?}", last - now);
                    last = now;
                }
            });
        }
    });
}
