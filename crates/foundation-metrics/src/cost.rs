//! Token and money distributions per provider, model and tenant.
//!
//! [`record_usage`] records one request's usage through the `metrics`
//! facade (so it works with any recorder), as:
//!
//! | metric | kind | labels | value |
//! |---|---|---|---|
//! | `ai_request_cost_micros` | histogram | provider, model, tenant | cost of the request in micro-units |
//! | `ai_cost_micros` (`_total`) | counter | provider, model, tenant | exact running total of micro-units |
//! | `ai_request_tokens` | histogram | provider, model, tenant, direction | tokens of the request |
//! | `ai_tokens` (`_total`) | counter | provider, model, tenant, direction | exact running total of tokens |
//!
//! Money stays integral: totals are `u64` counters of micro-units, and the
//! cost histogram records micro-units, whose sums are exact in `f64` up to
//! 2^53 micro-units (about 9 billion currency units) per window.
//! [`CostQuery`] reads it back from a [`MetricsHandle`].
//!
//! ```
//! use std::time::Duration;
//! use foundation_core::{Cost, Tokens};
//! use foundation_metrics::{MetricsRecorder, sketch::Quantile};
//! use foundation_metrics::cost::{record_usage, CostQuery, Dimension, Filter, Usage};
//!
//! let recorder = MetricsRecorder::builder().build()?;
//! metrics::with_local_recorder(&recorder, || {
//!     for (tenant, micros) in [("acme", 1_500), ("acme", 2_500), ("globex", 900)] {
//!         record_usage(&Usage {
//!             provider: "openai", model: "gpt-x", tenant,
//!             input: Tokens::new(1000), output: Tokens::new(200),
//!             cost: Cost::from_micros(micros),
//!         });
//!     }
//! });
//! let q = CostQuery::new(recorder.handle());
//! assert_eq!(q.total_cost(&Filter::all()), Cost::from_micros(4_900));
//! let top = q.top_by_spend(Dimension::Tenant, 5, Some(Duration::from_secs(3600)));
//! assert_eq!(top[0], ("acme".to_owned(), Cost::from_micros(4_000)));
//! let p99 = q.cost_quantile(&Filter::all().model("gpt-x"), Quantile::P99, None).unwrap();
//! assert!(p99 >= Cost::from_micros(2_475) && p99 <= Cost::from_micros(2_526));
//! # Ok::<(), foundation_core::ValidationErrors>(())
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_core::{Cost, Tokens};

use crate::recorder::{MetricsHandle, SeriesRef, SeriesValue};
use crate::sketch::{Quantile, Sketch};

/// Histogram of per-request cost, in micro-units.
pub const REQUEST_COST_MICROS: &str = "ai_request_cost_micros";
/// Counter of total cost, in micro-units (exposed as `ai_cost_micros_total`).
pub const COST_MICROS: &str = "ai_cost_micros";
/// Histogram of per-request tokens, with a `direction` label.
pub const REQUEST_TOKENS: &str = "ai_request_tokens";
/// Counter of total tokens, with a `direction` label (exposed as `ai_tokens_total`).
pub const TOKENS: &str = "ai_tokens";

/// One request's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage<'a> {
    /// Provider (`"openai"`).
    pub provider: &'a str,
    /// Model (`"gpt-4o-mini"`).
    pub model: &'a str,
    /// Tenant the request is billed to.
    pub tenant: &'a str,
    /// Prompt tokens.
    pub input: Tokens,
    /// Completion tokens.
    pub output: Tokens,
    /// What the request cost.
    pub cost: Cost,
}

/// Records `usage` through the `metrics` facade (see the module docs).
#[allow(
    clippy::cast_precision_loss,
    reason = "histogram values are statistics; totals are exact counters"
)]
pub fn record_usage(usage: &Usage<'_>) {
    let labels = [
        ("provider", usage.provider.to_owned()),
        ("model", usage.model.to_owned()),
        ("tenant", usage.tenant.to_owned()),
    ];
    let micros = usage.cost.as_micros();
    metrics::histogram!(REQUEST_COST_MICROS, &labels).record(micros as f64);
    metrics::counter!(COST_MICROS, &labels).increment(micros);
    for (direction, tokens) in [("input", usage.input), ("output", usage.output)] {
        let labels = [
            ("provider", usage.provider.to_owned()),
            ("model", usage.model.to_owned()),
            ("tenant", usage.tenant.to_owned()),
            ("direction", direction.to_owned()),
        ];
        metrics::histogram!(REQUEST_TOKENS, &labels).record(tokens.get() as f64);
        metrics::counter!(TOKENS, &labels).increment(tokens.get());
    }
}

/// Which series to read: `None` fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Filter {
    provider: Option<String>,
    model: Option<String>,
    tenant: Option<String>,
}

// === impl Filter ===

