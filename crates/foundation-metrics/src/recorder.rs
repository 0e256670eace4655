//! The `metrics` recorder: a sharded registry of series with a cardinality
//! limit per metric and idle expiry, and the handle to query, render and
//! maintain it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use foundation_core::{Reloadable, SharedClock, SystemClock, ValidationErrors};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, SharedString, Unit};
use parking_lot::{Mutex, RwLock};

use crate::config::{OverflowPolicy, RecorderConfig};
use crate::error::Error;
use crate::sketch::{Quantile, Sketch, Stats};
use crate::window::{RollingSketch, WindowSnapshot};

const SHARDS: usize = 16;
/// The label put on the series that absorbs label sets beyond the limit.
pub const OVERFLOW_LABEL: &str = "overflow";

/// `metrics::Key` carries a precomputed hash and its `Hash` writes exactly
/// that `u64`: pass it through.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

/// The kind of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricKind {
    /// A monotonic `u64` counter.
    Counter,
    /// An `f64` gauge.
    Gauge,
    /// A distribution.
    Histogram,
}

#[derive(Debug, Default)]
pub(crate) struct CounterCell {
    pub(crate) value: AtomicU64,
    touched: AtomicBool,
}

#[derive(Debug)]
pub(crate) struct GaugeCell {
    pub(crate) bits: AtomicU64,
    touched: AtomicBool,
}

#[derive(Debug)]
pub(crate) struct HistogramCell {
    sketch: RollingSketch,
    touched: AtomicBool,
}

impl HistogramCell {
    pub(crate) fn sketch_snapshot(&self) -> Sketch {
        self.sketch.snapshot()
    }

    pub(crate) fn window_snapshot(&self, d: Duration) -> WindowSnapshot {
        self.sketch.window(d)
    }
}

#[inline]
fn touch(flag: &AtomicBool) {
    if !flag.load(Ordering::Relaxed) {
        flag.store(true, Ordering::Relaxed);
    }
}

impl metrics::CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.value.fetch_add(value, Ordering::Relaxed);
        touch(&self.touched);
    }
    fn absolute(&self, value: u64) {
        self.value.fetch_max(value, Ordering::Relaxed);
        touch(&self.touched);
    }
}

impl GaugeCell {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(f(f64::from_bits(b)).to_bits())
            });
        touch(&self.touched);
    }
}

impl metrics::GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        self.bits.store(value.to_bits(), Ordering::Relaxed);
        touch(&self.touched);
    }
}

