//! Vector indexes: exact search for small sets; with the `ann` feature, an
//! HNSW index (USearch) for large ones.

use std::collections::HashMap;

/// Dot product of two equal-length slices, written so the compiler
/// vectorizes it (eight independent accumulators).
#[inline]
#[must_use]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Exact (brute-force) nearest-neighbour search over unit vectors stored
/// contiguously. Removal is O(1) (swap-remove).
#[derive(Debug, Clone, Default)]
pub struct ExactIndex {
    dims: usize,
    data: Vec<f32>,
    ids: Vec<u64>,
    pos: HashMap<u64, usize>,
}

// === impl ExactIndex ===

impl ExactIndex {
    /// An empty index of `dims`-dimensional vectors.
    #[must_use]
    pub fn new(dims: usize) -> Self {
        Self {
            dims,
            ..Self::default()
        }
    }

    /// The number of vectors.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the index is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `id` is present.
    #[must_use]
    pub fn contains(&self, id: u64) -> bool {
        self.pos.contains_key(&id)
    }

    /// Adds (or replaces) a vector of the index's dimension; returns false
    /// (and stores nothing) for a wrong dimension.
    pub fn insert(&mut self, id: u64, v: &[f32]) -> bool {
        if v.len() != self.dims {
            return false;
        }
        self.remove(id);
        self.pos.insert(id, self.ids.len());
        self.ids.push(id);
        self.data.extend_from_slice(v);
        true
    }

    /// Removes a vector; returns whether it was present.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(p) = self.pos.remove(&id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        if p != last {
            let moved = self.ids[last];
            self.ids.swap(p, last);
            let (d, dims) = (&mut self.data, self.dims);
            for k in 0..dims {
                d.swap(p * dims + k, last * dims + k);
            }
            self.pos.insert(moved, p);
        }
        self.ids.pop();
        self.data.truncate(last * self.dims);
        true
    }

    /// The vector stored for `id`.
    #[must_use]
    pub fn vector(&self, id: u64) -> Option<&[f32]> {
        self.pos
            .get(&id)
            .map(|p| &self.data[p * self.dims..(p + 1) * self.dims])
    }

    /// Iterates over `(id, vector)`.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[f32])> {
        self.ids
            .iter()
            .copied()
            .zip(self.data.chunks_exact(self.dims.max(1)))
    }

    /// The most similar vector (cosine, for unit vectors) and its similarity.
    #[must_use]
    pub fn nearest(&self, q: &[f32]) -> Option<(u64, f32)> {
        if q.len() != self.dims {
            return None;
        }
        let mut best: Option<(u64, f32)> = None;
        for (id, v) in self.iter() {
            let s = dot(q, v);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((id, s));
            }
        }
        best
    }
}

/// Settings of the approximate (HNSW) index a partition switches to above
/// [`SemanticConfig::ann_threshold`](super::SemanticConfig::ann_threshold)
/// vectors (feature `ann`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct AnnConfig {
    /// Graph edges per node (HNSW `M`): more edges, better recall, more memory.
    pub connectivity: usize,
    /// Candidates considered while inserting (`ef_construction`).
    pub expansion_add: usize,
    /// Candidates considered while searching (`ef`): the recall/latency knob.
    pub expansion_search: usize,
    /// Store vectors as 16-bit floats (half the memory; recall@1 measured
    /// unchanged on 384-d embeddings) instead of 32-bit.
    pub half_precision: bool,
}

impl Default for AnnConfig {
    /// M 16, ef_construction 128, ef 48, half precision: recall@1 0.99+ over
    /// 100k 384-d vectors (see the crate README).
    fn default() -> Self {
        Self {
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 48,
            half_precision: true,
        }
    }
}

impl foundation_core::Validate for AnnConfig {
    fn validate_into(&self, v: &mut foundation_core::Validator) {
        v.check(
            (2..=256).contains(&self.connectivity),
            "connectivity",
            "must be in 2..=256",
        );
        v.check(
            (1..=4096).contains(&self.expansion_add),
            "expansion_add",
            "must be in 1..=4096",
        );
        v.check(
            (1..=4096).contains(&self.expansion_search),
            "expansion_search",
            "must be in 1..=4096",
        );
    }
}

#[cfg(feature = "ann")]
pub use hnsw::HnswIndex;

