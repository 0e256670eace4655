//! Recorder configuration: cardinality limits, idle expiry, windows, and how
//! each metric is exposed to Prometheus.
//!
//! Plain serde data, validated at construction, and reloadable at runtime
//! through [`MetricsHandle::config`](crate::MetricsHandle::config): bucket
//! bounds, exposition and quantiles apply from the next scrape (buckets are
//! derived from the sketch at render time, so changing them loses no
//! history); limits apply to the next new series.
//!
//! ```
//! use foundation_metrics::config::{Exposition, Matcher, MetricRule, RecorderConfig};
//! use foundation_core::Validate;
//!
//! let config: RecorderConfig = serde_json::from_str(r#"{
//!     "cardinality_limit": 500,
//!     "idle_timeout": "15m",
//!     "metrics": [
//!         { "matcher": { "suffix": "_seconds" }, "buckets": [0.1, 0.5, 1, 5, 30] },
//!         { "matcher": { "full": "queue_wait_seconds" }, "exposition": "summary" }
//!     ]
//! }"#)?;
//! config.validate()?;
//! assert_eq!(config.rule_for("queue_wait_seconds").exposition, Exposition::Summary);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration;

use foundation_core::{Validate, Validator};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::sketch::Quantile;
use crate::window::WindowLevel;

/// What to do with a new label set once a metric has `cardinality_limit` series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Record into one extra series labelled `overflow="true"` (totals stay
    /// right; the breakdown is lost for the excess). A warning is logged once
    /// per metric and `foundation_metrics_series_folded_total` counts them.
    #[default]
    Fold,
    /// Drop the samples of new label sets. A warning is logged once per
    /// metric and `foundation_metrics_series_rejected_total` counts them.
    Reject,
}

/// How a histogram is exposed to Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Exposition {
    /// A Prometheus histogram (`_bucket{le}`, `_sum`, `_count`): aggregatable
    /// across instances. The default.
    #[default]
    Histogram,
    /// A Prometheus summary (`{quantile}` over `summary_window`, with
    /// cumulative `_sum`/`_count`): exact-ish per instance, not aggregatable.
    Summary,
}

/// Which metric names a [`MetricRule`] applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Matcher {
    /// The whole name.
    Full(String),
    /// Names starting with this.
    Prefix(String),
    /// Names ending with this.
    Suffix(String),
}

impl Matcher {
    /// Whether `name` matches.
    #[must_use]
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Full(s) => name == s,
            Self::Prefix(s) => name.starts_with(s.as_str()),
            Self::Suffix(s) => name.ends_with(s.as_str()),
        }
    }
}

/// Per-metric settings; the first matching rule wins for each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricRule {
    /// Which metrics this rule applies to.
    pub matcher: Matcher,
    /// Prometheus bucket upper bounds (ascending, finite; `+Inf` is implied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<f64>>,
    /// Histogram or summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposition: Option<Exposition>,
    /// Series allowed for this metric (overrides the global limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cardinality_limit: Option<usize>,
    /// Window levels for this metric's new series (overrides `windows`; an
    /// empty list keeps only the since-start sketch, the smallest footprint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<Vec<WindowLevel>>,
}

/// Configuration of a [`MetricsRecorder`](crate::MetricsRecorder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RecorderConfig {
    /// Series (label sets) allowed per metric name. Default 1000.
    pub cardinality_limit: usize,
    /// What happens to label sets beyond the limit. Default `fold`.
    pub overflow: OverflowPolicy,
    /// Series not updated for this long, and not held by anyone, are
    /// dropped by upkeep (`null` keeps them forever). Default 10 minutes.
    #[serde(with = "foundation_core::serde_util::opt_duration")]
    #[schemars(with = "Option<String>")]
    pub idle_timeout: Option<Duration>,
    /// Rolling-window levels kept for every histogram (rules may override).
    /// A busy latency series with the defaults holds about 40 KiB of
    /// interval sketches; an empty list keeps since-start sketches only.
    pub windows: Vec<WindowLevel>,
    /// The window summaries report quantiles over. Default 1 minute.
    #[serde(with = "foundation_core::serde_util::duration")]
    #[schemars(with = "String")]
    pub summary_window: Duration,
    /// Quantiles reported by summaries. Default 0.5, 0.9, 0.99, 0.999.
    #[schemars(with = "Vec<f64>")]
    pub summary_quantiles: Vec<Quantile>,
    /// Per-metric rules, first match wins.
    pub metrics: Vec<MetricRule>,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            cardinality_limit: 1000,
            overflow: OverflowPolicy::Fold,
            idle_timeout: Some(Duration::from_secs(600)),
            windows: WindowLevel::defaults(),
            summary_window: Duration::from_secs(60),
            summary_quantiles: vec![Quantile::P50, Quantile::P90, Quantile::P99, Quantile::P999],
            metrics: Vec::new(),
        }
    }
}

