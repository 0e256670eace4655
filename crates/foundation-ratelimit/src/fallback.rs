//! Fallback across targets that each have their own limiter (model A, then
//! model B, ...), with a pluggable choice.
//!
//! [`Fallback::acquire`] asks every target for its status — admits now, a
//! predicted wait, or why it cannot — hands the list to a
//! [`FallbackStrategy`], and carries out its [`Choice`]. Shipped strategies:
//! [`FirstAdmitting`] (the first target that admits now) and
//! [`ShortestWait`] (the shortest predicted wait within a deadline, earlier
//! targets winning ties). When nothing fits, [`FallbackError`] gives the
//! reason per target.
//!
//! ```
//! use std::time::Duration;
//! use foundation_ratelimit::fallback::{Fallback, FirstAdmitting};
//! use foundation_ratelimit::{Charge, DimensionConfig, LimiterConfig, RateLimiter};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tpm = |n| LimiterConfig::new().with_dimension(DimensionConfig::per_minute("tokens", n));
//! let fallback = Fallback::new(
//!     [("gpt-4o", RateLimiter::try_new(tpm(1_000))?), ("gpt-4o-mini", RateLimiter::try_new(tpm(10_000))?)],
//!     FirstAdmitting,
//! )?;
//! let first = fallback.acquire(Charge::from([800])).await?;
//! assert_eq!(first.target(), "gpt-4o");
//! let second = fallback.acquire(Charge::from([800])).await?;
//! assert_eq!(second.target(), "gpt-4o-mini");
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use foundation_core::{Classify, ErrorKind};

use crate::charge::Charge;
use crate::error::{AcquireError, ConfigError};
use crate::limiter::RateLimiter;
use crate::permit::Permit;

/// One target's status, as a strategy sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Candidate<'a> {
    /// The target's position in the fallback order.
    pub position: usize,
    /// The target's name.
    pub name: &'a str,
    /// `Ok(ZERO)`: admits now; `Ok(d)`: predicted wait `d`; `Err`: cannot
    /// (charge too large, concurrency full with no predictable wait, queue full).
    pub status: Result<Duration, AcquireError>,
}

/// What a strategy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Choice {
    /// Take a permit from this target now.
    Now(usize),
    /// Wait on this target, for at most this long.
    Wait(usize, Duration),
    /// Give up: no target is acceptable.
    Fail,
}

