//! Schemas per event type and version, checked on append, and upcasters
//! applied on read.
//!
//! The validator implements the JSON Schema keywords event payloads need
//! (`type`, `properties`, `required`, `additionalProperties`, `items`,
//! `enum`, `const`, `minimum`, `maximum`, `exclusiveMinimum`,
//! `exclusiveMaximum`, `minLength`, `maxLength`, `minItems`, `maxItems`,
//! `allOf`, `anyOf`, `oneOf`, `not`) and accepts the annotations (`$schema`,
//! `$id`, `title`, `description`, `default`, `examples`, `$comment`,
//! `format`, `deprecated`, `readOnly`, `writeOnly`). Any other keyword
//! (`$ref`, `pattern`, `if`, …) is rejected when the schema is registered, so
//! a schema is never half-enforced. See the README for why this is not the
//! `jsonschema` crate.
//!
//! ```
//! use foundation_events::{NewEvent, SchemaRegistry};
//! use serde_json::json;
//!
//! let mut registry = SchemaRegistry::new();
//! registry.register_schema("llm.response", 1, &json!({
//!     "type": "object",
//!     "required": ["model", "tokens"],
//!     "properties": {"model": {"type": "string"}, "tokens": {"type": "integer", "minimum": 0}}
//! }))?;
//! let bad = NewEvent::new("llm.response", json!({"model": "gpt-4o", "tokens": -1}));
//! let err = registry.check(&bad).unwrap_err();
//! assert_eq!(err.path, "/tokens");
//! # Ok::<(), foundation_events::schema::SchemaError>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::Error;

/// An event whose data breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event of type `{event_type}` v{version} breaks its schema at `{path}`: {message}")]
pub struct SchemaViolation {
    /// Event type.
    pub event_type: String,
    /// Schema version.
    pub version: u32,
    /// JSON pointer into `data` of the failing value (`""` = the whole payload).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A schema that cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schema for `{event_type}` v{version} at `{path}`: {message}")]
pub struct SchemaError {
    /// Event type.
    pub event_type: String,
    /// Version.
    pub version: u32,
    /// JSON pointer into the schema.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A function from one version's data to the next version's.
pub type Upcaster = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

#[derive(Default)]
struct TypeEntry {
    schemas: BTreeMap<u32, Node>,
    upcasters: BTreeMap<u32, Upcaster>,
}

/// Schemas and upcasters by event type and version.
#[derive(Default)]
pub struct SchemaRegistry {
    types: HashMap<String, TypeEntry>,
    strict: bool,
}

impl fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (t, e) in &self.types {
            m.entry(
                t,
                &(
                    e.schemas.keys().collect::<Vec<_>>(),
                    e.upcasters.keys().collect::<Vec<_>>(),
                ),
            );
        }
        m.finish()
    }
}

// === impl SchemaRegistry ===

impl SchemaRegistry {
    /// An empty registry: types without a schema are accepted as they are.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// In strict mode, events of a type with no registered schema are rejected.
    #[must_use]
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Registers the JSON Schema for `event_type` at `version`.
    ///
    /// # Errors
    /// When the schema uses an unsupported keyword or a keyword has a wrong value.
    pub fn register_schema(
        &mut self,
        event_type: &str,
        version: u32,
        schema: &Value,
    ) -> Result<&mut Self, SchemaError> {
        let node = compile(schema, "").map_err(|(path, message)| SchemaError {
            event_type: event_type.to_owned(),
            version,
            path,
            message,
        })?;
        if version == 0 {
            return Err(SchemaError {
                event_type: event_type.to_owned(),
                version,
                path: String::new(),
                message: "versions start at 1".to_owned(),
            });
        }
        self.types
            .entry(event_type.to_owned())
            .or_default()
            .schemas
            .insert(version, node);
        Ok(self)
    }

