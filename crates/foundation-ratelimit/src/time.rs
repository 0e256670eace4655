//! The limiter's time base: nanoseconds since its epoch on its [`Clock`].
//!
//! The two clocks tests and production use most get a direct path instead of
//! a virtual call: [`SystemClock`] reads `Instant::now()` inline, and
//! [`ManualClock`] is read as its advanced offset (one atomic load) rather
//! than through `Instant` arithmetic. Any other clock goes through the trait.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foundation_core::{Clock, ManualClock, SharedClock, SystemClock};

#[derive(Clone)]
pub(crate) enum TimeSource {
    System,
    Manual(ManualClock),
    Other(SharedClock),
}

impl TimeSource {
    pub(crate) fn of<C: Clock>(clock: C) -> Self {
        let any: &dyn Any = &clock;
        if any.is::<SystemClock>() {
            Self::System
        } else if let Some(m) = any.downcast_ref::<ManualClock>() {
            Self::Manual(m.clone())
        } else {
            Self::Other(Arc::new(clock))
        }
    }

    pub(crate) fn shared(clock: SharedClock) -> Self {
        Self::Other(clock)
    }
}

impl fmt::Debug for TimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
    manual_offset: u64,
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
        let (instant, manual_offset) = match &source {
            TimeSource::System => (Instant::now(), 0),
            TimeSource::Manual(m) => (m.now(), nanos(m.elapsed())),
            TimeSource::Other(c) => (c.now(), 0),
        };
        Self {
            source,
            instant,
            manual_offset,
        }
    }

    /// Nanoseconds since the epoch.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match &self.source {
            TimeSource::System => nanos(Instant::now().saturating_duration_since(self.instant)),
            TimeSource::Manual(m) => nanos(m.elapsed()).saturating_sub(self.manual_offset),
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
}
