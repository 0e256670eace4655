//! Relative-error quantile sketches: [`AtomicSketch`] records lock-free,
//! [`Sketch`] is its mergeable, serializable snapshot.
//!
//! The sketch is DDSketch-style (Masson, Rim, Lee, VLDB 2019) with a
//! log-linear bucket layout like Prometheus native histograms: 35 buckets per
//! power of two, so bucket bounds grow by `γ = 2^(1/35)` ≈ 1.02. Answering a
//! quantile with the bucket's representative `2 lo γ / (γ + 1)` is within
//! relative error `(γ − 1) / (γ + 1)` ≈ 0.99% of every value the bucket holds,
//! so **any quantile is within [`RELATIVE_ERROR`] (1%) of the exact sample at
//! the same rank**, whatever the distribution. Finding a bucket takes the
//! binary exponent and a 1024-entry table on the top mantissa bits: no
//! logarithm on the record path.
//!
//! The index range is fixed: magnitudes in `[MIN_MAGNITUDE, MAX_MAGNITUDE]`
//! (1e-9 to 1e18, which covers nanoseconds to centuries in seconds, and any
//! token count or micro-unit amount) get the guarantee; smaller magnitudes
//! count as zero and larger ones clamp to the top bucket (min and max stay
//! exact, and quantiles are clamped to them). Negative values use a mirrored
//! set of buckets. Memory per sketch is therefore bounded by a constant
//! (3 150 buckets per sign) no matter how many samples it sees, and buckets are
//! allocated in chunks of 64 only when touched, so a latency series spanning
//! three decades holds about six chunks (3 KiB).
//!
//! ```
//! use foundation_metrics::sketch::{AtomicSketch, Quantile};
//!
//! let s = AtomicSketch::new();
//! for ms in 1..=1000 {
//!     s.record(f64::from(ms) / 1000.0);
//! }
//! let p99 = s.quantile(Quantile::P99).unwrap();
//! assert!((p99 - 0.990).abs() / 0.990 <= 0.01);
//! let snap = s.snapshot();
//! assert_eq!(snap.count(), 1000);
//! ```

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The relative error `α` guaranteed for every quantile: 1% (the mapping's
/// exact bound is `(γ − 1) / (γ + 1)` ≈ 0.99%).
pub const RELATIVE_ERROR: f64 = 0.01;
/// Buckets per power of two: `γ = 2^(1/35)` ≈ 1.0200.
const PER_BINADE: usize = 35;
/// Lowest binary exponent with buckets (`2^-30` ≈ 9.3e-10 ≤ `MIN_MAGNITUDE`).
const MIN_EXP: i32 = -30;
/// Highest binary exponent with buckets (`2^60` ≈ 1.15e18 > `MAX_MAGNITUDE`).
const MAX_EXP: i32 = 59;
/// Magnitudes below this count as zero.
pub const MIN_MAGNITUDE: f64 = 1e-9;
/// Magnitudes above this land in the top bucket (min/max stay exact).
pub const MAX_MAGNITUDE: f64 = 1e18;
/// Buckets per sign.
#[allow(clippy::cast_sign_loss, reason = "MAX_EXP >= MIN_EXP")]
pub(crate) const NUM_SLOTS: usize = (MAX_EXP - MIN_EXP + 1) as usize * PER_BINADE;
const CHUNK: usize = 64;
const NUM_CHUNKS: usize = NUM_SLOTS.div_ceil(CHUNK);
/// Identifies the bucket mapping in serialized sketches, so a sketch saved by
/// a build with another mapping is refused instead of misread.
const MAPPING_VERSION: u32 = 2;
/// Mantissa cells of the lookup table (top 10 mantissa bits).
const CELLS: usize = 1024;

/// Bucket bounds within a binade and the lookup table on mantissa bits.
struct Tables {
    /// `bounds[j] = 2^(j/35)`, `bounds[35] = 2`.
    bounds: [f64; PER_BINADE + 1],
    /// For each cell `[1 + c/1024, 1 + (c+1)/1024)`, the bucket of its lower
    /// edge. A cell (0.1% wide) holds at most one bound (buckets are 2% wide),
    /// so one comparison finishes the lookup.
    cell: [u8; CELLS],
    /// `γ = 2^(1/35)`.
    gamma: f64,
}

static TABLES: std::sync::LazyLock<Tables> = std::sync::LazyLock::new(|| {
    #[allow(clippy::cast_precision_loss, reason = "small integers")]
    let bounds: [f64; PER_BINADE + 1] = std::array::from_fn(|j| {
        if j == PER_BINADE {
            2.0
        } else {
            (j as f64 / PER_BINADE as f64).exp2()
        }
    });
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        reason = "j < 35"
    )]
    let cell: [u8; CELLS] = std::array::from_fn(|c| {
        let lo = 1.0 + c as f64 / CELLS as f64;
        bounds.iter().rposition(|b| *b <= lo).unwrap_or(0) as u8
    });
    Tables {
        bounds,
        cell,
        gamma: (1.0 / PER_BINADE as f64).exp2(),
    }
});

