//! Queries: a filter expression, a position cursor, a direction and a limit.
//!
//! Filters are [`Expr`] trees, built in code (`Expr::event_type("llm.response")
//! .and(Expr::data("model")?.eq("gpt-4o"))`) or parsed from the text language
//! ([`Expr::parse`], see [`lang`](crate::lang)). Every backend evaluates the
//! same tree with the same semantics:
//!
//! - a comparison on a missing or null envelope field, or a missing data path,
//!   is false (use `exists` or `not`);
//! - data comparisons only compare values of the same JSON type: numbers with
//!   numbers, strings with strings (byte order); `=` also matches `true`,
//!   `false` and `null`; `!=` is true when the path exists and differs;
//! - `contains` on a data path is a substring test for strings and a
//!   membership test for arrays; full text matches whole words (all of them).

use std::fmt;

use serde_json::Value;

use crate::envelope::{EventId, Position, RecordedEvent, Timestamp};
use crate::error::Error;

/// Largest page a query may ask for.
pub const MAX_LIMIT: usize = 10_000;

/// An envelope attribute or a JSON path into `data` / `metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// `id`
    Id,
    /// `type`
    Type,
    /// `source`
    Source,
    /// `subject` (nullable)
    Subject,
    /// `stream`
    Stream,
    /// `tenant` (nullable)
    Tenant,
    /// `correlation`
    Correlation,
    /// `causation` (nullable)
    Causation,
    /// `time`
    Time,
    /// `position`
    Position,
    /// `version` (the stream version)
    Version,
    /// `schema_version`
    SchemaVersion,
    /// `data.<path>`
    Data(JsonPath),
    /// `metadata.<path>`
    Metadata(JsonPath),
}

impl Field {
    /// The envelope field for a name of the text language, if any.
    #[must_use]
    pub fn envelope(name: &str) -> Option<Self> {
        Some(match name {
            "id" => Self::Id,
            "type" => Self::Type,
            "source" => Self::Source,
            "subject" => Self::Subject,
            "stream" => Self::Stream,
            "tenant" => Self::Tenant,
            "correlation" | "correlation_id" => Self::Correlation,
            "causation" | "causation_id" => Self::Causation,
            "time" => Self::Time,
            "position" => Self::Position,
            "version" => Self::Version,
            "schema_version" => Self::SchemaVersion,
            _ => return None,
        })
    }

    fn kind(&self) -> FieldKind {
        match self {
            Self::Id | Self::Causation => FieldKind::Id,
            Self::Type
            | Self::Source
            | Self::Subject
            | Self::Stream
            | Self::Tenant
            | Self::Correlation => FieldKind::Text,
            Self::Time => FieldKind::Time,
            Self::Position | Self::Version | Self::SchemaVersion => FieldKind::Int,
            Self::Data(_) | Self::Metadata(_) => FieldKind::Json,
        }
    }

