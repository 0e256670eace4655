//! Seeded synthetic workloads and a replay harness comparing a
//! [`TieredCache`] with and without the [`AdaptivePolicy`] at the same L1
//! capacity (moka's TinyLFU alone is the baseline).
//!
//! Used by the `evaluate` example and the benchmark; deterministic for a seed
//! (up to moka's own concurrent bookkeeping, which the harness drains after
//! every miss).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use foundation_core::Cost;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;

use super::{AdaptiveConfig, AdaptivePolicy};
use crate::cache::{Loaded, TieredCache};
use crate::config::CacheConfig;
use crate::entry::Entry;
use crate::error::Error;
use crate::scope::{Key, Scope, Selector};
use crate::tier::{MapTier, Tier, TierPolicy};

/// One request of a workload.
#[derive(Debug, Clone)]
pub struct Request {
    /// The key.
    pub key: Key,
    /// What a miss costs (micro-units).
    pub cost_micros: u64,
}

/// A named sequence of requests.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The workload's name.
    pub name: String,
    /// The requests, in order.
    pub requests: Vec<Request>,
}

/// SplitMix64: a tiny seeded generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A Zipf(`skew`) sampler over ranks `0..n`.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks.
    #[must_use]
    pub fn new(n: usize, skew: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|r| {
                acc += 1.0 / (r as f64).powf(skew);
                acc
            })
            .collect();
        let total = acc.max(f64::MIN_POSITIVE);
        cdf.iter_mut().for_each(|c| *c /= total);
        Self { cdf }
    }

    /// A rank.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf
            .partition_point(|c| *c < u)
            .min(self.cdf.len().saturating_sub(1))
    }
}

/// Key classes of the synthetic workloads: (name, cost per miss, share of keys).
pub const CLASSES: [(&str, u64, u64); 2] = [("chat", 200, 80), ("report", 8_000, 20)];

fn keys(n: usize, seed: u64) -> Vec<(Key, u64)> {
    let scope = Scope::new().with_tenant("eval");
    let mut rng = Rng::new(seed ^ 0xC1A5);
    (0..n)
        .map(|i| {
            let (class, cost, _) = if rng.next_u64() % 100 < CLASSES[0].2 {
                CLASSES[0]
            } else {
                CLASSES[1]
            };
            (Key::new(&scope, format!("{class}:{i}")), cost)
        })
        .collect()
}

/// Zipf-distributed requests over `n_keys` keys of two classes with a 40×
/// cost difference, popularity independent of class.
#[must_use]
pub fn zipf(seed: u64, requests: usize, n_keys: usize, skew: f64) -> Workload {
    drifting_inner(
        seed,
        requests,
        n_keys,
        skew,
        usize::MAX,
        format!("zipf(s={skew})"),
    )
}

/// As [`zipf`], but popularity drifts: every `phase` requests the ranks move
/// by a tenth of the key space, so yesterday's hot keys cool down.
#[must_use]
pub fn drifting(seed: u64, requests: usize, n_keys: usize, skew: f64, phase: usize) -> Workload {
    drifting_inner(
        seed,
        requests,
        n_keys,
        skew,
        phase,
        format!("drifting zipf(s={skew}, phase={phase})"),
    )
}

fn drifting_inner(
    seed: u64,
    requests: usize,
    n_keys: usize,
    skew: f64,
    phase: usize,
    name: String,
) -> Workload {
    let ks = keys(n_keys, seed);
    let z = Zipf::new(n_keys, skew);
    let mut rng = Rng::new(seed);
    // A seeded permutation of ranks to keys.
    let mut perm: Vec<usize> = (0..n_keys).collect();
    for i in (1..n_keys).rev() {
        perm.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let requests = (0..requests)
        .map(|i| {
            let shift = (i / phase.max(1)) * (n_keys / 10).max(1);
            let (key, cost) = &ks[perm[(z.sample(&mut rng) + shift) % n_keys]];
            Request {
                key: key.clone(),
                cost_micros: *cost,
            }
        })
        .collect();
    Workload { name, requests }
}

/// Uniformly random requests (no structure to learn).
#[must_use]
pub fn uniform(seed: u64, requests: usize, n_keys: usize) -> Workload {
    let ks = keys(n_keys, seed);
    let mut rng = Rng::new(seed);
    let requests = (0..requests)
        .map(|_| {
            let (key, cost) = &ks[(rng.next_u64() % n_keys as u64) as usize];
            Request {
                key: key.clone(),
                cost_micros: *cost,
            }
        })
        .collect();
    Workload {
        name: "uniform".into(),
        requests,
    }
}

/// Virtual time between two requests of a replay (the caches run on a
/// manual clock, so learned reuse gaps and TTLs are in workload time).
pub const REQUEST_GAP: std::time::Duration = std::time::Duration::from_millis(100);

/// The outcome of one replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Requests replayed.
    pub requests: u64,
    /// Requests answered from L1.
    pub hits: u64,
    /// What all requests would have cost without a cache (micro-units).
    pub cost_total: u64,
    /// What the hits saved (micro-units).
    pub cost_saved: u64,
}

