//! A burst of 10x steady demand: simulated time until it is drained, with the
//! auto-scaling pool against fixed deadpool pools at the minimum and at the
//! maximum size.
//!
//! Runs on a paused tokio clock and reports *simulated* time through
//! `iter_custom`: the work is sleeps (5ms to create a connection, 10ms per
//! request), so the measurement is about pool policy, not CPU, and is the
//! same on every machine.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benches fail loudly"
)]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use deadpool::managed::{Metrics, Pool, RecycleResult};
use foundation_pool::{ElasticPool, Manager};
use tokio::time::Instant;

#[derive(Debug)]
struct Slow;

impl Manager for Slow {
    type Type = ();
    type Error = std::io::Error;

    async fn create(&self) -> Result<(), std::io::Error> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(())
    }

    async fn recycle(&self, _: &mut (), _: &Metrics) -> RecycleResult<std::io::Error> {
        Ok(())
    }
}

const MIN: usize = 4;
const MAX: usize = 40;
/// Steady demand is `MIN` concurrent requests; the burst is ten times that,
/// each client sending `PER_CLIENT` requests back to back.
const BURST_CLIENTS: usize = 10 * MIN;
const PER_CLIENT: usize = 10;
const HOLD: Duration = Duration::from_millis(10);

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Runs the burst; `checkout` gets one object, held for `HOLD`.
async fn drain<F, Fut, G>(checkout: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = G> + Send,
    G: Send,
{
    let t0 = Instant::now();
    let clients: Vec<_> = (0..BURST_CLIENTS)
        .map(|_| {
            let checkout = checkout.clone();
            tokio::spawn(async move {
                for _ in 0..PER_CLIENT {
                    let object = checkout().await;
                    tokio::time::sleep(HOLD).await;
                    drop(object);
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    t0.elapsed()
}

fn elastic_drain() -> Duration {
    paused().block_on(async {
        let pool = ElasticPool::builder(Slow, MIN, MAX)
            .with(|c| {
                c.checkout_timeout = Duration::from_secs(60);
                c.controller.tick = Duration::from_millis(10);
                c.controller.scale_up_cooldown = Duration::from_millis(20);
            })
            .build()
            .unwrap();
        pool.start().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await; // warm to MIN
        drain(move || {
            let pool = pool.clone();
            async move { pool.get().await.unwrap() }
        })
        .await
    })
}

fn fixed_drain(size: usize) -> Duration {
    paused().block_on(async {
        let pool: Pool<Slow> = Pool::builder(Slow).max_size(size).build().unwrap();
        let warm: Vec<_> = {
            let mut v = Vec::new();
            for _ in 0..size.min(MIN) {
                v.push(pool.get().await.unwrap());
            }
            v
        };
        drop(warm);
        drain(move || {
            let pool = pool.clone();
            async move { pool.get().await.unwrap() }
        })
        .await
    })
}

fn burst(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_burst_drain");
    g.sample_size(10);
    g.bench_function("foundation", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| elastic_drain()).sum());
    });
    g.bench_function("deadpool_fixed_min", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| fixed_drain(MIN)).sum());
    });
    g.bench_function("deadpool_fixed_max", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| fixed_drain(MAX)).sum());
    });
    g.finish();
}

criterion_group!(benches, burst);
criterion_main!(benches);
