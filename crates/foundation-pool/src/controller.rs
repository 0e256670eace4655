//! The auto-scaling controller: a pure state machine over demand samples and
//! time.
//!
//! The pool samples demand every [`ControllerConfig::tick`] and feeds it to
//! [`Controller::observe`], which answers with a [`Decision`]; the pool then
//! applies it with deadpool's `resize`. The controller reads no clock and does
//! no I/O, so its invariants are property-tested with hand-made time:
//!
//! - capacity stays within `floor..=max` (the floor is `max(min_size, 1)`);
//! - two growth steps are at least `scale_up_cooldown` apart;
//! - a shrink step comes at least `scale_down_cooldown` after any other step
//!   (grow fast, shrink slow), and never to a capacity at which the current
//!   smoothed demand would trigger growth again (hysteresis).
//!
//! Bound changes ([`Decision::Clamp`]) are applied at once: bounds are hard.

use std::time::{Duration, Instant};

use crate::config::ControllerConfig;

/// One observation of demand, taken by the pool at a controller tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Objects currently checked out.
    pub in_use: usize,
    /// Checkouts currently waiting for an object.
    pub waiting: usize,
    /// Mean wait of the checkouts that had to queue for capacity since the
    /// last sample (zero when none did).
    pub mean_wait: Duration,
}

/// Why the capacity changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Smoothed utilization (demand / capacity) reached `scale_up_utilization`.
    Utilization,
    /// Checkouts were waiting.
    Waiters,
    /// Smoothed checkout wait reached `scale_up_wait`.
    WaitTime,
    /// Smoothed utilization fell to `scale_down_utilization`.
    Idle,
    /// The bounds changed (runtime reconfiguration).
    Bounds,
}

impl Reason {
    /// A short stable name, suitable as a metric label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Utilization => "utilization",
            Self::Waiters => "waiters",
            Self::WaitTime => "wait_time",
            Self::Idle => "idle",
            Self::Bounds => "bounds",
        }
    }
}

/// What the controller decided at one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Keep the current capacity.
    Hold,
    /// Raise capacity.
    Grow {
        /// Capacity before.
        from: usize,
        /// Capacity after.
        to: usize,
        /// What triggered it.
        reason: Reason,
    },
    /// Lower capacity.
    Shrink {
        /// Capacity before.
        from: usize,
        /// Capacity after.
        to: usize,
        /// What triggered it.
        reason: Reason,
    },
    /// Capacity moved into new bounds (not subject to cooldowns).
    Clamp {
        /// Capacity before.
        from: usize,
        /// Capacity after.
        to: usize,
    },
}

// === impl Decision ===

impl Decision {
    /// The new capacity, if the decision changes it.
    #[must_use]
    pub const fn new_capacity(&self) -> Option<usize> {
        match *self {
            Self::Hold => None,
            Self::Grow { to, .. } | Self::Shrink { to, .. } | Self::Clamp { to, .. } => Some(to),
        }
    }
}

/// The smoothed inputs the controller decides on.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Smoothed {
    /// Demand (in use + waiting) divided by capacity.
    pub utilization: f64,
    /// Demand (in use + waiting) in objects.
    pub demand: f64,
    /// Waiting checkouts.
    pub waiting: f64,
    /// Checkout wait, in seconds.
    pub wait_secs: f64,
}

/// The auto-scaling state machine. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Controller {
    capacity: usize,
    smoothed: Smoothed,
    last_sample: Option<Instant>,
    last_grow: Option<Instant>,
    last_change: Instant,
}

// === impl Controller ===

impl Controller {
    /// A controller starting at `capacity`, created at `now` (the first shrink
    /// waits a full `scale_down_cooldown` from here).
    #[must_use]
    pub fn new(capacity: usize, now: Instant) -> Self {
        Self {
            capacity,
            smoothed: Smoothed::default(),
            last_sample: None,
            last_grow: None,
            last_change: now,
        }
    }

    /// The current target capacity.
    #[must_use]
    pub const fn capacity(&self) -> usize {
        self.capacity
    }

    /// The smoothed inputs after the last observation.
    #[must_use]
    pub const fn smoothed(&self) -> Smoothed {
        self.smoothed
    }

