//! foundation-metrics against its anchors, in one criterion run.
//!
//! - `metrics_record`: one sample into a histogram shared by all threads: our
//!   lock-free sketch vs hdrhistogram's `SyncHistogram` recorder (a
//!   per-thread buffer) vs metrics-util's `AtomicBucket`.
//! - `metrics_record_buffered`: our per-owner `SketchRecorder` vs
//!   hdrhistogram's `SyncHistogram` recorder (both buffer, then publish).
//! - `metrics_quantile_1m`: p99 of a series holding 1M samples: our atomic
//!   sketch (queried in place) vs hdrhistogram's `value_at_quantile`.
//! - `metrics_facade_record`: `histogram!(..).record(v)` through the facade
//!   into our recorder vs metrics-exporter-prometheus's recorder.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmarks fail loudly"
)]
#![allow(missing_docs, reason = "criterion macros")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use foundation_metrics::MetricsRecorder;
use foundation_metrics::sketch::{AtomicSketch, Quantile};
use hdrhistogram::{Histogram, SyncHistogram};
use metrics_util::storage::AtomicBucket;

/// LLM-like latencies in seconds (deterministic), cycled through.
fn samples() -> Vec<f64> {
    let mut state = 42u64;
    let mut unit = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        #[allow(clippy::cast_precision_loss, reason = "53-bit fraction")]
        let u = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64;
        u
    };
    (0..4096)
        .map(|_| {
            let n = (-2.0 * unit().max(1e-300).ln()).sqrt()
                * (2.0 * std::f64::consts::PI * unit()).cos();
            if unit() < 0.95 {
                0.5 * (0.4 * n).exp()
            } else {
                5.5 * (0.3 * n).exp()
            }
        })
        .collect()
}

/// Times `iters` calls of `op` in chunks of 100 000, running `between`
/// (untimed) after each chunk: for anchors that buffer every sample until
/// drained, so memory stays bounded during the run.
fn chunked(iters: u64, mut op: impl FnMut(), mut between: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(100_000);
        let start = Instant::now();
        for _ in 0..n {
            op();
        }
        total += start.elapsed();
        between();
        left -= n;
    }
    total
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "positive microseconds"
)]
fn micros(v: f64) -> u64 {
    (v * 1e6) as u64
}

fn record(c: &mut Criterion) {
    let data = samples();
    let ints: Vec<u64> = data.iter().map(|v| micros(*v)).collect();
    let mut g = c.benchmark_group("metrics_record");

    let sketch = AtomicSketch::new();
    let mut i = 0usize;
    g.bench_function("foundation", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            sketch.record(black_box(data[i]));
        });
    });

    let hist: SyncHistogram<u64> = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 2)
        .unwrap()
        .into_sync();
    let mut rec = hist.recorder();
    let mut i = 0usize;
    g.bench_function("hdrhistogram", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            rec.record(black_box(ints[i])).unwrap();
        });
    });

    // AtomicBucket keeps every sample until cleared: clear between timed
    // chunks so memory stays bounded (the clear is not timed).
    let bucket = AtomicBucket::<f64>::new();
    let mut i = 0usize;
    g.bench_function("metrics_util_atomicbucket", |b| {
        b.iter_custom(|iters| {
            chunked(
                iters,
                || {
                    i = (i + 1) & 4095;
                    bucket.push(black_box(data[i]));
                },
                || bucket.clear(),
            )
        });
    });
    g.finish();

    // Like for like with hdrhistogram's per-thread `Recorder`: our buffered
    // single-owner recorder in front of the shared sketch.
    let mut g = c.benchmark_group("metrics_record_buffered");
    let shared = AtomicSketch::new();
    let mut ours = shared.recorder();
    let mut i = 0usize;
    g.bench_function("foundation", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            ours.record(black_box(data[i]));
        });
    });
    let mut i = 0usize;
    g.bench_function("hdrhistogram", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            rec.record(black_box(ints[i])).unwrap();
        });
    });
    g.finish();
}

fn quantile(c: &mut Criterion) {
    let data = samples();
    let mut g = c.benchmark_group("metrics_quantile_1m");
    let sketch = AtomicSketch::new();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 2).unwrap();
    for k in 0..1_000_000usize {
        let v = data[k & 4095] * (1.0 + (k % 97) as f64 / 1000.0);
        sketch.record(v);
        hist.record(micros(v)).unwrap();
    }
    g.bench_function("foundation", |b| {
        b.iter(|| black_box(sketch.quantile(black_box(Quantile::P99))))
    });
    g.bench_function("hdrhistogram", |b| {
        b.iter(|| black_box(hist.value_at_quantile(black_box(0.99))))
    });
    g.finish();
}

fn facade(c: &mut Criterion) {
    let data = samples();
    let mut g = c.benchmark_group("metrics_facade_record");

    let ours = MetricsRecorder::builder().build().unwrap();
    {
        let _guard = metrics::set_default_local_recorder(&ours);
        let mut i = 0usize;
        g.bench_function("foundation", |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                metrics::histogram!("llm_latency_seconds", "model" => "small")
                    .record(black_box(data[i]));
            });
        });
    }

    let prom = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = prom.handle();
    {
        let _guard = metrics::set_default_local_recorder(&prom);
        let mut i = 0usize;
        g.bench_function("prometheus_exporter", |b| {
            // Its histograms buffer raw samples until upkeep: run upkeep
            // between timed chunks, as its docs require, untimed.
            b.iter_custom(|iters| {
                chunked(
                    iters,
                    || {
                        i = (i + 1) & 4095;
                        metrics::histogram!("llm_latency_seconds", "model" => "small")
                            .record(black_box(data[i]));
                    },
                    || handle.run_upkeep(),
                )
            });
        });
    }
    g.finish();
}

criterion_group!(benches, record, quantile, facade);
criterion_main!(benches);