/// The bucket slot (0-based) for a magnitude `m >= MIN_MAGNITUDE`: bucket
/// `35 e + j` holds `[2^(e + j/35), 2^(e + (j+1)/35))`. No logarithm: the
/// binary exponent and a table on the top mantissa bits.
#[inline]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    reason = "exponent bits fit i32; the slot is range-checked"
)]
fn slot_of(m: f64) -> usize {
    let bits = m.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
    if exp < MIN_EXP {
        return 0;
    }
    if exp > MAX_EXP {
        return NUM_SLOTS - 1;
    }
    let t = &*TABLES;
    let c = ((bits >> 42) & 0x3ff) as usize;
    let mut j = t.cell.get(c).copied().unwrap_or(0) as usize;
    let mantissa = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if t.bounds.get(j + 1).is_some_and(|b| mantissa >= *b) {
        j += 1;
    }
    (exp - MIN_EXP) as usize * PER_BINADE + j
}

/// The lowest magnitude of a slot: `2^(e + j/35)`.
#[inline]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    reason = "slots < 4096"
)]
fn slot_lower(slot: usize) -> f64 {
    let e = (slot / PER_BINADE) as i32 + MIN_EXP;
    TABLES.bounds.get(slot % PER_BINADE).copied().unwrap_or(1.0) * f64::from(e).exp2()
}

/// The representative magnitude of a slot, `2 lo γ / (γ + 1)`: within
/// `(γ − 1) / (γ + 1)` of everything in `[lo, lo γ)`.
#[inline]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    reason = "slots < 4096"
)]
fn slot_value(slot: usize) -> f64 {
    let g = TABLES.gamma;
    2.0 * slot_lower(slot) * g / (g + 1.0)
}

/// A quantile in `[0, 1]`, validated once so queries cannot fail on it.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Quantile(f64);

// === impl Quantile ===

impl Quantile {
    /// The median.
    pub const P50: Self = Self(0.5);
    /// The 90th percentile.
    pub const P90: Self = Self(0.9);
    /// The 95th percentile.
    pub const P95: Self = Self(0.95);
    /// The 99th percentile.
    pub const P99: Self = Self(0.99);
    /// The 99.9th percentile.
    pub const P999: Self = Self(0.999);

    /// `q` as a quantile.
    ///
    /// # Errors
    /// [`InvalidQuantile`] if `q` is not a number in `[0, 1]`.
    pub fn new(q: f64) -> Result<Self, InvalidQuantile> {
        if (0.0..=1.0).contains(&q) {
            Ok(Self(q))
        } else {
            Err(InvalidQuantile(q))
        }
    }

    /// The quantile as a float in `[0, 1]`.
    #[must_use]
    pub const fn get(self) -> f64 {
        self.0
    }

    /// The 0-based rank of this quantile among `n > 0` sorted samples, by
    /// the nearest-rank definition: `ceil(q · n) − 1` (0 for `q = 0`). The
    /// accuracy guarantee is stated against the exact sample at this rank.
    #[must_use]
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "q in [0,1] and the product is at most n"
    )]
    pub fn rank(self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((self.0 * n as f64).ceil() as u64)
            .saturating_sub(1)
            .min(n - 1)
    }
}

impl TryFrom<f64> for Quantile {
    type Error = InvalidQuantile;
    fn try_from(q: f64) -> Result<Self, Self::Error> {
        Self::new(q)
    }
}

impl<'de> Deserialize<'de> for Quantile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let q = f64::deserialize(d)?;
        Self::new(q).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Quantile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A quantile outside `[0, 1]` (or NaN).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("quantile must be a number in [0, 1], got {0}")]
pub struct InvalidQuantile(pub f64);

impl foundation_core::Classify for InvalidQuantile {
    fn kind(&self) -> foundation_core::ErrorKind {
        foundation_core::ErrorKind::InvalidInput
    }
}

/// `f64` stored in an `AtomicU64`.
#[derive(Debug)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn new(v: f64) -> Self {
        Self(AtomicU64::new(v.to_bits()))
    }
    #[inline]
    fn load(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    #[inline]
    fn add(&self, v: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f64::from_bits(b) + v).to_bits())
            });
    }
    #[inline]
    fn min(&self, v: f64) {
        if v < self.load() {
            let _ = self
                .0
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    (v < f64::from_bits(b)).then_some(v.to_bits())
                });
        }
    }
    #[inline]
    fn max(&self, v: f64) {
        if v > self.load() {
            let _ = self
                .0
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    (v > f64::from_bits(b)).then_some(v.to_bits())
                });
        }
    }
}

type Chunk = [AtomicU64; CHUNK];

/// One sign's buckets, allocated a chunk at a time on first touch.
struct AtomicStore {
    chunks: Box<[OnceLock<Box<Chunk>>]>,
}

impl AtomicStore {
    fn new() -> Self {
        Self {
            chunks: (0..NUM_CHUNKS).map(|_| OnceLock::new()).collect(),
        }
    }

