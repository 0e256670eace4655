//! The SQLite backend: the embedded default (a file, WAL, FTS5).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use foundation_core::{Validate, Validator};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Sqlite, SqlitePool};
use tokio::sync::{Mutex, watch};

use super::{Dialect, Param, Row, Sql, decode_link, decode_row};
use crate::envelope::{
    AppendResult, EventId, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId,
};
use crate::error::Error;
use crate::memory::decide;
use crate::query::{Expr, Query};
use crate::schema::SchemaRegistry;
use crate::store::{Backend, LinkDirection, advance_head};

/// Configuration of a [`SqliteStore`].
///
/// ```
/// use foundation_events::SqliteConfig;
/// let config: SqliteConfig = serde_json::from_str(r#"{"path": "/tmp/events.db", "busy_timeout": "2s"}"#).unwrap();
/// assert_eq!(config.max_connections, 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct SqliteConfig {
    /// The database file (created when missing).
    pub path: PathBuf,
    /// Connections in the pool (readers; writes are serialized), 1..=64.
    #[serde(default = "default_connections")]
    pub max_connections: u32,
    /// How long a write waits for another process's write lock.
    #[serde(
        default = "default_busy",
        with = "foundation_core::serde_util::duration"
    )]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub busy_timeout: Duration,
    /// How often live subscriptions re-poll (appends by other processes are
    /// not notified in-process).
    #[serde(
        default = "default_poll",
        with = "foundation_core::serde_util::duration"
    )]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub poll_interval: Duration,
}

fn default_connections() -> u32 {
    4
}
fn default_busy() -> Duration {
    Duration::from_secs(5)
}
fn default_poll() -> Duration {
    Duration::from_millis(500)
}

impl SqliteConfig {
    /// Defaults for the file at `path`.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_connections: default_connections(),
            busy_timeout: default_busy(),
            poll_interval: default_poll(),
        }
    }
}

impl Validate for SqliteConfig {
    fn validate_into(&self, v: &mut Validator) {
        v.check(
            !self.path.as_os_str().is_empty(),
            "path",
            "must not be empty",
        );
        v.check(
            (1..=64).contains(&self.max_connections),
            "max_connections",
            "must be between 1 and 64",
        );
        v.check(
            self.busy_timeout <= Duration::from_secs(600),
            "busy_timeout",
            "must be at most 10m",
        );
        v.check(
            self.poll_interval >= Duration::from_millis(10)
                && self.poll_interval <= Duration::from_secs(60),
            "poll_interval",
            "must be between 10ms and 60s",
        );
    }
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS events (
        position INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        stream_id TEXT NOT NULL,
        stream_version INTEGER NOT NULL,
        type TEXT NOT NULL,
        source TEXT NOT NULL,
        subject TEXT,
        time INTEGER NOT NULL,
        schema_version INTEGER NOT NULL,
        dataschema TEXT,
        data TEXT NOT NULL,
        metadata TEXT,
        correlation_id TEXT NOT NULL,
        causation_id TEXT,
        tenant TEXT,
        links TEXT NOT NULL,
        UNIQUE (stream_id, stream_version)
    )",
    "CREATE INDEX IF NOT EXISTS events_type ON events (type, position)",
    "CREATE INDEX IF NOT EXISTS events_correlation ON events (correlation_id, position)",
    "CREATE INDEX IF NOT EXISTS events_causation ON events (causation_id)",
    "CREATE INDEX IF NOT EXISTS events_tenant ON events (tenant, position)",
    "CREATE INDEX IF NOT EXISTS events_subject ON events (subject, position)",
    "CREATE INDEX IF NOT EXISTS events_time ON events (time)",
    "CREATE TABLE IF NOT EXISTS streams (stream_id TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS log_head (id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO log_head (id, position) VALUES (1, 0)",
    "CREATE TABLE IF NOT EXISTS event_links (
        source_id TEXT NOT NULL, relation TEXT NOT NULL, target_id TEXT NOT NULL,
        PRIMARY KEY (source_id, relation, target_id)
    ) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS event_links_target ON event_links (target_id, relation)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(body, content='', contentless_delete=1)",
];

/// Rows per multi-row INSERT (16 parameters each, well under SQLite's 32,766).
const ROWS_PER_STATEMENT: usize = 500;