    /// Feeds one sample taken at `now` and decides. `min..=max` are the pool's
    /// current bounds; the capacity floor is `max(min, 1)` so a pool can
    /// always serve. `now` must not go backwards (earlier instants are treated
    /// as no time passing).
    pub fn observe(
        &mut self,
        now: Instant,
        sample: Sample,
        cfg: &ControllerConfig,
        min: usize,
        max: usize,
    ) -> Decision {
        let max = max.max(1);
        let floor = min.clamp(1, max);
        self.smooth(now, sample, cfg);

        if self.capacity < floor || self.capacity > max {
            let from = self.capacity;
            self.capacity = from.clamp(floor, max);
            return Decision::Clamp {
                from,
                to: self.capacity,
            };
        }

        let s = self.smoothed;
        let since = |t: Instant| now.saturating_duration_since(t);
        // Capacity at which the smoothed demand sits just below the growth
        // threshold: never shrink below it (hysteresis), always grow to it.
        let needed = demand_capacity(s.demand, cfg.scale_up_utilization);

        let grow_reason = if sample.waiting > 0 && s.waiting >= 0.5 {
            Some(Reason::Waiters)
        } else if s.utilization >= cfg.scale_up_utilization {
            Some(Reason::Utilization)
        } else if s.wait_secs >= cfg.scale_up_wait.as_secs_f64() && sample.waiting > 0 {
            Some(Reason::WaitTime)
        } else {
            None
        };
        if let Some(reason) = grow_reason
            && self.capacity < max
            && self
                .last_grow
                .is_none_or(|t| since(t) >= cfg.scale_up_cooldown)
        {
            let from = self.capacity;
            let stepped = ceil_usize(from as f64 * cfg.growth_factor);
            let to = stepped
                .max(from + 1)
                .max(from.saturating_add(sample.waiting))
                .max(needed)
                .min(max);
            self.capacity = to;
            self.last_grow = Some(now);
            self.last_change = now;
            return Decision::Grow { from, to, reason };
        }

        if grow_reason.is_none()
            && sample.waiting == 0
            && s.utilization <= cfg.scale_down_utilization
            && self.capacity > floor
            && since(self.last_change) >= cfg.scale_down_cooldown
        {
            let from = self.capacity;
            let step = ((from as f64 * cfg.shrink_fraction).floor() as usize).max(1);
            let to = from.saturating_sub(step).max(floor).max(needed);
            if to < from {
                self.capacity = to;
                self.last_change = now;
                return Decision::Shrink {
                    from,
                    to,
                    reason: Reason::Idle,
                };
            }
        }
        Decision::Hold
    }

    fn smooth(&mut self, now: Instant, sample: Sample, cfg: &ControllerConfig) {
        let alpha = match self.last_sample {
            None => 1.0,
            Some(prev) => {
                let dt = now.saturating_duration_since(prev).as_secs_f64();
                1.0 - (-dt / cfg.smoothing.as_secs_f64()).exp()
            }
        };
        self.last_sample = Some(now);
        let demand = (sample.in_use + sample.waiting) as f64;
        let utilization = if self.capacity == 0 {
            if demand > 0.0 { f64::INFINITY } else { 0.0 }
        } else {
            demand / self.capacity as f64
        };
        let mix = |old: f64, new: f64| {
            if new.is_infinite() || old.is_infinite() {
                new
            } else {
                old + alpha * (new - old)
            }
        };
        let s = &mut self.smoothed;
        s.utilization = mix(s.utilization, utilization);
        s.demand = mix(s.demand, demand);
        s.waiting = mix(s.waiting, sample.waiting as f64);
        s.wait_secs = mix(s.wait_secs, sample.mean_wait.as_secs_f64());
    }
}

/// Smallest capacity at which `demand` stays below `threshold` utilization.
fn demand_capacity(demand: f64, threshold: f64) -> usize {
    if demand <= 0.0 {
        return 0;
    }
    (demand / threshold).floor() as usize + 1
}

