//! L3: a durable tier in a SQLite file (through sqlx, the workspace's one
//! SQLite binding). Survives restarts; WAL journal; bounded by `max_entries`
//! with expired-first, then oldest-first trimming.
//!
//! ```no_run
//! # async fn doc() -> Result<(), foundation_cache::Error> {
//! use std::sync::Arc;
//! use foundation_cache::{CacheConfig, TieredCache, TierPolicy};
//! use foundation_cache::tier::sqlite::SqliteTier;
//!
//! let l3 = SqliteTier::open("cache.db", 100_000).await?;
//! let cache: TieredCache<String> = TieredCache::builder(CacheConfig::new(64 << 20))
//!     .with_tier(Arc::new(l3), TierPolicy::default())
//!     .build()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::entry::Entry;
use crate::error::Error;
use crate::scope::{Key, Selector};
use crate::tier::Tier;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS foundation_cache_entries (
        scope_hash INTEGER NOT NULL,
        name TEXT NOT NULL,
        scope TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        written INTEGER NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (scope_hash, name)
    )",
    "CREATE INDEX IF NOT EXISTS foundation_cache_entries_expiry ON foundation_cache_entries (expires_ms)",
    "CREATE INDEX IF NOT EXISTS foundation_cache_entries_written ON foundation_cache_entries (written)",
    "CREATE TABLE IF NOT EXISTS foundation_cache_tags (
        tag TEXT NOT NULL,
        scope_hash INTEGER NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (tag, scope_hash, name)
    )",
    "CREATE INDEX IF NOT EXISTS foundation_cache_tags_entry ON foundation_cache_tags (scope_hash, name)",
];

const DELETE_ORPHAN_TAGS: &str = "DELETE FROM foundation_cache_tags WHERE NOT EXISTS (
    SELECT 1 FROM foundation_cache_entries e
    WHERE e.scope_hash = foundation_cache_tags.scope_hash AND e.name = foundation_cache_tags.name)";

/// A tier in a SQLite database. Clones share the pool.
#[derive(Clone)]
pub struct SqliteTier {
    pool: SqlitePool,
    max_entries: u64,
    writes: Arc<AtomicU64>,
}

impl fmt::Debug for SqliteTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteTier")
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

fn err(e: sqlx::Error) -> Error {
    Error::backend("sqlite", e)
}

/// SQLite stores signed 64-bit integers; the hash keeps its bits.
fn h(key_hash: u64) -> i64 {
    i64::from_ne_bytes(key_hash.to_ne_bytes())
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

// === impl SqliteTier ===

impl SqliteTier {
    /// Opens (creating if missing) the database file at `path`, keeping at
    /// most `max_entries` entries.
    ///
    /// # Errors
    /// [`Error::Backend`] when the file cannot be opened or the schema created;
    /// [`Error::Config`] for `max_entries == 0`.
    pub async fn open(path: impl AsRef<Path>, max_entries: u64) -> Result<Self, Error> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(err)?;
        Self::from_pool(pool, max_entries).await
    }

    /// Uses an existing pool (e.g. an in-memory database for tests).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn from_pool(pool: SqlitePool, max_entries: u64) -> Result<Self, Error> {
        if max_entries == 0 {
            return Err(foundation_core::ValidationErrors::single(
                "max_entries",
                "must be at least 1",
            )
            .into());
        }
        for stmt in SCHEMA {
            sqlx::query(*stmt).execute(&pool).await.map_err(err)?;
        }
        Ok(Self {
            pool,
            max_entries,
            writes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The number of stored rows (including expired ones not yet trimmed).
    ///
    /// # Errors
    /// [`Error::Backend`].
    pub async fn len(&self) -> Result<u64, Error> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM foundation_cache_entries")
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Whether the table is empty.
    ///
    /// # Errors
    /// [`Error::Backend`].
    pub async fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len().await? == 0)
    }

    /// Deletes expired rows, then the oldest rows above `max_entries`.
    ///
    /// # Errors
    /// [`Error::Backend`].
    pub async fn trim(&self, now_ms: u64) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query("DELETE FROM foundation_cache_entries WHERE expires_ms <= ?")
            .bind(ms(now_ms))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        sqlx::query(
            "DELETE FROM foundation_cache_entries WHERE rowid IN (
                SELECT rowid FROM foundation_cache_entries ORDER BY written DESC LIMIT -1 OFFSET ?)",
        )
        .bind(ms(self.max_entries))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        sqlx::query(DELETE_ORPHAN_TAGS)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)
    }
}

