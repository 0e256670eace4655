//! State shared by the pool handle, the manager adapter, checked-out objects
//! and the background tasks: live config, creation gate, demand statistics,
//! metric handles and the record of scaling decisions.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use foundation_core::Reloadable;
use metrics::{Counter, Gauge, Histogram};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backoff::Gate;
use crate::config::PoolConfig;
use crate::controller::{Decision, Smoothed};

/// How many scale events [`ElasticPool::scale_events`](crate::ElasticPool::scale_events) keeps.
pub(crate) const EVENT_HISTORY: usize = 64;

/// Why an object was closed by the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    CheckFailed,
    MaxLifetime,
    IdleTimeout,
    Broken,
    OperationAborted,
}

impl CloseReason {
    const ALL: [Self; 5] = [
        Self::CheckFailed,
        Self::MaxLifetime,
        Self::IdleTimeout,
        Self::Broken,
        Self::OperationAborted,
    ];

    const fn as_str(self) -> &'static str {
        match self {
            Self::CheckFailed => "check_failed",
            Self::MaxLifetime => "max_lifetime",
            Self::IdleTimeout => "idle_timeout",
            Self::Broken => "broken",
            Self::OperationAborted => "operation_aborted",
        }
    }
}

/// One applied change of capacity, as kept in the pool's history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleEvent {
    /// When it was decided.
    pub at: std::time::Instant,
    /// The decision (never [`Decision::Hold`]).
    pub decision: Decision,
    /// The smoothed inputs it was based on.
    pub inputs: Smoothed,
}

/// The controller's latest view, published on every tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerSnapshot {
    /// Current capacity (deadpool's `max_size`).
    pub capacity: usize,
    /// Smoothed inputs.
    pub inputs: Smoothed,
    /// The last decision (often [`Decision::Hold`]).
    pub last: Decision,
    /// Ticks taken so far.
    pub ticks: u64,
}

#[derive(Debug)]
pub(crate) struct Handles {
    pub(crate) size: Gauge,
    pub(crate) idle: Gauge,
    pub(crate) in_use: Gauge,
    pub(crate) waiting: Gauge,
    pub(crate) capacity: Gauge,
    pub(crate) wait: Histogram,
    pub(crate) scale_up: Counter,
    pub(crate) scale_down: Counter,
    pub(crate) created: Counter,
    pub(crate) create_failures: Counter,
    closed: [Counter; 5],
    pub(crate) rejected_overloaded: Counter,
    pub(crate) rejected_unavailable: Counter,
    pub(crate) timeouts: Counter,
}

impl Handles {
    fn new(name: &str) -> Self {
        use metrics::{
            counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
        };
        describe_gauge!(
            "foundation_pool_objects",
            "objects in the pool by state (idle, in_use) and total (size)"
        );
        describe_gauge!("foundation_pool_waiting", "checkouts waiting for an object");
        describe_gauge!(
            "foundation_pool_capacity",
            "current capacity chosen by the controller"
        );
        describe_histogram!(
            "foundation_pool_checkout_wait_seconds",
            metrics::Unit::Seconds,
            "time to check out an object"
        );
        describe_counter!(
            "foundation_pool_scale_events_total",
            "capacity changes by direction"
        );
        describe_counter!("foundation_pool_objects_created_total", "objects created");
        describe_counter!(
            "foundation_pool_create_failures_total",
            "failed object creations"
        );
        describe_counter!(
            "foundation_pool_objects_closed_total",
            "objects closed by the pool, by reason"
        );
        describe_counter!(
            "foundation_pool_checkout_rejected_total",
            "checkouts failed fast, by reason"
        );
        let n = name.to_owned();
        let closed = CloseReason::ALL
            .map(|r| counter!("foundation_pool_objects_closed_total", "pool" => n.clone(), "reason" => r.as_str()));
        Self {
            size: gauge!("foundation_pool_objects", "pool" => n.clone(), "state" => "size"),
            idle: gauge!("foundation_pool_objects", "pool" => n.clone(), "state" => "idle"),
            in_use: gauge!("foundation_pool_objects", "pool" => n.clone(), "state" => "in_use"),
            waiting: gauge!("foundation_pool_waiting", "pool" => n.clone()),
            capacity: gauge!("foundation_pool_capacity", "pool" => n.clone()),
            wait: histogram!("foundation_pool_checkout_wait_seconds", "pool" => n.clone()),
            scale_up: counter!("foundation_pool_scale_events_total", "pool" => n.clone(), "direction" => "up"),
            scale_down: counter!("foundation_pool_scale_events_total", "pool" => n.clone(), "direction" => "down"),
            created: counter!("foundation_pool_objects_created_total", "pool" => n.clone()),
            create_failures: counter!("foundation_pool_create_failures_total", "pool" => n.clone()),
            closed,
            rejected_overloaded: counter!("foundation_pool_checkout_rejected_total", "pool" => n.clone(), "reason" => "overloaded"),
            rejected_unavailable: counter!("foundation_pool_checkout_rejected_total", "pool" => n.clone(), "reason" => "unavailable"),
            timeouts: counter!("foundation_pool_checkout_rejected_total", "pool" => n, "reason" => "timeout"),
        }
    }
}

