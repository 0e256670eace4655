//! Field capture: the values of a span or event, redacted and capped per
//! value, collected into a per-thread reused buffer.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::mem::ManuallyDrop;

use tracing::Metadata;
use tracing::field::{Field, Visit};

use crate::layer::{
    CORRELATION_ID_FIELD, OTEL_NAME_FIELD, STEP_DATA_FIELD, STEP_NAME_FIELD, Settings,
};
use crate::redact::{FieldMask, Redactor};
use crate::value::{Entry, TEXT_INLINE, Text, Value, cut};

thread_local! {
    /// A field buffer reused by every capture on this thread (a capture
    /// nested inside another one, from a `Debug` impl that logs, finds it
    /// taken and starts its own).
    static SCRATCH: Cell<Vec<Entry>> = const { Cell::new(Vec::new()) };
}

thread_local! {
    /// A buffer reused to format `Debug` and `Display` values (a value that
    /// logs while it is formatted finds it taken and uses its own).
    static FORMAT: Cell<String> = const { Cell::new(String::new()) };
}

/// The largest formatting buffer kept for the next value, in bytes.
const MAX_KEPT_FORMAT: usize = 4096;

/// An entry to overwrite in place.
const BLANK_ENTRY: Entry = (Cow::Borrowed(""), Value::Bool(false));
/// A text entry to fill in place.
const BLANK_TEXT_ENTRY: Entry = (Cow::Borrowed(""), Value::Str(Text::inline_empty()));

/// The fields of one span or event while it is captured.
///
/// The vector is taken from, and given back to, a per-thread slot; it is
/// only ever dropped through [`Drop`] for `Scratch` (the `ManuallyDrop` spares
/// the drop glue of the vector left empty behind).
pub(crate) struct Scratch(ManuallyDrop<Vec<Entry>>);

impl Scratch {
    #[inline]
    pub(crate) fn new() -> Self {
        Self(ManuallyDrop::new(
            SCRATCH.try_with(Cell::take).unwrap_or_default(),
        ))
    }

    /// A buffer that is `v`: fields are appended after what it holds.
    #[inline]
    pub(crate) fn from_vec(v: Vec<Entry>) -> Self {
        Self(ManuallyDrop::new(v))
    }

    /// The buffer with the fields (nothing goes back to the thread's slot).
    #[inline]
    pub(crate) fn into_vec(mut self) -> Vec<Entry> {
        std::mem::take(&mut *self.0)
    }

    #[inline]
    pub(crate) fn push(&mut self, field: Entry) {
        self.0.push(field);
    }

    /// The field pushed last.
    #[inline]
    fn last_mut(&mut self) -> Option<&mut Entry> {
        self.0.last_mut()
    }

    /// Moves the fields, in order, to the end of `out`.
    #[inline]
    pub(crate) fn drain_into(&mut self, out: &mut Vec<Entry>) {
        out.append(&mut self.0);
    }

    /// The fields as a vector (no allocation when there are none).
    pub(crate) fn take_vec(&mut self) -> Vec<Entry> {
        if self.0.is_empty() {
            Vec::new()
        } else {
            let mut v = Vec::with_capacity(self.0.len());
            v.append(&mut self.0);
            v
        }
    }
}

impl Drop for Scratch {
    #[inline]
    fn drop(&mut self) {
        let v = std::mem::take(&mut *self.0);
        if v.capacity() != 0 {
            give_back(v);
        }
    }
}

/// Gives a field buffer back to this thread for the next capture (a large
/// one is freed instead).
#[inline(never)]
fn give_back(v: Vec<Entry>) {
    if !v.is_empty() || v.capacity() > 64 {
        return give_back_full(v);
    }
    if let Ok(old) = SCRATCH.try_with(|s| s.replace(v)) {
        // Normally the empty vector `Scratch::new` left behind.
        if old.capacity() == 0 {
            std::mem::forget(old);
        } else {
            free(old);
        }
    }
}