    /// Registers an upcaster from `from_version` to `from_version + 1` of `event_type`.
    /// On read, upcasters chain until no further one is registered.
    pub fn register_upcaster(
        &mut self,
        event_type: &str,
        from_version: u32,
        upcast: impl Fn(Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.types
            .entry(event_type.to_owned())
            .or_default()
            .upcasters
            .insert(from_version, Arc::new(upcast));
        self
    }

    /// The newest version with a schema for `event_type`.
    #[must_use]
    pub fn latest_version(&self, event_type: &str) -> Option<u32> {
        self.types
            .get(event_type)?
            .schemas
            .keys()
            .next_back()
            .copied()
    }

    /// Checks `event`'s data against its type's schema for its version.
    ///
    /// # Errors
    /// The first violation, with the JSON pointer of the failing value.
    pub fn check(&self, event: &NewEvent) -> Result<(), SchemaViolation> {
        let violation = |path: String, message: String| SchemaViolation {
            event_type: event.event_type.clone(),
            version: event.schema_version,
            path,
            message,
        };
        let Some(entry) = self
            .types
            .get(&event.event_type)
            .filter(|e| !e.schemas.is_empty())
        else {
            if self.strict {
                return Err(violation(
                    String::new(),
                    "no schema is registered for this type (strict registry)".to_owned(),
                ));
            }
            return Ok(());
        };
        let Some(node) = entry.schemas.get(&event.schema_version) else {
            let known: Vec<String> = entry.schemas.keys().map(u32::to_string).collect();
            return Err(violation(
                String::new(),
                format!(
                    "no schema for this version; registered versions: {}",
                    known.join(", ")
                ),
            ));
        };
        let mut path = String::new();
        node.validate(&event.data, &mut path)
            .map_err(|(p, m)| violation(p, m))
    }

    /// Upcasts `event` in place to the newest version reachable by upcasters.
    ///
    /// # Errors
    /// [`Error::Decode`] when an upcaster fails.
    pub fn upcast(&self, event: &mut RecordedEvent) -> Result<(), Error> {
        let Some(entry) = self.types.get(&event.event_type) else {
            return Ok(());
        };
        while let Some(up) = entry.upcasters.get(&event.schema_version) {
            let data = std::mem::take(&mut event.data);
            event.data = up(data).map_err(|reason| Error::Decode {
                id: event.id,
                event_type: event.event_type.clone(),
                reason: format!("upcasting from v{}: {reason}", event.schema_version),
            })?;
            event.schema_version += 1;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "null" => Self::Null,
            "boolean" => Self::Boolean,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "string" => Self::String,
            "array" => Self::Array,
            "object" => Self::Object,
            _ => return None,
        })
    }

