//! The limiter's time base: nanoseconds since its epoch on its [`Clock`].
//!
//! The clocks production and tests use most get a direct path instead of a
//! virtual call: [`QuantaClock`] (feature `quanta`, the default clock) is read
//! as a raw counter delta scaled to nanoseconds, [`SystemClock`] reads
//! `Instant::now()` inline, and [`ManualClock`] is read as its advanced offset
//! (one atomic load) rather than through `Instant` arithmetic. Any other clock
//! goes through the trait.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foundation_core::{Clock, ManualClock, SharedClock, SystemClock};

/// A fast monotonic [`Clock`]: the CPU's time-stamp counter, read through
/// [`quanta`](https://docs.rs/quanta) (the clock `governor` uses by default).
///
/// This is the limiter's default clock when the `quanta` feature is on (it is
/// by default): reading it costs a counter read and a multiply-shift instead
/// of a `clock_gettime` call, which is most of the cost of a single-dimension
/// check. [`RateLimiter`](crate::RateLimiter) reads it directly, not through
/// the trait.
///
/// quanta uses the counter only when the CPU reports an invariant
/// (constant-rate, synchronised) TSC and `rdtscp` on x86-64, or the ARMv8
/// system counter; otherwise it falls back to the OS monotonic clock. Its
/// scale is calibrated once per process against the OS monotonic clock, which
/// blocks the first `QuantaClock::new` for typically 10-20 ms (at most
/// 200 ms). Readings never go below the clock's creation instant; like
/// governor's default clock, monotonicity across cores relies on the invariant
/// TSC. Choose [`SystemClock`] (`Instant::now`) with
/// [`Builder::with_clock`](crate::Builder::with_clock) if you prefer the OS
/// clock, and `ManualClock` or `TokioClock` in tests.
///
/// ```
/// use foundation_core::Clock;
/// use foundation_ratelimit::QuantaClock;
///
/// let clock = QuantaClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
#[cfg(feature = "quanta")]
#[cfg_attr(docsrs, doc(cfg(feature = "quanta")))]
#[derive(Debug, Clone)]
pub struct QuantaClock {
    clock: quanta::Clock,
    base_raw: u64,
    base: Instant,
}

#[cfg(feature = "quanta")]
impl QuantaClock {
    /// A clock counting from now (calibrates quanta on first use in a process).
    #[must_use]
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let base = Instant::now();
        let base_raw = clock.raw();
        Self {
            clock,
            base_raw,
            base,
        }
    }

    /// Nanoseconds since the raw reading `from` (zero if the counter reads
    /// earlier, so the result never goes below `from`).
    #[inline]
    fn nanos_since(&self, from: u64) -> u64 {
        self.clock.delta_as_nanos(from, self.clock.raw())
    }
}

#[cfg(feature = "quanta")]
impl Default for QuantaClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "quanta")]
impl Clock for QuantaClock {
    #[inline]
    fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.nanos_since(self.base_raw))
    }
}

#[derive(Clone)]
pub(crate) enum TimeSource {
    #[cfg(feature = "quanta")]
    Quanta(QuantaClock),
    System,
    Manual(ManualClock),
    Other(SharedClock),
}

impl TimeSource {
    pub(crate) fn of<C: Clock>(clock: C) -> Self {
        let any: &dyn Any = &clock;
        #[cfg(feature = "quanta")]
        if let Some(q) = any.downcast_ref::<QuantaClock>() {
            return Self::Quanta(q.clone());
        }
        if any.is::<SystemClock>() {
            Self::System
        } else if let Some(m) = any.downcast_ref::<ManualClock>() {
            Self::Manual(m.clone())
        } else {
            Self::Other(Arc::new(clock))
        }
    }

    /// The clock a limiter gets when none is chosen: [`QuantaClock`] with the
    /// `quanta` feature, [`SystemClock`] without.
    pub(crate) fn default_clock() -> Self {
        #[cfg(feature = "quanta")]
        {
            Self::Quanta(QuantaClock::new())
        }
        #[cfg(not(feature = "quanta"))]
        {
            Self::System
        }
    }

    pub(crate) fn shared(clock: SharedClock) -> Self {
        Self::Other(clock)
    }
}

