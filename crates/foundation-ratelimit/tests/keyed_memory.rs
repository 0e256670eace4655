//! Measures the memory footprint per key of a keyed limiter.
//!
//! The workspace forbids `unsafe`, so instead of a counting allocator this
//! reads the process's resident set size (`/proc/self/statm`, Linux) before
//! and after creating 200 000 keys (two dimensions, `u64` keys). It is the
//! only test in this binary so nothing else allocates meanwhile; pages are
//! touched as keys are written, so RSS tracks the heap closely at this size.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests and their helpers fail loudly"
)]

mod support;

use std::time::Duration;

use foundation_core::ManualClock;
use foundation_ratelimit::{Charge, KeyedRateLimiter};

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn bytes_per_key() {
    let Some(start) = rss_bytes() else {
        eprintln!("no /proc/self/statm: skipping the RSS measurement on this platform");
        return;
    };
    let clock = ManualClock::new();
    let k: KeyedRateLimiter<u64> = KeyedRateLimiter::builder(support::rpm_tpm(60, 6_000))
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let n = 200_000u64;
    for key in 0..n {
        k.check(&key, Charge::from([1, 100])).unwrap();
    }
    let grown = rss_bytes().unwrap().saturating_sub(start);
    let per_key = grown as f64 / n as f64;
    println!("keyed limiter: {per_key:.0} bytes per key (RSS growth over {n} keys)");
    assert!(per_key > 40.0 && per_key < 300.0, "{per_key} bytes per key");
    clock.advance(Duration::from_secs(61));
    assert_eq!(k.evict_idle(), n as usize);
    assert!(k.is_empty());
}
