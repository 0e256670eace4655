//! Several backends (replicas) behind one checkout: load is spread over the
//! healthy ones and an unhealthy one is avoided.
//!
//! Each replica is its own [`ElasticPool`] (own manager, bounds, controller,
//! health checks and creation backoff), so objects are spread by each pool's
//! own bounds and the per-replica state stays simple. [`Replicas::get`]
//! picks the replica with the lowest load among the best health class
//! (healthy or warming, then degraded, and an unavailable one only when all
//! are), and fails over to the next one when a checkout there fails.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{BuildError, PoolError};
use crate::manager::Manager;
use crate::pool::{ElasticPool, Health, Pooled};

/// A set of pools, one per backend replica.
pub struct Replicas<M: Manager> {
    pools: Vec<ElasticPool<M>>,
}

impl<M: Manager> Clone for Replicas<M> {
    fn clone(&self) -> Self {
        Self {
            pools: self.pools.clone(),
        }
    }
}

impl<M: Manager> fmt::Debug for Replicas<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.pools.iter()).finish()
    }
}

/// A pooled object and the index of the replica it came from.
pub struct ReplicaObject<M: Manager> {
    /// Index of the replica in [`Replicas::pools`].
    pub replica: usize,
    /// The object.
    pub object: Pooled<M>,
}

impl<M: Manager> fmt::Debug for ReplicaObject<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaObject")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

// === impl Replicas ===

impl<M: Manager> Replicas<M> {
    /// Groups `pools` (one per replica, at least one).
    ///
    /// # Errors
    /// [`BuildError::Config`] when `pools` is empty.
    pub fn new(pools: Vec<ElasticPool<M>>) -> Result<Self, BuildError> {
        if pools.is_empty() {
            return Err(BuildError::Config(
                foundation_core::ValidationErrors::single(
                    "pools",
                    "must hold at least one replica",
                ),
            ));
        }
        Ok(Self { pools })
    }

    /// The replicas' pools.
    #[must_use]
    pub fn pools(&self) -> &[ElasticPool<M>] {
        &self.pools
    }

    /// Starts every replica's background tasks.
    ///
    /// # Errors
    /// [`BuildError::NoRuntime`] outside a tokio runtime.
    pub fn start(&self) -> Result<(), BuildError>
    where
        M: 'static,
    {
        self.pools.iter().try_for_each(ElasticPool::start)
    }

    /// Replica indices in the order a checkout tries them: best health class
    /// first (healthy, warming, or failing with an expired backoff so it can
    /// be probed; then degraded; then unavailable), then lowest load
    /// ((in use + waiting) / capacity), then index.
    #[must_use]
    pub fn ranking(&self) -> Vec<usize> {
        let mut ranked: Vec<(u8, u64, usize)> = self
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let st = p.status();
                let class = match st.health {
                    Health::Healthy | Health::Warming => 0,
                    // Failing, but its backoff has expired: let one checkout
                    // probe it first (half-open), or it could never recover
                    // without traffic. Its gate admits a single probe; other
                    // checkouts fail over at once.
                    Health::Degraded | Health::Unavailable if st.create_retry_in.is_none() => 0,
                    Health::Degraded => 1,
                    _ => 2,
                };
                let demand = (st.in_use + st.waiting) as u64;
                // Load in thousandths, so the ordering is exact.
                let load = demand * 1000 / st.capacity.max(1) as u64;
                (class, load, i)
            })
            .collect();
        ranked.sort_unstable();
        ranked.into_iter().map(|(_, _, i)| i).collect()
    }

    /// Checks out an object from the best replica within `timeout`, failing
    /// over to the next replica when one fails (unavailable, creation failure,
    /// overloaded or timed out).
    ///
    /// # Errors
    /// The last replica's [`PoolError`] when none could serve in time.
    pub async fn get(&self, timeout: Duration) -> Result<ReplicaObject<M>, PoolError<M::Error>> {
        let deadline = Instant::now() + timeout;
        let order = self.ranking();
        let last = order.len() - 1;
        let mut error = PoolError::Closed;
        for (n, i) in order.into_iter().enumerate() {
            // Leave the later replicas a share of the deadline.
            let remaining = deadline.saturating_duration_since(Instant::now());
            let share = if n == last { remaining } else { remaining / 2 };
            match self.pools[i].get_until(Instant::now() + share).await {
                Ok(object) => return Ok(ReplicaObject { replica: i, object }),
                // Any failure of one replica (down, saturated, too slow) is a
                // reason to try another; only a closed pool ends the search.
                Err(e) if !matches!(e, PoolError::Closed) => {
                    tracing::debug!(replica = i, error = %e, "replica failed, trying the next");
                    error = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadpool_managed::{Metrics, RecycleError, RecycleResult};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Debug)]
    struct Backend {
        id: usize,
        down: Arc<AtomicBool>,
    }

    impl Manager for Backend {
        type Type = usize;
        type Error = std::io::Error;

        async fn create(&self) -> Result<usize, std::io::Error> {
            if self.down.load(Ordering::SeqCst) {
                Err(std::io::ErrorKind::ConnectionRefused.into())
            } else {
                Ok(self.id)
            }
        }

        async fn recycle(&self, _: &mut usize, _: &Metrics) -> RecycleResult<std::io::Error> {
            if self.down.load(Ordering::SeqCst) {
                Err(RecycleError::message("down"))
            } else {
                Ok(())
            }
        }
    }

    fn replica(id: usize, down: &Arc<AtomicBool>) -> ElasticPool<Backend> {
        let m = Backend {
            id,
            down: Arc::clone(down),
        };
        ElasticPool::builder(m, 0, 4)
            .with(|c| c.health.check_on_checkout_after = Some(Duration::ZERO))
            .build()
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn spreads_load_and_avoids_a_down_replica() {
        let downs: Vec<_> = (0..3).map(|_| Arc::new(AtomicBool::new(false))).collect();
        let set = Replicas::new((0..3).map(|i| replica(i, &downs[i])).collect()).unwrap();
        // Six concurrent checkouts land two per replica.
        let mut held = Vec::new();
        for _ in 0..6 {
            held.push(set.get(Duration::from_secs(1)).await.unwrap());
        }
        let mut per = [0; 3];
        for o in &held {
            per[o.replica] += 1;
            assert_eq!(*o.object, o.replica);
        }
        assert_eq!(per, [2, 2, 2]);
        drop(held);
        // Replica 0 goes down: its idle objects fail their check, creation
        // fails, the checkout fails over; later checkouts rank it last.
        downs[0].store(true, Ordering::SeqCst);
        for _ in 0..4 {
            let o = set.get(Duration::from_secs(1)).await.unwrap();
            assert_ne!(o.replica, 0);
        }
        assert_eq!(set.pools()[0].status().health, Health::Unavailable);
        assert_eq!(*set.ranking().last().unwrap(), 0);
        // Back up: after its backoff it serves again.
        downs[0].store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut seen = [false; 3];
        let mut held = Vec::new();
        for _ in 0..6 {
            let o = set.get(Duration::from_secs(1)).await.unwrap();
            seen[o.replica] = true;
            held.push(o);
        }
        assert!(seen[0], "recovered replica takes load again");
    }

    #[test]
    fn empty_set_is_rejected() {
        let err = Replicas::<Backend>::new(Vec::new()).unwrap_err();
        assert!(
            err.to_string()
                .contains("pools: must hold at least one replica")
        );
    }
}
