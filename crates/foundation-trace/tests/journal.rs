//! What a thread records while inside a trace reaches the trace in batches
//! (a per-thread journal flushed when the thread leaves the trace). These
//! tests cover the hand-overs between threads that batching must get right:
//! a span created on one thread and used on another while the first is still
//! inside the trace, spans closed on other threads, late field updates, and
//! long runs inside one trace.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod support;

use std::sync::{Arc, Barrier};

use foundation_trace::{LimitsConfig, TraceConfig};
use support::{dispatch, with};

/// A child created on thread A while A stays inside the root is entered and
/// closed on thread B before A leaves: B's steps land in that child, the
/// child's own child (created on B) hangs under it, and the end times and
/// order are right.
#[test]
fn a_span_handed_to_another_thread_while_its_creator_is_inside_the_trace() {
    let (d, h) = dispatch(TraceConfig::default());
    with(&d, || {
        let root = tracing::info_span!("request", correlation_id = "hand-over");
        let _r = root.enter();
        tracing::info!("before");
        let child = tracing::info_span!("worker");
        let d2 = d.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                // `child` is closed on this thread (inside the dispatcher:
                // the registry releases a span's parent through the
                // thread's default dispatcher).
                with(&d2, move || {
                    let c = child.enter();
                    tracing::info!(n = 1u64, "on the other thread");
                    let inner = tracing::info_span!("inner");
                    inner.in_scope(|| tracing::info!("deeper"));
                    drop(c);
                    drop(child);
                });
            });
        });
        tracing::info!("after");
    });
    let t = h.store().find("hand-over").unwrap();
    assert_eq!(
        t.outline(),
        [
            "request",
            "  - before",
            "  worker",
            "    - on the other thread",
            "    inner",
            "      - deeper",
            "  - after",
        ]
    );
    let worker = t.operations.iter().find(|o| o.name == "worker").unwrap();
    let inner = t.operations.iter().find(|o| o.name == "inner").unwrap();
    assert_eq!(inner.parent, Some(worker.id));
    assert!(worker.end.is_some() && inner.end.is_some(), "{t}");
    let step = t
        .steps
        .iter()
        .find(|s| s.name == "on the other thread")
        .unwrap();
    assert_eq!(step.operation, Some(worker.id));
    assert!(t.steps.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// `Span::record` on a span whose operation is still in its creator's
/// journal (the creator has not left the trace) is applied when the trace
/// is taken out.
#[test]
fn a_field_recorded_from_another_thread_reaches_an_operation_still_in_a_journal() {
    let (d, h) = dispatch(TraceConfig::default());
    with(&d, || {
        let root = tracing::info_span!("request", correlation_id = "late-field");
        let _r = root.enter();
        let child = tracing::info_span!("call", tokens = tracing::field::Empty);
        let d2 = d.clone();
        let c2 = child.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                with(&d2, move || {
                    c2.record("tokens", 42u64);
                    drop(c2);
                });
            });
        });
        child.in_scope(|| tracing::info!("inside"));
    });
    let t = h.store().find("late-field").unwrap();
    let call = t.operations.iter().find(|o| o.name == "call").unwrap();
    assert_eq!(call.field("tokens").and_then(|v| v.as_u64()), Some(42));
}

/// Threads take turns inside one trace (a barrier between turns keeps each
/// inside while the others record): every step of every thread arrives,
/// attributed to its own span.
#[test]
fn several_threads_inside_one_trace_at_once_lose_nothing() {
    let (d, h) = dispatch(TraceConfig::default().with_limits(LimitsConfig {
        max_steps: 10_000,
        ..LimitsConfig::default()
    }));
    const THREADS: usize = 4;
    const STEPS: u64 = 200;
    with(&d, || {
        let root = tracing::info_span!("request", correlation_id = "many-threads");
        let _r = root.enter();
        let barrier = Arc::new(Barrier::new(THREADS));
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let span = tracing::info_span!("branch", t = t as u64);
                let d = d.clone();
                let barrier = Arc::clone(&barrier);
                s.spawn(move || {
                    with(&d, move || {
                        let e = span.enter();
                        barrier.wait();
                        for i in 0..STEPS {
                            tracing::info!(i, "step");
                        }
                        barrier.wait();
                        drop(e);
                        drop(span);
                    });
                });
            }
        });
    });
    let t = h.store().find("many-threads").unwrap();
    assert_eq!(t.steps.len(), THREADS * STEPS as usize, "{:?}", t.dropped);
    for branch in t.operations.iter().filter(|o| o.name == "branch") {
        let mine: Vec<u64> = t
            .steps
            .iter()
            .filter(|s| s.operation == Some(branch.id))
            .map(|s| s.field("i").and_then(|v| v.as_u64()).unwrap())
            .collect();
        assert_eq!(mine, (0..STEPS).collect::<Vec<_>>(), "branch {}", branch.id);
        assert!(branch.end.is_some());
    }
    // Positions are unique and in order.
    assert!(t.steps.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// A thread that stays inside a trace for long moves its journal into the
/// trace in batches, so the step cap applies as it goes and the steps kept
/// are the first ones.
#[test]
fn a_long_stay_inside_one_trace_keeps_the_first_steps_up_to_the_cap() {
    let (d, h) = dispatch(TraceConfig::default().with_limits(LimitsConfig {
        max_steps: 300,
        ..LimitsConfig::default()
    }));
    with(&d, || {
        let root = tracing::info_span!("request", correlation_id = "long-stay");
        let _r = root.enter();
        for i in 0..5_000u64 {
            let s = tracing::info_span!("step");
            let _g = s.enter();
            tracing::info!(i, "tick");
        }
    });
    let t = h.store().find("long-stay").unwrap();
    assert_eq!(t.steps.len(), 300);
    assert_eq!(t.dropped.steps, 4_700);
    let first: Vec<u64> = t
        .steps
        .iter()
        .map(|s| s.field("i").and_then(|v| v.as_u64()).unwrap())
        .collect();
    assert_eq!(first, (0..300).collect::<Vec<_>>());
    // Operations beyond their cap are counted, the rest all closed.
    assert_eq!(
        t.operations.len() as u64 + t.dropped.operations,
        5_001,
        "{:?}",
        t.dropped
    );
    assert!(t.operations.iter().all(|o| o.end.is_some()));
}

/// An error captured on a thread while that thread's journal holds the
/// trace's latest steps sees them.
#[test]
fn an_error_snapshot_includes_what_this_thread_has_not_flushed_yet() {
    let (d, _h) = dispatch(TraceConfig::default());
    let err = with(&d, || {
        let root = tracing::info_span!("request");
        let _r = root.enter();
        let call = tracing::info_span!("call");
        let _c = call.enter();
        tracing::info!("prompt built");
        tracing::info!("model called");
        foundation_trace::TracedError::new(foundation_core::Classified::new(
            foundation_core::ErrorKind::Permanent,
            "parse failed",
        ))
    });
    let t = err.trace().unwrap();
    assert_eq!(
        t.outline(),
        [
            "request",
            "  call",
            "    - prompt built",
            "    - model called",
            "    - error",
        ]
    );
    assert_eq!(t.failed_step().map(|s| s.name.as_str()), Some("error"));
}
