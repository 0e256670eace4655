//! L1: the in-process tier on moka.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use moka::notification::RemovalCause;
use serde::Serialize;

use crate::entry::Entry;
use crate::error::Error;
use crate::scope::{Key, Selector};
use crate::tier::Tier;

/// Weighs an entry for L1's capacity (in bytes, or any unit you choose).
pub type Weigher<V> = Arc<dyn Fn(&Key, &Entry<V>) -> u32 + Send + Sync>;

/// L1 settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MemoryTierConfig {
    /// Capacity in weight units (bytes with the default weigher).
    pub max_capacity: u64,
    /// Evict entries not read for this long (moka's time-to-idle; real time).
    #[serde(default, with = "foundation_core::serde_util::opt_duration")]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub time_to_idle: Option<Duration>,
}

impl foundation_core::Validate for MemoryTierConfig {
    fn validate_into(&self, v: &mut foundation_core::Validator) {
        v.check(self.max_capacity > 0, "max_capacity", "must be at least 1");
        v.check(
            self.time_to_idle != Some(Duration::ZERO),
            "time_to_idle",
            "must be positive",
        );
    }
}

/// The in-process tier: a moka `future::Cache` weighted by entry size, with
/// per-entry expiry from the entry's own TTL, TinyLFU admission and
/// invalidation by tag, prefix and scope through moka's invalidation closures.
///
/// Expiry is also checked by the cache against its own clock on every read,
/// so paused-time tests see entries expire exactly; moka's own expiry (real
/// time) reclaims the memory.
pub struct MemoryTier<V> {
    cache: moka::future::Cache<Key, Arc<Entry<V>>>,
}

impl<V> Clone for MemoryTier<V> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
        }
    }
}

impl<V> fmt::Debug for MemoryTier<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTier")
            .field("entries", &self.cache.entry_count())
            .field("weighted_size", &self.cache.weighted_size())
            .finish()
    }
}

struct EntryExpiry;

impl<V> moka::Expiry<Key, Arc<Entry<V>>> for EntryExpiry {
    fn expire_after_create(&self, _: &Key, e: &Arc<Entry<V>>, _: Instant) -> Option<Duration> {
        ttl_of(e)
    }
    fn expire_after_update(
        &self,
        _: &Key,
        e: &Arc<Entry<V>>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        ttl_of(e)
    }
}

fn ttl_of<V>(e: &Entry<V>) -> Option<Duration> {
    (e.meta.expires_ms != u64::MAX)
        .then(|| Duration::from_millis(e.meta.expires_ms.saturating_sub(e.meta.created_ms)))
}

/// The serialized size of a value, without allocating.
pub(crate) fn encoded_len<T: Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl Extend<u8> for Count {
        fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
            self.0 += iter.into_iter().count();
        }
    }
    postcard::to_extend(v, Count(0)).map(|c| c.0).unwrap_or(0)
}

/// The default weigher: key, scope, tags and the postcard-encoded payload, in bytes.
pub(crate) fn default_weigher<V: Serialize>() -> Weigher<V> {
    Arc::new(|k: &Key, e: &Entry<V>| {
        let n = 64
            + k.name().len()
            + e.meta.scope.len()
            + e.meta.tags.iter().map(String::len).sum::<usize>()
            + encoded_len(&e.payload);
        u32::try_from(n).unwrap_or(u32::MAX)
    })
}

// === impl MemoryTier ===

impl<V: Send + Sync + 'static> MemoryTier<V> {
    /// A tier with `config`, weighing entries with `weigher`; `name` labels
    /// the eviction metrics.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration.
    pub fn new(
        config: MemoryTierConfig,
        weigher: Weigher<V>,
        name: Arc<str>,
    ) -> Result<Self, Error> {
        foundation_core::Validate::validate(&config)?;
        let mut b = moka::future::Cache::builder()
            .max_capacity(config.max_capacity)
            .weigher(move |k: &Key, e: &Arc<Entry<V>>| weigher(k, e))
            .expire_after(EntryExpiry)
            .support_invalidation_closures()
            .eviction_listener(move |_k, _v, cause| {
                let cause = match cause {
                    RemovalCause::Expired => "expired",
                    RemovalCause::Explicit => "invalidated",
                    RemovalCause::Replaced => "replaced",
                    RemovalCause::Size => "size",
                };
                metrics::counter!("foundation_cache_evictions_total", "cache" => name.to_string(), "cause" => cause).increment(1);
            });
        if let Some(tti) = config.time_to_idle {
            b = b.time_to_idle(tti);
        }
        Ok(Self { cache: b.build() })
    }

    /// The entry under `key` (no expiry check).
    pub async fn get_entry(&self, key: &Key) -> Option<Arc<Entry<V>>> {
        self.cache.get(key).await
    }

    /// Stores an entry.
    pub async fn insert(&self, key: Key, entry: Arc<Entry<V>>) {
        self.cache.insert(key, entry).await;
    }

    /// Whether `key` is present (without touching its recency).
    #[must_use]
    pub fn contains(&self, key: &Key) -> bool {
        self.cache.contains_key(key)
    }

    /// Removes one key.
    pub async fn remove(&self, key: &Key) {
        self.cache.invalidate(key).await;
    }

    /// Removes what `selector` matches.
    pub fn invalidate_selector(&self, selector: &Selector) -> Result<(), Error> {
        match selector {
            Selector::All => {
                self.cache.invalidate_all();
                Ok(())
            }
            sel => {
                let sel = sel.clone();
                self.cache
                    .invalidate_entries_if(move |k, e| sel.matches(k, &e.meta.tags))
                    .map(|_| ())
                    .map_err(|e| Error::backend("memory", e))
            }
        }
    }

    /// The number of entries (approximate, as moka reports it).
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// The total weight of the entries (approximate).
    #[must_use]
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Runs moka's pending maintenance (eviction, expiry); for tests and
    /// deterministic evaluations.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }
}

impl<V: Send + Sync + 'static> Tier<V> for MemoryTier<V> {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Arc<Entry<V>>>, Error>> {
        async move { Ok(self.cache.get(key).await) }.boxed()
    }

    fn put<'a>(
        &'a self,
        key: &'a Key,
        entry: Arc<Entry<V>>,
        _now_ms: u64,
    ) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            self.cache.insert(key.clone(), entry).await;
            Ok(())
        }
        .boxed()
    }

    fn invalidate<'a>(&'a self, selector: &'a Selector) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            if let Selector::Key(k) = selector {
                self.cache.invalidate(k).await;
                return Ok(());
            }
            self.invalidate_selector(selector)
        }
        .boxed()
    }
}