#[cfg(feature = "ann")]
mod hnsw {
    use std::fmt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

    use super::AnnConfig;

    /// Concurrent searches the native index is prepared for; more callers
    /// wait for a free slot (the library indexes per-thread scratch space by
    /// slot, so the count must never be exceeded).
    const SEARCH_SLOTS: usize = 64;

    /// An approximate nearest-neighbour index: HNSW from
    /// [USearch](https://github.com/unum-cloud/USearch) (`usearch` crate),
    /// inner product over the cache's unit vectors, incremental inserts and
    /// removals.
    ///
    /// Searches take `&self` and run concurrently; inserts and removals take
    /// `&mut self` (the partition's write lock), which is also what makes
    /// growing the native index safe.
    pub struct HnswIndex {
        index: Index,
        dims: usize,
        in_use: AtomicUsize,
    }

    impl fmt::Debug for HnswIndex {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("HnswIndex")
                .field("dims", &self.dims)
                .field("len", &self.index.size())
                .field("capacity", &self.index.capacity())
                .finish_non_exhaustive()
        }
    }

    /// A held search slot.
    struct Slot<'a>(&'a AtomicUsize);

    impl Drop for Slot<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Release);
        }
    }

    impl HnswIndex {
        /// An empty index of `dims`-dimensional vectors with room for
        /// `capacity` before it first grows.
        ///
        /// # Errors
        /// The native library's message when it cannot allocate the index.
        pub fn new(dims: usize, capacity: usize, config: &AnnConfig) -> Result<Self, String> {
            let options = IndexOptions {
                dimensions: dims,
                metric: MetricKind::IP,
                quantization: if config.half_precision {
                    ScalarKind::F16
                } else {
                    ScalarKind::F32
                },
                connectivity: config.connectivity,
                expansion_add: config.expansion_add,
                expansion_search: config.expansion_search,
                multi: false,
            };
            let index = Index::new(&options).map_err(|e| e.to_string())?;
            index
                .reserve_capacity_and_threads(capacity.max(64), SEARCH_SLOTS)
                .map_err(|e| e.to_string())?;
            Ok(Self {
                index,
                dims,
                in_use: AtomicUsize::new(0),
            })
        }

        /// The number of vectors.
        #[must_use]
        pub fn len(&self) -> usize {
            self.index.size()
        }

        /// Whether the index is empty.
        #[must_use]
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Whether `id` is present.
        #[must_use]
        pub fn contains(&self, id: u64) -> bool {
            self.index.contains(id)
        }

        /// Changes the search breadth (`ef`).
        pub fn set_expansion_search(&mut self, ef: usize) {
            self.index.change_expansion_search(ef.max(1));
        }

        /// Adds (or replaces) a vector.
        ///
        /// # Errors
        /// A wrong dimension, or the native library's message.
        pub fn insert(&mut self, id: u64, v: &[f32]) -> Result<(), String> {
            if v.len() != self.dims {
                return Err(format!(
                    "expected {} dimensions, got {}",
                    self.dims,
                    v.len()
                ));
            }
            if self.index.contains(id) {
                self.index.remove(id).map_err(|e| e.to_string())?;
            }
            if self.index.size() >= self.index.capacity() {
                let grown = (self.index.capacity() * 2).max(64);
                self.index
                    .reserve_capacity_and_threads(grown, SEARCH_SLOTS)
                    .map_err(|e| e.to_string())?;
            }
            let _slot = self.slot();
            self.index.add(id, v).map_err(|e| e.to_string())
        }

        /// Adds a new vector from any thread, within the reserved capacity
        /// (bulk builds).
        pub(super) fn add_reserved(&self, id: u64, v: &[f32]) -> Result<(), String> {
            if v.len() != self.dims || self.index.size() >= self.index.capacity() {
                return Err(format!("vector {id} does not fit the index"));
            }
            let _slot = self.slot();
            self.index.add(id, v).map_err(|e| e.to_string())
        }

        /// Adds a vector under a new id concurrently with searches and other
        /// shared adds, when the index has room for every concurrent caller
        /// (the native index is thread-safe for adds and searches; only
        /// growing it needs exclusive access). `None`: no room, or `id` is
        /// present; use [`insert`](Self::insert) under exclusive access.
        pub fn try_add_shared(&self, id: u64, v: &[f32]) -> Option<Result<(), String>> {
            let room = self.index.capacity().saturating_sub(self.index.size());
            if v.len() != self.dims || room <= SEARCH_SLOTS || self.index.contains(id) {
                return None;
            }
            let _slot = self.slot();
            Some(self.index.add(id, v).map_err(|e| e.to_string()))
        }

        /// The stored vector for `id` (as stored: f16 storage rounds it).
        #[must_use]
        pub fn vector(&self, id: u64) -> Option<Vec<f32>> {
            let mut buf = vec![0f32; self.dims];
            match self.index.get(id, &mut buf) {
                Ok(n) if n > 0 => Some(buf),
                _ => None,
            }
        }

        /// Removes a vector; returns whether it was present.
        pub fn remove(&mut self, id: u64) -> bool {
            matches!(self.index.remove(id), Ok(n) if n > 0)
        }

        /// The most similar vector and its similarity (inner product).
        #[must_use]
        pub fn nearest(&self, q: &[f32]) -> Option<(u64, f32)> {
            if q.len() != self.dims || self.is_empty() {
                return None;
            }
            let _slot = self.slot();
            match self.index.search(q, 1) {
                Ok(m) => m
                    .keys
                    .first()
                    .zip(m.distances.first())
                    .map(|(k, d)| (*k, 1.0 - d)),
                Err(e) => {
                    tracing::warn!(error = %e, "approximate search failed; treated as no match");
                    None
                }
            }
        }

        fn slot(&self) -> Slot<'_> {
            loop {
                let n = self.in_use.load(Ordering::Acquire);
                if n < SEARCH_SLOTS
                    && self
                        .in_use
                        .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    return Slot(&self.in_use);
                }
                std::thread::yield_now();
            }
        }
    }
}

