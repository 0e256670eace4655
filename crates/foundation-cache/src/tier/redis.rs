//! L2: a tier on a Redis server, shared by every cache instance with the same
//! key prefix.
//!
//! Layout (all keys under one prefix):
//!
//! - `{prefix}:e:{scope hash, 16 hex}:{name}` → the encoded [`Entry`] with a
//!   server-side `PX` TTL from the entry's expiry;
//! - `{prefix}:t:{tag}` → a set of entry keys carrying the tag (its TTL is
//!   extended to the longest member's).
//!
//! Prefix, scope and full invalidation walk the keyspace with `SCAN MATCH`
//! (escaped glob) and delete in batches with `UNLINK`; tag invalidation reads
//! the tag set. Entries carry their full scope text, which the cache checks
//! on read, so a hash collision is never served.
//!
//! ```no_run
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use foundation_cache::{CacheConfig, TieredCache, TierPolicy};
//! use foundation_cache::tier::redis::RedisTier;
//!
//! let client = redis::Client::open("redis://127.0.0.1:6379/")?;
//! let conn = client.get_multiplexed_async_connection().await?;
//! let cache: TieredCache<String> = TieredCache::builder(CacheConfig::new(64 << 20))
//!     .with_tier(Arc::new(RedisTier::new(conn, "answers")), TierPolicy::default())
//!     .build()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use redis::AsyncCommands as _;
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::entry::Entry;
use crate::error::Error;
use crate::scope::{Key, Selector};
use crate::tier::{Tier, glob_escape};

/// Batch size of `SCAN` and `UNLINK` during invalidation.
const BATCH: usize = 500;

/// A tier on a Redis server. Clones share the connection.
#[derive(Clone)]
pub struct RedisTier {
    conn: MultiplexedConnection,
    prefix: Arc<str>,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn err(e: redis::RedisError) -> Error {
    Error::backend("redis", e)
}

// === impl RedisTier ===

impl RedisTier {
    /// A tier storing under `prefix` on the connection's server. Instances
    /// that share the prefix share the entries.
    pub fn new(conn: MultiplexedConnection, prefix: impl AsRef<str>) -> Self {
        Self {
            conn,
            prefix: Arc::from(prefix.as_ref()),
        }
    }

    fn entry_key(&self, key: &Key) -> String {
        format!(
            "{}:e:{:016x}:{}",
            self.prefix,
            key.scope().hash64(),
            key.name()
        )
    }

    fn tag_key(&self, tag: &str) -> String {
        format!("{}:t:{}", self.prefix, tag)
    }

    async fn unlink_matching(&self, pattern: String) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            if !keys.is_empty() {
                let _: () = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(err)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

impl<V: Serialize + DeserializeOwned + Send + Sync + 'static> Tier<V> for RedisTier {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Arc<Entry<V>>>, Error>> {
        async move {
            let mut conn = self.conn.clone();
            let bytes: Option<Vec<u8>> = conn.get(self.entry_key(key)).await.map_err(err)?;
            bytes.map(|b| Entry::decode(&b).map(Arc::new)).transpose()
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
            let ttl_ms = entry
                .meta
                .remaining(now_ms)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1));
            let ek = self.entry_key(key);
            let mut pipe = redis::pipe();
            pipe.atomic();
            match ttl_ms {
                Some(ms) => pipe
                    .cmd("SET")
                    .arg(&ek)
                    .arg(bytes)
                    .arg("PX")
                    .arg(ms)
                    .ignore(),
                None => pipe.cmd("SET").arg(&ek).arg(bytes).ignore(),
            };
            for tag in &entry.meta.tags {
                let tk = self.tag_key(tag);
                pipe.cmd("SADD").arg(&tk).arg(&ek).ignore();
                match ttl_ms {
                    // Keep the tag set at least as long as its longest member.
                    Some(ms) => pipe.cmd("PEXPIRE").arg(&tk).arg(ms).arg("GT").ignore(),
                    None => pipe.cmd("PERSIST").arg(&tk).ignore(),
                };
            }
            let mut conn = self.conn.clone();
            let _: () = pipe.query_async(&mut conn).await.map_err(err)?;
            Ok(())
        }
        .boxed()
    }

    fn invalidate<'a>(&'a self, selector: &'a Selector) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            let mut conn = self.conn.clone();
            match selector {
                Selector::Key(k) => {
                    let _: () = conn.unlink(self.entry_key(k)).await.map_err(err)?;
                    Ok(())
                }
                Selector::Tag(t) => {
                    let tk = self.tag_key(t);
                    let members: Vec<String> = conn.smembers(&tk).await.map_err(err)?;
                    for chunk in members.chunks(BATCH) {
                        let _: () = redis::cmd("UNLINK")
                            .arg(chunk)
                            .query_async(&mut conn)
                            .await
                            .map_err(err)?;
                    }
                    let _: () = conn.unlink(&tk).await.map_err(err)?;
                    Ok(())
                }
                Selector::Prefix(scope, p) => {
                    self.unlink_matching(format!(
                        "{}:e:{:016x}:{}*",
                        glob_escape(&self.prefix),
                        scope.hash64(),
                        glob_escape(p)
                    ))
                    .await
                }
                Selector::Scope(scope) => {
                    self.unlink_matching(format!(
                        "{}:e:{:016x}:*",
                        glob_escape(&self.prefix),
                        scope.hash64()
                    ))
                    .await
                }
                Selector::All => {
                    self.unlink_matching(format!("{}:*", glob_escape(&self.prefix)))
                        .await
                }
            }
        }
        .boxed()
    }
}
