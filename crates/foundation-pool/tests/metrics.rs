//! The pool reports through the `metrics` facade: creations, failures,
//! closed objects by reason, scale events, waits.

mod support;

use std::time::Duration;

use foundation_pool::ElasticPool;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use support::{FakeManager, run_for};

fn counter(snapshot: &Snapshotter, name: &str, label: (&str, &str)) -> u64 {
    snapshot
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| {
            key.key().name() == name
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == label.0 && l.value() == label.1)
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum()
}

#[tokio::test(start_paused = true)]
async fn pool_events_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let m = FakeManager::default();
    // Handles are bound when the pool is built.
    let pool = metrics::with_local_recorder(&recorder, || {
        ElasticPool::builder(m.clone(), 2, 10)
            .with_name("m")
            .with(|c| {
                c.controller.tick = Duration::from_millis(100);
                c.health.check_on_checkout_after = Some(Duration::ZERO);
            })
            .build()
            .unwrap()
    });
    pool.start().unwrap();
    run_for(Duration::from_millis(50)).await;
    assert_eq!(
        counter(
            &snapshotter,
            "foundation_pool_objects_created_total",
            ("pool", "m")
        ),
        2
    );

    m.script.break_all_live(0..2);
    drop(pool.get().await.unwrap());
    assert_eq!(
        counter(
            &snapshotter,
            "foundation_pool_objects_closed_total",
            ("reason", "check_failed")
        ),
        2
    );

    m.script
        .fail_next
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let held = support::hold_n(&pool, 1).await; // idle object from the replacement
    assert!(pool.get().await.is_err());
    drop(held);
    assert_eq!(
        counter(
            &snapshotter,
            "foundation_pool_create_failures_total",
            ("pool", "m")
        ),
        1
    );

    // Demand beyond capacity makes the controller grow.
    run_for(Duration::from_secs(1)).await;
    let held = support::hold_n(&pool, 6).await;
    run_for(Duration::from_secs(2)).await;
    assert!(
        counter(
            &snapshotter,
            "foundation_pool_scale_events_total",
            ("direction", "up")
        ) >= 1
    );
    drop(held);
}
