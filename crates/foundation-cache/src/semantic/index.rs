//! Vector indexes: exact search for small sets, and an IVF snapshot plus an
//! exact tail for large ones.

use std::collections::HashMap;
use std::sync::Arc;

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

/// An approximate index over a snapshot of the vectors: an inverted file
/// (IVF-flat). Spherical k-means splits the vectors into `nlist` cells; a
/// search compares the query with every cell centroid and scans the `nprobe`
/// nearest cells exactly.
///
/// Built in-house after measuring the candidates: `instant-distance`'s HNSW
/// took 96 s to build 10k × 384-d vectors on the project's 2-core machine
/// (100k would take far longer), and `hnsw_rs` pulls a logger, mmap and
/// allocator-level dependencies into every user. IVF builds 100k vectors in
/// seconds, has no dependencies and its recall is tunable with `nprobe`.
#[derive(Debug)]
pub struct AnnSnapshot {
    dims: usize,
    centroids: Vec<f32>,
    lists: Vec<ExactIndex>,
    nprobe: usize,
    len: usize,
}

/// IVF build and search parameters.
#[derive(Debug, Clone, Copy)]
pub struct AnnParams {
    /// Number of cells (`None`: √n, clamped to 16..=4096).
    pub nlist: Option<usize>,
    /// Cells scanned per search (recall vs latency); at least 1.
    pub nprobe: usize,
    /// k-means iterations.
    pub iterations: usize,
    /// Seed for the initial centroids (reproducible builds).
    pub seed: u64,
}

impl Default for AnnParams {
    fn default() -> Self {
        Self {
            nlist: None,
            nprobe: 16,
            iterations: 6,
            seed: 0x5eed,
        }
    }
}

fn nearest_centroid(centroids: &[f32], dims: usize, v: &[f32]) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, c) in centroids.chunks_exact(dims).enumerate() {
        let s = dot(c, v);
        if s > best.1 {
            best = (i, s);
        }
    }
    best.0
}

impl AnnSnapshot {
    /// Builds the index over `points` (CPU-heavy: run it on a blocking thread).
    #[must_use]
    pub fn build(points: Vec<(u64, Arc<[f32]>)>, params: AnnParams) -> Self {
        let len = points.len();
        let dims = points.first().map_or(0, |p| p.1.len());
        let nlist = params
            .nlist
            .unwrap_or_else(|| (len as f64).sqrt() as usize)
            .clamp(1, 4096)
            .min(len.max(1));
        let mut rng = crate::adaptive::eval::Rng::new(params.seed);
        // Train on a sample: 64 points per cell is plenty for the centroids.
        let sample: Vec<&[f32]> = if len <= nlist * 64 {
            points.iter().map(|p| &*p.1).collect()
        } else {
            (0..nlist * 64)
                .map(|_| &*points[(rng.next_u64() % len as u64) as usize].1)
                .collect()
        };
        let mut centroids: Vec<f32> = Vec::with_capacity(nlist * dims);
        for _ in 0..nlist {
            if let Some(v) = sample.get((rng.next_u64() % sample.len().max(1) as u64) as usize) {
                centroids.extend_from_slice(v);
            }
        }
        let nlist = centroids.len() / dims.max(1);
        for _ in 0..params.iterations {
            let mut sums = vec![0f32; nlist * dims];
            let mut counts = vec![0usize; nlist];
            for v in &sample {
                let c = nearest_centroid(&centroids, dims, v);
                counts[c] += 1;
                for (s, x) in sums[c * dims..(c + 1) * dims].iter_mut().zip(v.iter()) {
                    *s += x;
                }
            }
            for c in 0..nlist {
                if counts[c] > 0 {
                    let cell = &mut sums[c * dims..(c + 1) * dims];
                    super::embed::normalize(cell);
                    centroids[c * dims..(c + 1) * dims].copy_from_slice(cell);
                }
            }
        }
        let mut lists: Vec<ExactIndex> = (0..nlist).map(|_| ExactIndex::new(dims)).collect();
        for (id, v) in &points {
            let c = nearest_centroid(&centroids, dims, v);
            lists[c].insert(*id, v);
        }
        Self {
            dims,
            centroids,
            lists,
            nprobe: params.nprobe.max(1),
            len,
        }
    }

    /// The number of vectors in the snapshot.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Changes how many cells a search scans.
    pub fn set_nprobe(&mut self, nprobe: usize) {
        self.nprobe = nprobe.max(1);
    }