/// The index of one scope partition: exact search while it is small; with
/// the `ann` feature, an HNSW index once it holds `ann_threshold` vectors
/// (built off the async threads by the caller, then updated in place).
#[derive(Debug)]
pub struct PartitionIndex {
    exact: ExactIndex,
    #[cfg(feature = "ann")]
    ann: Option<HnswIndex>,
    /// Size at the last failed build: the next attempt waits until the
    /// partition has doubled, so a failing native index is not rebuilt on
    /// every insert.
    failed_at: Option<usize>,
}

// === impl PartitionIndex ===

impl PartitionIndex {
    /// An empty partition.
    #[must_use]
    pub fn new(dims: usize) -> Self {
        Self {
            exact: ExactIndex::new(dims),
            #[cfg(feature = "ann")]
            ann: None,
            failed_at: None,
        }
    }

    /// The number of vectors.
    #[must_use]
    pub fn len(&self) -> usize {
        #[cfg(feature = "ann")]
        if let Some(a) = &self.ann {
            return a.len();
        }
        self.exact.len()
    }

    /// Whether the partition is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the approximate index is in use.
    #[must_use]
    pub fn is_approximate(&self) -> bool {
        #[cfg(feature = "ann")]
        return self.ann.is_some();
        #[cfg(not(feature = "ann"))]
        false
    }

