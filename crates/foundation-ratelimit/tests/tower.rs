//! The tower layer: shared state across clones, cost extraction, reconcile
//! hook, errors with retry-after, cancellation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests and their helpers fail loudly"
)]
#![cfg(feature = "tower")]

mod support;

use std::time::Duration;

use foundation_core::ErrorKind;
use foundation_core::error::{cause_ref, classify};
use foundation_ratelimit::tower::{RateLimitError, RateLimitLayer};
use foundation_ratelimit::{Charge, DimensionConfig, LimiterConfig, Permit};
use tower::{Layer, Service, ServiceExt, service_fn};

fn echo()
-> impl Service<u64, Response = u64, Error = tower::BoxError, Future: Send> + Clone + Send + 'static
{
    service_fn(|tokens: u64| async move { Ok::<_, tower::BoxError>(tokens / 2) })
}

fn cfg() -> LimiterConfig {
    LimiterConfig::new()
        .with_dimension(DimensionConfig::per_second("requests", 10))
        .with_dimension(DimensionConfig::per_second("tokens", 1_000))
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_limiter_and_reconcile_settles() {
    let limiter = support::tokio_clock(cfg());
    let layer = RateLimitLayer::new(limiter.clone(), |tokens: &u64| Charge::from([1, *tokens]))
        .with_reconcile(|used: &u64, p: &mut Permit| p.reconcile(Charge::from([1, *used])));
    let a = layer.layer(echo());
    let b = a.clone();
    let c = layer.layer(echo());
    for mut svc in [a, b, c] {
        assert_eq!(svc.ready().await.unwrap().call(200).await.unwrap(), 100);
    }
    let snap = limiter.snapshot();
    assert_eq!(snap.dimensions[0].remaining, 7, "three services, one quota");
    assert_eq!(
        snap.dimensions[1].remaining, 700,
        "reserved 600, settled at 300"
    );
}

#[tokio::test(start_paused = true)]
async fn errors_carry_retry_after_and_classify() {
    let limiter = support::tokio_clock(cfg());
    let mut svc = RateLimitLayer::new(limiter.clone(), |tokens: &u64| Charge::from([1, *tokens]))
        .with_max_wait(Duration::from_millis(100))
        .layer(echo());
    svc.ready().await.unwrap().call(1_000).await.unwrap();
    let err = svc.ready().await.unwrap().call(500).await.unwrap_err();
    assert_eq!(
        classify(err.as_ref()),
        ErrorKind::RateLimited {
            retry_after: Some(Duration::from_millis(500))
        }
    );
    let typed = cause_ref::<RateLimitError>(err.as_ref()).unwrap();
    assert_eq!(typed.retry_after(), Some(Duration::from_millis(500)));
    let err = svc.ready().await.unwrap().call(5_000).await.unwrap_err();
    assert_eq!(classify(err.as_ref()), ErrorKind::InvalidInput);
}

#[tokio::test(start_paused = true)]
async fn waits_in_the_future_and_cancellation_leaves_nothing() {
    let limiter = support::tokio_clock(cfg());
    let mut svc = RateLimitLayer::new(limiter.clone(), |tokens: &u64| Charge::from([1, *tokens]))
        .layer(echo());
    svc.ready().await.unwrap().call(1_000).await.unwrap();
    let start = tokio::time::Instant::now();
    let fut = svc.ready().await.unwrap().call(250);
    let dropped = tokio::time::timeout(Duration::from_millis(100), fut).await;
    assert!(dropped.is_err());
    assert_eq!(limiter.snapshot().waiters, 0);
    assert_eq!(svc.ready().await.unwrap().call(250).await.unwrap(), 125);
    assert_eq!(start.elapsed(), Duration::from_millis(250));
}
