//! The bounded store of finished traces.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::config::RetentionConfig;
use crate::trace::Trace;

/// Finished traces, kept as the [`RetentionConfig`] says.
///
/// Two bounded ring buffers, one for failed and one for successful traces;
/// each evicts its oldest trace when full. Memory is bounded by
/// `max_failed + max_successful` traces, each bounded by the per-trace
/// [`LimitsConfig`](crate::LimitsConfig). Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct TraceStore {
    inner: Arc<StoreInner>,
}

#[derive(Debug, Default)]
struct StoreInner {
    failed: Mutex<VecDeque<Arc<Trace>>>,
    successful: Mutex<VecDeque<Arc<Trace>>>,
    completed: AtomicU64,
    kept: AtomicU64,
    not_sampled: AtomicU64,
    evicted: AtomicU64,
    sample_counter: AtomicU64,
}

/// Counters of what the store has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Recorded traces that finished.
    pub completed: u64,
    /// Finished traces that were stored.
    pub kept: u64,
    /// Successful traces skipped by `successful_sample_rate` (or because
    /// `max_successful` is 0).
    pub not_sampled: u64,
    /// Stored traces evicted to make room.
    pub evicted: u64,
    /// Failed traces held now.
    pub failed_len: usize,
    /// Successful traces held now.
    pub successful_len: usize,
}

/// Deterministic, evenly spread sampling: the `n`-th candidate is kept when
/// `floor((n + 1) * rate) > floor(n * rate)`.
pub(crate) fn sample(counter: &AtomicU64, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "counter values beyond 2^53 only blur the spread, never the rate bounds"
    )]
    {
        let n = counter.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * rate).floor() > (n * rate).floor()
    }
}

// === impl TraceStore ===

impl TraceStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers a finished trace; returns whether it was kept.
    pub(crate) fn offer(&self, trace: Trace, policy: &RetentionConfig) -> Option<Arc<Trace>> {
        let inner = &*self.inner;
        inner.completed.fetch_add(1, Ordering::Relaxed);
        let (buf, cap) = if trace.is_failed() {
            (&inner.failed, policy.max_failed)
        } else {
            if policy.max_successful == 0
                || !sample(&inner.sample_counter, policy.successful_sample_rate)
            {
                inner.not_sampled.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            (&inner.successful, policy.max_successful)
        };
        if cap == 0 {
            return None;
        }
        let trace = Arc::new(trace);
        // The evicted trace is freed after the lock is released, so readers
        // and other finishing traces do not wait for its deallocation.
        let (evicted, oldest) = {
            let mut q = buf.lock();
            let mut evicted = 0;
            let mut oldest = None;
            while q.len() >= cap {
                oldest = q.pop_front();
                evicted += 1;
            }
            q.push_back(Arc::clone(&trace));
            (evicted, oldest)
        };
        if let Some(t) = oldest.and_then(Arc::into_inner) {
            crate::spare::recycle(t);
        }
        inner.kept.fetch_add(1, Ordering::Relaxed);
        inner.evicted.fetch_add(evicted, Ordering::Relaxed);
        Some(trace)
    }

    /// Trims both buffers to a (new, smaller) policy.
    pub(crate) fn trim(&self, policy: &RetentionConfig) {
        for (buf, cap) in [
            (&self.inner.failed, policy.max_failed),
            (&self.inner.successful, policy.max_successful),
        ] {
            let mut q = buf.lock();
            let mut n = 0;
            while q.len() > cap {
                q.pop_front();
                n += 1;
            }
            self.inner.evicted.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The stored failed traces, oldest first.
    #[must_use]
    pub fn failed(&self) -> Vec<Arc<Trace>> {
        self.inner.failed.lock().iter().cloned().collect()
    }

    /// The stored successful traces, oldest first.
    #[must_use]
    pub fn successful(&self) -> Vec<Arc<Trace>> {
        self.inner.successful.lock().iter().cloned().collect()
    }

    /// All stored traces, oldest first by start time.
    #[must_use]
    pub fn all(&self) -> Vec<Arc<Trace>> {
        let mut all = self.failed();
        all.extend(self.successful());
        all.sort_by_key(|t| t.started_at);
        all
    }

    /// The most recent stored trace with this correlation id.
    #[must_use]
    pub fn find(&self, correlation_id: &str) -> Option<Arc<Trace>> {
        self.all()
            .into_iter()
            .rev()
            .find(|t| t.correlation_id == correlation_id)
    }

    /// How many traces are stored.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.failed.lock().len() + self.inner.successful.lock().len()
    }

    /// Whether no trace is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every stored trace (counters are kept).
    pub fn clear(&self) {
        self.inner.failed.lock().clear();
        self.inner.successful.lock().clear();
    }

    /// The store's counters.
    #[must_use]
    pub fn stats(&self) -> StoreStats {
        let i = &*self.inner;
        StoreStats {
            completed: i.completed.load(Ordering::Relaxed),
            kept: i.kept.load(Ordering::Relaxed),
            not_sampled: i.not_sampled.load(Ordering::Relaxed),
            evicted: i.evicted.load(Ordering::Relaxed),
            failed_len: i.failed.lock().len(),
            successful_len: i.successful.lock().len(),
        }
    }

    /// All stored traces as a JSON array in the export format.
    #[must_use]
    pub fn export_json(&self) -> serde_json::Value {
        crate::export::to_json_array(&self.all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Over any run of candidates, the number kept is within one of
        // `n * rate`.
        #[test]
        fn sampling_keeps_the_rate(rate in 0.0f64..=1.0, n in 1u64..2000) {
            let counter = AtomicU64::new(0);
            let kept = (0..n).filter(|_| sample(&counter, rate)).count() as f64;
            let expected = n as f64 * rate;
            prop_assert!((kept - expected).abs() <= 1.0, "kept {kept}, expected {expected}");
        }
    }
}
