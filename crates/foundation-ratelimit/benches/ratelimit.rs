//! foundation-ratelimit against governor (and tokio's semaphore for queue
//! hand-off) in the same run. Groups follow the workspace convention
//! `ratelimit_<case>` with a `foundation` function and one per anchor.
//!
//! Quotas are large enough that every check is admitted, so the benches
//! measure the admission path, not denials.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark code"
)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use foundation_core::{ManualClock, SystemClock};
use foundation_ratelimit::{Charge, DimensionConfig, KeyedRateLimiter, LimiterConfig, RateLimiter};
use governor::clock::{FakeRelativeClock, MonotonicClock};
use governor::{Quota, RateLimiter as Governor};

const PER_SEC: u32 = 1_000_000_000;

fn quota() -> Quota {
    Quota::per_second(NonZeroU32::new(PER_SEC).unwrap())
}

fn one_dim() -> LimiterConfig {
    LimiterConfig::new().with_dimension(DimensionConfig::per_second("requests", u64::from(PER_SEC)))
}

fn two_dims() -> LimiterConfig {
    one_dim().with_dimension(DimensionConfig::per_second(
        "tokens",
        u64::from(PER_SEC) * 1_000,
    ))
}

/// The configuration users get by default on both sides: `RateLimiter::try_new`
/// (with the default `quanta` feature its clock is `QuantaClock`) against
/// `governor::RateLimiter::direct` (its default clock is quanta's too).
fn single_dim_default_clock(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit_single_dim_default_clock");
    let ours = RateLimiter::try_new(one_dim()).unwrap();
    let one = Charge::from([1]);
    g.bench_function("foundation", |b| {
        b.iter(|| black_box(ours.check(black_box(one))).unwrap())
    });
    let gov = Governor::direct(quota());
    g.bench_function("governor", |b| b.iter(|| black_box(gov.check()).unwrap()));
    g.finish();
}

/// Both on the OS monotonic clock (`std::time::Instant`): our `SystemClock`
/// against governor's `MonotonicClock`.
fn single_dim_std_instant(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit_single_dim_std_instant");
    let ours = RateLimiter::builder(one_dim())
        .with_clock(SystemClock)
        .build()
        .unwrap();
    let one = Charge::from([1]);
    g.bench_function("foundation", |b| {
        b.iter(|| black_box(ours.check(black_box(one))).unwrap())
    });
    let gov = Governor::direct_with_clock(quota(), MonotonicClock);
    g.bench_function("governor", |b| b.iter(|| black_box(gov.check()).unwrap()));
    g.finish();
}

fn single_dim_manual_clock(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit_single_dim_manual_clock");
    let clock = ManualClock::new();
    let ours = RateLimiter::builder(one_dim())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let one = Charge::from([1]);
    g.bench_function("foundation", |b| {
        b.iter(|| {
            clock.advance(Duration::from_nanos(1));
            black_box(ours.check(black_box(one))).unwrap();
        });
    });
    let fake = FakeRelativeClock::default();
    let gov = Governor::direct_with_clock(quota(), fake.clone());
    g.bench_function("governor", |b| {
        b.iter(|| {
            fake.advance(Duration::from_nanos(1));
            black_box(gov.check()).unwrap();
        });
    });
    g.finish();
}

fn two_dims_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit_two_dims");
    // Default clocks on both sides, as in `single_dim_default_clock`.
    let ours = RateLimiter::try_new(two_dims()).unwrap();
    let charge = Charge::from([1, 1_500]);
    g.bench_function("foundation", |b| {
        b.iter(|| black_box(ours.check(black_box(charge))).unwrap())
    });
    let gov = Governor::direct(quota());
    g.bench_function("governor", |b| b.iter(|| black_box(gov.check()).unwrap()));
    g.finish();
}

fn keyed(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit_keyed");
    // Default clocks on both sides.
    let ours: KeyedRateLimiter<u64> = KeyedRateLimiter::try_new(one_dim()).unwrap();
    let gov = Governor::keyed(quota());
    let one = Charge::from([1]);
    for k in 0..1_000u64 {
        ours.check(&k, one).unwrap();
        gov.check_key(&k).unwrap();
    }
    let mut i = 0u64;
    g.bench_function("foundation", |b| {
        b.iter(|| {
            i = (i + 7) % 1_000;
            black_box(ours.check(black_box(&i), one)).unwrap();
        });
    });
    let mut j = 0u64;
    g.bench_function("governor", |b| {
        b.iter(|| {
            j = (j + 7) % 1_000;
            black_box(gov.check_key(black_box(&j))).unwrap();
        });
    });
    g.finish();
}

/// Runs `TASKS` tasks on `rt`, each awaiting `op(shared clone)` `EACH` times.
fn run_tasks<T, F, Fut>(rt: &tokio::runtime::Runtime, shared: &T, op: F)
where
    T: Clone + Send + 'static,
    F: Fn(T) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let shared = shared.clone();
                tokio::spawn(async move {
                    for _ in 0..EACH {
                        op(shared.clone()).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

const TASKS: usize = 32;
const EACH: usize = 50;

/// 32 tasks on a 2-thread runtime each take 50 permits from a limiter with 2
/// concurrency slots (rates never bind), so nearly every acquire queues and
/// is handed a slot in FIFO order. The anchor is tokio's fair semaphore.
fn acquire_contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit_acquire_contended");
    g.throughput(criterion::Throughput::Elements((TASKS * EACH) as u64));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let cfg = one_dim().with_concurrency(2).with_max_waiters(TASKS * 2);
    let ours = RateLimiter::builder(cfg)
        .with_clock(SystemClock)
        .build()
        .unwrap();
    g.bench_function("foundation", |b| {
        b.iter(|| {
            run_tasks(&rt, &ours, |l: RateLimiter| async move {
                let p = l.acquire(Charge::from([1])).await.unwrap();
                tokio::task::yield_now().await;
                drop(p);
            });
        });
    });
    let sem = Arc::new(tokio::sync::Semaphore::new(2));
    g.bench_function("tokio_semaphore", |b| {
        b.iter(|| {
            run_tasks(&rt, &sem, |s: Arc<tokio::sync::Semaphore>| async move {
                let p = s.acquire().await.unwrap();
                tokio::task::yield_now().await;
                drop(p);
            });
        });
    });
    g.finish();
}

criterion_group!(
    benches,
    single_dim_default_clock,
    single_dim_std_instant,
    single_dim_manual_clock,
    two_dims_check,
    keyed,
    acquire_contended
);
criterion_main!(benches);
