//! The SQL layer shared by the SQLite and PostgreSQL backends: filter
//! translation (one [`Expr`] semantics, two dialects) and row decoding.

#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use crate::envelope::{EventId, Link, Position, RecordedEvent, StreamId, Timestamp};
use crate::error::Error;
use crate::query::{
    CmpOp, Direction, Expr, Field, JsonPath, Literal, PathSegment, Query, text_tokens,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Sqlite,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

/// A bound parameter.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
    Real(f64),
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    TextArray(Vec<String>),
}

/// SQL text with its parameters.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) params: Vec<Param>,
    dialect: Dialect,
}

/// The columns every SELECT of events returns, in [`decode_row`] order.
pub(crate) fn columns(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "position, id, stream_id, stream_version, type, source, subject, time, schema_version, dataschema, data, metadata, correlation_id, causation_id, tenant, links"
        }
        Dialect::Postgres => {
            "position, id, stream_id, stream_version, type, source, subject, time, schema_version, dataschema, data::text, metadata::text, correlation_id, causation_id, tenant, links::text"
        }
    }
}

// === impl Sql ===

impl Sql {
    pub(crate) fn new(dialect: Dialect) -> Self {
        Self {
            text: String::new(),
            params: Vec::new(),
            dialect,
        }
    }

    /// Adds a parameter and returns its placeholder.
    pub(crate) fn param(&mut self, p: Param) -> String {
        // Numbered placeholders (`$n`, which SQLite also accepts) so a
        // parameter can be referenced twice and text order does not matter.
        self.params.push(p);
        format!("${}", self.params.len())
    }

    /// `SELECT … FROM {events} WHERE … ORDER BY position … LIMIT n`.
    pub(crate) fn select(dialect: Dialect, events: &str, query: &Query) -> Self {
        let mut s = Self::new(dialect);
        let filter = s.expr(&query.filter);
        let (cmp, order) = match query.direction {
            Direction::Forward => (">", "ASC"),
            Direction::Backward => ("<", "DESC"),
        };
        let cursor = match query.cursor {
            Some(c) => {
                let p = s.param(Param::Int(pos_i64(c)));
                format!(" AND position {cmp} {p}")
            }
            None => String::new(),
        };
        s.text = format!(
            "SELECT {} FROM {events} WHERE ({filter}){cursor} ORDER BY position {order} LIMIT {}",
            columns(dialect),
            query.limit
        );
        s
    }

