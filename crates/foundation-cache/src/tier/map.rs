//! A shared in-process tier that stores encoded entries in a map: the test
//! double and embedded stand-in for a shared tier.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::entry::Entry;
use crate::error::Error;
use crate::scope::{Key, Selector};
use crate::tier::Tier;

/// A tier that keeps *encoded* entries in a mutex-guarded map, so it goes
/// through the same wire format as Redis and SQLite. Clones share the map:
/// two caches given clones behave like two instances sharing an L2.
///
/// Bounded by `max_entries`: a put into a full map drops expired entries
/// first, then refuses (the write is reported as an error, never silent).
#[derive(Clone)]
pub struct MapTier {
    map: Arc<Mutex<HashMap<Key, Stored>>>,
    max_entries: usize,
}

impl fmt::Debug for MapTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapTier")
            .field("entries", &self.map.lock().len())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

/// Tags, expiry (ms) and the encoded entry.
type Stored = (Vec<String>, u64, Vec<u8>);

/// The map tier is full.
#[derive(Debug, thiserror::Error)]
#[error("map tier is full ({0} entries)")]
pub struct MapTierFull(pub usize);

// === impl MapTier ===

impl MapTier {
    /// An empty map holding at most `max_entries`.
    #[must_use]
    pub fn new(max_entries: usize) -> Self {
        Self {
            map: Arc::default(),
            max_entries,
        }
    }

    /// The number of stored entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether the map is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<V: Serialize + DeserializeOwned + Send + Sync + 'static> Tier<V> for MapTier {
    fn name(&self) -> &'static str {
        "map"
    }

    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Arc<Entry<V>>>, Error>> {
        let bytes = self.map.lock().get(key).map(|(_, _, b)| b.clone());
        async move { bytes.map(|b| Entry::decode(&b).map(Arc::new)).transpose() }.boxed()
    }

    fn put<'a>(
        &'a self,
        key: &'a Key,
        entry: Arc<Entry<V>>,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let r = entry.encode().and_then(|bytes| {
            let mut map = self.map.lock();
            if map.len() >= self.max_entries && !map.contains_key(key) {
                map.retain(|_, (_, exp, _)| *exp > now_ms);
                if map.len() >= self.max_entries {
                    return Err(Error::backend("map", MapTierFull(self.max_entries)));
                }
            }
            map.insert(
                key.clone(),
                (entry.meta.tags.clone(), entry.meta.expires_ms, bytes),
            );
            Ok(())
        });
        async move { r }.boxed()
    }

    fn invalidate<'a>(&'a self, selector: &'a Selector) -> BoxFuture<'a, Result<(), Error>> {
        self.map
            .lock()
            .retain(|k, (tags, _, _)| !selector.matches(k, tags));
        async { Ok(()) }.boxed()
    }
}