    fn admits(self, v: &Value) -> bool {
        match (self, v) {
            (Self::Null, Value::Null)
            | (Self::Boolean, Value::Bool(_))
            | (Self::Number, Value::Number(_))
            | (Self::String, Value::String(_))
            | (Self::Array, Value::Array(_))
            | (Self::Object, Value::Object(_)) => true,
            (Self::Integer, Value::Number(n)) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Boolean => "boolean",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::String => "string",
            Self::Array => "array",
            Self::Object => "object",
        }
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// `false` schema.
    never: bool,
    types: Option<Vec<JsonType>>,
    properties: Vec<(String, Node)>,
    required: Vec<String>,
    additional: Option<Box<Node>>,
    items: Option<Box<Node>>,
    enumeration: Option<Vec<Value>>,
    constant: Option<Value>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,
}

type Fail = (String, String);

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn compile(schema: &Value, at: &str) -> Result<Node, Fail> {
    let obj = match schema {
        Value::Bool(true) => return Ok(Node::default()),
        Value::Bool(false) => {
            return Ok(Node {
                never: true,
                ..Node::default()
            });
        }
        Value::Object(o) => o,
        _ => {
            return Err((
                at.to_owned(),
                "a schema must be an object or a boolean".to_owned(),
            ));
        }
    };
    let mut n = Node::default();
    let here = |k: &str| format!("{at}/{}", escape_pointer(k));
    let num = |k: &str, v: &Value| {
        v.as_f64()
            .ok_or_else(|| (here(k), "must be a number".to_owned()))
    };
    let count = |k: &str, v: &Value| {
        v.as_u64()
            .and_then(|u| usize::try_from(u).ok())
            .ok_or_else(|| (here(k), "must be a non-negative integer".to_owned()))
    };
    let list = |k: &str, v: &Value| -> Result<Vec<Node>, Fail> {
        let arr = v
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| (here(k), "must be a non-empty array of schemas".to_owned()))?;
        arr.iter()
            .enumerate()
            .map(|(i, s)| compile(s, &format!("{}/{i}", here(k))))
            .collect()
    };
    for (k, v) in obj {
        match k.as_str() {
            "$schema" | "$id" | "title" | "description" | "default" | "examples" | "$comment"
            | "format" | "deprecated" | "readOnly" | "writeOnly" => {}
            "type" => {
                let names: Vec<&Value> = match v {
                    Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                let mut ts = Vec::new();
                for t in names {
                    let t = t.as_str().and_then(JsonType::parse).ok_or_else(|| {
                        (here(k), "must name JSON types (null, boolean, integer, number, string, array, object)".to_owned())
                    })?;
                    ts.push(t);
                }
                n.types = Some(ts);
            }
            "properties" => {
                let props = v
                    .as_object()
                    .ok_or_else(|| (here(k), "must be an object".to_owned()))?;
                for (name, s) in props {
                    n.properties.push((
                        name.clone(),
                        compile(s, &format!("{}/{}", here(k), escape_pointer(name)))?,
                    ));
                }
            }
            "required" => {
                let arr = v
                    .as_array()
                    .ok_or_else(|| (here(k), "must be an array of strings".to_owned()))?;
                for r in arr {
                    n.required.push(
                        r.as_str()
                            .ok_or_else(|| (here(k), "must be an array of strings".to_owned()))?
                            .to_owned(),
                    );
                }
            }
            "additionalProperties" => n.additional = Some(Box::new(compile(v, &here(k))?)),
            "items" => n.items = Some(Box::new(compile(v, &here(k))?)),
            "enum" => {
                n.enumeration = Some(
                    v.as_array()
                        .ok_or_else(|| (here(k), "must be an array".to_owned()))?
                        .clone(),
                )
            }
            "const" => n.constant = Some(v.clone()),
            "minimum" => n.minimum = Some(num(k, v)?),
            "maximum" => n.maximum = Some(num(k, v)?),
            "exclusiveMinimum" => n.exclusive_minimum = Some(num(k, v)?),
            "exclusiveMaximum" => n.exclusive_maximum = Some(num(k, v)?),
            "minLength" => n.min_length = Some(count(k, v)?),
            "maxLength" => n.max_length = Some(count(k, v)?),
            "minItems" => n.min_items = Some(count(k, v)?),
            "maxItems" => n.max_items = Some(count(k, v)?),
            "allOf" => n.all_of = list(k, v)?,
            "anyOf" => n.any_of = list(k, v)?,
            "oneOf" => n.one_of = list(k, v)?,
            "not" => n.not = Some(Box::new(compile(v, &here(k))?)),
            other => {
                return Err((
                    here(other),
                    format!(
                        "unsupported keyword `{other}` (the validator rejects keywords it would not enforce)"
                    ),
                ));
            }
        }
    }
    Ok(n)
}

fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

impl Node {
    fn validate(&self, v: &Value, path: &mut String) -> Result<(), Fail> {
        let fail = |path: &String, m: String| Err((path.clone(), m));
        if self.never {
            return fail(path, "no value is allowed here".to_owned());
        }
        if let Some(ts) = &self.types
            && !ts.iter().any(|t| t.admits(v))
        {
            let names: Vec<&str> = ts.iter().map(|t| t.name()).collect();
            return fail(
                path,
                format!("expected {}, found {}", names.join(" or "), type_of(v)),
            );
        }
        if let Some(c) = &self.constant
            && !json_equal(c, v)
        {
            return fail(path, format!("must equal {c}"));
        }
        if let Some(e) = &self.enumeration
            && !e.iter().any(|x| json_equal(x, v))
        {
            return fail(path, format!("must be one of {}", Value::Array(e.clone())));
        }
        match v {
            Value::Number(num) => {
                let x = num.as_f64().unwrap_or(f64::NAN);
                let checks = [
                    (
                        self.minimum,
                        x >= self.minimum.unwrap_or(f64::MIN),
                        "at least",
                    ),
                    (
                        self.maximum,
                        x <= self.maximum.unwrap_or(f64::MAX),
                        "at most",
                    ),
                    (
                        self.exclusive_minimum,
                        x > self.exclusive_minimum.unwrap_or(f64::MIN),
                        "greater than",
                    ),
                    (
                        self.exclusive_maximum,
                        x < self.exclusive_maximum.unwrap_or(f64::MAX),
                        "less than",
                    ),
                ];
                for (bound, ok, word) in checks {
                    if let Some(b) = bound
                        && !ok
                    {
                        return fail(path, format!("must be {word} {b}"));
                    }
                }
            }
            Value::String(s) => {
                let len = s.chars().count();
                if let Some(m) = self.min_length
                    && len < m
                {
                    return fail(path, format!("must be at least {m} characters long"));
                }
                if let Some(m) = self.max_length
                    && len > m
                {
                    return fail(path, format!("must be at most {m} characters long"));
                }
            }
            Value::Array(items) => {
                if let Some(m) = self.min_items
                    && items.len() < m
                {
                    return fail(path, format!("must have at least {m} items"));
                }
                if let Some(m) = self.max_items
                    && items.len() > m
                {
                    return fail(path, format!("must have at most {m} items"));
                }
                if let Some(schema) = &self.items {
                    for (i, item) in items.iter().enumerate() {
                        let len = path.len();
                        path.push_str(&format!("/{i}"));
                        schema.validate(item, path)?;
                        path.truncate(len);
                    }
                }
            }
            Value::Object(map) => self.validate_object(map, path)?,
            _ => {}
        }
        for s in &self.all_of {
            s.validate(v, path)?;
        }
        if !self.any_of.is_empty()
            && !self
                .any_of
                .iter()
                .any(|s| s.validate(v, &mut path.clone()).is_ok())
        {
            return fail(path, "matches none of the `anyOf` schemas".to_owned());
        }
        if !self.one_of.is_empty() {
            let n = self
                .one_of
                .iter()
                .filter(|s| s.validate(v, &mut path.clone()).is_ok())
                .count();
            if n != 1 {
                return fail(
                    path,
                    format!("must match exactly one `oneOf` schema, matches {n}"),
                );
            }
        }
        if let Some(s) = &self.not
            && s.validate(v, &mut path.clone()).is_ok()
        {
            return fail(path, "must not match the `not` schema".to_owned());
        }
        Ok(())
    }