    fn column(field: &Field) -> &'static str {
        match field {
            Field::Id => "id",
            Field::Type => "type",
            Field::Source => "source",
            Field::Subject => "subject",
            Field::Stream => "stream_id",
            Field::Tenant => "tenant",
            Field::Correlation => "correlation_id",
            Field::Causation => "causation_id",
            Field::Time => "time",
            Field::Position => "position",
            Field::Version => "stream_version",
            Field::SchemaVersion => "schema_version",
            Field::Data(_) => "data",
            Field::Metadata(_) => "metadata",
        }
    }

    fn path(field: &Field) -> Option<&JsonPath> {
        match field {
            Field::Data(p) | Field::Metadata(p) => Some(p),
            _ => None,
        }
    }

    /// Translates a filter. Leaves are two-valued where it matters: `NOT`
    /// maps SQL's unknown to false first, matching [`Expr::matches`].
    pub(crate) fn expr(&mut self, e: &Expr) -> String {
        match e {
            Expr::True => "TRUE".to_owned(),
            Expr::And(v) if v.is_empty() => "TRUE".to_owned(),
            Expr::Or(v) if v.is_empty() => "FALSE".to_owned(),
            Expr::And(v) => format!(
                "({})",
                v.iter()
                    .map(|e| self.expr(e))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            ),
            Expr::Or(v) => format!(
                "({})",
                v.iter()
                    .map(|e| self.expr(e))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
            Expr::Not(e) => format!("(NOT COALESCE({}, FALSE))", self.expr(e)),
            Expr::Exists(f) => match Self::path(f) {
                Some(p) => {
                    let (ty, _) = self.json_access(f, p);
                    format!("({ty} IS NOT NULL)")
                }
                None => format!("({} IS NOT NULL)", Self::column(f)),
            },
            Expr::Text(words) => {
                let toks = text_tokens(words);
                match self.dialect {
                    Dialect::Sqlite => {
                        let q: Vec<String> = toks.iter().map(|t| format!("\"{t}\"")).collect();
                        let p = self.param(Param::Text(q.join(" ")));
                        format!(
                            "(position IN (SELECT rowid FROM events_fts WHERE events_fts MATCH {p}))"
                        )
                    }
                    Dialect::Postgres => {
                        let p = self.param(Param::Text(toks.join(" & ")));
                        format!("(tsv @@ to_tsquery('simple', {p}))")
                    }
                }
            }
            Expr::Contains { field, value } => {
                let Some(path) = Self::path(field) else {
                    return "FALSE".to_owned();
                };
                self.contains(field, path, value)
            }
            Expr::Cmp { field, op, value } => match Self::path(field) {
                Some(path) => self.json_cmp(field, path, *op, value),
                None => {
                    let col = Self::column(field);
                    let p = match value {
                        Literal::Str(s) => self.param(Param::Text(s.clone())),
                        Literal::Int(i) => self.param(Param::Int(*i)),
                        Literal::Time(t) => self.param(Param::Int(t.as_micros())),
                        // `Expr::check` rejects other literals on envelope fields.
                        _ => return "FALSE".to_owned(),
                    };
                    let ordering = !matches!(op, CmpOp::Eq | CmpOp::Ne);
                    if ordering
                        && self.dialect == Dialect::Postgres
                        && matches!(value, Literal::Str(_))
                    {
                        // Byte order, like SQLite and `Expr::matches`, whatever the database collation.
                        format!("({col} COLLATE \"C\" {} {p})", op_sql(*op))
                    } else {
                        format!("({col} {} {p})", op_sql(*op))
                    }
                }
            },
        }
    }

    /// (expression giving the JSON type or NULL when missing, value expression).
    fn json_access(&mut self, field: &Field, path: &JsonPath) -> (String, String) {
        let col = Self::column(field);
        match self.dialect {
            Dialect::Sqlite => {
                let p = self.param(Param::Text(sqlite_path(path)));
                (
                    format!("json_type({col}, {p})"),
                    format!("json_extract({col}, {p})"),
                )
            }
            Dialect::Postgres => {
                let p = self.param(Param::TextArray(pg_path(path)));
                (
                    format!("({col} #> {p}::text[])"),
                    format!("({col} #> {p}::text[])"),
                )
            }
        }
    }

    fn pg_json_param(&mut self, v: &Literal) -> String {
        let p = self.param(Param::Text(v.to_json().to_string()));
        format!("{p}::jsonb")
    }

    fn json_cmp(&mut self, field: &Field, path: &JsonPath, op: CmpOp, value: &Literal) -> String {
        match self.dialect {
            Dialect::Sqlite => {
                if op == CmpOp::Ne {
                    // "Present and not equal", like `Expr::matches`.
                    let (ty, _) = self.json_access(field, path);
                    let equal = self.json_cmp(field, path, CmpOp::Eq, value);
                    return format!("({ty} IS NOT NULL AND NOT COALESCE({equal}, FALSE))");
                }
                let (ty, val) = self.json_access(field, path);
                match value {
                    Literal::Null => format!("({ty} = 'null')"),
                    Literal::Bool(b) => format!("({ty} = '{b}')"),
                    Literal::Int(i) => {
                        let p = self.param(Param::Int(*i));
                        format!("({ty} IN ('integer', 'real') AND {val} {} {p})", op_sql(op))
                    }
                    Literal::Float(f) => {
                        let p = self.param(Param::Real(*f));
                        format!("({ty} IN ('integer', 'real') AND {val} {} {p})", op_sql(op))
                    }
                    Literal::Str(s) => {
                        let p = self.param(Param::Text(s.clone()));
                        format!("({ty} = 'text' AND {val} {} {p})", op_sql(op))
                    }
                    Literal::Time(_) => "FALSE".to_owned(),
                }
            }
            Dialect::Postgres => {
                let key_only = path
                    .segments()
                    .iter()
                    .all(|s| matches!(s, PathSegment::Key(_)));
                match op {
                    CmpOp::Eq if key_only && matches!(field, Field::Data(_)) => {
                        // Containment is served by the GIN (jsonb_path_ops) index on data.
                        let mut doc = value.to_json();
                        for seg in path.segments().iter().rev() {
                            if let PathSegment::Key(k) = seg {
                                doc = serde_json::json!({ k.clone(): doc });
                            }
                        }
                        let p = self.param(Param::Text(doc.to_string()));
                        format!("(data @> {p}::jsonb)")
                    }
                    CmpOp::Eq => {
                        let (x, _) = self.json_access(field, path);
                        let v = self.pg_json_param(value);
                        format!("({x} = {v})")
                    }
                    CmpOp::Ne => {
                        let (x, _) = self.json_access(field, path);
                        let v = self.pg_json_param(value);
                        format!("({x} IS NOT NULL AND {x} <> {v})")
                    }
                    _ => {
                        let (x, _) = self.json_access(field, path);
                        match value {
                            Literal::Str(s) => {
                                let col = Self::column(field);
                                let pp = self.param(Param::TextArray(pg_path(path)));
                                let p = self.param(Param::Text(s.clone()));
                                format!(
                                    "(jsonb_typeof({x}) = 'string' AND ({col} #>> {pp}::text[]) COLLATE \"C\" {} {p} COLLATE \"C\")",
                                    op_sql(op)
                                )
                            }
                            Literal::Int(_) | Literal::Float(_) => {
                                let v = self.pg_json_param(value);
                                format!("(jsonb_typeof({x}) = 'number' AND {x} {} {v})", op_sql(op))
                            }
                            _ => "FALSE".to_owned(),
                        }
                    }
                }
            }
        }
    }

    fn contains(&mut self, field: &Field, path: &JsonPath, value: &Literal) -> String {
        match self.dialect {
            Dialect::Sqlite => {
                let (ty, _) = self.json_access(field, path);
                let col = Self::column(field);
                let each_path = self.param(Param::Text(sqlite_path(path)));
                let elem = match value {
                    Literal::Null => "json_each.type = 'null'".to_owned(),
                    Literal::Bool(b) => format!("json_each.type = '{b}'"),
                    Literal::Int(i) => {
                        let p = self.param(Param::Int(*i));
                        format!("json_each.type IN ('integer', 'real') AND json_each.value = {p}")
                    }
                    Literal::Float(f) => {
                        let p = self.param(Param::Real(*f));
                        format!("json_each.type IN ('integer', 'real') AND json_each.value = {p}")
                    }
                    Literal::Str(s) => {
                        let p = self.param(Param::Text(s.clone()));
                        format!("json_each.type = 'text' AND json_each.value = {p}")
                    }
                    Literal::Time(_) => return "FALSE".to_owned(),
                };
                let array = format!(
                    "({ty} = 'array' AND EXISTS (SELECT 1 FROM json_each({col}, {each_path}) WHERE {elem}))"
                );
                match value {
                    Literal::Str(s) => {
                        let (ty2, val2) = self.json_access(field, path);
                        let p = self.param(Param::Text(s.clone()));
                        format!("(({ty2} = 'text' AND instr({val2}, {p}) > 0) OR {array})")
                    }
                    _ => array,
                }
            }
            Dialect::Postgres => {
                let (x, _) = self.json_access(field, path);
                let arr = self.param(Param::Text(
                    serde_json::Value::Array(vec![value.to_json()]).to_string(),
                ));
                let array = format!("(jsonb_typeof({x}) = 'array' AND {x} @> {arr}::jsonb)");
                match value {
                    Literal::Str(s) => {
                        let p = self.param(Param::Text(s.clone()));
                        format!(
                            "((jsonb_typeof({x}) = 'string' AND strpos({x} #>> '{{}}', {p}) > 0) OR {array})"
                        )
                    }
                    _ => array,
                }
            }
        }
    }
}