    #[inline]
    fn add(&self, slot: usize, n: u64) {
        if let Some(cell) = self.chunks.get(slot / CHUNK) {
            let chunk = cell.get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
            if let Some(c) = chunk.get(slot % CHUNK) {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// `(slot, count)` for every non-empty bucket, ascending.
    fn for_each(&self, mut f: impl FnMut(usize, u64)) {
        for (ci, cell) in self.chunks.iter().enumerate() {
            if let Some(chunk) = cell.get() {
                for (j, c) in chunk.iter().enumerate() {
                    let n = c.load(Ordering::Relaxed);
                    if n > 0 {
                        f(ci * CHUNK + j, n);
                    }
                }
            }
        }
    }

    /// Walks buckets ascending (or descending) and returns the slot holding
    /// the `rank`-th sample (0-based) in that order, and how many were passed.
    fn find(&self, rank: u64, descending: bool) -> Result<usize, u64> {
        let mut seen = 0u64;
        let n = self.chunks.len();
        for k in 0..n {
            let ci = if descending { n - 1 - k } else { k };
            let Some(chunk) = self.chunks.get(ci).and_then(OnceLock::get) else {
                continue;
            };
            for k2 in 0..CHUNK {
                let j = if descending { CHUNK - 1 - k2 } else { k2 };
                let c = chunk.get(j).map_or(0, |c| c.load(Ordering::Relaxed));
                seen += c;
                if seen > rank {
                    return Ok(ci * CHUNK + j);
                }
            }
        }
        Err(seen)
    }

    fn total(&self) -> u64 {
        let mut t = 0;
        self.for_each(|_, c| t += c);
        t
    }

    fn allocated_chunks(&self) -> usize {
        self.chunks.iter().filter(|c| c.get().is_some()).count()
    }
}

impl fmt::Debug for AtomicStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicStore")
            .field("allocated_chunks", &self.allocated_chunks())
            .finish()
    }
}

/// A lock-free relative-error sketch: `record` is one logarithm and a few
/// relaxed atomic operations, safe to call from any number of threads.
///
/// Quantiles are within [`RELATIVE_ERROR`] of the exact sample at the same
/// rank (see the [module docs](self)); count, sum, min and max are exact.
/// Non-finite values are not recorded; they are counted in
/// [`invalid`](Self::invalid) so nothing disappears silently.
#[derive(Debug)]
pub struct AtomicSketch {
    pos: AtomicStore,
    neg: OnceLock<Box<AtomicStore>>,
    zero: AtomicU64,
    sum: AtomicF64,
    min: AtomicF64,
    max: AtomicF64,
    invalid: AtomicU64,
}

// === impl AtomicSketch ===

impl AtomicSketch {
    /// An empty sketch.
    #[must_use]
    pub fn new() -> Self {
        Self {
            pos: AtomicStore::new(),
            neg: OnceLock::new(),
            zero: AtomicU64::new(0),
            sum: AtomicF64::new(0.0),
            min: AtomicF64::new(f64::INFINITY),
            max: AtomicF64::new(f64::NEG_INFINITY),
            invalid: AtomicU64::new(0),
        }
    }

    /// Records one sample.
    #[inline]
    pub fn record(&self, v: f64) {
        self.record_n(v, 1);
    }

    /// Records the same sample `n` times.
    #[inline]
    #[allow(clippy::cast_precision_loss, reason = "sum of n equal samples")]
    pub fn record_n(&self, v: f64, n: u64) {
        if n == 0 {
            return;
        }
        if !v.is_finite() {
            self.invalid.fetch_add(n, Ordering::Relaxed);
            return;
        }
        let m = v.abs();
        if m < MIN_MAGNITUDE {
            self.zero.fetch_add(n, Ordering::Relaxed);
        } else if v > 0.0 {
            self.pos.add(slot_of(m), n);
        } else {
            self.neg
                .get_or_init(|| Box::new(AtomicStore::new()))
                .add(slot_of(m), n);
        }
        self.sum.add(if n == 1 { v } else { v * n as f64 });
        self.min.min(v);
        self.max.max(v);
    }

    /// Samples recorded (exact): the sum of the buckets, so it always
    /// agrees with the quantiles. Walks the allocated buckets (no count is
    /// kept on the record path, which saves an atomic add per sample).
    #[must_use]
    pub fn count(&self) -> u64 {
        let (neg, zero, pos) = self.totals();
        neg + zero + pos
    }

    /// Samples in the negative buckets, the zero bucket, the positive buckets.
    fn totals(&self) -> (u64, u64, u64) {
        let neg = self.neg.get().map_or(0, |s| s.total());
        (neg, self.zero.load(Ordering::Relaxed), self.pos.total())
    }

    /// Whether any sample was recorded (min <= max once one was).
    fn has_samples(&self) -> bool {
        self.min.load() <= self.max.load()
    }

    /// Sum of the samples recorded.
    #[must_use]
    pub fn sum(&self) -> f64 {
        self.sum.load()
    }

