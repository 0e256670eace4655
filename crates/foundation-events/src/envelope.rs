//! The event envelope: what every stored event carries.
//!
//! [`NewEvent`] is what a producer hands to [`append`](crate::EventStore::append);
//! [`RecordedEvent`] is what the store gives back, with its stream version and
//! global [`Position`]. The attributes follow CloudEvents 1.0 (`id`, `source`,
//! `type`, `subject`, `time`, `dataschema`) plus the event-sourcing ones
//! (stream, version, position) and the tracing ones (correlation, causation).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, InvalidEvent};

/// Longest accepted type, source, subject, stream, tenant, correlation or relation name.
pub const MAX_NAME_LEN: usize = 512;

/// An event id: a UUIDv7, so ids sort by creation time.
///
/// ```
/// use foundation_events::EventId;
/// let a = EventId::new();
/// let b: EventId = a.to_string().parse().unwrap();
/// assert_eq!(a, b);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

// === impl EventId ===

impl EventId {
    /// A fresh time-ordered id (UUIDv7).
    #[must_use]
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps an existing UUID (any version).
    #[must_use]
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID.
    #[must_use]
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// A position in the global log (`$all`): strictly increasing in commit order.
///
/// [`Position::START`] (0) is "before the first event"; the first event is at 1.
/// A reader that has seen position `p` will never later see an event at a
/// position `<= p` appear (see the crate docs, "Global order").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Position(pub u64);

impl Position {
    /// Before the first event: read or subscribe from here to see everything.
    pub const START: Position = Position(0);

    /// The raw number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A point in wall-clock time with microsecond precision (UTC), serialized as RFC 3339.
///
/// ```
/// use foundation_events::Timestamp;
/// let t: Timestamp = "2026-12-03T10:00:00.5Z".parse().unwrap();
/// assert_eq!(t.to_string(), "2026-12-03T10:00:00.500000Z");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

// === impl Timestamp ===

impl Timestamp {
    /// The current system time.
    #[must_use]
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// From microseconds since the Unix epoch.
    #[must_use]
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// Microseconds since the Unix epoch.
    #[must_use]
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// From a `SystemTime` (saturating outside ±292,000 years).
    #[must_use]
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => Self(-i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }

    /// As a `SystemTime`.
    #[must_use]
    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_micros(self.0.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_micros(self.0.unsigned_abs())
        }
    }

    /// `self - d`, saturating.
    #[must_use]
    pub fn saturating_sub(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    /// `self + d`, saturating.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            // humantime only formats times after the epoch.
            return write!(f, "@{}us", self.0);
        }
        fmt::Display::fmt(&humantime::format_rfc3339_micros(self.to_system_time()), f)
    }
}