    /// Adds a vector; false (nothing stored) for a wrong dimension or a
    /// failure of the approximate index (logged).
    pub fn insert(&mut self, id: u64, v: &[f32]) -> bool {
        #[cfg(feature = "ann")]
        if let Some(a) = &mut self.ann {
            return match a.insert(id, v) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "approximate index insert failed; vector not indexed");
                    false
                }
            };
        }
        self.exact.insert(id, v)
    }

    /// Adds a vector without exclusive access when the approximate index is
    /// in use and has room (searches keep running meanwhile); `None` when the
    /// caller must use [`insert`](Self::insert) under the write lock.
    #[must_use]
    pub fn try_insert_shared(&self, id: u64, v: &[f32]) -> Option<bool> {
        #[cfg(feature = "ann")]
        if let Some(a) = &self.ann {
            return a.try_add_shared(id, v).map(|r| match r {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "approximate index insert failed; vector not indexed");
                    false
                }
            });
        }
        let _ = (id, v);
        None
    }

    /// Removes a vector.
    pub fn remove(&mut self, id: u64) -> bool {
        #[cfg(feature = "ann")]
        if let Some(a) = &mut self.ann {
            return a.remove(id);
        }
        self.exact.remove(id)
    }

    /// The nearest vector and its similarity.
    #[must_use]
    pub fn nearest(&self, q: &[f32]) -> Option<(u64, f32)> {
        #[cfg(feature = "ann")]
        if let Some(a) = &self.ann {
            return a.nearest(q);
        }
        self.exact.nearest(q)
    }

    /// A copy of the vector stored for `id`.
    #[must_use]
    pub fn vector(&self, id: u64) -> Option<Vec<f32>> {
        #[cfg(feature = "ann")]
        if let Some(a) = &self.ann {
            return a.vector(id);
        }
        self.exact.vector(id).map(<[f32]>::to_vec)
    }

    /// A copy of the vectors to build the approximate index from, when one
    /// is due (feature `ann`, no index yet, at least `threshold` vectors).
    #[must_use]
    pub fn build_due(&self, threshold: usize) -> Option<ExactIndex> {
        #[cfg(feature = "ann")]
        return (self.ann.is_none()
            && self.exact.len() >= threshold
            && self
                .failed_at
                .is_none_or(|n| self.exact.len() >= n.saturating_mul(2)))
        .then(|| self.exact.clone());
        #[cfg(not(feature = "ann"))]
        {
            let _ = threshold;
            None
        }
    }

    /// Records a failed build: the next one waits until the partition has
    /// doubled.
    pub fn build_failed(&mut self) {
        self.failed_at = Some(self.len());
    }

    /// Switches to `ann`, built from [`build_due`](Self::build_due)'s copy
    /// `built_from`: vectors added since are inserted, vectors removed since
    /// are removed, and the exact copy is dropped.
    ///
    /// # Errors
    /// The approximate index's message; the partition then stays exact.
    #[cfg(feature = "ann")]
    pub fn install(&mut self, mut ann: HnswIndex, built_from: &ExactIndex) -> Result<(), String> {
        if self.ann.is_some() {
            return Ok(());
        }
        for (id, v) in self.exact.iter() {
            if !built_from.contains(id) {
                ann.insert(id, v)?;
            }
        }
        for (id, _) in built_from.iter() {
            if !self.exact.contains(id) {
                ann.remove(id);
            }
        }
        self.ann = Some(ann);
        self.exact = ExactIndex::new(self.exact.dims);
        Ok(())
    }
}

