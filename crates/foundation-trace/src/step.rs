//! Ergonomic helpers on top of plain `tracing`: named steps and measured
//! async steps.
//!
//! They are shorthands, not a parallel system: [`step!`](crate::step) is an
//! `info!` event with a `step` field, and [`measure_step`] instruments a
//! future with a `step` span named through `otel.name` (the same field
//! `tracing-opentelemetry` uses), so any subscriber sees them.

use std::fmt::Display;
use std::future::Future;

use serde::Serialize;
use tracing::Instrument;

/// Records a named step (an `INFO` event with a `step` field) with optional
/// fields, in the current operation.
///
/// ```
/// # let prompt = "hello";
/// foundation_trace::step!("prompt built", chars = prompt.len(), template = "qa");
/// foundation_trace::step!("cache miss");
/// ```
#[macro_export]
macro_rules! step {
    ($name:expr $(,)?) => {
        $crate::__private::tracing::info!(step = $name)
    };
    ($name:expr, $($fields:tt)+) => {
        $crate::__private::tracing::info!(step = $name, $($fields)+)
    };
}

/// Runs `fut` as a step named `name` with structured `data`, recording its
/// duration and, if it fails, the error as the failing step.
///
/// The step is a child span of the current operation named `step` with
/// `otel.name = name` and a `step.data` field holding `data` as JSON; the
/// [`TraceLayer`](crate::TraceLayer) keeps that JSON as structured data
/// (redacted by key, size-capped). On `Err`, an `ERROR` event with the error
/// is recorded inside the step.
///
/// ```
/// use foundation_trace::measure_step;
/// use serde_json::json;
///
/// # async fn call_model(p: &str) -> Result<String, std::io::Error> { Ok(p.to_owned()) }
/// # async fn run() -> Result<(), std::io::Error> {
/// let answer = measure_step(
///     "call model",
///     json!({ "model": "gpt-4o-mini", "input_tokens": 812 }),
///     call_model("hello"),
/// )
/// .await?;
/// # Ok(()) }
/// ```
pub async fn measure_step<F, T, E, D>(name: &str, data: D, fut: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: Display,
    D: Serialize,
{
    let data = serde_json::to_string(&data).unwrap_or_default();
    let span = tracing::info_span!("step", otel.name = name, step.data = data.as_str());
    let out = fut.instrument(span.clone()).await;
    if let Err(e) = &out {
        span.in_scope(|| tracing::error!(error = %e, "step failed"));
    }
    out
}

/// Runs `fut` as a step named `name`, recording its duration.
pub async fn measure<F: Future>(name: &str, fut: F) -> F::Output {
    fut.instrument(tracing::info_span!("step", otel.name = name))
        .await
}
