//! Keyed limiters: independence, idle eviction, the key bound,
//! reconfiguration, and the measured bytes per key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests and their helpers fail loudly"
)]

mod support;

use std::time::Duration;

use foundation_core::ManualClock;
use foundation_ratelimit::{AcquireError, Charge, KeyedRateLimiter};
fn keyed(clock: &ManualClock) -> KeyedRateLimiter<u64> {
    KeyedRateLimiter::builder(support::rpm_tpm(60, 6_000))
        .with_clock(clock.clone())
        .with_max_keys(100_000)
        .build()
        .unwrap()
}

#[test]
fn keys_are_independent_and_idle_keys_are_evicted() {
    let clock = ManualClock::new();
    let k = keyed(&clock);
    k.check(&1, Charge::from([60, 10])).unwrap();
    assert!(matches!(
        k.check(&1, Charge::from([1, 1])),
        Err(AcquireError::RateLimited { .. })
    ));
    k.check(&2, Charge::from([1, 1])).unwrap();
    assert_eq!(k.len(), 2);
    // Key 2 is full again after 1s, key 1 only after 60s.
    clock.advance(Duration::from_secs(1));
    assert_eq!(k.evict_idle(), 1);
    assert!(k.contains(&1) && !k.contains(&2));
    // A held permit (or handle) keeps a key alive even when its rates are full.
    let permit = k.try_acquire(&3, Charge::ZERO).unwrap();
    clock.advance(Duration::from_secs(60));
    assert_eq!(k.evict_idle(), 1);
    assert!(k.contains(&3));
    drop(permit);
    assert_eq!(k.evict_idle(), 1);
    assert!(k.is_empty());
}

#[test]
fn the_key_bound_refuses_new_keys_only_when_none_is_idle() {
    let clock = ManualClock::new();
    let k: KeyedRateLimiter<u64> = KeyedRateLimiter::builder(support::rpm_tpm(60, 6_000))
        .with_clock(clock.clone())
        .with_max_keys(3)
        .build()
        .unwrap();
    for key in 0..3 {
        k.check(&key, Charge::from([1, 1])).unwrap();
    }
    assert_eq!(
        k.check(&9, Charge::from([1, 1])),
        Err(AcquireError::TooManyKeys { max_keys: 3 })
    );
    k.check(&0, Charge::from([1, 1])).unwrap();
    clock.advance(Duration::from_secs(2));
    k.check(&9, Charge::from([1, 1])).unwrap();
    assert_eq!(k.len(), 1);
}

#[test]
fn reconfiguration_applies_to_every_key() {
    let clock = ManualClock::new();
    let k = keyed(&clock);
    k.check(&1, Charge::from([30, 0])).unwrap();
    k.reconfigure(support::rpm_tpm(120, 6_000)).unwrap();
    assert_eq!(k.get(&1).unwrap().snapshot().dimensions[0].remaining, 90);
    assert_eq!(k.get(&2).unwrap().snapshot().dimensions[0].remaining, 120);
}