/// The settings that apply to one metric name.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRule {
    /// Bucket bounds for histogram exposition.
    pub buckets: Vec<f64>,
    /// Histogram or summary.
    pub exposition: Exposition,
    /// Series allowed.
    pub cardinality_limit: usize,
}

/// Default buckets for latency in seconds: 1 ms to 2 min.
pub const LATENCY_SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Default buckets for token counts: 16 to 1M, ×4 steps.
pub const TOKEN_BUCKETS: &[f64] = &[
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
];
/// Default buckets for money in micro-units: 1 micro-unit to 100 units.
pub const COST_MICROS_BUCKETS: &[f64] = &[
    1.0,
    10.0,
    100.0,
    1_000.0,
    10_000.0,
    100_000.0,
    1_000_000.0,
    10_000_000.0,
    100_000_000.0,
];
/// Default buckets for anything else: decades from 0.001 to 1 000 000.
pub const GENERIC_BUCKETS: &[f64] = &[
    0.001,
    0.01,
    0.1,
    1.0,
    10.0,
    100.0,
    1_000.0,
    10_000.0,
    100_000.0,
    1_000_000.0,
];

/// The built-in buckets for a metric name, chosen by unit suffix:
/// `_seconds` → [`LATENCY_SECONDS_BUCKETS`], `_tokens` → [`TOKEN_BUCKETS`],
/// `_micros` → [`COST_MICROS_BUCKETS`], otherwise [`GENERIC_BUCKETS`].
#[must_use]
pub fn default_buckets(name: &str) -> &'static [f64] {
    if name.ends_with("_seconds") {
        LATENCY_SECONDS_BUCKETS
    } else if name.ends_with("_tokens") {
        TOKEN_BUCKETS
    } else if name.ends_with("_micros") {
        COST_MICROS_BUCKETS
    } else {
        GENERIC_BUCKETS
    }
}

// === impl RecorderConfig ===

impl RecorderConfig {
    /// The settings for `name`: the first rule setting each field wins, then
    /// the global defaults.
    #[must_use]
    pub fn rule_for(&self, name: &str) -> ResolvedRule {
        let matching = || self.metrics.iter().filter(|r| r.matcher.matches(name));
        ResolvedRule {
            buckets: matching()
                .find_map(|r| r.buckets.clone())
                .unwrap_or_else(|| default_buckets(name).to_vec()),
            exposition: matching().find_map(|r| r.exposition).unwrap_or_default(),
            cardinality_limit: matching()
                .find_map(|r| r.cardinality_limit)
                .unwrap_or(self.cardinality_limit),
        }
    }

    /// The window levels for new series of `name`.
    #[must_use]
    pub fn windows_for(&self, name: &str) -> Vec<WindowLevel> {
        self.metrics
            .iter()
            .filter(|r| r.matcher.matches(name))
            .find_map(|r| r.windows.clone())
            .unwrap_or_else(|| self.windows.clone())
    }

    /// The series limit for `name`, without resolving the other fields.
    #[must_use]
    pub fn limit_for(&self, name: &str) -> usize {
        self.metrics
            .iter()
            .filter(|r| r.matcher.matches(name))
            .find_map(|r| r.cardinality_limit)
            .unwrap_or(self.cardinality_limit)
    }
}

fn check_limit(v: &mut Validator, limit: usize, path: &str) {
    v.check(
        (1..=10_000_000).contains(&limit),
        path,
        "must be between 1 and 10000000",
    );
}

