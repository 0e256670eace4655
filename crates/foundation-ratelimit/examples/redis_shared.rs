//! Several instances sharing one quota on Redis.
//!
//! `FOUNDATION_REDIS_URL=redis://127.0.0.1:6379/ cargo run -p foundation-ratelimit --example redis_shared --features redis`
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "example"
)]

use foundation_ratelimit::redis::RedisRateLimiter;
use foundation_ratelimit::{Charge, DimensionConfig, LimiterConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::var("FOUNDATION_REDIS_URL").expect("set FOUNDATION_REDIS_URL");
    let client = redis::Client::open(url).unwrap();
    let cfg = LimiterConfig::new()
        .with_dimension(DimensionConfig::per_minute("requests", 10))
        .with_dimension(DimensionConfig::per_minute("tokens", 5_000));
    let prefix = format!("example-{}", std::process::id());
    let a = RedisRateLimiter::new(
        client.get_multiplexed_async_connection().await.unwrap(),
        &prefix,
        cfg.clone(),
    )
    .unwrap();
    let b = RedisRateLimiter::new(
        client.get_multiplexed_async_connection().await.unwrap(),
        &prefix,
        cfg,
    )
    .unwrap();
    for i in 0..8 {
        let l = if i % 2 == 0 { &a } else { &b };
        match l.try_acquire(Charge::from([1, 1_000])).await {
            Ok(_) => println!("instance {}: admitted", i % 2),
            Err(e) => println!("instance {}: {e}", i % 2),
        }
    }
}
