//! The tiered cache: read-through with promotion, single-flight loading,
//! stale-while-revalidate, negative caching and invalidation.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use foundation_core::{BoxError, Cost, Reloadable, SharedClock, TokioClock, Validate};
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::CacheConfig;
use crate::entry::{Entry, Meta, Payload, TimeBase, add_ms};
use crate::error::Error;
use crate::scope::{Key, Selector};
use crate::telemetry::Telemetry;
use crate::tier::{MemoryTier, Tier, TierPolicy, Weigher};

/// The values a [`TieredCache`] can hold: cloneable, shareable and
/// serializable (shared tiers store them; L1 weighs them by encoded size).
pub trait CacheValue: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> CacheValue for T {}

/// A freshly computed value with what the loader knows about it.
///
/// ```
/// use foundation_cache::Loaded;
/// use foundation_core::Cost;
/// use std::time::Duration;
/// let l = Loaded::new("answer".to_string())
///     .with_tags(["doc:17"])
///     .with_ttl(Duration::from_secs(600))
///     .with_cost(Cost::from_micros(2_500));
/// assert_eq!(l.value, "answer");
/// ```
#[derive(Debug, Clone)]
pub struct Loaded<V> {
    /// The value.
    pub value: V,
    /// Invalidation tags.
    pub tags: Vec<String>,
    /// TTL for this entry (overrides the configured default).
    pub ttl: Option<Duration>,
    /// What computing the value cost; a later hit saves it.
    pub cost: Cost,
}

// === impl Loaded ===

impl<V> Loaded<V> {
    /// A value with no tags, the default TTL and zero cost.
    pub fn new(value: V) -> Self {
        Self {
            value,
            tags: Vec::new(),
            ttl: None,
            cost: Cost::from_micros(0),
        }
    }

    /// Sets the tags.
    #[must_use]
    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Sets this entry's TTL.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets what computing the value cost.
    #[must_use]
    pub fn with_cost(mut self, cost: Cost) -> Self {
        self.cost = cost;
        self
    }
}

impl<V> From<V> for Loaded<V> {
    fn from(value: V) -> Self {
        Self::new(value)
    }
}

/// Where a freshly loaded entry goes and for how long; decided by a [`Placement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Admit into L1.
    pub memory: bool,
    /// How many lower tiers, in order, take the entry (write-through on load,
    /// promotion on a hit; each still follows its [`TierPolicy`]): `0` keeps
    /// it out of every shared and durable tier, `usize::MAX` writes all.
    pub lower_tiers: usize,
    /// Cap the entry's TTL.
    pub max_ttl: Option<Duration>,
    /// Drop this key from L1 to make room (the placement's eviction choice).
    pub evict: Option<Key>,
}

impl Decision {
    /// Everywhere, no TTL cap.
    pub const ADMIT_ALL: Self = Self {
        memory: true,
        lower_tiers: usize::MAX,
        max_ttl: None,
        evict: None,
    };
}

/// Learns from accesses and decides admission, tier placement and TTL of
/// loaded entries. See [`AdaptivePolicy`](crate::adaptive::AdaptivePolicy).
pub trait Placement: fmt::Debug + Send + Sync + 'static {
    /// Every lookup, with whether it hit any tier.
    fn on_access(&self, key: &Key, hit: bool);
    /// A freshly loaded entry: where to put it.
    fn place(&self, key: &Key, meta: &Meta) -> Decision;
}

/// Called on every lookup (for predictive warming).
pub trait AccessObserver: fmt::Debug + Send + Sync + 'static {
    /// `key` was looked up.
    fn observe(&self, key: &Key, hit: bool);
}

/// A lower tier with its policy.
struct Lower<V> {
    tier: Arc<dyn Tier<V>>,
    policy: TierPolicy,
}

impl<V> fmt::Debug for Lower<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lower")
            .field("tier", &self.tier)
            .field("policy", &self.policy)
            .finish()
    }
}

type LoadResult<V> = Result<Arc<Entry<V>>, Error>;
type InFlight<V> = Shared<BoxFuture<'static, LoadResult<V>>>;

