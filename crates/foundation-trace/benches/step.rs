//! Cost per step: a child span created, entered and exited, with one event of
//! three fields inside, under
//!
//! - `registry`: `tracing_subscriber::registry()` alone (the anchor),
//! - `foundation` in `trace_step_recording`: registry + `TraceLayer` recording
//!   every trace,
//! - `foundation` in `trace_step_sampled_off`: registry + `TraceLayer` with
//!   head sampling at 0 (successful traces are not recorded).
//!
//! `trace_step_recording_two_threads` runs the recorded step on two threads
//! at once (each with its own root operations) on one subscriber: shared
//! state (the span table, the registry's slab) must not make them wait for
//! each other.
//!
//! `trace_event_step_recording` measures the lighter shape: a step is one
//! event inside an operation span that already exists and is re-entered.
//!
//! Steps run inside root operations of 64 steps each, so root creation, trace
//! completion and store eviction are amortized into the per-step cost as they
//! would be in a service.
#![allow(clippy::unwrap_used, reason = "a bench fails loudly")]
#![allow(missing_docs, reason = "criterion generates the entry point")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use foundation_trace::{TraceConfig, TraceLayer};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

const STEPS_PER_ROOT: u64 = 64;

fn steps(d: &Dispatch, iters: u64) -> Duration {
    tracing::dispatcher::with_default(d, || {
        let start = Instant::now();
        let mut done = 0;
        while done < iters {
            let root = tracing::info_span!("request");
            let _r = root.enter();
            let n = STEPS_PER_ROOT.min(iters - done);
            for i in 0..n {
                let step = tracing::info_span!("step");
                let _g = step.enter();
                tracing::info!(tokens = black_box(i), model = "gpt-4o-mini", ok = true);
            }
            done += n;
        }
        start.elapsed()
    })
}

/// The lighter shape: the operation span exists and is re-entered (as an
/// instrumented future is on each poll); each step is one event.
fn events(d: &Dispatch, iters: u64) -> Duration {
    tracing::dispatcher::with_default(d, || {
        let start = Instant::now();
        let mut done = 0;
        while done < iters {
            let root = tracing::info_span!("request");
            let n = STEPS_PER_ROOT.min(iters - done);
            for i in 0..n {
                let _g = root.enter();
                tracing::info!(tokens = black_box(i), model = "gpt-4o-mini", ok = true);
            }
            done += n;
        }
        start.elapsed()
    })
}

/// `steps` on two threads at once (each its own root operations), on one
/// subscriber: the time for `iters` steps in all, so a layer that scales
/// costs half per step what it costs on one thread.
fn steps_two_threads(d: &Dispatch, iters: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| steps(d, iters / 2));
        }
    });
    start.elapsed()
}

fn registry() -> Dispatch {
    Dispatch::new(tracing_subscriber::registry())
}

fn with_layer(config: TraceConfig) -> Dispatch {
    let layer = TraceLayer::new(config).unwrap();
    Dispatch::new(tracing_subscriber::registry().with(layer))
}

/// Times `n` steps of `shape` on a subscriber made fresh for the sample.
///
/// The bare registry never frees a closed span (only a layered subscriber
/// drives its close), so one long-lived registry grows by every span of the
/// whole run and its samples drift; a fresh subscriber per sample (after a
/// short warm-up) keeps every sample alike, and both sides get the same
/// treatment.
fn sample(make: impl Fn() -> Dispatch, shape: fn(&Dispatch, u64) -> Duration, n: u64) -> Duration {
    let d = make();
    shape(&d, 4 * STEPS_PER_ROOT);
    shape(&d, n)
}

/// One group: `shape` on the bare registry (the anchor) and on `foundation`.
fn compare(
    c: &mut Criterion,
    group: &str,
    foundation: fn() -> Dispatch,
    shape: fn(&Dispatch, u64) -> Duration,
) {
    let mut g = c.benchmark_group(group);
    g.bench_function("registry", |b| {
        b.iter_custom(|n| sample(registry, shape, n))
    });
    g.bench_function("foundation", |b| {
        b.iter_custom(|n| sample(foundation, shape, n))
    });
    g.finish();
}

fn recording() -> Dispatch {
    with_layer(TraceConfig::default())
}

fn sampled_off() -> Dispatch {
    with_layer(TraceConfig::default().with_sample_rate(0.0))
}

fn bench(c: &mut Criterion) {
    compare(c, "trace_step_recording", recording, steps);
    compare(c, "trace_step_sampled_off", sampled_off, steps);
    compare(
        c,
        "trace_step_recording_two_threads",
        recording,
        steps_two_threads,
    );
    compare(c, "trace_event_step_recording", recording, events);
}

criterion_group!(benches, bench);
criterion_main!(benches);
