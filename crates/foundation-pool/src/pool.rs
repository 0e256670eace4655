//! The elastic pool: a deadpool managed pool plus the controller, health
//! checker, creation gate and fail-fast admission around it.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use deadpool::managed::{self, Object, Timeouts};
use foundation_core::{Reloadable, Validate};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::PoolConfig;
use crate::error::{BuildError, PoolError, RunError};
use crate::manager::{Adapter, AdapterError, Entry, Manager};
use crate::shared::{CloseReason, ControllerSnapshot, ScaleEvent, Shared};

/// How healthy the pool considers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Health {
    /// At least `min_size` objects and creation works.
    Healthy,
    /// Below `min_size` while creation works (starting up or refilling).
    Warming,
    /// Creation is failing but some objects are still alive.
    Degraded,
    /// Creation is failing and no object is left: checkouts fail fast.
    Unavailable,
}

impl Health {
    /// A short stable name (`"healthy"`, `"warming"`, `"degraded"`, `"unavailable"`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Warming => "warming",
            Self::Degraded => "degraded",
            Self::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point-in-time view of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Live objects (idle + in use).
    pub size: usize,
    /// Idle objects, ready to hand out.
    pub idle: usize,
    /// Objects checked out.
    pub in_use: usize,
    /// Checkouts waiting for an object.
    pub waiting: usize,
    /// Current capacity chosen by the controller (`min_size.max(1)..=max_size`).
    pub capacity: usize,
    /// Configured lower bound.
    pub min_size: usize,
    /// Configured upper bound.
    pub max_size: usize,
    /// Health verdict.
    pub health: Health,
    /// Consecutive creation failures (0 when creation works).
    pub consecutive_create_failures: u32,
    /// While creation is backing off: time until the next attempt.
    pub create_retry_in: Option<Duration>,
    /// Objects created since the pool was built.
    pub created_total: u64,
    /// Objects closed after a failed health check since the pool was built.
    pub check_failures_total: u64,
}

/// An elastic pool of `M::Type` objects over a deadpool managed pool.
///
/// Clones share the same pool. See the [crate docs](crate) for an overview.
pub struct ElasticPool<M: Manager> {
    inner: Arc<PoolInner<M>>,
}

pub(crate) struct PoolInner<M: Manager> {
    pub(crate) pool: managed::Pool<Adapter<M>>,
    pub(crate) shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl<M: Manager> Drop for PoolInner<M> {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().drain(..) {
            t.abort();
        }
    }
}

impl<M: Manager> Clone for ElasticPool<M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Manager> fmt::Debug for ElasticPool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticPool")
            .field("name", &self.inner.shared.name)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// Builds an [`ElasticPool`].
#[must_use]
pub struct Builder<M> {
    manager: M,
    config: PoolConfig,
}

impl<M> fmt::Debug for Builder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

// === impl Builder ===

