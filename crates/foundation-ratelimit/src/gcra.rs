//! GCRA arithmetic on one dimension's theoretical arrival time (TAT).
//!
//! Time is nanoseconds since the limiter's epoch. A dimension's whole state is
//! its TAT in one `AtomicU64`: the instant at which its bucket would be
//! completely full again. A charge of `n` at time `now` is admissible iff
//! `max(tat, now) + inc(n) <= now + tau`, where `inc(n)` is `n` emission
//! intervals and `tau = inc(burst)`.
//!
//! The emission interval is kept in 1/1024 ns fixed point and `inc` rounds
//! up, so rounding can only make the limiter stricter (by under one
//! nanosecond per charge), never admit more than the configured rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const FRAC_BITS: u32 = 10;
const FRAC_MASK: u128 = (1 << FRAC_BITS) - 1;

/// Per-dimension GCRA parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Emission interval of one unit, in 1/1024 ns.
    pub(crate) interval_q: u64,
    /// `inc(burst)`: how far ahead of `now` the TAT may run.
    pub(crate) tau: u64,
    /// The most units admissible at once.
    pub(crate) burst: u64,
}

impl Gcra {
    /// Parameters for `limit` per `period` with `burst`, or `None` when out of range.
    pub(crate) fn new(limit: u64, period: Duration, burst: u64) -> Option<Self> {
        if limit == 0 || burst == 0 || period.is_zero() {
            return None;
        }
        let q = (period.as_nanos() << FRAC_BITS).div_ceil(u128::from(limit));
        let interval_q = u64::try_from(q).ok()?;
        let mut g = Self {
            interval_q,
            tau: 0,
            burst,
        };
        let tau = g.inc_checked(burst)?;
        // Keep headroom so that `now + tau + inc(n)` never overflows in practice
        // (u64 nanoseconds are ~584 years; we allow at most a quarter).
        if tau > u64::MAX / 4 {
            return None;
        }
        g.tau = tau;
        Some(g)
    }

    fn inc_checked(&self, n: u64) -> Option<u64> {
        let p = u128::from(n) * u128::from(self.interval_q);
        let whole = (p >> FRAC_BITS) + u128::from(p & FRAC_MASK != 0);
        u64::try_from(whole).ok()
    }

    /// The time `n` units occupy (rounded up), saturating.
    #[inline]
    pub(crate) fn inc(&self, n: u64) -> u64 {
        self.inc_checked(n).unwrap_or(u64::MAX)
    }

    /// Whole units a span of `nanos` holds (rounded down).
    #[inline]
    pub(crate) fn units_in(&self, nanos: u64) -> u64 {
        let u = (u128::from(nanos) << FRAC_BITS) / u128::from(self.interval_q);
        u64::try_from(u).unwrap_or(u64::MAX)
    }

    /// Units available at `now` for a dimension whose TAT is `tat`.
    #[inline]
    pub(crate) fn remaining(&self, tat: u64, now: u64) -> u64 {
        let used = tat.saturating_sub(now);
        self.units_in(self.tau.saturating_sub(used)).min(self.burst)
    }

    /// Decides a charge of `n` at `now` against `tat`: `Ok(new_tat)` or
    /// `Err(nanos until it would fit)`.
    #[inline]
    pub(crate) fn decide(&self, tat: u64, now: u64, n: u64) -> Result<u64, u64> {
        let new_tat = tat.max(now).saturating_add(self.inc(n));
        let allow_at = new_tat.saturating_sub(self.tau);
        if allow_at <= now {
            Ok(new_tat)
        } else {
            Err(allow_at - now)
        }
    }

    /// The TAT holding the same *used* amount under `to` as `tat` does under `self`.
    pub(crate) fn convert(&self, tat: u64, now: u64, to: &Gcra) -> u64 {
        let used_nanos = tat.saturating_sub(now);
        if used_nanos == 0 {
            return tat;
        }
        // used units (fractional, in 1/1024) = used_nanos / interval
        let used_q = (u128::from(used_nanos) << (2 * FRAC_BITS)) / u128::from(self.interval_q);
        let new_nanos = (used_q * u128::from(to.interval_q)) >> (2 * FRAC_BITS);
        now.saturating_add(u64::try_from(new_nanos).unwrap_or(u64::MAX))
    }
}

/// Atomically applies `f` to `cell` (CAS loop); `f` returning `None` aborts.
#[inline]
pub(crate) fn update<E>(
    cell: &AtomicU64,
    mut f: impl FnMut(u64) -> Result<u64, E>,
) -> Result<(u64, u64), E> {
    let mut cur = cell.load(Ordering::Acquire);
    loop {
        let next = f(cur)?;
        match cell.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok((cur, next)),
            Err(actual) => cur = actual,
        }
    }
}

/// Removes `nanos` of charge from `cell` (a refund or a rollback).
///
/// The TAT never moves below `floor` (the caller's `now`): time before now is
/// already refilled capacity, so subtracting past it would mint burst the
/// dimension never had.
#[inline]
pub(crate) fn refund(cell: &AtomicU64, nanos: u64, floor: u64) {
    let _ = update::<()>(cell, |tat| {
        if tat <= floor {
            Ok(tat)
        } else {
            Ok(tat.saturating_sub(nanos).max(floor))
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_rounded_intervals() {
        let g = Gcra::new(500, Duration::from_secs(60), 500).unwrap();
        assert_eq!(g.inc(1), 120_000_000);
        assert_eq!(g.tau, 60_000_000_000);
        let g = Gcra::new(3, Duration::from_secs(1), 3).unwrap();
        assert!(g.inc(1) >= 333_333_333 && g.inc(1) <= 333_333_334);
        assert!(g.inc(3) >= 1_000_000_000);
    }

    #[test]
    fn burst_then_refill() {
        let g = Gcra::new(10, Duration::from_secs(1), 5).unwrap();
        let mut tat = 0;
        for _ in 0..5 {
            tat = g.decide(tat, 0, 1).unwrap();
        }
        let wait = g.decide(tat, 0, 1).unwrap_err();
        assert_eq!(wait, 100_000_000);
        assert_eq!(g.remaining(tat, 0), 0);
        assert_eq!(g.remaining(tat, 100_000_000), 1);
        assert_eq!(g.remaining(tat, 10_000_000_000), 5);
        assert!(g.decide(0, 0, 6).is_err());
    }

    #[test]
    fn convert_keeps_used_amount() {
        let a = Gcra::new(10, Duration::from_secs(1), 10).unwrap();
        let b = Gcra::new(100, Duration::from_secs(1), 100).unwrap();
        let tat = a.inc(4); // 4 units used at now = 0
        let t2 = a.convert(tat, 0, &b);
        assert_eq!(b.remaining(t2, 0), 96);
    }

    #[test]
    fn refund_stops_at_floor() {
        let cell = AtomicU64::new(1_000);
        refund(&cell, 5_000, 200);
        assert_eq!(cell.load(Ordering::Relaxed), 200);
        refund(&cell, 5_000, 300);
        assert_eq!(cell.load(Ordering::Relaxed), 200);
    }
}