    /// Smallest sample, if any.
    #[must_use]
    pub fn min(&self) -> Option<f64> {
        self.has_samples().then(|| self.min.load())
    }

    /// Largest sample, if any.
    #[must_use]
    pub fn max(&self) -> Option<f64> {
        self.has_samples().then(|| self.max.load())
    }

    /// Non-finite samples refused by [`record`](Self::record).
    #[must_use]
    pub fn invalid(&self) -> u64 {
        self.invalid.load(Ordering::Relaxed)
    }

    /// The quantile `q` straight from the atomic buckets, without copying
    /// them: cheap enough for a routing decision (walks at most the allocated
    /// chunks, from whichever end is closer to the rank). `None` when empty.
    #[must_use]
    pub fn quantile(&self, q: Quantile) -> Option<f64> {
        let (neg_total, zero, pos_total) = self.totals();
        let n = neg_total + zero + pos_total;
        if n == 0 {
            return None;
        }
        let rank = q.rank(n);
        let (lo, hi) = (self.min.load(), self.max.load());
        let v = if rank < neg_total {
            // Negative buckets: ascending value is descending magnitude.
            self.neg
                .get()
                .and_then(|s| s.find(rank, true).ok())
                .map_or(lo, |slot| -slot_value(slot))
        } else if rank < neg_total + zero {
            0.0
        } else {
            let r = rank - neg_total - zero;
            // Walk from the closer end; buckets growing concurrently may move
            // the rank past the end, in which case the extreme is the answer.
            let found = if r < pos_total / 2 {
                self.pos.find(r, false).ok()
            } else {
                self.pos.find(pos_total - 1 - r, true).ok()
            };
            found.map_or(hi, slot_value)
        };
        Some(v.clamp(lo, hi))
    }

    /// A consistent-enough copy: each bucket is read atomically, and the
    /// count is the sum of the buckets read, so quantiles of the snapshot are
    /// always well-defined even while other threads record.
    #[must_use]
    pub fn snapshot(&self) -> Sketch {
        let mut s = Sketch::new();
        self.pos.for_each(|slot, c| s.pos.add(slot, c));
        if let Some(neg) = self.neg.get() {
            neg.for_each(|slot, c| s.neg.add(slot, c));
        }
        s.zero = self.zero.load(Ordering::Relaxed);
        s.count = s.zero + s.pos.total() + s.neg.total();
        s.sum = self.sum.load();
        if s.count > 0 {
            s.min = self.min.load();
            s.max = self.max.load();
        }
        s.invalid = self.invalid();
        s
    }

    /// Heap bytes held by the buckets: bounded by a constant, whatever the
    /// number of samples.
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        let chunks =
            self.pos.allocated_chunks() + self.neg.get().map_or(0, |s| s.allocated_chunks());
        let tables = NUM_CHUNKS
            * std::mem::size_of::<OnceLock<Box<Chunk>>>()
            * (1 + usize::from(self.neg.get().is_some()));
        chunks * std::mem::size_of::<Chunk>() + tables
    }

    /// The most [`allocated_bytes`](Self::allocated_bytes) can ever be.
    #[must_use]
    pub const fn max_allocated_bytes() -> usize {
        2 * (NUM_CHUNKS * std::mem::size_of::<Chunk>()
            + NUM_CHUNKS * std::mem::size_of::<OnceLock<Box<Chunk>>>())
    }
}

/// Samples a [`SketchRecorder`] buffers before it flushes by itself.
const FLUSH_EVERY: u32 = 4096;

/// A single-owner buffer in front of an [`AtomicSketch`], like
/// hdrhistogram's `Recorder`: [`record`](Self::record) is a table lookup and
/// plain (non-atomic) increments into a per-recorder bucket array, and the
/// buffer is added to the shared sketch every 4096 samples, on
/// [`flush`](Self::flush) and on drop.
///
/// Use one per thread on very hot paths; readers of the shared sketch see
/// buffered samples only after the next flush. The buffer costs about 13 KiB
/// (one `u32` per bucket).
pub struct SketchRecorder<'a> {
    shared: &'a AtomicSketch,
    pos: Box<[u32]>,
    neg: Option<Box<[u32]>>,
    /// Dirty slot ranges (`lo > hi` when clean).
    pos_range: (usize, usize),
    neg_range: (usize, usize),
    zero: u64,
    pending: u32,
    sum: f64,
    min: f64,
    max: f64,
    invalid: u64,
}

impl fmt::Debug for SketchRecorder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SketchRecorder")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

const CLEAN: (usize, usize) = (usize::MAX, 0);

// === impl SketchRecorder ===

impl<'a> SketchRecorder<'a> {
    fn new(shared: &'a AtomicSketch) -> Self {
        Self {
            shared,
            pos: vec![0; NUM_SLOTS].into_boxed_slice(),
            neg: None,
            pos_range: CLEAN,
            neg_range: CLEAN,
            zero: 0,
            pending: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            invalid: 0,
        }
    }

