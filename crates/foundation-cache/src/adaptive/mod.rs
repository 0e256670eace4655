//! The adaptive policy: learn from accesses which entries are worth L1.
//!
//! [`AdaptivePolicy`] implements [`Placement`]. For every key it estimates
//! how often the key is asked for (a count-min sketch with periodic halving,
//! like TinyLFU's) and, per *key class* (by default the scope plus the key
//! name up to its first `:`), the value of a hit: the money the loader
//! reported plus the measured load latency priced at `latency_value_per_sec`.
//!
//! - **Admission and eviction:** the policy tracks which keys it placed in
//!   L1 and their score, `frequency × hit value`. While L1 has room, entries
//!   are admitted; when it is full, a newcomer is compared with the
//!   lowest-scoring of a few sampled residents (sampled eviction, as Redis'
//!   LFU does) and replaces it only if it scores higher: the policy tells the
//!   cache to drop that resident and moka stores the newcomer. Cheap but
//!   popular keys stop crowding out expensive ones.
//! - **Tier placement:** per class, the probability that a loaded entry is
//!   asked for again (tracked with a bounded ghost list of recent loads,
//!   Laplace-smoothed) times its hit value is the *expected value* of storing
//!   it. Once a class has [`AdaptiveConfig::min_loads`] loads, an entry goes
//!   to lower tier `i` (L2, L3, … in order) only while that expected value
//!   reaches [`AdaptiveConfig::lower_min_value`]`[i]`, and a class whose
//!   entries are practically never reused (under 1% of loads) is kept out of
//!   every lower tier: one-shot results (per-request prompts, unique
//!   documents) stop costing shared-tier writes and crowding out entries that
//!   are reused. Reuse keeps being tracked for such classes, so a class that
//!   starts being reused is written again. Entries L1 refuses still go to the
//!   lower tiers the class earns, so a value computed once is not lost.
//! - **TTL:** classes whose entries are rarely reused (probability under
//!   0.05) get their TTL capped at four typical reuse gaps, or at the span
//!   of the ghost list when no reuse was ever seen, so they free memory
//!   early. (A wider cap, at probability 0.2, cost 1.2 points of hit ratio
//!   on the Zipf replays: reuse gaps longer than the ghost window are not
//!   observed, so the typical gap is underestimated.)
//!
//! Whether it wins is measured, not assumed: see [`eval`] and the
//! `evaluate` example, which replay seeded workloads against moka's TinyLFU
//! alone at the same capacity.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::cache::{Decision, Placement};
use crate::entry::Meta;
use crate::scope::Key;

pub mod eval;

/// Maps a key to its class.
pub type Classifier = Arc<dyn Fn(&Key) -> String + Send + Sync>;

/// Settings of the [`AdaptivePolicy`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// L1 capacity in entries (how many keys the admission bar should let in).
    pub capacity: usize,
    /// Money (micro-units) one second of saved latency is worth, so latency
    /// and cost combine into one hit value. 0 = money only.
    #[serde(default)]
    pub latency_value_per_sec: u64,
    /// Per lower tier, in order: the expected value of a stored entry (reuse
    /// probability × hit value, micro-units) below which a learned class is
    /// not written there. Missing entries mean 0 (only never-reused classes
    /// are kept out). Make it increase with depth to keep, say, the durable
    /// tier for expensive answers.
    #[serde(default)]
    pub lower_min_value: Vec<u64>,
    /// Loads a class needs before its statistics steer tier placement.
    #[serde(default = "default_min_loads")]
    pub min_loads: u32,
}

fn default_min_loads() -> u32 {
    32
}

impl AdaptiveConfig {
    /// `capacity` L1 entries, money-only hit values, default placement rules.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            latency_value_per_sec: 0,
            lower_min_value: Vec::new(),
            min_loads: default_min_loads(),
        }
    }

    /// Prices one second of saved latency (micro-units).
    #[must_use]
    pub fn with_latency_value_per_sec(mut self, value: u64) -> Self {
        self.latency_value_per_sec = value;
        self
    }

    /// Sets the per-lower-tier expected-value bars.
    #[must_use]
    pub fn with_lower_min_value(mut self, bars: impl Into<Vec<u64>>) -> Self {
        self.lower_min_value = bars.into();
        self
    }
}

