//! Predictive warming: learn which keys follow which, and load the likely
//! next key before it is asked for.
//!
//! A [`Prefetcher`] observes every lookup of a [`TieredCache`]. It keeps a
//! first-order successor model (for each key, the keys that came next, with
//! counts; bounded), and after each access predicts the most likely next key.
//! If the prediction is confident enough and the key is not in L1, it loads
//! it in the background through your loader, within a budget: at most
//! `max_concurrent` prefetches running and at most `max_unused` prefetched
//! entries not yet used (the oldest unused is written off as wasted when a
//! new one is issued past that share). Prefetch precision (used / issued) is
//! reported by [`Prefetcher::stats`] and the `foundation_cache_prefetches_total`
//! metric.
//!
//! The model is global to the cache (all callers' accesses interleave): it
//! suits sequential structure that holds across users (page 1 → page 2, the
//! next step of a pipeline). Per-session models are future work.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use foundation_core::BoxError;
use futures_util::future::BoxFuture;
use metrics::Counter;
use parking_lot::Mutex;

use crate::cache::{AccessObserver, CacheValue, Loaded, TieredCache, WeakTieredCache};
use crate::scope::Key;

pub mod eval;

/// Loads a key for a prefetch; `None` if this key should not be prefetched.
pub type PrefetchLoader<V> =
    Arc<dyn Fn(&Key) -> Option<BoxFuture<'static, Result<Loaded<V>, BoxError>>> + Send + Sync>;

/// Budget and model settings of a [`Prefetcher`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct WarmConfig {
    /// Prefetches running at once.
    pub max_concurrent: usize,
    /// Prefetched entries not yet used (bound on the share of L1 spent on guesses).
    pub max_unused: usize,
    /// Keys whose successors are remembered (oldest forgotten first).
    pub model_keys: usize,
    /// Minimum share of a key's observed successors the prediction must have.
    pub min_confidence: f64,
    /// Minimum times the predicted successor must have followed the key.
    pub min_support: u32,
}

impl Default for WarmConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 4,
            max_unused: 256,
            model_keys: 100_000,
            min_confidence: 0.5,
            min_support: 2,
        }
    }
}

impl foundation_core::Validate for WarmConfig {
    fn validate_into(&self, v: &mut foundation_core::Validator) {
        v.check(
            self.max_concurrent > 0,
            "max_concurrent",
            "must be at least 1",
        );
        v.check(self.max_unused > 0, "max_unused", "must be at least 1");
        v.check(self.model_keys > 0, "model_keys", "must be at least 1");
        v.check(
            (0.0..=1.0).contains(&self.min_confidence),
            "min_confidence",
            "must be in [0, 1]",
        );
    }
}

/// Prefetch counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmStats {
    /// Prefetches started.
    pub issued: u64,
    /// Prefetched entries that were then hit.
    pub used: u64,
    /// Prefetched entries written off unused (budget pressure).
    pub wasted: u64,
    /// Predictions not acted on for lack of budget.
    pub skipped: u64,
}

impl WarmStats {
    /// used / issued.
    #[must_use]
    pub fn precision(&self) -> f64 {
        self.used as f64 / self.issued.max(1) as f64
    }
}

#[derive(Debug, Default)]
struct Model {
    prev: Option<Key>,
    succ: HashMap<Key, Vec<(Key, u32)>>,
    order: VecDeque<Key>,
    unused: HashSet<Key>,
    unused_order: VecDeque<Key>,
    stats: WarmStats,
}

/// Successors remembered per key.
const SUCCESSORS: usize = 4;

struct Counters {
    issued: Counter,
    used: Counter,
    wasted: Counter,
    skipped: Counter,
}

/// The predictive warmer; install it with [`Prefetcher::install`].
pub struct Prefetcher<V> {
    cache: WeakTieredCache<V>,
    loader: PrefetchLoader<V>,
    config: WarmConfig,
    running: Arc<AtomicUsize>,
    model: Mutex<Model>,
    counters: Counters,
}

impl<V> fmt::Debug for Prefetcher<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prefetcher")
            .field("config", &self.config)
            .field("stats", &self.model.lock().stats)
            .finish_non_exhaustive()
    }
}

// === impl Prefetcher ===