    /// Whether the snapshot is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The nearest vector among those `alive` accepts, with its similarity.
    pub fn nearest(&self, q: &[f32], alive: impl Fn(u64) -> bool) -> Option<(u64, f32)> {
        if q.len() != self.dims {
            return None;
        }
        let mut cells: Vec<(usize, f32)> = self
            .centroids
            .chunks_exact(self.dims)
            .map(|c| dot(c, q))
            .enumerate()
            .collect();
        let probe = self.nprobe.min(cells.len());
        if probe == 0 {
            return None;
        }
        cells.select_nth_unstable_by(probe - 1, |a, b| b.1.total_cmp(&a.1));
        let mut best: Option<(u64, f32)> = None;
        for (c, _) in &cells[..probe] {
            for (id, v) in self.lists[*c].iter() {
                let s = dot(q, v);
                if best.is_none_or(|(_, b)| s > b) && alive(id) {
                    best = Some((id, s));
                }
            }
        }
        best
    }
}

/// The index of one scope partition: exact for small sets; an IVF snapshot
/// once it holds `ann_threshold` vectors, rebuilt
/// (by the caller, off the async threads) when the exact tail grows past a
/// quarter of the snapshot.
#[derive(Debug)]
pub struct PartitionIndex {
    all: ExactIndex,
    ann: Option<(Arc<AnnSnapshot>, ExactIndex)>,
}

// === impl PartitionIndex ===

impl PartitionIndex {
    /// An empty partition.
    #[must_use]
    pub fn new(dims: usize) -> Self {
        Self {
            all: ExactIndex::new(dims),
            ann: None,
        }
    }

    /// The number of vectors.
    #[must_use]
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether the partition is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Whether an approximate snapshot is installed.
    #[must_use]
    pub fn is_approximate(&self) -> bool {
        self.ann.is_some()
    }

    /// Adds a vector.
    pub fn insert(&mut self, id: u64, v: &[f32]) -> bool {
        if let Some((_, tail)) = &mut self.ann {
            tail.insert(id, v);
        }
        self.all.insert(id, v)
    }

    /// Removes a vector.
    pub fn remove(&mut self, id: u64) -> bool {
        if let Some((_, tail)) = &mut self.ann {
            tail.remove(id);
        }
        self.all.remove(id)
    }

    /// The nearest vector and its similarity.
    #[must_use]
    pub fn nearest(&self, q: &[f32]) -> Option<(u64, f32)> {
        if let Some((snap, tail)) = &self.ann {
            let a = snap.nearest(q, |id| self.all.contains(id));
            let b = tail.nearest(q);
            return match (a, b) {
                (Some(x), Some(y)) => Some(if y.1 > x.1 { y } else { x }),
                (x, y) => x.or(y),
            };
        }
        self.all.nearest(q)
    }

    /// The vectors to build a new snapshot from, when one is due: at least
    /// `threshold` vectors and no snapshot yet, or a tail past a quarter of it.
    #[must_use]
    pub fn snapshot_due(&self, threshold: usize) -> Option<Vec<(u64, Arc<[f32]>)>> {
        let due = match &self.ann {
            None => self.all.len() >= threshold,
            Some((snap, tail)) => tail.len() * 4 > snap.len().max(threshold),
        };
        due.then(|| self.all.iter().map(|(id, v)| (id, Arc::from(v))).collect())
    }

    /// Installs a snapshot built from [`snapshot_due`](Self::snapshot_due)'s
    /// vectors; vectors added since stay in the exact tail.
    pub fn install(&mut self, snap: Arc<AnnSnapshot>, covered: &std::collections::HashSet<u64>) {
        let mut tail = ExactIndex::new(self.all.dims);
        for (id, v) in self.all.iter() {
            if !covered.contains(&id) {
                tail.insert(id, v);
            }
        }
        self.ann = Some((snap, tail));
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

    #[test]
    fn partition_switches_to_ann_and_keeps_new_vectors_searchable() {
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
        let pts = p.snapshot_due(200).unwrap();
        let covered = pts.iter().map(|x| x.0).collect();
        p.install(
            Arc::new(AnnSnapshot::build(pts, AnnParams::default())),
            &covered,
        );
        let late = unit(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        p.insert(1000, &late);
        assert_eq!(p.nearest(&late).unwrap().0, 1000, "the tail is searched");
        p.remove(1000);
        assert_ne!(p.nearest(&late).unwrap().0, 1000);
        let some = p.all.vector(5).unwrap().to_vec();
        assert_eq!(
            p.nearest(&some).unwrap().0,
            5,
            "snapshot finds an exact copy"
        );
        p.remove(5);
        assert_ne!(p.nearest(&some).unwrap().0, 5, "removed ids are skipped");
    }
}