    fn nullable(&self) -> bool {
        matches!(
            self,
            Self::Subject | Self::Tenant | Self::Causation | Self::Data(_) | Self::Metadata(_)
        )
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id => f.write_str("id"),
            Self::Type => f.write_str("type"),
            Self::Source => f.write_str("source"),
            Self::Subject => f.write_str("subject"),
            Self::Stream => f.write_str("stream"),
            Self::Tenant => f.write_str("tenant"),
            Self::Correlation => f.write_str("correlation"),
            Self::Causation => f.write_str("causation"),
            Self::Time => f.write_str("time"),
            Self::Position => f.write_str("position"),
            Self::Version => f.write_str("version"),
            Self::SchemaVersion => f.write_str("schema_version"),
            Self::Data(p) => write!(f, "data{p}"),
            Self::Metadata(p) => write!(f, "metadata{p}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Id,
    Text,
    Time,
    Int,
    Json,
}

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// An object key: ASCII letters, digits, `_` and `-`.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A path into a JSON document: keys and array indexes, e.g. `usage.tokens` or `choices[0].text`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct JsonPath(Vec<PathSegment>);

// === impl JsonPath ===

impl JsonPath {
    /// Parses `a.b[0].c`.
    ///
    /// # Errors
    /// When a key is empty or holds characters other than ASCII letters,
    /// digits, `_` and `-`, or an index is not a number.
    pub fn parse(path: &str) -> Result<Self, Error> {
        let bad =
            |reason: &str| Error::InvalidQuery(format!("invalid json path `{path}`: {reason}"));
        let mut segs = Vec::new();
        for part in path.split('.') {
            let (key, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if key.is_empty() && (segs.is_empty() || rest.is_empty()) {
                return Err(bad("empty key"));
            }
            if !key.is_empty() {
                if !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(bad("keys may hold only ASCII letters, digits, `_` and `-`"));
                }
                segs.push(PathSegment::Key(key.to_owned()));
            }
            while let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or_else(|| bad("missing `]`"))?;
                let idx = r[..end]
                    .parse::<usize>()
                    .map_err(|_| bad("index is not a number"))?;
                if idx > i32::MAX as usize {
                    return Err(bad("index too large"));
                }
                segs.push(PathSegment::Index(idx));
                rest = &r[end + 1..];
            }
            if !rest.is_empty() {
                return Err(bad("unexpected text after `]`"));
            }
        }
        if segs.is_empty() {
            return Err(bad("empty path"));
        }
        Ok(Self(segs))
    }

    pub(crate) fn from_segments(segs: Vec<PathSegment>) -> Self {
        Self(segs)
    }

    /// The segments.
    #[must_use]
    pub fn segments(&self) -> &[PathSegment] {
        &self.0
    }

    /// Resolves the path in `v`.
    #[must_use]
    pub fn resolve<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(v, |v, seg| match seg {
            PathSegment::Key(k) => v.as_object()?.get(k),
            PathSegment::Index(i) => v.as_array()?.get(*i),
        })
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.0 {
            match s {
                PathSegment::Key(k) => write!(f, ".{k}")?,
                PathSegment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A literal value in a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A non-integer number.
    Float(f64),
    /// A string.
    Str(String),
    /// A point in time (`now - 1h`, or a string compared with `time`).
    Time(Timestamp),
}

impl Literal {
    /// The literal as a JSON value (times as RFC 3339 strings).
    #[must_use]
    pub fn to_json(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Int(i) => Value::from(*i),
            Self::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Self::Str(s) => Value::String(s.clone()),
            Self::Time(t) => Value::String(t.to_string()),
        }
    }
}

impl From<&str> for Literal {
    fn from(s: &str) -> Self {
        Self::Str(s.to_owned())
    }
}
impl From<String> for Literal {
    fn from(s: String) -> Self {
        Self::Str(s)
    }
}
impl From<i64> for Literal {
    fn from(i: i64) -> Self {
        Self::Int(i)
    }
}
impl From<f64> for Literal {
    fn from(f: f64) -> Self {
        Self::Float(f)
    }
}
impl From<bool> for Literal {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}
impl From<Timestamp> for Literal {
    fn from(t: Timestamp) -> Self {
        Self::Time(t)
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            Self::Eq => ord == Equal,
            Self::Ne => ord != Equal,
            Self::Lt => ord == Less,
            Self::Le => ord != Greater,
            Self::Gt => ord == Greater,
            Self::Ge => ord != Less,
        }
    }
}

/// A filter over events. Construct with the helpers, combine with
/// [`and`](Self::and)/[`or`](Self::or)/[`not`](Self::negate), or parse text with [`Expr::parse`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Expr {
    /// Matches everything.
    True,
    /// All must match.
    And(Vec<Expr>),
    /// Any must match.
    Or(Vec<Expr>),
    /// Must not match.
    Not(Box<Expr>),
    /// `field op value`.
    Cmp {
        /// The field.
        field: Field,
        /// The operator.
        op: CmpOp,
        /// The literal.
        value: Literal,
    },
    /// The field is present (not null / the path exists).
    Exists(Field),
    /// Substring (strings) or membership (arrays) on a data/metadata path.
    Contains {
        /// The field (a data or metadata path).
        field: Field,
        /// The literal.
        value: Literal,
    },
    /// Full-text: all words occur in the string values of `data`.
    Text(String),
}

/// Builds comparisons on one field: `Expr::data("model")?.eq("gpt-4o")`.
#[derive(Debug, Clone)]
pub struct FieldRef(Field);