/// Counters exposed in [`Status`](crate::Status) (monotonic since build).
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) created: AtomicU64,
    pub(crate) create_failures: AtomicU64,
    pub(crate) closed: [AtomicU64; 5],
}

/// The config values read on every checkout and return, copied out of the
/// live config so the hot path touches no shared reference count.
#[derive(Debug)]
pub(crate) struct Hot {
    /// Nanoseconds; `u64::MAX` = none.
    max_lifetime: AtomicU64,
    /// Nanoseconds; `u64::MAX` = never.
    check_after: AtomicU64,
    checkout_timeout: AtomicU64,
    /// Bumped after every change of the values above, so that values derived
    /// from them can be cached (see `Entry::attention_nanos`).
    epoch: AtomicU64,
}

fn nanos(d: Option<Duration>) -> u64 {
    d.map_or(u64::MAX, |d| {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
    })
}

fn from_nanos(n: u64) -> Option<Duration> {
    (n != u64::MAX).then(|| Duration::from_nanos(n))
}

// === impl Hot ===

impl Hot {
    fn new(cfg: &PoolConfig) -> Self {
        let h = Self {
            max_lifetime: AtomicU64::new(0),
            check_after: AtomicU64::new(0),
            checkout_timeout: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
        };
        h.store(cfg);
        h
    }

    fn store(&self, cfg: &PoolConfig) {
        self.max_lifetime
            .store(nanos(cfg.health.max_lifetime), Ordering::Relaxed);
        self.check_after
            .store(nanos(cfg.health.check_on_checkout_after), Ordering::Relaxed);
        self.checkout_timeout
            .store(nanos(Some(cfg.checkout_timeout)), Ordering::Relaxed);
    }

    /// The config epoch (see the field).
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn max_lifetime(&self) -> Option<Duration> {
        from_nanos(self.max_lifetime.load(Ordering::Relaxed))
    }

    pub(crate) fn check_after(&self) -> Option<Duration> {
        from_nanos(self.check_after.load(Ordering::Relaxed))
    }

