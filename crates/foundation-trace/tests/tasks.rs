//! Traces follow operations across `.await`, instrumented spawned tasks and
//! threads; concurrent traces stay separate.

mod support;

use std::time::Duration;

use foundation_trace::{TraceConfig, current_correlation_id};
use support::{dispatch, dispatch_tokio_clock, with};
use tracing::instrument::WithSubscriber;
use tracing::{Instrument, Span, info_span};

#[tokio::test(start_paused = true)]
async fn nested_operations_across_tasks_and_awaits() {
    let (d, h) = dispatch_tokio_clock(TraceConfig::default());
    // The registry closes a parent through the *current* dispatcher when its
    // last child closes, so the dispatcher must be the default wherever
    // spans are dropped (here: the runtime's one thread), as it is for an
    // application that installs a global subscriber.
    let _default = tracing::dispatcher::set_default(&d);
    async {
        let root = info_span!("request", correlation_id = "r1");
        async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tracing::info!("planned");
            let child = tokio::spawn(
                async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    assert_eq!(current_correlation_id().as_deref(), Some("r1"));
                    tracing::info!(n = 1u64, "in spawned task");
                    async { tracing::info!("deeper") }
                        .instrument(info_span!("nested"))
                        .await;
                }
                .instrument(info_span!("spawned"))
                .with_current_subscriber(),
            );
            child.await.unwrap();
            tracing::info!("joined");
        }
        .instrument(root)
        .await;
    }
    .await;

    let t = h.store().find("r1").expect("kept");
    assert_eq!(
        t.outline(),
        [
            "request",
            "  - planned",
            "  spawned",
            "    - in spawned task",
            "    nested",
            "      - deeper",
            "  - joined",
        ]
    );
    // Paused time makes the timings exact.
    assert_eq!(t.steps[0].at, Duration::from_millis(5));
    assert_eq!(t.steps[1].at, Duration::from_millis(15));
    assert_eq!(t.operations[1].duration(), Some(Duration::from_millis(10)));
    assert_eq!(t.duration, Some(Duration::from_millis(15)));
}

#[test]
fn span_current_carries_the_trace_to_other_threads() {
    let (d, h) = dispatch(TraceConfig::default());
    with(&d, || {
        let _root = info_span!("fan-out", correlation_id = "threads").entered();
        let handles: Vec<_> = (0..4u64)
            .map(|i| {
                let parent = Span::current();
                let d = d.clone();
                std::thread::spawn(move || {
                    with(&d, || {
                        let _w = info_span!(parent: &parent, "worker", i).entered();
                        tracing::info!(i, "working");
                        current_correlation_id()
                    })
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().as_deref(), Some("threads"));
        }
    });
    let t = h.store().find("threads").unwrap();
    assert_eq!(t.operations.len(), 5);
    assert!(
        t.operations[1..]
            .iter()
            .all(|o| o.parent == Some(0) && o.name == "worker")
    );
    assert_eq!(t.steps.len(), 4);
    // Each step sits in its own worker operation.
    for s in &t.steps {
        let op = t.operation(s.operation.unwrap()).unwrap();
        assert_eq!(op.field("i"), s.field("i"));
    }
}

#[test]
fn many_concurrent_traces_stay_separate() {
    let (d, h) = dispatch(
        TraceConfig::default().with_retention(foundation_trace::RetentionConfig::last(1000)),
    );
    let worker_default = d.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(move || {
            // Worker threads keep the dispatcher as their default for life.
            std::mem::forget(tracing::dispatcher::set_default(&worker_default));
        })
        .build()
        .unwrap();
    let _default = tracing::dispatcher::set_default(&d);
    rt.block_on(run_many(&d));
    drop(rt);
    check_many(&h);
}

#[allow(clippy::unwrap_used, reason = "test helper, fails loudly")]
async fn run_many(d: &tracing::Dispatch) {
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let fut = async move {
            for step in 0..5u64 {
                tokio::task::yield_now().await;
                tracing::info!(req = i, step, "step");
            }
            let inner = async move {
                tokio::task::yield_now().await;
                tracing::info!(req = i, "inner");
            };
            tokio::spawn(
                inner
                    .instrument(info_span!("sub"))
                    .with_current_subscriber(),
            )
            .await
            .unwrap();
        }
        .instrument(info_span!(
            "req",
            correlation_id = format!("req-{i}").as_str()
        ))
        .with_subscriber(d.clone());
        tasks.push(tokio::spawn(fut));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[allow(clippy::unwrap_used, reason = "test helper, fails loudly")]
fn check_many(h: &foundation_trace::TraceHandle) {
    assert_eq!(h.store().len(), 200);
    for i in 0..200u64 {
        let t = h.store().find(&format!("req-{i}")).unwrap();
        assert_eq!(t.steps.len(), 6, "req-{i}");
        assert!(
            t.steps
                .iter()
                .all(|s| s.field("req").and_then(|v| v.as_u64()) == Some(i)),
            "req-{i} holds another request's steps"
        );
        assert_eq!(t.operations.len(), 2);
    }
}
