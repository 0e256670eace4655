//! Baselines: save a distribution, compare a window to it, report regressions.
//!
//! A [`Baseline`] is a saved [`Sketch`] (JSON on disk or in memory).
//! [`compare`] checks a current distribution against it with two tests:
//!
//! - **Quantile ratios**: `current / baseline` at each configured quantile
//!   (default p50, p90, p99); a ratio above `max_ratio` is a regression.
//! - **Two-sample Kolmogorov–Smirnov** on the sketches: the largest gap `D`
//!   between the two empirical CDFs, evaluated at the sketch's bucket
//!   bounds (both sketches share the bucket mapping, so the binned CDFs are
//!   exact at those points and `D` is within one bucket of the sample KS
//!   statistic). The shift is significant when
//!   `D > c(α) · sqrt((n + m) / (n m))` with `c(α) = sqrt(−ln(α/2) / 2)`. With
//!   large samples KS flags differences too small to matter, so a KS
//!   regression also needs `D >= min_ks_distance` and a higher mean.
//!
//! Below `min_samples` on either side the verdict is
//! [`Verdict::InsufficientData`], so noise does not alarm.
//! [`BaselineMonitor`] runs the comparison for watched series over a window
//! and reports regressions to callbacks, a broadcast stream and the metrics
//! `foundation_metrics_baseline_regressions_total` and
//! `foundation_metrics_baseline_regressed` (through the facade).
//!
//! ```
//! use foundation_metrics::baseline::{compare, Thresholds, Verdict};
//! use foundation_metrics::sketch::Sketch;
//!
//! let before = Sketch::from_samples((1..=1000).map(|i| f64::from(i) / 1000.0));
//! let after = Sketch::from_samples((1..=1000).map(|i| f64::from(i) / 500.0));
//! let cmp = compare(&before, &after, &Thresholds::default());
//! assert!(matches!(cmp.verdict, Verdict::Regressed { .. }));
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use foundation_core::{Validate, ValidationErrors, Validator};
use parking_lot::Mutex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::Error;
use crate::recorder::MetricsHandle;
use crate::sketch::{Quantile, Sketch};

/// A saved distribution of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// Metric name.
    pub metric: String,
    /// Label pairs identifying the series.
    pub labels: Vec<(String, String)>,
    /// The distribution.
    pub sketch: Sketch,
}

// === impl Baseline ===

impl Baseline {
    /// A baseline of `sketch` for `metric{labels}`.
    #[must_use]
    pub fn new(metric: impl Into<String>, labels: &[(&str, &str)], sketch: Sketch) -> Self {
        Self {
            metric: metric.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            sketch,
        }
    }

    /// Captures the current distribution of `metric{labels}` from `handle`:
    /// since start, or over about the last `window`. `None` if there is no
    /// such histogram.
    #[must_use]
    pub fn capture(
        handle: &MetricsHandle,
        metric: &str,
        labels: &[(&str, &str)],
        window: Option<Duration>,
    ) -> Option<Self> {
        let h = handle.histogram(metric, labels)?;
        let sketch = match window {
            Some(d) => h.window(d).sketch,
            None => h.snapshot(),
        };
        Some(Self::new(metric, labels, sketch))
    }

    fn label_refs(&self) -> Vec<(&str, &str)> {
        self.labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The baseline as JSON.
    ///
    /// # Errors
    /// [`Error::Baseline`] if serialization fails.
    pub fn to_json(&self) -> Result<String, Error> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Baseline {
            what: "encode".into(),
            source: Box::new(e),
        })
    }

    /// A baseline from JSON.
    ///
    /// # Errors
    /// [`Error::Baseline`] on malformed JSON or a sketch from another mapping.
    pub fn from_json(s: &str) -> Result<Self, Error> {
        serde_json::from_str(s).map_err(|e| Error::Baseline {
            what: "decode".into(),
            source: Box::new(e),
        })
    }

    /// Writes the baseline to `path` as JSON.
    ///
    /// # Errors
    /// [`Error::Baseline`] on I/O failure.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.to_json()?).map_err(|e| Error::Baseline {
            what: format!("write {}", path.display()),
            source: Box::new(e),
        })
    }

    /// Reads a baseline saved by [`save`](Self::save).
    ///
    /// # Errors
    /// [`Error::Baseline`] on I/O failure or bad content.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let s = std::fs::read_to_string(path).map_err(|e| Error::Baseline {
            what: format!("read {}", path.display()),
            source: Box::new(e),
        })?;
        Self::from_json(&s)
    }
}