    #[inline]
    pub(crate) fn checkout_timeout(&self) -> Duration {
        from_nanos(self.checkout_timeout.load(Ordering::Relaxed)).unwrap_or(Duration::MAX)
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Reloadable<PoolConfig>,
    pub(crate) hot: Hot,
    pub(crate) name: String,
    pub(crate) gate: Mutex<crate::backoff::Gate>,
    pub(crate) metrics: Handles,
    pub(crate) totals: Totals,
    /// EWMA of hold times in nanoseconds, as f64 bits (0 = no sample yet).
    hold_ewma: AtomicU64,
    wait_sum_nanos: AtomicU64,
    wait_count: AtomicU64,
    pub(crate) capacity: AtomicUsize,
    /// Coarse clock kept by the controller task: nanoseconds after `base` by
    /// which the real clock has surely not passed yet (`u64::MAX`: unknown).
    coarse_until: AtomicU64,
    /// Nanoseconds after `base` of the last tick, a lower bound of the clock
    /// (`u64::MAX`: unknown).
    tick_at: AtomicU64,
    base: Instant,
    pub(crate) events: Mutex<VecDeque<ScaleEvent>>,
    pub(crate) snapshot: watch::Sender<ControllerSnapshot>,
}

// === impl Shared ===

impl Shared {
    pub(crate) fn new(config: Reloadable<PoolConfig>, capacity: usize, seed: u64) -> Self {
        let cfg = config.load();
        let name = cfg.name.clone();
        Self {
            hot: Hot::new(&cfg),
            metrics: Handles::new(&name),
            name,
            config,
            gate: Mutex::new(Gate::new(seed)),
            totals: Totals::default(),
            hold_ewma: AtomicU64::new(0),
            wait_sum_nanos: AtomicU64::new(0),
            wait_count: AtomicU64::new(0),
            capacity: AtomicUsize::new(capacity),
            coarse_until: AtomicU64::new(u64::MAX),
            tick_at: AtomicU64::new(u64::MAX),
            base: Instant::now(),
            events: Mutex::new(VecDeque::with_capacity(EVENT_HISTORY)),
            snapshot: watch::Sender::new(ControllerSnapshot {
                capacity,
                inputs: Smoothed::default(),
                last: Decision::Hold,
                ticks: 0,
            }),
        }
    }

    /// Called on each controller tick: until `now + margin`, checkouts may
    /// trust that nothing whose attention instant lies later needs a look.
    pub(crate) fn tick_coarse(&self, now: Instant, margin: Duration) {
        self.tick_at.store(self.nanos_at(now), Ordering::Release);
        self.coarse_until
            .store(self.nanos_at(now + margin), Ordering::Release);
    }

    /// Forgets the coarse clock (tasks stopped).
    pub(crate) fn invalidate_coarse(&self) {
        self.coarse_until.store(u64::MAX, Ordering::Release);
        self.tick_at.store(u64::MAX, Ordering::Release);
    }

    /// The last tick in nanoseconds after the base instant, a lower bound of
    /// the clock good to a tick: what a return records as "last used"
    /// without reading the clock. `None` while the coarse clock is unknown.
    #[inline]
    pub(crate) fn coarse_now(&self) -> Option<u64> {
        let until = self.coarse_until.load(Ordering::Acquire);
        let at = self.tick_at.load(Ordering::Acquire);
        (until != u64::MAX && at != u64::MAX).then_some(at)
    }

