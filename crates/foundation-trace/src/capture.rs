//! Field capture: the values of a span or event, redacted and capped per
//! value, collected into a per-thread reused buffer.

use std::borrow::Cow;
use std::fmt;

use tracing::Metadata;
use tracing::field::{Field, Visit};

use crate::layer::{
    CORRELATION_ID_FIELD, OTEL_NAME_FIELD, STEP_DATA_FIELD, STEP_NAME_FIELD, Settings,
};
use crate::redact::{FieldMask, Redactor};
use crate::value::{Entry, Text, Value, cut};

thread_local! {
    /// A field buffer reused by every capture on this thread (a capture
    /// nested inside another one, from a `Debug` impl that logs, finds it
    /// taken and starts its own).
    static SCRATCH: std::cell::Cell<Vec<Entry>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The fields of one span or event while it is captured.
pub(crate) struct Scratch(Vec<Entry>);

impl Scratch {
    pub(crate) fn new() -> Self {
        Self(SCRATCH.try_with(std::cell::Cell::take).unwrap_or_default())
    }

    pub(crate) fn push(&mut self, field: Entry) {
        self.0.push(field);
    }

    /// Moves the fields, in order, to the end of `out`.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<Entry>) {
        out.append(&mut self.0);
    }

    /// The fields as a vector (no allocation when there are none).
    pub(crate) fn take_vec(&mut self) -> Vec<Entry> {
        if self.0.is_empty() {
            Vec::new()
        } else {
            self.0.drain(..).collect()
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.0);
        if v.capacity() <= 64 {
            v.clear();
            let _ = SCRATCH.try_with(|s| s.set(v));
        }
    }
}

/// Collects the fields of a span or event, redacted and capped per value.
pub(crate) struct Capture<'a> {
    pub(crate) redactor: &'a Redactor,
    /// Which fields of the callsite being recorded are secrets.
    pub(crate) mask: FieldMask,
    pub(crate) max_value: usize,
    pub(crate) fields: Scratch,
    pub(crate) message: Option<Text>,
    pub(crate) step_name: Option<Text>,
    pub(crate) otel_name: Option<Text>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) error: bool,
}

impl<'a> Capture<'a> {
    pub(crate) fn new(settings: &'a Settings) -> Self {
        Self {
            redactor: &settings.redactor,
            mask: FieldMask::default(),
            max_value: settings.config.limits.max_value_bytes,
            fields: Scratch::new(),
            message: None,
            step_name: None,
            otel_name: None,
            correlation_id: None,
            error: false,
        }
    }

    /// Takes the secret field names of `meta`'s callsite from the
    /// redactor's per-callsite cache.
    pub(crate) fn at(&mut self, meta: &'static Metadata<'static>) {
        if !meta.fields().is_empty() {
            self.mask = self.redactor.callsite_mask(meta);
        }
    }

    fn is_secret(&self, field: &Field) -> bool {
        self.redactor.is_sensitive_field(&self.mask, field)
    }

    pub(crate) fn text(&self, s: &str) -> Value {
        let clean = self.redactor.scrub_text(s);
        let s = clean.as_deref().unwrap_or(s);
        if s.len() > self.max_value {
            Value::Truncated {
                head: cut(s, self.max_value).to_owned(),
                original_bytes: s.len(),
            }
        } else {
            Value::Str(Text::new(s))
        }
    }

    /// A step or operation name: redacted and cut like a value.
    pub(crate) fn label(&self, s: &str) -> Text {
        let clean = self.redactor.scrub_text(s);
        Text::new(cut(clean.as_deref().unwrap_or(s), self.max_value))
    }

    fn json(&self, s: &str) -> Value {
        if s.len() > self.max_value {
            return self.text(s);
        }
        match serde_json::from_str::<serde_json::Value>(s) {
            Ok(mut v) => {
                self.redactor.scrub_json(&mut v);
                Value::Json(v)
            }
            Err(_) => self.text(s),
        }
    }

    pub(crate) fn push(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let value = if self.is_secret(field) {
            Value::Redacted
        } else {
            value
        };
        if name == "error" {
            self.error = true;
        }
        self.fields.push((Cow::Borrowed(name), value));
    }

    fn push_text(&mut self, field: &Field, s: &str) {
        let name = field.name();
        if self.is_secret(field) {
            self.fields.push((Cow::Borrowed(name), Value::Redacted));
            return;
        }
        if !matches!(
            name,
            "message" | STEP_NAME_FIELD | OTEL_NAME_FIELD | CORRELATION_ID_FIELD | STEP_DATA_FIELD
        ) && name != "otel.status_code"
            && name != "error"
        {
            // The common case: plain text, already known not to be secret.
            let v = self.text(s);
            self.fields.push((Cow::Borrowed(name), v));
            return;
        }
        match name {
            "message" => {
                self.message = Some(match self.text(s) {
                    Value::Str(s) => s,
                    Value::Truncated { head, .. } => format!("{head}...[truncated]").into(),
                    _ => Text::default(),
                });
            }
            STEP_NAME_FIELD => self.step_name = Some(self.label(s)),
            OTEL_NAME_FIELD => self.otel_name = Some(self.label(s)),
            CORRELATION_ID_FIELD => {
                self.correlation_id = Some(cut(s, self.max_value).to_owned());
                let v = self.text(s);
                self.push(field, v);
            }
            "otel.status_code" => {
                self.error |= s.eq_ignore_ascii_case("error");
                let v = self.text(s);
                self.push(field, v);
            }
            STEP_DATA_FIELD => match self.json(s) {
                // An object's keys become fields of their own, so they read
                // (and export, with GenAI names) like any other field.
                Value::Json(serde_json::Value::Object(map)) => {
                    for (k, v) in map {
                        let v = match v {
                            _ if self.redactor.is_sensitive_name(&k) => Value::Redacted,
                            serde_json::Value::Bool(b) => Value::Bool(b),
                            serde_json::Value::String(s) => Value::Str(s.into()),
                            serde_json::Value::Number(n) => n
                                .as_u64()
                                .map(Value::U64)
                                .or_else(|| n.as_i64().map(Value::I64))
                                .or_else(|| n.as_f64().map(Value::F64))
                                .unwrap_or(Value::Json(serde_json::Value::Number(n))),
                            other => Value::Json(other),
                        };
                        self.fields.push((Cow::Owned(k), v));
                    }
                }
                v => self.push(field, v),
            },
            _ => {
                let v = self.text(s);
                self.push(field, v);
            }
        }
    }
}

impl Visit for Capture<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::U64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push_text(field, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push_text(field, &value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.is_secret(field) {
            self.push(field, Value::Redacted);
            return;
        }
        self.push_text(field, &format!("{value:?}"));
    }
}