/// [`give_back`] for a buffer that still holds fields or is large.
#[cold]
#[inline(never)]
fn give_back_full(mut v: Vec<Entry>) {
    if v.capacity() <= 64 {
        v.clear();
        if let Ok(old) = SCRATCH.try_with(|s| s.replace(v)) {
            free(old);
        }
    }
}

#[cold]
#[inline(never)]
fn free(v: Vec<Entry>) {
    drop(v);
}

/// Whether a field with this name is handled apart from plain values (the
/// message, step and operation names, correlation id, step data, status and
/// error flags). Cached per callsite with the secret fields.
pub(crate) fn is_special_field(name: &str) -> bool {
    matches!(
        name,
        "message"
            | STEP_NAME_FIELD
            | OTEL_NAME_FIELD
            | CORRELATION_ID_FIELD
            | STEP_DATA_FIELD
            | "otel.status_code"
            | "error"
    )
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
    #[inline]
    pub(crate) fn new(settings: &'a Settings) -> Self {
        Self::with_fields(settings, Scratch::new())
    }

    /// A capture appending to `fields`.
    #[inline]
    pub(crate) fn with_fields(settings: &'a Settings, fields: Scratch) -> Self {
        Self {
            redactor: &settings.redactor,
            mask: FieldMask::default(),
            max_value: settings.config.limits.max_value_bytes,
            fields,
            message: None,
            step_name: None,
            otel_name: None,
            correlation_id: None,
            error: false,
        }
    }

    /// A step's name: its `step` field, else its message, else the
    /// callsite's name.
    #[inline]
    pub(crate) fn step_name(&mut self, meta: &'static Metadata<'static>) -> Text {
        match (self.message.take(), self.step_name.take()) {
            (_, Some(step)) => step,
            (Some(msg), None) => msg,
            (None, None) => Text::from_static(meta.name()),
        }
    }

    /// Takes the secret field names of `meta`'s callsite from the
    /// redactor's per-callsite cache.
    #[inline]
    pub(crate) fn at(&mut self, meta: &'static Metadata<'static>) {
        if !meta.fields().is_empty() {
            self.mask = self.redactor.callsite_mask(meta);
        }
    }

    fn is_secret(&self, field: &Field) -> bool {
        self.redactor.is_sensitive_field(&self.mask, field)
    }

    #[inline(always)]
    pub(crate) fn text(&self, s: &str) -> Value {
        if s.len() <= self.max_value && self.redactor.leaves(s) {
            // The common case: short text with nothing to scrub.
            return Value::Str(Text::new(s));
        }
        self.text_slow(s)
    }

    /// [`text`](Self::text) for text to scrub or cut.
    #[inline(never)]
    fn text_slow(&self, s: &str) -> Value {
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

    /// Pushes a scalar value: as is when the callsite's masks say the field
    /// is plain, through [`push`](Self::push) otherwise.
    #[inline(always)]
    fn push_scalar<T>(&mut self, field: &Field, value: T, make: fn(T) -> Value) {
        if self.mask.is_plain(field) {
            // Pushed as a constant and filled in place: an entry built on
            // the stack and moved is read back wider than it was written,
            // which stalls the store buffer.
            self.fields.push(BLANK_ENTRY);
            if let Some(e) = self.fields.last_mut() {
                e.0 = Cow::Borrowed(field.name());
                e.1 = make(value);
            }
        } else {
            self.push(field, make(value));
        }
    }

    #[inline(never)]
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

    /// Pushes a text value: plain fields inline, the rest through
    /// [`push_flagged`](Self::push_flagged).
    #[inline(always)]
    fn push_text(&mut self, field: &Field, s: &str) {
        if self.mask.is_plain(field) {
            if s.len() <= TEXT_INLINE && s.len() <= self.max_value && self.redactor.leaves(s) {
                // Short plain text: the entry is pushed first and its bytes
                // written in place (a text value built on the stack and
                // then moved is read back wider than it was written, which
                // stalls the store buffer).
                self.fields.push(BLANK_TEXT_ENTRY);
                if let Some((name, Value::Str(t))) = self.fields.last_mut() {
                    *name = Cow::Borrowed(field.name());
                    t.fill_inline(s);
                }
                return;
            }
            let v = self.text(s);
            self.fields.push((Cow::Borrowed(field.name()), v));
        } else {
            self.push_flagged(field, s);
        }
    }

    /// Pushes a formatted value as text, formatted into a per-thread reused
    /// buffer (a formatting error keeps what was written).
    fn push_formatted(&mut self, field: &Field, args: fmt::Arguments<'_>) {
        let mut buf = FORMAT.try_with(Cell::take).unwrap_or_default();
        buf.clear();
        let _ = fmt::write(&mut buf, args);
        self.push_text(field, &buf);
        if buf.capacity() <= MAX_KEPT_FORMAT {
            let _ = FORMAT.try_with(|f| f.set(buf));
        }
    }

    /// Pushes a text value that may be secret or special.
    #[inline(never)]
    fn push_flagged(&mut self, field: &Field, s: &str) {
        let name = field.name();
        if self.is_secret(field) {
            self.fields.push((Cow::Borrowed(name), Value::Redacted));
            return;
        }
        if !is_special_field(name) {
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
        self.push_scalar(field, value, Value::F64);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push_scalar(field, value, Value::I64);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push_scalar(field, value, Value::U64);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push_scalar(field, value, Value::Bool);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push_text(field, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push_formatted(field, format_args!("{value}"));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.is_secret(field) {
            self.push(field, Value::Redacted);
            return;
        }
        self.push_formatted(field, format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Subscriber};

    use super::*;
    use crate::config::{RedactionConfig, TraceConfig};

    /// What one capture produced, comparable.
    #[derive(Debug, PartialEq)]
    struct Out {
        fields: Vec<Entry>,
        message: Option<String>,
        step_name: Option<String>,
        otel_name: Option<String>,
        correlation_id: Option<String>,
        error: bool,
    }

    /// Captures every event twice: with its callsite's masks (the fast
    /// paths) and without (every field decided by name).
    struct Both {
        settings: Settings,
        out: Mutex<Vec<(Out, Out)>>,
    }

    fn out(mut c: Capture<'_>) -> Out {
        Out {
            fields: c.fields.take_vec(),
            message: c.message.take().map(String::from),
            step_name: c.step_name.take().map(String::from),
            otel_name: c.otel_name.take().map(String::from),
            correlation_id: c.correlation_id.take(),
            error: c.error,
        }
    }

    impl Subscriber for Both {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fast = Capture::new(&self.settings);
            fast.at(event.metadata());
            event.record(&mut fast);
            let mut slow = Capture::new(&self.settings);
            event.record(&mut slow);
            self.out.lock().unwrap().push((out(fast), out(slow)));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    fn captured(redaction: RedactionConfig, max_value: usize) -> Vec<(Out, Out)> {
        let mut config = TraceConfig::default();
        config.limits.max_value_bytes = max_value;
        let settings = Settings {
            redactor: Redactor::new(&redaction),
            config: config.clone(),
        };
        let sub = std::sync::Arc::new(Both {
            settings,
            out: Mutex::new(Vec::new()),
        });
        let d = tracing::Dispatch::from(std::sync::Arc::clone(&sub));
        tracing::dispatcher::with_default(&d, || {
            let long = "x".repeat(100);
            for i in 0..3u64 {
                tracing::info!(tokens = i, model = "gpt-4o-mini", ok = true);
                tracing::info!(
                    api_key = "sk-live-1",
                    password = 7u64,
                    error = true,
                    note = "token=abc rest",
                    short = "a b",
                    mid = "abcd:",
                    long = long.as_str(),
                    dbg = ?("x", i),
                    "hello {i} api_key={}",
                    "sk-2"
                );
                tracing::info!(
                    step = "plan",
                    otel.name = "call: tool",
                    correlation_id = "cid-1",
                    otel.status_code = "ERROR",
                    step.data = r#"{"a":1,"token":"t","s":"password=x"}"#,
                    error = %"boom",
                    sk = "sk-abc"
                );
            }
        });
        std::mem::take(&mut *sub.out.lock().unwrap())
    }

    /// Captures a formatted value of its own while it is formatted (as a
    /// value that logs would), then writes its text.
    struct Chatty(&'static str);

    impl fmt::Debug for Chatty {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let settings = Settings {
                redactor: Redactor::new(&RedactionConfig::default()),
                config: TraceConfig::default(),
            };
            let mut c = Capture::new(&settings);
            let field = tracing::field::FieldSet::new(
                &["inner"],
                tracing::callsite::Identifier(&NESTED_CALLSITE),
            )
            .field("inner")
            .unwrap();
            c.record_debug(&field, &"nested value");
            let fields = c.fields.take_vec();
            assert_eq!(
                fields,
                vec![(
                    Cow::Borrowed("inner"),
                    Value::Str(Text::new("\"nested value\""))
                )]
            );
            f.write_str(self.0)
        }
    }

    struct NestedCallsite;
    static NESTED_CALLSITE: NestedCallsite = NestedCallsite;
    impl tracing::callsite::Callsite for NestedCallsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!("not registered")
        }
    }

    /// Writes a little, then fails.
    struct Failing;

    impl fmt::Debug for Failing {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("part")?;
            Err(fmt::Error)
        }
    }

    #[test]
    fn formatting_reenters_and_survives_errors() {
        let settings = Settings {
            redactor: Redactor::new(&RedactionConfig::default()),
            config: TraceConfig::default(),
        };
        let sub = std::sync::Arc::new(Both {
            settings,
            out: Mutex::new(Vec::new()),
        });
        let d = tracing::Dispatch::from(std::sync::Arc::clone(&sub));
        tracing::dispatcher::with_default(&d, || {
            tracing::info!(outer = ?Chatty("outer value"), bad = ?Failing, "top");
        });
        let out = std::mem::take(&mut *sub.out.lock().unwrap());
        assert_eq!(out.len(), 1);
        let (outer, slow) = &out[0];
        assert_eq!(outer, slow);
        assert_eq!(outer.message.as_deref(), Some("top"));
        assert_eq!(
            outer.fields,
            vec![
                (Cow::Borrowed("outer"), Value::Str(Text::new("outer value"))),
                (Cow::Borrowed("bad"), Value::Str(Text::new("part"))),
            ]
        );
    }

    #[test]
    fn masked_capture_matches_capture_by_name() {
        for redaction in [
            RedactionConfig::default(),
            RedactionConfig::default().with_value_prefix("sk-"),
            RedactionConfig {
                enabled: false,
                ..RedactionConfig::default()
            },
        ] {
            let all = captured(redaction.clone(), 32);
            assert_eq!(all.len(), 9);
            for (fast, slow) in &all {
                assert_eq!(fast, slow, "{redaction:?}");
            }
            let (first, _) = &all[0];
            assert_eq!(
                first.fields,
                vec![
                    (Cow::Borrowed("tokens"), Value::U64(0)),
                    (Cow::Borrowed("model"), Value::Str(Text::new("gpt-4o-mini"))),
                    (Cow::Borrowed("ok"), Value::Bool(true)),
                ]
            );
            let (second, _) = &all[1];
            let get = |name: &str| second.fields.iter().find(|(k, _)| k == name).map(|e| &e.1);
            assert!(second.error);
            assert!(get("long").is_some_and(Value::is_truncated));
            if redaction.enabled {
                assert_eq!(get("api_key"), Some(&Value::Redacted));
                assert_eq!(get("password"), Some(&Value::Redacted));
                assert_eq!(
                    get("note").and_then(Value::as_str),
                    Some("token=[REDACTED] rest")
                );
                assert!(!second.message.as_deref().unwrap_or("").contains("sk-2"));
            }
            let (third, _) = &all[2];
            assert_eq!(third.step_name.as_deref(), Some("plan"));
            assert_eq!(third.correlation_id.as_deref(), Some("cid-1"));
            assert!(third.error);
        }
    }
}