impl<V: Serialize + DeserializeOwned + Send + Sync + 'static> Tier<V> for SqliteTier {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Arc<Entry<V>>>, Error>> {
        async move {
            let row = sqlx::query(
                "SELECT value FROM foundation_cache_entries WHERE scope_hash = ? AND name = ?",
            )
            .bind(h(key.scope().hash64()))
            .bind(key.name())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
            match row {
                Some(r) => {
                    let bytes: Vec<u8> = r.try_get(0).map_err(err)?;
                    Entry::decode(&bytes).map(|e| Some(Arc::new(e)))
                }
                None => Ok(None),
            }
        }
        .boxed()
    }

    fn put<'a>(
        &'a self,
        key: &'a Key,
        entry: Arc<Entry<V>>,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            let bytes = entry.encode()?;
            let n = self.writes.fetch_add(1, Ordering::Relaxed);
            let mut tx = self.pool.begin().await.map_err(err)?;
            sqlx::query(
                "INSERT INTO foundation_cache_entries (scope_hash, name, scope, expires_ms, written, value)
                 VALUES (?, ?, ?, ?, (SELECT COALESCE(MAX(written), 0) + 1 FROM foundation_cache_entries), ?)
                 ON CONFLICT (scope_hash, name) DO UPDATE SET
                   scope = excluded.scope, expires_ms = excluded.expires_ms,
                   written = excluded.written, value = excluded.value",
            )
            .bind(h(key.scope().hash64()))
            .bind(key.name())
            .bind(&entry.meta.scope)
            .bind(ms(entry.meta.expires_ms))
            .bind(bytes)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            sqlx::query("DELETE FROM foundation_cache_tags WHERE scope_hash = ? AND name = ?")
                .bind(h(key.scope().hash64()))
                .bind(key.name())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            for tag in &entry.meta.tags {
                sqlx::query("INSERT OR IGNORE INTO foundation_cache_tags (tag, scope_hash, name) VALUES (?, ?, ?)")
                    .bind(tag)
                    .bind(h(key.scope().hash64()))
                    .bind(key.name())
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
            tx.commit().await.map_err(err)?;
            // Trim now and then rather than on every write.
            if n % 256 == 255 || n < 1 {
                self.trim(now_ms).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn invalidate<'a>(&'a self, selector: &'a Selector) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            let (filter, args): (&str, Vec<Arg>) = match selector {
                Selector::Key(k) => ("scope_hash = ? AND name = ?", vec![Arg::I(h(k.scope().hash64())), Arg::S(k.name().to_owned())]),
                Selector::Tag(t) => (
                    "(scope_hash, name) IN (SELECT scope_hash, name FROM foundation_cache_tags WHERE tag = ?)",
                    vec![Arg::S(t.clone())],
                ),
                Selector::Prefix(s, p) => (
                    "scope_hash = ? AND substr(name, 1, ?) = ?",
                    vec![Arg::I(h(s.hash64())), Arg::I(i64::try_from(p.chars().count()).unwrap_or(i64::MAX)), Arg::S(p.clone())],
                ),
                Selector::Scope(s) => ("scope_hash = ?", vec![Arg::I(h(s.hash64()))]),
                Selector::All => ("1 = 1", vec![]),
            };
            let mut tx = self.pool.begin().await.map_err(err)?;
            // `filter` is one of the constant strings above; values are bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM foundation_cache_entries WHERE {filter}")));
            for a in &args {
                q = match a {
                    Arg::I(i) => q.bind(*i),
                    Arg::S(s) => q.bind(s.clone()),
                };
            }
            q.execute(&mut *tx).await.map_err(err)?;
            sqlx::query(DELETE_ORPHAN_TAGS).execute(&mut *tx).await.map_err(err)?;
            tx.commit().await.map_err(err)
        }
        .boxed()
    }
}

enum Arg {
    I(i64),
    S(String),
}