    /// Buffers one sample; flushes every 4096 samples.
    #[inline]
    pub fn record(&mut self, v: f64) {
        if v.is_finite() {
            let m = v.abs();
            if m < MIN_MAGNITUDE {
                self.zero += 1;
            } else {
                let slot = slot_of(m);
                let (counts, range) = if v > 0.0 {
                    (&mut self.pos, &mut self.pos_range)
                } else {
                    (
                        self.neg
                            .get_or_insert_with(|| vec![0; NUM_SLOTS].into_boxed_slice()),
                        &mut self.neg_range,
                    )
                };
                if let Some(c) = counts.get_mut(slot) {
                    *c += 1;
                }
                range.0 = range.0.min(slot);
                range.1 = range.1.max(slot);
            }
            self.sum += v;
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        } else {
            self.invalid += 1;
        }
        self.pending += 1;
        if self.pending >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Adds everything buffered to the shared sketch.
    pub fn flush(&mut self) {
        if self.pending == 0 {
            return;
        }
        let drain = |counts: &mut [u32], range: &mut (usize, usize), store: &AtomicStore| {
            if range.0 <= range.1 {
                for (slot, c) in counts
                    .iter_mut()
                    .enumerate()
                    .take(range.1 + 1)
                    .skip(range.0)
                {
                    if *c > 0 {
                        store.add(slot, u64::from(*c));
                        *c = 0;
                    }
                }
            }
            *range = CLEAN;
        };
        drain(&mut self.pos, &mut self.pos_range, &self.shared.pos);
        if let Some(neg) = &mut self.neg {
            let store = self.shared.neg.get_or_init(|| Box::new(AtomicStore::new()));
            drain(neg, &mut self.neg_range, store);
        }
        let s = self.shared;
        if self.zero > 0 {
            s.zero.fetch_add(self.zero, Ordering::Relaxed);
        }
        if self.invalid > 0 {
            s.invalid.fetch_add(self.invalid, Ordering::Relaxed);
        }
        if self.min <= self.max {
            s.sum.add(self.sum);
            s.min.min(self.min);
            s.max.max(self.max);
        }
        self.zero = 0;
        self.invalid = 0;
        self.pending = 0;
        self.sum = 0.0;
        self.min = f64::INFINITY;
        self.max = f64::NEG_INFINITY;
    }
}

impl Drop for SketchRecorder<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl AtomicSketch {
    /// A buffered single-owner recorder in front of this sketch (see
    /// [`SketchRecorder`]).
    #[must_use]
    pub fn recorder(&self) -> SketchRecorder<'_> {
        SketchRecorder::new(self)
    }
}

impl Default for AtomicSketch {
    fn default() -> Self {
        Self::new()
    }
}

/// Dense counts for a contiguous range of slots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Bins {
    offset: usize,
    counts: Vec<u64>,
}

impl Bins {
    fn add(&mut self, slot: usize, n: u64) {
        if n == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.offset = slot;
            self.counts.push(n);
            return;
        }
        if slot < self.offset {
            let grow = self.offset - slot;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = slot;
        } else if slot >= self.offset + self.counts.len() {
            self.counts.resize(slot - self.offset + 1, 0);
        }
        if let Some(c) = self.counts.get_mut(slot - self.offset) {
            *c += n;
        }
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn iter(&self) -> impl DoubleEndedIterator<Item = (usize, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(move |(i, c)| (self.offset + i, *c))
    }

    fn trim(&mut self) {
        let first = self.counts.iter().position(|c| *c > 0);
        match first {
            None => self.counts.clear(),
            Some(f) => {
                let last = self.counts.iter().rposition(|c| *c > 0).unwrap_or(f);
                self.counts.truncate(last + 1);
                self.counts.drain(..f);
                self.offset += f;
            }
        }
    }
}

/// A plain (single-threaded) sketch: the snapshot of an [`AtomicSketch`], the
/// merge of several, a rolling window, or a saved baseline.
///
/// Mergeable: the merge of sketches equals the sketch of the union of their
/// samples exactly (bucket counts add). Serializes to a compact JSON form
/// with sparse buckets; a sketch saved by a build with a different bucket
/// mapping is refused on load.
#[derive(Debug, Clone, PartialEq)]
pub struct Sketch {
    pos: Bins,
    neg: Bins,
    zero: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    invalid: u64,
}

// === impl Sketch ===

impl Sketch {
    /// An empty sketch.
    #[must_use]
    pub fn new() -> Self {
        Self {
            pos: Bins::default(),
            neg: Bins::default(),
            zero: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            invalid: 0,
        }
    }

    /// A sketch of `samples` (non-finite ones are counted as invalid).
    #[must_use]
    pub fn from_samples(samples: impl IntoIterator<Item = f64>) -> Self {
        let mut s = Self::new();
        for v in samples {
            s.record(v);
        }
        s
    }

