//! Seeded workloads for predictive warming: one with sequential structure
//! (sessions reading documents page by page) and one without (uniform).

use std::sync::Arc;

use foundation_core::BoxError;
use futures_util::FutureExt as _;

use super::{Prefetcher, WarmConfig, WarmStats};
use crate::adaptive::eval::{Rng, Zipf};
use crate::cache::{Loaded, TieredCache};
use crate::config::CacheConfig;
use crate::scope::Key;

/// Sessions that pick a document (Zipf over `docs`) and read 3–10 of its
/// pages in order; `noise` is the share of requests replaced by a random page.
#[must_use]
pub fn sequential(seed: u64, requests: usize, docs: usize, noise: f64) -> Vec<Key> {
    let mut rng = Rng::new(seed);
    let z = Zipf::new(docs, 0.8);
    let mut out = Vec::with_capacity(requests);
    while out.len() < requests {
        let d = z.sample(&mut rng);
        let pages = 3 + (rng.next_u64() % 8) as usize;
        for p in 0..pages {
            if rng.unit() < noise {
                let (rd, rp) = (rng.next_u64() % docs as u64, rng.next_u64() % 10);
                out.push(Key::unscoped(format!("doc:{rd}:page:{rp}")));
            } else {
                out.push(Key::unscoped(format!("doc:{d}:page:{p}")));
            }
        }
    }
    out.truncate(requests);
    out
}

/// Uniformly random pages (nothing to predict).
#[must_use]
pub fn random(seed: u64, requests: usize, docs: usize) -> Vec<Key> {
    let mut rng = Rng::new(seed);
    (0..requests)
        .map(|_| {
            Key::unscoped(format!(
                "doc:{}:page:{}",
                rng.next_u64() % docs as u64,
                rng.next_u64() % 10
            ))
        })
        .collect()
}

/// The outcome of one warming replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmReport {
    /// Hit ratio of the requests.
    pub hit_ratio: f64,
    /// Loads the requests had to wait for (misses).
    pub demand_loads: u64,
    /// Prefetch counters (zero without warming).
    pub prefetch: WarmStats,
}

/// Replays `keys` against an L1 of `capacity` entries, with or without a
/// [`Prefetcher`]. Loads complete at once; prefetches run between requests.
pub async fn replay(keys: &[Key], capacity: u64, warm: bool) -> WarmReport {
    let Ok(cache) = TieredCache::<u8>::builder(CacheConfig::new(capacity))
        .with_weigher(|_, _| 1)
        .build()
    else {
        return WarmReport {
            hit_ratio: 0.0,
            demand_loads: 0,
            prefetch: WarmStats::default(),
        };
    };
    let prefetcher = if warm {
        let loader: super::PrefetchLoader<u8> =
            Arc::new(|_k: &Key| Some(async { Ok::<_, BoxError>(Loaded::new(1u8)) }.boxed()));
        Prefetcher::install(
            &cache,
            WarmConfig {
                max_unused: (capacity / 10).max(1) as usize,
                ..WarmConfig::default()
            },
            loader,
        )
        .ok()
    } else {
        None
    };
    let (mut hits, mut misses) = (0u64, 0u64);
    for k in keys {
        if matches!(cache.get(k).await, Ok(Some(_))) {
            hits += 1;
        } else {
            misses += 1;
            cache.insert(k, 1u8).await;
        }
        // Let spawned prefetches finish before the next request.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        if misses % 64 == 0 {
            cache.memory().run_pending_tasks().await;
        }
    }
    WarmReport {
        hit_ratio: hits as f64 / keys.len().max(1) as f64,
        demand_loads: misses,
        prefetch: prefetcher.map(|p| p.stats()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn warming_helps_sequential_and_does_not_hurt_random() {
        let seq = sequential(5, 20_000, 2_000, 0.05);
        let (cold, warm) = (
            replay(&seq, 1_000, false).await,
            replay(&seq, 1_000, true).await,
        );
        assert!(
            warm.hit_ratio > cold.hit_ratio + 0.05,
            "{warm:?} vs {cold:?}"
        );
        assert!(warm.prefetch.precision() > 0.5, "{warm:?}");
        let rnd = random(6, 20_000, 2_000);
        let (cold, warm) = (
            replay(&rnd, 1_000, false).await,
            replay(&rnd, 1_000, true).await,
        );
        assert!(
            warm.hit_ratio >= cold.hit_ratio - 0.01,
            "{warm:?} vs {cold:?}"
        );
        assert!(
            warm.prefetch.issued < 200,
            "few confident predictions on random data: {warm:?}"
        );
    }
}