impl fmt::Debug for TimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "quanta")]
            Self::Quanta(q) => fmt::Debug::fmt(q, f),
            Self::System => f.write_str("SystemClock"),
            Self::Manual(m) => fmt::Debug::fmt(m, f),
            Self::Other(c) => fmt::Debug::fmt(c, f),
        }
    }
}

/// A clock and the instant it counts from.
#[derive(Debug)]
pub(crate) struct Epoch {
    source: TimeSource,
    instant: Instant,
    /// The manual clock's offset, or quanta's raw counter, at the epoch.
    offset: u64,
}

#[inline]
fn nanos(d: Duration) -> u64 {
    // u64 arithmetic rather than `as_nanos` (u128): this is the hot path.
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

impl Epoch {
    pub(crate) fn new(source: TimeSource) -> Self {
        let (instant, offset) = match &source {
            #[cfg(feature = "quanta")]
            TimeSource::Quanta(q) => (q.now(), q.clock.raw()),
            TimeSource::System => (Instant::now(), 0),
            TimeSource::Manual(m) => (m.now(), nanos(m.elapsed())),
            TimeSource::Other(c) => (c.now(), 0),
        };
        Self {
            source,
            instant,
            offset,
        }
    }

    /// Nanoseconds since the epoch.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match &self.source {
            #[cfg(feature = "quanta")]
            TimeSource::Quanta(q) => q.nanos_since(self.offset),
            TimeSource::System => nanos(Instant::now().saturating_duration_since(self.instant)),
            TimeSource::Manual(m) => nanos(m.elapsed()).saturating_sub(self.offset),
            TimeSource::Other(c) => nanos(c.now().saturating_duration_since(self.instant)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_counts_from_its_epoch() {
        let manual = ManualClock::new();
        manual.advance(Duration::from_secs(5));
        let sources = [
            TimeSource::of(manual.clone()),
            TimeSource::shared(Arc::new(manual.clone())),
        ];
        let epochs: Vec<Epoch> = sources.into_iter().map(Epoch::new).collect();
        manual.advance(Duration::from_millis(1_500));
        for e in &epochs {
            assert_eq!(e.now(), 1_500_000_000, "{e:?}");
        }
        assert!(matches!(TimeSource::of(SystemClock), TimeSource::System));
        let sys = Epoch::new(TimeSource::of(SystemClock));
        assert!(sys.now() < 1_000_000_000);
    }

    #[cfg(feature = "quanta")]
    #[test]
    fn quanta_is_recognised_and_monotonic() {
        let q = QuantaClock::new();
        assert!(matches!(TimeSource::of(q.clone()), TimeSource::Quanta(_)));
        assert!(matches!(TimeSource::default_clock(), TimeSource::Quanta(_)));
        let epoch = Epoch::new(TimeSource::of(q.clone()));
        let (mut last_nanos, mut last_instant) = (epoch.now(), q.now());
        for _ in 0..100_000 {
            let (n, i) = (epoch.now(), q.now());
            assert!(n >= last_nanos, "epoch went back: {n} < {last_nanos}");
            assert!(i >= last_instant, "clock went back");
            (last_nanos, last_instant) = (n, i);
        }
        // It counts time at the OS clock's rate. Each reading is bracketed by
        // two OS readings, so preemption between them cannot fail the test; a
        // 20 ms spin (not a sleep: this checks the real clock's scale) gives
        // quanta's calibration error room to show.
        let a0 = Instant::now();
        let n0 = epoch.now();
        let a1 = Instant::now();
        while a1.elapsed() < Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        let b0 = Instant::now();
        let n1 = epoch.now();
        let b1 = Instant::now();
        let ours = Duration::from_nanos(n1 - n0);
        let (lo, hi) = (b0 - a1, b1 - a0);
        let slack = hi / 100 + Duration::from_micros(100);
        assert!(
            ours + slack >= lo && ours <= hi + slack,
            "{ours:?} not within [{lo:?}, {hi:?}]"
        );
    }

    #[cfg(not(feature = "quanta"))]
    #[test]
    fn system_clock_is_the_default_without_quanta() {
        assert!(matches!(TimeSource::default_clock(), TimeSource::System));
    }
}
