//! The PostgreSQL backend: multi-node, LISTEN/NOTIFY, tsvector, jsonb GIN.

use std::sync::Arc;
use std::time::Duration;

use foundation_core::{Validate, Validator};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Row as _};
use tokio::sync::{oneshot, watch};

use super::{Dialect, Param, Row, Sql, decode_link, decode_row};
use crate::envelope::{
    AppendResult, EventId, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId,
};
use crate::error::Error;
use crate::memory::decide;
use crate::query::{Expr, Query};
use crate::schema::SchemaRegistry;
use crate::store::{Backend, LinkDirection, advance_head};

/// Configuration of a [`PostgresStore`].
///
/// ```
/// use foundation_events::PostgresConfig;
/// let c: PostgresConfig = serde_json::from_str(r#"{"url": "postgres://app@db/app", "schema": "events"}"#).unwrap();
/// assert_eq!(c.max_connections, 8);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct PostgresConfig {
    /// Connection URL, `postgres://user@host:port/db`.
    pub url: String,
    /// The schema holding the tables (created when missing): lowercase letters, digits, `_`; at most 40.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Pool size, 1..=256 (one more connection is used for LISTEN).
    #[serde(default = "default_connections")]
    pub max_connections: u32,
    /// How often live subscriptions re-poll when no notification arrives.
    #[serde(
        default = "default_poll",
        with = "foundation_core::serde_util::duration"
    )]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub poll_interval: Duration,
}

fn default_schema() -> String {
    "foundation_events".to_owned()
}
fn default_connections() -> u32 {
    8
}
fn default_poll() -> Duration {
    Duration::from_secs(2)
}

impl PostgresConfig {
    /// Defaults for `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: default_schema(),
            max_connections: default_connections(),
            poll_interval: default_poll(),
        }
    }

    /// Sets the schema.
    #[must_use]
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }
}

impl Validate for PostgresConfig {
    fn validate_into(&self, v: &mut Validator) {
        v.check(
            self.url.parse::<PgConnectOptions>().is_ok(),
            "url",
            "must be a postgres:// URL",
        );
        let s = &self.schema;
        v.check(
            !s.is_empty()
                && s.len() <= 40
                && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "schema",
            "must be 1-40 lowercase letters, digits or `_`, not starting with a digit",
        );
        v.check(
            (1..=256).contains(&self.max_connections),
            "max_connections",
            "must be between 1 and 256",
        );
        v.check(
            self.poll_interval >= Duration::from_millis(10)
                && self.poll_interval <= Duration::from_secs(300),
            "poll_interval",
            "must be between 10ms and 5m",
        );
    }
}

fn schema_sql(s: &str) -> Vec<String> {
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {s}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.events (
                position BIGINT PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                stream_id TEXT NOT NULL,
                stream_version BIGINT NOT NULL,
                type TEXT NOT NULL,
                source TEXT NOT NULL,
                subject TEXT,
                time BIGINT NOT NULL,
                schema_version BIGINT NOT NULL,
                dataschema TEXT,
                data JSONB NOT NULL,
                metadata JSONB,
                correlation_id TEXT NOT NULL,
                causation_id TEXT,
                tenant TEXT,
                links JSONB NOT NULL,
                tsv TSVECTOR GENERATED ALWAYS AS (jsonb_to_tsvector('simple'::regconfig, data, '[\"string\"]'::jsonb)) STORED,
                UNIQUE (stream_id, stream_version)
            )"
        ),
        format!("CREATE INDEX IF NOT EXISTS events_type ON {s}.events (type, position)"),
        format!("CREATE INDEX IF NOT EXISTS events_correlation ON {s}.events (correlation_id, position)"),
        format!("CREATE INDEX IF NOT EXISTS events_causation ON {s}.events (causation_id)"),
        format!("CREATE INDEX IF NOT EXISTS events_tenant ON {s}.events (tenant, position)"),
        format!("CREATE INDEX IF NOT EXISTS events_subject ON {s}.events (subject, position)"),
        format!("CREATE INDEX IF NOT EXISTS events_time ON {s}.events (time)"),
        format!("CREATE INDEX IF NOT EXISTS events_data ON {s}.events USING GIN (data jsonb_path_ops)"),
        format!("CREATE INDEX IF NOT EXISTS events_tsv ON {s}.events USING GIN (tsv)"),
        format!("CREATE TABLE IF NOT EXISTS {s}.streams (stream_id TEXT PRIMARY KEY, version BIGINT NOT NULL)"),
        format!("CREATE TABLE IF NOT EXISTS {s}.log_head (id INT PRIMARY KEY CHECK (id = 1), position BIGINT NOT NULL)"),
        format!("INSERT INTO {s}.log_head (id, position) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.event_links (
                source_id TEXT NOT NULL, relation TEXT NOT NULL, target_id TEXT NOT NULL,
                PRIMARY KEY (source_id, relation, target_id))"
        ),
        format!("CREATE INDEX IF NOT EXISTS event_links_target ON {s}.event_links (target_id, relation)"),
    ]
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    schema: String,
    channel: String,
    head_tx: Arc<watch::Sender<Position>>,
    poll_interval: Duration,
    /// Dropping it stops the LISTEN task.
    _stop: oneshot::Sender<()>,
}

