//! Async waiting: a bounded FIFO queue in which only the head waiter sleeps on
//! a timer.
//!
//! - **FIFO.** Waiters are admitted in arrival order; a large charge at the
//!   head is not overtaken by small ones behind it, and while anyone waits
//!   `try_acquire` does not jump the queue.
//! - **No thundering herd.** Only the head waiter holds a timer (until its
//!   predicted admission instant); the others sleep on their own `Notify`
//!   and are woken one at a time when they reach the head. Refunds, released
//!   concurrency slots and reconfiguration wake the head early.
//! - **Bounded.** By waiter count (`queue.max_waiters`) and by total queued
//!   cost per dimension (`max_queued`).
//! - **Deadlines fail fast.** With a deadline, the predicted wait (from the
//!   FIFO position and current state) is computed on entry; if it is longer,
//!   the call fails at once with [`AcquireError::WouldExceedDeadline`].
//! - **Cancellation-safe.** Dropping the future removes the waiter (waking
//!   the next head if it was the head); a waiter holds no reservation, so
//!   nothing is left behind. Admission and dequeue happen under the queue
//!   lock in one step, so a permit is never charged for a dropped waiter.
//!
//! Waiting sleeps on tokio's timer: build the limiter with `TokioClock` (or
//! the system clock) so that the limiter's time and the timer agree; under
//! `#[tokio::test(start_paused = true)]` use `TokioClock`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::charge::Charge;
use crate::error::AcquireError;
use crate::limiter::{RateLimiter, Waiter};
use crate::permit::Permit;

// === impl RateLimiter (waiting) ===

impl RateLimiter {
    /// Waits until every dimension admits `charge` (and a concurrency slot is
    /// free), in FIFO order with other waiters.
    ///
    /// # Errors
    /// [`AcquireError::ExceedsBurst`] at once when the charge can never fit,
    /// [`AcquireError::QueueFull`] when the queue is at a bound.
    pub async fn acquire(&self, charge: Charge) -> Result<Permit, AcquireError> {
        self.acquire_inner(charge, None).await
    }

    /// Like [`acquire`](Self::acquire), but gives up after `deadline`: at once
    /// with [`AcquireError::WouldExceedDeadline`] (carrying the predicted
    /// wait) when the prediction is already longer, or with
    /// [`AcquireError::DeadlineElapsed`] if the deadline passes while waiting.
    ///
    /// # Errors
    /// As above, plus those of [`acquire`](Self::acquire).
    pub async fn acquire_within(
        &self,
        charge: Charge,
        deadline: Duration,
    ) -> Result<Permit, AcquireError> {
        self.acquire_inner(charge, Some(deadline)).await
    }