/// Chooses a target from the candidates' statuses.
pub trait FallbackStrategy: fmt::Debug + Send + Sync {
    /// The choice for `candidates` (in fallback order).
    fn choose(&self, candidates: &[Candidate<'_>]) -> Choice;
}

/// The first target that admits now; fails when none does.
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstAdmitting;

impl FallbackStrategy for FirstAdmitting {
    fn choose(&self, candidates: &[Candidate<'_>]) -> Choice {
        candidates
            .iter()
            .find(|c| matches!(c.status, Ok(d) if d.is_zero()))
            .map_or(Choice::Fail, |c| Choice::Now(c.position))
    }
}

/// The target with the shortest predicted wait, if it is within `deadline`
/// (earlier targets win ties, so a preferred model is used when it is as fast).
#[derive(Debug, Clone, Copy)]
pub struct ShortestWait {
    /// The longest acceptable wait.
    pub deadline: Duration,
}

impl FallbackStrategy for ShortestWait {
    fn choose(&self, candidates: &[Candidate<'_>]) -> Choice {
        let best = candidates
            .iter()
            .filter_map(|c| c.status.as_ref().ok().map(|d| (*d, c.position)))
            .min_by_key(|&(d, pos)| (d, pos));
        match best {
            Some((d, pos)) if d.is_zero() => Choice::Now(pos),
            Some((d, pos)) if d <= self.deadline => Choice::Wait(pos, self.deadline),
            _ => Choice::Fail,
        }
    }
}

/// No target could take the request; the reason per target.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no fallback target admitted the request: {}", summary(.reasons))]
pub struct FallbackError {
    /// `(target name, why)`, in fallback order.
    pub reasons: Vec<(Arc<str>, AcquireError)>,
}

fn summary(reasons: &[(Arc<str>, AcquireError)]) -> String {
    reasons
        .iter()
        .map(|(n, e)| format!("{n}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Classify for FallbackError {
    /// Rate limited with the shortest retry-after among targets when any
    /// target will admit later; otherwise overloaded (or invalid input when
    /// the charge fits no target at all).
    fn kind(&self) -> ErrorKind {
        let soonest = self
            .reasons
            .iter()
            .filter_map(|(_, e)| e.retry_after())
            .min();
        if soonest.is_some() {
            return ErrorKind::RateLimited {
                retry_after: soonest,
            };
        }
        if !self.reasons.is_empty()
            && self
                .reasons
                .iter()
                .all(|(_, e)| e.kind() == ErrorKind::InvalidInput)
        {
            ErrorKind::InvalidInput
        } else {
            ErrorKind::Overloaded
        }
    }
}

/// A permit from the target that was chosen.
#[derive(Debug)]
pub struct FallbackPermit {
    position: usize,
    name: Arc<str>,
    /// The permit (reconcile it as usual).
    pub permit: Permit,
}

impl FallbackPermit {
    /// The chosen target's name.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.name
    }

    /// The chosen target's position in the fallback order.
    #[must_use]
    pub fn position(&self) -> usize {
        self.position
    }
}

/// An ordered set of targets with a strategy.
#[derive(Debug, Clone)]
pub struct Fallback<S = ShortestWait> {
    targets: Arc<[(Arc<str>, RateLimiter)]>,
    strategy: S,
}

// === impl Fallback ===

impl<S: FallbackStrategy> Fallback<S> {
    /// Targets in preference order. All targets must have the same dimension
    /// names in the same order, since one charge is offered to each.
    ///
    /// # Errors
    /// [`ConfigError::DimensionsChanged`] when a target's dimensions differ
    /// from the first target's.
    pub fn new<N: Into<Arc<str>>>(
        targets: impl IntoIterator<Item = (N, RateLimiter)>,
        strategy: S,
    ) -> Result<Self, ConfigError> {
        let targets: Vec<(Arc<str>, RateLimiter)> =
            targets.into_iter().map(|(n, l)| (n.into(), l)).collect();
        if let Some((_, first)) = targets.first() {
            let expected: Vec<String> = first.dimensions().map(str::to_owned).collect();
            for (_, l) in &targets[1..] {
                let got: Vec<String> = l.dimensions().map(str::to_owned).collect();
                if got != expected {
                    return Err(ConfigError::DimensionsChanged { expected, got });
                }
            }
        }
        Ok(Self {
            targets: targets.into(),
            strategy,
        })
    }

    /// The statuses every target reports for `charge` now.
    #[must_use]
    pub fn candidates(&self, charge: &Charge) -> Vec<Candidate<'_>> {
        self.targets
            .iter()
            .enumerate()
            .map(|(position, (name, l))| Candidate {
                position,
                name,
                status: match l.would_admit(charge) {
                    Ok(()) => Ok(Duration::ZERO),
                    Err(AcquireError::RateLimited { .. } | AcquireError::Queued { .. }) => {
                        l.predicted_wait(charge)
                    }
                    Err(e) => Err(e),
                },
            })
            .collect()
    }

    /// Chooses a target with the strategy and takes (or waits for) a permit.
    /// If the chosen target loses a race for capacity, the choice is made
    /// again among the others.
    ///
    /// # Errors
    /// [`FallbackError`] with the reason per target.
    pub async fn acquire(&self, charge: Charge) -> Result<FallbackPermit, FallbackError> {
        let mut failed: Vec<(usize, AcquireError)> = Vec::new();
        loop {
            let candidates: Vec<Candidate<'_>> = self
                .candidates(&charge)
                .into_iter()
                .map(|mut c| {
                    if let Some((_, e)) = failed.iter().find(|(p, _)| *p == c.position) {
                        c.status = Err(e.clone());
                    }
                    c
                })
                .collect();
            let choice = self.strategy.choose(&candidates);
            let (position, result) = match choice {
                Choice::Now(p) if p < self.targets.len() => {
                    (p, self.targets[p].1.try_acquire(charge))
                }
                Choice::Wait(p, d) if p < self.targets.len() => {
                    (p, self.targets[p].1.acquire_within(charge, d).await)
                }
                _ => {
                    let reasons = candidates
                        .into_iter()
                        .map(|c| {
                            let why = match c.status {
                                Err(e) => e,
                                Ok(d) => AcquireError::WouldExceedDeadline {
                                    predicted: d,
                                    deadline: match choice {
                                        Choice::Wait(_, dl) => dl,
                                        _ => Duration::ZERO,
                                    },
                                },
                            };
                            (self.targets[c.position].0.clone(), why)
                        })
                        .collect();
                    return Err(FallbackError { reasons });
                }
            };
            match result {
                Ok(permit) => {
                    return Ok(FallbackPermit {
                        position,
                        name: self.targets[position].0.clone(),
                        permit,
                    });
                }
                Err(e) => {
                    tracing::debug!(target_name = %self.targets[position].0, error = %e, "fallback target lost the race");
                    failed.push((position, e));
                }
            }
        }
    }

    /// The targets, in order.
    pub fn targets(&self) -> impl Iterator<Item = (&str, &RateLimiter)> {
        self.targets.iter().map(|(n, l)| (&**n, l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DimensionConfig, LimiterConfig};
    use foundation_core::TokioClock;

    fn target(tokens_per_sec: u64) -> RateLimiter {
        RateLimiter::builder(
            LimiterConfig::new()
                .with_dimension(DimensionConfig::per_second("tokens", tokens_per_sec)),
        )
        .with_clock(TokioClock)
        .build()
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn shortest_wait_within_deadline() {
        let (a, b) = (target(100), target(50));
        let _ = a.try_acquire(Charge::from([100])).unwrap();
        let _ = b.try_acquire(Charge::from([50])).unwrap();
        let f = Fallback::new(
            [("a", a), ("b", b)],
            ShortestWait {
                deadline: Duration::from_millis(500),
            },
        )
        .unwrap();
        // a needs 400ms for 40 tokens, b 800ms: a is chosen and waited for.
        let start = tokio::time::Instant::now();
        let p = f.acquire(Charge::from([40])).await.unwrap();
        assert_eq!((p.target(), p.position()), ("a", 0));
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        // 60 more tokens: a needs 600ms, b 800ms; both are over the deadline.
        let err = f.acquire(Charge::from([60])).await.unwrap_err();
        assert_eq!(err.reasons.len(), 2);
        assert!(matches!(
            err.kind(),
            ErrorKind::RateLimited {
                retry_after: Some(_)
            }
        ));
        assert!(
            err.to_string()
                .starts_with("no fallback target admitted the request: a: predicted wait"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn first_admitting_and_reasons() {
        let f = Fallback::new([("a", target(10)), ("b", target(20))], FirstAdmitting).unwrap();
        assert_eq!(f.acquire(Charge::from([10])).await.unwrap().target(), "a");
        assert_eq!(f.acquire(Charge::from([10])).await.unwrap().target(), "b");
        let err = f.acquire(Charge::from([30])).await.unwrap_err();
        assert!(
            err.reasons
                .iter()
                .all(|(_, e)| matches!(e, AcquireError::ExceedsBurst { .. }))
        );
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let other = RateLimiter::try_new(
            LimiterConfig::new().with_dimension(DimensionConfig::per_second("requests", 1)),
        )
        .unwrap();
        assert!(Fallback::new([("a", target(1)), ("x", other)], FirstAdmitting).is_err());
    }
}