/// The PostgreSQL event store. Cloning shares the pool and the LISTEN task.
///
/// Appends lock the one-row `log_head` counter first, so positions are
/// gap-free and in commit order across every node (see the crate docs,
/// "Global order"); `pg_notify` in the append transaction wakes
/// subscribers on every node at commit.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
    registry: Option<Arc<SchemaRegistry>>,
}

fn bind<'q>(
    mut q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    params: &[Param],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    for p in params {
        q = match p {
            Param::Text(s) => q.bind(s.clone()),
            Param::Int(i) => q.bind(*i),
            Param::Real(f) => q.bind(*f),
            Param::TextArray(a) => q.bind(a.clone()),
        };
    }
    q
}

// === impl PostgresStore ===

impl PostgresStore {
    /// Connects, creates the schema when missing (serialized across nodes by
    /// an advisory lock) and starts listening for appends.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid config, [`Error::Backend`] when PostgreSQL fails.
    pub async fn connect(config: PostgresConfig) -> Result<Self, Error> {
        config.validate()?;
        let options: PgConnectOptions = config.url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .connect_with(options)
            .await?;
        let s = &config.schema;
        {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("foundation_events.{s}"))
                .execute(&mut *tx)
                .await?;
            for stmt in schema_sql(s) {
                sqlx::query(AssertSqlSafe(stmt)).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        let head: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT position FROM {s}.log_head WHERE id = 1"
        )))
        .fetch_one(&pool)
        .await?;
        let head_tx = Arc::new(watch::channel(Position(u64::try_from(head).unwrap_or(0))).0);
        let channel = format!("foundation_events_{s}");
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(&channel).await?;
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(listen(listener, Arc::clone(&head_tx), stopped));
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                schema: s.clone(),
                channel,
                head_tx,
                poll_interval: config.poll_interval,
                _stop: stop,
            }),
            registry: None,
        })
    }

    /// This store (shared) with a schema registry.
    #[must_use]
    pub fn with_registry(mut self, registry: Arc<SchemaRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The connection pool.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The plan PostgreSQL chooses for `query` (`EXPLAIN`, one line per row),
    /// to check which index serves a filter.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`], [`Error::Backend`].
    pub async fn explain(&self, query: &Query) -> Result<Vec<String>, Error> {
        query.check()?;
        let sql = Sql::select(Dialect::Postgres, &self.t("events"), query);
        let rows = bind(
            sqlx::query(AssertSqlSafe(format!("EXPLAIN {}", sql.text))),
            &sql.params,
        )
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(Error::from))
            .collect()
    }

    /// The schema holding the tables.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    fn t(&self, table: &str) -> String {
        format!("{}.{table}", self.inner.schema)
    }
}