impl<M: Manager> Builder<M> {
    /// Replaces the whole configuration.
    pub fn with_config(mut self, config: PoolConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the bounds `min..=max`.
    pub fn with_bounds(mut self, min: usize, max: usize) -> Self {
        self.config.min_size = min;
        self.config.max_size = max;
        self
    }

    /// Sets the pool's name (metrics label and tracing field).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Changes the configuration in place.
    pub fn with(mut self, f: impl FnOnce(&mut PoolConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Validates the configuration and builds the pool. No task is spawned
    /// and no object created until [`ElasticPool::start`].
    ///
    /// # Errors
    /// [`BuildError::Config`] naming every invalid field.
    pub fn build(self) -> Result<ElasticPool<M>, BuildError> {
        self.config.validate()?;
        let max = self.config.max_size;
        let queue_mode = self.config.queue_mode.into();
        let config = Reloadable::new(self.config)?;
        let seed = seed_from(&config);
        let shared = Arc::new(Shared::new(config, max, seed));
        let adapter = Adapter {
            inner: self.manager,
            shared: Arc::clone(&shared),
        };
        // Timeouts are applied by this crate on tokio's clock, so deadpool
        // needs no runtime of its own.
        let pool = managed::Pool::builder(adapter)
            .max_size(max)
            .queue_mode(queue_mode)
            .build()
            .map_err(|_| BuildError::NoRuntime)?;
        Ok(ElasticPool {
            inner: Arc::new(PoolInner {
                pool,
                shared,
                tasks: Mutex::new(Vec::new()),
            }),
        })
    }
}

fn seed_from<T>(v: &T) -> u64 {
    // Per-pool jitter seed: the address differs between pools and runs.
    let addr = std::ptr::from_ref(v) as usize as u64;
    addr ^ 0xA076_1D64_78BD_642F
}

// === impl ElasticPool ===

impl<M: Manager> ElasticPool<M> {
    /// A builder with `min..=max` bounds and default settings.
    pub fn builder(manager: M, min: usize, max: usize) -> Builder<M> {
        Builder {
            manager,
            config: PoolConfig::new(min, max),
        }
    }

    /// The live configuration.
    #[must_use]
    pub fn config(&self) -> Arc<PoolConfig> {
        self.inner.shared.config.load()
    }

    /// Replaces the configuration at runtime: bounds, timeouts, health and
    /// controller parameters take effect at the next tick; nothing in flight
    /// is dropped. `name` and `queue_mode` are fixed at build.
    ///
    /// # Errors
    /// [`BuildError::Config`] if invalid, [`BuildError::Immutable`] if it
    /// changes `name` or `queue_mode`; the old configuration stays live.
    pub fn reconfigure(&self, config: PoolConfig) -> Result<(), BuildError> {
        let cur = self.config();
        if config.name != cur.name {
            return Err(BuildError::Immutable("name"));
        }
        if config.queue_mode != cur.queue_mode {
            return Err(BuildError::Immutable("queue_mode"));
        }
        self.inner.shared.set_config(config)?;
        tracing::info!(pool = %self.inner.shared.name, "pool reconfigured");
        Ok(())
    }

    /// Changes only the bounds (see [`reconfigure`](Self::reconfigure)).
    ///
    /// # Errors
    /// [`BuildError::Config`] if `min > max` or `max == 0`.
    pub fn set_bounds(&self, min: usize, max: usize) -> Result<(), BuildError> {
        let mut cfg = (*self.config()).clone();
        cfg.min_size = min;
        cfg.max_size = max;
        self.reconfigure(cfg)
    }

    /// Starts the background tasks on the current tokio runtime: warm-up to
    /// `min_size` (and refill after failures, with backoff), the auto-scaling
    /// controller, and health checks with lifetime/idle reaping. They stop
    /// when the last pool handle is dropped or on [`shutdown`](Self::shutdown).
    /// Calling it again restarts them.
    ///
    /// # Errors
    /// [`BuildError::NoRuntime`] outside a tokio runtime.
    pub fn start(&self) -> Result<(), BuildError>
    where
        M: 'static,
    {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let weak = Arc::downgrade(&self.inner);
        let spawned = crate::maintenance::spawn(&handle, &weak, &self.inner);
        let mut tasks = self.inner.tasks.lock();
        for t in tasks.drain(..) {
            t.abort();
        }
        self.inner.shared.invalidate_coarse();
        tasks.extend(spawned);
        Ok(())
    }

    /// Stops the background tasks and closes the pool: waiting and future
    /// checkouts fail with [`PoolError::Closed`]; checked-out objects are
    /// dropped when returned.
    pub fn shutdown(&self) {
        for t in self.inner.tasks.lock().drain(..) {
            t.abort();
        }
        self.inner.shared.invalidate_coarse();
        self.inner.pool.close();
    }

    /// Checks out an object within the configured `checkout_timeout`.
    ///
    /// # Errors
    /// See [`PoolError`].
    // Not an `async fn`: returning the checkout future itself spares the
    // fast path a wrapper future and the copy that moving it in costs.
    pub fn get(&self) -> impl Future<Output = Result<Pooled<M>, PoolError<M::Error>>> + '_ {
        self.checkout(Deadline::Configured)
    }

    /// Checks out an object within `timeout`.
    ///
    /// # Errors
    /// See [`PoolError`].
    pub fn get_timeout(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Pooled<M>, PoolError<M::Error>>> + '_ {
        self.checkout(Deadline::In(timeout))
    }

    /// Checks out an object before `deadline`, failing fast when the deadline
    /// is predicted to be unreachable (`fail_fast`) or the backend is down.
    ///
    /// An idle object past `max_lifetime` is closed, and one not checked for
    /// `check_on_checkout_after` is checked first (closed if it fails), before
    /// the next one is tried: an object that failed its check is never
    /// handed out.
    ///
    /// # Errors
    /// See [`PoolError`].
    pub fn get_until(
        &self,
        deadline: Instant,
    ) -> impl Future<Output = Result<Pooled<M>, PoolError<M::Error>>> + '_ {
        self.checkout(Deadline::At(deadline))
    }

    async fn checkout(&self, deadline: Deadline) -> Result<Pooled<M>, PoolError<M::Error>> {
        let shared = &self.inner.shared;
        // The clock is a measurable share of a checkout, so it is read only
        // when something depends on it: the wait of a queued checkout, a
        // hold-time sample, or an object whose lifetime or check may be due.
        let mut started: Option<Instant> = None;
        let mut retry = false;
        loop {
            // Closed objects are replaced within the same deadline.
            if std::mem::replace(&mut retry, true) {
                let start = *started.get_or_insert_with(Instant::now);
                if Instant::now() >= deadline.resolve(start, shared) {
                    shared.metrics.timeouts.increment(1);
                    return Err(PoolError::Timeout {
                        waited: start.elapsed(),
                    });
                }
            }
            // Fast path: an idle object or a free slot, without queueing.
            // Only when that fails does the checkout decide whether waiting
            // can pay off.
            let mut queued = false;
            let mut obj = match self.inner.pool.timeout_get(&NOW).await {
                Ok(obj) => obj,
                Err(managed::PoolError::Timeout(_)) => {
                    let start = *started.get_or_insert_with(Instant::now);
                    let at = deadline.resolve(start, shared);
                    if let Some(err) = self.admission(start, at) {
                        return Err(err);
                    }
                    queued = true;
                    // Boxed: the queued path is the rare one, and keeping its
                    // timer out of this future keeps the fast path's future
                    // small (it is moved on every checkout). Matched apart
                    // from the fast path's result so that the object is not
                    // moved through nested results.
                    match Box::pin(tokio::time::timeout_at(at, self.inner.pool.get())).await {
                        Ok(Ok(obj)) => obj,
                        Ok(Err(e)) => return Err(self.map_error(e)),
                        Err(_) => {
                            shared.metrics.timeouts.increment(1);
                            return Err(PoolError::Timeout {
                                waited: start.elapsed(),
                            });
                        }
                    }
                }
                Err(e) => return Err(self.map_error(e)),
            };
            // Created by this very checkout (deadpool counts recycles of
            // objects taken from the idle queue): its wait was its creation,
            // and a check would be redundant.
            let fresh = Object::metrics(&obj).recycle_count == 0;
            let attention = obj.attention_nanos(fresh);
            let n = crate::shared::checkout_tick();
            if n.is_multiple_of(8) {
                // The fast path never waits, so it takes part in tokio's
                // cooperative scheduling explicitly, on every 8th checkout: a
                // task looping over checkouts still yields now and then (as
                // with deadpool's semaphore wait), and the pool's own tasks
                // get to run, at an eighth of the cost.
                tokio::task::coop::consume_budget().await;
            }
            // Every 32nd checkout per thread (the first one always, so that
            // predictions start early) samples its hold time: two clock
            // readings, which the others are spared.
            let sample = n.is_multiple_of(32);
            let now = (queued || sample || !shared.clear_until(attention)).then(Instant::now);
            if let Some(now) = now {
                shared.check_coarse(now);
            }
            if let Some(now) = now {
                let hot = &shared.hot;
                if obj.expired(now, hot.max_lifetime()) {
                    shared.closed(CloseReason::MaxLifetime);
                    drop(Object::take(obj));
                    continue;
                }
                let due = !fresh
                    && hot.check_after().is_some_and(|after| {
                        now.saturating_duration_since(obj.last_checked()) >= after
                    });
                if due {
                    let metrics = *Object::metrics(&obj);
                    let ok = Box::pin(self.inner.pool.manager().check(&mut obj, &metrics)).await;
                    if !ok {
                        shared.closed(CloseReason::CheckFailed);
                        drop(Object::take(obj));
                        continue;
                    }
                }
            }
            let waited = match (queued, started, now) {
                (true, Some(s), Some(n)) => n.saturating_duration_since(s),
                _ if fresh => obj.create_took(),
                _ => Duration::ZERO,
            };
            shared.record_wait(waited, queued);
            return Ok(Pooled {
                obj: Some(obj),
                since: now.filter(|_| sample),
                discard: None,
            });
        }
    }

    /// Runs `op` with a pooled object under one deadline `timeout` covering
    /// checkout and operation.
    ///
    /// The object goes back to the pool when `op` finishes (with `Ok` or
    /// `Err`); it is discarded when the deadline cuts `op` short, when `op`
    /// panics, or when the returned future is dropped midway, because its
    /// state is then unknown.
    ///
    /// # Errors
    /// [`RunError::Checkout`], [`RunError::OperationTimeout`] or
    /// [`RunError::Operation`].
    pub async fn run<T, E, F>(&self, timeout: Duration, op: F) -> Result<T, RunError<E, M::Error>>
    where
        F: AsyncFnOnce(&mut M::Type) -> Result<T, E>,
    {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut obj = self
            .checkout(Deadline::At(deadline))
            .await
            .map_err(RunError::Checkout)?;
        // Armed: if this future is dropped or `op` panics, the object is
        // discarded by `Pooled::drop`.
        obj.discard = Some(CloseReason::OperationAborted);
        match tokio::time::timeout_at(deadline, op(&mut obj)).await {
            Ok(result) => {
                obj.discard = None;
                result.map_err(RunError::Operation)
            }
            Err(_) => Err(RunError::OperationTimeout {
                elapsed: start.elapsed(),
            }),
        }
    }

    /// Counts and pool state at this instant.
    #[must_use]
    pub fn status(&self) -> Status {
        let st = self.inner.pool.status();
        let shared = &self.inner.shared;
        let cfg = shared.config.load();
        let (failures, create_retry_in) = {
            let g = shared.gate.lock();
            (g.failures(), g.retry_in(Instant::now().into_std()))
        };
        let in_use = st.size.saturating_sub(st.available);
        let health = match (failures, st.size) {
            (0, s) if s >= cfg.min_size => Health::Healthy,
            (0, _) => Health::Warming,
            (_, 0) => Health::Unavailable,
            _ => Health::Degraded,
        };
        Status {
            size: st.size,
            idle: st.available,
            in_use,
            waiting: st.waiting,
            capacity: st.max_size,
            min_size: cfg.min_size,
            max_size: cfg.max_size,
            health,
            consecutive_create_failures: failures,
            create_retry_in,
            created_total: shared.totals.created.load(Ordering::Relaxed),
            check_failures_total: shared.closed_total(CloseReason::CheckFailed),
        }
    }

    /// The last scale events (oldest first, at most 64).
    #[must_use]
    pub fn scale_events(&self) -> Vec<ScaleEvent> {
        self.inner.shared.events.lock().iter().copied().collect()
    }

    /// A receiver of the controller's snapshot, updated every tick.
    #[must_use]
    pub fn decisions(&self) -> watch::Receiver<ControllerSnapshot> {
        self.inner.shared.snapshot.subscribe()
    }

    /// Decides whether a checkout that found no idle object and no free slot
    /// may wait at all. (With a free slot the fast path creates, and the
    /// creation gate answers `Unavailable` while the backend is down.)
    fn admission(&self, now: Instant, deadline: Instant) -> Option<PoolError<M::Error>> {
        let shared = &self.inner.shared;
        let cfg = shared.config.load();
        if !cfg.fail_fast {
            return None;
        }
        let st = self.inner.pool.status();
        if st.available > 0 {
            return None;
        }
        // Saturated: predict the wait from the queue and the hold times, with
        // the capacity the pool can still reach.
        let reachable = if cfg.controller.enabled {
            cfg.max_size
        } else {
            st.max_size
        };
        if st.size < reachable {
            return None;
        }
        let hold = shared.mean_hold()?;
        let ahead = u32::try_from(st.waiting + 1).unwrap_or(u32::MAX);
        let slots = u32::try_from(reachable.max(1)).unwrap_or(u32::MAX);
        let predicted = hold * ahead / slots;
        let remaining = deadline.saturating_duration_since(now);
        if predicted > remaining {
            shared.metrics.rejected_overloaded.increment(1);
            return Some(PoolError::Overloaded {
                predicted,
                remaining,
            });
        }
        None
    }

    fn map_error(&self, e: managed::PoolError<AdapterError<M::Error>>) -> PoolError<M::Error> {
        match e {
            managed::PoolError::Backend(AdapterError::Backend(e)) => PoolError::Create(e),
            managed::PoolError::Backend(AdapterError::CreateTimeout(d)) => {
                PoolError::CreateTimeout(d)
            }
            managed::PoolError::Backend(AdapterError::BackingOff { failures, retry_in }) => {
                self.inner.shared.metrics.rejected_unavailable.increment(1);
                PoolError::Unavailable { failures, retry_in }
            }
            managed::PoolError::Timeout(_) => PoolError::Timeout {
                waited: Duration::ZERO,
            },
            // No hooks are registered and no deadpool timeouts are set, so
            // these only mean the pool is unusable.
            managed::PoolError::Closed
            | managed::PoolError::NoRuntimeSpecified
            | managed::PoolError::PostCreateHook(_) => PoolError::Closed,
        }
    }
}

/// When a checkout must end; a relative deadline is resolved only when the
/// checkout has to wait (sparing the fast path a clock read).
#[derive(Debug, Clone, Copy)]
enum Deadline {
    At(Instant),
    In(Duration),
    /// The configured `checkout_timeout`, read only if needed.
    Configured,
}

impl Deadline {
    fn resolve(self, start: Instant, shared: &Shared) -> Instant {
        let after = match self {
            Self::At(t) => return t,
            Self::In(d) => d,
            Self::Configured => shared.hot.checkout_timeout(),
        };
        // A timeout too large to represent is as good as none.
        start
            .checked_add(after)
            .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 24 * 3600))
    }
}