fn ceil_usize(x: f64) -> usize {
    if x.is_finite() && x > 0.0 {
        x.ceil() as usize
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foundation_core::{Clock, ManualClock};
    use proptest::prelude::*;

    fn cfg() -> ControllerConfig {
        ControllerConfig {
            scale_up_cooldown: Duration::from_secs(1),
            scale_down_cooldown: Duration::from_secs(10),
            ..ControllerConfig::default()
        }
    }

    fn busy(in_use: usize, waiting: usize) -> Sample {
        Sample {
            in_use,
            waiting,
            mean_wait: Duration::ZERO,
        }
    }

    #[test]
    fn grows_fast_on_waiters_and_shrinks_slowly_to_min() {
        let clock = ManualClock::new();
        let c = cfg();
        let mut ctl = Controller::new(2, clock.now());
        let d = ctl.observe(clock.now(), busy(2, 10), &c, 2, 50);
        assert!(
            matches!(
                d,
                Decision::Grow {
                    from: 2,
                    reason: Reason::Waiters,
                    ..
                }
            ),
            "{d:?}"
        );
        assert!(
            ctl.capacity() >= 12,
            "adds at least the waiters: {}",
            ctl.capacity()
        );
        // Within the cooldown nothing grows further.
        clock.advance(Duration::from_millis(500));
        assert_eq!(
            ctl.observe(clock.now(), busy(12, 5), &c, 2, 50),
            Decision::Hold
        );
        // Demand vanishes: no shrink before the down cooldown ...
        let mut shrinks = Vec::new();
        for _ in 0..2_000 {
            clock.advance(Duration::from_millis(250));
            if let Decision::Shrink { to, .. } = ctl.observe(clock.now(), busy(0, 0), &c, 2, 50) {
                shrinks.push((clock.elapsed(), to));
            }
        }
        assert!(shrinks[0].0 >= Duration::from_millis(10_500), "{shrinks:?}");
        for w in shrinks.windows(2) {
            assert!(w[1].0 - w[0].0 >= Duration::from_secs(10), "{shrinks:?}");
        }
        // ... and it ends at min.
        assert_eq!(ctl.capacity(), 2);
    }

    #[test]
    fn never_shrinks_into_growth_territory() {
        let clock = ManualClock::new();
        let c = cfg();
        let mut ctl = Controller::new(40, clock.now());
        // Steady demand of 10 at capacity 40 (utilization 0.25 < 0.3).
        for _ in 0..2_000 {
            clock.advance(Duration::from_millis(250));
            let d = ctl.observe(clock.now(), busy(10, 0), &c, 1, 50);
            assert!(!matches!(d, Decision::Grow { .. }), "oscillated: {d:?}");
        }
        // Shrinks until 10 / cap would exceed 0.3, then holds well above the
        // growth threshold (10 / 0.8 = 12.5).
        assert!(
            ctl.capacity() >= 13 && ctl.capacity() <= 34,
            "{}",
            ctl.capacity()
        );
    }

    #[test]
    fn clamps_to_new_bounds_immediately() {
        let clock = ManualClock::new();
        let c = cfg();
        let mut ctl = Controller::new(10, clock.now());
        let d = ctl.observe(clock.now(), busy(0, 0), &c, 1, 4);
        assert_eq!(d, Decision::Clamp { from: 10, to: 4 });
        let d = ctl.observe(clock.now(), busy(0, 0), &c, 6, 8);
        assert_eq!(d, Decision::Clamp { from: 4, to: 6 });
    }

    #[test]
    fn zero_capacity_with_demand_grows() {
        let clock = ManualClock::new();
        let mut ctl = Controller::new(0, clock.now());
        // Floor is 1 even with min 0.
        let d = ctl.observe(clock.now(), busy(0, 1), &cfg(), 0, 5);
        assert_eq!(d, Decision::Clamp { from: 0, to: 1 });
    }

    #[derive(Debug, Clone)]
    enum Step {
        Sample {
            dt_ms: u64,
            in_use: usize,
            waiting: usize,
            wait_ms: u64,
        },
        Bounds {
            min: usize,
            max: usize,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => (0u64..3_000, 0usize..80, 0usize..80, 0u64..200).prop_map(|(dt_ms, in_use, waiting, wait_ms)| {
                Step::Sample { dt_ms, in_use, waiting, wait_ms }
            }),
            1 => (0usize..20, 1usize..60).prop_map(|(a, b)| Step::Bounds { min: a.min(b), max: b }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn bounds_and_cooldowns_hold(
            steps in proptest::collection::vec(step(), 1..300),
            up_ms in 0u64..3_000,
            extra_down_ms in 0u64..20_000,
            up_util in 0.5f64..1.0,
            growth in 1.0f64..4.0,
            shrink in 0.05f64..0.9,
        ) {
            let c = ControllerConfig {
                scale_up_cooldown: Duration::from_millis(up_ms),
                scale_down_cooldown: Duration::from_millis(up_ms + extra_down_ms),
                scale_up_utilization: up_util,
                scale_down_utilization: up_util / 3.0,
                growth_factor: growth,
                shrink_fraction: shrink,
                ..ControllerConfig::default()
            };
            let clock = ManualClock::new();
            let (mut min, mut max) = (2usize, 20usize);
            let mut ctl = Controller::new(min, clock.now());
            let mut last_grow: Option<Instant> = None;
            let mut last_change: Option<Instant> = None;
            for s in steps {
                let sample = match s {
                    Step::Bounds { min: a, max: b } => { min = a; max = b; busy(0, 0) }
                    Step::Sample { dt_ms, in_use, waiting, wait_ms } => {
                        clock.advance(Duration::from_millis(dt_ms));
                        Sample { in_use, waiting, mean_wait: Duration::from_millis(wait_ms) }
                    }
                };
                let now = clock.now();
                let d = ctl.observe(now, sample, &c, min, max);
                let cap = ctl.capacity();
                prop_assert!(cap >= min.max(1) && cap <= max, "capacity {cap} outside {min}..={max}");
                match d {
                    Decision::Grow { from, to, .. } => {
                        prop_assert!(to > from);
                        if let Some(t) = last_grow {
                            prop_assert!(now - t >= c.scale_up_cooldown, "grew twice within cooldown");
                        }
                        last_grow = Some(now);
                        last_change = Some(now);
                    }
                    Decision::Shrink { from, to, .. } => {
                        prop_assert!(to < from);
                        prop_assert_eq!(sample.waiting, 0);
                        if let Some(t) = last_change {
                            prop_assert!(now - t >= c.scale_down_cooldown, "shrank within cooldown");
                        }
                        last_change = Some(now);
                    }
                    Decision::Clamp { .. } | Decision::Hold => {}
                }
            }
        }
    }
}