impl foundation_core::Validate for AdaptiveConfig {
    fn validate_into(&self, v: &mut foundation_core::Validator) {
        v.check(self.capacity > 0, "capacity", "must be at least 1");
        v.check(self.min_loads > 0, "min_loads", "must be at least 1");
    }
}

#[derive(Debug, Default, Clone)]
struct ClassStats {
    /// EWMA of hit value (micro-units).
    value: f64,
    loads: f64,
    reuses: f64,
    /// EWMA of the gap between a load and its first reuse (ms).
    gap_ms: f64,
}

/// Below this observed reuse rate a learned class is treated as one-shot.
const ONE_SHOT: f64 = 0.01;
/// Below this reuse probability a class's TTL is capped.
const RARE: f64 = 0.05;

impl ClassStats {
    fn reuse_probability(&self) -> f64 {
        (self.reuses + 1.0) / (self.loads + 2.0)
    }

    /// How many lower tiers (in order) an entry of this class earns.
    fn lower_tiers(&self, config: &AdaptiveConfig) -> usize {
        if self.loads < f64::from(config.min_loads) {
            return usize::MAX;
        }
        if self.reuses < self.loads * ONE_SHOT {
            return 0;
        }
        let expected = self.reuse_probability() * self.value;
        config
            .lower_min_value
            .iter()
            .position(|bar| expected < *bar as f64)
            .unwrap_or(usize::MAX)
    }
}

#[derive(Debug)]
struct Sketch {
    rows: [Vec<u8>; 4],
    mask: usize,
    additions: usize,
    reset_at: usize,
}

impl Sketch {
    fn new(capacity: usize) -> Self {
        let width = (capacity * 4).next_power_of_two().max(64);
        Self {
            rows: std::array::from_fn(|_| vec![0; width]),
            mask: width - 1,
            additions: 0,
            reset_at: capacity * 10,
        }
    }
    fn index(&self, h: u64, row: usize) -> usize {
        let x = h
            .rotate_left(u32::try_from(row * 17).unwrap_or(0))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        usize::try_from(x >> 32).unwrap_or(0) & self.mask
    }
    fn increment(&mut self, h: u64) {
        for r in 0..4 {
            let i = self.index(h, r);
            self.rows[r][i] = self.rows[r][i].saturating_add(1);
        }
        self.additions += 1;
        if self.additions >= self.reset_at {
            for row in &mut self.rows {
                row.iter_mut().for_each(|c| *c /= 2);
            }
            self.additions /= 2;
        }
    }
    fn estimate(&self, h: u64) -> u8 {
        (0..4)
            .map(|r| self.rows[r][self.index(h, r)])
            .min()
            .unwrap_or(0)
    }
}

#[derive(Debug)]
struct State {
    sketch: Sketch,
    classes: HashMap<String, ClassStats>,
    /// Keys this policy placed in L1: (hash, key, class), with their positions.
    resident: Vec<(u64, Key, String)>,
    resident_pos: HashMap<u64, usize>,
    /// Recent loads not yet reused: hash → (class, load time ms).
    ghosts: HashMap<u64, (String, u64)>,
    ghost_order: VecDeque<u64>,
    rng: eval::Rng,
    now_ms: u64,
}

/// Cost-aware admission, placement and TTL learned from accesses; see the
/// [module docs](self).
///
/// ```
/// use std::sync::Arc;
/// use foundation_cache::adaptive::{AdaptiveConfig, AdaptivePolicy};
/// use foundation_cache::{CacheConfig, TieredCache};
///
/// // L1 for 10k entries; a second of saved latency is worth 1,000 micro-units;
/// // the durable tier (second lower tier) only for entries expected to save 500.
/// let config = AdaptiveConfig::new(10_000)
///     .with_latency_value_per_sec(1_000)
///     .with_lower_min_value([0, 500]);
/// let policy = AdaptivePolicy::new(config).unwrap();
/// let cache: TieredCache<String> = TieredCache::builder(CacheConfig::new(64 << 20))
///     .with_placement(Arc::new(policy))
///     .build()
///     .unwrap();
/// ```
pub struct AdaptivePolicy {
    config: AdaptiveConfig,
    classify: Classifier,
    hasher: std::collections::hash_map::RandomState,
    state: Mutex<State>,
}