fn sqlite_path(path: &JsonPath) -> String {
    let mut s = String::from("$");
    for seg in path.segments() {
        match seg {
            PathSegment::Key(k) => s.push_str(&format!(".\"{k}\"")),
            PathSegment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn pg_path(path: &JsonPath) -> Vec<String> {
    path.segments()
        .iter()
        .map(|s| match s {
            PathSegment::Key(k) => k.clone(),
            PathSegment::Index(i) => i.to_string(),
        })
        .collect()
}

#[cfg(feature = "sqlite")]
/// The string values of `data` joined by spaces: the document the full-text indexes see.
pub(crate) fn text_document(v: &serde_json::Value) -> String {
    use serde_json::Value;
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push(' ');
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::Object(o) => o.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut s = String::new();
    walk(v, &mut s);
    s
}

/// The SQL spelling of an operator.
fn op_sql(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "=",
        CmpOp::Ne => "<>",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    }
}

pub(crate) fn pos_i64(p: Position) -> i64 {
    i64::try_from(p.get()).unwrap_or(i64::MAX)
}

/// One stored row, decoded column by column (see [`columns`]).
pub(crate) struct RawRow {
    pub(crate) position: i64,
    pub(crate) id: String,
    pub(crate) stream_id: String,
    pub(crate) stream_version: i64,
    pub(crate) event_type: String,
    pub(crate) source: String,
    pub(crate) subject: Option<String>,
    pub(crate) time: i64,
    pub(crate) schema_version: i64,
    pub(crate) dataschema: Option<String>,
    pub(crate) data: String,
    pub(crate) metadata: Option<String>,
    pub(crate) correlation_id: String,
    pub(crate) causation_id: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) links: String,
}

/// Decodes a row of [`columns`].
pub(crate) fn decode_row<R>(row: &R) -> Result<RecordedEvent, Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let raw = RawRow {
        position: row.try_get(0)?,
        id: row.try_get(1)?,
        stream_id: row.try_get(2)?,
        stream_version: row.try_get(3)?,
        event_type: row.try_get(4)?,
        source: row.try_get(5)?,
        subject: row.try_get(6)?,
        time: row.try_get(7)?,
        schema_version: row.try_get(8)?,
        dataschema: row.try_get(9)?,
        data: row.try_get(10)?,
        metadata: row.try_get(11)?,
        correlation_id: row.try_get(12)?,
        causation_id: row.try_get(13)?,
        tenant: row.try_get(14)?,
        links: row.try_get(15)?,
    };
    raw.into_event()
}