    /// Records one sample.
    pub fn record(&mut self, v: f64) {
        if !v.is_finite() {
            self.invalid += 1;
            return;
        }
        let m = v.abs();
        if m < MIN_MAGNITUDE {
            self.zero += 1;
        } else if v > 0.0 {
            self.pos.add(slot_of(m), 1);
        } else {
            self.neg.add(slot_of(m), 1);
        }
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Adds every sample of `other` into `self`.
    pub fn merge(&mut self, other: &Self) {
        for (slot, c) in other.pos.iter() {
            self.pos.add(slot, c);
        }
        for (slot, c) in other.neg.iter() {
            self.neg.add(slot, c);
        }
        self.zero += other.zero;
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.invalid += other.invalid;
    }

    /// The samples in `self` that are not in `earlier`, where `earlier` is
    /// an older snapshot of the same cumulative sketch (bucket counts only
    /// grow). Min and max of the difference are not known exactly: they are
    /// the representatives of the lowest and highest non-empty buckets
    /// (within the relative error), clamped to `self`'s exact extremes.
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let mut d = Self::new();
        let sub = |now: &Bins, then: &Bins, out: &mut Bins| {
            for (slot, c) in now.iter() {
                let prev = then
                    .counts
                    .get(slot.wrapping_sub(then.offset))
                    .copied()
                    .filter(|_| slot >= then.offset)
                    .unwrap_or(0);
                out.add(slot, c.saturating_sub(prev));
            }
        };
        sub(&self.pos, &earlier.pos, &mut d.pos);
        sub(&self.neg, &earlier.neg, &mut d.neg);
        d.zero = self.zero.saturating_sub(earlier.zero);
        d.count = d.zero + d.pos.total() + d.neg.total();
        d.invalid = self.invalid.saturating_sub(earlier.invalid);
        if d.count > 0 {
            d.sum = self.sum - earlier.sum;
            let lowest = d.ordered().next().map_or(self.min, |(v, _)| v);
            let highest = d.ordered().next_back().map_or(self.max, |(v, _)| v);
            d.min = lowest.clamp(self.min, self.max);
            d.max = highest.clamp(self.min, self.max);
        }
        d
    }

    /// Number of samples.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether the sketch holds no sample.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sum of the samples.
    #[must_use]
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Smallest sample, if any.
    #[must_use]
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest sample, if any.
    #[must_use]
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Arithmetic mean, if any sample.
    #[must_use]
    #[allow(clippy::cast_precision_loss, reason = "statistics")]
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Non-finite samples that were refused.
    #[must_use]
    pub fn invalid(&self) -> u64 {
        self.invalid
    }

    /// The quantile `q`, within [`RELATIVE_ERROR`] of the exact sample at
    /// rank [`Quantile::rank`]. `None` when empty.
    #[must_use]
    pub fn quantile(&self, q: Quantile) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.rank(self.count);
        let mut seen = 0;
        for (v, c) in self.ordered() {
            seen += c;
            if seen > rank {
                return Some(v.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Count, sum, min, max, mean and the quantiles asked for, in one pass.
    #[must_use]
    pub fn stats(&self, quantiles: &[Quantile]) -> Stats {
        Stats {
            count: self.count,
            sum: self.sum,
            min: self.min(),
            max: self.max(),
            mean: self.mean(),
            quantiles: quantiles
                .iter()
                .filter_map(|q| self.quantile(*q).map(|v| (*q, v)))
                .collect(),
        }
    }

    /// For each bound (ascending), how many samples are `<= bound`, counting
    /// a bucket under a bound when the bucket's lowest value is `<= bound`.
    /// Used for Prometheus `le` buckets: every sample `<= bound` is counted
    /// (never an undercount, and samples exactly on a bound such as `1` or
    /// `1024` land on the right side); a sample less than one bucket width
    /// (2%) above a bound may be counted under it too.
    #[must_use]
    pub fn cumulative_counts(&self, bounds: &[f64]) -> Vec<u64> {
        let mut out = Vec::with_capacity(bounds.len());
        let neg = self
            .neg
            .iter()
            .rev()
            .map(|(s, c)| (-slot_lower(s) * TABLES.gamma, c));
        let zero = (self.zero > 0).then_some((-MIN_MAGNITUDE, self.zero));
        let pos = self.pos.iter().map(|(s, c)| (slot_lower(s), c));
        let mut it = neg.chain(zero).chain(pos).peekable();
        let mut seen = 0;
        for b in bounds {
            while let Some((v, c)) = it.peek() {
                if *v <= *b {
                    seen += *c;
                    it.next();
                } else {
                    break;
                }
            }
            out.push(seen);
        }
        out
    }

    /// `(representative value, count)` of every non-empty bucket in
    /// ascending value order.
    pub fn buckets(&self) -> impl DoubleEndedIterator<Item = (f64, u64)> + '_ {
        self.ordered()
    }

    /// `(ordinal, value, count)` in ascending order, where equal ordinals
    /// in two sketches are the same bucket.
    pub(crate) fn keyed(&self) -> impl Iterator<Item = (i64, f64, u64)> + '_ {
        #[allow(clippy::cast_possible_wrap, reason = "slots < 4096")]
        let neg = self
            .neg
            .iter()
            .rev()
            .map(|(s, c)| (-(s as i64) - 1, -slot_value(s), c));
        let zero = (self.zero > 0).then_some((0i64, 0.0, self.zero));
        #[allow(clippy::cast_possible_wrap, reason = "slots < 4096")]
        let pos = self
            .pos
            .iter()
            .map(|(s, c)| (s as i64 + 1, slot_value(s), c));
        neg.chain(zero).chain(pos)
    }

    fn ordered(&self) -> impl DoubleEndedIterator<Item = (f64, u64)> + '_ {
        let neg = self.neg.iter().rev().map(|(s, c)| (-slot_value(s), c));
        let zero = (self.zero > 0).then_some((0.0, self.zero));
        let pos = self.pos.iter().map(|(s, c)| (slot_value(s), c));
        neg.chain(zero).chain(pos)
    }