/// Error parsing a [`Timestamp`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid timestamp `{input}`: expected RFC 3339 like 2026-12-03T10:00:00Z")]
pub struct ParseTimestampError {
    input: String,
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_rfc3339(s)
            .or_else(|_| humantime::parse_rfc3339_weak(s))
            .map(Self::from_system_time)
            .map_err(|_| ParseTimestampError {
                input: s.to_owned(),
            })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Optimistic concurrency for an append, as in EventStoreDB/KurrentDB.
///
/// Stream versions count events: a stream's first event has version 1, and
/// a stream with `n` events is at version `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist (any version).
    StreamExists,
    /// The stream must be at exactly this version (`Exact(0)` is the same as `NoStream`).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `actual` (0 = absent) satisfies this expectation.
    #[must_use]
    pub const fn matches(self, actual: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual == 0,
            Self::StreamExists => actual > 0,
            Self::Exact(v) => actual == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::StreamExists => f.write_str("stream exists"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// A typed link from one event to another, beyond causation
/// (`retries`, `compensates`, `related_to`, …). Queryable both ways with
/// [`EventStore::related`](crate::EventStore::related).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Link {
    /// The relation name, e.g. `retries`.
    pub relation: String,
    /// The event this one points to.
    pub target: EventId,
}

/// An event to append. Build it with [`NewEvent::new`] or [`NewEvent::typed`]
/// and the `with_*` methods.
///
/// ```
/// use foundation_events::NewEvent;
/// use serde_json::json;
///
/// let request = NewEvent::new("llm.request", json!({"model": "gpt-4o"})).with_source("demo");
/// let response = NewEvent::new("llm.response", json!({"tokens": 42}))
///     .caused_by_new(&request)
///     .with_tenant("acme");
/// assert_eq!(response.causation_id, Some(request.id));
/// assert_eq!(response.correlation_id, request.correlation_id);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// Unique id; retrying an append with the same ids is idempotent.
    pub id: EventId,
    /// Event type, e.g. `llm.response` (CloudEvents `type`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// Where it happened (CloudEvents `source`), e.g. a service name.
    pub source: String,
    /// What it is about within the source (CloudEvents `subject`).
    pub subject: Option<String>,
    /// When it happened.
    pub time: Timestamp,
    /// Version of the data's schema for this type (starts at 1).
    pub schema_version: u32,
    /// URI of the data schema (CloudEvents `dataschema`), if any.
    pub dataschema: Option<String>,
    /// The payload.
    pub data: Value,
    /// Free-form metadata; must be a JSON object when present.
    pub metadata: Option<Value>,
    /// Groups every event of one workflow; defaults to the event's own id.
    pub correlation_id: String,
    /// The event that caused this one.
    pub causation_id: Option<EventId>,
    /// The tenant the event belongs to.
    pub tenant: Option<String>,
    /// Typed links to other events.
    pub links: Vec<Link>,
}

// === impl NewEvent ===

impl NewEvent {
    /// A new event of `event_type` with `data`, a fresh id, the current time,
    /// schema version 1, source `unknown` and correlation id = its own id.
    #[must_use]
    pub fn new(event_type: impl Into<String>, data: Value) -> Self {
        let id = EventId::new();
        Self {
            id,
            event_type: event_type.into(),
            source: "unknown".to_owned(),
            subject: None,
            time: Timestamp::now(),
            schema_version: 1,
            dataschema: None,
            data,
            metadata: None,
            correlation_id: id.to_string(),
            causation_id: None,
            tenant: None,
            links: Vec::new(),
        }
    }

    /// A new event from a [`TypedEvent`] (type name, version and data from the type).
    ///
    /// # Errors
    /// When the value does not serialize to JSON.
    pub fn typed<E: TypedEvent>(event: &E) -> Result<Self, Error> {
        let data = serde_json::to_value(event).map_err(|e| Error::Encode {
            event_type: E::TYPE.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self::new(E::TYPE, data).with_schema_version(E::VERSION))
    }

    /// Sets the id (e.g. a deterministic one for idempotent retries).
    #[must_use]
    pub fn with_id(mut self, id: EventId) -> Self {
        if self.correlation_id == self.id.to_string() {
            self.correlation_id = id.to_string();
        }
        self.id = id;
        self
    }

    /// Sets the source.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets the subject.
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the time.
    #[must_use]
    pub fn with_time(mut self, time: Timestamp) -> Self {
        self.time = time;
        self
    }

    /// Sets the schema version.
    #[must_use]
    pub fn with_schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// Sets the CloudEvents `dataschema` URI.
    #[must_use]
    pub fn with_dataschema(mut self, uri: impl Into<String>) -> Self {
        self.dataschema = Some(uri.into());
        self
    }

    /// Sets the metadata (must be a JSON object).
    #[must_use]
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = correlation_id.into();
        self
    }

    /// Sets the causation id (the correlation id is left as is).
    #[must_use]
    pub fn with_causation_id(mut self, causation_id: EventId) -> Self {
        self.causation_id = Some(causation_id);
        self
    }

    /// Sets the tenant.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Adds a typed link to another event.
    #[must_use]
    pub fn with_link(mut self, relation: impl Into<String>, target: EventId) -> Self {
        self.links.push(Link {
            relation: relation.into(),
            target,
        });
        self
    }

    /// Marks this event as caused by a stored event: causation = its id,
    /// correlation = its correlation id, tenant inherited when unset.
    #[must_use]
    pub fn caused_by(self, cause: &RecordedEvent) -> Self {
        self.inherit(cause.id, &cause.correlation_id, cause.tenant.as_ref())
    }

    /// Like [`caused_by`](Self::caused_by) for an event not yet appended
    /// (e.g. in the same batch).
    #[must_use]
    pub fn caused_by_new(self, cause: &NewEvent) -> Self {
        self.inherit(cause.id, &cause.correlation_id, cause.tenant.as_ref())
    }