/// Decodes a `(relation, other event id)` row of `event_links`.
pub(crate) fn decode_link<R>(row: &R) -> Result<(String, EventId), Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let relation: String = row.try_get(0)?;
    let other: String = row.try_get(1)?;
    let other = other.parse().map_err(|e: uuid::Error| Error::Corrupt {
        position: 0,
        reason: format!("link target: {e}"),
    })?;
    Ok((relation, other))
}

impl RawRow {
    fn into_event(self) -> Result<RecordedEvent, Error> {
        let position = u64::try_from(self.position).unwrap_or(0);
        let bad = |what: &str, e: &dyn std::fmt::Display| Error::Corrupt {
            position,
            reason: format!("{what}: {e}"),
        };
        let parse_id = |s: &str| s.parse::<EventId>().map_err(|e| bad("id", &e));
        Ok(RecordedEvent {
            id: parse_id(&self.id)?,
            event_type: self.event_type,
            source: self.source,
            subject: self.subject,
            time: Timestamp::from_micros(self.time),
            schema_version: u32::try_from(self.schema_version)
                .map_err(|e| bad("schema_version", &e))?,
            dataschema: self.dataschema,
            data: serde_json::from_str(&self.data).map_err(|e| bad("data", &e))?,
            metadata: self
                .metadata
                .map(|m| serde_json::from_str(&m))
                .transpose()
                .map_err(|e| bad("metadata", &e))?,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id.as_deref().map(parse_id).transpose()?,
            tenant: self.tenant,
            links: serde_json::from_str::<Vec<Link>>(&self.links).map_err(|e| bad("links", &e))?,
            stream_id: StreamId::new(self.stream_id).map_err(|e| bad("stream_id", &e))?,
            stream_version: u64::try_from(self.stream_version)
                .map_err(|e| bad("stream_version", &e))?,
            position: Position(position),
        })
    }
}

/// The columns of one event, ready to bind (shared by both backends' inserts).
pub(crate) struct Row {
    pub(crate) position: i64,
    pub(crate) id: String,
    pub(crate) stream_version: i64,
    pub(crate) event_type: String,
    pub(crate) source: String,
    pub(crate) subject: Option<String>,
    pub(crate) time: i64,
    pub(crate) schema_version: i64,
    pub(crate) dataschema: Option<String>,
    pub(crate) data: String,
    pub(crate) metadata: Option<String>,
    pub(crate) correlation_id: String,
    pub(crate) causation_id: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) links: String,
    /// The full-text document (SQLite's FTS5 table; PostgreSQL derives its own).
    #[cfg(feature = "sqlite")]
    pub(crate) text: String,
}

impl Row {
    pub(crate) fn new(e: &crate::envelope::NewEvent, position: u64, stream_version: u64) -> Self {
        Self {
            position: i64::try_from(position).unwrap_or(i64::MAX),
            id: e.id.to_string(),
            stream_version: i64::try_from(stream_version).unwrap_or(i64::MAX),
            event_type: e.event_type.clone(),
            source: e.source.clone(),
            subject: e.subject.clone(),
            time: e.time.as_micros(),
            schema_version: i64::from(e.schema_version),
            dataschema: e.dataschema.clone(),
            data: e.data.to_string(),
            metadata: e.metadata.as_ref().map(ToString::to_string),
            correlation_id: e.correlation_id.clone(),
            causation_id: e.causation_id.map(|c| c.to_string()),
            tenant: e.tenant.clone(),
            links: serde_json::to_string(&e.links).unwrap_or_else(|_| "[]".to_owned()),
            #[cfg(feature = "sqlite")]
            text: text_document(&e.data),
        }
    }
}