    /// Heap bytes held by the buckets.
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        (self.pos.counts.capacity() + self.neg.counts.capacity()) * std::mem::size_of::<u64>()
    }

    /// The sketch as JSON (for saving baselines).
    ///
    /// # Errors
    /// Never in practice; serde_json's error is passed through.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// A sketch from [`to_json`](Self::to_json) output.
    ///
    /// # Errors
    /// Malformed JSON, an unknown bucket mapping, or buckets out of range.
    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

impl Default for Sketch {
    fn default() -> Self {
        Self::new()
    }
}

/// Count, sum, min, max, mean and quantiles of a distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Number of samples.
    pub count: u64,
    /// Sum of the samples.
    pub sum: f64,
    /// Smallest sample.
    pub min: Option<f64>,
    /// Largest sample.
    pub max: Option<f64>,
    /// Arithmetic mean.
    pub mean: Option<f64>,
    /// The quantiles asked for (omitted when the distribution is empty).
    pub quantiles: Vec<(Quantile, f64)>,
}

impl Stats {
    /// The value of quantile `q`, if it was asked for.
    #[must_use]
    pub fn quantile(&self, q: Quantile) -> Option<f64> {
        self.quantiles
            .iter()
            .find(|(k, _)| *k == q)
            .map(|(_, v)| *v)
    }
}

/// The serialized form of a [`Sketch`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SketchRepr {
    mapping: u32,
    relative_error: f64,
    zero: u64,
    sum: f64,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    invalid: u64,
    /// `[slot, count]` pairs for positive values.
    pos: Vec<(u32, u64)>,
    /// `[slot, count]` pairs for negative values.
    neg: Vec<(u32, u64)>,
}