    async fn acquire_inner(
        &self,
        charge: Charge,
        deadline: Option<Duration>,
    ) -> Result<Permit, AcquireError> {
        let started = Instant::now();
        let shared = Arc::clone(self.shared());
        let state = &self.inner.state;
        // Never queue for what can never be admitted.
        self.check_fits(&charge)?;

        // Fast path: nobody queued and it fits now.
        if state.waiting.load(Ordering::Acquire) == 0 {
            match self.try_acquire_unfair(charge) {
                Ok(p) => {
                    shared.telemetry.wait.record(0.0);
                    return Ok(p);
                }
                Err(
                    e
                    @ (AcquireError::RateLimited { .. } | AcquireError::ConcurrencyLimited { .. }),
                ) => {
                    tracing::trace!(limiter = %shared.name, error = %e, "queueing");
                }
                Err(e) => return Err(e),
            }
        }

        let notify = Arc::new(Notify::new());
        let id = {
            let mut q = state.queue.lock();
            let max_waiters = shared.max_waiters.load(Ordering::Relaxed);
            if q.waiters.len() >= max_waiters {
                shared.telemetry.denied_queue.increment(1);
                return Err(AcquireError::QueueFull {
                    reason: format!("{} waiters, the most allowed", q.waiters.len()),
                });
            }
            let ahead = q
                .waiters
                .iter()
                .fold(Charge::ZERO, |acc, w| acc.saturating_add(w.charge));
            for (i, dim) in shared.dims.iter().enumerate() {
                let bound = dim.max_queued.load(Ordering::Relaxed);
                let total = ahead.get(i).saturating_add(charge.get(i));
                if charge.get(i) > 0 && total > bound {
                    shared.telemetry.denied_queue.increment(1);
                    return Err(AcquireError::QueueFull {
                        reason: format!("{total} {} queued, bound {bound}", dim.name),
                    });
                }
            }
            if let Some(deadline) = deadline {
                let predicted = self
                    .wait_for(&charge, &ahead)?
                    .map_or(Duration::ZERO, |(_, d)| d);
                if predicted > deadline {
                    return Err(AcquireError::WouldExceedDeadline {
                        predicted,
                        deadline,
                    });
                }
            }
            let id = q.next_id;
            q.next_id = q.next_id.wrapping_add(1);
            if q.waiters.is_empty() {
                notify.notify_one();
            }
            q.waiters.push_back(Waiter {
                id,
                charge,
                notify: Arc::clone(&notify),
            });
            state.waiting.fetch_add(1, Ordering::AcqRel);
            id
        };
        let mut guard = WaiterGuard {
            limiter: self,
            id,
            armed: true,
        };
        let deadline_at = deadline.map(|d| started + d);

        loop {
            // Wait for our turn (or a wake-up as head), bounded by the deadline.
            let notified = notify.notified();
            let woke = match deadline_at {
                Some(at) => tokio::time::timeout_at(at, notified).await.is_ok(),
                None => {
                    notified.await;
                    true
                }
            };
            // As head: try to be admitted, otherwise sleep until the predicted
            // instant or an early wake-up.
            loop {
                let sleep_for = {
                    let mut q = state.queue.lock();
                    if q.waiters.front().is_none_or(|w| w.id != id) {
                        break;
                    }
                    match self.try_acquire_unfair(charge) {
                        Ok(permit) => {
                            q.waiters.pop_front();
                            state.waiting.fetch_sub(1, Ordering::AcqRel);
                            // The next waiter becomes head. If every concurrency slot
                            // is taken it could only go back to sleep: the release of a
                            // slot wakes it instead (one wake-up per hand-off). The
                            // releaser decrements before it takes the queue lock we
                            // hold, so no release is missed.
                            if let Some(next) = q.waiters.front()
                                && !self.slots_full()
                            {
                                next.notify.notify_one();
                            }
                            drop(q);
                            guard.armed = false;
                            shared
                                .telemetry
                                .wait
                                .record(started.elapsed().as_secs_f64());
                            return Ok(permit);
                        }
                        Err(AcquireError::RateLimited { retry_after, .. }) => Some(retry_after),
                        Err(AcquireError::ConcurrencyLimited { .. }) => None,
                        Err(e) => return Err(e),
                    }
                };
                if deadline_at.is_some_and(|at| Instant::now() >= at) {
                    return Err(AcquireError::DeadlineElapsed {
                        deadline: deadline.unwrap_or_default(),
                    });
                }
                let wake_at = match (sleep_for, deadline_at) {
                    (Some(d), Some(at)) => Some((Instant::now() + d).min(at)),
                    (Some(d), None) => Some(Instant::now() + d),
                    (None, at) => at,
                };
                let notified = notify.notified();
                match wake_at {
                    Some(at) => {
                        let _ = tokio::time::timeout_at(at, notified).await;
                    }
                    None => notified.await,
                }
            }
            if !woke || deadline_at.is_some_and(|at| Instant::now() >= at) {
                return Err(AcquireError::DeadlineElapsed {
                    deadline: deadline.unwrap_or_default(),
                });
            }
        }
    }
}

/// Removes its waiter from the queue unless disarmed (cancellation or error).
struct WaiterGuard<'a> {
    limiter: &'a RateLimiter,
    id: u64,
    armed: bool,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let state = &self.limiter.inner.state;
        let mut q = state.queue.lock();
        if let Some(pos) = q.waiters.iter().position(|w| w.id == self.id) {
            q.waiters.remove(pos);
            state.waiting.fetch_sub(1, Ordering::AcqRel);
            if pos == 0
                && let Some(next) = q.waiters.front()
            {
                next.notify.notify_one();
            }
        }
    }
}
