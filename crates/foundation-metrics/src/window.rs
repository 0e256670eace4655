//! Rolling windows ("p99 over the last minute") without raw samples.
//!
//! A [`RollingSketch`] records into one cumulative [`AtomicSketch`], so the
//! record path is the same single lock-free update as without windows. At
//! each interval boundary a rotation (run by the recorder's upkeep, or lazily
//! by a query) subtracts the previous cumulative snapshot from the current
//! one: the difference is that interval's sketch, pushed into a bounded ring.
//! A window query merges the newest intervals of the ring with the live
//! partial interval. Several [`WindowLevel`]s trade granularity for span: the
//! default keeps 6 × 10 s (the last minute at 10 s granularity),
//! 5 × 1 min (five minutes) and 12 × 5 min (an hour), 23 interval sketches in
//! all, so memory per series is bounded whatever the traffic.
//!
//! Windows are as precise as their interval: a query for duration `d` covers
//! the newest `ceil(d / slot)` whole intervals plus the running one, and says
//! which span it actually covered ([`WindowSnapshot::span`]). Rotation needs a
//! call at least once per finest interval to keep boundaries sharp; when
//! several boundaries pass without one, the samples since the last rotation
//! are attributed to the oldest of the missed intervals (upkeep, which
//! rotates every few seconds, keeps this from happening in practice).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use foundation_core::ManualClock;
//! use foundation_metrics::sketch::Quantile;
//! use foundation_metrics::window::{RollingSketch, WindowLevel};
//!
//! let clock = ManualClock::new();
//! let s = RollingSketch::new(&WindowLevel::defaults(), Arc::new(clock.clone()));
//! s.record(5.0);                       // an old, slow sample
//! clock.advance(Duration::from_secs(120));
//! s.rotate();                          // upkeep does this every few seconds
//! s.record(0.1);                       // a recent, fast one
//! let last_minute = s.window(Duration::from_secs(60));
//! assert_eq!(last_minute.sketch.count(), 1);
//! assert_eq!(s.snapshot().count(), 2);
//! # let _ = Quantile::P99;
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use foundation_core::{SharedClock, Validate, Validator};
use parking_lot::Mutex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::sketch::{AtomicSketch, Quantile, Sketch};

/// One level of rolling windows: the newest `slots` intervals of length `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowLevel {
    /// Length of one interval (e.g. `"10s"`).
    #[serde(with = "foundation_core::serde_util::duration")]
    #[schemars(with = "String")]
    pub slot: Duration,
    /// How many past intervals to keep (1..=1000).
    pub slots: u32,
}

// === impl WindowLevel ===

impl WindowLevel {
    /// The longest window this level answers: `slot × slots`.
    #[must_use]
    pub fn span(&self) -> Duration {
        self.slot.saturating_mul(self.slots)
    }

    /// 6 × 10 s, 5 × 1 min and 12 × 5 min: last minute, five minutes, hour.
    #[must_use]
    pub fn defaults() -> Vec<Self> {
        vec![
            Self {
                slot: Duration::from_secs(10),
                slots: 6,
            },
            Self {
                slot: Duration::from_secs(60),
                slots: 5,
            },
            Self {
                slot: Duration::from_secs(300),
                slots: 12,
            },
        ]
    }
}

impl Validate for WindowLevel {
    fn validate_into(&self, v: &mut Validator) {
        v.check(
            self.slot >= Duration::from_millis(1),
            "slot",
            "must be at least 1ms",
        );
        v.check(
            (1..=1000).contains(&self.slots),
            "slots",
            "must be between 1 and 1000",
        );
    }
}

/// A window's distribution and the span it actually covers.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSnapshot {
    /// The samples recorded during `span` before now.
    pub sketch: Sketch,
    /// How far back the window reaches: whole intervals plus the running one,
    /// shorter than asked for when the series is younger than that.
    pub span: Duration,
}

#[derive(Debug)]
struct Level {
    slot: Duration,
    cap: usize,
    ring: VecDeque<Sketch>,
    /// Cumulative snapshot at `boundary`.
    prev: Sketch,
    /// Start of the running interval.
    boundary: Instant,
}

/// The rotation state of all levels.
#[derive(Debug)]
struct Levels {
    levels: Vec<Level>,
    created: Instant,
}

