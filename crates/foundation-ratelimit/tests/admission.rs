//! Synchronous admission: the reference-model property test, rollback and
//! atomicity under concurrency.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests and their helpers fail loudly"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foundation_core::ManualClock;
use foundation_ratelimit::{AcquireError, Charge, DimensionConfig, LimiterConfig, RateLimiter};
use proptest::prelude::*;

/// The reference: an exact continuous-refill token bucket per dimension, in
/// integer arithmetic scaled by `limit` (so no rounding at all).
#[derive(Debug, Clone)]
struct Model {
    dims: Vec<ModelDim>,
}

#[derive(Debug, Clone)]
struct ModelDim {
    limit: u128,
    period: u128,
    burst: u128,
    /// Debt in nanoseconds * limit: `cost` units add `cost * period`.
    debt: u128,
    last: u128,
}

impl Model {
    fn new(cfg: &LimiterConfig) -> Self {
        Self {
            dims: cfg
                .dimensions
                .iter()
                .map(|d| ModelDim {
                    limit: u128::from(d.limit),
                    period: d.period.as_nanos(),
                    burst: u128::from(d.effective_burst()),
                    debt: 0,
                    last: 0,
                })
                .collect(),
        }
    }

    fn advance(&mut self, now: u128) {
        for d in &mut self.dims {
            d.debt = d.debt.saturating_sub((now - d.last) * d.limit);
            d.last = now;
        }
    }

    fn fits(&self, c: &Charge) -> bool {
        self.dims
            .iter()
            .enumerate()
            .all(|(i, d)| d.debt + u128::from(c.get(i)) * d.period <= d.burst * d.period)
    }

    fn charge(&mut self, c: &Charge) {
        for (i, d) in self.dims.iter_mut().enumerate() {
            d.debt += u128::from(c.get(i)) * d.period;
        }
    }
}

/// Rounding tolerance: the limiter rounds each charge up by under 1 ns, so
/// it may deny a charge that fits the exact model only when it would fit
/// within this much more time.
const TOLERANCE: Duration = Duration::from_micros(1);

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Acquire(u64, u64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            (0u64..3_000).prop_map(|ms| Op::Advance(ms * 1_000_000 + 7)),
            (0u64..4, 0u64..900).prop_map(|(r, t)| Op::Acquire(r, t)),
        ],
        1..200,
    )
}