impl Report {
    /// Hits / requests.
    #[must_use]
    pub fn hit_ratio(&self) -> f64 {
        self.hits as f64 / self.requests.max(1) as f64
    }

    /// Cost saved / total cost.
    #[must_use]
    pub fn saved_ratio(&self) -> f64 {
        self.cost_saved as f64 / self.cost_total.max(1) as f64
    }
}

/// Replays `w` against an L1 of `capacity` entries, with the adaptive policy
/// or with moka's TinyLFU alone.
///
/// # Panics
/// Never for valid arguments; a zero capacity is reported as a configuration
/// error by the cache builder and turned into an empty report.
pub async fn replay(w: &Workload, capacity: usize, adaptive: bool) -> Report {
    run(w, capacity, adaptive, None).await
}

/// Replays `w` on a manual clock against an L1 of `capacity` entries over
/// `lower` (if any), with or without the adaptive policy; an empty report
/// when the configuration is refused (zero capacity).
async fn run(
    w: &Workload,
    capacity: usize,
    adaptive: bool,
    lower: Option<Arc<dyn Tier<u8>>>,
) -> Report {
    let clock = foundation_core::ManualClock::new();
    let mut b = TieredCache::<u8>::builder(CacheConfig::new(capacity as u64))
        .with_weigher(|_, _| 1)
        .with_clock(Arc::new(clock.clone()));
    if let Some(l) = lower {
        b = b.with_tier(l, TierPolicy::default());
    }
    if adaptive {
        match AdaptivePolicy::new(AdaptiveConfig::new(capacity)) {
            Ok(p) => b = b.with_placement(Arc::new(p)),
            Err(_) => return Report::default(),
        }
    }
    let Ok(cache) = b.build() else {
        return Report::default();
    };
    let mut r = Report::default();
    for req in &w.requests {
        clock.advance(REQUEST_GAP);
        r.requests += 1;
        r.cost_total += req.cost_micros;
        if matches!(cache.get(&req.key).await, Ok(Some(_))) {
            r.hits += 1;
            r.cost_saved += req.cost_micros;
        } else {
            cache
                .insert(
                    &req.key,
                    Loaded::new(0u8).with_cost(Cost::from_micros(req.cost_micros)),
                )
                .await;
            cache.memory().run_pending_tasks().await;
        }
    }
    r
}

/// As [`zipf`] over `n_keys` reused keys, with a `one_shot` share of
/// requests for keys asked exactly once (class `oneshot`, cost 100: think
/// per-request prompts with a unique id in them).
#[must_use]
pub fn with_one_shots(
    seed: u64,
    requests: usize,
    n_keys: usize,
    skew: f64,
    one_shot: f64,
) -> Workload {
    let base = zipf(seed, requests, n_keys, skew);
    let scope = Scope::new().with_tenant("eval");
    let mut rng = Rng::new(seed ^ 0x0E5E);
    let requests = base
        .requests
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            if rng.unit() < one_shot {
                Request {
                    key: Key::new(&scope, format!("oneshot:{i}")),
                    cost_micros: 100,
                }
            } else {
                r
            }
        })
        .collect();
    Workload {
        name: format!("zipf(s={skew}) + {:.0}% one-shot", one_shot * 100.0),
        requests,
    }
}

/// A lower tier that counts its writes and the entries it returns (the
/// tier-placement comparison; `l2_hits` may include expired entries the
/// cache then refuses).
#[derive(Debug)]
struct Counting {
    map: MapTier,
    writes: AtomicU64,
    hits: AtomicU64,
}