impl<V: CacheValue> Prefetcher<V> {
    /// Creates a prefetcher for `cache` and installs it as the cache's observer.
    ///
    /// # Errors
    /// The configuration's validation errors, or an error at `observer` if
    /// the cache already has an observer.
    pub fn install(
        cache: &TieredCache<V>,
        config: WarmConfig,
        loader: PrefetchLoader<V>,
    ) -> Result<Arc<Self>, foundation_core::ValidationErrors> {
        foundation_core::Validate::validate(&config)?;
        let c = cache.name().to_owned();
        let n = |o: &'static str| metrics::counter!("foundation_cache_prefetches_total", "cache" => c.clone(), "outcome" => o);
        let me = Arc::new(Self {
            cache: cache.downgrade(),
            loader,
            config,
            running: Arc::new(AtomicUsize::new(0)),
            model: Mutex::new(Model::default()),
            counters: Counters {
                issued: n("issued"),
                used: n("used"),
                wasted: n("wasted"),
                skipped: n("skipped"),
            },
        });
        if cache.set_observer(me.clone()) {
            Ok(me)
        } else {
            Err(foundation_core::ValidationErrors::single(
                "observer",
                "the cache already has an observer",
            ))
        }
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> WarmStats {
        self.model.lock().stats
    }

    fn learn(&self, m: &mut Model, key: &Key) {
        let Some(prev) = m.prev.replace(key.clone()) else {
            return;
        };
        if !m.succ.contains_key(&prev) {
            m.order.push_back(prev.clone());
            while m.order.len() > self.config.model_keys {
                if let Some(old) = m.order.pop_front() {
                    m.succ.remove(&old);
                }
            }
        }
        let list = m.succ.entry(prev).or_default();
        if let Some((_, c)) = list.iter_mut().find(|(k, _)| k == key) {
            *c = c.saturating_add(1);
        } else if list.len() < SUCCESSORS {
            list.push((key.clone(), 1));
        } else {
            // Replace the weakest successor (counts decay by halving).
            list.iter_mut().for_each(|(_, c)| *c /= 2);
            if let Some(min) = list.iter_mut().min_by_key(|(_, c)| *c) {
                *min = (key.clone(), 1);
            }
        }
    }

    fn predict(&self, m: &Model, key: &Key) -> Option<Key> {
        let list = m.succ.get(key)?;
        let total: u32 = list.iter().map(|(_, c)| *c).sum();
        let (best, count) = list.iter().max_by_key(|(_, c)| *c)?;
        // The successor itself must have been seen `min_support` times: on
        // data without structure, one coincidence is not a pattern.
        (*count >= self.config.min_support
            && f64::from(*count) >= self.config.min_confidence * f64::from(total))
        .then(|| best.clone())
    }
}

impl<V: CacheValue> AccessObserver for Prefetcher<V> {
    fn observe(&self, key: &Key, hit: bool) {
        let Some(cache) = self.cache.upgrade() else {
            return;
        };
        let next = {
            let mut m = self.model.lock();
            if m.unused.remove(key) && hit {
                m.stats.used += 1;
                self.counters.used.increment(1);
            }
            self.learn(&mut m, key);
            let Some(next) = self.predict(&m, key) else {
                return;
            };
            if &next == key
                || m.unused.contains(&next)
                || cache.memory().contains(&next)
                || cache.is_loading(&next)
            {
                return;
            }
            if self.running.load(Ordering::Acquire) >= self.config.max_concurrent {
                m.stats.skipped += 1;
                self.counters.skipped.increment(1);
                return;
            }
            while m.unused.len() >= self.config.max_unused {
                let Some(old) = m.unused_order.pop_front() else {
                    break;
                };
                if m.unused.remove(&old) {
                    m.stats.wasted += 1;
                    self.counters.wasted.increment(1);
                }
            }
            next
        };
        let Some(load) = (self.loader)(&next) else {
            return;
        };
        {
            let mut m = self.model.lock();
            m.unused.insert(next.clone());
            m.unused_order.push_back(next.clone());
            m.stats.issued += 1;
        }
        self.counters.issued.increment(1);
        self.running.fetch_add(1, Ordering::AcqRel);
        let running = self.running.clone();
        let started = cache.refresh(&next, move || async move {
            let r = load.await;
            running.fetch_sub(1, Ordering::AcqRel);
            r
        });
        if !started {
            self.running.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
