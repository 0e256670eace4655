//! One limiter per tenant with idle eviction.
//!
//! `cargo run -p foundation-ratelimit --example keyed_tenants`
#![allow(clippy::print_stdout, clippy::unwrap_used, reason = "example")]

use std::time::Duration;

use foundation_core::ManualClock;
use foundation_ratelimit::{Charge, DimensionConfig, KeyedRateLimiter, LimiterConfig};

fn main() {
    let clock = ManualClock::new();
    let per_tenant: KeyedRateLimiter<String> = KeyedRateLimiter::builder(
        LimiterConfig::new()
            .with_name("tenants")
            .with_dimension(DimensionConfig::per_minute("requests", 60))
            .with_dimension(DimensionConfig::per_minute("tokens", 50_000)),
    )
    .with_clock(clock.clone())
    .with_max_keys(10_000)
    .build()
    .unwrap();

    for (tenant, tokens) in [("acme", 40_000), ("acme", 20_000), ("globex", 20_000)] {
        match per_tenant.check(&tenant.to_owned(), Charge::from([1, tokens])) {
            Ok(()) => println!("{tenant}: admitted {tokens} tokens"),
            Err(e) => println!("{tenant}: {e}"),
        }
    }
    println!("live tenants: {}", per_tenant.len());
    clock.advance(Duration::from_secs(60));
    println!(
        "evicted {} idle tenants after a quiet minute",
        per_tenant.evict_idle()
    );
}
