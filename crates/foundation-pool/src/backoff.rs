//! The creation gate: exponential backoff with jitter after creation failures,
//! and a single probe at a time while the backend is failing.
//!
//! Without it, every checkout that finds no idle object would try to connect
//! to a backend that is down: a connection storm exactly when the backend can
//! least take it. With it, after a failure nobody creates until the backoff
//! expires, and then one caller (a checkout or the warm-up task) probes while
//! the others fail fast with `Unavailable`.

use std::time::{Duration, Instant};

use crate::config::BackoffConfig;

/// Outcome of asking the gate for permission to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Go ahead; report the result with `success`/`failure`.
    Yes,
    /// The backend is failing: retry in this long.
    BackingOff(Duration),
}

#[derive(Debug)]
pub(crate) struct Gate {
    failures: u32,
    retry_at: Option<Instant>,
    probing: bool,
    rng: u64,
}

// === impl Gate ===

impl Gate {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            failures: 0,
            retry_at: None,
            probing: false,
            rng: seed | 1,
        }
    }

    /// Consecutive creation failures (0 when healthy).
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// How long until creation is allowed again, if it is not now.
    pub(crate) fn retry_in(&self, now: Instant) -> Option<Duration> {
        self.retry_at
            .map(|t| t.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    pub(crate) fn admit(&mut self, now: Instant) -> Admit {
        if self.failures == 0 {
            return Admit::Yes;
        }
        if let Some(wait) = self.retry_in(now) {
            return Admit::BackingOff(wait);
        }
        if self.probing {
            // Someone is already probing the backend; wait for its verdict.
            return Admit::BackingOff(Duration::ZERO);
        }
        self.probing = true;
        Admit::Yes
    }

    /// Records a successful creation; returns whether this ended a failure streak.
    pub(crate) fn success(&mut self) -> bool {
        let recovered = self.failures > 0;
        self.failures = 0;
        self.retry_at = None;
        self.probing = false;
        recovered
    }

    /// Records a failed creation and returns the backoff delay chosen.
    pub(crate) fn failure(&mut self, now: Instant, cfg: &BackoffConfig) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.probing = false;
        let delay = self.delay(cfg);
        self.retry_at = Some(now + delay);
        delay
    }

    /// A caller that was admitted gave up before finishing (cancelled).
    pub(crate) fn abandon(&mut self) {
        self.probing = false;
    }

    fn delay(&mut self, cfg: &BackoffConfig) -> Duration {
        let exp = i32::try_from(self.failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = cfg.initial.as_secs_f64() * cfg.multiplier.powi(exp);
        let capped = base.min(cfg.max.as_secs_f64());
        // "Equal jitter" generalised: a fixed part plus a random part.
        let r = self.next_unit();
        let secs = capped * (1.0 - cfg.jitter) + capped * cfg.jitter * r;
        Duration::from_secs_f64(secs.clamp(0.0, cfg.max.as_secs_f64()))
    }

    /// splitmix64, mapped to [0, 1).
    fn next_unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foundation_core::{Clock, ManualClock};
    use proptest::prelude::*;

    #[test]
    fn one_probe_after_backoff_and_reset_on_success() {
        let clock = ManualClock::new();
        let cfg = BackoffConfig::default();
        let mut g = Gate::new(7);
        assert_eq!(g.admit(clock.now()), Admit::Yes);
        let d = g.failure(clock.now(), &cfg);
        assert!(d >= cfg.initial / 2 && d <= cfg.initial, "{d:?}");
        assert!(matches!(g.admit(clock.now()), Admit::BackingOff(_)));
        clock.advance(d);
        assert_eq!(g.admit(clock.now()), Admit::Yes, "the probe");
        assert_eq!(
            g.admit(clock.now()),
            Admit::BackingOff(Duration::ZERO),
            "only one probe"
        );
        assert!(g.success());
        assert_eq!(g.failures(), 0);
        assert_eq!(g.admit(clock.now()), Admit::Yes);
        assert_eq!(g.admit(clock.now()), Admit::Yes, "no gating when healthy");
    }

    proptest! {
        #[test]
        fn delay_grows_within_bounds(seed in any::<u64>(), n in 1usize..40, jitter in 0.0f64..=1.0) {
            let cfg = BackoffConfig { jitter, ..BackoffConfig::default() };
            let clock = ManualClock::new();
            let mut g = Gate::new(seed);
            for i in 0..n {
                let d = g.failure(clock.now(), &cfg);
                prop_assert!(d <= cfg.max);
                let nominal = (cfg.initial.as_secs_f64() * cfg.multiplier.powi(i as i32)).min(cfg.max.as_secs_f64());
                prop_assert!(d.as_secs_f64() >= nominal * (1.0 - jitter) - 1e-9);
            }
        }
    }
}
