//! The multi-dimension limiter: atomic admission, peeking, feedback and reconfiguration.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use foundation_core::{Clock, Reloadable, SharedClock, Validate};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::charge::Charge;
use crate::config::{LimiterConfig, MAX_DIMENSIONS};
use crate::error::{AcquireError, ConfigError, UnknownDimension};
use crate::gcra::{self, Gcra};
use crate::headers::RateLimitInfo;
use crate::permit::Permit;
use crate::telemetry::Telemetry;
use crate::time::{Epoch, TimeSource};

/// A limiter over several rate dimensions and an optional concurrency limit.
///
/// Clones share the same state (it is an `Arc` inside), so one limiter can be
/// handed to every task and every clone of a tower service.
///
/// # Admission is atomic across dimensions
///
/// Each dimension's state is one `AtomicU64` (its GCRA theoretical arrival
/// time). Admission charges the dimensions one after another with a
/// compare-and-swap each; if a later dimension (or the concurrency limit)
/// denies, the dimensions already charged are refunded exactly what was
/// added. No lock is taken on this path. Observable consequences:
///
/// - a denied charge leaves every dimension as it found it, except that a
///   dimension that was idle (full) before is still full afterwards but its
///   clock reading is moved to the decision instant — capacity at any later
///   instant is identical;
/// - between the charge of dimension *i* and its rollback, a concurrent
///   request may see dimension *i* fuller than it really is and be denied
///   (a false denial, never a false admission). The window is a few CAS
///   operations long. The property tests check the sequential semantics
///   exactly and the concurrent ones for "never over-admits".
///
/// # Fairness
///
/// [`acquire`](Self::acquire) queues waiters in FIFO order; while anyone is
/// queued, [`try_acquire`](Self::try_acquire) and [`check`](Self::check) deny
/// with [`AcquireError::Queued`] instead of jumping the queue.
#[derive(Clone)]
pub struct RateLimiter {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) state: State,
}

/// Configuration-derived data, shared by every key of a keyed limiter.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    epoch: Epoch,
    pub(crate) dims: Box<[DimShared]>,
    concurrency: AtomicU32,
    pub(crate) max_waiters: AtomicUsize,
    config: Mutex<LimiterConfig>,
    pub(crate) telemetry: Telemetry,
}

pub(crate) struct DimShared {
    pub(crate) name: Arc<str>,
    interval_q: AtomicU64,
    tau: AtomicU64,
    burst: AtomicU64,
    pub(crate) max_queued: AtomicU64,
}

/// Per-limiter (per-key) mutable state.
pub(crate) struct State {
    /// Inline (not boxed): one pointer less on the hot path; positions past
    /// the configured dimensions stay zero.
    pub(crate) tats: [AtomicU64; MAX_DIMENSIONS],
    pub(crate) inflight: AtomicU32,
    pub(crate) waiting: AtomicUsize,
    pub(crate) queue: Mutex<Queue>,
}

#[derive(Default)]
pub(crate) struct Queue {
    pub(crate) waiters: VecDeque<Waiter>,
    pub(crate) next_id: u64,
}

pub(crate) struct Waiter {
    pub(crate) id: u64,
    pub(crate) charge: Charge,
    pub(crate) notify: Arc<Notify>,
}

/// Remaining capacity of one dimension, as seen by [`RateLimiter::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DimensionStatus {
    /// The dimension's name.
    pub name: Arc<str>,
    /// Units that could be charged right now.
    pub remaining: u64,
    /// The dimension's burst (its capacity when idle).
    pub burst: u64,
    /// Time until the dimension is full again.
    pub full_in: Duration,
}

/// A non-consuming view of a limiter's capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Each rate dimension, in configuration order.
    pub dimensions: Vec<DimensionStatus>,
    /// Permits holding a concurrency slot.
    pub in_flight: u32,
    /// The concurrency limit, if any.
    pub concurrency: Option<u32>,
    /// Waiters queued in `acquire`.
    pub waiters: usize,
}

// === impl Shared ===

impl DimShared {
    #[inline]
    pub(crate) fn gcra(&self) -> Gcra {
        Gcra {
            interval_q: self.interval_q.load(Ordering::Relaxed),
            tau: self.tau.load(Ordering::Relaxed),
            burst: self.burst.load(Ordering::Relaxed),
        }
    }