#[derive(Debug)]
struct Inner {
    pool: SqlitePool,
    /// Serializes this process's writers (other processes wait on SQLite's lock).
    writer: Mutex<()>,
    head_tx: watch::Sender<Position>,
    poll_interval: Duration,
}

/// The SQLite event store. Cloning shares the pool.
///
/// ```no_run
/// # async fn f() -> Result<(), foundation_events::Error> {
/// use foundation_events::{SqliteConfig, SqliteStore};
/// let store = SqliteStore::open(SqliteConfig::new("events.db")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    registry: Option<Arc<SchemaRegistry>>,
}

fn bind<'q>(
    mut q: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>,
    params: &[Param],
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments> {
    for p in params {
        q = match p {
            Param::Text(s) => q.bind(s.clone()),
            Param::Int(i) => q.bind(*i),
            Param::Real(f) => q.bind(*f),
            Param::TextArray(a) => q.bind(serde_json::to_string(a).unwrap_or_default()),
        };
    }
    q
}

// === impl SqliteStore ===

impl SqliteStore {
    /// Opens (creating when missing) the database in WAL mode and creates the schema.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid config, [`Error::Backend`] when SQLite fails.
    pub async fn open(config: SqliteConfig) -> Result<Self, Error> {
        config.validate()?;
        let options = SqliteConnectOptions::new()
            .filename(&config.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode survives process crashes (kill -9); only an OS
            // crash or power loss can lose the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(config.busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            .connect_with(options)
            .await?;
        {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            for stmt in SCHEMA {
                sqlx::query(*stmt).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        let head: i64 = sqlx::query_scalar("SELECT position FROM log_head WHERE id = 1")
            .fetch_one(&pool)
            .await?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                writer: Mutex::new(()),
                head_tx: watch::channel(Position(u64::try_from(head).unwrap_or(0))).0,
                poll_interval: config.poll_interval,
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

    /// The connection pool, for applications that keep their own tables next to the log.
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// The plan SQLite chooses for `query` (`EXPLAIN QUERY PLAN`, one line per
    /// step), to check which index serves a filter.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`], [`Error::Backend`].
    pub async fn explain(&self, query: &Query) -> Result<Vec<String>, Error> {
        query.check()?;
        let sql = Sql::select(Dialect::Sqlite, "events", query);
        let rows = bind(
            sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {}", sql.text))),
            &sql.params,
        )
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter()
            .map(|r| sqlx::Row::try_get::<String, _>(r, 3).map_err(Error::from))
            .collect()
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }
}

async fn existing(
    conn: &mut sqlx::SqliteConnection,
    ids: &[String],
) -> Result<Vec<RecordedEvent>, Error> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {} FROM events WHERE id IN ({})",
            super::columns(Dialect::Sqlite),
            marks.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(id.clone());
        }
        for row in q.fetch_all(&mut *conn).await? {
            out.push(decode_row(&row)?);
        }
    }
    Ok(out)
}

impl Backend for SqliteStore {
    async fn append_checked(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        let _writer = self.inner.writer.lock().await;
        let mut tx = self.inner.pool.begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        let found = existing(&mut tx, &ids).await?;
        let actual: Option<i64> =
            sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
                .bind(stream.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let actual = u64::try_from(actual.unwrap_or(0)).unwrap_or(0);
        // Release the write lock now rather than when the pool gets the connection back.
        let decided = decide(stream, expected, &events, &found, actual);
        if let Some(outcome) = decided {
            tx.rollback().await?;
            return outcome;
        }
        let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let last: i64 = sqlx::query_scalar(
            "UPDATE log_head SET position = position + $1 WHERE id = 1 RETURNING position",
        )
        .bind(n)
        .fetch_one(&mut *tx)
        .await?;
        let first = u64::try_from(last - n + 1).unwrap_or(0);
        let rows: Vec<Row> = events
            .iter()
            .enumerate()
            .map(|(i, e)| Row::new(e, first + i as u64, actual + 1 + i as u64))
            .collect();
        let version = actual + events.len() as u64;
        // Multi-row inserts: a few statements per batch instead of one per event.
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut b = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (position, id, stream_id, stream_version, type, source, subject, time, schema_version, dataschema, data, metadata, correlation_id, causation_id, tenant, links) ",
            );
            b.push_values(chunk, |mut v, r| {
                v.push_bind(r.position)
                    .push_bind(r.id.clone())
                    .push_bind(stream.as_str().to_owned())
                    .push_bind(r.stream_version)
                    .push_bind(r.event_type.clone())
                    .push_bind(r.source.clone())
                    .push_bind(r.subject.clone())
                    .push_bind(r.time)
                    .push_bind(r.schema_version)
                    .push_bind(r.dataschema.clone())
                    .push_bind(r.data.clone())
                    .push_bind(r.metadata.clone())
                    .push_bind(r.correlation_id.clone())
                    .push_bind(r.causation_id.clone())
                    .push_bind(r.tenant.clone())
                    .push_bind(r.links.clone());
            });
            b.build().execute(&mut *tx).await?;
            let texts: Vec<&Row> = chunk.iter().filter(|r| !r.text.trim().is_empty()).collect();
            if !texts.is_empty() {
                let mut b =
                    sqlx::QueryBuilder::<Sqlite>::new("INSERT INTO events_fts (rowid, body) ");
                b.push_values(texts, |mut v, r| {
                    v.push_bind(r.position).push_bind(r.text.clone());
                });
                b.build().execute(&mut *tx).await?;
            }
        }
        let links: Vec<(String, &str, String)> = events
            .iter()
            .flat_map(|e| {
                e.links
                    .iter()
                    .map(move |l| (e.id.to_string(), l.relation.as_str(), l.target.to_string()))
            })
            .collect();
        for chunk in links.chunks(ROWS_PER_STATEMENT) {
            let mut b = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT OR IGNORE INTO event_links (source_id, relation, target_id) ",
            );
            b.push_values(chunk, |mut v, (src, rel, dst)| {
                v.push_bind(src.clone())
                    .push_bind((*rel).to_owned())
                    .push_bind(dst.clone());
            });
            b.build().execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO streams (stream_id, version) VALUES ($1, $2) ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version")
            .bind(stream.as_str())
            .bind(i64::try_from(version).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let last = Position(u64::try_from(last).unwrap_or(0));
        advance_head(&self.inner.head_tx, last);
        Ok(AppendResult {
            stream_version: version,
            first_position: Position(first),
            last_position: last,
            duplicate: false,
        })
    }