    fn inherit(mut self, cause: EventId, correlation_id: &str, tenant: Option<&String>) -> Self {
        self.causation_id = Some(cause);
        correlation_id.clone_into(&mut self.correlation_id);
        if self.tenant.is_none() {
            self.tenant = tenant.cloned();
        }
        self
    }

    /// Checks the envelope (names non-empty and bounded, metadata an object,
    /// no self-links).
    ///
    /// # Errors
    /// The first problem found, naming the field.
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        let bad = |field: &'static str, reason: String| InvalidEvent {
            index: 0,
            id: self.id,
            field,
            reason,
        };
        check_name(&self.event_type).map_err(|r| bad("type", r))?;
        check_name(&self.source).map_err(|r| bad("source", r))?;
        check_name(&self.correlation_id).map_err(|r| bad("correlation_id", r))?;
        if let Some(s) = &self.subject {
            check_name(s).map_err(|r| bad("subject", r))?;
        }
        if let Some(t) = &self.tenant {
            check_name(t).map_err(|r| bad("tenant", r))?;
        }
        if let Some(m) = &self.metadata
            && !m.is_object()
        {
            return Err(bad("metadata", "must be a JSON object".to_owned()));
        }
        if self.schema_version == 0 {
            return Err(bad("schema_version", "must be at least 1".to_owned()));
        }
        for l in &self.links {
            check_name(&l.relation).map_err(|r| bad("links.relation", r))?;
            if l.target == self.id {
                return Err(bad(
                    "links.target",
                    "an event cannot link to itself".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if s.len() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} bytes"));
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}

/// A stream id: a non-empty name of at most [`MAX_NAME_LEN`] bytes without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

impl StreamId {
    /// Validates a stream name.
    ///
    /// # Errors
    /// When the name is empty, too long or holds control characters.
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        check_name(&name).map_err(|reason| Error::InvalidStream {
            stream: name.clone(),
            reason,
        })?;
        Ok(Self(name))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StreamId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<StreamId> for String {
    fn from(s: StreamId) -> String {
        s.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored event: the envelope plus stream version and global position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Unique id.
    pub id: EventId,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// CloudEvents `source`.
    pub source: String,
    /// CloudEvents `subject`.
    pub subject: Option<String>,
    /// When it happened.
    pub time: Timestamp,
    /// Schema version of `data` (after upcasting, the latest registered).
    pub schema_version: u32,
    /// CloudEvents `dataschema`.
    pub dataschema: Option<String>,
    /// The payload.
    pub data: Value,
    /// Metadata object.
    pub metadata: Option<Value>,
    /// Correlation id.
    pub correlation_id: String,
    /// The event that caused this one.
    pub causation_id: Option<EventId>,
    /// Tenant.
    pub tenant: Option<String>,
    /// Typed links to other events.
    pub links: Vec<Link>,
    /// The stream it was appended to.
    pub stream_id: StreamId,
    /// Its version within the stream (1 for the first event).
    pub stream_version: u64,
    /// Its position in the global log.
    pub position: Position,
}

// === impl RecordedEvent ===

impl RecordedEvent {
    /// Builds the stored form of `event` (used by backends).
    pub(crate) fn from_new(
        event: NewEvent,
        stream_id: StreamId,
        stream_version: u64,
        position: Position,
    ) -> Self {
        Self {
            id: event.id,
            event_type: event.event_type,
            source: event.source,
            subject: event.subject,
            time: event.time,
            schema_version: event.schema_version,
            dataschema: event.dataschema,
            data: event.data,
            metadata: event.metadata,
            correlation_id: event.correlation_id,
            causation_id: event.causation_id,
            tenant: event.tenant,
            links: event.links,
            stream_id,
            stream_version,
            position,
        }
    }

    /// Whether `new` describes the same event (used for idempotent retries).
    pub(crate) fn same_as(&self, new: &NewEvent, stream: &StreamId) -> bool {
        self.id == new.id && &self.stream_id == stream && self.event_type == new.event_type
    }

    /// Decodes the data as `E`, checking type name and schema version.
    ///
    /// # Errors
    /// [`Error::Decode`] when the type or version differ or the data does not fit `E`.
    pub fn decode<E: TypedEvent>(&self) -> Result<E, Error> {
        let fail = |reason: String| Error::Decode {
            id: self.id,
            event_type: self.event_type.clone(),
            reason,
        };
        if self.event_type != E::TYPE {
            return Err(fail(format!("expected type `{}`", E::TYPE)));
        }
        if self.schema_version != E::VERSION {
            return Err(fail(format!(
                "stored schema version {} is not {} (register an upcaster)",
                self.schema_version,
                E::VERSION
            )));
        }
        serde_json::from_value(self.data.clone()).map_err(|e| fail(e.to_string()))
    }

    /// The event as a CloudEvents 1.0 JSON object (structured mode); stream,
    /// position, correlation and causation travel as extension attributes.
    #[must_use]
    pub fn to_cloudevent(&self) -> Value {
        let mut ce = serde_json::json!({
            "specversion": "1.0",
            "id": self.id.to_string(),
            "source": self.source,
            "type": self.event_type,
            "time": self.time.to_string(),
            "datacontenttype": "application/json",
            "data": self.data,
            "correlationid": self.correlation_id,
            "stream": self.stream_id.as_str(),
            "streamversion": self.stream_version,
            "position": self.position.get(),
            "schemaversion": self.schema_version,
        });
        if let Value::Object(map) = &mut ce {
            if let Some(s) = &self.subject {
                map.insert("subject".into(), Value::String(s.clone()));
            }
            if let Some(s) = &self.dataschema {
                map.insert("dataschema".into(), Value::String(s.clone()));
            }
            if let Some(c) = &self.causation_id {
                map.insert("causationid".into(), Value::String(c.to_string()));
            }
            if let Some(t) = &self.tenant {
                map.insert("tenant".into(), Value::String(t.clone()));
            }
        }
        ce
    }
}

/// A Rust type that is an event: a type name, a schema version and serde.
///
/// ```
/// use foundation_events::TypedEvent;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct LlmResponse { model: String, tokens: u64 }
///
/// impl TypedEvent for LlmResponse {
///     const TYPE: &'static str = "llm.response";
///     const VERSION: u32 = 2;
/// }
/// ```
pub trait TypedEvent: Serialize + DeserializeOwned {
    /// The event type name stored in the envelope.
    const TYPE: &'static str;
    /// The schema version this Rust type reads and writes (starts at 1).
    const VERSION: u32;
}

/// What an append returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream's version after the append.
    pub stream_version: u64,
    /// Position of the first event of the batch.
    pub first_position: Position,
    /// Position of the last event of the batch.
    pub last_position: Position,
    /// True when every event was already stored (an idempotent retry) and nothing was written.
    pub duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trips() {
        let t = Timestamp::from_micros(1_764_756_000_123_456);
        let s = t.to_string();
        assert_eq!(s.parse::<Timestamp>().unwrap(), t);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn expected_version_matches() {
        assert!(ExpectedVersion::Any.matches(0));
        assert!(ExpectedVersion::NoStream.matches(0));
        assert!(!ExpectedVersion::NoStream.matches(1));
        assert!(ExpectedVersion::StreamExists.matches(3));
        assert!(ExpectedVersion::Exact(2).matches(2));
        assert!(!ExpectedVersion::Exact(2).matches(3));
    }

    #[test]
    fn envelope_validation_names_the_field() {
        let e = NewEvent::new("", Value::Null);
        assert_eq!(e.validate().unwrap_err().field, "type");
        let e = NewEvent::new("t", Value::Null).with_metadata(Value::Bool(true));
        assert_eq!(e.validate().unwrap_err().field, "metadata");
        let e = NewEvent::new("t", Value::Null);
        let id = e.id;
        assert_eq!(
            e.with_link("retries", id).validate().unwrap_err().field,
            "links.target"
        );
        assert!(StreamId::new("").is_err());
        assert!(StreamId::new("a\nb").is_err());
    }

    #[test]
    fn cloudevent_has_required_attributes() {
        let e = RecordedEvent::from_new(
            NewEvent::new("t", serde_json::json!({"a": 1})).with_subject("s"),
            StreamId::new("s-1").unwrap(),
            1,
            Position(7),
        );
        let ce = e.to_cloudevent();
        for k in [
            "specversion",
            "id",
            "source",
            "type",
            "time",
            "subject",
            "position",
        ] {
            assert!(ce.get(k).is_some(), "{k}");
        }
    }
}