/// When a comparison counts as a regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Quantiles compared by ratio. Default p50, p90, p99.
    #[schemars(with = "Vec<f64>")]
    pub quantiles: Vec<Quantile>,
    /// Largest acceptable `current / baseline` ratio at those quantiles
    /// (> 1). Default 1.25.
    pub max_ratio: f64,
    /// Significance level of the KS test (0..1). Default 0.001.
    pub ks_alpha: f64,
    /// Smallest KS distance that counts, however significant (0..=1).
    /// Default 0.1.
    pub min_ks_distance: f64,
    /// Samples needed on each side before any verdict. Default 200.
    pub min_samples: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            quantiles: vec![Quantile::P50, Quantile::P90, Quantile::P99],
            max_ratio: 1.25,
            ks_alpha: 0.001,
            min_ks_distance: 0.1,
            min_samples: 200,
        }
    }
}

impl Validate for Thresholds {
    fn validate_into(&self, v: &mut Validator) {
        v.check(!self.quantiles.is_empty(), "quantiles", "must not be empty");
        v.check(
            self.max_ratio > 1.0 && self.max_ratio.is_finite(),
            "max_ratio",
            "must be a finite number above 1",
        );
        v.check(
            self.ks_alpha > 0.0 && self.ks_alpha < 1.0,
            "ks_alpha",
            "must be in (0, 1)",
        );
        v.check(
            (0.0..=1.0).contains(&self.min_ks_distance),
            "min_ks_distance",
            "must be in [0, 1]",
        );
        v.check(self.min_samples >= 1, "min_samples", "must be at least 1");
    }
}

/// One quantile compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantileRatio {
    /// The quantile.
    pub quantile: Quantile,
    /// Its value in the baseline.
    pub baseline: f64,
    /// Its value now.
    pub current: f64,
    /// `current / baseline` (`None` when the baseline value is not positive).
    pub ratio: Option<f64>,
}

/// The outcome of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum Verdict {
    /// Too few samples to judge.
    InsufficientData {
        /// Samples in the baseline.
        baseline: u64,
        /// Samples now.
        current: u64,
        /// Needed on each side.
        needed: u64,
    },
    /// No regression.
    Ok,
    /// A regression, with the reasons.
    Regressed {
        /// Human-readable reasons (`"p99 ratio 1.62 > 1.25"`).
        reasons: Vec<String>,
    },
}

/// The full result of [`compare`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Per-quantile ratios.
    pub quantiles: Vec<QuantileRatio>,
    /// The KS distance `D` (0..=1).
    pub ks_distance: f64,
    /// The critical `D` at `ks_alpha` for these sample sizes.
    pub ks_critical: f64,
    /// The verdict.
    pub verdict: Verdict,
}

impl Comparison {
    /// Whether the verdict is a regression.
    #[must_use]
    pub fn is_regression(&self) -> bool {
        matches!(self.verdict, Verdict::Regressed { .. })
    }
}

/// The two-sample KS distance between two sketches (evaluated at bucket
/// bounds; 0 when either is empty).
#[must_use]
#[allow(clippy::cast_precision_loss, reason = "statistics")]
pub fn ks_distance(a: &Sketch, b: &Sketch) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (na, nb) = (a.count() as f64, b.count() as f64);
    let mut ia = a.keyed().peekable();
    let mut ib = b.keyed().peekable();
    let (mut ca, mut cb, mut d) = (0u64, 0u64, 0f64);
    loop {
        let key = match (ia.peek(), ib.peek()) {
            (Some(x), Some(y)) => x.0.min(y.0),
            (Some(x), None) => x.0,
            (None, Some(y)) => y.0,
            (None, None) => break,
        };
        if let Some(x) = ia.next_if(|x| x.0 == key) {
            ca += x.2;
        }
        if let Some(y) = ib.next_if(|y| y.0 == key) {
            cb += y.2;
        }
        d = d.max((ca as f64 / na - cb as f64 / nb).abs());
    }
    d
}