    async fn query_raw(&self, query: &Query) -> Result<Vec<RecordedEvent>, Error> {
        let sql = Sql::select(Dialect::Sqlite, "events", query);
        let rows = bind(sqlx::query(AssertSqlSafe(sql.text)), &sql.params)
            .fetch_all(&self.inner.pool)
            .await?;
        rows.iter().map(decode_row).collect()
    }

    async fn get_raw(&self, ids: &[EventId]) -> Result<Vec<RecordedEvent>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let mut conn = self.inner.pool.acquire().await?;
        existing(&mut conn, &ids).await
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
            "SELECT relation, {other} FROM event_links WHERE {key} = $1 AND ($2 IS NULL OR relation = $2) ORDER BY relation, {other}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(relation.map(str::to_owned))
            .fetch_all(&self.inner.pool)
            .await?;
        rows.iter().map(decode_link).collect()
    }

    async fn stream_version_raw(&self, stream: &StreamId) -> Result<u64, Error> {
        let v: Option<i64> = sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
            .bind(stream.as_str())
            .fetch_optional(&self.inner.pool)
            .await?;
        Ok(u64::try_from(v.unwrap_or(0)).unwrap_or(0))
    }

    async fn prune_raw(&self, filter: &Expr) -> Result<u64, Error> {
        let _writer = self.inner.writer.lock().await;
        let mut tx = self.inner.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut s = Sql::new(Dialect::Sqlite);
        let cond = s.expr(filter);
        let statements = [
            format!(
                "DELETE FROM events_fts WHERE rowid IN (SELECT position FROM events WHERE {cond})"
            ),
            format!(
                "DELETE FROM event_links WHERE source_id IN (SELECT id FROM events WHERE {cond})"
            ),
            format!("DELETE FROM events WHERE {cond}"),
        ];
        let mut deleted = 0;
        for stmt in statements {
            deleted = bind(sqlx::query(AssertSqlSafe(stmt)), &s.params)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn head_raw(&self) -> Result<Position, Error> {
        let h: i64 = sqlx::query_scalar("SELECT position FROM log_head WHERE id = 1")
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