impl Filter {
    /// Every provider, model and tenant.
    pub fn all() -> Self {
        Self::default()
    }
    /// Only this provider.
    pub fn provider(mut self, p: impl Into<String>) -> Self {
        self.provider = Some(p.into());
        self
    }
    /// Only this model.
    pub fn model(mut self, m: impl Into<String>) -> Self {
        self.model = Some(m.into());
        self
    }
    /// Only this tenant.
    pub fn tenant(mut self, t: impl Into<String>) -> Self {
        self.tenant = Some(t.into());
        self
    }

    fn matches(&self, s: &SeriesRef) -> bool {
        let ok =
            |want: &Option<String>, key| want.as_deref().is_none_or(|w| s.label(key) == Some(w));
        ok(&self.provider, "provider") && ok(&self.model, "model") && ok(&self.tenant, "tenant")
    }
}

/// A label to group spend by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// By provider.
    Provider,
    /// By model.
    Model,
    /// By tenant.
    Tenant,
}

impl Dimension {
    fn label(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Model => "model",
            Self::Tenant => "tenant",
        }
    }
}

/// Direction of tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Prompt tokens.
    Input,
    /// Completion tokens.
    Output,
}

/// Reads cost and token figures back from a [`MetricsHandle`].
#[derive(Debug, Clone)]
pub struct CostQuery {
    handle: MetricsHandle,
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "micro-unit sums are non-negative integers well inside f64's exact range"
)]
fn micros(v: f64) -> Cost {
    Cost::from_micros(v.max(0.0).round() as u64)
}

// === impl CostQuery ===

impl CostQuery {
    /// Queries over `handle`.
    #[must_use]
    pub fn new(handle: MetricsHandle) -> Self {
        Self { handle }
    }

    /// Exact total spend since start of the matching series.
    #[must_use]
    pub fn total_cost(&self, filter: &Filter) -> Cost {
        self.handle
            .series(COST_MICROS)
            .iter()
            .filter(|s| filter.matches(s))
            .filter_map(|s| match s.value {
                SeriesValue::Counter(v) => Some(Cost::from_micros(v)),
                _ => None,
            })
            .sum()
    }

    /// Exact total tokens since start (both directions when `None`).
    #[must_use]
    pub fn total_tokens(&self, filter: &Filter, direction: Option<Direction>) -> Tokens {
        let dir = direction.map(|d| match d {
            Direction::Input => "input",
            Direction::Output => "output",
        });
        self.handle
            .series(TOKENS)
            .iter()
            .filter(|s| filter.matches(s) && dir.is_none_or(|d| s.label("direction") == Some(d)))
            .filter_map(|s| match s.value {
                SeriesValue::Counter(v) => Some(Tokens::new(v)),
                _ => None,
            })
            .sum()
    }

    /// The per-request cost distribution (micro-units) of the matching
    /// series, merged, since start or over about the last `window`.
    #[must_use]
    pub fn cost_per_request(&self, filter: &Filter, window: Option<Duration>) -> Sketch {
        let mut merged = Sketch::new();
        for s in self
            .handle
            .series(REQUEST_COST_MICROS)
            .iter()
            .filter(|s| filter.matches(s))
        {
            if let SeriesValue::Histogram(h) = &s.value {
                match window {
                    Some(d) => merged.merge(&h.window(d).sketch),
                    None => merged.merge(&h.snapshot()),
                }
            }
        }
        merged
    }

    /// Quantile `q` of the per-request cost ("p99 cost per request for
    /// model X this hour"), within the sketch's 1%. `None` without requests.
    #[must_use]
    pub fn cost_quantile(
        &self,
        filter: &Filter,
        q: Quantile,
        window: Option<Duration>,
    ) -> Option<Cost> {
        self.cost_per_request(filter, window)
            .quantile(q)
            .map(micros)
    }

    /// Spend per value of `dim`, largest first. Since start it is exact
    /// (counters); over a window it is the sum of the per-request costs
    /// recorded in it.
    #[must_use]
    pub fn spend_by(&self, dim: Dimension, window: Option<Duration>) -> Vec<(String, Cost)> {
        let mut by: BTreeMap<String, Cost> = BTreeMap::new();
        let key = dim.label();
        match window {
            None => {
                for s in self.handle.series(COST_MICROS) {
                    if let (Some(k), SeriesValue::Counter(v)) = (s.label(key), &s.value) {
                        let e = by.entry(k.to_owned()).or_default();
                        *e = e.saturating_add(Cost::from_micros(*v));
                    }
                }
            }
            Some(d) => {
                for s in self.handle.series(REQUEST_COST_MICROS) {
                    if let (Some(k), SeriesValue::Histogram(h)) = (s.label(key), &s.value) {
                        let e = by.entry(k.to_owned()).or_default();
                        *e = e.saturating_add(micros(h.window(d).sketch.sum()));
                    }
                }
            }
        }
        let mut v: Vec<_> = by.into_iter().filter(|(_, c)| *c > Cost::ZERO).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// The `n` largest spenders by `dim` ("top 5 tenants by spend").
    #[must_use]
    pub fn top_by_spend(
        &self,
        dim: Dimension,
        n: usize,
        window: Option<Duration>,
    ) -> Vec<(String, Cost)> {
        let mut v = self.spend_by(dim, window);
        v.truncate(n);
        v
    }
}
