//! The tier abstraction and the built-in tiers.
//!
//! A [`TieredCache`](crate::TieredCache) is an ordered list of tiers: the
//! in-process [`MemoryTier`] (L1, moka) first, then any number of shared or
//! durable tiers behind [`Tier`] — `redis::RedisTier` (L2, feature
//! `redis`), `sqlite::SqliteTier` (L3, feature `sqlite`) or your own.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::entry::Entry;
use crate::error::Error;
use crate::scope::{Key, Selector};

mod map;
pub(crate) mod memory;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

pub use map::{MapTier, MapTierFull};
pub use memory::{MemoryTier, MemoryTierConfig, Weigher};

/// One level of a tiered cache.
///
/// Implementations store [`Entry`] values under [`Key`]s and must keep the
/// entry's metadata (scope, expiry, tags) with it. They need not check expiry
/// or scope on read (the cache does), but should let expired entries go
/// (e.g. with a server-side TTL) so storage stays bounded.
pub trait Tier<V>: fmt::Debug + Send + Sync + 'static {
    /// A short stable name, used as a metric label (`"redis"`, `"sqlite"`).
    fn name(&self) -> &'static str;

    /// The entry stored under `key`, if any.
    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Arc<Entry<V>>>, Error>>;

    /// Stores `entry` under `key`; `now_ms` is the cache's current time, for
    /// converting the entry's absolute expiry into a backend TTL.
    fn put<'a>(
        &'a self,
        key: &'a Key,
        entry: Arc<Entry<V>>,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Removes every entry the selector matches.
    fn invalidate<'a>(&'a self, selector: &'a Selector) -> BoxFuture<'a, Result<(), Error>>;
}

/// How a lower tier (below L1) takes part in reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TierPolicy {
    /// Write freshly loaded values to this tier (write-through).
    #[serde(default = "yes")]
    pub write_on_load: bool,
    /// Copy entries found in a slower tier into this one.
    #[serde(default = "yes")]
    pub promote_on_hit: bool,
    /// Cap on how long entries live in this tier (`None`: the entry's own TTL).
    #[serde(default, with = "foundation_core::serde_util::opt_duration")]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub max_ttl: Option<Duration>,
}

fn yes() -> bool {
    true
}

impl Default for TierPolicy {
    /// Write-through and promote, entry TTL.
    fn default() -> Self {
        Self {
            write_on_load: true,
            promote_on_hit: true,
            max_ttl: None,
        }
    }
}

// === impl TierPolicy ===

impl TierPolicy {
    /// Sets write-through on load.
    #[must_use]
    pub fn with_write_on_load(mut self, yes: bool) -> Self {
        self.write_on_load = yes;
        self
    }

    /// Sets promotion from slower tiers.
    #[must_use]
    pub fn with_promote_on_hit(mut self, yes: bool) -> Self {
        self.promote_on_hit = yes;
        self
    }

    /// Caps the TTL in this tier.
    #[must_use]
    pub fn with_max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = Some(ttl);
        self
    }
}

/// Escapes a string for a Redis glob pattern (`*`, `?`, `[`, `]`, `\`).
#[cfg(any(feature = "redis", test))]
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_escape_escapes_metacharacters() {
        assert_eq!(super::glob_escape(r"a*b?[c]\d"), r"a\*b\?\[c\]\\d");
    }
}