    fn store(&self, g: Gcra, max_queued: u64) {
        self.interval_q.store(g.interval_q, Ordering::Relaxed);
        self.tau.store(g.tau, Ordering::Relaxed);
        self.burst.store(g.burst, Ordering::Relaxed);
        self.max_queued.store(max_queued, Ordering::Relaxed);
    }
}

impl Shared {
    pub(crate) fn new(config: LimiterConfig, time: TimeSource) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut dims = Vec::with_capacity(config.dimensions.len());
        for (i, d) in config.dimensions.iter().enumerate() {
            let g = d.gcra().ok_or_else(|| {
                foundation_core::ValidationErrors::single(
                    foundation_core::FieldPath::from("dimensions")
                        .index(i)
                        .field("period"),
                    "out of range",
                )
            })?;
            let dim = DimShared {
                name: Arc::from(d.name.as_str()),
                interval_q: AtomicU64::new(0),
                tau: AtomicU64::new(0),
                burst: AtomicU64::new(0),
                max_queued: AtomicU64::new(0),
            };
            dim.store(g, d.effective_max_queued());
            dims.push(dim);
        }
        let names: Vec<String> = config.dimensions.iter().map(|d| d.name.clone()).collect();
        Ok(Self {
            name: Arc::from(config.name.as_str()),
            telemetry: Telemetry::register(&config.name, &names),
            epoch: Epoch::new(time),
            dims: dims.into_boxed_slice(),
            concurrency: AtomicU32::new(config.concurrency.unwrap_or(0)),
            max_waiters: AtomicUsize::new(config.queue.max_waiters),
            config: Mutex::new(config),
        })
    }

    /// Nanoseconds since the epoch on the limiter's clock.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.epoch.now()
    }

    pub(crate) fn concurrency(&self) -> Option<u32> {
        match self.concurrency.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    pub(crate) fn config(&self) -> LimiterConfig {
        self.config.lock().clone()
    }

    /// Validates and applies `next`; returns the (old, new) parameters per
    /// dimension so each state can convert its TATs.
    pub(crate) fn reconfigure(
        &self,
        next: LimiterConfig,
    ) -> Result<Vec<(Gcra, Gcra)>, ConfigError> {
        next.validate()?;
        let mut current = self.config.lock();
        let names = |c: &LimiterConfig| {
            c.dimensions
                .iter()
                .map(|d| d.name.clone())
                .collect::<Vec<_>>()
        };
        if names(&current) != names(&next) {
            return Err(ConfigError::DimensionsChanged {
                expected: names(&current),
                got: names(&next),
            });
        }
        let mut pairs = Vec::with_capacity(self.dims.len());
        for (dim, d) in self.dims.iter().zip(&next.dimensions) {
            let old = dim.gcra();
            // `validate` above rejects out-of-range parameters.
            let new = d.gcra().unwrap_or(old);
            dim.store(new, d.effective_max_queued());
            pairs.push((old, new));
        }
        self.concurrency
            .store(next.concurrency.unwrap_or(0), Ordering::Relaxed);
        self.max_waiters
            .store(next.queue.max_waiters, Ordering::Relaxed);
        tracing::info!(limiter = %self.name, config = ?next, "rate limiter reconfigured");
        *current = next;
        Ok(pairs)
    }

    pub(crate) fn unknown(&self, name: &str) -> UnknownDimension {
        UnknownDimension {
            name: name.to_owned(),
            known: self
                .dims
                .iter()
                .map(|d| &*d.name)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

// === impl State ===

impl State {
    pub(crate) fn new() -> Self {
        Self {
            tats: std::array::from_fn(|_| AtomicU64::new(0)),
            inflight: AtomicU32::new(0),
            waiting: AtomicUsize::new(0),
            queue: Mutex::new(Queue::default()),
        }
    }

    pub(crate) fn convert(&self, pairs: &[(Gcra, Gcra)], now: u64) {
        for (cell, (old, new)) in self.tats.iter().zip(pairs) {
            let _ = gcra::update::<()>(cell, |tat| Ok(old.convert(tat, now, new)));
        }
    }

    /// Whether this state is indistinguishable from a fresh one at `now`.
    pub(crate) fn is_idle(&self, now: u64) -> bool {
        self.inflight.load(Ordering::Acquire) == 0
            && self.waiting.load(Ordering::Acquire) == 0
            && self.tats.iter().all(|t| t.load(Ordering::Acquire) <= now)
    }
}

// === impl RateLimiter ===

impl RateLimiter {
    /// A limiter from a configuration on the default clock:
    /// `QuantaClock` with the `quanta` feature (on by
    /// default), else [`SystemClock`](foundation_core::SystemClock).
    ///
    /// # Errors
    /// The configuration's validation errors, each naming its field.
    pub fn try_new(config: LimiterConfig) -> Result<Self, ConfigError> {
        Self::builder(config).build()
    }

    /// A builder, to choose the clock.
    pub fn builder(config: LimiterConfig) -> Builder {
        Builder { config, time: None }
    }

    pub(crate) fn from_parts(shared: Arc<Shared>) -> Self {
        let state = State::new();
        Self {
            inner: Arc::new(Inner { shared, state }),
        }
    }

    /// The telemetry name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// The current configuration.
    #[must_use]
    pub fn config(&self) -> LimiterConfig {
        self.inner.shared.config()
    }

    /// The names of the rate dimensions, in charge order.
    pub fn dimensions(&self) -> impl Iterator<Item = &str> {
        self.inner.shared.dims.iter().map(|d| &*d.name)
    }

    /// The position of the dimension called `name`.
    #[must_use]
    pub fn position(&self, name: &str) -> Option<usize> {
        self.inner.shared.dims.iter().position(|d| &*d.name == name)
    }

    /// A charge built from `(dimension name, amount)` pairs.
    ///
    /// # Errors
    /// When a name is not one of the limiter's dimensions.
    pub fn charge<'a>(
        &self,
        amounts: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Result<Charge, UnknownDimension> {
        let mut c = Charge::ZERO;
        for (name, amount) in amounts {
            let i = self
                .position(name)
                .ok_or_else(|| self.inner.shared.unknown(name))?;
            c = c.with(i, amount);
        }
        Ok(c)
    }

    /// Charges `charge` now if every dimension admits it, without a permit.
    ///
    /// The fire-and-forget form (like governor's `check_n`): nothing to
    /// reconcile and no concurrency slot is taken. Use
    /// [`try_acquire`](Self::try_acquire) for a permit.
    ///
    /// # Errors
    /// [`AcquireError::RateLimited`] naming the first dimension short and when
    /// it would fit, [`AcquireError::ExceedsBurst`] when it never can,
    /// [`AcquireError::Queued`] when waiters are queued ahead.
    #[inline]
    pub fn check(&self, charge: Charge) -> Result<(), AcquireError> {
        self.fair_gate()?;
        let now = self.inner.shared.now();
        self.charge_at(&charge, now, false)
    }

    /// Takes a permit for `charge` now if every dimension (and a concurrency
    /// slot, if configured) admits it.
    ///
    /// # Errors
    /// As [`check`](Self::check), plus [`AcquireError::ConcurrencyLimited`].
    pub fn try_acquire(&self, charge: Charge) -> Result<Permit, AcquireError> {
        self.fair_gate()?;
        self.try_acquire_unfair(charge)
    }

    pub(crate) fn try_acquire_unfair(&self, charge: Charge) -> Result<Permit, AcquireError> {
        let now = self.inner.shared.now();
        let slot = self.inner.shared.concurrency().is_some();
        self.charge_at(&charge, now, slot)?;
        Ok(Permit::new(self.clone(), charge, slot))
    }

    #[inline]
    fn fair_gate(&self) -> Result<(), AcquireError> {
        match self.inner.state.waiting.load(Ordering::Relaxed) {
            0 => Ok(()),
            waiters => {
                self.inner.shared.telemetry.denied_queue.increment(1);
                Err(AcquireError::Queued { waiters })
            }
        }
    }

    /// The atomic multi-dimension admission (see the type docs).
    #[inline]
    pub(crate) fn charge_at(
        &self,
        charge: &Charge,
        now: u64,
        slot: bool,
    ) -> Result<(), AcquireError> {
        let shared = &*self.inner.shared;
        let tats = &self.inner.state.tats;
        let n_dims = shared.dims.len();
        if charge.amounts()[n_dims..].iter().any(|&a| a != 0) {
            return self.check_fits(charge);
        }
        for (i, (dim, cell)) in shared.dims.iter().zip(tats.iter()).enumerate() {
            let n = charge.get(i);
            if n == 0 {
                continue;
            }
            let g = dim.gcra();
            if n > g.burst {
                self.rollback(charge, i, now);
                return Err(AcquireError::ExceedsBurst {
                    dimension: dim.name.clone(),
                    cost: n,
                    burst: g.burst,
                });
            }
            if let Err(wait) = gcra::update(cell, |tat| g.decide(tat, now, n)) {
                self.rollback(charge, i, now);
                shared.telemetry.denied[i].increment(1);
                let tat = cell.load(Ordering::Relaxed);
                shared.telemetry.remaining[i].set(g.remaining(tat, now) as f64);
                // Name the dimension that needs the longest, so the retry-after is
                // when *every* dimension fits (a later one may need longer, or
                // never fit at all).
                let (worst, retry_after) = match self.wait_for(charge, &Charge::ZERO)? {
                    Some((j, d)) if d > Duration::from_nanos(wait) => (j, d),
                    _ => (i, Duration::from_nanos(wait)),
                };
                return Err(AcquireError::RateLimited {
                    dimension: shared.dims[worst].name.clone(),
                    retry_after,
                });
            }
        }
        if slot && let Some(limit) = shared.concurrency() {
            let taken =
                self.inner
                    .state
                    .inflight
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |x| {
                        (x < limit).then_some(x + 1)
                    });
            if taken.is_err() {
                self.rollback(charge, n_dims, now);
                shared.telemetry.denied_concurrency.increment(1);
                return Err(AcquireError::ConcurrencyLimited { limit });
            }
        }
        Ok(())
    }

    /// Refunds the first `upto` dimensions of `charge` (rollback of a denial).
    fn rollback(&self, charge: &Charge, upto: usize, now: u64) {
        let shared = &*self.inner.shared;
        for (i, (dim, cell)) in shared
            .dims
            .iter()
            .zip(self.inner.state.tats.iter())
            .enumerate()
            .take(upto)
        {
            let n = charge.get(i);
            if n > 0 {
                gcra::refund(cell, dim.gcra().inc(n), now);
            }
        }
    }

    /// Refunds (`delta < 0`) or charges extra (`delta > 0`) per dimension,
    /// unconditionally: extra usage becomes debt that later requests wait out.
    pub(crate) fn adjust(&self, reserved: &Charge, actual: &Charge) {
        let shared = &*self.inner.shared;
        let now = shared.now();
        let mut refunded = false;
        for (i, (dim, cell)) in shared
            .dims
            .iter()
            .zip(self.inner.state.tats.iter())
            .enumerate()
        {
            let (r, a) = (reserved.get(i), actual.get(i));
            let g = dim.gcra();
            if a > r {
                let extra = g.inc(a - r);
                let _ = gcra::update::<()>(cell, |tat| Ok(tat.max(now).saturating_add(extra)));
            } else if r > a {
                gcra::refund(cell, g.inc(r - a), now);
                refunded = true;
            }
        }
        if refunded {
            self.wake_head();
        }
    }

    pub(crate) fn release_slot(&self) {
        self.inner.state.inflight.fetch_sub(1, Ordering::AcqRel);
        self.wake_head();
    }

    /// Fails when `charge` can never be admitted (larger than a burst, or
    /// charging a position the limiter does not have).
    pub(crate) fn check_fits(&self, charge: &Charge) -> Result<(), AcquireError> {
        let dims = &self.inner.shared.dims;
        if let Some(pos) = charge.amounts()[dims.len()..].iter().position(|&a| a != 0) {
            return Err(AcquireError::ExceedsBurst {
                dimension: Arc::from(format!("position {} (not configured)", dims.len() + pos)),
                cost: charge.get(dims.len() + pos),
                burst: 0,
            });
        }
        for (i, dim) in dims.iter().enumerate() {
            let burst = dim.gcra().burst;
            if charge.get(i) > burst {
                return Err(AcquireError::ExceedsBurst {
                    dimension: dim.name.clone(),
                    cost: charge.get(i),
                    burst,
                });
            }
        }
        Ok(())
    }

    /// Whether a concurrency limit is configured and reached.
    pub(crate) fn slots_full(&self) -> bool {
        self.inner
            .shared
            .concurrency()
            .is_some_and(|limit| self.inner.state.inflight.load(Ordering::Acquire) >= limit)
    }

    /// Lets the head waiter re-check after capacity came back early.
    pub(crate) fn wake_head(&self) {
        if self.inner.state.waiting.load(Ordering::Acquire) > 0
            && let Some(w) = self.inner.state.queue.lock().waiters.front()
        {
            w.notify.notify_one();
        }
    }

    /// Whether `charge` would be admitted now, without charging anything.
    ///
    /// # Errors
    /// The error [`try_acquire`](Self::try_acquire) would return.
    pub fn would_admit(&self, charge: &Charge) -> Result<(), AcquireError> {
        self.fair_gate()?;
        let wait = self.wait_for(charge, &Charge::ZERO)?;
        match wait {
            Some((i, d)) if !d.is_zero() => Err(AcquireError::RateLimited {
                dimension: self.inner.shared.dims[i].name.clone(),
                retry_after: d,
            }),
            _ => match self.inner.shared.concurrency() {
                Some(limit) if self.inner.state.inflight.load(Ordering::Acquire) >= limit => {
                    Err(AcquireError::ConcurrencyLimited { limit })
                }
                _ => Ok(()),
            },
        }
    }

    /// The longest time any dimension needs before `ahead + charge` fits, with
    /// the dimension that needs it (`None` when nothing is charged).
    pub(crate) fn wait_for(
        &self,
        charge: &Charge,
        ahead: &Charge,
    ) -> Result<Option<(usize, Duration)>, AcquireError> {
        let shared = &*self.inner.shared;
        let now = shared.now();
        let mut worst: Option<(usize, Duration)> = None;
        for (i, (dim, cell)) in shared
            .dims
            .iter()
            .zip(self.inner.state.tats.iter())
            .enumerate()
        {
            let n = charge.get(i);
            let g = dim.gcra();
            if n > g.burst {
                return Err(AcquireError::ExceedsBurst {
                    dimension: dim.name.clone(),
                    cost: n,
                    burst: g.burst,
                });
            }
            let total = n.saturating_add(ahead.get(i));
            if total == 0 {
                continue;
            }
            let tat = cell.load(Ordering::Acquire);
            let at = tat
                .max(now)
                .saturating_add(g.inc(total))
                .saturating_sub(g.tau);
            let d = Duration::from_nanos(at.saturating_sub(now));
            if worst.is_none_or(|(_, w)| d > w) {
                worst = Some((i, d));
            }
        }
        Ok(worst)
    }

    /// The predicted wait for `charge` if it queued now behind the current
    /// waiters (zero when it fits now and nobody is queued).
    ///
    /// # Errors
    /// [`AcquireError::ExceedsBurst`] when it can never fit.
    pub fn predicted_wait(&self, charge: &Charge) -> Result<Duration, AcquireError> {
        let ahead = self.queued_total();
        Ok(self
            .wait_for(charge, &ahead)?
            .map_or(Duration::ZERO, |(_, d)| d))
    }

    pub(crate) fn queued_total(&self) -> Charge {
        if self.inner.state.waiting.load(Ordering::Acquire) == 0 {
            return Charge::ZERO;
        }
        self.inner
            .state
            .queue
            .lock()
            .waiters
            .iter()
            .fold(Charge::ZERO, |acc, w| acc.saturating_add(w.charge))
    }

    /// Remaining capacity per dimension, concurrency and queue length, without
    /// consuming anything. Also refreshes the `remaining` gauges.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let shared = &*self.inner.shared;
        let now = shared.now();
        let dimensions = shared
            .dims
            .iter()
            .zip(self.inner.state.tats.iter())
            .enumerate()
            .map(|(i, (dim, cell))| {
                let g = dim.gcra();
                let tat = cell.load(Ordering::Acquire);
                let remaining = g.remaining(tat, now);
                shared.telemetry.remaining[i].set(remaining as f64);
                DimensionStatus {
                    name: dim.name.clone(),
                    remaining,
                    burst: g.burst,
                    full_in: Duration::from_nanos(tat.saturating_sub(now)),
                }
            })
            .collect();
        Snapshot {
            dimensions,
            in_flight: self.inner.state.inflight.load(Ordering::Acquire),
            concurrency: shared.concurrency(),
            waiters: self.inner.state.waiting.load(Ordering::Acquire),
        }
    }

    /// Feeds back what the server said so that local state never believes it
    /// has more than the server: each dimension whose name matches one in
    /// `info` is tightened to at most the server's `remaining`, and a
    /// `retry_after` holds every dimension until then.
    ///
    /// Feedback only ever *removes* local capacity; it never adds any (a
    /// server reporting more than we think we have is ignored), so stale or
    /// reordered responses cannot cause over-admission. One caveat: a
    /// server's `remaining` cannot include requests that were admitted
    /// locally but had not reached it yet, so right after a tightening those
    /// in-flight requests are counted once, not twice. With many slow
    /// requests in flight against a limit shared with other clients, leave
    /// headroom (a burst below the server's limit). A server-reported
    /// `limit` below the configured burst is reported with a `warn` event;
    /// change the configuration with [`reconfigure`](Self::reconfigure) to
    /// follow it.
    pub fn observe(&self, info: &RateLimitInfo) {
        let shared = &*self.inner.shared;
        let now = shared.now();
        for (i, (dim, cell)) in shared
            .dims
            .iter()
            .zip(self.inner.state.tats.iter())
            .enumerate()
        {
            let g = dim.gcra();
            let mut floor = 0u64;
            if let Some(obs) = info.dimension(&dim.name) {
                if let Some(limit) = obs.limit
                    && limit < g.burst
                {
                    tracing::warn!(limiter = %shared.name, dimension = %dim.name, server_limit = limit, local_burst = g.burst, "server reports a lower limit than configured");
                }
                if let Some(remaining) = obs.remaining
                    && remaining < g.burst
                {
                    floor = now.saturating_add(g.tau).saturating_sub(g.inc(remaining));
                }
            }
            if let Some(ra) = info.retry_after {
                let ra = u64::try_from(ra.as_nanos()).unwrap_or(u64::MAX);
                let hold = now
                    .saturating_add(ra)
                    .saturating_add(g.tau)
                    .saturating_sub(g.inc(1));
                floor = floor.max(hold);
            }
            if floor > 0 {
                let (before, after) =
                    gcra::update::<()>(cell, |tat| Ok(tat.max(floor))).unwrap_or((0, 0));
                if after != before {
                    tracing::debug!(limiter = %shared.name, dimension = %dim.name, remaining = g.remaining(after, now), "tightened from server feedback");
                }
                shared.telemetry.remaining[i].set(g.remaining(after, now) as f64);
            }
        }
    }

    /// Replaces the configuration while running: rates, bursts, queue bounds
    /// and the concurrency limit may change; the dimensions (names and order)
    /// may not. Each dimension keeps the amount it has used (converted to the
    /// new rate), permits stay valid and queued waiters keep their places; the
    /// head waiter re-checks at once. A waiter whose charge exceeds a new,
    /// smaller burst fails with [`AcquireError::ExceedsBurst`].
    ///
    /// # Errors
    /// Validation errors, or [`ConfigError::DimensionsChanged`]; nothing changes then.
    pub fn reconfigure(&self, config: LimiterConfig) -> Result<(), ConfigError> {
        let pairs = self.inner.shared.reconfigure(config)?;
        self.inner.state.convert(&pairs, self.inner.shared.now());
        self.wake_head();
        Ok(())
    }

    /// Applies every accepted update of a live configuration, as
    /// [`reconfigure`](Self::reconfigure) would; updates that change the
    /// dimensions are rejected with an `error` event and leave the limiter
    /// as it was. Runs until the future is dropped: spawn it next to the
    /// limiter (`tokio::spawn(limiter.clone().follow(live))`).
    pub async fn follow(self, live: Reloadable<LimiterConfig>) {
        let mut changes = live.subscribe();
        loop {
            let config = (*live.load()).clone();
            if config != self.config()
                && let Err(e) = self.reconfigure(config)
            {
                tracing::error!(limiter = %self.name(), error = %e, "live configuration rejected");
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.inner.shared.name)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// Builds a [`RateLimiter`]; see [`RateLimiter::builder`].
#[derive(Debug)]
#[must_use]
pub struct Builder {
    config: LimiterConfig,
    /// `None`: the default clock, created at `build` (so choosing another
    /// clock never pays quanta's calibration).
    time: Option<TimeSource>,
}

// === impl Builder ===

impl Builder {
    /// Reads time from `clock` (default `QuantaClock`
    /// with the `quanta` feature, else
    /// [`SystemClock`](foundation_core::SystemClock)). Use `TokioClock` so
    /// that `acquire` agrees with tokio's paused time in tests, or
    /// `ManualClock` for deterministic synchronous tests.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.time = Some(TimeSource::of(clock));
        self
    }

    /// Reads time from a shared clock.
    pub fn with_shared_clock(mut self, clock: SharedClock) -> Self {
        self.time = Some(TimeSource::shared(clock));
        self
    }

    /// Validates the configuration and builds the limiter.
    ///
    /// # Errors
    /// The configuration's validation errors, each naming its field.
    pub fn build(self) -> Result<RateLimiter, ConfigError> {
        let time = self.time.unwrap_or_else(TimeSource::default_clock);
        Ok(RateLimiter::from_parts(Arc::new(Shared::new(
            self.config,
            time,
        )?)))
    }
}

const _: () = assert!(MAX_DIMENSIONS <= 64);
