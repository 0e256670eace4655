//! Load-aware sharing of multiplexed objects (HTTP/2 clients, pipelined
//! connections): each object serves up to `per_object` leases at once, and a
//! lease goes to the least-loaded object.
//!
//! A [`Multiplexed`] pool sits on an [`ElasticPool`]: an object carrying at
//! least one lease is checked out of it (so the controller sees it as in use
//! and scales on it), and goes back when its last lease ends. When every
//! object is at its limit, a lease checks out another object, waiting (within
//! its deadline) for either a new object or a freed stream, whichever comes
//! first.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::{BuildError, PoolError};
use crate::manager::Manager;
use crate::pool::{ElasticPool, Pooled};

/// Shares the objects of an [`ElasticPool`] among concurrent users, up to
/// `per_object` at a time each, least in-flight first.
///
/// Clones share the same objects.
pub struct Multiplexed<M: Manager> {
    inner: Arc<MuxInner<M>>,
}

struct MuxInner<M: Manager> {
    pool: ElasticPool<M>,
    per_object: usize,
    slots: Mutex<Vec<Arc<Slot<M>>>>,
    freed: Notify,
}

struct Slot<M: Manager> {
    obj: Option<Pooled<M>>,
    in_flight: AtomicUsize,
    broken: AtomicBool,
}

impl<M: Manager> Drop for Slot<M> {
    fn drop(&mut self) {
        if let Some(mut obj) = self.obj.take() {
            if self.broken.load(Ordering::Acquire) {
                obj.mark_broken();
            }
            drop(obj);
        }
    }
}

/// One use of a shared object; dereferences to `&M::Type`. Ends on drop.
#[must_use = "dropping a Lease ends it at once"]
pub struct Lease<M: Manager> {
    slot: Arc<Slot<M>>,
    mux: Arc<MuxInner<M>>,
}

impl<M: Manager> Clone for Multiplexed<M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Manager> fmt::Debug for Multiplexed<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Multiplexed")
            .field("per_object", &self.inner.per_object)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl<M: Manager> fmt::Debug for Lease<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field(
                "object_in_flight",
                &self.slot.in_flight.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

// === impl Multiplexed ===

impl<M: Manager> Multiplexed<M> {
    /// Shares `pool`'s objects, at most `per_object` leases per object.
    ///
    /// # Errors
    /// [`BuildError::Config`] when `per_object` is 0.
    pub fn new(pool: ElasticPool<M>, per_object: usize) -> Result<Self, BuildError> {
        if per_object == 0 {
            return Err(BuildError::Config(
                foundation_core::ValidationErrors::single("per_object", "must be at least 1"),
            ));
        }
        Ok(Self {
            inner: Arc::new(MuxInner {
                pool,
                per_object,
                slots: Mutex::new(Vec::new()),
                freed: Notify::new(),
            }),
        })
    }

    /// The underlying pool.
    #[must_use]
    pub fn pool(&self) -> &ElasticPool<M> {
        &self.inner.pool
    }

    /// Leases currently active, per object carrying any (unordered).
    #[must_use]
    pub fn in_flight(&self) -> Vec<usize> {
        self.inner
            .slots
            .lock()
            .iter()
            .map(|s| s.in_flight.load(Ordering::Relaxed))
            .collect()
    }

    /// Leases the least-loaded object with room, checking out another one
    /// from the pool when all are full; waits at most `timeout`.
    ///
    /// # Errors
    /// The pool's [`PoolError`] when no object could be had in time.
    pub async fn lease(&self, timeout: Duration) -> Result<Lease<M>, PoolError<M::Error>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(lease) = self.try_lease() {
                return Ok(lease);
            }
            // Register for "a stream was freed" before trying the pool, so a
            // release between the two is not missed.
            let freed = self.inner.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            tokio::select! {
                got = self.inner.pool.get_until(deadline) => {
                    let obj = got?;
                    return Ok(self.install(obj));
                }
                () = &mut freed => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(PoolError::Timeout { waited: timeout });
                }
            }
        }
    }

    fn try_lease(&self) -> Option<Lease<M>> {
        let slots = self.inner.slots.lock();
        let slot = slots
            .iter()
            .filter(|s| !s.broken.load(Ordering::Acquire))
            .map(|s| (s.in_flight.load(Ordering::Acquire), s))
            .filter(|(n, _)| *n < self.inner.per_object)
            .min_by_key(|(n, _)| *n)
            .map(|(_, s)| Arc::clone(s))?;
        slot.in_flight.fetch_add(1, Ordering::AcqRel);
        drop(slots);
        Some(Lease {
            slot,
            mux: Arc::clone(&self.inner),
        })
    }

    fn install(&self, obj: Pooled<M>) -> Lease<M> {
        let slot = Arc::new(Slot {
            obj: Some(obj),
            in_flight: AtomicUsize::new(1),
            broken: AtomicBool::new(false),
        });
        self.inner.slots.lock().push(Arc::clone(&slot));
        Lease {
            slot,
            mux: Arc::clone(&self.inner),
        }
    }
}

// === impl Lease ===

impl<M: Manager> Lease<M> {
    /// Marks the shared object broken: it takes no new leases and is closed
    /// when its last lease ends.
    pub fn mark_broken(&self) {
        self.slot.broken.store(true, Ordering::Release);
    }

    /// Leases active on this lease's object, this one included.
    #[must_use]
    pub fn object_in_flight(&self) -> usize {
        self.slot.in_flight.load(Ordering::Acquire)
    }
}

impl<M: Manager> Deref for Lease<M> {
    type Target = M::Type;
    fn deref(&self) -> &M::Type {
        match &self.slot.obj {
            Some(obj) => obj,
            None => unreachable!("slot object is only taken in Slot::drop"),
        }
    }
}