macro_rules! cmp_method {
    ($name:ident, $op:ident, $doc:literal) => {
        #[doc = $doc]
        #[must_use]
        pub fn $name(self, value: impl Into<Literal>) -> Expr {
            Expr::Cmp {
                field: self.0,
                op: CmpOp::$op,
                value: value.into(),
            }
        }
    };
}

// === impl FieldRef ===

impl FieldRef {
    cmp_method!(eq, Eq, "`field = value`");
    cmp_method!(ne, Ne, "`field != value`");
    cmp_method!(lt, Lt, "`field < value`");
    cmp_method!(le, Le, "`field <= value`");
    cmp_method!(gt, Gt, "`field > value`");
    cmp_method!(ge, Ge, "`field >= value`");

    /// `field contains value`.
    #[must_use]
    pub fn contains(self, value: impl Into<Literal>) -> Expr {
        Expr::Contains {
            field: self.0,
            value: value.into(),
        }
    }

    /// `field exists`.
    #[must_use]
    pub fn exists(self) -> Expr {
        Expr::Exists(self.0)
    }
}

// === impl Expr ===

impl Expr {
    /// Comparisons on `field`.
    #[must_use]
    pub fn field(field: Field) -> FieldRef {
        FieldRef(field)
    }

    /// Comparisons on a path into `data`.
    ///
    /// # Errors
    /// When the path is invalid (see [`JsonPath::parse`]).
    pub fn data(path: &str) -> Result<FieldRef, Error> {
        Ok(FieldRef(Field::Data(JsonPath::parse(path)?)))
    }

    /// Comparisons on a path into `metadata`.
    ///
    /// # Errors
    /// When the path is invalid.
    pub fn metadata(path: &str) -> Result<FieldRef, Error> {
        Ok(FieldRef(Field::Metadata(JsonPath::parse(path)?)))
    }

    /// `type = t`.
    #[must_use]
    pub fn event_type(t: impl Into<String>) -> Self {
        FieldRef(Field::Type).eq(t.into())
    }

    /// `type in (...)`.
    #[must_use]
    pub fn event_types<I: IntoIterator<Item = S>, S: Into<String>>(types: I) -> Self {
        Self::Or(types.into_iter().map(Self::event_type).collect())
    }

    /// `stream = s`.
    #[must_use]
    pub fn stream(s: impl Into<String>) -> Self {
        FieldRef(Field::Stream).eq(s.into())
    }

    /// `subject = s`.
    #[must_use]
    pub fn subject(s: impl Into<String>) -> Self {
        FieldRef(Field::Subject).eq(s.into())
    }

    /// `tenant = t`.
    #[must_use]
    pub fn tenant(t: impl Into<String>) -> Self {
        FieldRef(Field::Tenant).eq(t.into())
    }

    /// `correlation = c`.
    #[must_use]
    pub fn correlation(c: impl Into<String>) -> Self {
        FieldRef(Field::Correlation).eq(c.into())
    }

    /// `causation = id`.
    #[must_use]
    pub fn causation(id: EventId) -> Self {
        FieldRef(Field::Causation).eq(id.to_string())
    }

    /// `time >= from and time < to`.
    #[must_use]
    pub fn time_range(from: Timestamp, to: Timestamp) -> Self {
        Self::And(vec![
            FieldRef(Field::Time).ge(from),
            FieldRef(Field::Time).lt(to),
        ])
    }

    /// Full-text search over the string values of `data`.
    #[must_use]
    pub fn text(words: impl Into<String>) -> Self {
        Self::Text(words.into())
    }

    /// `self and other`.
    #[must_use]
    pub fn and(self, other: Expr) -> Self {
        match (self, other) {
            (Self::True, e) | (e, Self::True) => e,
            (Self::And(mut a), Self::And(b)) => {
                a.extend(b);
                Self::And(a)
            }
            (Self::And(mut a), e) => {
                a.push(e);
                Self::And(a)
            }
            (e, o) => Self::And(vec![e, o]),
        }
    }

    /// `self or other`.
    #[must_use]
    pub fn or(self, other: Expr) -> Self {
        match (self, other) {
            (Self::Or(mut a), e) => {
                a.push(e);
                Self::Or(a)
            }
            (e, o) => Self::Or(vec![e, o]),
        }
    }