struct Inner<V> {
    name: Arc<str>,
    memory: MemoryTier<V>,
    lower: Vec<Lower<V>>,
    time: TimeBase,
    config: Reloadable<CacheConfig>,
    inflight: Mutex<HashMap<Key, (u64, InFlight<V>)>>,
    next_load: AtomicU64,
    epoch: AtomicU64,
    placement: Option<Arc<dyn Placement>>,
    observer: std::sync::OnceLock<Arc<dyn AccessObserver>>,
    telemetry: Telemetry,
}

/// A cache as an ordered list of tiers: L1 in-process (moka), then shared and
/// durable tiers (Redis, SQLite, your own [`Tier`]).
///
/// Cheap to clone; clones share everything.
///
/// Reads go through the tiers in order and copy what a slower tier finds into
/// the faster ones (promotion). [`get_or_compute`](Self::get_or_compute)
/// loads a missing value once however many tasks ask for it at the same time
/// (single-flight, across tiers), writes it through the tiers, serves stale
/// entries while one background load refreshes them, and caches failures only
/// when `negative_ttl` is set.
pub struct TieredCache<V> {
    inner: Arc<Inner<V>>,
}

impl<V> Clone for TieredCache<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<V> fmt::Debug for TieredCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredCache")
            .field("name", &self.inner.name)
            .field("memory", &self.inner.memory)
            .field("lower", &self.inner.lower)
            .finish_non_exhaustive()
    }
}

/// A weak handle to a [`TieredCache`].
pub struct WeakTieredCache<V> {
    inner: std::sync::Weak<Inner<V>>,
}

impl<V> Clone for WeakTieredCache<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<V> fmt::Debug for WeakTieredCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakTieredCache").finish_non_exhaustive()
    }
}

impl<V> WeakTieredCache<V> {
    /// The cache, if it is still alive.
    #[must_use]
    pub fn upgrade(&self) -> Option<TieredCache<V>> {
        self.inner.upgrade().map(|inner| TieredCache { inner })
    }
}

/// Builds a [`TieredCache`].
#[must_use]
pub struct TieredCacheBuilder<V> {
    config: CacheConfig,
    name: Arc<str>,
    clock: SharedClock,
    lower: Vec<Lower<V>>,
    weigher: Option<Weigher<V>>,
    placement: Option<Arc<dyn Placement>>,
}

impl<V> fmt::Debug for TieredCacheBuilder<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredCacheBuilder")
            .field("config", &self.config)
            .field("name", &self.name)
            .field("lower", &self.lower)
            .finish_non_exhaustive()
    }
}

// === impl TieredCacheBuilder ===

impl<V: CacheValue> TieredCacheBuilder<V> {
    /// Names the cache (the `cache` label of its metrics).
    pub fn with_name(mut self, name: impl AsRef<str>) -> Self {
        self.name = Arc::from(name.as_ref());
        self
    }

    /// Uses `clock` for freshness and expiry (default: `TokioClock`).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Appends a lower tier (L2, L3, …), slower than the ones before it.
    pub fn with_tier(mut self, tier: Arc<dyn Tier<V>>, policy: TierPolicy) -> Self {
        self.lower.push(Lower { tier, policy });
        self
    }

    /// Weighs L1 entries with `weigher` instead of their encoded size.
    pub fn with_weigher(
        mut self,
        weigher: impl Fn(&Key, &Entry<V>) -> u32 + Send + Sync + 'static,
    ) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Lets `placement` decide admission, tier placement and TTL.
    pub fn with_placement(mut self, placement: Arc<dyn Placement>) -> Self {
        self.placement = Some(placement);
        self
    }

