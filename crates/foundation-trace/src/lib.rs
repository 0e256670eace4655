//! Step-by-step execution traces on top of `tracing`, attached to the errors
//! they explain.
//!
//! When a multi-step AI workflow fails (prompt built, model called, output
//! parsed, tool invoked, …), a bare error says nothing about how it got
//! there. This crate records what each operation and step did (names,
//! timings, the intermediate data that matters) and attaches that history to
//! the error, so the failure explains itself.
//!
//! - **Built on `tracing`.** Operations are spans, steps are events. A
//!   [`TraceLayer`] records them, so code instrumented with plain `tracing`
//!   (`#[instrument]`, `info_span!`, `event!`) is traced without this crate's
//!   API. [`step!`] and [`measure_step`] are shorthands on top.
//! - **One trace per root operation**, kept across `.await`, instrumented
//!   spawned tasks and threads (spans carry their parents), with a
//!   correlation id from the root span's `correlation_id` field or generated.
//! - **Captured data is safe and bounded**: fields are JSON-compatible
//!   [`Value`]s, redacted at capture time (on by default: `api_key`,
//!   `authorization`, `password`, `token`, … plus your patterns), truncated
//!   with a marker past the per-value and per-trace limits.
//! - **Errors carry their history**: [`TracedError`] snapshots the trace up
//!   to the failure, renders it with `Display`, serializes it, keeps the
//!   source error and its [`Classify`](foundation_core::Classify) kind.
//! - **Bounded memory**: finished traces go to a [`TraceStore`] that keeps
//!   the last N failed and successful traces, sampling successes; head
//!   sampling ([`TraceConfig::sample_rate`]) makes skipped operations nearly
//!   free.
//! - **Export**: traces serialize to JSON with OpenTelemetry GenAI attribute
//!   names for AI steps ([`export`]); a [`TraceSink`] sees each kept trace.
//!
//! ```
//! use foundation_core::{Classified, ErrorKind};
//! use foundation_trace::{TraceConfig, TraceLayer, TracedError, RetentionConfig, step};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! #[tracing::instrument(skip(prompt))]
//! fn call_model(model: &str, prompt: &str) -> Result<String, TracedError<Classified>> {
//!     tracing::info!(input_tokens = 812u64, api_key = "sk-live-123", "request sent");
//!     Err(TracedError::new(Classified::new(ErrorKind::Transient, "provider answered 503")))
//! }
//!
//! let layer = TraceLayer::new(
//!     TraceConfig::default().with_retention(RetentionConfig::failed_only(100)),
//! )?;
//! let traces = layer.handle();
//! let subscriber = tracing_subscriber::registry().with(layer);
//!
//! let err = tracing::subscriber::with_default(subscriber, || {
//!     let _request = tracing::info_span!("chat", correlation_id = "req-7").entered();
//!     step!("prompt built", chars = 1830);
//!     call_model("gpt-4o-mini", "hello").unwrap_err()
//! });
//!
//! // The error explains itself, and knows it is worth retrying ...
//! let rendered = err.to_string();
//! assert!(rendered.contains("prompt built") && rendered.contains("request sent"));
//! assert!(!rendered.contains("sk-live-123")); // redacted at capture time
//! assert!(foundation_core::Classify::kind(&err).is_retryable());
//! // ... and the failed trace was kept.
//! assert_eq!(traces.store().find("req-7").unwrap().name(), "chat");
//! # Ok::<(), foundation_core::ValidationErrors>(())
//! ```
//!
//! # Running next to `tracing-opentelemetry`
//!
//! Add both layers to the same registry:
//! `registry().with(TraceLayer::new(config)?).with(tracing_opentelemetry::layer())`.
//! Each keeps its per-span data to itself (`OtelData` in span extensions
//! there, a map from span id to record in the layer here), so neither sees or
//! alters the other's. Both read `otel.name` for dynamic span names and
//! `otel.status_code` for failure, and this crate's export uses the same
//! GenAI attribute names, so an operation looks alike in both.
//!
//! # Feature flags
//!
//! - `schemars`: `JsonSchema` for [`TraceConfig`] and its parts.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod capture;
pub mod config;
mod error;
pub mod export;
mod layer;
mod recording;
mod redact;
mod spans;
mod spare;
mod step;
mod store;
mod trace;
mod value;

pub use config::{LimitsConfig, RedactionConfig, RetentionConfig, TraceConfig};
pub use error::{InCurrentTrace, TraceResultExt, TracedError, trace_of};
pub use export::TraceSink;
pub use layer::{
    CORRELATION_ID_FIELD, OTEL_NAME_FIELD, STEP_DATA_FIELD, STEP_NAME_FIELD, TraceHandle,
    TraceLayer, TraceLayerBuilder, current_correlation_id,
};
pub use redact::REDACTED;
pub use step::{measure, measure_step};
pub use store::{StoreStats, TraceStore};
pub use trace::{Dropped, Operation, Step, Trace, TraceId, TraceStatus};
pub use value::{Fields, Text, Value};

#[doc(hidden)]
pub mod __private {
    pub use tracing;
}
