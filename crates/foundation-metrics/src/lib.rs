//! Accurate distributions for the `metrics` facade: latency, tokens and cost
//! per label set, in-process and in Prometheus, and alarms when a
//! distribution drifts from its baseline.
//!
//! Libraries record through the facade (`metrics::histogram!`,
//! `metrics::counter!`); the application installs a [`MetricsRecorder`]
//! from this crate and gets:
//!
//! - [`sketch`]: a lock-free, mergeable relative-error sketch; every quantile
//!   is within 1% of the exact sample at that rank, in bounded memory per
//!   series whatever the sample count.
//! - [`window`]: quantiles over the last minute, five minutes or hour, from a
//!   bounded ring of interval sketches (no raw samples).
//! - [`MetricsRecorder`]: label sets with a cardinality limit per metric
//!   (excess folded into an `overflow="true"` series or rejected, with a
//!   warning and a counter) and idle-series expiry.
//! - [`prometheus`]: text exposition as real, aggregatable histograms by
//!   default (per-metric buckets, unit-aware defaults), summaries on request,
//!   and (feature `exporter`) an HTTP `/metrics` endpoint with upkeep.
//! - [`MetricsHandle`]: in-process queries (`snapshot`, `window`, series
//!   iteration, held [`HistogramRef`]s for routing decisions).
//! - [`cost`]: token and money (integer micro-units) tracking per
//!   provider/model/tenant: "p99 cost per request for model X this hour",
//!   "top 5 tenants by spend".
//! - [`baseline`]: save a distribution, compare a window to it (quantile
//!   ratios and a two-sample Kolmogorov–Smirnov test), report regressions.
//!
//! ```
//! use std::time::Duration;
//! use foundation_metrics::{MetricsRecorder, sketch::Quantile};
//!
//! let recorder = MetricsRecorder::builder().build()?;
//! let handle = recorder.handle();
//! metrics::with_local_recorder(&recorder, || {
//!     for ms in 1..=1000 {
//!         metrics::histogram!("llm_latency_seconds", "model" => "small").record(f64::from(ms) / 1e3);
//!     }
//! });
//! let latency = handle.histogram("llm_latency_seconds", &[("model", "small")]).unwrap();
//! let p99 = latency.quantile(Quantile::P99).unwrap();
//! assert!((p99 - 0.99).abs() <= 0.0099);
//! assert_eq!(latency.window(Duration::from_secs(60)).sketch.count(), 1000);
//! assert!(handle.render().contains("llm_latency_seconds_bucket{model=\"small\",le=\"1\"} 1000"));
//! # Ok::<(), foundation_core::ValidationErrors>(())
//! ```
//!
//! # Feature flags
//!
//! - `exporter`: the HTTP `/metrics` exporter and its upkeep task (tokio
//!   `net`); everything else works without it.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod baseline;
pub mod config;
pub mod cost;
mod error;
#[cfg(feature = "exporter")]
#[cfg_attr(docsrs, doc(cfg(feature = "exporter")))]
pub mod exporter;
pub mod prometheus;
mod recorder;
pub mod sketch;
pub mod window;

pub use error::Error;
pub use recorder::{
    HistogramRef, MetricKind, MetricsHandle, MetricsRecorder, OVERFLOW_LABEL, RecorderBuilder,
    SeriesRef, SeriesValue, UpkeepReport,
};
