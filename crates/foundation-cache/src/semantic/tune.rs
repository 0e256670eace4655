//! Choosing the similarity threshold from labelled queries (what RedisVL's
//! `CacheThresholdOptimizer` does), instead of by hand.
//!
//! [`SemanticCache::optimize_threshold`](super::SemanticCache::optimize_threshold)
//! runs each [`LabelledQuery`] against the cache without serving anything,
//! records the nearest match's similarity and whether serving it would have
//! been right, and [`optimize`] picks the threshold that maximises the
//! [`Objective`]. The verifier takes part: a match it vetoes is never served,
//! whatever the threshold.

use crate::scope::Scope;

/// A query with the cached prompt it should be answered with (`None`: it
/// must miss, e.g. a near-duplicate with the opposite meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledQuery {
    /// The query's scope.
    pub scope: Scope,
    /// The query text.
    pub prompt: String,
    /// The cached prompt whose answer is right for it, if any.
    pub expected: Option<String>,
}

impl LabelledQuery {
    /// A query that should be served `expected`'s answer.
    #[must_use]
    pub fn should_match(
        scope: &Scope,
        prompt: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            scope: scope.clone(),
            prompt: prompt.into(),
            expected: Some(expected.into()),
        }
    }

    /// A query that must not be served any cached answer.
    #[must_use]
    pub fn should_miss(scope: &Scope, prompt: impl Into<String>) -> Self {
        Self {
            scope: scope.clone(),
            prompt: prompt.into(),
            expected: None,
        }
    }
}

/// One measured query: the nearest match's similarity (if the scope had
/// any vector and the verifier did not veto it) and whether serving that
/// match would be right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Similarity of the servable nearest match; `None` when nothing could be
    /// served at any threshold.
    pub similarity: Option<f32>,
    /// Serving the match would give the right answer.
    pub correct: bool,
    /// The query has a right answer in the cache.
    pub answerable: bool,
}

/// What the threshold should optimise.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Objective {
    /// The harmonic mean of precision and recall (RedisVL's default).
    F1,
    /// The most correct hits while at least this share of served answers is
    /// right: for caches where a wrong answer costs more than a miss.
    MinPrecision(f64),
}

/// The chosen threshold and how it scores on the labelled queries.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdReport {
    /// The threshold to use.
    pub threshold: f32,
    /// Served answers that were right, among those served.
    pub precision: f64,
    /// Answerable queries served the right answer.
    pub recall: f64,
    /// F1 at the chosen threshold.
    pub f1: f64,
    /// Queries evaluated.
    pub queries: usize,
    /// `(threshold, precision, recall)` at every candidate threshold, high to low.
    pub curve: Vec<(f32, f64, f64)>,
}

/// Precision, recall and F1 of serving every sample at or above `t`.
fn score(samples: &[Sample], t: f32) -> (f64, f64, f64) {
    let (mut tp, mut fp) = (0u32, 0u32);
    for s in samples {
        if s.similarity.is_some_and(|x| x >= t) {
            if s.correct { tp += 1 } else { fp += 1 }
        }
    }
    let answerable = samples.iter().filter(|s| s.answerable).count();
    let precision = if tp + fp == 0 {
        1.0
    } else {
        f64::from(tp) / f64::from(tp + fp)
    };
    let recall = if answerable == 0 {
        0.0
    } else {
        f64::from(tp) / answerable as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    (precision, recall, f1)
}

/// The threshold that maximises `objective` over `samples`; `None` when no
/// sample has a similarity (nothing to choose from) or, for
/// [`Objective::MinPrecision`], when no threshold serves anything at that
/// precision.
///
/// Candidates are the samples' similarities; ties go to the higher
/// threshold (fewer served answers for the same score).
#[must_use]
pub fn optimize(samples: &[Sample], objective: Objective) -> Option<ThresholdReport> {
    let mut candidates: Vec<f32> = samples
        .iter()
        .filter_map(|s| s.similarity)
        .filter(|x| x.is_finite())
        .map(|x| x.clamp(f32::MIN_POSITIVE, 1.0))
        .collect();
    candidates.sort_by(|a, b| b.total_cmp(a));
    candidates.dedup();
    let curve: Vec<(f32, f64, f64)> = candidates
        .iter()
        .map(|&t| {
            let (p, r, _) = score(samples, t);
            (t, p, r)
        })
        .collect();
    let mut best: Option<(f32, f64)> = None;
    for &(t, p, r) in &curve {
        let value = match objective {
            Objective::F1 => score(samples, t).2,
            Objective::MinPrecision(min) if p >= min && r > 0.0 => r,
            Objective::MinPrecision(_) => continue,
        };
        if best.is_none_or(|(_, b)| value > b) {
            best = Some((t, value));
        }
    }
    let (threshold, _) = best?;
    let (precision, recall, f1) = score(samples, threshold);
    Some(ThresholdReport {
        threshold,
        precision,
        recall,
        f1,
        queries: samples.len(),
        curve,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(sim: f32, correct: bool) -> Sample {
        Sample {
            similarity: Some(sim),
            correct,
            answerable: correct,
        }
    }

    #[test]
    fn picks_the_threshold_that_separates_right_from_wrong() {
        let samples = [
            s(0.97, true),
            s(0.93, true),
            s(0.91, true),
            s(0.88, false),
            s(0.86, true),
            s(0.80, false),
            s(0.70, false),
        ];
        let f1 = optimize(&samples, Objective::F1).unwrap();
        assert!((f1.threshold - 0.86).abs() < 1e-6, "{f1:?}");
        assert!((f1.recall - 1.0).abs() < 1e-9);
        let strict = optimize(&samples, Objective::MinPrecision(1.0)).unwrap();
        assert!((strict.threshold - 0.91).abs() < 1e-6, "{strict:?}");
        assert!((strict.precision - 1.0).abs() < 1e-9 && (strict.recall - 0.75).abs() < 1e-9);
        assert_eq!(strict.curve.len(), 7);
    }

    #[test]
    fn nothing_to_choose_from() {
        assert!(optimize(&[], Objective::F1).is_none());
        let none = Sample {
            similarity: None,
            correct: false,
            answerable: true,
        };
        assert!(optimize(&[none], Objective::F1).is_none());
        assert!(optimize(&[s(0.9, false)], Objective::MinPrecision(0.5)).is_none());
    }

    proptest! {
        #[test]
        fn the_choice_is_optimal_among_candidates(
            raw in proptest::collection::vec((0.0f32..1.0, any::<bool>(), any::<bool>()), 1..60)
        ) {
            let samples: Vec<Sample> = raw
                .iter()
                .map(|&(x, c, a)| Sample { similarity: Some(x.max(1e-6)), correct: c, answerable: a || c })
                .collect();
            let r = optimize(&samples, Objective::F1).unwrap();
            for &(t, _, _) in &r.curve {
                prop_assert!(score(&samples, t).2 <= r.f1 + 1e-12);
            }
            if let Some(p) = optimize(&samples, Objective::MinPrecision(0.9)) {
                prop_assert!(p.precision >= 0.9);
                for &(t, prec, rec) in &p.curve {
                    prop_assert!(!(prec >= 0.9 && rec > p.recall + 1e-12), "{t} beats the choice");
                }
            }
        }
    }
}
