//! Shared helpers for the integration tests.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "shared test helpers fail loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use foundation_cache::tier::MapTier;
use foundation_cache::{CacheConfig, TierPolicy, TieredCache};

/// Counts loader calls.
#[derive(Debug, Clone, Default)]
pub struct Calls(Arc<AtomicUsize>);

/// A boxed loader future, as `get_or_compute` takes it.
pub type Load = futures_util::future::BoxFuture<'static, Result<String, std::io::Error>>;

impl Calls {
    /// A loader that counts the call, waits `delay` and answers `value`.
    pub fn slow(
        &self,
        value: &str,
        delay: std::time::Duration,
    ) -> impl FnOnce() -> Load + Send + 'static + use<> {
        let (calls, value) = (self.clone(), value.to_owned());
        move || {
            Box::pin(async move {
                calls.bump();
                tokio::time::sleep(delay).await;
                Ok(value)
            })
        }
    }

    /// A loader that counts the call and answers `value` at once.
    pub fn ok(&self, value: &str) -> impl FnOnce() -> Load + Send + 'static + use<> {
        self.slow(value, std::time::Duration::ZERO)
    }

    /// A loader that counts the call and fails with `kind`.
    pub fn fail(&self, kind: std::io::ErrorKind) -> impl FnOnce() -> Load + Send + 'static + use<> {
        let calls = self.clone();
        move || {
            Box::pin(async move {
                calls.bump();
                Err(std::io::Error::from(kind))
            })
        }
    }

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