impl Levels {
    fn new(config: &[WindowLevel], now: Instant) -> Self {
        let mut config = config.to_vec();
        config.sort_by_key(|l| l.slot);
        Self {
            levels: config
                .iter()
                .map(|l| Level {
                    slot: l.slot.max(Duration::from_millis(1)),
                    cap: usize::try_from(l.slots.max(1)).unwrap_or(1),
                    ring: VecDeque::new(),
                    prev: Sketch::new(),
                    boundary: now,
                })
                .collect(),
            created: now,
        }
    }

    fn rotate(&mut self, now: Instant, cumulative: &AtomicSketch) {
        let mut cum: Option<Sketch> = None;
        for level in &mut self.levels {
            let elapsed = now.saturating_duration_since(level.boundary);
            if elapsed < level.slot {
                continue;
            }
            let cum = cum.get_or_insert_with(|| cumulative.snapshot());
            let k = elapsed.as_nanos() / level.slot.as_nanos().max(1);
            let empties = usize::try_from(k.saturating_sub(1))
                .unwrap_or(usize::MAX)
                .min(level.cap);
            level.ring.push_back(cum.since(&level.prev));
            for _ in 0..empties {
                level.ring.push_back(Sketch::new());
            }
            while level.ring.len() > level.cap {
                level.ring.pop_front();
            }
            level.prev = cum.clone();
            let k32 = u32::try_from(k).unwrap_or(u32::MAX);
            level.boundary += level.slot.saturating_mul(k32);
        }
    }

    fn window(&mut self, now: Instant, d: Duration, cumulative: &AtomicSketch) -> WindowSnapshot {
        self.rotate(now, cumulative);
        let Some(level) = self
            .levels
            .iter()
            .find(|l| {
                l.slot
                    .saturating_mul(u32::try_from(l.cap).unwrap_or(u32::MAX))
                    >= d
            })
            .or_else(|| self.levels.last())
        else {
            // No levels configured: the only window is since start.
            return WindowSnapshot {
                sketch: cumulative.snapshot(),
                span: now.saturating_duration_since(self.created),
            };
        };
        let want = usize::try_from(d.as_nanos().div_ceil(level.slot.as_nanos().max(1)))
            .unwrap_or(usize::MAX)
            .min(level.cap);
        let mut sketch = cumulative.snapshot().since(&level.prev);
        let used = want.min(level.ring.len());
        for s in level.ring.iter().rev().take(used) {
            sketch.merge(s);
        }
        let partial = now.saturating_duration_since(level.boundary);
        let span = level
            .slot
            .saturating_mul(u32::try_from(used).unwrap_or(u32::MAX))
            .saturating_add(partial)
            .min(now.saturating_duration_since(self.created));
        WindowSnapshot { sketch, span }
    }

    fn allocated_bytes(&self) -> usize {
        self.levels
            .iter()
            .map(|l| {
                l.prev.allocated_bytes()
                    + l.ring.iter().map(Sketch::allocated_bytes).sum::<usize>()
                    + l.ring.capacity() * std::mem::size_of::<Sketch>()
            })
            .sum()
    }
}

/// An [`AtomicSketch`] with rolling windows.
///
/// Recording is lock-free; rotation and window queries take a short lock
/// that recording never waits on.
#[derive(Debug)]
pub struct RollingSketch {
    cumulative: AtomicSketch,
    levels: Mutex<Levels>,
    clock: SharedClock,
}

// === impl RollingSketch ===

impl RollingSketch {
    /// A sketch with the given window levels (see [`WindowLevel::defaults`]),
    /// reading time from `clock`. Levels are assumed valid
    /// ([`WindowLevel`] implements [`Validate`]); a zero slot is raised to 1ms.
    #[must_use]
    pub fn new(levels: &[WindowLevel], clock: SharedClock) -> Self {
        let now = clock.now();
        Self {
            cumulative: AtomicSketch::new(),
            levels: Mutex::new(Levels::new(levels, now)),
            clock,
        }
    }

    /// Records one sample (lock-free).
    #[inline]
    pub fn record(&self, v: f64) {
        self.cumulative.record(v);
    }

    /// Records the same sample `n` times (lock-free).
    #[inline]
    pub fn record_n(&self, v: f64, n: u64) {
        self.cumulative.record_n(v, n);
    }

    /// The since-start sketch, for cheap direct queries
    /// ([`AtomicSketch::quantile`]).
    #[must_use]
    pub fn cumulative(&self) -> &AtomicSketch {
        &self.cumulative
    }

    /// Since-start quantile, straight from the atomic buckets.
    #[must_use]
    pub fn quantile(&self, q: Quantile) -> Option<f64> {
        self.cumulative.quantile(q)
    }