impl Serialize for Sketch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[allow(clippy::cast_possible_truncation, reason = "slots < 4096")]
        let pairs = |b: &Bins| b.iter().map(|(s, c)| (s as u32, c)).collect();
        SketchRepr {
            mapping: MAPPING_VERSION,
            relative_error: RELATIVE_ERROR,
            zero: self.zero,
            sum: self.sum,
            min: self.min(),
            max: self.max(),
            invalid: self.invalid,
            pos: pairs(&self.pos),
            neg: pairs(&self.neg),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Sketch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let r = SketchRepr::deserialize(d)?;
        #[allow(clippy::float_cmp, reason = "the constant is written verbatim")]
        if r.mapping != MAPPING_VERSION || r.relative_error != RELATIVE_ERROR {
            return Err(D::Error::custom(format!(
                "sketch uses bucket mapping {} with relative error {}, this build uses mapping {MAPPING_VERSION} with {RELATIVE_ERROR}",
                r.mapping, r.relative_error
            )));
        }
        let mut s = Sketch::new();
        for (pairs, bins) in [(&r.pos, &mut s.pos), (&r.neg, &mut s.neg)] {
            for (slot, c) in pairs {
                let slot = *slot as usize;
                if slot >= NUM_SLOTS {
                    return Err(D::Error::custom(format!(
                        "bucket slot {slot} is out of range (max {})",
                        NUM_SLOTS - 1
                    )));
                }
                bins.add(slot, *c);
            }
            bins.trim();
        }
        s.zero = r.zero;
        s.count = s.zero + s.pos.total() + s.neg.total();
        s.sum = r.sum;
        s.invalid = r.invalid;
        if s.count > 0 {
            match (r.min, r.max) {
                (Some(lo), Some(hi)) if lo <= hi => {
                    s.min = lo;
                    s.max = hi;
                }
                _ => return Err(D::Error::custom("a non-empty sketch needs min <= max")),
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_covers_the_documented_range() {
        let t = &*TABLES;
        assert!((t.gamma - 1.0) / (t.gamma + 1.0) < RELATIVE_ERROR);
        assert!(slot_of(MIN_MAGNITUDE) > 0);
        assert!(slot_of(MAX_MAGNITUDE) < NUM_SLOTS - 1);
        // The table agrees with the exact logarithm everywhere in a binade.
        for k in 0..200_000u32 {
            let x = 1.0 + f64::from(k) / 200_000.0;
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "test"
            )]
            let exact = ((x.log2() * 35.0) + 1e-12).floor() as usize;
            let got = slot_of(x) - (0 - MIN_EXP) as usize * PER_BINADE;
            assert!(
                got == exact || (x.log2() * 35.0 - exact as f64).abs() < 1e-9,
                "{x}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn every_bucket_is_within_relative_error() {
        for &x in &[1e-9, 3.7e-6, 0.001, 0.8, 1.0, 7.0, 123_456.0, 9.9e17] {
            let v = slot_value(slot_of(x));
            assert!(
                (v - x).abs() / x <= RELATIVE_ERROR * (1.0 + 1e-9),
                "{x} -> {v}"
            );
        }
    }

    #[test]
    fn quantile_validation() {
        assert!(Quantile::new(1.5).is_err());
        assert!(Quantile::new(f64::NAN).is_err());
        assert_eq!(Quantile::new(0.0).unwrap().rank(10), 0);
        assert_eq!(Quantile::new(1.0).unwrap().rank(10), 9);
        assert!(serde_json::from_str::<Quantile>("2.0").is_err());
    }

    #[test]
    fn atomic_and_plain_agree() {
        let a = AtomicSketch::new();
        let mut p = Sketch::new();
        for i in -500..2000 {
            let v = f64::from(i) * 0.37;
            a.record(v);
            p.record(v);
        }
        a.record(f64::NAN);
        p.record(f64::INFINITY);
        let snap = a.snapshot();
        assert_eq!(snap.count(), p.count());
        assert_eq!(snap.invalid(), 1);
        for q in [0.0, 0.1, 0.25, 0.5, 0.9, 0.99, 1.0] {
            let q = Quantile::new(q).unwrap();
            assert_eq!(a.quantile(q), p.quantile(q), "{q}");
            assert_eq!(snap.quantile(q), p.quantile(q), "{q}");
        }
        assert_eq!(snap.min(), Some(-500.0 * 0.37));
    }

    #[test]
    fn buffered_recorder_equals_direct_recording() {
        let direct = AtomicSketch::new();
        let shared = AtomicSketch::new();
        {
            let mut r = shared.recorder();
            for i in 0..10_000 {
                let v = f64::from(i % 977 - 300) * 0.013;
                direct.record(v);
                r.record(v);
            }
            r.record(f64::NAN);
            // 10 000 samples: two automatic flushes happened, the rest is buffered.
            assert_eq!(shared.count(), 8192);
        }
        let (a, b) = (direct.snapshot(), shared.snapshot());
        assert_eq!(a.count(), b.count());
        assert_eq!(b.invalid(), 1);
        assert_eq!((a.min(), a.max()), (b.min(), b.max()));
        assert!((a.sum() - b.sum()).abs() < 1e-6);
        for q in [0.0, 0.3, 0.5, 0.99, 1.0] {
            let q = Quantile::new(q).unwrap();
            assert_eq!(a.quantile(q), b.quantile(q));
        }
    }

    #[test]
    fn empty_sketch_has_no_quantiles() {
        assert_eq!(Sketch::new().quantile(Quantile::P50), None);
        assert_eq!(AtomicSketch::new().quantile(Quantile::P50), None);
        assert_eq!(Sketch::new().mean(), None);
    }

    #[test]
    fn since_subtracts_an_earlier_snapshot() {
        let a = AtomicSketch::new();
        for v in 1..=100 {
            a.record(f64::from(v));
        }
        let t0 = a.snapshot();
        for v in 1000..1100 {
            a.record(f64::from(v));
        }
        let d = a.snapshot().since(&t0);
        assert_eq!(d.count(), 100);
        let p50 = d.quantile(Quantile::P50).unwrap();
        assert!((p50 - 1049.0).abs() / 1049.0 <= 0.01, "{p50}");
        assert!(d.min().unwrap() >= 990.0);
    }

    #[test]
    fn json_round_trip_and_refusals() {
        let s = Sketch::from_samples([0.0, 1.5, -2.0, 3e5]);
        let back = Sketch::from_json(&s.to_json().unwrap()).unwrap();
        assert_eq!(back, s);
        let bad = s
            .to_json()
            .unwrap()
            .replace("\"mapping\":2", "\"mapping\":9");
        let err = Sketch::from_json(&bad).unwrap_err().to_string();
        assert!(err.contains("mapping 9"), "{err}");
        let oob = r#"{"mapping":2,"relative_error":0.01,"zero":0,"sum":1,"min":1,"max":1,"pos":[[99999,1]],"neg":[]}"#;
        assert!(
            Sketch::from_json(oob)
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
    }

    #[test]
    fn cumulative_counts_are_monotone() {
        let s = Sketch::from_samples((1..=100).map(f64::from).chain([-3.0, 0.0]));
        let c = s.cumulative_counts(&[-3.0, -1.0, 0.0, 0.5, 1.0, 10.0, 50.0, 64.0, 1000.0]);
        // 65 shares 64's bucket ([64, 65.28)), so it counts under le=64: the
        // documented one-sided error. Everything on or below a bound counts.
        assert_eq!(c, vec![1, 1, 2, 2, 3, 12, 52, 67, 102]);
    }
}
