//! A [`Manager`] for PostgreSQL connections on `tokio-postgres`.
//!
//! ```no_run
//! use std::time::Duration;
//! use foundation_pool::{ElasticPool, postgres::PgManager};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = PgManager::from_url("postgres://app@127.0.0.1:5432/app")?;
//! let pool = ElasticPool::builder(manager, 2, 20)
//!     .with_name("postgres")
//!     .with(|c| c.health.max_lifetime = Some(Duration::from_secs(30 * 60)))
//!     .build()?;
//! pool.start()?;
//! let n: i64 = pool
//!     .run(Duration::from_secs(2), async |conn: &mut foundation_pool::postgres::PgConnection| {
//!         conn.query_one("SELECT count(*) FROM pg_stat_activity", &[]).await.map(|row| row.get(0))
//!     })
//!     .await?;
//! # let _ = n; Ok(()) }
//! ```

use std::fmt;
use std::ops::{Deref, DerefMut};

use deadpool::managed::{Metrics, RecycleError, RecycleResult};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config, NoTls};

use crate::manager::Manager;

/// Creates PostgreSQL connections (without TLS) and checks them with a query.
#[derive(Clone)]
pub struct PgManager {
    config: Config,
    check_query: String,
}

impl fmt::Debug for PgManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The config may hold a password: show where, not how.
        f.debug_struct("PgManager")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("dbname", &self.config.get_dbname())
            .field("user", &self.config.get_user())
            .field("check_query", &self.check_query)
            .finish_non_exhaustive()
    }
}

// === impl PgManager ===

impl PgManager {
    /// A manager for `config`; connections are checked with `SELECT 1`.
    #[must_use]
    pub fn new(config: Config) -> Self {
        Self {
            config,
            check_query: "SELECT 1".to_owned(),
        }
    }

    /// A manager from a connection URL or key-value string.
    ///
    /// # Errors
    /// The parse error, naming what is wrong with the string.
    pub fn from_url(url: &str) -> Result<Self, tokio_postgres::Error> {
        Ok(Self::new(url.parse()?))
    }

    /// Checks connections with `query` instead of `SELECT 1`.
    #[must_use]
    pub fn with_check_query(mut self, query: impl Into<String>) -> Self {
        self.check_query = query.into();
        self
    }
}

/// A pooled PostgreSQL connection: dereferences to [`tokio_postgres::Client`].
///
/// The connection's I/O runs in a task spawned at creation and stopped when
/// the connection is dropped.
pub struct PgConnection {
    client: Client,
    io: JoinHandle<()>,
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection")
            .field("closed", &self.client.is_closed())
            .finish_non_exhaustive()
    }
}

impl Deref for PgConnection {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for PgConnection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        self.io.abort();
    }
}

impl Manager for PgManager {
    type Type = PgConnection;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<PgConnection, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        let io = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "pooled postgres connection ended");
            }
        });
        Ok(PgConnection { client, io })
    }

    async fn recycle(
        &self,
        conn: &mut PgConnection,
        _: &Metrics,
    ) -> RecycleResult<tokio_postgres::Error> {
        if conn.client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        conn.client
            .simple_query(&self.check_query)
            .await
            .map(drop)
            .map_err(RecycleError::Backend)
    }
}