/// The non-blocking timeouts the background tasks use: take an idle object or
/// a free slot now, or nothing.
pub(crate) const NOW: Timeouts = Timeouts {
    wait: Some(Duration::ZERO),
    create: None,
    recycle: None,
};

/// A checked-out object. Dereferences to `M::Type`; goes back to the pool on
/// drop unless discarded.
#[must_use = "dropping a Pooled returns it to the pool at once"]
pub struct Pooled<M: Manager> {
    obj: Option<Object<Adapter<M>>>,
    /// Checkout instant, when this checkout samples the hold time.
    since: Option<Instant>,
    discard: Option<CloseReason>,
}

impl<M: Manager> fmt::Debug for Pooled<M>
where
    M::Type: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("obj", &self.obj.as_deref().map(|e| &e.obj))
            .finish_non_exhaustive()
    }
}

// === impl Pooled ===

impl<M: Manager> Pooled<M> {
    /// Marks the object as broken: it is closed instead of returned (and
    /// replaced by the warm-up task if the pool falls below `min_size`).
    pub fn mark_broken(&mut self) {
        self.discard = Some(CloseReason::Broken);
    }

    /// Closes the object now instead of returning it.
    pub fn discard(mut self) {
        self.mark_broken();
    }

    fn entry(&self) -> Option<&Entry<M::Type>> {
        self.obj.as_deref()
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Type;
    fn deref(&self) -> &M::Type {
        // `obj` is `Some` from construction until `drop`.
        match self.entry() {
            Some(e) => &e.obj,
            None => unreachable!("pooled object used after drop"),
        }
    }
}

impl<M: Manager> DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Type {
        match self.obj.as_deref_mut() {
            Some(e) => &mut e.obj,
            None => unreachable!("pooled object used after drop"),
        }
    }
}