impl std::fmt::Debug for AdaptivePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("AdaptivePolicy")
            .field("config", &self.config)
            .field("classes", &st.classes.len())
            .field("resident", &st.resident.len())
            .finish_non_exhaustive()
    }
}

/// The default class: the scope plus the key name up to its first `:`.
#[must_use]
pub fn default_class(key: &Key) -> String {
    let name = key.name();
    let prefix = name.split_once(':').map_or(name, |(p, _)| p);
    format!("{:016x}/{prefix}", key.scope().hash64())
}

// === impl AdaptivePolicy ===

impl AdaptivePolicy {
    /// A policy with `config` and the [`default_class`] classifier.
    ///
    /// # Errors
    /// The configuration's validation errors.
    pub fn new(config: AdaptiveConfig) -> Result<Self, foundation_core::ValidationErrors> {
        foundation_core::Validate::validate(&config)?;
        let sketch = Sketch::new(config.capacity);
        Ok(Self {
            config,
            classify: Arc::new(default_class),
            hasher: std::collections::hash_map::RandomState::new(),
            state: Mutex::new(State {
                sketch,
                classes: HashMap::new(),
                resident: Vec::new(),
                resident_pos: HashMap::new(),
                ghosts: HashMap::new(),
                ghost_order: VecDeque::new(),
                rng: eval::Rng::new(0x5eed),
                now_ms: 0,
            }),
        })
    }

    /// Uses `classify` to group keys into classes.
    #[must_use]
    pub fn with_classifier(
        mut self,
        classify: impl Fn(&Key) -> String + Send + Sync + 'static,
    ) -> Self {
        self.classify = Arc::new(classify);
        self
    }

    fn hash(&self, key: &Key) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The learned `(reuse probability, hit value in micro-units)` of a class.
    #[must_use]
    pub fn class_estimate(&self, class: &str) -> Option<(f64, f64)> {
        self.state
            .lock()
            .classes
            .get(class)
            .map(|c| (c.reuse_probability(), c.value))
    }

    /// The number of keys the policy holds in L1.
    #[must_use]
    pub fn resident(&self) -> usize {
        self.state.lock().resident.len()
    }
}

/// Residents compared with a newcomer when L1 is full.
const SAMPLE: usize = 8;

impl State {
    fn score(&self, h: u64, class: &str) -> f64 {
        f64::from(self.sketch.estimate(h)) * self.classes.get(class).map_or(0.0, |c| c.value)
    }

    fn remove_resident(&mut self, h: u64) -> Option<Key> {
        let p = self.resident_pos.remove(&h)?;
        let (_, key, _) = self.resident.swap_remove(p);
        if let Some((moved, _, _)) = self.resident.get(p) {
            self.resident_pos.insert(*moved, p);
        }
        Some(key)
    }

    /// The lowest-scoring of a few sampled residents.
    fn weakest(&mut self) -> Option<(u64, f64)> {
        let n = self.resident.len();
        let mut best: Option<(u64, f64)> = None;
        for _ in 0..SAMPLE.min(n) {
            let z = self.rng.next_u64();
            let (h, _, class) = &self.resident[usize::try_from(z >> 33).unwrap_or(0) % n];
            let s = self.score(*h, class);
            if best.is_none_or(|(_, b)| s < b) {
                best = Some((*h, s));
            }
        }
        best
    }
}

impl Placement for AdaptivePolicy {
    fn on_access(&self, key: &Key, _hit: bool) {
        let h = self.hash(key);
        let mut st = self.state.lock();
        st.sketch.increment(h);
        if let Some((class, loaded_ms)) = st.ghosts.remove(&h) {
            let gap = st.now_ms.saturating_sub(loaded_ms) as f64;
            let c = st.classes.entry(class).or_default();
            c.reuses += 1.0;
            c.gap_ms = if c.gap_ms == 0.0 {
                gap
            } else {
                0.9 * c.gap_ms + 0.1 * gap
            };
        }
    }

