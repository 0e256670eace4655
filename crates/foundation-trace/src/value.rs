//! Captured field values: JSON-compatible, redacted and size-capped when they
//! are recorded.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::redact::REDACTED;

/// One captured field value.
///
/// Values are captured when the span or event is recorded: secrets are
/// already [`Redacted`](Value::Redacted) and long values already
/// [`Truncated`](Value::Truncated), so nothing downstream (store, `Display`,
/// JSON, export) ever sees the original.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float (non-finite floats serialize as `null`).
    F64(f64),
    /// Text: a string field, a `%display` or `?debug` field, or a message.
    Str(String),
    /// Structured data recorded through [`measure_step`](crate::measure_step)
    /// or a `step.data` field holding JSON.
    Json(serde_json::Value),
    /// A value whose field name (or content) marks it as a secret.
    Redacted,
    /// A value cut to the per-value or per-trace byte limit.
    Truncated {
        /// The first bytes of the value (at a character boundary), already
        /// redacted. Empty when the per-trace budget was exhausted.
        head: String,
        /// The size of the original value in bytes.
        original_bytes: usize,
    },
}

// === impl Value ===

impl Value {
    /// The value as text, if it is text.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an unsigned integer, if it is a non-negative integer.
    #[must_use]
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U64(n) => Some(n),
            Self::I64(n) => u64::try_from(n).ok(),
            _ => None,
        }
    }

    /// Whether this value was truncated.
    #[must_use]
    pub fn is_truncated(&self) -> bool {
        matches!(self, Self::Truncated { .. })
    }

    /// Bytes this value accounts for against the per-trace budget.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Self::Str(s) => s.len(),
            Self::Truncated { head, .. } => head.len(),
            Self::Json(_) | Self::Redacted => 16,
            _ => 8,
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Bool(b) => s.serialize_bool(*b),
            Self::I64(n) => s.serialize_i64(*n),
            Self::U64(n) => s.serialize_u64(*n),
            Self::F64(f) if f.is_finite() => s.serialize_f64(*f),
            Self::F64(_) => s.serialize_none(),
            Self::Str(v) => s.serialize_str(v),
            Self::Json(v) => v.serialize(s),
            Self::Redacted => s.serialize_str(REDACTED),
            Self::Truncated {
                head,
                original_bytes,
            } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("truncated", head)?;
                m.serialize_entry("original_bytes", original_bytes)?;
                m.end()
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::I64(n) => write!(f, "{n}"),
            Self::U64(n) => write!(f, "{n}"),
            Self::F64(x) => write!(f, "{x}"),
            Self::Str(s) => write!(f, "{s:?}"),
            Self::Json(v) => write!(f, "{v}"),
            Self::Redacted => f.write_str(REDACTED),
            Self::Truncated {
                head,
                original_bytes,
            } => write!(f, "{head:?}...[truncated, {original_bytes} bytes]"),
        }
    }
}

/// Captured fields of an operation or step, in recording order.
pub type Fields = Vec<(Cow<'static, str>, Value)>;

/// The field `name` in `fields`, if recorded.
pub(crate) fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Serializes fields as a JSON object, renaming keys through `rename`.
pub(crate) struct FieldsMap<'a> {
    pub(crate) fields: &'a Fields,
    pub(crate) rename: fn(&str) -> Option<&'static str>,
}

impl Serialize for FieldsMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.fields.len()))?;
        for (k, v) in self.fields {
            let key: &str = (self.rename)(k).unwrap_or(k);
            m.serialize_entry(key, v)?;
        }
        m.end()
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_serializes_with_marker() {
        let v = Value::Truncated {
            head: "abc".into(),
            original_bytes: 10,
        };
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"truncated":"abc","original_bytes":10}"#
        );
        assert_eq!(v.to_string(), r#""abc"...[truncated, 10 bytes]"#);
    }

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("hello", 10), "hello");
    }

    #[test]
    fn non_finite_floats_are_null() {
        assert_eq!(
            serde_json::to_string(&Value::F64(f64::NAN)).unwrap(),
            "null"
        );
    }
}