impl<M: Manager> Drop for Pooled<M> {
    fn drop(&mut self) {
        // Worked on in place: moving the object out costs a copy of it.
        let Some(obj) = self.obj.as_mut() else {
            return;
        };
        let shared = &obj.shared;
        // A real clock reading only for a hold-time sample, or when there is
        // no coarse clock; otherwise the last tick stands in for "now" (idle
        // times and lifetimes are judged to within a tick, and checkouts
        // judge lifetimes again).
        let now = match (self.since, shared.coarse_now()) {
            (None, Some(coarse)) => coarse,
            (since, _) => {
                let now = Instant::now();
                if let Some(since) = since {
                    shared.record_hold(now.saturating_duration_since(since));
                }
                shared.check_coarse(now);
                shared.nanos_at(now)
            }
        };
        let reason = self
            .discard
            .or_else(|| std::thread::panicking().then_some(CloseReason::OperationAborted))
            .or_else(|| {
                // The cached attention instant spares the clock arithmetic
                // in the common case.
                (!obj.surely_alive_at(now)
                    && obj.expired(shared.instant_at(now), shared.hot.max_lifetime()))
                .then_some(CloseReason::MaxLifetime)
            });
        if let Some(reason) = reason {
            if let Some(obj) = self.obj.take() {
                let entry = Object::take(obj);
                entry.shared.closed(reason);
            }
        } else {
            obj.last_used = now;
            // Dropped in place: deadpool takes it back.
            self.obj = None;
        }
    }
}
