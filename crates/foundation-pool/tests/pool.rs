//! Fault-injection tests of the elastic pool under paused tokio time.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail loudly"
)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use foundation_core::{Classify, ErrorKind};
use foundation_pool::{BuildError, ElasticPool, Health, PoolError, QueueMode, RunError};
use support::{FakeError, FakeManager, run_for};

fn pool(min: usize, max: usize) -> (ElasticPool<FakeManager>, FakeManager) {
    let m = FakeManager::default();
    let p = ElasticPool::builder(m.clone(), min, max)
        .with(|c| {
            c.controller.tick = Duration::from_millis(100);
            c.controller.scale_down_cooldown = Duration::from_secs(5);
            c.health.check_interval = Duration::from_secs(5);
        })
        .build()
        .unwrap();
    (p, m)
}

#[tokio::test(start_paused = true)]
async fn warms_up_to_min_in_the_background() {
    let (p, m) = pool(3, 10);
    assert_eq!(p.status().size, 0, "nothing is created before start");
    assert_eq!(p.status().health, Health::Warming);
    p.start().unwrap();
    run_for(Duration::from_millis(50)).await;
    let st = p.status();
    assert_eq!(st.size, 3);
    assert_eq!(st.idle, 3);
    assert_eq!(st.health, Health::Healthy);
    assert_eq!(m.script.live(), 3);
}

#[tokio::test(start_paused = true)]
async fn start_outside_a_runtime_is_a_typed_error() {
    let (p, _) = pool(1, 2);
    let err = std::thread::spawn(move || p.start().unwrap_err())
        .join()
        .unwrap();
    assert!(matches!(err, BuildError::NoRuntime));
}

#[tokio::test(start_paused = true)]
async fn invalid_bounds_are_rejected_with_the_field_named() {
    let err = ElasticPool::builder(FakeManager::default(), 5, 2)
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("min_size: must not exceed max_size (2)"),
        "{err}"
    );
    let (p, _) = pool(1, 4);
    let err = p.set_bounds(9, 3).unwrap_err();
    assert!(
        matches!(err, BuildError::Config(ref e) if e.has_error_at("min_size")),
        "{err}"
    );
    assert_eq!(p.config().max_size, 4, "old config stays live");
}

#[tokio::test(start_paused = true)]
async fn a_failed_check_is_never_handed_out() {
    let (p, m) = pool(3, 3);
    p.start().unwrap();
    run_for(Duration::from_millis(50)).await;
    assert_eq!(p.status().size, 3);
    // All three die while idle; checkout checks them (always).
    let mut cfg = (*p.config()).clone();
    cfg.health.check_on_checkout_after = Some(Duration::ZERO);
    p.reconfigure(cfg).unwrap();
    m.script.break_all_live(0..3);
    let c = p.get().await.unwrap();
    assert!(c.id >= 3, "got broken object {}", c.id);
    assert_eq!(p.status().check_failures_total, 3);
    drop(c);
}

#[tokio::test(start_paused = true)]
async fn background_checks_replace_broken_idle_objects_before_users_see_them() {
    let (p, m) = pool(2, 4);
    // Checkout checks are off: only the background checker can find them.
    let mut cfg = (*p.config()).clone();
    cfg.health.check_on_checkout_after = None;
    p.reconfigure(cfg).unwrap();
    p.start().unwrap();
    run_for(Duration::from_millis(50)).await;
    m.script.break_all_live(0..2);
    run_for(Duration::from_secs(6)).await;
    let st = p.status();
    assert_eq!(st.check_failures_total, 2);
    assert_eq!(st.size, 2, "warm-up replaced them");
    let a = p.get().await.unwrap();
    let b = p.get().await.unwrap();
    assert!(a.id >= 2 && b.id >= 2, "{} {}", a.id, b.id);
}