    /// `not self`.
    #[must_use]
    pub fn negate(self) -> Self {
        Self::Not(Box::new(self))
    }

    /// Parses the text language, with `now` = the current time.
    ///
    /// # Errors
    /// [`Error::Parse`] pointing at the offending token, or [`Error::InvalidQuery`].
    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::parse_at(text, Timestamp::now())
    }

    /// Parses the text language with a fixed `now` (for tests and replays).
    ///
    /// # Errors
    /// As [`parse`](Self::parse).
    pub fn parse_at(text: &str, now: Timestamp) -> Result<Self, Error> {
        let e = crate::lang::parse(text, now)?;
        e.check()?;
        Ok(e)
    }

    /// Checks that every comparison fits its field's type (e.g. `position`
    /// takes an integer, ordering needs a number, string or time).
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] naming the field.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |f: &Field, why: &str| Err(Error::InvalidQuery(format!("`{f}` {why}")));
        match self {
            Self::True => Ok(()),
            Self::And(v) | Self::Or(v) => v.iter().try_for_each(Self::check),
            Self::Not(e) => e.check(),
            Self::Exists(f) => {
                if f.nullable() {
                    Ok(())
                } else {
                    bad(
                        f,
                        "is always present; `exists` applies to subject, tenant, causation and data/metadata paths",
                    )
                }
            }
            Self::Contains { field, value } => match (field.kind(), value) {
                (FieldKind::Json, Literal::Time(_)) => bad(field, "cannot contain a time"),
                (FieldKind::Json, _) => Ok(()),
                _ => bad(
                    field,
                    "is not a data or metadata path; `contains` applies to those",
                ),
            },
            Self::Text(t) => {
                if text_tokens(t).is_empty() {
                    Err(Error::InvalidQuery(
                        "full-text search needs at least one word".to_owned(),
                    ))
                } else {
                    Ok(())
                }
            }
            Self::Cmp { field, op, value } => {
                let ordering = !matches!(op, CmpOp::Eq | CmpOp::Ne);
                match (field.kind(), value) {
                    (FieldKind::Id, Literal::Str(s)) => {
                        if ordering {
                            return bad(field, "supports only `=` and `!=`");
                        }
                        s.parse::<EventId>()
                            .map(|_| ())
                            .or_else(|_| bad(field, "takes an event id (a UUID)"))
                    }
                    (FieldKind::Text, Literal::Str(_)) | (FieldKind::Time, Literal::Time(_)) => {
                        Ok(())
                    }
                    (FieldKind::Int, Literal::Int(i)) if *i >= 0 => Ok(()),
                    (FieldKind::Json, Literal::Null | Literal::Bool(_)) if ordering => {
                        bad(field, "can only be ordered against a number or a string")
                    }
                    (FieldKind::Json, Literal::Time(_)) => bad(
                        field,
                        "cannot be compared with a time; compare with a string",
                    ),
                    (FieldKind::Json, Literal::Float(f)) if !f.is_finite() => {
                        bad(field, "needs a finite number")
                    }
                    (FieldKind::Json, _) => Ok(()),
                    (FieldKind::Time, _) => bad(
                        field,
                        "takes a time like `now - 1h` or \"2026-12-03T10:00:00Z\"",
                    ),
                    (FieldKind::Int, _) => bad(field, "takes a non-negative integer"),
                    _ => bad(field, "takes a string"),
                }
            }
        }
    }

    /// Whether `event` matches (the in-memory evaluator; SQL backends
    /// translate the same tree).
    #[must_use]
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        match self {
            Self::True => true,
            Self::And(v) => v.iter().all(|e| e.matches(event)),
            Self::Or(v) => v.iter().any(|e| e.matches(event)),
            Self::Not(e) => !e.matches(event),
            Self::Exists(f) => match f {
                Field::Subject => event.subject.is_some(),
                Field::Tenant => event.tenant.is_some(),
                Field::Causation => event.causation_id.is_some(),
                Field::Data(p) => p.resolve(&event.data).is_some(),
                Field::Metadata(p) => event.metadata.as_ref().and_then(|m| p.resolve(m)).is_some(),
                _ => true,
            },
            Self::Contains { field, value } => {
                json_of(field, event).is_some_and(|v| json_contains(v, value))
            }
            Self::Text(t) => {
                let want = text_tokens(t);
                let mut have = std::collections::HashSet::new();
                collect_words(&event.data, &mut have);
                want.iter().all(|w| have.contains(w))
            }
            Self::Cmp { field, op, value } => {
                let text = |s: Option<&str>| match (s, value) {
                    (Some(s), Literal::Str(v)) => op.holds(s.as_bytes().cmp(v.as_bytes())),
                    _ => false,
                };
                let int = |n: u64| match value {
                    Literal::Int(v) => op.holds(n.cmp(&v.unsigned_abs())),
                    _ => false,
                };
                match field {
                    Field::Id => text(Some(&event.id.to_string())),
                    Field::Causation => text(event.causation_id.map(|c| c.to_string()).as_deref()),
                    Field::Type => text(Some(&event.event_type)),
                    Field::Source => text(Some(&event.source)),
                    Field::Subject => text(event.subject.as_deref()),
                    Field::Stream => text(Some(event.stream_id.as_str())),
                    Field::Tenant => text(event.tenant.as_deref()),
                    Field::Correlation => text(Some(&event.correlation_id)),
                    Field::Time => match value {
                        Literal::Time(t) => op.holds(event.time.cmp(t)),
                        _ => false,
                    },
                    Field::Position => int(event.position.get()),
                    Field::Version => int(event.stream_version),
                    Field::SchemaVersion => int(u64::from(event.schema_version)),
                    Field::Data(_) | Field::Metadata(_) => {
                        json_of(field, event).is_some_and(|v| json_cmp(v, *op, value))
                    }
                }
            }
        }
    }
}

