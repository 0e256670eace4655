//! Benchmarks (criterion groups follow `<crate-short>_<case>`, with a
//! `foundation` function and one per anchor):
//!
//! - `cache_l1_hit`: an L1 hit through `TieredCache::get` vs raw moka
//!   `future::Cache::get` on the same kind of key and value.
//! - `cache_semantic_search`: nearest-neighbour search over N unit vectors of
//!   384 dimensions (N = 100k unless `FOUNDATION_CACHE_BENCH_N` says
//!   otherwise): the partition index with its HNSW index (`foundation`,
//!   feature `ann`) vs brute-force exact search (`exact`). Build time, p50/p99
//!   latency and recall@1 against exact search are printed for several `ef`.
//! - `cache_semantic_crossover` (printed, feature `ann`): exact vs HNSW
//!   search latency by partition size, the measurement behind the default
//!   `ann_threshold`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs,
    reason = "benchmark"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use foundation_cache::adaptive::eval::Rng;
#[cfg(feature = "ann")]
use foundation_cache::semantic::index::AnnConfig;
use foundation_cache::semantic::index::{ExactIndex, PartitionIndex};
use foundation_cache::{CacheConfig, Key, TieredCache};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn l1_hit(c: &mut Criterion) {
    let rt = rt();
    let value: Arc<str> = Arc::from("x".repeat(512));
    let n = 10_000;
    let ours: TieredCache<Arc<str>> = TieredCache::builder(CacheConfig::new(64 << 20))
        .build()
        .unwrap();
    let keys: Vec<Key> = (0..n)
        .map(|i| Key::unscoped(format!("prompt:{i}")))
        .collect();
    let moka: moka::future::Cache<String, Arc<str>> = moka::future::Cache::builder()
        .max_capacity(64 << 20)
        .build();
    let mkeys: Vec<String> = (0..n).map(|i| format!("prompt:{i}")).collect();
    rt.block_on(async {
        for (k, mk) in keys.iter().zip(&mkeys) {
            ours.insert(k, value.clone()).await;
            moka.insert(mk.clone(), value.clone()).await;
        }
        ours.memory().run_pending_tasks().await;
        moka.run_pending_tasks().await;
    });
    // Alternating rounds in one process, minimum per side: the steadiest
    // comparison on a shared machine (criterion's numbers follow).
    rt.block_on(async {
        let (mut best_ours, mut best_moka) = (Duration::MAX, Duration::MAX);
        for _ in 0..15 {
            let t = Instant::now();
            for k in &keys {
                black_box(ours.get(k).await.unwrap().unwrap());
            }
            best_ours = best_ours.min(t.elapsed());
            let t = Instant::now();
            for k in &mkeys {
                black_box(moka.get(k).await.unwrap());
            }
            best_moka = best_moka.min(t.elapsed());
        }
        println!(
            "L1 hit, best of 15 alternating rounds of {n}: foundation {:?}/get, moka {:?}/get, ratio {:.2}x",
            best_ours / n as u32,
            best_moka / n as u32,
            best_ours.as_secs_f64() / best_moka.as_secs_f64()
        );
    });
    // 100 lookups per iteration so the executor's per-iteration cost does
    // not drown the difference; criterion reports the time of 100.
    let mut g = c.benchmark_group("cache_l1_hit");
    let mut i = 0usize;
    g.bench_function("foundation", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % 100;
            let (ours, keys, start) = (&ours, &keys, i * 100);
            async move {
                for k in &keys[start..start + 100] {
                    black_box(ours.get(k).await.unwrap().unwrap());
                }
            }
        });
    });
    let mut i = 0usize;
    g.bench_function("moka", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % 100;
            let (moka, mkeys, start) = (&moka, &mkeys, i * 100);
            async move {
                for k in &mkeys[start..start + 100] {
                    black_box(moka.get(k).await.unwrap());
                }
            }
        });
    });
    g.finish();
}

/// Uniform in [-1, 1).
fn signed(rng: &mut Rng) -> f32 {
    (rng.unit() * 2.0 - 1.0) as f32
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Clustered data, like sentence embeddings: 2000 topics, points scattered around them.
fn dataset(n: usize, dims: usize, rng: &mut Rng) -> Vec<Vec<f32>> {
    let centers: Vec<Vec<f32>> = (0..2000)
        .map(|_| normalized((0..dims).map(|_| signed(rng)).collect()))
        .collect();
    (0..n)
        .map(|_| {
            let c = &centers[(rng.next_u64() % centers.len() as u64) as usize];
            normalized(c.iter().map(|x| x + 0.08 * signed(rng)).collect())
        })
        .collect()
}

/// A nearest-neighbour search function.
type Search<'a> = dyn Fn(&[f32]) -> Option<(u64, f32)> + 'a;

/// Paraphrase-like queries: perturbations of stored vectors.
fn queries(data: &[Vec<f32>], n: usize, rng: &mut Rng) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            let base = &data[(rng.next_u64() % data.len() as u64) as usize];
            normalized(base.iter().map(|x| x + 0.03 * signed(rng)).collect())
        })
        .collect()
}