    /// Builds the cache.
    ///
    /// # Errors
    /// [`Error::Config`] naming the invalid field.
    pub fn build(self) -> Result<TieredCache<V>, Error> {
        self.config.validate()?;
        let weigher = self
            .weigher
            .unwrap_or_else(crate::tier::memory::default_weigher::<V>);
        let memory = MemoryTier::new(self.config.memory, weigher, self.name.clone())?;
        let telemetry = Telemetry::new(&self.name, self.lower.iter().map(|l| l.tier.name()));
        Ok(TieredCache {
            inner: Arc::new(Inner {
                name: self.name,
                memory,
                lower: self.lower,
                time: TimeBase::new(self.clock),
                config: Reloadable::new(self.config)?,
                inflight: Mutex::new(HashMap::new()),
                next_load: AtomicU64::new(0),
                epoch: AtomicU64::new(0),
                placement: self.placement,
                observer: std::sync::OnceLock::new(),
                telemetry,
            }),
        })
    }
}

// === impl TieredCache ===

impl<V: CacheValue> TieredCache<V> {
    /// A builder with `config`.
    pub fn builder(config: CacheConfig) -> TieredCacheBuilder<V> {
        TieredCacheBuilder {
            config,
            name: Arc::from("default"),
            clock: Arc::new(TokioClock),
            lower: Vec::new(),
            weigher: None,
            placement: None,
        }
    }

    /// The cache's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// L1.
    #[must_use]
    pub fn memory(&self) -> &MemoryTier<V> {
        &self.inner.memory
    }