impl Tier<u8> for Counting {
    fn name(&self) -> &'static str {
        "l2"
    }

    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Arc<Entry<u8>>>, Error>> {
        async move {
            let e = Tier::<u8>::get(&self.map, key).await?;
            if e.is_some() {
                self.hits.fetch_add(1, Ordering::Relaxed);
            }
            Ok(e)
        }
        .boxed()
    }

    fn put<'a>(
        &'a self,
        key: &'a Key,
        entry: Arc<Entry<u8>>,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.map.put(key, entry, now_ms)
    }

    fn invalidate<'a>(&'a self, selector: &'a Selector) -> BoxFuture<'a, Result<(), Error>> {
        Tier::<u8>::invalidate(&self.map, selector)
    }
}

/// The outcome of a two-tier replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierReport {
    /// Hit ratio and cost over both tiers.
    pub overall: Report,
    /// Requests answered from L2.
    pub l2_hits: u64,
    /// Writes into L2 (write-through and promotions).
    pub l2_writes: u64,
    /// Entries L2 holds at the end.
    pub l2_entries: usize,
}

/// Replays `w` against an L1 of `capacity` entries over an unbounded L2
/// (write-through, promote on hit), with the adaptive policy deciding
/// admission and tier placement, or with moka's TinyLFU in L1 and every
/// load written to L2.
pub async fn replay_tiers(w: &Workload, capacity: usize, adaptive: bool) -> TierReport {
    let l2 = Arc::new(Counting {
        map: MapTier::new(usize::MAX),
        writes: AtomicU64::new(0),
        hits: AtomicU64::new(0),
    });
    let overall = run(w, capacity, adaptive, Some(l2.clone())).await;
    TierReport {
        overall,
        l2_hits: l2.hits.load(Ordering::Relaxed),
        l2_writes: l2.writes.load(Ordering::Relaxed),
        l2_entries: l2.map.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_are_seeded() {
        let a = zipf(7, 1000, 100, 1.0);
        let b = zipf(7, 1000, 100, 1.0);
        assert!(
            a.requests
                .iter()
                .zip(&b.requests)
                .all(|(x, y)| x.key == y.key)
        );
        let c = zipf(8, 1000, 100, 1.0);
        assert!(
            a.requests
                .iter()
                .zip(&c.requests)
                .any(|(x, y)| x.key != y.key)
        );
    }

    #[test]
    fn zipf_is_skewed() {
        let z = Zipf::new(1000, 1.0);
        let mut rng = Rng::new(1);
        let top = (0..10_000).filter(|_| z.sample(&mut rng) < 10).count();
        assert!(top > 3_000, "{top}"); // the top 1% of ranks take ~39% of requests
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;

    #[tokio::test]
    async fn one_shot_classes_stay_out_of_the_lower_tier_without_losing_hits() {
        let w = with_one_shots(12, 20_000, 5_000, 0.9, 0.3);
        let base = replay_tiers(&w, 300, false).await;
        let ours = replay_tiers(&w, 300, true).await;
        assert!(
            (ours.l2_writes as f64) < base.l2_writes as f64 * 0.8,
            "{ours:?} vs {base:?}"
        );
        assert!(
            ours.overall.cost_saved >= base.overall.cost_saved,
            "{ours:?} vs {base:?}"
        );
        // Without one-shot keys nothing is kept out.
        let w = zipf(13, 20_000, 5_000, 0.9);
        let base = replay_tiers(&w, 300, false).await;
        let ours = replay_tiers(&w, 300, true).await;
        assert!(
            ours.overall.hit_ratio() >= base.overall.hit_ratio() * 0.98,
            "{ours:?} vs {base:?}"
        );
    }

    #[tokio::test]
    async fn adaptive_saves_more_than_tinylfu_on_heterogeneous_costs() {
        let w = zipf(11, 30_000, 10_000, 0.9);
        let base = replay(&w, 400, false).await;
        let ours = replay(&w, 400, true).await;
        assert!(
            ours.cost_saved as f64 > base.cost_saved as f64 * 1.05,
            "{ours:?} vs {base:?}"
        );
        assert!(
            ours.hit_ratio() > base.hit_ratio() * 0.9,
            "{ours:?} vs {base:?}"
        );
    }
}