impl Validate for RecorderConfig {
    fn validate_into(&self, v: &mut Validator) {
        check_limit(v, self.cardinality_limit, "cardinality_limit");
        if let Some(t) = self.idle_timeout {
            v.check(
                t >= Duration::from_secs(1),
                "idle_timeout",
                "must be at least 1s",
            );
        }
        v.check(
            self.windows.len() <= 8,
            "windows",
            "at most 8 window levels",
        );
        v.nested("windows", &self.windows);
        v.check(
            self.summary_window >= Duration::from_millis(1),
            "summary_window",
            "must be at least 1ms",
        );
        v.check(
            !self.summary_quantiles.is_empty(),
            "summary_quantiles",
            "must not be empty",
        );
        v.nested("metrics", &self.metrics);
    }
}

impl Validate for MetricRule {
    fn validate_into(&self, v: &mut Validator) {
        let pattern = match &self.matcher {
            Matcher::Full(s) | Matcher::Prefix(s) | Matcher::Suffix(s) => s,
        };
        v.check(!pattern.is_empty(), "matcher", "pattern must not be empty");
        if let Some(b) = &self.buckets {
            v.check(
                (1..=200).contains(&b.len()),
                "buckets",
                "must have between 1 and 200 bounds",
            );
            v.check(
                b.iter().all(|x| x.is_finite()),
                "buckets",
                "bounds must be finite (+Inf is implied)",
            );
            v.check(
                b.windows(2).all(|w| w[0] < w[1]),
                "buckets",
                "bounds must be strictly increasing",
            );
        }
        if let Some(l) = self.cardinality_limit {
            check_limit(v, l, "cardinality_limit");
        }
        if let Some(w) = &self.windows {
            v.check(w.len() <= 8, "windows", "at most 8 window levels");
            v.nested("windows", w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_pick_buckets_by_unit() {
        let c = RecorderConfig::default();
        c.validate().unwrap();
        assert_eq!(
            c.rule_for("llm_latency_seconds").buckets,
            LATENCY_SECONDS_BUCKETS
        );
        assert_eq!(c.rule_for("llm_prompt_tokens").buckets, TOKEN_BUCKETS);
        assert_eq!(c.rule_for("llm_cost_micros").buckets, COST_MICROS_BUCKETS);
        assert_eq!(c.rule_for("x").exposition, Exposition::Histogram);
    }

    #[test]
    fn validation_names_the_field() {
        let c = RecorderConfig {
            cardinality_limit: 0,
            metrics: vec![MetricRule {
                matcher: Matcher::Suffix("_seconds".into()),
                buckets: Some(vec![1.0, 0.5, f64::INFINITY]),
                exposition: None,
                cardinality_limit: Some(0),
                windows: None,
            }],
            ..RecorderConfig::default()
        };
        let err = c.validate().unwrap_err();
        assert!(err.has_error_at("cardinality_limit"), "{err}");
        assert!(err.has_error_at("metrics[0].buckets"), "{err}");
        assert!(err.has_error_at("metrics[0].cardinality_limit"), "{err}");
    }

    #[test]
    fn json_schema_describes_the_config() {
        let schema = serde_json::to_string(&schemars::schema_for!(RecorderConfig)).unwrap();
        for field in [
            "cardinality_limit",
            "idle_timeout",
            "windows",
            "summary_quantiles",
            "matcher",
        ] {
            assert!(schema.contains(field), "{field} missing from {schema}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<RecorderConfig>(r#"{"cardinality": 5}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn first_matching_rule_wins_per_field() {
        let c = RecorderConfig {
            metrics: vec![
                MetricRule {
                    matcher: Matcher::Full("a_seconds".into()),
                    buckets: None,
                    exposition: Some(Exposition::Summary),
                    cardinality_limit: None,
                    windows: None,
                },
                MetricRule {
                    matcher: Matcher::Prefix("a_".into()),
                    buckets: Some(vec![1.0]),
                    exposition: Some(Exposition::Histogram),
                    cardinality_limit: Some(7),
                    windows: None,
                },
            ],
            ..RecorderConfig::default()
        };
        let r = c.rule_for("a_seconds");
        assert_eq!(r.exposition, Exposition::Summary);
        assert_eq!(r.buckets, vec![1.0]);
        assert_eq!(r.cardinality_limit, 7);
        assert_eq!(c.limit_for("b"), 1000);
    }
}
