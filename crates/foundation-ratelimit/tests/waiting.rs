//! Async waiting under paused tokio time: FIFO, bounds, deadlines,
//! cancellation, reconcile wake-ups and reconfiguration.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests and their helpers fail loudly"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use foundation_ratelimit::{AcquireError, Charge, DimensionConfig, LimiterConfig};
use parking_lot_free::Log;
use tokio::time::Instant;

/// A tiny shared log of admissions (avoids a parking_lot dev-dependency).
#[allow(unreachable_pub)]
mod parking_lot_free {
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Log(Mutex<Vec<usize>>);

    impl Log {
        pub fn push(&self, v: usize) {
            self.0.lock().unwrap().push(v);
        }
        pub fn take(&self) -> Vec<usize> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }
}

fn tokens(per_sec: u64) -> LimiterConfig {
    LimiterConfig::new().with_dimension(DimensionConfig::per_second("tokens", per_sec))
}

/// Spawns a task waiting for `cost` tokens (it queues before this returns);
/// the task yields how long it waited.
async fn spawn_waiter(
    limiter: &foundation_ratelimit::RateLimiter,
    cost: u64,
) -> tokio::task::JoinHandle<Result<Duration, AcquireError>> {
    let l = limiter.clone();
    let task = tokio::spawn(async move {
        let start = Instant::now();
        l.acquire(Charge::from([cost]))
            .await
            .map(|_| start.elapsed())
    });
    tokio::task::yield_now().await;
    task
}

#[tokio::test(start_paused = true)]
async fn waits_exactly_until_capacity_returns() {
    let limiter = support::tokio_clock(tokens(100));
    let _ = limiter.acquire(Charge::from([100])).await.unwrap();
    let start = Instant::now();
    let _ = limiter.acquire(Charge::from([50])).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn fifo_large_request_is_not_starved() {
    let limiter = support::tokio_clock(tokens(100));
    let _ = limiter.acquire(Charge::from([100])).await.unwrap();
    let log = Arc::new(Log::default());
    let mut tasks = Vec::new();
    // A large request first, then a stream of small ones that would each fit earlier.
    for (i, cost) in [(0usize, 90u64), (1, 5), (2, 5), (3, 5)] {
        let (limiter, log) = (limiter.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            let _ = limiter.acquire(Charge::from([cost])).await.unwrap();
            log.push(i);
        }));
        tokio::task::yield_now().await;
    }
    // While waiters are queued, try_acquire does not jump the queue.
    assert!(matches!(
        limiter.try_acquire(Charge::from([1])),
        Err(AcquireError::Queued { waiters: 4 })
    ));
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(log.take(), [0, 1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn queue_is_bounded_by_count_and_cost() {
    let cfg = LimiterConfig::new()
        .with_dimension(DimensionConfig::per_second("tokens", 100).with_max_queued(150))
        .with_max_waiters(2);
    let limiter = support::tokio_clock(cfg);
    let _ = limiter.acquire(Charge::from([100])).await.unwrap();
    let a = spawn_waiter(&limiter, 100).await;
    let err = limiter.acquire(Charge::from([60])).await.unwrap_err();
    assert!(matches!(err, AcquireError::QueueFull { .. }), "{err}");
    let b = spawn_waiter(&limiter, 10).await;
    let err = limiter.acquire(Charge::from([1])).await.unwrap_err();
    assert!(err.to_string().contains("2 waiters"), "{err}");
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn deadline_fails_fast_with_the_predicted_wait() {
    let limiter = support::tokio_clock(tokens(100));
    let _ = limiter.acquire(Charge::from([100])).await.unwrap();
    let start = Instant::now();
    let err = limiter
        .acquire_within(Charge::from([80]), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "must fail without sleeping"
    );
    assert_eq!(
        err,
        AcquireError::WouldExceedDeadline {
            predicted: Duration::from_millis(800),
            deadline: Duration::from_millis(500)
        }
    );
    assert_eq!(err.retry_after(), Some(Duration::from_millis(800)));
    // Within the deadline it waits and succeeds.
    let _ = limiter
        .acquire_within(Charge::from([80]), Duration::from_millis(900))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(800));
}

#[tokio::test(start_paused = true)]
async fn prediction_counts_the_queue_ahead() {
    let limiter = support::tokio_clock(tokens(100));
    let _ = limiter.acquire(Charge::from([100])).await.unwrap();
    let ahead = spawn_waiter(&limiter, 50).await;
    assert_eq!(
        limiter.predicted_wait(&Charge::from([30])).unwrap(),
        Duration::from_millis(800)
    );
    let err = limiter
        .acquire_within(Charge::from([30]), Duration::from_millis(700))
        .await
        .unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_millis(800)));
    ahead.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiter_leaves_nothing_behind() {
    let limiter = support::tokio_clock(tokens(100));
    let _ = limiter.acquire(Charge::from([100])).await.unwrap();
    let head = spawn_waiter(&limiter, 100).await;
    let second = spawn_waiter(&limiter, 10).await;
    assert_eq!(limiter.snapshot().waiters, 2);
    // Cancel the head: the next waiter becomes head and is admitted at 100ms, not after 1s.
    head.abort();
    assert!(head.await.unwrap_err().is_cancelled());
    let start = Instant::now();
    second.await.unwrap().unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(limiter.snapshot().waiters, 0);
    // And the cancelled waiter reserved nothing: all 110 tokens used are back 1.1s after the start.
    tokio::time::advance(Duration::from_millis(1_000)).await;
    assert_eq!(limiter.snapshot().dimensions[0].remaining, 100);
}

#[tokio::test(start_paused = true)]
async fn timeout_while_waiting_dequeues() {
    let cfg = tokens(100).with_concurrency(1);
    let limiter = support::tokio_clock(cfg);
    let held = limiter.acquire(Charge::from([1])).await.unwrap();
    let err = limiter
        .acquire_within(Charge::from([1]), Duration::from_millis(250))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AcquireError::DeadlineElapsed {
            deadline: Duration::from_millis(250)
        }
    );
    assert_eq!(limiter.snapshot().waiters, 0);
    drop(held);
    assert!(limiter.try_acquire(Charge::from([1])).is_ok());
}