fn json_of<'a>(field: &Field, event: &'a RecordedEvent) -> Option<&'a Value> {
    match field {
        Field::Data(p) => p.resolve(&event.data),
        Field::Metadata(p) => event.metadata.as_ref().and_then(|m| p.resolve(m)),
        _ => None,
    }
}

fn num_cmp(v: &serde_json::Number, lit: &Literal) -> Option<std::cmp::Ordering> {
    match lit {
        Literal::Int(i) => match v.as_i64() {
            Some(a) => Some(a.cmp(i)),
            None => v.as_f64()?.partial_cmp(&(*i as f64)),
        },
        Literal::Float(f) => v.as_f64()?.partial_cmp(f),
        _ => None,
    }
}

fn json_eq(v: &Value, lit: &Literal) -> bool {
    match (v, lit) {
        (Value::Null, Literal::Null) => true,
        (Value::Bool(a), Literal::Bool(b)) => a == b,
        (Value::String(a), Literal::Str(b)) => a == b,
        (Value::Number(n), Literal::Int(_) | Literal::Float(_)) => {
            num_cmp(n, lit) == Some(std::cmp::Ordering::Equal)
        }
        _ => false,
    }
}

fn json_cmp(v: &Value, op: CmpOp, lit: &Literal) -> bool {
    match op {
        CmpOp::Eq => json_eq(v, lit),
        CmpOp::Ne => !json_eq(v, lit),
        _ => match (v, lit) {
            (Value::String(a), Literal::Str(b)) => op.holds(a.as_bytes().cmp(b.as_bytes())),
            (Value::Number(n), _) => num_cmp(n, lit).is_some_and(|o| op.holds(o)),
            _ => false,
        },
    }
}

fn json_contains(v: &Value, lit: &Literal) -> bool {
    match (v, lit) {
        (Value::String(s), Literal::Str(needle)) => s.contains(needle.as_str()),
        (Value::Array(items), _) => items.iter().any(|i| json_eq(i, lit)),
        _ => false,
    }
}

/// Splits text into lowercase words of letters and digits (the tokenizer
/// the full-text filters agree on).
pub(crate) fn text_tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn collect_words(v: &Value, out: &mut std::collections::HashSet<String>) {
    match v {
        Value::String(s) => out.extend(text_tokens(s)),
        Value::Array(a) => a.iter().for_each(|v| collect_words(v, out)),
        Value::Object(o) => o.values().for_each(|v| collect_words(v, out)),
        _ => {}
    }
}

/// Read direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Ascending positions.
    #[default]
    Forward,
    /// Descending positions.
    Backward,
}