/// Compares `current` to `baseline` under `t` (see the module docs).
#[must_use]
#[allow(clippy::cast_precision_loss, reason = "statistics")]
pub fn compare(baseline: &Sketch, current: &Sketch, t: &Thresholds) -> Comparison {
    let (n, m) = (baseline.count(), current.count());
    let quantiles: Vec<QuantileRatio> = t
        .quantiles
        .iter()
        .filter_map(|q| {
            let (b, c) = (baseline.quantile(*q)?, current.quantile(*q)?);
            Some(QuantileRatio {
                quantile: *q,
                baseline: b,
                current: c,
                ratio: (b > 0.0).then(|| c / b),
            })
        })
        .collect();
    let ks = ks_distance(baseline, current);
    let critical = if n > 0 && m > 0 {
        let c_alpha = (-(t.ks_alpha / 2.0).ln() / 2.0).sqrt();
        c_alpha * ((n + m) as f64 / (n as f64 * m as f64)).sqrt()
    } else {
        f64::INFINITY
    };
    let verdict = if n < t.min_samples || m < t.min_samples {
        Verdict::InsufficientData {
            baseline: n,
            current: m,
            needed: t.min_samples,
        }
    } else {
        let mut reasons: Vec<String> = quantiles
            .iter()
            .filter_map(|r| {
                r.ratio.filter(|x| *x > t.max_ratio).map(|x| {
                    format!(
                        "p{} ratio {x:.3} > {}",
                        r.quantile.get() * 100.0,
                        t.max_ratio
                    )
                })
            })
            .collect();
        let higher = current.mean().unwrap_or(0.0) > baseline.mean().unwrap_or(0.0);
        if ks > critical && ks >= t.min_ks_distance && higher {
            reasons.push(format!(
                "KS distance {ks:.3} > critical {critical:.3} (alpha {})",
                t.ks_alpha
            ));
        }
        if reasons.is_empty() {
            Verdict::Ok
        } else {
            Verdict::Regressed { reasons }
        }
    };
    Comparison {
        quantiles,
        ks_distance: ks,
        ks_critical: critical,
        verdict,
    }
}

/// A regression found by a [`BaselineMonitor`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Regression {
    /// Metric name.
    pub metric: String,
    /// The series' labels.
    pub labels: Vec<(String, String)>,
    /// The window compared.
    pub window: Duration,
    /// The comparison that failed.
    pub comparison: Comparison,
}

type Callback = Arc<dyn Fn(&Regression) + Send + Sync>;

#[derive(Debug, Clone)]
struct Watch {
    baseline: Baseline,
    thresholds: Thresholds,
    window: Duration,
}

/// Watches series against baselines; call [`check`](Self::check)
/// periodically (e.g. every minute from a task).
pub struct BaselineMonitor {
    handle: MetricsHandle,
    watches: Mutex<Vec<Watch>>,
    callbacks: Mutex<Vec<Callback>>,
    tx: broadcast::Sender<Regression>,
}

impl std::fmt::Debug for BaselineMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaselineMonitor")
            .field("watches", &self.watches.lock().len())
            .field("callbacks", &self.callbacks.lock().len())
            .finish_non_exhaustive()
    }
}

// === impl BaselineMonitor ===

impl BaselineMonitor {
    /// A monitor over `handle`; the stream keeps the last 64 regressions for
    /// slow subscribers (older ones are reported to them as lagged).
    #[must_use]
    pub fn new(handle: MetricsHandle) -> Self {
        let (tx, _) = broadcast::channel(64);
        Self {
            handle,
            watches: Mutex::new(Vec::new()),
            callbacks: Mutex::new(Vec::new()),
            tx,
        }
    }

    /// Compares `baseline`'s series over the last `window` on each check,
    /// with per-metric `thresholds`.
    ///
    /// # Errors
    /// The thresholds' validation errors.
    pub fn watch(
        &self,
        baseline: Baseline,
        thresholds: Thresholds,
        window: Duration,
    ) -> Result<(), ValidationErrors> {
        thresholds.validate()?;
        self.watches.lock().push(Watch {
            baseline,
            thresholds,
            window,
        });
        Ok(())
    }

    /// Calls `f` for every regression found.
    pub fn on_regression(&self, f: impl Fn(&Regression) + Send + Sync + 'static) {
        self.callbacks.lock().push(Arc::new(f));
    }

    /// A stream of regressions.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Regression> {
        self.tx.subscribe()
    }

    /// Compares every watched series now; returns the regressions found
    /// (also sent to callbacks, subscribers and the metrics).
    pub fn check(&self) -> Vec<Regression> {
        let watches = self.watches.lock().clone();
        let mut found = Vec::new();
        for w in watches {
            let labels = w.baseline.label_refs();
            let Some(current) = self.handle.window(&w.baseline.metric, &labels, w.window) else {
                continue;
            };
            let comparison = compare(&w.baseline.sketch, &current.sketch, &w.thresholds);
            let regressed = comparison.is_regression();
            metrics::gauge!("foundation_metrics_baseline_regressed", "metric" => w.baseline.metric.clone())
                .set(if regressed { 1.0 } else { 0.0 });
            if regressed {
                metrics::counter!("foundation_metrics_baseline_regressions_total", "metric" => w.baseline.metric.clone())
                    .increment(1);
                tracing::warn!(metric = %w.baseline.metric, verdict = ?comparison.verdict, "distribution regressed from its baseline");
                found.push(Regression {
                    metric: w.baseline.metric.clone(),
                    labels: w.baseline.labels.clone(),
                    window: w.window,
                    comparison,
                });
            }
        }
        let callbacks = self.callbacks.lock().clone();
        for r in &found {
            for cb in &callbacks {
                cb(r);
            }
            let _ = self.tx.send(r.clone());
        }
        found
    }
}