/// p50, p99 and agreement with `want` of `f` over `queries`.
fn measure(f: &Search<'_>, queries: &[Vec<f32>], want: &[u64]) -> (Duration, Duration, f64) {
    let mut lat = Vec::new();
    let mut agree = 0;
    for (q, w) in queries.iter().zip(want) {
        let t = Instant::now();
        let got = f(q).unwrap();
        lat.push(t.elapsed());
        agree += usize::from(got.0 == *w);
    }
    lat.sort();
    let p = |x: f64| lat[((lat.len() as f64 * x) as usize).min(lat.len() - 1)];
    (p(0.5), p(0.99), agree as f64 / queries.len() as f64)
}

#[cfg(feature = "ann")]
fn build(exact: &ExactIndex) -> (PartitionIndex, Duration) {
    let started = Instant::now();
    let mut part = PartitionIndex::new(exact.iter().next().map_or(0, |(_, v)| v.len()));
    for (id, v) in exact.iter() {
        part.insert(id, v);
    }
    let copy = part.build_due(1).unwrap();
    let ann = foundation_cache::semantic::index::build_ann(&copy, &AnnConfig::default()).unwrap();
    part.install(ann, &copy).unwrap();
    (part, started.elapsed())
}

#[cfg(not(feature = "ann"))]
fn build(exact: &ExactIndex) -> (PartitionIndex, Duration) {
    let started = Instant::now();
    let mut part = PartitionIndex::new(exact.iter().next().map_or(0, |(_, v)| v.len()));
    for (id, v) in exact.iter() {
        part.insert(id, v);
    }
    (part, started.elapsed())
}

fn semantic_search(c: &mut Criterion) {
    const DIMS: usize = 384;
    let n: usize = std::env::var("FOUNDATION_CACHE_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let mut rng = Rng::new(42);
    let data = dataset(n, DIMS, &mut rng);
    let mut exact = ExactIndex::new(DIMS);
    for (i, v) in data.iter().enumerate() {
        exact.insert(i as u64, v);
    }
    let (part, took) = build(&exact);
    let queries = queries(&data, 1000, &mut rng);
    let want: Vec<u64> = queries
        .iter()
        .map(|q| exact.nearest(q).unwrap().0)
        .collect();
    #[cfg(feature = "ann")]
    {
        let mut sweep =
            foundation_cache::semantic::index::build_ann(&exact, &AnnConfig::default()).unwrap();
        for ef in [16, 32, 64, 128] {
            sweep.set_expansion_search(ef);
            let (p50, p99, recall) = measure(&|q| sweep.nearest(q), &queries, &want);
            println!("  HNSW ef={ef}: p50 {p50:?} p99 {p99:?} recall@1 {recall:.3}");
        }
    }
    let (p50, p99, recall) = measure(&|q| part.nearest(q), &queries, &want);
    let (ep50, ep99, _) = measure(&|q| exact.nearest(q), &queries[..100], &want[..100]);
    // Single inserts into the built index (what a miss costs once indexed),
    // then removed again so the searches below see the same data.
    let mut part = part;
    let fresh = dataset(200, DIMS, &mut rng);
    let mut ins: Vec<Duration> = fresh
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let t = Instant::now();
            assert!(part.insert((n + i) as u64, v));
            t.elapsed()
        })
        .collect();
    for i in 0..fresh.len() {
        part.remove((n + i) as u64);
    }
    ins.sort();
    println!(
        "  single insert into the n={n} index: p50 {:?} p99 {:?}",
        ins[ins.len() / 2],
        ins[ins.len() * 99 / 100]
    );
    println!(
        "semantic search n={n} dims={DIMS}: index build {took:.1?} (approximate: {}); default p50 {p50:?} p99 {p99:?}; recall@1 vs exact {recall:.3}; exact p50 {ep50:?} p99 {ep99:?}",
        part.is_approximate()
    );

    let mut g = c.benchmark_group("cache_semantic_search");
    g.sample_size(20);
    let mut i = 0;
    g.bench_function("foundation", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            black_box(part.nearest(&queries[i]))
        });
    });
    let mut i = 0;
    g.bench_function("exact", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            black_box(exact.nearest(&queries[i]))
        });
    });
    g.finish();
}

/// Exact vs HNSW latency by partition size (printed): where `ann_threshold`
/// should sit.
fn semantic_crossover(_c: &mut Criterion) {
    #[cfg(feature = "ann")]
    {
        const DIMS: usize = 384;
        let mut rng = Rng::new(7);
        for n in [512usize, 1024, 2048, 4096, 8192] {
            let data = dataset(n, DIMS, &mut rng);
            let mut exact = ExactIndex::new(DIMS);
            for (i, v) in data.iter().enumerate() {
                exact.insert(i as u64, v);
            }
            let (part, _) = build(&exact);
            let queries = queries(&data, 300, &mut rng);
            let want: Vec<u64> = queries
                .iter()
                .map(|q| exact.nearest(q).unwrap().0)
                .collect();
            let (e50, e99, _) = measure(&|q| exact.nearest(q), &queries, &want);
            let (a50, a99, recall) = measure(&|q| part.nearest(q), &queries, &want);
            println!(
                "  crossover n={n}: exact p50 {e50:?} p99 {e99:?}; HNSW p50 {a50:?} p99 {a99:?} recall@1 {recall:.3}"
            );
        }
    }
}

criterion_group!(benches, l1_hit, semantic_search, semantic_crossover);
criterion_main!(benches);