    /// The cache's current time in Unix milliseconds.
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        self.inner.time.now_ms()
    }

    /// The live configuration.
    #[must_use]
    pub fn config(&self) -> Arc<CacheConfig> {
        self.inner.config.load()
    }

    /// Changes TTL, freshness and negative caching at runtime; entries keep
    /// the times they were stored with.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration or a change of L1
    /// settings (moka fixes capacity and time-to-idle at construction).
    pub fn reconfigure(&self, config: CacheConfig) -> Result<(), Error> {
        if config.memory != self.inner.config.load().memory {
            return Err(foundation_core::ValidationErrors::single(
                "memory",
                "cannot change at runtime; build a new cache",
            )
            .into());
        }
        self.inner.config.update(config)?;
        Ok(())
    }

    /// Installs the observer of every lookup (predictive warming uses it).
    /// One per cache; returns false (and changes nothing) if one is installed.
    pub fn set_observer(&self, observer: Arc<dyn AccessObserver>) -> bool {
        self.inner.observer.set(observer).is_ok()
    }

    /// A handle that does not keep the cache alive (for observers that call
    /// back into it).
    #[must_use]
    pub fn downgrade(&self) -> WeakTieredCache<V> {
        WeakTieredCache {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The value under `key`, looking through every tier (promoting what a
    /// slower tier finds); stale values are returned as they are.
    ///
    /// # Errors
    /// [`Error::CachedFailure`] when a negative entry answers.
    pub async fn get(&self, key: &Key) -> Result<Option<V>, Error> {
        let now = self.inner.time.now_ms();
        match lookup(&self.inner, key, now).await {
            Some(e) => e.value().cloned().map(Some),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key` in every tier (per their write policies and
    /// the placement decision).
    pub async fn insert(&self, key: &Key, value: impl Into<Loaded<V>>) {
        let now = self.inner.time.now_ms();
        let entry = make_entry(&self.inner, key, value.into(), now, Duration::ZERO);
        store(&self.inner, key, entry, now).await;
    }

    /// The value under `key`, computed by `f` on a miss.
    ///
    /// See [`get_or_load`](Self::get_or_load); `f` here returns the bare value.
    ///
    /// # Errors
    /// [`Error::Load`] when `f` fails, [`Error::CachedFailure`] when a cached
    /// failure answers.
    pub async fn get_or_compute<F, Fut, E>(&self, key: &Key, f: F) -> Result<V, Error>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.get_or_load(key, move || f().map(|r| r.map(Loaded::new)))
            .await
    }

    /// The value under `key`; on a miss in every tier, `f` loads it.
    ///
    /// - Concurrent calls for one key share one load (single-flight), even if
    ///   the caller that started it is cancelled: the next waiter drives it.
    /// - The load first re-checks the tiers (another instance may have filled
    ///   L2 meanwhile), then runs `f`, measures its latency, and writes the
    ///   value through the tiers unless an invalidation happened meanwhile.
    /// - A stale entry (past `fresh_for`, before `ttl`) is returned at once
    ///   and refreshed by one background load.
    /// - Failures are returned to every waiter and cached only if
    ///   `negative_ttl` is set.
    ///
    /// # Errors
    /// [`Error::Load`] when `f` fails, [`Error::CachedFailure`] when a cached
    /// failure answers.
    pub async fn get_or_load<F, Fut, E>(&self, key: &Key, f: F) -> Result<V, Error>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let now = self.inner.time.now_ms();
        if let Some(e) = lookup(&self.inner, key, now).await {
            if e.meta.is_stale(now) && matches!(e.payload, Payload::Value(_)) {
                let _started = self.refresh(key, f);
            }
            return e.value().cloned();
        }
        let load = join_or_start(&self.inner, key, f, false);
        load.await?.value().cloned()
    }

    /// Starts a background load of `key` unless one is running (then `f` is
    /// dropped and this returns false); for refresh-ahead and predictive
    /// warming. Needs a tokio runtime.
    pub fn refresh<F, Fut, E>(&self, key: &Key, f: F) -> bool
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        if self.inner.inflight.lock().contains_key(key) {
            return false;
        }
        self.inner.telemetry.refreshes.increment(1);
        let load = join_or_start(&self.inner, key, f, true);
        tokio::spawn(async move {
            // The outcome is recorded by the load itself (metrics, logs).
            let _ = load.await;
        });
        true
    }

    /// Whether a load for `key` is running.
    #[must_use]
    pub fn is_loading(&self, key: &Key) -> bool {
        self.inner.inflight.lock().contains_key(key)
    }

    /// Removes `key` from every tier.
    ///
    /// # Errors
    /// [`Error::Backend`] from the first tier that failed (the others are still tried).
    pub async fn invalidate(&self, key: &Key) -> Result<(), Error> {
        self.invalidate_selected(&Selector::Key(key.clone())).await
    }

    /// Removes every entry tagged `tag` from every tier.
    ///
    /// # Errors
    /// As [`invalidate`](Self::invalidate).
    pub async fn invalidate_tag(&self, tag: &str) -> Result<(), Error> {
        self.invalidate_selected(&Selector::Tag(tag.to_owned()))
            .await
    }

    /// Removes every key of `scope` whose name starts with `prefix`.
    ///
    /// # Errors
    /// As [`invalidate`](Self::invalidate).
    pub async fn invalidate_prefix(
        &self,
        scope: impl Into<crate::ScopeId>,
        prefix: &str,
    ) -> Result<(), Error> {
        self.invalidate_selected(&Selector::Prefix(scope.into(), prefix.to_owned()))
            .await
    }

    /// Removes every key of `scope`.
    ///
    /// # Errors
    /// As [`invalidate`](Self::invalidate).
    pub async fn invalidate_scope(&self, scope: impl Into<crate::ScopeId>) -> Result<(), Error> {
        self.invalidate_selected(&Selector::Scope(scope.into()))
            .await
    }

    /// Removes what `selector` matches from every tier. Loads running now
    /// still answer their waiters but do not store their (possibly stale) value.
    ///
    /// # Errors
    /// As [`invalidate`](Self::invalidate).
    pub async fn invalidate_selected(&self, selector: &Selector) -> Result<(), Error> {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        let mut first_err = None;
        if let Err(e) = Tier::invalidate(&self.inner.memory, selector).await {
            first_err.get_or_insert(e);
        }
        for l in &self.inner.lower {
            if let Err(e) = l.tier.invalidate(selector).await {
                tracing::warn!(cache = %self.inner.name, tier = l.tier.name(), error = %e, "invalidation failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Looks `key` up through the tiers at `now`, promoting a lower-tier hit.
async fn lookup<V: CacheValue>(
    inner: &Arc<Inner<V>>,
    key: &Key,
    now: u64,
) -> Option<Arc<Entry<V>>> {
    let found = lookup_inner(inner, key, now).await;
    let hit = found.is_some();
    if let Some(p) = &inner.placement {
        p.on_access(key, hit);
    }
    if let Some(o) = inner.observer.get() {
        o.observe(key, hit);
    }
    found
}

async fn lookup_inner<V: CacheValue>(
    inner: &Arc<Inner<V>>,
    key: &Key,
    now: u64,
) -> Option<Arc<Entry<V>>> {
    if let Some(e) = inner.memory.get_entry(key).await {
        if !e.meta.is_expired(now) {
            inner.telemetry.hit(0, e.meta.cost_micros);
            return Some(e);
        }
        inner.memory.remove(key).await;
    }
    for (i, l) in inner.lower.iter().enumerate() {
        match l.tier.get(key).await {
            Ok(Some(e)) if e.meta.scope != key.scope().canonical() => {
                // A hash collision on a shared tier: never serve it.
                inner.telemetry.scope_mismatch.increment(1);
            }
            Ok(Some(e)) if !e.meta.is_expired(now) => {
                inner.telemetry.hit(i + 1, e.meta.cost_micros);
                promote(inner, key, &e, i, now).await;
                return Some(e);
            }
            Ok(_) => {}
            Err(e) => {
                inner.telemetry.tier_error(i);
                tracing::debug!(cache = %inner.name, tier = l.tier.name(), error = %e, "tier read failed; treated as a miss");
            }
        }
    }
    inner.telemetry.misses.increment(1);
    None
}

async fn promote<V: CacheValue>(
    inner: &Arc<Inner<V>>,
    key: &Key,
    e: &Arc<Entry<V>>,
    found_at: usize,
    now: u64,
) {
    let decision = inner
        .placement
        .as_ref()
        .map_or(Decision::ADMIT_ALL, |p| p.place(key, &e.meta));
    if decision.memory {
        inner.memory.insert(key.clone(), e.clone()).await;
    }
    for l in inner
        .lower
        .iter()
        .take(found_at.min(decision.lower_tiers))
        .filter(|l| l.policy.promote_on_hit)
    {
        let e = capped(e, l.policy.max_ttl, now);
        if let Err(err) = l.tier.put(key, e, now).await {
            tracing::debug!(cache = %inner.name, tier = l.tier.name(), error = %err, "promotion failed");
        }
    }
}

fn capped<V: Clone>(e: &Arc<Entry<V>>, max_ttl: Option<Duration>, now: u64) -> Arc<Entry<V>> {
    match max_ttl {
        Some(t) if add_ms(now, Some(t)) < e.meta.expires_ms => {
            let mut c = (**e).clone();
            c.meta.expires_ms = add_ms(now, Some(t));
            c.meta.fresh_until_ms = c.meta.fresh_until_ms.min(c.meta.expires_ms);
            Arc::new(c)
        }
        _ => e.clone(),
    }
}

fn make_entry<V: CacheValue>(
    inner: &Inner<V>,
    key: &Key,
    loaded: Loaded<V>,
    now: u64,
    took: Duration,
) -> Arc<Entry<V>> {
    let cfg = inner.config.load();
    let ttl = loaded.ttl.or(cfg.ttl);
    let expires_ms = add_ms(now, ttl);
    let fresh_until_ms = add_ms(now, cfg.fresh_for).min(expires_ms);
    Arc::new(Entry {
        meta: Meta {
            scope: key.scope().canonical().to_owned(),
            created_ms: now,
            fresh_until_ms,
            expires_ms,
            tags: loaded.tags,
            cost_micros: loaded.cost.as_micros(),
            load_micros: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        },
        payload: Payload::Value(loaded.value),
    })
}

async fn store<V: CacheValue>(inner: &Arc<Inner<V>>, key: &Key, entry: Arc<Entry<V>>, now: u64) {
    let decision = inner
        .placement
        .as_ref()
        .map_or(Decision::ADMIT_ALL, |p| p.place(key, &entry.meta));
    let entry = capped(&entry, decision.max_ttl, now);
    if let Some(k) = &decision.evict {
        inner.memory.remove(k).await;
    }
    if decision.memory {
        inner.memory.insert(key.clone(), entry.clone()).await;
    } else {
        inner.telemetry.not_admitted.increment(1);
        // A previous version must not outlive this write.
        inner.memory.remove(key).await;
    }
    let skipped = inner.lower.len().saturating_sub(decision.lower_tiers);
    if skipped > 0 {
        inner.telemetry.lower_skipped.increment(skipped as u64);
    }
    {
        let writes = inner
            .lower
            .iter()
            .take(decision.lower_tiers)
            .filter(|l| l.policy.write_on_load)
            .map(|l| {
                let e = capped(&entry, l.policy.max_ttl, now);
                async move { (l.tier.name(), l.tier.put(key, e, now).await) }
            });
        for (tier, r) in futures_util::future::join_all(writes).await {
            if let Err(e) = r {
                tracing::warn!(cache = %inner.name, tier, error = %e, "write-through failed");
            }
        }
    }
}

fn join_or_start<V, F, Fut, E>(inner: &Arc<Inner<V>>, key: &Key, f: F, refresh: bool) -> InFlight<V>
where
    V: CacheValue,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    let mut map = inner.inflight.lock();
    if let Some((_, f)) = map.get(key) {
        inner.telemetry.coalesced.increment(1);
        return f.clone();
    }
    let id = inner.next_load.fetch_add(1, Ordering::Relaxed);
    let fut = load(inner.clone(), key.clone(), f, refresh, id)
        .boxed()
        .shared();
    map.insert(key.clone(), (id, fut.clone()));
    fut
}

async fn load<V, F, Fut, E>(
    inner: Arc<Inner<V>>,
    key: Key,
    f: F,
    refresh: bool,
    id: u64,
) -> LoadResult<V>
where
    V: CacheValue,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    /// Removes the in-flight record when the load ends or is dropped.
    struct Done<'a, V> {
        inner: &'a Inner<V>,
        key: &'a Key,
        id: u64,
    }
    impl<V> Drop for Done<'_, V> {
        fn drop(&mut self) {
            let mut map = self.inner.inflight.lock();
            if map.get(self.key).is_some_and(|(id, _)| *id == self.id) {
                map.remove(self.key);
            }
        }
    }
    let _done = Done {
        inner: &inner,
        key: &key,
        id,
    };
    let epoch = inner.epoch.load(Ordering::Acquire);
    if !refresh {
        let now = inner.time.now_ms();
        if let Some(e) = lookup_inner(&inner, &key, now).await {
            return Ok(e);
        }
    }
    let started = Instant::now();
    let started_clock = inner.time.instant();
    let result = f().await.map_err(Into::<BoxError>::into);
    // Latency on the cache's clock when it moves (paused-time tests), else wall time.
    let took = inner
        .time
        .instant()
        .saturating_duration_since(started_clock)
        .max(started.elapsed());
    let now = inner.time.now_ms();
    match result {
        Ok(loaded) => {
            inner.telemetry.load(true, took);
            let entry = make_entry(&inner, &key, loaded, now, took);
            if inner.epoch.load(Ordering::Acquire) == epoch {
                store(&inner, &key, entry.clone(), now).await;
            } else {
                inner.telemetry.discarded.increment(1);
            }
            Ok(entry)
        }
        Err(e) => {
            inner.telemetry.load(false, took);
            let negative_ttl = inner.config.load().negative_ttl;
            if let Some(ttl) = negative_ttl {
                let kind = foundation_core::error::classify(e.as_ref());
                let failure = Arc::new(Entry {
                    meta: Meta {
                        scope: key.scope().canonical().to_owned(),
                        created_ms: now,
                        fresh_until_ms: add_ms(now, Some(ttl)),
                        expires_ms: add_ms(now, Some(ttl)),
                        tags: Vec::new(),
                        cost_micros: 0,
                        load_micros: 0,
                    },
                    payload: Payload::Failure {
                        message: e.to_string(),
                        kind: kind.as_str().to_owned(),
                    },
                });
                inner.memory.insert(key.clone(), failure).await;
            }
            Err(Error::Load(Arc::from(e)))
        }
    }
}