#[tokio::test(start_paused = true)]
async fn checks_are_bounded_in_time() {
    let (p, m) = pool(1, 1);
    let mut cfg = (*p.config()).clone();
    cfg.health.check_on_checkout_after = Some(Duration::ZERO);
    cfg.health.check_timeout = Duration::from_millis(100);
    p.reconfigure(cfg).unwrap();
    p.start().unwrap();
    run_for(Duration::from_millis(50)).await;
    *m.script.check_delay.lock() = Duration::from_secs(60);
    let t0 = tokio::time::Instant::now();
    // The hanging check is abandoned, the object closed, a fresh one created
    // (its own check also hangs, but fresh objects are not checked).
    let c = p.get_timeout(Duration::from_secs(1)).await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(c.id, 1);
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_is_enforced_on_checkout_return_and_reaping() {
    let (p, m) = pool(1, 4);
    let mut cfg = (*p.config()).clone();
    cfg.health.max_lifetime = Some(Duration::from_secs(3));
    p.reconfigure(cfg).unwrap();
    p.start().unwrap();
    run_for(Duration::from_millis(50)).await;
    let c = p.get().await.unwrap();
    assert_eq!(c.id, 0);
    run_for(Duration::from_secs(4)).await;
    drop(c); // expired while checked out: closed on return
    run_for(Duration::from_millis(200)).await;
    let c = p.get().await.unwrap();
    assert_ne!(c.id, 0);
    drop(c);
    // Idle past its lifetime: the reaper (every 5s) closes it, warm-up replaces it.
    let before = m.script.created.load(Ordering::SeqCst);
    run_for(Duration::from_secs(11)).await;
    assert!(m.script.created.load(Ordering::SeqCst) > before);
    assert_eq!(p.status().size, 1);
}

#[tokio::test(start_paused = true)]
async fn idle_objects_above_min_are_reaped() {
    let (p, _m) = pool(1, 8);
    let mut cfg = (*p.config()).clone();
    cfg.health.idle_timeout = Some(Duration::from_secs(2));
    cfg.controller.enabled = false;
    p.reconfigure(cfg).unwrap();
    p.start().unwrap();
    let held: Vec<_> = support::hold_n(&p, 5).await;
    assert_eq!(p.status().size, 5);
    drop(held);
    run_for(Duration::from_secs(11)).await;
    assert_eq!(p.status().size, 1, "reaped down to min");
}

#[tokio::test(start_paused = true)]
async fn backend_down_fails_fast_without_a_storm_and_recovers_without_restart() {
    let (p, m) = pool(2, 10);
    m.script.set_down(true);
    p.start().unwrap();
    run_for(Duration::from_secs(2)).await;
    let st = p.status();
    assert_eq!(st.health, Health::Unavailable);
    assert!(st.consecutive_create_failures >= 2);
    // 50 concurrent checkouts while down: they fail fast, and the backend
    // sees only a handful of attempts (backoff, one probe at a time).
    let calls_before = m.script.create_calls();
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.get_timeout(Duration::from_secs(5)).await.map(|_| ())
        }));
    }
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert!(
            matches!(err, PoolError::Unavailable { .. } | PoolError::Create(_)),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::Unavailable);
    }
    assert!(
        t0.elapsed() < Duration::from_millis(10),
        "failed fast: {:?}",
        t0.elapsed()
    );
    assert!(
        m.script.create_calls() - calls_before <= 1,
        "storm: {}",
        m.script.create_calls() - calls_before
    );
    // Backoff grows: over 20s of outage only a few attempts.
    let calls_before = m.script.create_calls();
    run_for(Duration::from_secs(20)).await;
    let attempts = m.script.create_calls() - calls_before;
    assert!(
        (1..=8).contains(&attempts),
        "attempts during outage: {attempts}"
    );
    // Backend comes back: the pool recovers on its own.
    m.script.set_down(false);
    run_for(Duration::from_secs(11)).await;
    let st = p.status();
    assert_eq!(st.health, Health::Healthy, "{st:?}");
    assert_eq!(st.size, 2);
    assert!(p.get().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn scripted_create_failures_are_typed_and_retried_by_warm_up() {
    let (p, m) = pool(0, 2);
    m.script.fail_next.store(1, Ordering::SeqCst);
    let err = p.get().await.unwrap_err();
    assert!(
        matches!(err, PoolError::Create(FakeError("scripted failure"))),
        "{err}"
    );
    // Backing off now: fail fast.
    let err = p.get().await.unwrap_err();
    assert!(
        matches!(err, PoolError::Unavailable { failures: 1, .. }),
        "{err}"
    );
    run_for(Duration::from_millis(200)).await;
    assert!(p.get().await.is_ok());
    assert_eq!(p.status().health, Health::Healthy);
}

#[tokio::test(start_paused = true)]
async fn hanging_create_times_out() {
    let (p, m) = pool(0, 2);
    let mut cfg = (*p.config()).clone();
    cfg.create_timeout = Duration::from_millis(300);
    p.reconfigure(cfg).unwrap();
    m.script.hang.store(true, Ordering::SeqCst);
    let err = p.get_timeout(Duration::from_secs(5)).await.unwrap_err();
    assert!(
        matches!(err, PoolError::CreateTimeout(d) if d == Duration::from_millis(300)),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[tokio::test(start_paused = true)]
async fn scales_up_under_a_burst_and_back_down_to_min() {
    let (p, m) = pool(2, 20);
    *m.script.create_delay.lock() = Duration::from_millis(5);
    p.start().unwrap();
    run_for(Duration::from_millis(50)).await;
    assert_eq!(p.status().capacity, 2);
    // A burst: 30 workers, each holding an object 50ms, for 3 seconds.
    let mut workers = Vec::new();
    for _ in 0..30 {
        let p = p.clone();
        workers.push(tokio::spawn(async move {
            let end = tokio::time::Instant::now() + Duration::from_secs(3);
            let mut served = 0u32;
            while tokio::time::Instant::now() < end {
                if let Ok(c) = p.get_timeout(Duration::from_secs(2)).await {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    drop(c);
                    served += 1;
                }
            }
            served
        }));
    }
    run_for(Duration::from_secs(1)).await;
    let peak = p.status().capacity;
    assert!(peak >= 15, "capacity during burst: {peak}");
    for w in workers {
        assert!(w.await.unwrap() > 0);
    }
    let ups = p
        .scale_events()
        .iter()
        .filter(|e| matches!(e.decision, foundation_pool::Decision::Grow { .. }))
        .count();
    assert!(ups >= 1);
    // Quiet: shrinks slowly back to min.
    run_for(Duration::from_secs(120)).await;
    let st = p.status();
    assert_eq!(st.capacity, 2, "{st:?}");
    assert!(st.size <= 2, "{st:?}");
    assert!(
        p.scale_events()
            .iter()
            .any(|e| matches!(e.decision, foundation_pool::Decision::Shrink { .. }))
    );
    assert!(p.decisions().borrow().ticks > 100);
}

#[tokio::test(start_paused = true)]
async fn saturated_pool_fails_fast_when_the_deadline_is_unreachable() {
    let (p, _m) = pool(0, 2);
    // Learn hold times of ~1s.
    for _ in 0..4 {
        let c = p.get().await.unwrap();
        run_for(Duration::from_secs(1)).await;
        drop(c);
    }
    let a = p.get().await.unwrap();
    let b = p.get().await.unwrap();
    // Full at max: a 100ms deadline cannot be met when a return takes ~0.5s.
    let t0 = tokio::time::Instant::now();
    let err = p.get_timeout(Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(err, PoolError::Overloaded { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Overloaded);
    assert_eq!(t0.elapsed(), Duration::ZERO);
    // A reachable deadline waits and gets the object.
    let waiter = {
        let p = p.clone();
        tokio::spawn(async move { p.get_timeout(Duration::from_secs(5)).await.map(|c| c.id) })
    };
    run_for(Duration::from_millis(300)).await;
    drop(a);
    assert!(waiter.await.unwrap().is_ok());
    drop(b);
}

#[tokio::test(start_paused = true)]
async fn without_fail_fast_a_checkout_waits_out_its_deadline() {
    let (p, _m) = pool(0, 1);
    let mut cfg = (*p.config()).clone();
    cfg.fail_fast = false;
    p.reconfigure(cfg).unwrap();
    let _a = p.get().await.unwrap();
    let t0 = tokio::time::Instant::now();
    let err = p.get_timeout(Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(err, PoolError::Timeout { .. }), "{err}");
    assert_eq!(t0.elapsed(), Duration::from_millis(100));
    assert_eq!(p.status().waiting, 0, "the cancelled waiter left the queue");
}

#[tokio::test(start_paused = true)]
async fn run_distinguishes_checkout_timeout_operation_timeout_and_operation_error() {
    let (p, m) = pool(0, 1);
    // Operation error: object returned.
    let err = p
        .run(Duration::from_secs(1), async |c: &mut support::Conn| {
            let _ = c.id;
            Err::<(), _>(FakeError("bad request"))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Operation(FakeError("bad request"))));
    assert_eq!(p.status().idle, 1);
    // Operation timeout: object discarded.
    let err = p
        .run(Duration::from_millis(200), async |_: &mut support::Conn| {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<(), FakeError>(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, RunError::OperationTimeout { elapsed } if elapsed == Duration::from_millis(200))
    );
    assert_eq!(p.status().size, 0);
    assert_eq!(m.script.live(), 0);
    // Checkout timeout: the only object is held.
    let held = p.get().await.unwrap();
    let mut cfg = (*p.config()).clone();
    cfg.fail_fast = false;
    p.reconfigure(cfg).unwrap();
    let err = p
        .run(Duration::from_millis(50), async |_: &mut support::Conn| {
            Ok::<(), FakeError>(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, RunError::Checkout(PoolError::Timeout { .. })),
        "{err}"
    );
    drop(held);
    // Success.
    let id = p
        .run(Duration::from_secs(1), async |c: &mut support::Conn| {
            Ok::<_, FakeError>(c.id)
        })
        .await
        .unwrap();
    assert_eq!(id, 1);
    assert_eq!(p.status().idle, 1);
}

#[tokio::test(start_paused = true)]
async fn run_discards_the_object_when_the_operation_panics() {
    let (p, m) = pool(0, 2);
    let p2 = p.clone();
    let joined = tokio::spawn(async move {
        p2.run(
            Duration::from_secs(1),
            async |_: &mut support::Conn| -> Result<(), FakeError> { panic!("operation blew up") },
        )
        .await
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    let st = p.status();
    assert_eq!((st.size, st.in_use), (0, 0), "{st:?}");
    assert_eq!(m.script.live(), 0);
    assert!(p.get().await.is_ok(), "the pool still works");
}

#[tokio::test(start_paused = true)]
async fn run_discards_the_object_when_cancelled() {
    let (p, m) = pool(0, 2);
    let p2 = p.clone();
    let task = tokio::spawn(async move {
        p2.run(Duration::from_secs(60), async |_: &mut support::Conn| {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<(), FakeError>(())
        })
        .await
    });
    run_for(Duration::from_millis(100)).await;
    assert_eq!(p.status().in_use, 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let st = p.status();
    assert_eq!((st.size, st.in_use, st.waiting), (0, 0, 0), "{st:?}");
    assert_eq!(m.script.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelled_checkouts_leak_nothing() {
    let (p, _m) = pool(0, 1);
    let held = p.get().await.unwrap();
    let mut cfg = (*p.config()).clone();
    cfg.fail_fast = false;
    p.reconfigure(cfg).unwrap();
    let mut waiters = Vec::new();
    for _ in 0..10 {
        let p = p.clone();
        waiters.push(tokio::spawn(async move {
            p.get_timeout(Duration::from_secs(60)).await.map(|_| ())
        }));
    }
    run_for(Duration::from_millis(10)).await;
    assert_eq!(p.status().waiting, 10);
    for w in &waiters {
        w.abort();
    }
    for w in waiters {
        let _ = w.await;
    }
    assert_eq!(p.status().waiting, 0);
    drop(held);
    let st = p.status();
    assert_eq!((st.size, st.idle, st.in_use), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn broken_objects_are_closed_on_return() {
    let (p, m) = pool(0, 2);
    let mut c = p.get().await.unwrap();
    c.mark_broken();
    drop(c);
    assert_eq!(p.status().size, 0);
    assert_eq!(m.script.live(), 0);
    let c = p.get().await.unwrap();
    c.discard();
    assert_eq!(m.script.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn runtime_reconfiguration_moves_bounds() {
    let (p, _m) = pool(1, 4);
    p.start().unwrap();
    run_for(Duration::from_millis(50)).await;
    assert_eq!(p.status().size, 1);
    p.set_bounds(3, 6).unwrap();
    run_for(Duration::from_millis(300)).await;
    let st = p.status();
    assert_eq!((st.size, st.min_size, st.max_size), (3, 3, 6));
    assert!(st.capacity >= 3 && st.capacity <= 6);
    let mut cfg = (*p.config()).clone();
    cfg.name = "other".into();
    assert!(matches!(
        p.reconfigure(cfg),
        Err(BuildError::Immutable("name"))
    ));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_pool_stops_background_tasks_and_closes_objects() {
    let (p, m) = pool(3, 4);
    p.start().unwrap();
    run_for(Duration::from_millis(50)).await;
    assert_eq!(m.script.live(), 3);
    drop(p);
    run_for(Duration::from_secs(1)).await;
    assert_eq!(m.script.live(), 0);
    assert_eq!(
        std::sync::Arc::strong_count(&m.script),
        1,
        "no task holds the manager"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_waiters() {
    let (p, _m) = pool(0, 1);
    let mut cfg = (*p.config()).clone();
    cfg.fail_fast = false;
    p.reconfigure(cfg).unwrap();
    let _held = p.get().await.unwrap();
    let w = {
        let p = p.clone();
        tokio::spawn(async move { p.get_timeout(Duration::from_secs(60)).await.map(|_| ()) })
    };
    run_for(Duration::from_millis(10)).await;
    p.shutdown();
    let err = w.await.unwrap().unwrap_err();
    assert!(matches!(err, PoolError::Closed));
    assert_eq!(err.kind(), ErrorKind::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn checks_come_due_on_the_fast_path_while_the_controller_keeps_time() {
    let (p, m) = pool(2, 4);
    let mut cfg = (*p.config()).clone();
    cfg.health.check_on_checkout_after = Some(Duration::from_secs(1));
    cfg.health.check_interval = Duration::from_secs(60);
    p.reconfigure(cfg).unwrap();
    p.start().unwrap();
    run_for(Duration::from_millis(50)).await;
    // Fresh objects are not checked again right away.
    let checks = m.script.checks.load(Ordering::SeqCst);
    drop(p.get().await.unwrap());
    assert_eq!(m.script.checks.load(Ordering::SeqCst), checks);
    m.script.break_all_live(0..2);
    run_for(Duration::from_millis(1_500)).await;
    let c = p.get().await.unwrap();
    assert!(c.id >= 2, "stale object {} handed out", c.id);
    // After shutdown there is no coarse clock: checks still come due.
    drop(c);
    p.shutdown();
}

#[tokio::test(start_paused = true)]
async fn queue_mode_picks_the_idle_object() {
    for (mode, expected) in [(QueueMode::Lifo, 2), (QueueMode::Fifo, 0)] {
        let p = ElasticPool::builder(FakeManager::default(), 0, 3)
            .with(|c| c.queue_mode = mode)
            .build()
            .unwrap();
        // Return 0, 1, 2 in that order.
        drop(support::hold_n(&p, 3).await);
        let c = p.get().await.unwrap();
        assert_eq!(c.id, expected, "{mode:?}");
        // The queue mode is fixed at build.
        let mut cfg = (*p.config()).clone();
        cfg.queue_mode = QueueMode::Fifo;
        if mode == QueueMode::Lifo {
            assert!(matches!(
                p.reconfigure(cfg),
                Err(BuildError::Immutable("queue_mode"))
            ));
        }
    }
}

/// Checkouts cache when an object next needs attention; a reconfiguration
/// (lifetime or check interval) must still apply to objects whose cached
/// value predates it.
#[tokio::test(start_paused = true)]
async fn reconfigured_lifetime_and_checks_apply_to_objects_seen_before() {
    let (p, m) = pool(1, 1);
    let mut cfg = (*p.config()).clone();
    cfg.health.check_on_checkout_after = None;
    cfg.health.check_interval = Duration::from_secs(600);
    p.reconfigure(cfg).unwrap();
    p.start().unwrap();
    run_for(Duration::from_millis(50)).await;
    for _ in 0..3 {
        assert_eq!(p.get().await.unwrap().id, 0);
    }
    // A check that comes due after the object was cached: the broken object
    // is checked and replaced, never handed out.
    m.script.break_all_live([0]);
    let mut cfg = (*p.config()).clone();
    cfg.health.check_on_checkout_after = Some(Duration::from_secs(1));
    p.reconfigure(cfg).unwrap();
    run_for(Duration::from_millis(1_500)).await;
    let c = p.get().await.unwrap();
    assert_eq!(c.id, 1, "broken object handed out after reconfiguration");
    drop(c);
    for _ in 0..3 {
        assert_eq!(p.get().await.unwrap().id, 1);
    }
    // A lifetime set after the object was cached ends it on the next return.
    let mut cfg = (*p.config()).clone();
    cfg.health.max_lifetime = Some(Duration::from_secs(2));
    cfg.health.check_on_checkout_after = None;
    p.reconfigure(cfg).unwrap();
    let c = p.get().await.unwrap();
    assert_eq!(c.id, 1);
    run_for(Duration::from_secs(3)).await;
    drop(c);
    run_for(Duration::from_millis(200)).await;
    let c = p.get().await.unwrap();
    assert_eq!(c.id, 2, "object past its new lifetime handed out");
}