impl metrics::HistogramFn for HistogramCell {
    #[inline]
    fn record(&self, value: f64) {
        self.sketch.record(value);
        touch(&self.touched);
    }
    fn record_many(&self, value: f64, count: usize) {
        self.sketch
            .record_n(value, u64::try_from(count).unwrap_or(u64::MAX));
        touch(&self.touched);
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Series {
    Counter(Arc<CounterCell>),
    Gauge(Arc<GaugeCell>),
    Histogram(Arc<HistogramCell>),
}

impl Series {
    fn kind(&self) -> MetricKind {
        match self {
            Self::Counter(_) => MetricKind::Counter,
            Self::Gauge(_) => MetricKind::Gauge,
            Self::Histogram(_) => MetricKind::Histogram,
        }
    }

    fn take_touched(&self) -> bool {
        let flag = match self {
            Self::Counter(c) => &c.touched,
            Self::Gauge(g) => &g.touched,
            Self::Histogram(h) => &h.touched,
        };
        flag.swap(false, Ordering::Relaxed)
    }

    fn held_elsewhere(&self) -> bool {
        match self {
            Self::Counter(c) => Arc::strong_count(c) > 1,
            Self::Gauge(g) => Arc::strong_count(g) > 1,
            Self::Histogram(h) => Arc::strong_count(h) > 1,
        }
    }

    fn allocated_bytes(&self) -> usize {
        match self {
            Self::Counter(_) => std::mem::size_of::<CounterCell>(),
            Self::Gauge(_) => std::mem::size_of::<GaugeCell>(),
            Self::Histogram(h) => std::mem::size_of::<HistogramCell>() + h.sketch.allocated_bytes(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    series: Series,
    last_active: Instant,
    overflow: bool,
}

/// Per-name bookkeeping.
#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) kind: MetricKind,
    series: usize,
    pub(crate) folded: u64,
    pub(crate) rejected: u64,
    warned: bool,
    pub(crate) help: Option<String>,
}

impl Family {
    fn new(kind: MetricKind) -> Self {
        Self {
            kind,
            series: 0,
            folded: 0,
            rejected: 0,
            warned: false,
            help: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    shards: Box<[RwLock<KeyMap<Entry>>]>,
    pub(crate) families: Mutex<HashMap<String, Family>>,
    /// Descriptions given before the first registration, by name.
    descriptions: Mutex<HashMap<String, (MetricKind, String)>>,
    pub(crate) config: Reloadable<RecorderConfig>,
    pub(crate) clock: SharedClock,
    pub(crate) kind_conflicts: AtomicU64,
}

impl Inner {
    fn shard(&self, key: &Key) -> &RwLock<KeyMap<Entry>> {
        let i = usize::try_from(key.get_hash() % SHARDS as u64).unwrap_or(0);
        &self.shards[i]
    }

    fn new_series(&self, name: &str, kind: MetricKind) -> Series {
        match kind {
            MetricKind::Counter => Series::Counter(Arc::default()),
            MetricKind::Gauge => Series::Gauge(Arc::new(GaugeCell {
                bits: AtomicU64::new(0f64.to_bits()),
                touched: AtomicBool::new(false),
            })),
            MetricKind::Histogram => {
                let windows = self.config.load().windows_for(name);
                Series::Histogram(Arc::new(HistogramCell {
                    sketch: RollingSketch::new(&windows, Arc::clone(&self.clock)),
                    touched: AtomicBool::new(false),
                }))
            }
        }
    }

    /// The series for `key`, registering it if needed; `None` when the key
    /// is refused (kind conflict, or over the limit with `reject`).
    fn register(&self, key: &Key, kind: MetricKind) -> Option<Series> {
        if let Some(e) = self.shard(key).read().get(key)
            && e.series.kind() == kind
        {
            return Some(e.series.clone());
        }
        // New key, or a kind conflict (counted and warned about there).
        self.register_slow(key, kind)
    }

    fn register_slow(&self, key: &Key, kind: MetricKind) -> Option<Series> {
        let config = self.config.load();
        let now = self.clock.now();
        let name = key.name();
        let mut families = self.families.lock();
        let family = families.entry(name.to_owned()).or_insert_with(|| {
            let mut f = Family::new(kind);
            if let Some((k, help)) = self.descriptions.lock().get(name)
                && *k == kind
            {
                f.help = Some(help.clone());
            }
            f
        });
        if family.kind != kind {
            self.kind_conflicts.fetch_add(1, Ordering::Relaxed);
            if !family.warned {
                family.warned = true;
                tracing::warn!(metric = name, registered = ?family.kind, requested = ?kind,
                    "metric registered again with another kind; the new registration records nothing");
            }
            return None;
        }
        {
            let mut shard = self.shard(key).write();
            if let Some(e) = shard.get(key) {
                return Some(e.series.clone());
            }
            if family.series < config.limit_for(name) {
                let series = self.new_series(name, kind);
                shard.insert(
                    key.clone(),
                    Entry {
                        series: series.clone(),
                        last_active: now,
                        overflow: false,
                    },
                );
                family.series += 1;
                return Some(series);
            }
        }
        // Over the limit.
        let limit = config.limit_for(name);
        match config.overflow {
            OverflowPolicy::Reject => {
                family.rejected += 1;
                if !family.warned {
                    family.warned = true;
                    tracing::warn!(
                        metric = name,
                        limit,
                        "metric reached its cardinality limit; samples of new label sets are rejected"
                    );
                }
                None
            }
            OverflowPolicy::Fold => {
                family.folded += 1;
                if !family.warned {
                    family.warned = true;
                    tracing::warn!(
                        metric = name,
                        limit,
                        "metric reached its cardinality limit; new label sets are folded into the overflow series"
                    );
                }
                let okey =
                    Key::from_parts(name.to_owned(), vec![Label::new(OVERFLOW_LABEL, "true")]);
                let mut shard = self.shard(&okey).write();
                let entry = shard.entry(okey).or_insert_with(|| Entry {
                    series: self.new_series(name, kind),
                    last_active: now,
                    overflow: true,
                });
                Some(entry.series.clone())
            }
        }
    }

    fn describe(
        &self,
        name: KeyName,
        kind: MetricKind,
        unit: Option<Unit>,
        description: SharedString,
    ) {
        let mut help = description.to_string();
        if let Some(u) = unit {
            if help.is_empty() {
                help = format!("in {}", u.as_str());
            } else {
                help = format!("{help} ({})", u.as_str());
            }
        }
        if let Some(f) = self.families.lock().get_mut(name.as_str())
            && f.kind == kind
        {
            f.help = Some(help.clone());
        }
        self.descriptions
            .lock()
            .insert(name.as_str().to_owned(), (kind, help));
    }

    /// Every series, grouped by name, sorted.
    pub(crate) fn collect(&self) -> std::collections::BTreeMap<String, Vec<(Key, Series)>> {
        let mut out: std::collections::BTreeMap<String, Vec<(Key, Series)>> = Default::default();
        for shard in &*self.shards {
            for (k, e) in shard.read().iter() {
                out.entry(k.name().to_owned())
                    .or_default()
                    .push((k.clone(), e.series.clone()));
            }
        }
        for v in out.values_mut() {
            v.sort_by(|a, b| a.0.cmp(&b.0));
        }
        out
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<Series> {
        let key = Key::from_parts(
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| Label::new((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>(),
        );
        if let Some(e) = self.shard(&key).read().get(&key) {
            return Some(e.series.clone());
        }
        // Same labels in another order.
        let same = |k: &Key| {
            k.name() == name
                && k.labels().len() == labels.len()
                && labels
                    .iter()
                    .all(|(lk, lv)| k.labels().any(|l| l.key() == *lk && l.value() == *lv))
        };
        self.shards.iter().find_map(|s| {
            s.read()
                .iter()
                .find(|(k, _)| same(k))
                .map(|(_, e)| e.series.clone())
        })
    }

    fn upkeep(&self) -> UpkeepReport {
        let now = self.clock.now();
        let idle = self.config.load().idle_timeout;
        let mut report = UpkeepReport::default();
        let mut removed: Vec<(String, bool)> = Vec::new();
        let mut histograms = Vec::new();
        for shard in &*self.shards {
            let mut map = shard.write();
            map.retain(|key, e| {
                if e.series.take_touched() {
                    e.last_active = now;
                }
                let expired = idle
                    .is_some_and(|t| now.saturating_duration_since(e.last_active) >= t)
                    && !e.series.held_elsewhere();
                if expired {
                    removed.push((key.name().to_owned(), e.overflow));
                } else if let Series::Histogram(h) = &e.series {
                    histograms.push(Arc::clone(h));
                }
                !expired
            });
        }
        // Window rotation outside the shard locks.
        for h in &histograms {
            h.sketch.rotate();
        }
        report.rotated = histograms.len();
        report.expired = removed.len();
        if !removed.is_empty() {
            let mut families = self.families.lock();
            for (name, overflow) in removed {
                if let Some(f) = families.get_mut(&name)
                    && !overflow
                {
                    f.series = f.series.saturating_sub(1);
                }
            }
        }
        report
    }
}

/// What one upkeep pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpkeepReport {
    /// Histogram series whose windows were rotated.
    pub rotated: usize,
    /// Idle series dropped.
    pub expired: usize,
}

/// The recorder to install for the `metrics` facade.
///
/// Build one with [`MetricsRecorder::builder`], keep its
/// [`handle`](Self::handle) for queries, rendering and upkeep, then install
/// it globally ([`install`](Self::install)) or locally
/// (`metrics::with_local_recorder`).
#[derive(Debug, Clone)]
pub struct MetricsRecorder {
    inner: Arc<Inner>,
}

/// Builds a [`MetricsRecorder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RecorderBuilder {
    config: RecorderConfig,
    clock: SharedClock,
}

// === impl RecorderBuilder ===

impl RecorderBuilder {
    /// Replaces the whole configuration.
    pub fn with_config(mut self, config: RecorderConfig) -> Self {
        self.config = config;
        self
    }

    /// Time source for windows and idle expiry (default: the system clock;
    /// tests use `ManualClock`).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Validates the configuration and builds the recorder.
    ///
    /// # Errors
    /// [`ValidationErrors`] naming each invalid field.
    pub fn build(self) -> Result<MetricsRecorder, ValidationErrors> {
        let config = Reloadable::new(self.config)?;
        Ok(MetricsRecorder {
            inner: Arc::new(Inner {
                shards: (0..SHARDS)
                    .map(|_| RwLock::new(KeyMap::default()))
                    .collect(),
                families: Mutex::new(HashMap::new()),
                descriptions: Mutex::new(HashMap::new()),
                config,
                clock: self.clock,
                kind_conflicts: AtomicU64::new(0),
            }),
        })
    }
}

// === impl MetricsRecorder ===

impl MetricsRecorder {
    /// A builder with the default configuration and the system clock.
    pub fn builder() -> RecorderBuilder {
        RecorderBuilder {
            config: RecorderConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The handle for queries, rendering and upkeep; clones share state.
    #[must_use]
    pub fn handle(&self) -> MetricsHandle {
        MetricsHandle {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Installs this recorder as the global `metrics` recorder and returns
    /// its handle. Applications call this once; libraries never do.
    ///
    /// # Errors
    /// [`Error::RecorderAlreadyInstalled`] when a global recorder exists.
    pub fn install(self) -> Result<MetricsHandle, Error> {
        let handle = self.handle();
        metrics::set_global_recorder(self).map_err(|_| Error::RecorderAlreadyInstalled)?;
        Ok(handle)
    }
}

impl metrics::Recorder for MetricsRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner
            .describe(key, MetricKind::Counter, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner
            .describe(key, MetricKind::Gauge, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner
            .describe(key, MetricKind::Histogram, unit, description);
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match self.inner.register(key, MetricKind::Counter) {
            Some(Series::Counter(c)) => Counter::from_arc(c),
            _ => Counter::noop(),
        }
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        match self.inner.register(key, MetricKind::Gauge) {
            Some(Series::Gauge(g)) => Gauge::from_arc(g),
            _ => Gauge::noop(),
        }
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self.inner.register(key, MetricKind::Histogram) {
            Some(Series::Histogram(h)) => Histogram::from_arc(h),
            _ => Histogram::noop(),
        }
    }
}

/// Queries, rendering, upkeep and live configuration of a
/// [`MetricsRecorder`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MetricsHandle {
    pub(crate) inner: Arc<Inner>,
}

/// A held reference to one histogram series, for hot paths such as routing
/// decisions: queries go straight to the atomic sketch, with no lookup.
///
/// Holding it keeps the series from idle expiry.
#[derive(Debug, Clone)]
pub struct HistogramRef {
    cell: Arc<HistogramCell>,
}

// === impl HistogramRef ===

impl HistogramRef {
    /// Since-start quantile, lock-free and without copying (walks the
    /// allocated buckets only).
    #[must_use]
    pub fn quantile(&self, q: Quantile) -> Option<f64> {
        self.cell.sketch.quantile(q)
    }

    /// Heap bytes held by this series' sketch and window rings.
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        self.cell.sketch.allocated_bytes()
    }

    /// Since-start sample count.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.cell.sketch.cumulative().count()
    }

    /// A copy of the since-start distribution.
    #[must_use]
    pub fn snapshot(&self) -> Sketch {
        self.cell.sketch.snapshot()
    }

    /// The distribution over about the last `d` (see [`crate::window`]).
    #[must_use]
    pub fn window(&self, d: Duration) -> WindowSnapshot {
        self.cell.sketch.window(d)
    }

    /// Records a sample directly, bypassing the facade.
    pub fn record(&self, v: f64) {
        metrics::HistogramFn::record(&*self.cell, v);
    }

    /// A buffered single-owner recorder for very hot loops (see
    /// [`SketchRecorder`](crate::sketch::SketchRecorder)); marks the series
    /// active.
    #[must_use]
    pub fn recorder(&self) -> crate::sketch::SketchRecorder<'_> {
        touch(&self.cell.touched);
        self.cell.sketch.cumulative().recorder()
    }
}

/// One series of a metric, as returned by [`MetricsHandle::series`].
#[derive(Debug, Clone)]
pub struct SeriesRef {
    /// The label pairs, in registration order.
    pub labels: Vec<(String, String)>,
    /// The current value.
    pub value: SeriesValue,
}

impl SeriesRef {
    /// The value of label `key`, if present.
    #[must_use]
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The value of a series.
#[derive(Debug, Clone)]
pub enum SeriesValue {
    /// A counter's total.
    Counter(u64),
    /// A gauge's value.
    Gauge(f64),
    /// A histogram, to snapshot or window.
    Histogram(HistogramRef),
}

// === impl MetricsHandle ===

impl MetricsHandle {
    /// The histogram series `name{labels}` (labels in any order), held for
    /// repeated cheap queries.
    #[must_use]
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<HistogramRef> {
        match self.inner.find(name, labels)? {
            Series::Histogram(cell) => Some(HistogramRef { cell }),
            _ => None,
        }
    }

    /// Since-start distribution of `name{labels}`.
    #[must_use]
    pub fn snapshot(&self, name: &str, labels: &[(&str, &str)]) -> Option<Sketch> {
        self.histogram(name, labels).map(|h| h.snapshot())
    }

    /// Since-start stats of `name{labels}` with the given quantiles.
    #[must_use]
    pub fn stats(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        quantiles: &[Quantile],
    ) -> Option<Stats> {
        self.snapshot(name, labels).map(|s| s.stats(quantiles))
    }

    /// Distribution of `name{labels}` over about the last `d`.
    #[must_use]
    pub fn window(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        d: Duration,
    ) -> Option<WindowSnapshot> {
        self.histogram(name, labels).map(|h| h.window(d))
    }

    /// A counter's value.
    #[must_use]
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        match self.inner.find(name, labels)? {
            Series::Counter(c) => Some(c.value.load(Ordering::Relaxed)),
            _ => None,
        }
    }

    /// A gauge's value.
    #[must_use]
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.inner.find(name, labels)? {
            Series::Gauge(g) => Some(f64::from_bits(g.bits.load(Ordering::Relaxed))),
            _ => None,
        }
    }

    /// Every series of metric `name` (including the overflow series).
    #[must_use]
    pub fn series(&self, name: &str) -> Vec<SeriesRef> {
        let mut out = Vec::new();
        for shard in &*self.inner.shards {
            for (k, e) in shard.read().iter().filter(|(k, _)| k.name() == name) {
                let labels = k
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                let value = match &e.series {
                    Series::Counter(c) => SeriesValue::Counter(c.value.load(Ordering::Relaxed)),
                    Series::Gauge(g) => {
                        SeriesValue::Gauge(f64::from_bits(g.bits.load(Ordering::Relaxed)))
                    }
                    Series::Histogram(h) => SeriesValue::Histogram(HistogramRef {
                        cell: Arc::clone(h),
                    }),
                };
                out.push(SeriesRef { labels, value });
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Names of all metrics with at least one series, sorted.
    #[must_use]
    pub fn metric_names(&self) -> Vec<String> {
        self.inner.collect().into_keys().collect()
    }

    /// Number of live series across all metrics.
    #[must_use]
    pub fn series_count(&self) -> usize {
        self.inner.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Approximate heap bytes held by all series (sketches and windows).
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| {
                s.read()
                    .iter()
                    .map(|(k, e)| e.series.allocated_bytes() + std::mem::size_of_val(k) + 32)
                    .sum::<usize>()
            })
            .sum()
    }

    /// Rotates histogram windows and drops idle series. The exporter runs it
    /// on a timer; without the exporter, call it periodically (at least once
    /// per finest window interval). Memory does not depend on it: sketches
    /// and windows are bounded regardless.
    pub fn run_upkeep(&self) -> UpkeepReport {
        self.inner.upkeep()
    }

    /// The live configuration: [`Reloadable::update`] changes buckets,
    /// exposition and limits at runtime (validated first).
    #[must_use]
    pub fn config(&self) -> &Reloadable<RecorderConfig> {
        &self.inner.config
    }

    /// The Prometheus text exposition (format 0.0.4) of every series.
    #[must_use]
    pub fn render(&self) -> String {
        crate::prometheus::render(&self.inner)
    }
}
