//! Time sources that tests can control.
//!
//! Synchronous code such as a rate limiter's `try_acquire` cannot use tokio's
//! paused time, so every time-dependent Foundation component reads time through
//! a [`Clock`]. Production uses [`SystemClock`] (or `TokioClock` to follow
//! tokio's paused time in async tests); deterministic tests use [`ManualClock`]
//! and move time by hand.
//!
//! ```
//! use std::time::Duration;
//! use foundation_core::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new();
//! let start = clock.now();
//! clock.advance(Duration::from_secs(60));
//! assert_eq!(clock.now() - start, Duration::from_secs(60));
//! ```

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic time source.
///
/// Implementations must be monotonic: `now()` never goes backwards.
/// Take a `Clock` (or a [`SharedClock`]) wherever time-based logic must be
/// testable without sleeping:
///
/// ```
/// use std::time::{Duration, Instant};
/// use foundation_core::{Clock, ManualClock, SharedClock, SystemClock};
///
/// struct Cooldown { clock: SharedClock, until: Instant }
///
/// impl Cooldown {
///     fn new(clock: SharedClock, period: Duration) -> Self {
///         let until = clock.now() + period;
///         Self { clock, until }
///     }
///     fn ready(&self) -> bool { self.clock.now() >= self.until }
/// }
///
/// let manual = ManualClock::new();
/// let c = Cooldown::new(std::sync::Arc::new(manual.clone()), Duration::from_secs(5));
/// assert!(!c.ready());
/// manual.advance(Duration::from_secs(5));
/// assert!(c.ready());
///
/// // In production: the system clock.
/// let _prod = Cooldown::new(std::sync::Arc::new(SystemClock), Duration::from_secs(5));
/// ```
pub trait Clock: Debug + Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// A cheaply clonable, type-erased clock.
pub type SharedClock = Arc<dyn Clock>;

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

/// The operating system's monotonic clock ([`Instant::now`]).
///
/// ```
/// use foundation_core::{Clock, SystemClock};
/// let a = SystemClock.now();
/// assert!(SystemClock.now() >= a);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// tokio's clock: follows `tokio::time::pause()` and `advance()` in tests and is
/// the system clock otherwise.
///
/// Use it for components that both sleep on tokio timers and compute with a
/// [`Clock`], so both agree under paused time.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use foundation_core::{Clock, TokioClock};
///
/// let t0 = TokioClock.now();
/// tokio::time::sleep(Duration::from_secs(60)).await; // instant under paused time
/// assert!(TokioClock.now() - t0 >= Duration::from_secs(60));
/// # }
/// ```
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

#[cfg(feature = "tokio")]
impl Clock for TokioClock {
    #[inline]
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// Like governor's `FakeRelativeClock`, but usable anywhere a [`Clock`] is.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    base: Instant,
    offset_nanos: AtomicU64,
}

// === impl ManualClock ===

impl ManualClock {
    /// A new clock, starting at the current system instant.
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(ManualInner {
                base: Instant::now(),
                offset_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Moves time forward by `by`. Saturates after ~584 years of advancing.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .inner
            .offset_nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                Some(cur.saturating_add(nanos))
            });
    }

    /// Time advanced since the clock was created.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.inner.offset_nanos.load(Ordering::Acquire))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.inner.base + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::new();
        let b = a.clone();
        let t0 = a.now();
        b.advance(Duration::from_millis(250));
        assert_eq!(a.now() - t0, Duration::from_millis(250));
        assert_eq!(a.elapsed(), Duration::from_millis(250));
    }

    #[test]
    fn manual_clock_saturates() {
        let c = ManualClock::new();
        c.advance(Duration::MAX);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.elapsed(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn shared_clock_is_object_safe() {
        let c: SharedClock = Arc::new(ManualClock::new());
        let t = c.now();
        assert!(c.now() >= t);
    }

    #[cfg(feature = "tokio")]
    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let t0 = TokioClock.now();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(TokioClock.now() - t0 >= Duration::from_secs(5));
    }
}