/// Builds an approximate index over `points` (CPU-heavy: run it on a
/// blocking thread; it inserts from up to four threads).
///
/// # Errors
/// The native library's message.
#[cfg(feature = "ann")]
pub fn build_ann(points: &ExactIndex, config: &AnnConfig) -> Result<HnswIndex, String> {
    let ann = HnswIndex::new(points.dims, points.len() * 2, config)?;
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, 4);
    let failed = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (ann, failed) = (&ann, &failed);
            s.spawn(move || {
                for (id, v) in points.iter().skip(t).step_by(threads) {
                    if let Err(e) = ann.add_reserved(id, v) {
                        *failed
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                        return;
                    }
                }
            });
        }
    });
    match failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(e) => Err(e),
        None => Ok(ann),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unit(mut v: Vec<f32>) -> Vec<f32> {
        super::super::embed::normalize(&mut v);
        v
    }

    proptest! {
        #[test]
        fn exact_index_matches_a_naive_scan(vs in proptest::collection::vec(proptest::collection::vec(-1f32..1., 12), 1..40), removals in proptest::collection::vec(0usize..40, 0..10), q in proptest::collection::vec(-1f32..1., 12)) {
            let mut idx = ExactIndex::new(12);
            let mut live: HashMap<u64, Vec<f32>> = HashMap::new();
            for (i, v) in vs.into_iter().enumerate() {
                let v = unit(v);
                idx.insert(i as u64, &v);
                live.insert(i as u64, v);
            }
            for r in removals {
                idx.remove(r as u64);
                live.remove(&(r as u64));
            }
            prop_assert_eq!(idx.len(), live.len());
            for (id, v) in &live {
                prop_assert_eq!(idx.vector(*id).unwrap(), v.as_slice());
            }
            let naive = live.iter().map(|(id, v)| (*id, dot(&q, v))).fold(None, |b: Option<(u64, f32)>, x| if b.is_none_or(|b| x.1 > b.1) { Some(x) } else { b });
            prop_assert_eq!(idx.nearest(&q).map(|x| x.1), naive.map(|x| x.1));
        }
    }

    #[test]
    fn wrong_dimensions_are_refused() {
        let mut idx = ExactIndex::new(4);
        assert!(!idx.insert(1, &[1.0, 0.0]));
        assert!(idx.nearest(&[1.0]).is_none());
    }

    #[cfg(feature = "ann")]
    #[test]
    fn partition_switches_to_ann_and_keeps_changes_made_during_the_build() {
        let mut p = PartitionIndex::new(8);
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        for i in 0..300u64 {
            p.insert(i, &unit((0..8).map(|_| rnd()).collect()));
        }
        assert!(p.build_due(400).is_none());
        let copy = p.build_due(200).unwrap();
        let ann = build_ann(&copy, &AnnConfig::default()).unwrap();
        // Changes while the index was being built.
        let late = unit(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        p.insert(1000, &late);
        let some = p.exact.vector(5).unwrap().to_vec();
        p.remove(5);
        p.install(ann, &copy).unwrap();
        assert!(p.is_approximate());
        assert_eq!(p.len(), 300);
        assert_eq!(p.nearest(&late).unwrap().0, 1000, "added during the build");
        assert_ne!(p.nearest(&some).unwrap().0, 5, "removed during the build");
        let other = copy.vector(7).unwrap().to_vec();
        let (id, sim) = p.nearest(&other).unwrap();
        assert_eq!(id, 7);
        assert!(
            (sim - 1.0).abs() < 1e-2,
            "similarity of an exact copy: {sim}"
        );
        p.remove(1000);
        assert_ne!(p.nearest(&late).unwrap().0, 1000);
        assert!(!p.insert(2000, &[1.0]), "wrong dimension refused");
    }

    #[cfg(feature = "ann")]
    #[test]
    fn a_failed_build_waits_until_the_partition_doubles() {
        let mut p = PartitionIndex::new(4);
        for i in 0..10u64 {
            p.insert(i, &unit(vec![1.0, i as f32, 0.5, 0.25]));
        }
        assert!(p.build_due(8).is_some());
        p.build_failed();
        assert!(p.build_due(8).is_none());
        for i in 10..20u64 {
            p.insert(i, &unit(vec![0.5, i as f32, 1.0, 0.25]));
        }
        assert!(p.build_due(8).is_some(), "doubled: try again");
    }

    #[cfg(feature = "ann")]
    #[test]
    fn shared_inserts_run_alongside_searches() {
        let mut seed = 11u64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let vs: Vec<Vec<f32>> = (0..700)
            .map(|_| unit((0..16).map(|_| rnd()).collect()))
            .collect();
        let mut p = PartitionIndex::new(16);
        for (i, v) in vs.iter().take(300).enumerate() {
            p.insert(i as u64, v);
        }
        assert!(
            p.try_insert_shared(999, &vs[0]).is_none(),
            "exact partitions need &mut"
        );
        let copy = p.build_due(1).unwrap();
        p.install(build_ann(&copy, &AnnConfig::default()).unwrap(), &copy)
            .unwrap();
        let part = parking_lot::RwLock::new(p);
        std::thread::scope(|s| {
            for t in 0..4usize {
                let (part, vs) = (&part, &vs);
                s.spawn(move || {
                    for i in (300 + t..700).step_by(4) {
                        let done = part.read().try_insert_shared(i as u64, &vs[i]);
                        let ok = done.unwrap_or_else(|| part.write().insert(i as u64, &vs[i]));
                        assert!(ok, "{i}");
                        let _ = part.read().nearest(&vs[i - 300]);
                    }
                });
            }
        });
        let p = part.into_inner();
        assert_eq!(p.len(), 700);
        for i in [300usize, 451, 699] {
            assert_eq!(p.nearest(&vs[i]).unwrap().0, i as u64);
        }
    }

    #[test]
    fn ann_config_errors_name_the_field() {
        use foundation_core::Validate;
        let c = AnnConfig {
            connectivity: 0,
            expansion_search: 0,
            ..AnnConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert!(
            e.has_error_at("connectivity") && e.has_error_at("expansion_search"),
            "{e}"
        );
    }
}