#[tokio::test(start_paused = true)]
async fn released_slot_and_refund_wake_the_head_early() {
    let limiter = support::tokio_clock(tokens(100).with_concurrency(1));
    let mut permit = limiter.acquire(Charge::from([100])).await.unwrap();
    let waiter = spawn_waiter(&limiter, 60).await;
    tokio::time::advance(Duration::from_millis(10)).await;
    // The response used 30 tokens, not 100: 70 come back now; releasing the slot admits the waiter.
    permit.reconcile(Charge::from([30]));
    drop(permit);
    let waited = waiter.await.unwrap().unwrap();
    assert_eq!(waited, Duration::from_millis(10));
}

#[tokio::test(start_paused = true)]
async fn reconfiguration_keeps_state_and_waiters() {
    let limiter = support::tokio_clock(tokens(100));
    let _ = limiter.acquire(Charge::from([100])).await.unwrap();
    let waiter = spawn_waiter(&limiter, 100).await;
    // Ten times the rate: the used 100 tokens now refill in 100ms and the
    // waiter (still queued) is admitted then, not after 1s.
    limiter
        .reconfigure(tokens(1_000).with_dimension(DimensionConfig::per_second("x", 1)))
        .unwrap_err();
    let cfg = LimiterConfig::new().with_dimension(DimensionConfig::per_second("tokens", 1_000));
    limiter.reconfigure(cfg).unwrap();
    assert_eq!(
        limiter.snapshot().dimensions[0].remaining,
        900,
        "used amount is kept"
    );
    let waited = waiter.await.unwrap().unwrap();
    assert_eq!(waited, Duration::ZERO);
    assert_eq!(limiter.config().dimensions[0].limit, 1_000);
}

#[tokio::test(start_paused = true)]
async fn shrinking_burst_fails_waiters_that_can_never_fit() {
    let limiter = support::tokio_clock(tokens(100));
    let _ = limiter.acquire(Charge::from([100])).await.unwrap();
    let waiter = spawn_waiter(&limiter, 80).await;
    limiter.reconfigure(tokens(50)).unwrap();
    let err = waiter.await.unwrap().unwrap_err();
    assert!(
        matches!(err, AcquireError::ExceedsBurst { burst: 50, .. }),
        "{err}"
    );
    assert_eq!(limiter.snapshot().waiters, 0);
}

#[tokio::test(start_paused = true)]
async fn contended_waiters_all_finish_in_rate() {
    let cfg = LimiterConfig::new()
        .with_dimension(DimensionConfig::per_second("tokens", 1_000).with_max_queued(10_000));
    let limiter = support::tokio_clock(cfg);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let l = limiter.clone();
        tasks.push(tokio::spawn(async move {
            l.acquire(Charge::from([100 + i % 3])).await.map(drop)
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // 50 * ~101 tokens = 5050; the first 1000 are burst, the rest take 4.05s.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(4_049) && took <= Duration::from_millis(4_100),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn impossible_charges_fail_at_once_even_behind_waiters() {
    let limiter = support::tokio_clock(tokens(100));
    let _ = limiter.acquire(Charge::from([100])).await.unwrap();
    let _queued = spawn_waiter(&limiter, 50).await;
    let start = Instant::now();
    let err = limiter.acquire(Charge::from([101])).await.unwrap_err();
    assert!(
        matches!(
            err,
            AcquireError::ExceedsBurst {
                cost: 101,
                burst: 100,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(limiter.snapshot().waiters, 1);
}