    /// `t` in nanoseconds after the base instant (saturating).
    pub(crate) fn nanos_at(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// The instant `nanos` after the base instant.
    pub(crate) fn instant_at(&self, nanos: u64) -> Instant {
        self.base + Duration::from_nanos(nanos)
    }

    /// Whether an object needing attention at `attention` (nanoseconds after
    /// the base instant, `u64::MAX`: never) surely does not need it yet,
    /// judged without reading the clock.
    #[inline]
    pub(crate) fn clear_until(&self, attention: u64) -> bool {
        if attention == u64::MAX {
            return true;
        }
        let until = self.coarse_until.load(Ordering::Acquire);
        until != u64::MAX && until < attention
    }

    /// Called with a real clock reading: a coarse clock that fell behind
    /// (its task stopped or starved) is dropped until the next tick.
    pub(crate) fn check_coarse(&self, now: Instant) {
        let until = self.coarse_until.load(Ordering::Relaxed);
        if until != u64::MAX && until < self.nanos_at(now) {
            self.invalidate_coarse();
        }
    }

    /// Validates and installs a new configuration.
    pub(crate) fn set_config(
        &self,
        cfg: PoolConfig,
    ) -> Result<(), foundation_core::ValidationErrors> {
        let hot = Hot::new(&cfg);
        self.config.update(cfg)?;
        self.hot
            .max_lifetime
            .store(hot.max_lifetime.into_inner(), Ordering::Relaxed);
        self.hot
            .check_after
            .store(hot.check_after.into_inner(), Ordering::Relaxed);
        self.hot
            .checkout_timeout
            .store(hot.checkout_timeout.into_inner(), Ordering::Relaxed);
        // Wrapping is harmless; `u64::MAX` is the entries' "stale" marker.
        let next = self.hot.epoch().wrapping_add(1) % u64::MAX;
        self.hot.epoch.store(next, Ordering::Release);
        Ok(())
    }

    pub(crate) fn created(&self, _now: Instant) {
        self.metrics.created.increment(1);
        self.totals.created.fetch_add(1, Ordering::Relaxed);
        if self.gate.lock().success() {
            tracing::info!(pool = %self.name, "backend recovered: object creation succeeds again");
        }
    }

    pub(crate) fn create_failed(&self, now: Instant, cfg: &PoolConfig, what: &'static str) {
        self.metrics.create_failures.increment(1);
        self.totals.create_failures.fetch_add(1, Ordering::Relaxed);
        let (delay, failures) = {
            let mut g = self.gate.lock();
            let d = g.failure(now.into_std(), &cfg.backoff);
            (d, g.failures())
        };
        tracing::warn!(pool = %self.name, failures, backoff = ?delay, "object creation failed ({what}); backing off");
    }

    pub(crate) fn closed(&self, reason: CloseReason) {
        let i = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.metrics.closed[i].increment(1);
        self.totals.closed[i].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pool = %self.name, reason = reason.as_str(), "closed a pooled object");
    }

    pub(crate) fn closed_total(&self, reason: CloseReason) -> u64 {
        let i = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.totals.closed[i].load(Ordering::Relaxed)
    }

    /// Records one checkout's wait; only checkouts that queued feed the
    /// controller's mean (the others did not wait for capacity).
    #[inline]
    pub(crate) fn record_wait(&self, wait: Duration, queued: bool) {
        if !queued {
            self.metrics.wait.record(if wait.is_zero() {
                0.0
            } else {
                wait.as_secs_f64()
            });
            return;
        }
        self.metrics.wait.record(wait.as_secs_f64());
        let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        self.wait_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.wait_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Mean wait since the last call (for the controller).
    pub(crate) fn take_mean_wait(&self) -> Duration {
        let sum = self.wait_sum_nanos.swap(0, Ordering::Relaxed);
        let n = self.wait_count.swap(0, Ordering::Relaxed);
        Duration::from_nanos(sum.checked_div(n).unwrap_or(0))
    }

    /// Records how long an object was held (exponentially weighted, 1/16 per
    /// sample). Only every 32nd checkout per thread is recorded (see
    /// `ElasticPool::checkout`), so that returns on different threads rarely
    /// contend on this word.
    pub(crate) fn record_hold(&self, hold: Duration) {
        let x = hold.as_nanos() as f64;
        let _ = self
            .hold_ewma
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                let new = if bits == 0 {
                    x.max(1.0)
                } else {
                    old + (x - old) / 16.0
                };
                Some(new.to_bits())
            });
    }

    /// The smoothed hold time, once there is a sample.
    pub(crate) fn mean_hold(&self) -> Option<Duration> {
        let bits = self.hold_ewma.load(Ordering::Relaxed);
        (bits != 0).then(|| Duration::from_nanos(f64::from_bits(bits) as u64))
    }

    pub(crate) fn push_event(&self, e: ScaleEvent) {
        let mut ev = self.events.lock();
        if ev.len() == EVENT_HISTORY {
            ev.pop_front();
        }
        ev.push_back(e);
    }
}

/// Counts checkouts on this thread (from 0): the fast path paces its
/// cooperative yields and its hold-time samples by it.
#[inline]
pub(crate) fn checkout_tick() -> u32 {
    thread_local! {
        static TICK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    TICK.with(|t| {
        let n = t.get();
        t.set(n.wrapping_add(1));
        n
    })
}