impl<M: Manager> Drop for Lease<M> {
    fn drop(&mut self) {
        let before = self.slot.in_flight.fetch_sub(1, Ordering::AcqRel);
        let broken = self.slot.broken.load(Ordering::Acquire);
        if before == 1 || broken {
            // Last lease (or a broken object): retire the slot unless a new
            // lease arrived meanwhile. Lease creation holds the same lock.
            let mut slots = self.mux.slots.lock();
            if self.slot.in_flight.load(Ordering::Acquire) == 0 || broken {
                slots.retain(|s| !Arc::ptr_eq(s, &self.slot));
            }
        }
        // The object goes back to the pool when the last `Arc<Slot>` drops.
        self.mux.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FnManager;
    use std::sync::atomic::AtomicU32;

    fn mux(
        max: usize,
        per: usize,
    ) -> (
        Multiplexed<impl Manager<Type = u32, Error = std::io::Error>>,
        Arc<AtomicU32>,
    ) {
        let created = Arc::new(AtomicU32::new(0));
        let c = Arc::clone(&created);
        let m = FnManager::new(
            move || {
                let id = c.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, std::io::Error>(id) }
            },
            |_: &mut u32| Box::pin(async { true }),
        );
        let pool = ElasticPool::builder(m, 0, max).build().unwrap();
        (Multiplexed::new(pool, per).unwrap(), created)
    }

    #[tokio::test(start_paused = true)]
    async fn least_in_flight_first_up_to_the_limit() {
        let (mx, created) = mux(4, 3);
        let a = mx.lease(Duration::from_secs(1)).await.unwrap();
        let b = mx.lease(Duration::from_secs(1)).await.unwrap();
        let c = mx.lease(Duration::from_secs(1)).await.unwrap();
        assert_eq!(
            created.load(Ordering::SeqCst),
            1,
            "one object carries three leases"
        );
        assert_eq!(*a, *b);
        let d = mx.lease(Duration::from_secs(1)).await.unwrap();
        assert_eq!(
            created.load(Ordering::SeqCst),
            2,
            "full object: a second one"
        );
        assert_ne!(*d, *a);
        // The next lease goes to the less loaded object (d's, with 1).
        let e = mx.lease(Duration::from_secs(1)).await.unwrap();
        assert_eq!(*e, *d);
        let mut loads = mx.in_flight();
        loads.sort_unstable();
        assert_eq!(loads, [2, 3]);
        drop((a, b, c));
        assert_eq!(
            mx.in_flight(),
            [2],
            "an object without leases goes back to the pool"
        );
        assert_eq!(mx.pool().status().idle, 1);
        drop((d, e));
        assert_eq!(mx.pool().status().in_use, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_a_freed_stream_when_the_pool_is_exhausted() {
        let (mx, _) = mux(1, 2);
        let a = mx.lease(Duration::from_secs(1)).await.unwrap();
        let _b = mx.lease(Duration::from_secs(1)).await.unwrap();
        let mx2 = mx.clone();
        let waiter =
            tokio::spawn(async move { mx2.lease(Duration::from_secs(5)).await.map(|l| *l) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished());
        drop(a);
        assert_eq!(waiter.await.unwrap().unwrap(), 0);
        let err = mx.lease(Duration::from_millis(10)).await;
        assert!(
            err.is_ok(),
            "b's object has room again after the waiter's lease ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn broken_shared_object_takes_no_new_leases_and_is_closed() {
        let (mx, created) = mux(2, 4);
        let a = mx.lease(Duration::from_secs(1)).await.unwrap();
        let b = mx.lease(Duration::from_secs(1)).await.unwrap();
        a.mark_broken();
        let c = mx.lease(Duration::from_secs(1)).await.unwrap();
        assert_ne!(*c, *a, "no new lease on a broken object");
        assert_eq!(created.load(Ordering::SeqCst), 2);
        drop((a, b));
        assert_eq!(mx.pool().status().size, 1, "the broken object was closed");
        drop(c);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the order of leases and releases: no object carries more
        /// than `per_object` leases, no more objects than `max` are out, and
        /// a lease only waits when every object is full.
        #[test]
        fn limits_hold_under_any_interleaving(
            ops in proptest::collection::vec(proptest::prelude::any::<(bool, u8)>(), 1..60),
            max in 1usize..4,
            per in 1usize..4,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            rt.block_on(async {
                let (mx, _) = mux(max, per);
                let mut held: Vec<Lease<_>> = Vec::new();
                for (lease, pick) in ops {
                    if lease {
                        let full = held.len() >= max * per;
                        match mx.lease(Duration::from_millis(10)).await {
                            Ok(l) => held.push(l),
                            Err(_) => assert!(full, "refused with room: {:?}", mx.in_flight()),
                        }
                    } else if !held.is_empty() {
                        let i = usize::from(pick) % held.len();
                        drop(held.swap_remove(i));
                    }
                    let loads = mx.in_flight();
                    assert!(loads.iter().all(|&n| n <= per), "{loads:?} over {per}");
                    assert!(loads.len() <= max, "{loads:?} objects over {max}");
                    assert_eq!(loads.iter().sum::<usize>(), held.len());
                    assert_eq!(mx.pool().status().in_use, loads.len());
                }
            });
        }
    }

    #[test]
    fn zero_per_object_is_rejected() {
        let m = FnManager::new(
            || async { Ok::<_, std::io::Error>(0u8) },
            |_: &mut u8| Box::pin(async { true }),
        );
        let pool = ElasticPool::builder(m, 0, 1).build().unwrap();
        let err = Multiplexed::new(pool, 0).unwrap_err();
        assert!(
            err.to_string().contains("per_object: must be at least 1"),
            "{err}"
        );
    }
}
