//! Captured field values: JSON-compatible, redacted and size-capped when they
//! are recorded.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

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
    Str(Text),
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

/// Text bytes stored inline in a [`Text`].
pub(crate) const TEXT_INLINE: usize = 30;

/// Captured text: a name or a text value.
///
/// Short text (up to 30 bytes) is stored inline and names known at compile
/// time are borrowed, so capturing them allocates nothing and a finished
/// trace frees nothing for them. Reads like a `&str` (`Deref`, `Display`,
/// comparisons with `str`).
///
/// ```
/// use foundation_trace::Text;
///
/// let t = Text::from("gpt-4o-mini");
/// assert_eq!(t, "gpt-4o-mini");
/// assert_eq!(t.len(), 11);
/// assert_eq!(String::from(t), "gpt-4o-mini");
/// ```
#[derive(Clone)]
pub struct Text(TextRepr);

#[derive(Clone)]
enum TextRepr {
    Static(&'static str),
    Inline { len: u8, bytes: [u8; TEXT_INLINE] },
    Heap(Box<str>),
}

// === impl Text ===

impl Text {
    /// Text borrowed for the whole program (no copy).
    #[must_use]
    pub const fn from_static(s: &'static str) -> Self {
        Self(TextRepr::Static(s))
    }

    /// A copy of `s`, inline when short.
    #[must_use]
    #[inline]
    pub fn new(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= TEXT_INLINE => Self(TextRepr::Inline {
                len,
                bytes: inline_bytes(s.as_bytes()),
            }),
            _ => Self::heap(s),
        }
    }

    /// Empty inline text, to be filled with [`fill_inline`](Self::fill_inline).
    #[inline]
    pub(crate) const fn inline_empty() -> Self {
        Self(TextRepr::Inline {
            len: 0,
            bytes: [0; TEXT_INLINE],
        })
    }

    /// Writes `s` (at most 30 bytes) into inline text, in place.
    #[inline]
    pub(crate) fn fill_inline(&mut self, s: &str) {
        if let TextRepr::Inline { len, bytes } = &mut self.0
            && let (Ok(n), Some(dst)) = (u8::try_from(s.len()), bytes.get_mut(..s.len()))
        {
            dst.copy_from_slice(s.as_bytes());
            *len = n;
        }
    }

    #[inline(never)]
    fn heap(s: &str) -> Self {
        Self(TextRepr::Heap(s.into()))
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        match &self.0 {
            TextRepr::Static(s) => s.len(),
            TextRepr::Inline { len, .. } => usize::from(*len),
            TextRepr::Heap(s) => s.len(),
        }
    }

    /// Whether the text is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            TextRepr::Static(s) => s,
            // Inline bytes are always a whole `&str` copied in `new`.
            TextRepr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            TextRepr::Heap(s) => s,
        }
    }
}

/// `b` (at most [`TEXT_INLINE`] bytes) zero-padded, copied as two
/// overlapping fixed-size pieces (no call to `memcpy`, no byte loop).
#[inline]
fn inline_bytes(b: &[u8]) -> [u8; TEXT_INLINE] {
    let mut out = [0; TEXT_INLINE];
    let n = b.len();
    if n >= 16 {
        // 16..=30 bytes: the first 16 and the last 16.
        if let (Some(head), Some(tail)) = (b.get(..16), b.get(n - 16..)) {
            out[..16].copy_from_slice(head);
            if let Some(dst) = out.get_mut(n - 16..n) {
                dst.copy_from_slice(tail);
            }
        }
    } else if n >= 8 {
        out[..8].copy_from_slice(&b[..8]);
        out[n - 8..n].copy_from_slice(&b[n - 8..]);
    } else if n >= 4 {
        out[..4].copy_from_slice(&b[..4]);
        out[n - 4..n].copy_from_slice(&b[n - 4..]);
    } else if n > 0 {
        out[0] = b[0];
        out[n / 2] = b[n / 2];
        out[n - 1] = b[n - 1];
    }
    out
}

impl Default for Text {
    fn default() -> Self {
        Self::from_static("")
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        if s.len() <= TEXT_INLINE {
            Self::new(&s)
        } else {
            Self(TextRepr::Heap(s.into_boxed_str()))
        }
    }
}