/// A query: filter, cursor, direction, limit.
///
/// ```
/// use foundation_events::{Expr, Query};
/// let q = Query::new(Expr::event_type("llm.response")).with_limit(50);
/// assert_eq!(q.limit, 50);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The filter.
    pub filter: Expr,
    /// Exclusive cursor: forward reads positions after it, backward before it
    /// (`None` = from the start, or from the end when backward).
    pub cursor: Option<Position>,
    /// Direction.
    pub direction: Direction,
    /// Page size (1..=[`MAX_LIMIT`]).
    pub limit: usize,
}

// === impl Query ===

impl Query {
    /// Forward over events matching `filter`, 100 per page.
    #[must_use]
    pub fn new(filter: Expr) -> Self {
        Self {
            filter,
            cursor: None,
            direction: Direction::Forward,
            limit: 100,
        }
    }

    /// Every event, forward.
    #[must_use]
    pub fn all() -> Self {
        Self::new(Expr::True)
    }

    /// Parses the text language into a query.
    ///
    /// # Errors
    /// As [`Expr::parse`].
    pub fn parse(text: &str) -> Result<Self, Error> {
        Ok(Self::new(Expr::parse(text)?))
    }

    /// Starts after (forward) or before (backward) `cursor`.
    #[must_use]
    pub fn with_cursor(mut self, cursor: Position) -> Self {
        self.cursor = Some(cursor);
        self
    }

    /// Reads backward (newest first).
    #[must_use]
    pub fn backward(mut self) -> Self {
        self.direction = Direction::Backward;
        self
    }

    /// Sets the page size.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Checks limit and filter.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`].
    pub fn check(&self) -> Result<(), Error> {
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(Error::InvalidQuery(format!(
                "limit must be between 1 and {MAX_LIMIT}, got {}",
                self.limit
            )));
        }
        self.filter.check()
    }
}

/// One page of query results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The events, in the query's direction.
    pub events: Vec<RecordedEvent>,
    /// Cursor for the next page, `None` when this page was the last.
    pub next: Option<Position>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{NewEvent, StreamId};
    use serde_json::json;

    fn ev(data: Value) -> RecordedEvent {
        RecordedEvent::from_new(
            NewEvent::new("t", data),
            StreamId::new("s").unwrap(),
            1,
            Position(1),
        )
    }

    #[test]
    fn json_paths_parse_and_resolve() {
        let p = JsonPath::parse("choices[1].text").unwrap();
        assert_eq!(p.to_string(), ".choices[1].text");
        let v = json!({"choices": [{"text": "a"}, {"text": "b"}]});
        assert_eq!(p.resolve(&v), Some(&json!("b")));
        for bad in ["", "a..b", "a[x]", "a[1", "a b", "a[1]x"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn data_comparisons_only_compare_like_types() {
        let e = ev(json!({"n": 5, "s": "abc", "b": true, "z": null, "tags": ["x", "y"]}));
        let d = |p: &str| Expr::data(p).unwrap();
        assert!(d("n").eq(5).matches(&e));
        assert!(d("n").eq(5.0).matches(&e));
        assert!(d("n").gt(4).matches(&e));
        assert!(!d("n").gt("4").matches(&e));
        assert!(!d("s").gt(1).matches(&e));
        assert!(d("s").ge("abc").matches(&e));
        assert!(d("b").eq(true).matches(&e));
        assert!(d("z").eq(Literal::Null).matches(&e));
        assert!(d("z").exists().matches(&e));
        assert!(!d("missing").ne(1).matches(&e));
        assert!(d("s").ne(1).matches(&e));
        assert!(d("tags").contains("y").matches(&e));
        assert!(d("s").contains("bc").matches(&e));
        assert!(Expr::text("ABC").matches(&e));
        assert!(!Expr::text("abc nope").matches(&e));
    }

    #[test]
    fn check_rejects_ill_typed_comparisons() {
        assert!(Expr::field(Field::Position).eq("x").check().is_err());
        assert!(Expr::field(Field::Id).eq("not-a-uuid").check().is_err());
        assert!(Expr::field(Field::Type).exists().check().is_err());
        assert!(Expr::data("a").unwrap().lt(true).check().is_err());
        assert!(Expr::text("  ,, ").check().is_err());
        assert!(Query::all().with_limit(0).check().is_err());
    }
}
