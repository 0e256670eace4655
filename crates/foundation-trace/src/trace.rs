//! Recorded traces: operations (spans) and steps (events) of one root
//! operation, with timings and captured data.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeStruct, Serializer};
use tracing::Level;

use crate::export::{ai_name, is_ai};
use crate::value::{Fields, FieldsMap, Text};

/// Identifies one trace (one root operation and everything under it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub u64);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for TraceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How a trace ended (or that it has not ended yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TraceStatus {
    /// Still running: a snapshot taken by an error before the root closed.
    InProgress,
    /// Finished without a recorded failure.
    Ok,
    /// An error-level event, an `error` field, an `otel.status_code = "ERROR"`
    /// field or a captured [`TracedError`](crate::TracedError) marked it failed.
    Failed,
}

/// One operation: a `tracing` span inside the trace.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Operation {
    /// Index of this operation in [`Trace::operations`].
    pub id: u32,
    /// The parent operation, `None` for the root.
    pub parent: Option<u32>,
    /// The span name, or its `otel.name` field when set.
    pub name: Text,
    /// The span's target (usually its module path).
    pub target: Cow<'static, str>,
    /// Captured span fields (redacted and size-capped).
    pub fields: Fields,
    /// When the operation started, relative to the trace start.
    pub start: Duration,
    /// When it closed, relative to the trace start; `None` while open.
    pub end: Option<Duration>,
    /// Whether something marked this operation failed.
    pub failed: bool,
    pub(crate) start_seq: u32,
}

// === impl Operation ===

impl Operation {
    /// How long the operation ran, once closed.
    #[must_use]
    pub fn duration(&self) -> Option<Duration> {
        self.end.map(|e| e.saturating_sub(self.start))
    }

    /// The captured field `name`.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&crate::Value> {
        crate::value::field(&self.fields, name)
    }
}

/// One step: a `tracing` event inside an operation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Step {
    /// Position of this step in the trace's history (operations starting and
    /// steps share one sequence; positions increase along the history and
    /// may skip numbers, e.g. where a limit cut an item).
    pub seq: u32,
    /// The operation the step happened in; `None` when that operation was
    /// dropped by the per-trace operation cap.
    pub operation: Option<u32>,
    /// The event's message, its `step` field, or the callsite name.
    pub name: Text,
    /// The event's level.
    pub level: Level,
    /// When it happened, relative to the trace start.
    pub at: Duration,
    /// Captured event fields (redacted and size-capped).
    pub fields: Fields,
    /// Whether this step is a failure (error level, or the error that a
    /// [`TracedError`](crate::TracedError) captured).
    pub failed: bool,
}

// === impl Step ===

impl Step {
    /// The captured field `name`.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&crate::Value> {
        crate::value::field(&self.fields, name)
    }
}

/// What the per-trace limits cut.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Dropped {
    /// Steps not recorded because of `limits.max_steps`.
    pub steps: u64,
    /// Operations not recorded because of `limits.max_operations`.
    pub operations: u64,
    /// Values truncated by `limits.max_value_bytes` or `limits.max_trace_bytes`.
    pub truncated_values: u64,
}

// === impl Dropped ===

impl Dropped {
    /// Whether anything was cut.
    #[must_use]
    pub fn any(&self) -> bool {
        self.steps + self.operations + self.truncated_values > 0
    }
}