    /// A copy of the since-start distribution.
    #[must_use]
    pub fn snapshot(&self) -> Sketch {
        self.cumulative.snapshot()
    }

    /// The distribution over (about) the last `d`; see the module docs for
    /// the granularity.
    #[must_use]
    pub fn window(&self, d: Duration) -> WindowSnapshot {
        let now = self.clock.now();
        self.levels.lock().window(now, d, &self.cumulative)
    }

    /// Closes every interval whose end has passed. Upkeep calls this; queries
    /// do it too.
    pub fn rotate(&self) {
        let now = self.clock.now();
        self.levels.lock().rotate(now, &self.cumulative);
    }

    /// Heap bytes held by the cumulative sketch and the window rings.
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        self.cumulative.allocated_bytes() + self.levels.lock().allocated_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foundation_core::ManualClock;
    use std::sync::Arc;

    fn rolling(clock: &ManualClock) -> RollingSketch {
        RollingSketch::new(&WindowLevel::defaults(), Arc::new(clock.clone()))
    }

    #[test]
    fn windows_forget_old_samples() {
        let clock = ManualClock::new();
        let s = rolling(&clock);
        for _ in 0..100 {
            s.record(10.0);
        }
        for _ in 0..7 {
            clock.advance(Duration::from_secs(10));
            s.rotate();
        }
        for _ in 0..50 {
            s.record(1.0);
        }
        let w = s.window(Duration::from_secs(60));
        assert_eq!(w.sketch.count(), 50);
        assert!(w.span >= Duration::from_secs(60), "{:?}", w.span);
        let five = s.window(Duration::from_secs(300));
        assert_eq!(five.sketch.count(), 150);
        assert_eq!(s.snapshot().count(), 150);
    }

    #[test]
    fn hour_window_uses_the_coarse_level() {
        let clock = ManualClock::new();
        let s = rolling(&clock);
        for minute in 0..90u32 {
            s.record(f64::from(minute));
            clock.advance(Duration::from_secs(60));
            s.rotate();
        }
        let hour = s.window(Duration::from_secs(3600));
        // 12 five-minute intervals plus the running one.
        assert!(
            (60..=65).contains(&hour.sketch.count()),
            "{}",
            hour.sketch.count()
        );
        assert!(hour.span >= Duration::from_secs(3600));
        assert!(hour.sketch.min().unwrap() >= 24.0);
    }

    #[test]
    fn missed_rotations_keep_every_sample() {
        let clock = ManualClock::new();
        let s = rolling(&clock);
        s.record(1.0);
        clock.advance(Duration::from_secs(35));
        s.record(2.0);
        let w = s.window(Duration::from_secs(60));
        assert_eq!(w.sketch.count(), 2);
    }

    #[test]
    fn young_series_report_their_true_span() {
        let clock = ManualClock::new();
        let s = rolling(&clock);
        clock.advance(Duration::from_secs(5));
        let w = s.window(Duration::from_secs(3600));
        assert_eq!(w.span, Duration::from_secs(5));
    }

    proptest::proptest! {
        /// Whatever the timing of records, rotations and queries: a window
        /// never holds more than the since-start sketch, and a window at least
        /// as long as the series' age holds every sample.
        #[test]
        fn windows_never_invent_or_lose_samples(
            steps in proptest::collection::vec((0u64..40_000, 0u32..20, proptest::bool::ANY), 1..60),
            query_ms in 1u64..4_000_000,
        ) {
            let clock = ManualClock::new();
            let s = rolling(&clock);
            for (advance_ms, n, rotate) in steps {
                clock.advance(Duration::from_millis(advance_ms));
                for i in 0..n {
                    s.record(f64::from(i) + 0.5);
                }
                if rotate {
                    s.rotate();
                }
            }
            let total = s.snapshot().count();
            let w = s.window(Duration::from_millis(query_ms));
            proptest::prop_assert!(w.sketch.count() <= total);
            let age = clock.elapsed();
            let all = s.window(age.max(Duration::from_millis(1)));
            if age <= Duration::from_secs(60) {
                proptest::prop_assert_eq!(all.sketch.count(), total);
            }
            proptest::prop_assert!(w.span <= age);
        }
    }

    #[test]
    fn level_validation_names_fields() {
        let bad = WindowLevel {
            slot: Duration::ZERO,
            slots: 0,
        };
        let err = bad.validate().unwrap_err();
        assert!(
            err.has_error_at("slot") && err.has_error_at("slots"),
            "{err}"
        );
    }
}
