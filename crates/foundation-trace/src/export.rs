//! Export of finished traces: JSON, OpenTelemetry GenAI attribute names, and
//! the [`TraceSink`] hook.
//!
//! Every [`Trace`] serializes to the export JSON. Operations and steps that
//! describe an AI call (they carry a `model`, `provider` or `gen_ai.*` field)
//! have their attributes renamed to the OpenTelemetry GenAI semantic
//! conventions, so `model = "gpt-4o"` exports as `gen_ai.request.model` and
//! `input_tokens = 12` as `gen_ai.usage.input_tokens`. Fields already named
//! `gen_ai.*` pass through unchanged; unrelated fields keep their names.
//!
//! | field | exported as |
//! |---|---|
//! | `operation`, `ai_operation` | `gen_ai.operation.name` |
//! | `provider`, `provider_name`, `system` | `gen_ai.provider.name` |
//! | `model`, `request_model` | `gen_ai.request.model` |
//! | `response_model` | `gen_ai.response.model` |
//! | `input_tokens`, `prompt_tokens` | `gen_ai.usage.input_tokens` |
//! | `output_tokens`, `completion_tokens` | `gen_ai.usage.output_tokens` |
//! | `max_tokens` | `gen_ai.request.max_tokens` |
//! | `temperature` | `gen_ai.request.temperature` |
//! | `top_p` | `gen_ai.request.top_p` |
//! | `finish_reason`, `finish_reasons` | `gen_ai.response.finish_reasons` |
//! | `response_id` | `gen_ai.response.id` |
//! | `conversation_id` | `gen_ai.conversation.id` |
//! | `tool`, `tool_name` | `gen_ai.tool.name` |
//! | `tool_call_id` | `gen_ai.tool.call.id` |
//! | `error_type` | `error.type` |

use std::sync::Arc;

use crate::trace::Trace;
use crate::value::Fields;

/// Receives every finished trace that the retention policy keeps.
///
/// Called on the thread that closed the root span, so implementations must be
/// quick and must not block. Operations the sink itself runs (spans it opens,
/// events it logs) are not recorded, so a sink may log through `tracing`.
/// Push into a bounded channel or write to a buffered writer; a sink that
/// falls behind should drop and count, never grow.
///
/// ```
/// use std::sync::Arc;
/// use foundation_trace::{Trace, TraceSink};
///
/// #[derive(Debug)]
/// struct JsonLines(std::sync::Mutex<Vec<String>>);
///
/// impl TraceSink for JsonLines {
///     fn on_trace(&self, trace: &Arc<Trace>) {
///         let line = serde_json::to_string(&**trace).unwrap_or_default();
///         if let Ok(mut out) = self.0.lock() {
///             if out.len() < 1000 { out.push(line) }
///         }
///     }
/// }
/// ```
pub trait TraceSink: std::fmt::Debug + Send + Sync + 'static {
    /// A finished trace was kept.
    fn on_trace(&self, trace: &Arc<Trace>);
}

impl<T: TraceSink + ?Sized> TraceSink for Arc<T> {
    fn on_trace(&self, trace: &Arc<Trace>) {
        (**self).on_trace(trace);
    }
}

/// The OpenTelemetry GenAI name for a field of an AI operation or step.
#[must_use]
pub fn ai_name(field: &str) -> Option<&'static str> {
    Some(match field {
        "operation" | "ai_operation" => "gen_ai.operation.name",
        "provider" | "provider_name" | "system" => "gen_ai.provider.name",
        "model" | "request_model" => "gen_ai.request.model",
        "response_model" => "gen_ai.response.model",
        "input_tokens" | "prompt_tokens" => "gen_ai.usage.input_tokens",
        "output_tokens" | "completion_tokens" => "gen_ai.usage.output_tokens",
        "max_tokens" => "gen_ai.request.max_tokens",
        "temperature" => "gen_ai.request.temperature",
        "top_p" => "gen_ai.request.top_p",
        "finish_reason" | "finish_reasons" => "gen_ai.response.finish_reasons",
        "response_id" => "gen_ai.response.id",
        "conversation_id" => "gen_ai.conversation.id",
        "tool" | "tool_name" => "gen_ai.tool.name",
        "tool_call_id" => "gen_ai.tool.call.id",
        "error_type" => "error.type",
        _ => return None,
    })
}

/// Whether these fields describe an AI call.
pub(crate) fn is_ai(fields: &Fields) -> bool {
    fields.iter().any(|(k, _)| {
        k.starts_with("gen_ai.")
            || matches!(
                &**k,
                "model" | "request_model" | "provider" | "provider_name"
            )
    })
}

/// Exports traces as one JSON array.
#[must_use]
pub fn to_json_array(traces: &[Arc<Trace>]) -> serde_json::Value {
    serde_json::Value::Array(traces.iter().map(|t| t.to_json()).collect())
}

/// Writes traces as JSON lines (one trace per line).
///
/// # Errors
/// The writer's error.
pub fn write_json_lines<W: std::io::Write>(
    mut out: W,
    traces: &[Arc<Trace>],
) -> std::io::Result<()> {
    for t in traces {
        serde_json::to_writer(&mut out, &**t)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;
    use std::borrow::Cow;

    #[test]
    fn ai_fields_get_genai_names() {
        assert_eq!(ai_name("model"), Some("gen_ai.request.model"));
        assert_eq!(ai_name("input_tokens"), Some("gen_ai.usage.input_tokens"));
        assert_eq!(ai_name("user_id"), None);
        let fields: Fields = vec![(Cow::Borrowed("model"), Value::Str("m".into()))].into();
        assert!(is_ai(&fields));
        let fields: Fields = vec![(Cow::Borrowed("user"), Value::U64(1))].into();
        assert!(!is_ai(&fields));
    }
}