    fn place(&self, key: &Key, meta: &Meta) -> Decision {
        let h = self.hash(key);
        let class = (self.classify)(key);
        let latency_value =
            meta.load_micros as f64 / 1e6 * self.config.latency_value_per_sec as f64;
        let value = meta.cost_micros as f64 + latency_value;
        let mut st = self.state.lock();
        st.now_ms = st.now_ms.max(meta.created_ms);
        let fresh_load = meta.load_micros > 0 || meta.cost_micros > 0;
        let stats = st.classes.entry(class.clone()).or_default();
        if fresh_load {
            stats.value = if stats.loads == 0.0 {
                value
            } else {
                0.95 * stats.value + 0.05 * value
            };
            stats.loads += 1.0;
        }
        let (p, gap) = (stats.reuse_probability(), stats.gap_ms);
        let lower_tiers = stats.lower_tiers(&self.config);
        // Decay so that drifting classes are re-learned.
        if stats.loads > 10_000.0 {
            stats.loads /= 2.0;
            stats.reuses /= 2.0;
        }
        if fresh_load && !st.ghosts.contains_key(&h) {
            st.ghosts.insert(h, (class.clone(), meta.created_ms));
            st.ghost_order.push_back(h);
            while st.ghost_order.len() > self.config.capacity * 4 {
                if let Some(old) = st.ghost_order.pop_front() {
                    st.ghosts.remove(&old);
                }
            }
        }
        // Reuse is only observable within the ghost window (the span of the
        // tracked recent loads); classes practically never reused within it
        // keep their entries no longer than four typical gaps, or the window.
        let window_ms = st
            .ghost_order
            .front()
            .and_then(|h| st.ghosts.get(h))
            .map_or(0, |(_, at)| st.now_ms.saturating_sub(*at)) as f64;
        let max_ttl = (p < RARE && window_ms > 0.0).then(|| {
            let horizon = if gap > 0.0 {
                (gap * 4.0).min(window_ms)
            } else {
                window_ms
            };
            Duration::from_millis(horizon.max(1_000.0) as u64)
        });
        let mut evict = None;
        let memory = if st.resident_pos.contains_key(&h) || st.resident.len() < self.config.capacity
        {
            true
        } else {
            let score = st.score(h, &class);
            match st.weakest() {
                Some((weak, weak_score)) if score > weak_score => {
                    evict = st.remove_resident(weak);
                    true
                }
                _ => false,
            }
        };
        if memory && !st.resident_pos.contains_key(&h) {
            let at = st.resident.len();
            st.resident.push((h, key.clone(), class));
            st.resident_pos.insert(h, at);
        }
        Decision {
            memory,
            lower_tiers,
            max_ttl,
            evict,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(loads: f64, reuses: f64, value: f64) -> ClassStats {
        ClassStats {
            value,
            loads,
            reuses,
            gap_ms: 0.0,
        }
    }

    #[test]
    fn lower_tiers_follow_the_expected_value_bars() {
        let config = AdaptiveConfig::new(100).with_lower_min_value([100, 600]);
        // Expected value (51/102) * 1000 ≈ 500: L2 yes, L3 no.
        assert_eq!(class(100.0, 50.0, 1000.0).lower_tiers(&config), 1);
        assert_eq!(class(100.0, 99.0, 2000.0).lower_tiers(&config), usize::MAX);
        assert_eq!(
            class(100.0, 2.0, 1000.0).lower_tiers(&config),
            0,
            "under 100"
        );
        // One-shot classes stay out whatever the bars; unlearned classes go everywhere.
        let open = AdaptiveConfig::new(100);
        assert_eq!(class(100.0, 0.0, 1e9).lower_tiers(&open), 0);
        assert_eq!(class(10.0, 0.0, 1.0).lower_tiers(&open), usize::MAX);
        assert_eq!(class(100.0, 5.0, 1.0).lower_tiers(&open), usize::MAX);
    }

    #[test]
    fn config_errors_name_the_field() {
        use foundation_core::Validate;
        let c = AdaptiveConfig {
            min_loads: 0,
            ..AdaptiveConfig::new(0)
        };
        let e = c.validate().unwrap_err();
        assert!(
            e.has_error_at("capacity") && e.has_error_at("min_loads"),
            "{e}"
        );
    }
}