    fn validate_object(&self, map: &Map<String, Value>, path: &mut String) -> Result<(), Fail> {
        for r in &self.required {
            if !map.contains_key(r) {
                return Err((
                    format!("{path}/{}", escape_pointer(r)),
                    "is required".to_owned(),
                ));
            }
        }
        for (k, v) in map {
            let len = path.len();
            path.push('/');
            path.push_str(&escape_pointer(k));
            if let Some((_, s)) = self.properties.iter().find(|(name, _)| name == k) {
                s.validate(v, path)?;
            } else if let Some(extra) = &self.additional {
                if extra.never {
                    return Err((path.clone(), "is not an allowed property".to_owned()));
                }
                extra.validate(v, path)?;
            }
            path.truncate(len);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Position, StreamId};
    use serde_json::json;

    fn registry() -> SchemaRegistry {
        let mut r = SchemaRegistry::new();
        r.register_schema(
            "t",
            1,
            &json!({
                "type": "object",
                "required": ["a"],
                "additionalProperties": false,
                "properties": {
                    "a": {"type": "integer", "minimum": 0},
                    "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}},
                    "kind": {"enum": ["x", "y"]},
                    "o": {"anyOf": [{"type": "string"}, {"type": "null"}]}
                }
            }),
        )
        .unwrap();
        r
    }

    fn check(r: &SchemaRegistry, data: Value) -> Result<(), SchemaViolation> {
        r.check(&NewEvent::new("t", data))
    }

    #[test]
    fn reports_the_failing_path() {
        let r = registry();
        assert!(check(&r, json!({"a": 1, "tags": ["ab"], "kind": "x", "o": null})).is_ok());
        assert_eq!(check(&r, json!({})).unwrap_err().path, "/a");
        assert_eq!(check(&r, json!({"a": -1})).unwrap_err().path, "/a");
        assert_eq!(
            check(&r, json!({"a": 1.5})).unwrap_err().message,
            "expected integer, found number"
        );
        assert_eq!(
            check(&r, json!({"a": 1, "tags": ["ok", "toolong"]}))
                .unwrap_err()
                .path,
            "/tags/1"
        );
        assert_eq!(
            check(&r, json!({"a": 1, "zzz": 1})).unwrap_err().path,
            "/zzz"
        );
        assert_eq!(
            check(&r, json!({"a": 1, "kind": "q"})).unwrap_err().path,
            "/kind"
        );
        assert_eq!(check(&r, json!({"a": 1, "o": 3})).unwrap_err().path, "/o");
        assert_eq!(check(&r, json!([])).unwrap_err().path, "");
    }

    #[test]
    fn unknown_versions_and_strict_mode() {
        let r = registry();
        let e = r
            .check(&NewEvent::new("t", json!({"a": 1})).with_schema_version(2))
            .unwrap_err();
        assert!(e.message.contains("registered versions: 1"));
        assert!(r.check(&NewEvent::new("other", json!(1))).is_ok());
        let strict = SchemaRegistry::new().with_strict(true);
        assert!(strict.check(&NewEvent::new("other", json!(1))).is_err());
    }

    #[test]
    fn unsupported_keywords_are_rejected_at_registration() {
        let mut r = SchemaRegistry::new();
        let e = r
            .register_schema("t", 1, &json!({"properties": {"a": {"pattern": "^x"}}}))
            .unwrap_err();
        assert_eq!(e.path, "/properties/a/pattern");
        assert!(r.register_schema("t", 1, &json!({"minimum": "x"})).is_err());
        assert!(r.register_schema("t", 1, &json!(3)).is_err());
    }

    #[test]
    fn upcasters_chain() {
        let mut r = SchemaRegistry::new();
        r.register_upcaster("t", 1, |mut v| {
            v["b"] = v["a"].clone();
            Ok(v)
        });
        r.register_upcaster("t", 2, |v| {
            if v["b"].is_null() {
                Err("no b".into())
            } else {
                Ok(json!({"c": v["b"]}))
            }
        });
        let mut e = RecordedEvent::from_new(
            NewEvent::new("t", json!({"a": 7})),
            StreamId::new("s").unwrap(),
            1,
            Position(1),
        );
        r.upcast(&mut e).unwrap();
        assert_eq!(e.schema_version, 3);
        assert_eq!(e.data, json!({"c": 7}));
        let mut bad = RecordedEvent::from_new(
            NewEvent::new("t", json!({})),
            StreamId::new("s").unwrap(),
            1,
            Position(1),
        );
        assert!(r.upcast(&mut bad).is_err());
    }
}
