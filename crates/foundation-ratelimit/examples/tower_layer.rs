//! A tower service whose clones share one limiter, with a cost extractor and
//! a reconcile hook.
//!
//! `cargo run -p foundation-ratelimit --example tower_layer --features tower`
#![allow(clippy::print_stdout, clippy::unwrap_used, reason = "example")]

use std::time::Duration;

use foundation_ratelimit::tower::RateLimitLayer;
use foundation_ratelimit::{Charge, DimensionConfig, LimiterConfig, Permit, RateLimiter};
use tower::{Service, ServiceBuilder, ServiceExt};

#[derive(Debug)]
struct Completion {
    max_tokens: u64,
}

#[derive(Debug)]
struct Usage {
    total_tokens: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let limiter = RateLimiter::try_new(
        LimiterConfig::new()
            .with_dimension(DimensionConfig::per_minute("requests", 500))
            .with_dimension(DimensionConfig::per_minute("tokens", 30_000)),
    )
    .unwrap();
    let layer = RateLimitLayer::new(limiter.clone(), |req: &Completion| {
        Charge::from([1, req.max_tokens])
    })
    .with_reconcile(|resp: &Usage, p: &mut Permit| {
        p.reconcile(Charge::from([1, resp.total_tokens]))
    })
    .with_max_wait(Duration::from_millis(100));
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|req: Completion| async move {
            Ok::<_, tower::BoxError>(Usage {
                total_tokens: req.max_tokens / 2,
            })
        });
    for max_tokens in [12_000, 12_000, 12_000, 12_000, 12_000] {
        let mut svc = svc.clone();
        match svc
            .ready()
            .await
            .unwrap()
            .call(Completion { max_tokens })
            .await
        {
            Ok(usage) => println!("ok: {usage:?}"),
            Err(e) => println!(
                "refused: {e} (kind: {})",
                foundation_core::error::classify(e.as_ref())
            ),
        }
    }
    println!(
        "tokens remaining: {}",
        limiter.snapshot().dimensions[1].remaining
    );
}