/// The recorded history of one root operation.
///
/// A finished trace comes from the [`TraceStore`](crate::TraceStore) or a
/// [`TraceSink`](crate::TraceSink); a snapshot up to a failure comes from a
/// [`TracedError`](crate::TracedError). `Display` renders one line per
/// operation and step with the elapsed time since the trace started;
/// `Serialize` gives the export JSON, with OpenTelemetry GenAI attribute names
/// for AI operations and steps.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Trace {
    /// The trace's identity.
    pub trace_id: TraceId,
    /// The correlation id: the root span's `correlation_id` field when set
    /// (an incoming request id), otherwise the trace id.
    pub correlation_id: String,
    /// Wall-clock time the root operation started.
    pub started_at: SystemTime,
    /// How long the root ran; `None` for a snapshot of a running trace.
    pub duration: Option<Duration>,
    /// How the trace ended.
    pub status: TraceStatus,
    /// Whether step data was recorded. `false` when head sampling
    /// ([`TraceConfig::sample_rate`](crate::TraceConfig::sample_rate)) skipped
    /// this trace: only the chain of operation names is known.
    pub recorded: bool,
    /// Operations in the order they started; index = [`Operation::id`].
    pub operations: Vec<Operation>,
    /// Steps in the order they happened.
    pub steps: Vec<Step>,
    /// The step where the failure was captured, when this is an error's
    /// snapshot.
    pub failing_step: Option<u32>,
    /// Operations that were open when the snapshot was taken, root first.
    pub active: Vec<u32>,
    /// What the per-trace limits cut.
    pub dropped: Dropped,
}

// === impl Trace ===

impl Trace {
    /// The root operation's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.operations.first().map_or("(unknown)", |o| &o.name)
    }

    /// Whether the trace failed.
    #[must_use]
    pub fn is_failed(&self) -> bool {
        self.status == TraceStatus::Failed
    }

    /// The step that failed: the captured failing step, or else the first
    /// failed step.
    #[must_use]
    pub fn failed_step(&self) -> Option<&Step> {
        match self.failing_step {
            Some(seq) => self.steps.iter().find(|s| s.seq == seq),
            None => self.steps.iter().find(|s| s.failed),
        }
    }

    /// The operation with id `id`.
    #[must_use]
    pub fn operation(&self, id: u32) -> Option<&Operation> {
        self.operations.get(id as usize)
    }

    /// The names of the operations and steps in the order they happened, each
    /// indented by its depth: a compact fingerprint for tests and logs.
    #[must_use]
    pub fn outline(&self) -> Vec<String> {
        self.entries()
            .map(|e| match e {
                Entry::Op(o) => format!("{}{}", "  ".repeat(self.depth(o.id)), o.name),
                Entry::Step(s) => format!(
                    "{}- {}",
                    "  ".repeat(s.operation.map_or(0, |o| self.depth(o) + 1)),
                    s.name
                ),
            })
            .collect()
    }

    /// The export JSON as a `serde_json::Value`.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    fn depth(&self, mut id: u32) -> usize {
        let mut d = 0;
        while let Some(p) = self.operation(id).and_then(|o| o.parent) {
            d += 1;
            id = p;
            if d > self.operations.len() {
                break;
            }
        }
        d
    }

    fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        let mut all: Vec<(u32, Entry<'_>)> = self
            .operations
            .iter()
            .map(|o| (o.start_seq, Entry::Op(o)))
            .chain(self.steps.iter().map(|s| (s.seq, Entry::Step(s))))
            .collect();
        all.sort_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, e)| e)
    }
}

enum Entry<'a> {
    Op(&'a Operation),
    Step(&'a Step),
}

/// `+12.345ms`, `+1.234s`.
pub(crate) fn fmt_elapsed(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.3}s", d.as_secs_f64())
    } else {
        format!("{:.3}ms", d.as_secs_f64() * 1e3)
    }
}