impl From<Cow<'static, str>> for Text {
    fn from(s: Cow<'static, str>) -> Self {
        match s {
            Cow::Borrowed(s) => Self::from_static(s),
            Cow::Owned(s) => s.into(),
        }
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        match t.0 {
            TextRepr::Heap(s) => s.into_string(),
            _ => t.as_str().to_owned(),
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == other.as_str()
    }
}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One captured field: its name and value.
pub(crate) type Entry = (Cow<'static, str>, Value);

/// Captured fields of an operation or step, in recording order.
///
/// Reads as a slice of `(name, value)` pairs. The steps of a finished trace
/// share one buffer holding all their fields (each step's `Fields` is its
/// range of it), so recording a step allocates nothing for its fields and
/// freeing a trace frees one buffer rather than one per step.
///
/// ```
/// use foundation_trace::{Fields, Value};
///
/// let mut fields = Fields::new();
/// fields.push(("tokens".into(), Value::U64(12)));
/// assert_eq!(fields.len(), 1);
/// assert_eq!(fields.get("tokens"), Some(&Value::U64(12)));
/// ```
#[derive(Clone)]
pub struct Fields(FieldsRepr);

#[derive(Clone)]
enum FieldsRepr {
    Owned(Vec<Entry>),
    /// A range of a trace's shared field buffer.
    Shared {
        buf: Arc<Vec<Entry>>,
        start: u32,
        len: u32,
    },
    /// A range of the buffer of a trace still recording; resolved to
    /// `Shared` before anyone outside the layer sees it.
    Pending {
        start: u32,
        len: u32,
    },
}

// === impl Fields ===

impl Fields {
    /// No fields.
    #[must_use]
    pub const fn new() -> Self {
        Self(FieldsRepr::Owned(Vec::new()))
    }

    /// Appends a field.
    pub fn push(&mut self, field: (Cow<'static, str>, Value)) {
        self.with_vec(|v| v.push(field));
    }

    /// The value of the field `name`, if recorded.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The fields at `start..start + len` of the recording trace's buffer.
    pub(crate) fn pending(start: usize, len: usize) -> Self {
        Self(FieldsRepr::Pending {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            len: u32::try_from(len).unwrap_or(0),
        })
    }

    /// The shared buffer these fields are a range of, if any.
    pub(crate) fn shared_buf(&self) -> Option<&Arc<Vec<Entry>>> {
        match &self.0 {
            FieldsRepr::Shared { buf, .. } => Some(buf),
            _ => None,
        }
    }

    /// The range of the recording trace's buffer, while pending.
    pub(crate) fn pending_range(&self) -> Option<std::ops::Range<usize>> {
        match self.0 {
            FieldsRepr::Pending { start, len } => {
                Some(start as usize..start as usize + len as usize)
            }
            _ => None,
        }
    }

    /// Points pending fields at `buf`, the trace's field buffer.
    pub(crate) fn resolve(&mut self, buf: &Arc<Vec<Entry>>) {
        if let FieldsRepr::Pending { start, len } = self.0 {
            self.0 = FieldsRepr::Shared {
                buf: Arc::clone(buf),
                start,
                len,
            };
        }
    }

    /// Copies shared fields out, so they can be changed.
    fn make_owned(&mut self) {
        if !matches!(self.0, FieldsRepr::Owned(_)) {
            self.0 = FieldsRepr::Owned(self.iter().cloned().collect());
        }
    }

    /// Runs `f` on the fields as an owned vector.
    fn with_vec<R>(&mut self, f: impl FnOnce(&mut Vec<Entry>) -> R) -> R {
        self.make_owned();
        match &mut self.0 {
            FieldsRepr::Owned(v) => f(v),
            // Not reached: `make_owned` ran.
            FieldsRepr::Shared { .. } | FieldsRepr::Pending { .. } => f(&mut Vec::new()),
        }
    }
}

impl Default for Fields {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for Fields {
    type Target = [(Cow<'static, str>, Value)];
    fn deref(&self) -> &[Entry] {
        match &self.0 {
            FieldsRepr::Owned(v) => v,
            FieldsRepr::Shared { buf, start, len } => {
                let start = *start as usize;
                buf.get(start..start + *len as usize).unwrap_or_default()
            }
            FieldsRepr::Pending { .. } => &[],
        }
    }
}

impl DerefMut for Fields {
    fn deref_mut(&mut self) -> &mut [Entry] {
        self.make_owned();
        match &mut self.0 {
            FieldsRepr::Owned(v) => v,
            // Not reached: `make_owned` ran.
            FieldsRepr::Shared { .. } | FieldsRepr::Pending { .. } => &mut [],
        }
    }
}

impl PartialEq for Fields {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl From<Vec<(Cow<'static, str>, Value)>> for Fields {
    fn from(v: Vec<Entry>) -> Self {
        Self(FieldsRepr::Owned(v))
    }
}

impl FromIterator<(Cow<'static, str>, Value)> for Fields {
    fn from_iter<I: IntoIterator<Item = Entry>>(iter: I) -> Self {
        Self(FieldsRepr::Owned(iter.into_iter().collect()))
    }
}

impl Extend<(Cow<'static, str>, Value)> for Fields {
    fn extend<I: IntoIterator<Item = Entry>>(&mut self, iter: I) {
        self.with_vec(|v| v.extend(iter));
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = &'a (Cow<'static, str>, Value);
    type IntoIter = std::slice::Iter<'a, Entry>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The field `name` in `fields`, if recorded.
pub(crate) fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a Value> {
    fields.get(name)
}

/// Serializes fields as a JSON object, renaming keys through `rename`.
pub(crate) struct FieldsMap<'a> {
    pub(crate) fields: &'a [Entry],
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
    fn text_is_inline_when_short_and_reads_back() {
        let short = Text::new("gpt-4o-mini");
        assert!(matches!(short.0, TextRepr::Inline { .. }));
        assert_eq!(short, "gpt-4o-mini");
        let long = "x".repeat(TEXT_INLINE + 1);
        let t = Text::from(long.clone());
        assert!(matches!(t.0, TextRepr::Heap(_)));
        assert_eq!(t, long);
        let exact = "é".repeat(TEXT_INLINE / 2);
        assert_eq!(Text::new(&exact), exact.as_str());
        assert_eq!(String::from(Text::from_static("s")), "s");
        assert!(std::mem::size_of::<Value>() <= 40);
    }

    #[test]
    fn inline_text_copies_every_length() {
        let all = "abcdefghijklmnopqrstuvwxyzABCDEFGH";
        for n in 0..=TEXT_INLINE {
            let s = &all[..n];
            let t = Text::new(s);
            assert!(matches!(t.0, TextRepr::Inline { .. }), "{n}");
            assert_eq!(t, s);
            assert_eq!(t.len(), n);
        }
        for s in [
            "é",
            "éa",
            "aé",
            "日本",
            "日本語テキスト",
            "ünïcödé ünïcödé ünï",
        ] {
            assert_eq!(Text::new(s), s);
        }
        let over = &"abcdefghijklmnopqrstuvwxyzABCDEFGH"[..TEXT_INLINE + 1];
        assert!(matches!(Text::new(over).0, TextRepr::Heap(_)));
        assert_eq!(Text::new(over), over);
    }

    #[test]
    fn shared_fields_read_their_range_and_copy_on_write() {
        let buf: Arc<Vec<Entry>> = Arc::new(
            (0..6u64)
                .map(|i| (Cow::Owned(format!("f{i}")), Value::U64(i)))
                .collect(),
        );
        let mut f = Fields::pending(2, 3);
        assert!(f.is_empty());
        f.resolve(&buf);
        let names: Vec<&str> = f.iter().map(|(k, _)| &**k).collect();
        assert_eq!(names, ["f2", "f3", "f4"]);
        assert_eq!(f.get("f3"), Some(&Value::U64(3)));
        f.push((Cow::Borrowed("x"), Value::Bool(true)));
        assert_eq!(f.len(), 4);
        assert_eq!(buf.len(), 6);
        let g: Fields = f.iter().cloned().collect();
        assert_eq!(f, g);
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
