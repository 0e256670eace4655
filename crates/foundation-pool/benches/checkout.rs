//! Checkout + return overhead of `ElasticPool` against raw deadpool with the
//! same manager, uncontended and contended (2 worker threads).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benches fail loudly"
)]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use deadpool::managed::{Metrics, Pool, RecycleResult};
use foundation_pool::{ElasticPool, Manager};
use tokio::runtime::Runtime;

/// The same trivial manager for both pools: what is measured is the pool.
#[derive(Debug)]
struct Counter;

impl Manager for Counter {
    type Type = u64;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u64, std::io::Error> {
        Ok(0)
    }

    async fn recycle(&self, _: &mut u64, _: &Metrics) -> RecycleResult<std::io::Error> {
        Ok(())
    }
}

const SIZE: usize = 16;

fn elastic(rt: &Runtime) -> ElasticPool<Counter> {
    rt.block_on(async {
        let pool = ElasticPool::builder(Counter, SIZE, SIZE).build().unwrap();
        pool.start().unwrap();
        // Let warm-up fill the pool so both pools start warm.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pool.status().size, SIZE);
        pool
    })
}

fn raw(rt: &Runtime) -> Pool<Counter> {
    rt.block_on(async {
        let pool = Pool::builder(Counter).max_size(SIZE).build().unwrap();
        let held: Vec<_> = futures_fill(&pool).await;
        drop(held);
        pool
    })
}

async fn futures_fill(pool: &Pool<Counter>) -> Vec<deadpool::managed::Object<Counter>> {
    let mut v = Vec::new();
    for _ in 0..SIZE {
        v.push(pool.get().await.unwrap());
    }
    v
}

fn uncontended(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fp = elastic(&rt);
    let dp = raw(&rt);
    let mut g = c.benchmark_group("pool_checkout");
    // One `block_on` per sample, not per iteration, so the runtime's entry
    // cost does not dilute the comparison.
    g.bench_function("foundation", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(*fp.get().await.unwrap());
                }
                start.elapsed()
            })
        });
    });
    g.bench_function("deadpool", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(*dp.get().await.unwrap());
                }
                start.elapsed()
            })
        });
    });
    g.finish();
}

/// Two worker threads hammering one pool of 16; each iteration is one
/// checkout+return on each thread.
fn contended(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fp = elastic(&rt);
    let dp = raw(&rt);
    let mut g = c.benchmark_group("pool_checkout_contended");
    g.bench_function("foundation", |b| {
        b.iter_custom(|iters| {
            rt.block_on(run2(iters, {
                let fp = fp.clone();
                move || {
                    let fp = fp.clone();
                    async move { black_box(*fp.get().await.unwrap()) }
                }
            }))
        });
    });
    g.bench_function("deadpool", |b| {
        b.iter_custom(|iters| {
            rt.block_on(run2(iters, {
                let dp = dp.clone();
                move || {
                    let dp = dp.clone();
                    async move { black_box(*dp.get().await.unwrap()) }
                }
            }))
        });
    });
    g.finish();
}

async fn run2<F, Fut>(iters: u64, op: F) -> Duration
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                for _ in 0..iters {
                    op().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

criterion_group!(benches, uncontended, contended);
criterion_main!(benches);