fn config() -> impl Strategy<Value = LimiterConfig> {
    (1u64..50, 1u64..20, 1u64..5_000, 1u64..3_000, 1u64..120).prop_map(
        |(rl, rb, tl, tb, period_s)| {
            LimiterConfig::new()
                .with_dimension(
                    DimensionConfig::new("requests", rl, Duration::from_secs(period_s))
                        .with_burst(rb),
                )
                .with_dimension(
                    DimensionConfig::new("tokens", tl, Duration::from_secs(7)).with_burst(tb),
                )
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The limiter agrees with the exact model: it never admits what the model
    /// does not (no over-admission), denies only what the model denies up to
    /// the rounding tolerance, and a denial charges nothing.
    #[test]
    fn agrees_with_reference_model(cfg in config(), ops in ops()) {
        let clock = ManualClock::new();
        let limiter = RateLimiter::builder(cfg.clone()).with_clock(clock.clone()).build().unwrap();
        let mut model = Model::new(&cfg);
        let mut admitted: Vec<(u128, Charge)> = Vec::new();
        for op in ops {
            match op {
                Op::Advance(n) => clock.advance(Duration::from_nanos(n)),
                Op::Acquire(r, t) => {
                    let now = clock.elapsed().as_nanos();
                    model.advance(now);
                    let c = Charge::from([r, t]);
                    let before = limiter.snapshot();
                    match limiter.check(c) {
                        Ok(()) => {
                            prop_assert!(model.fits(&c), "over-admission of {c:?} at {now}");
                            model.charge(&c);
                            admitted.push((now, c));
                        }
                        Err(AcquireError::RateLimited { retry_after, .. }) => {
                            prop_assert!(
                                !model.fits(&c) || retry_after <= TOLERANCE,
                                "false denial of {c:?} at {now} (retry after {retry_after:?})"
                            );
                            prop_assert_eq!(limiter.snapshot(), before, "a denial must charge nothing");
                        }
                        Err(AcquireError::ExceedsBurst { dimension, cost, burst }) => {
                            prop_assert!(cost > burst);
                            let i = limiter.position(&dimension).unwrap();
                            prop_assert_eq!(cfg.dimensions[i].effective_burst(), burst);
                            prop_assert_eq!(limiter.snapshot(), before);
                        }
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
            }
        }
        // Window check, independent of the model: in any window of length W
        // starting at an admission, a dimension admits at most
        // burst + limit * W / period.
        for (i, d) in cfg.dimensions.iter().enumerate() {
            let period = d.period.as_nanos();
            for (k, (start, _)) in admitted.iter().enumerate() {
                for w in [period / 4, period, period * 3] {
                    let sum: u128 = admitted[k..]
                        .iter()
                        .take_while(|(t, _)| *t < start + w)
                        .map(|(_, c)| u128::from(c.get(i)))
                        .sum();
                    let bound = u128::from(d.effective_burst()) + u128::from(d.limit) * w / period;
                    prop_assert!(sum <= bound, "dimension {} admitted {sum} in {w}ns, bound {bound}", d.name);
                }
            }
        }
    }

    /// Reconcile refunds and debts match the model too.
    #[test]
    fn reconcile_settles_exactly(reserve in 1u64..1_000, actual in 0u64..1_500) {
        let cfg = LimiterConfig::new().with_dimension(DimensionConfig::per_minute("tokens", 1_000));
        let (limiter, _clock) = support::manual(cfg);
        let mut permit = limiter.try_acquire(Charge::from([reserve])).unwrap();
        permit.reconcile(Charge::from([actual]));
        let remaining = limiter.snapshot().dimensions[0].remaining;
        prop_assert_eq!(remaining, 1_000u64.saturating_sub(actual));
        prop_assert_eq!(permit.charged(), Charge::from([actual]));
    }
}

#[test]
fn denial_names_dimension_and_wait() {
    let (limiter, clock) = support::manual(support::rpm_tpm(60, 6_000));
    limiter.check(Charge::from([1, 6_000])).unwrap();
    let err = limiter.check(Charge::from([1, 100])).unwrap_err();
    assert_eq!(err.dimension(), Some("tokens"));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    clock.advance(Duration::from_secs(1));
    limiter.check(Charge::from([1, 100])).unwrap();
    // The denied request's rollback left requests untouched: 60 - 2 + 1 refilled.
    assert_eq!(limiter.snapshot().dimensions[0].remaining, 59);
}

#[test]
fn charge_larger_than_burst_is_a_typed_error() {
    let (limiter, _) = support::manual(support::rpm_tpm(60, 6_000));
    let err = limiter.try_acquire(Charge::from([1, 6_001])).unwrap_err();
    assert!(
        matches!(
            err,
            AcquireError::ExceedsBurst {
                cost: 6_001,
                burst: 6_000,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        foundation_core::Classify::kind(&err),
        foundation_core::ErrorKind::InvalidInput
    );
    let err = limiter.check(Charge::from([1, 1, 1])).unwrap_err();
    assert!(err.to_string().contains("position 2"), "{err}");
    assert_eq!(limiter.snapshot().dimensions[0].remaining, 60);
}

#[test]
fn charge_by_name() {
    let (limiter, _) = support::manual(support::rpm_tpm(60, 6_000));
    let c = limiter.charge([("tokens", 10), ("requests", 1)]).unwrap();
    assert_eq!(c, Charge::from([1, 10]));
    let err = limiter.charge([("tokenz", 1)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown dimension \"tokenz\" (the limiter has requests, tokens)"
    );
}

#[test]
fn peeking_consumes_nothing() {
    let (limiter, clock) = support::manual(support::rpm_tpm(60, 6_000));
    limiter.check(Charge::from([1, 3_000])).unwrap();
    let snap = limiter.snapshot();
    assert_eq!(snap.dimensions[1].remaining, 3_000);
    assert_eq!(snap.dimensions[1].full_in, Duration::from_secs(30));
    assert!(limiter.would_admit(&Charge::from([1, 3_000])).is_ok());
    assert!(limiter.would_admit(&Charge::from([1, 3_001])).is_err());
    assert_eq!(limiter.snapshot(), snap);
    clock.advance(Duration::from_secs(30));
    assert_eq!(limiter.snapshot().dimensions[1].remaining, 6_000);
}

#[test]
fn concurrency_slots_are_released_on_drop() {
    let cfg = support::rpm_tpm(1_000, 1_000_000).with_concurrency(2);
    let (limiter, _) = support::manual(cfg);
    let a = limiter.try_acquire(Charge::from([1, 1])).unwrap();
    let _b = limiter.try_acquire(Charge::from([1, 1])).unwrap();
    let before = limiter.snapshot();
    let err = limiter.try_acquire(Charge::from([1, 1])).unwrap_err();
    assert_eq!(err, AcquireError::ConcurrencyLimited { limit: 2 });
    assert_eq!(
        limiter.snapshot(),
        before,
        "a concurrency denial rolls back the rate charges"
    );
    drop(a);
    assert!(limiter.try_acquire(Charge::from([1, 1])).is_ok());
}

/// Threads hammer two dimensions with time frozen: the total admitted never
/// exceeds either burst, and after every denial was rolled back the remaining
/// capacity is exactly burst minus what was admitted (no residue).
#[test]
fn atomic_under_concurrency() {
    for round in 0..20u64 {
        let cfg = LimiterConfig::new()
            .with_dimension(DimensionConfig::per_minute("requests", 400))
            .with_dimension(DimensionConfig::per_minute("tokens", 20_000));
        let (limiter, _clock) = support::manual(cfg);
        let admitted_r = Arc::new(AtomicU64::new(0));
        let admitted_t = Arc::new(AtomicU64::new(0));
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let limiter = limiter.clone();
                let (ar, at) = (admitted_r.clone(), admitted_t.clone());
                s.spawn(move || {
                    for i in 0..2_000u64 {
                        let tokens = (i * 37 + t * 11 + round) % 150;
                        let c = Charge::from([1, tokens]);
                        if limiter.check(c).is_ok() {
                            ar.fetch_add(1, Ordering::Relaxed);
                            at.fetch_add(tokens, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let (r, t) = (
            admitted_r.load(Ordering::Relaxed),
            admitted_t.load(Ordering::Relaxed),
        );
        assert!(
            r <= 400 && t <= 20_000,
            "over-admitted: {r} requests, {t} tokens"
        );
        let snap = limiter.snapshot();
        assert_eq!(snap.dimensions[0].remaining, 400 - r);
        assert_eq!(snap.dimensions[1].remaining, 20_000 - t);
        assert!(
            r == 400 || 20_000 - t < 150,
            "stopped early: {r} requests, {t} tokens"
        );
    }
}

#[test]
fn retry_after_covers_every_dimension() {
    let (limiter, clock) = support::manual(support::rpm_tpm(60, 6_000));
    // Requests: 1 left at 1/s; tokens: exhausted, 100 back per second.
    limiter.check(Charge::from([59, 6_000])).unwrap();
    // The first dimension (requests) admits, tokens denies needing 5s for 500.
    let err = limiter.check(Charge::from([1, 500])).unwrap_err();
    assert_eq!(
        (err.dimension(), err.retry_after()),
        (Some("tokens"), Some(Duration::from_secs(5)))
    );
    // Requests deny first (needing 2s for 2 more), but tokens need 5s: the later, longer wait is reported.
    let err = limiter.check(Charge::from([3, 500])).unwrap_err();
    assert_eq!(
        (err.dimension(), err.retry_after()),
        (Some("tokens"), Some(Duration::from_secs(5)))
    );
    clock.advance(Duration::from_secs(5));
    limiter.check(Charge::from([3, 500])).unwrap();
    // And a later dimension that can never fit makes the whole charge a typed error.
    let err = limiter.check(Charge::from([61, 7_000])).unwrap_err();
    assert!(matches!(err, AcquireError::ExceedsBurst { .. }), "{err}");
}

proptest! {
    /// Server feedback never adds local capacity, whatever it says.
    #[test]
    fn feedback_only_removes_capacity(
        used in 0u64..6_000,
        remaining in prop::option::of(0u64..20_000),
        retry_ms in prop::option::of(0u64..120_000),
        advance_ms in 0u64..60_000,
    ) {
        let (limiter, clock) = support::manual(support::rpm_tpm(60, 6_000));
        limiter.check(Charge::from([1, used])).unwrap();
        clock.advance(Duration::from_millis(advance_ms));
        let before = limiter.snapshot();
        let mut headers = Vec::new();
        if let Some(r) = remaining {
            headers.push(("x-ratelimit-remaining-tokens".to_owned(), r.to_string()));
        }
        if let Some(ms) = retry_ms {
            headers.push(("retry-after-ms".to_owned(), ms.to_string()));
        }
        let info = foundation_ratelimit::RateLimitInfo::parse(
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            std::time::SystemTime::now(),
        );
        limiter.observe(&info);
        let after = limiter.snapshot();
        for (b, a) in before.dimensions.iter().zip(&after.dimensions) {
            prop_assert!(a.remaining <= b.remaining, "{} grew from {} to {}", a.name, b.remaining, a.remaining);
        }
        if let Some(r) = remaining {
            prop_assert!(after.dimensions[1].remaining <= r);
        }
        if retry_ms.is_some_and(|ms| ms > 0) {
            prop_assert!(limiter.check(Charge::from([1, 0])).is_err(), "retry-after must hold requests");
        }
    }

    /// Reconfiguration keeps the used amount of every dimension (up to one
    /// unit of rounding) and clamps it to the new burst.
    #[test]
    fn reconfiguration_keeps_used_amounts(
        used_r in 0u64..60, used_t in 0u64..6_000, rpm in 1u64..1_000, tpm in 1u64..100_000,
    ) {
        let (limiter, _clock) = support::manual(support::rpm_tpm(60, 6_000));
        limiter.check(Charge::from([used_r, used_t])).unwrap();
        limiter.reconfigure(support::rpm_tpm(rpm, tpm)).unwrap();
        let snap = limiter.snapshot();
        for (dim, (used, limit)) in snap.dimensions.iter().zip([(used_r, rpm), (used_t, tpm)]) {
            let expect = limit.saturating_sub(used);
            prop_assert!(dim.remaining.abs_diff(expect) <= 1, "{}: {} vs {expect}", dim.name, dim.remaining);
            prop_assert_eq!(dim.burst, limit);
        }
    }
}