fn write_fields(f: &mut fmt::Formatter<'_>, fields: &Fields) -> fmt::Result {
    for (k, v) in fields {
        write!(f, " {k}={v}")?;
    }
    Ok(())
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            TraceStatus::InProgress => "in progress",
            TraceStatus::Ok => "ok",
            TraceStatus::Failed => "failed",
        };
        write!(
            f,
            "trace {} correlation={} {status}",
            self.trace_id, self.correlation_id
        )?;
        if let Some(d) = self.duration {
            write!(f, " after {}", fmt_elapsed(d))?;
        }
        if !self.recorded {
            f.write_str(" (steps not recorded: sampled out)")?;
        }
        let width = self
            .steps
            .iter()
            .map(|s| s.at)
            .chain(self.operations.iter().map(|o| o.start))
            .max()
            .map_or(0, |d| fmt_elapsed(d).len());
        for e in self.entries() {
            match e {
                Entry::Op(o) => {
                    let indent = "  ".repeat(self.depth(o.id));
                    let time = if self.recorded {
                        format!("+{:>width$}", fmt_elapsed(o.start))
                    } else {
                        String::new()
                    };
                    let mark = if o.failed { "x" } else { ">" };
                    write!(f, "\n  {time} {indent}{mark} {}", o.name)?;
                    match o.duration() {
                        Some(d) => write!(f, " ({})", fmt_elapsed(d))?,
                        None if self.recorded => f.write_str(" (running)")?,
                        None => {}
                    }
                    write_fields(f, &o.fields)?;
                }
                Entry::Step(s) => {
                    let depth = s.operation.map_or(0, |o| self.depth(o) + 1);
                    let mark = if s.failed { "!" } else { "-" };
                    write!(
                        f,
                        "\n  +{:>width$} {}{mark} {}",
                        fmt_elapsed(s.at),
                        "  ".repeat(depth),
                        s.name
                    )?;
                    write_fields(f, &s.fields)?;
                    if self.failing_step == Some(s.seq) {
                        f.write_str("   <-- failed here")?;
                    }
                }
            }
        }
        if self.dropped.any() {
            write!(
                f,
                "\n  ... limits cut {} steps, {} operations, {} values",
                self.dropped.steps, self.dropped.operations, self.dropped.truncated_values
            )?;
        }
        Ok(())
    }
}

struct Attributes<'a>(&'a Fields);

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rename: fn(&str) -> Option<&'static str> =
            if is_ai(self.0) { ai_name } else { |_| None };
        FieldsMap {
            fields: self.0,
            rename,
        }
        .serialize(s)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("parent", &self.parent)?;
        m.serialize_entry("name", &self.name)?;
        m.serialize_entry("target", &self.target)?;
        m.serialize_entry("start_ns", &nanos(self.start))?;
        m.serialize_entry("end_ns", &self.end.map(nanos))?;
        m.serialize_entry("duration_ns", &self.duration().map(nanos))?;
        let status = match (self.failed, self.end) {
            (true, _) => "error",
            (false, Some(_)) => "ok",
            (false, None) => "unfinished",
        };
        m.serialize_entry("status", status)?;
        m.serialize_entry("attributes", &Attributes(&self.fields))?;
        m.end()
    }
}

impl Serialize for Step {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("seq", &self.seq)?;
        m.serialize_entry("operation", &self.operation)?;
        m.serialize_entry("name", &self.name)?;
        m.serialize_entry("level", self.level.as_str())?;
        m.serialize_entry("at_ns", &nanos(self.at))?;
        m.serialize_entry("failed", &self.failed)?;
        m.serialize_entry("attributes", &Attributes(&self.fields))?;
        m.end()
    }
}

impl Serialize for Trace {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Trace", 12)?;
        st.serialize_field("trace_id", &self.trace_id)?;
        st.serialize_field("correlation_id", &self.correlation_id)?;
        st.serialize_field("name", self.name())?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("recorded", &self.recorded)?;
        let start = self.started_at.duration_since(UNIX_EPOCH).map_or(0, nanos);
        st.serialize_field("start_time_unix_nano", &start)?;
        st.serialize_field("duration_ns", &self.duration.map(nanos))?;
        st.serialize_field("operations", &self.operations)?;
        st.serialize_field("steps", &self.steps)?;
        st.serialize_field("failing_step", &self.failing_step)?;
        st.serialize_field("active", &self.active)?;
        st.serialize_field("dropped", &self.dropped)?;
        st.end()
    }
}
