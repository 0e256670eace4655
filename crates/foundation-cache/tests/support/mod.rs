//! Shared helpers for the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, reason = "shared test helpers fail loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use foundation_cache::tier::MapTier;
use foundation_cache::{CacheConfig, TierPolicy, TieredCache};

/// Counts loader calls.
#[derive(Debug, Clone, Default)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    pub fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A cache with L1 and a shared map tier as L2.
pub fn two_tier(config: CacheConfig, l2: &MapTier) -> TieredCache<String> {
    TieredCache::builder(config)
        .with_tier(Arc::new(l2.clone()), TierPolicy::default())
        .build()
        .unwrap()
}

/// A unique prefix for keys on a shared server.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}