/// Follows NOTIFY payloads (the last committed position) into the watch.
/// `PgListener` reconnects by itself; notifications lost meanwhile are
/// covered by the subscriptions' poll interval.
async fn listen(
    mut listener: PgListener,
    head: Arc<watch::Sender<Position>>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            n = listener.recv() => match n {
                Ok(n) => {
                    if let Ok(p) = n.payload().parse::<u64>() {
                        advance_head(&head, Position(p));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event store LISTEN connection failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
}

/// A batch as column arrays, for one `INSERT … SELECT FROM UNNEST(…)`.
#[derive(Default)]
struct Columns {
    position: Vec<i64>,
    id: Vec<String>,
    stream_version: Vec<i64>,
    event_type: Vec<String>,
    source: Vec<String>,
    subject: Vec<Option<String>>,
    time: Vec<i64>,
    schema_version: Vec<i64>,
    dataschema: Vec<Option<String>>,
    data: Vec<String>,
    metadata: Vec<Option<String>>,
    correlation_id: Vec<String>,
    causation_id: Vec<Option<String>>,
    tenant: Vec<Option<String>>,
    links: Vec<String>,
    link_src: Vec<String>,
    link_rel: Vec<String>,
    link_dst: Vec<String>,
}

impl Columns {
    fn push(&mut self, r: Row) {
        self.position.push(r.position);
        self.id.push(r.id);
        self.stream_version.push(r.stream_version);
        self.event_type.push(r.event_type);
        self.source.push(r.source);
        self.subject.push(r.subject);
        self.time.push(r.time);
        self.schema_version.push(r.schema_version);
        self.dataschema.push(r.dataschema);
        self.data.push(r.data);
        self.metadata.push(r.metadata);
        self.correlation_id.push(r.correlation_id);
        self.causation_id.push(r.causation_id);
        self.tenant.push(r.tenant);
        self.links.push(r.links);
    }
}

async fn fetch_existing(
    conn: &mut sqlx::PgConnection,
    events_table: &str,
    ids: Vec<String>,
) -> Result<Vec<RecordedEvent>, Error> {
    let sql = format!(
        "SELECT {} FROM {events_table} WHERE id = ANY($1)",
        super::columns(Dialect::Postgres)
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(decode_row).collect()
}

impl Backend for PostgresStore {
    async fn append_checked(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        let mut tx = self.inner.pool.begin().await?;
        let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
        // 1. Take the log lock: held until commit, it orders appends.
        let last: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "UPDATE {} SET position = position + $1 WHERE id = 1 RETURNING position",
            self.t("log_head")
        )))
        .bind(n)
        .fetch_one(&mut *tx)
        .await?;
        // 2. Read stream version and duplicates under the lock (a fresh snapshot).
        let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT (SELECT version FROM {} WHERE stream_id = $1), (SELECT count(*) FROM {} WHERE id = ANY($2))",
            self.t("streams"),
            self.t("events")
        )))
        .bind(stream.as_str())
        .bind(ids.clone())
        .fetch_one(&mut *tx)
        .await?;
        let actual = u64::try_from(row.try_get::<Option<i64>, _>(0)?.unwrap_or(0)).unwrap_or(0);
        let dups: i64 = row.try_get(1)?;
        let found = if dups > 0 {
            fetch_existing(&mut tx, &self.t("events"), ids).await?
        } else {
            Vec::new()
        };
        // Roll back explicitly: it releases the log lock at once.
        let decided = decide(stream, expected, &events, &found, actual);
        if let Some(outcome) = decided {
            tx.rollback().await?;
            return outcome;
        }
        // 3. Insert everything in one statement; notify at commit.
        let first = last - n + 1;
        let mut c = Columns::default();
        let mut version = actual;
        for (i, e) in events.iter().enumerate() {
            version += 1;
            c.push(Row::new(
                e,
                u64::try_from(first).unwrap_or(0) + i as u64,
                version,
            ));
            for l in &e.links {
                c.link_src.push(e.id.to_string());
                c.link_rel.push(l.relation.clone());
                c.link_dst.push(l.target.to_string());
            }
        }
        let sql = format!(
            "WITH ins AS (
                INSERT INTO {events} (position, id, stream_id, stream_version, type, source, subject, time, schema_version,
                                      dataschema, data, metadata, correlation_id, causation_id, tenant, links)
                SELECT u.p, u.id, $1, u.v, u.ty, u.src, u.sub, u.t, u.sv, u.ds, u.d::jsonb, u.m::jsonb, u.c, u.ca, u.te, u.l::jsonb
                FROM UNNEST($2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[],
                            $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[])
                     AS u(p, id, v, ty, src, sub, t, sv, ds, d, m, c, ca, te, l)
                RETURNING 1
            ), lnk AS (
                INSERT INTO {links} (source_id, relation, target_id)
                SELECT * FROM UNNEST($17::text[], $18::text[], $19::text[]) ON CONFLICT DO NOTHING RETURNING 1
            ), st AS (
                INSERT INTO {streams} (stream_id, version) VALUES ($1, $20)
                ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version RETURNING 1
            )
            SELECT pg_notify($21, $22)",
            events = self.t("events"),
            links = self.t("event_links"),
            streams = self.t("streams"),
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(stream.as_str())
            .bind(c.position)
            .bind(c.id)
            .bind(c.stream_version)
            .bind(c.event_type)
            .bind(c.source)
            .bind(c.subject)
            .bind(c.time)
            .bind(c.schema_version)
            .bind(c.dataschema)
            .bind(c.data)
            .bind(c.metadata)
            .bind(c.correlation_id)
            .bind(c.causation_id)
            .bind(c.tenant)
            .bind(c.links)
            .bind(c.link_src)
            .bind(c.link_rel)
            .bind(c.link_dst)
            .bind(i64::try_from(version).unwrap_or(i64::MAX))
            .bind(&self.inner.channel)
            .bind(last.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let last = Position(u64::try_from(last).unwrap_or(0));
        advance_head(&self.inner.head_tx, last);
        Ok(AppendResult {
            stream_version: version,
            first_position: Position(u64::try_from(first).unwrap_or(0)),
            last_position: last,
            duplicate: false,
        })
    }

    async fn query_raw(&self, query: &Query) -> Result<Vec<RecordedEvent>, Error> {
        let sql = Sql::select(Dialect::Postgres, &self.t("events"), query);
        let rows = bind(sqlx::query(AssertSqlSafe(sql.text)), &sql.params)
            .fetch_all(&self.inner.pool)
            .await?;
        rows.iter().map(decode_row).collect()
    }

    async fn get_raw(&self, ids: &[EventId]) -> Result<Vec<RecordedEvent>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.inner.pool.acquire().await?;
        fetch_existing(
            &mut conn,
            &self.t("events"),
            ids.iter().map(ToString::to_string).collect(),
        )
        .await
    }

    async fn links_raw(
        &self,
        id: EventId,
        direction: LinkDirection,
        relation: Option<&str>,
    ) -> Result<Vec<(String, EventId)>, Error> {
        let (key, other) = match direction {
            LinkDirection::Outgoing => ("source_id", "target_id"),
            LinkDirection::Incoming => ("target_id", "source_id"),
        };
        let sql = format!(
            "SELECT l.relation, l.{other} FROM {} l JOIN {} e ON e.id = l.source_id
             WHERE l.{key} = $1 AND ($2::text IS NULL OR l.relation = $2) ORDER BY l.relation, l.{other}",
            self.t("event_links"),
            self.t("events")
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(relation.map(str::to_owned))
            .fetch_all(&self.inner.pool)
            .await?;
        rows.iter().map(decode_link).collect()
    }

    async fn stream_version_raw(&self, stream: &StreamId) -> Result<u64, Error> {
        let v: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT version FROM {} WHERE stream_id = $1",
            self.t("streams")
        )))
        .bind(stream.as_str())
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(u64::try_from(v.unwrap_or(0)).unwrap_or(0))
    }

    async fn prune_raw(&self, filter: &Expr) -> Result<u64, Error> {
        let mut s = Sql::new(Dialect::Postgres);
        let cond = s.expr(filter);
        let sql = format!(
            "WITH d AS (DELETE FROM {} WHERE {cond} RETURNING id),
                  l AS (DELETE FROM {} WHERE source_id IN (SELECT id FROM d))
             SELECT count(*) FROM d",
            self.t("events"),
            self.t("event_links")
        );
        let n: i64 = bind(sqlx::query(AssertSqlSafe(sql)), &s.params)
            .fetch_one(&self.inner.pool)
            .await?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn head_raw(&self) -> Result<Position, Error> {
        let h: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT position FROM {} WHERE id = 1",
            self.t("log_head")
        )))
        .fetch_one(&self.inner.pool)
        .await?;
        Ok(Position(u64::try_from(h).unwrap_or(0)))
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.inner.head_tx.subscribe()
    }

    fn poll_interval(&self) -> Duration {
        self.inner.poll_interval
    }

    fn registry(&self) -> Option<&SchemaRegistry> {
        self.registry.as_deref()
    }
}
