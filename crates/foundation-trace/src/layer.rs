//! The `tracing_subscriber::Layer` that records traces.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use foundation_core::{Clock, SharedClock, Validate, ValidationErrors};
use parking_lot::Mutex;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::capture::{Capture, Scratch};
use crate::config::{LimitsConfig, TraceConfig};
use crate::export::TraceSink;
use crate::redact::Redactor;
use crate::store::{TraceStore, sample};
use crate::trace::{Dropped, Operation, Step, Trace, TraceId, TraceStatus};
use crate::value::{Entry, Fields, Text, Value};

/// Field on a root span that sets the trace's correlation id.
pub const CORRELATION_ID_FIELD: &str = "correlation_id";
/// Field on an event that names the step (instead of its message).
pub const STEP_NAME_FIELD: &str = "step";
/// Field whose text is parsed as JSON and kept as structured data.
pub const STEP_DATA_FIELD: &str = "step.data";
/// Field on a span that names the operation (as in `tracing-opentelemetry`).
pub const OTEL_NAME_FIELD: &str = "otel.name";

thread_local! {
    /// Set while this thread runs the [`TraceSink`].
    static IN_SINK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };

    /// The spans entered on this thread, innermost last, per subscriber
    /// (keyed by the address of its layer's [`SpanMap`]). It follows the
    /// registry's own stack of entered spans (the same pushes and pops), so
    /// the current span, and while it is entered its record, are known
    /// without a lookup.
    static ENTERED: std::cell::RefCell<Vec<Entered>> =
        const { std::cell::RefCell::new(Vec::new()) };

    /// The recorded span this thread created last, with its record, until
    /// it is entered here (usually at once) or another span is created.
    static CREATED: std::cell::Cell<Option<(usize, NonZeroU64, Rec)>> =
        const { std::cell::Cell::new(None) };
}

/// A recorded span's trace and operation.
type Rec = (Arc<TraceShared>, Option<u32>);

/// A span entered on this thread, in [`ENTERED`].
struct Entered {
    key: usize,
    id: NonZeroU64,
    /// Entered again while already entered (so not the current span, as in
    /// the registry).
    again: bool,
    /// Its record while entered, when known (recorded spans). It stays
    /// valid while the span is entered: an entered span is open, so its id
    /// is not reused.
    rec: Option<Rec>,
}

/// Extra steps an error-level event may use beyond `limits.max_steps`, so the
/// failure is recorded even when the cap was reached.
const ERROR_RESERVE: usize = 8;

/// A `tracing_subscriber::Layer` recording every root span (one without a
/// parent) and its descendants as a [`Trace`].
///
/// Operations are spans, steps are events; fields are captured redacted and
/// size-capped. Finished traces go to the [`TraceStore`] as the retention
/// policy says, and to the [`TraceSink`] if one is set. Per-span data lives in
/// the layer (a map from span id to the span's trace, removed when the span
/// closes; the rare root skipped by head sampling uses a span extension of a
/// crate-private type), so the layer coexists with `tracing-opentelemetry`,
/// `tracing-error` and `fmt` on one registry.
///
/// Errors can capture the current trace ([`TracedError`](crate::TracedError))
/// when the subscriber is built on `tracing_subscriber::Registry`.
///
/// ```
/// use foundation_trace::{TraceConfig, TraceLayer};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let layer = TraceLayer::builder().with_config(TraceConfig::default()).build()?;
/// let handle = layer.handle();
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::with_default(subscriber, || {
///     let _root = tracing::info_span!("request", correlation_id = "req-1").entered();
///     tracing::info!(tokens = 12u64, "model answered");
/// });
/// let trace = handle.store().find("req-1").unwrap();
/// assert_eq!(trace.steps[0].name, "model answered");
/// # Ok::<(), foundation_core::ValidationErrors>(())
/// ```
#[derive(Clone)]
pub struct TraceLayer {
    inner: Arc<Inner>,
    /// The records of the recorded spans of the subscriber this layer is
    /// part of (a fresh map each time the layer is added to one).
    spans: Arc<SpanMap>,
}

/// A handle to a [`TraceLayer`]'s store and configuration, kept by the
/// application after the layer is moved into the subscriber.
#[derive(Clone)]
pub struct TraceHandle {
    inner: Arc<Inner>,
}

/// Builds a [`TraceLayer`].
#[derive(Debug, Default)]
#[must_use]
pub struct TraceLayerBuilder {
    config: TraceConfig,
    clock: Option<SharedClock>,
    store: Option<TraceStore>,
    sink: Option<Arc<dyn TraceSink>>,
}

struct Inner {
    settings: ArcSwap<Settings>,
    time: TimeSource,
    store: TraceStore,
    sink: Option<Arc<dyn TraceSink>>,
    head_counter: AtomicU64,
    ids: AtomicU64,
    /// Recorded root operations still open. While it is zero no span can
    /// belong to a recorded trace, so child spans and events return at once.
    live: AtomicUsize,
    /// Operations and steps of the last finished trace: new traces reserve
    /// this much up front, so a workload's traces do not regrow their
    /// buffers step by step.
    size_hint: (AtomicUsize, AtomicUsize, AtomicUsize),
}

/// A validated configuration with its compiled redactor.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) config: TraceConfig,
    pub(crate) redactor: Redactor,
}

/// Where timings come from: the CPU's time-stamp counter through `quanta`
/// by default (a counter read instead of a `clock_gettime` call), or the
/// clock given to [`TraceLayerBuilder::with_clock`].
#[derive(Clone)]
enum TimeSource {
    Counter(quanta::Clock),
    Clock(SharedClock),
}

/// A reading of a [`TimeSource`]: a raw counter value or an instant.
#[derive(Clone, Copy)]
enum Reading {
    Counter(u64),
    Instant(Instant),
}

impl TimeSource {
    fn read(&self) -> Reading {
        match self {
            Self::Counter(c) => Reading::Counter(c.raw()),
            Self::Clock(c) => Reading::Instant(c.now()),
        }
    }

    /// Time from `start` to now (zero if the source reads earlier).
    fn since(&self, start: Reading) -> Duration {
        match (self, start) {
            (Self::Counter(c), Reading::Counter(raw)) => {
                Duration::from_nanos(c.delta_as_nanos(raw, c.raw()))
            }
            (Self::Clock(c), Reading::Instant(at)) => c.now().saturating_duration_since(at),
            _ => Duration::ZERO,
        }
    }
}

impl fmt::Debug for TimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Counter(_) => f.write_str("TimeSource::Counter"),
            Self::Clock(c) => f.debug_tuple("TimeSource::Clock").field(c).finish(),
        }
    }
}

/// The per-trace state shared by every span of the trace.
pub(crate) struct TraceShared {
    id: TraceId,
    settings: Arc<Settings>,
    time: TimeSource,
    started: Reading,
    started_wall: SystemTime,
    buf: Mutex<TraceBuf>,
}

#[derive(Default)]
struct TraceBuf {
    correlation_id: Option<String>,
    ops: Vec<Operation>,
    /// Steps, their fields pending as ranges of `entries`.
    steps: Vec<Step>,
    /// The fields of all steps, in order.
    entries: Vec<Entry>,
    seq: u32,
    budget: Budget,
    failed: bool,
}

/// What a trace has spent of its byte budget, and what the limits cut.
#[derive(Default)]
struct Budget {
    bytes: usize,
    dropped: Dropped,
}

/// What the layer keeps for a recorded span.
pub(crate) struct SpanRecord {
    pub(crate) trace: Arc<TraceShared>,
    /// `None` when the operation cap dropped this span.
    pub(crate) op: Option<u32>,
    is_root: bool,
}

/// Span extension of a root span that head sampling skipped (rare, so it
/// lives in the span's extensions rather than in the [`SpanMap`]).
pub(crate) struct Unrecorded {
    pub(crate) id: TraceId,
    pub(crate) correlation_id: Option<String>,
}

/// Shards of a [`SpanMap`].
const SPAN_SHARDS: usize = 16;

/// The records of a subscriber's recorded spans, by span id.
///
/// A record is added when a recorded span is created and removed when it
/// closes (the subscriber reports every close to the layer), so an id is
/// never looked up after it was released for reuse. Kept by the layer rather
/// than in span extensions: one hash-map insert and remove per span instead
/// of a boxed extension, and no span lookup in the registry to find a
/// parent's record or to close a span.
struct SpanMap {
    shards: Box<[Shard]>,
}

/// One shard of a [`SpanMap`]: records by span id.
type Shard = Mutex<HashMap<u64, SpanRecord, BuildHasherDefault<IdHasher>>>;

/// Hashes span ids (small, dense integers) by multiplication.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
        self.0 = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u64(&mut self, n: u64) {
        let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl SpanMap {
    fn new() -> Self {
        Self {
            shards: (0..SPAN_SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, id: &Id) -> &Shard {
        let h = id.into_u64().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59;
        let i = usize::try_from(h).unwrap_or_default() % self.shards.len().max(1);
        &self.shards[i]
    }

    fn insert(&self, id: &Id, record: SpanRecord) {
        self.shard(id).lock().insert(id.into_u64(), record);
    }

    /// The trace, operation and root flag of the recorded span `id`.
    fn get(&self, id: &Id) -> Option<(Arc<TraceShared>, Option<u32>, bool)> {
        self.shard(id)
            .lock()
            .get(&id.into_u64())
            .map(|r| (Arc::clone(&r.trace), r.op, r.is_root))
    }

    /// The operation of the recorded span `id`.
    fn op(&self, id: &Id) -> Option<u32> {
        self.shard(id).lock().get(&id.into_u64()).and_then(|r| r.op)
    }

    fn remove(&self, id: &Id) -> Option<SpanRecord> {
        self.shard(id).lock().remove(&id.into_u64())
    }
}

// === impl TraceLayerBuilder ===

impl TraceLayerBuilder {
    /// Uses `config` (validated by [`build`](Self::build)).
    pub fn with_config(mut self, config: TraceConfig) -> Self {
        self.config = config;
        self
    }

    /// Reads time from `clock`. Use `foundation_core::TokioClock` or
    /// `ManualClock` for deterministic tests.
    ///
    /// The default reads the CPU's time-stamp counter through `quanta` (a
    /// counter read instead of a `clock_gettime` call per timing; quanta
    /// falls back to the OS monotonic clock when the counter is not
    /// invariant). Its scale is calibrated once per process against the OS
    /// clock, which blocks the first layer's construction for typically
    /// 10-20 ms. Pass `foundation_core::SystemClock` for `Instant::now`.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Keeps finished traces in `store` (default: a new store), e.g. to share
    /// one store between layers.
    pub fn with_store(mut self, store: TraceStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Hands every kept trace to `sink` as well.
    pub fn with_sink(mut self, sink: impl TraceSink) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// Validates the configuration and builds the layer.
    ///
    /// # Errors
    /// Every problem of the configuration, by field path.
    pub fn build(self) -> Result<TraceLayer, ValidationErrors> {
        let settings = Settings::new(self.config)?;
        let seed = RandomState::new().build_hasher().finish();
        Ok(TraceLayer {
            spans: Arc::new(SpanMap::new()),
            inner: Arc::new(Inner {
                settings: ArcSwap::from_pointee(settings),
                time: self.clock.map_or_else(
                    || TimeSource::Counter(quanta::Clock::new()),
                    TimeSource::Clock,
                ),
                store: self.store.unwrap_or_default(),
                sink: self.sink,
                head_counter: AtomicU64::new(0),
                ids: AtomicU64::new(seed),
                live: AtomicUsize::new(0),
                size_hint: (
                    AtomicUsize::new(8),
                    AtomicUsize::new(16),
                    AtomicUsize::new(32),
                ),
            }),
        })
    }
}

impl Settings {
    fn new(config: TraceConfig) -> Result<Self, ValidationErrors> {
        config.validate()?;
        Ok(Self {
            redactor: Redactor::new(&config.redaction),
            config,
        })
    }
}

// === impl TraceLayer ===

impl TraceLayer {
    /// A builder with the default configuration.
    pub fn builder() -> TraceLayerBuilder {
        TraceLayerBuilder::default()
    }

    /// A layer with `config`.
    ///
    /// # Errors
    /// Every problem of the configuration, by field path.
    pub fn new(config: TraceConfig) -> Result<Self, ValidationErrors> {
        Self::builder().with_config(config).build()
    }

    /// A handle to this layer's store and configuration.
    #[must_use]
    pub fn handle(&self) -> TraceHandle {
        TraceHandle {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl fmt::Debug for TraceLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl fmt::Debug for TraceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceLayer")
            .field("config", &self.settings.load().config)
            .field("store", &self.store.stats())
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

// === impl TraceHandle ===

impl TraceHandle {
    /// The store of finished traces.
    #[must_use]
    pub fn store(&self) -> &TraceStore {
        &self.inner.store
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> TraceConfig {
        self.inner.settings.load().config.clone()
    }

    /// Replaces the configuration at runtime. Traces already running keep the
    /// configuration they started with; the store is trimmed to the new
    /// retention bounds at once.
    ///
    /// # Errors
    /// Every problem of the new configuration; the old one stays in force.
    pub fn reconfigure(&self, config: TraceConfig) -> Result<(), ValidationErrors> {
        let settings = Settings::new(config)?;
        self.inner.store.trim(&settings.config.retention);
        self.inner.settings.store(Arc::new(settings));
        Ok(())
    }
}

// === impl Inner ===

impl Inner {
    fn next_id(&self) -> TraceId {
        // A per-layer random start, stepped by an odd constant and mixed:
        // unique within the process, unpredictable across processes.
        let n = self.ids.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        TraceId(h.finish() ^ n)
    }

    /// Empty buffers for a new trace, sized from the last finished trace
    /// within the caps.
    fn new_buf(&self, limits: &LimitsConfig) -> TraceBuf {
        let ops = self.size_hint.0.load(Ordering::Relaxed);
        let steps = self.size_hint.1.load(Ordering::Relaxed);
        let entries = self.size_hint.2.load(Ordering::Relaxed);
        let (ops, steps, entries) = crate::spare::trace_bufs(
            ops.clamp(1, limits.max_operations.max(1)),
            steps.clamp(1, limits.max_steps.max(1)),
            entries.min(4 * limits.max_steps.max(1)),
        );
        TraceBuf {
            ops,
            steps,
            entries,
            ..TraceBuf::default()
        }
    }

    fn finish(&self, shared: &TraceShared, end: Duration) {
        let mut buf = std::mem::take(&mut *shared.buf.lock());
        self.size_hint.0.store(buf.ops.len(), Ordering::Relaxed);
        self.size_hint.1.store(buf.steps.len(), Ordering::Relaxed);
        self.size_hint.2.store(buf.entries.len(), Ordering::Relaxed);
        // The steps' fields move to one shared buffer; the recording buffer
        // is kept for this thread's next trace.
        buf.resolve_fields();
        crate::spare::keep_entries(buf.entries);
        // A stored trace holds little more than it uses, whatever the hint
        // reserved.
        if buf.ops.capacity() > 2 * buf.ops.len() + 8 {
            buf.ops.shrink_to_fit();
        }
        if buf.steps.capacity() > 2 * buf.steps.len() + 8 {
            buf.steps.shrink_to_fit();
        }
        let status = if buf.failed {
            TraceStatus::Failed
        } else {
            TraceStatus::Ok
        };
        let trace = Trace {
            trace_id: shared.id,
            correlation_id: buf.correlation_id.unwrap_or_else(|| shared.id.to_string()),
            started_at: shared.started_wall,
            duration: Some(end),
            status,
            recorded: true,
            operations: buf.ops,
            steps: buf.steps,
            failing_step: None,
            active: Vec::new(),
            dropped: buf.budget.dropped,
        };
        // Retention follows the configuration in force now, so a
        // reconfiguration bounds the store at once.
        let settings = self.settings.load();
        if let Some(kept) = self.store.offer(trace, &settings.config.retention)
            && let Some(sink) = &self.sink
        {
            // Operations the sink runs are not recorded: a sink that logs
            // through `tracing` would otherwise feed itself forever.
            let was = IN_SINK.replace(true);
            sink.on_trace(&kept);
            IN_SINK.set(was);
        }
    }
}

// === impl TraceShared ===

impl TraceShared {
    fn elapsed(&self) -> Duration {
        self.time.since(self.started)
    }

    fn limits(&self) -> &LimitsConfig {
        &self.settings.config.limits
    }

    /// Records a new operation; returns its id, or `None` over the cap.
    fn push_op(
        &self,
        parent: Option<u32>,
        name: Text,
        target: &'static str,
        mut fields: Vec<Entry>,
        failed: bool,
    ) -> Option<u32> {
        // The root starts the trace; children are timed from it.
        let start = if parent.is_some() {
            self.elapsed()
        } else {
            Duration::ZERO
        };
        let max_ops = self.limits().max_operations;
        let max_bytes = self.limits().max_trace_bytes;
        let mut buf = self.buf.lock();
        if buf.ops.len() >= max_ops {
            buf.budget.dropped.operations += 1;
            return None;
        }
        buf.budget.charge(&mut fields, max_bytes);
        let id = u32::try_from(buf.ops.len()).ok()?;
        let seq = buf.next_seq();
        buf.failed |= failed;
        buf.ops.push(Operation {
            id,
            parent,
            name,
            target: Cow::Borrowed(target),
            fields: fields.into(),
            start,
            end: None,
            failed,
            start_seq: seq,
        });
        Some(id)
    }

    /// Records a step; returns its sequence number, or `None` over the cap.
    fn push_step(
        &self,
        op: Option<u32>,
        name: Text,
        level: Level,
        fields: &mut Scratch,
        failed: bool,
    ) -> Option<u32> {
        let at = self.elapsed();
        let max_steps = self.limits().max_steps;
        let max_bytes = self.limits().max_trace_bytes;
        let mut guard = self.buf.lock();
        let buf = &mut *guard;
        let cap = if failed {
            max_steps + ERROR_RESERVE
        } else {
            max_steps
        };
        if buf.steps.len() >= cap {
            buf.budget.dropped.steps += 1;
            buf.failed |= failed;
            return None;
        }
        let start = buf.entries.len();
        fields.drain_into(&mut buf.entries);
        buf.budget
            .charge(buf.entries.get_mut(start..).unwrap_or_default(), max_bytes);
        let fields = Fields::pending(start, buf.entries.len() - start);
        let seq = buf.next_seq();
        if failed {
            buf.failed = true;
            if let Some(o) = op.and_then(|o| buf.ops.get_mut(o as usize)) {
                o.failed = true;
            }
        }
        buf.steps.push(Step {
            seq,
            operation: op,
            name,
            level,
            at,
            fields,
            failed,
        });
        Some(seq)
    }

    /// A copy of the trace so far, with `active` open operations.
    fn snapshot(&self, active: Vec<u32>, failing_step: Option<u32>) -> Trace {
        let buf = self.buf.lock();
        let entries = Arc::new(buf.entries.clone());
        let mut steps = buf.steps.clone();
        for s in &mut steps {
            s.fields.resolve(&entries);
        }
        Trace {
            trace_id: self.id,
            correlation_id: buf
                .correlation_id
                .clone()
                .unwrap_or_else(|| self.id.to_string()),
            started_at: self.started_wall,
            duration: None,
            status: if buf.failed {
                TraceStatus::Failed
            } else {
                TraceStatus::InProgress
            },
            recorded: true,
            operations: buf.ops.clone(),
            steps,
            failing_step,
            active,
            dropped: buf.budget.dropped,
        }
    }

    pub(crate) fn correlation_id(&self) -> String {
        self.buf
            .lock()
            .correlation_id
            .clone()
            .unwrap_or_else(|| self.id.to_string())
    }
}

// === impl TraceBuf ===

impl TraceBuf {
    fn next_seq(&mut self) -> u32 {
        let s = self.seq;
        self.seq = self.seq.saturating_add(1);
        s
    }

    /// Moves the steps' fields to one buffer they share.
    fn resolve_fields(&mut self) {
        if self.entries.is_empty() {
            return;
        }
        let shared = Arc::new(std::mem::take(&mut self.entries));
        for s in &mut self.steps {
            s.fields.resolve(&shared);
        }
    }

    /// The field `name` of `step`, whose fields may still be pending.
    fn step_field<'a>(&'a self, step: &'a Step, name: &str) -> Option<&'a Value> {
        match step.fields.pending_range() {
            Some(r) => self
                .entries
                .get(r)
                .and_then(|f| f.iter().find(|(k, _)| k == name))
                .map(|(_, v)| v),
            None => step.field(name),
        }
    }
}

// === impl Budget ===

impl Budget {
    /// Charges `fields` against the per-trace byte budget, replacing values
    /// that do not fit by truncation markers.
    fn charge(&mut self, fields: &mut [Entry], max_bytes: usize) {
        for (_, v) in fields.iter_mut() {
            if v.is_truncated() {
                self.dropped.truncated_values += 1;
            }
            let w = v.weight();
            if self.bytes + w > max_bytes {
                let original_bytes = match &*v {
                    Value::Truncated { original_bytes, .. } => *original_bytes,
                    other => other.weight(),
                };
                if !v.is_truncated() {
                    self.dropped.truncated_values += 1;
                }
                *v = Value::Truncated {
                    head: String::new(),
                    original_bytes,
                };
            } else {
                self.bytes += w;
            }
        }
    }
}

// === impl Layer ===

/// A recorded span's trace and operation, and whether that span is the one
/// asked for (not an ancestor found past a per-layer filter).
type Found = (Arc<TraceShared>, Option<u32>, bool);

/// Where a new span or an event belongs, for this layer.
enum Home {
    /// In the recorded span (its record).
    Recorded(Found),
    /// In a span that is not recorded.
    Unrecorded,
    /// Nowhere: a root.
    Root,
}

impl TraceLayer {
    /// This layer's key in [`ENTERED`].
    fn key(&self) -> usize {
        Arc::as_ptr(&self.spans).addr()
    }

    /// The span this thread is in for this layer's subscriber (as the
    /// registry's `current_span`: the innermost entered span not entered
    /// again) and its record if known: moved out of [`ENTERED`] when `take`
    /// (put it back with [`give_back`](Self::give_back)), else cloned.
    /// `Err` when [`ENTERED`] is unusable (thread teardown): ask `ctx`.
    fn current_span(&self, take: bool) -> Result<Option<(Id, Option<Rec>)>, ()> {
        let key = self.key();
        ENTERED
            .try_with(|e| {
                let mut e = e.try_borrow_mut().map_err(|_| ())?;
                Ok(e.iter_mut()
                    .rev()
                    .find(|x| x.key == key && !x.again)
                    .map(|x| {
                        let rec = if take { x.rec.take() } else { x.rec.clone() };
                        (Id::from_non_zero_u64(x.id), rec)
                    }))
            })
            .unwrap_or(Err(()))
    }

    /// The current span's id and its record if known, as
    /// [`current_span`](Self::current_span) or else from the subscriber.
    fn current<S>(&self, take: bool, ctx: &Context<'_, S>) -> (Option<Id>, Option<Rec>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        match self.current_span(take) {
            Ok(Some((id, rec))) => (Some(id), rec),
            Ok(None) => (None, None),
            Err(()) => (ctx.current_span().id().cloned(), None),
        }
    }

    /// Puts the record of the entered span `id` (back) into [`ENTERED`].
    fn give_back(&self, id: &Id, rec: Rec) {
        let key = self.key();
        let id = id.into_non_zero_u64();
        let _ = ENTERED.try_with(|e| {
            if let Ok(mut e) = e.try_borrow_mut()
                && let Some(x) = e
                    .iter_mut()
                    .rev()
                    .find(|x| x.key == key && x.id == id && !x.again)
                && x.rec.is_none()
            {
                x.rec = Some(rec);
            }
        });
    }

    /// Where something whose parent the subscriber set to `direct` belongs.
    /// The map answers for the direct parent; only when it has no record
    /// does `seen` (the nearest ancestor this layer sees, which differs
    /// under a per-layer filter) decide.
    fn home(&self, direct: Option<Id>, seen: impl FnOnce() -> Option<Id>) -> Home {
        let Some(direct) = direct else {
            return Home::Root;
        };
        if let Some((trace, op, _)) = self.spans.get(&direct) {
            return Home::Recorded((trace, op, true));
        }
        match seen() {
            Some(id) if id == direct => Home::Unrecorded,
            Some(id) => self
                .spans
                .get(&id)
                .map_or(Home::Unrecorded, |(trace, op, _)| {
                    Home::Recorded((trace, op, false))
                }),
            None => Home::Root,
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for TraceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_layer(&mut self, _subscriber: &mut S) {
        // Span ids are per subscriber: a clone added to another subscriber
        // keeps its own records.
        self.spans = Arc::new(SpanMap::new());
    }

    fn on_enter(&self, id: &Id, _ctx: Context<'_, S>) {
        let key = self.key();
        let id = id.into_non_zero_u64();
        // The span created last is usually the one entered.
        let rec = CREATED
            .try_with(|c| match c.take() {
                Some((k, i, rec)) if k == key && i == id => Some(rec),
                other => {
                    c.set(other);
                    None
                }
            })
            .ok()
            .flatten();
        let _ = ENTERED.try_with(|e| {
            if let Ok(mut e) = e.try_borrow_mut() {
                let again = e.iter().any(|x| x.key == key && x.id == id);
                e.push(Entered {
                    key,
                    id,
                    again,
                    rec: if again { None } else { rec },
                });
            }
        });
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let key = self.key();
        let id = id.into_non_zero_u64();
        let left = ENTERED.try_with(|e| {
            let mut e = e.try_borrow_mut().ok()?;
            let i = e.iter().rposition(|x| x.key == key && x.id == id)?;
            Some(e.remove(i))
        });
        // Its record (if any) is dropped outside the borrow.
        drop(left);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // Only the span created last is kept for `on_enter`.
        drop(CREATED.try_with(std::cell::Cell::take));
        // The parent as the subscriber sets it, and its record if known.
        let (direct, known) = if attrs.is_contextual() {
            self.current(false, &ctx)
        } else {
            (attrs.parent().cloned(), None)
        };
        if direct.is_some() && self.inner.live.load(Ordering::Acquire) == 0 {
            // No recorded trace is open, so this span's cannot be one.
            return;
        }
        let meta = attrs.metadata();
        let home = match known {
            Some((trace, op)) => Home::Recorded((trace, op, false)),
            None => self.home(direct, || ctx.span(id)?.parent().map(|p| p.id())),
        };
        let parent = match home {
            Home::Recorded(found) => Some(found),
            // The parent belongs to a trace that is not recorded.
            Home::Unrecorded => return,
            Home::Root => None,
        };
        let is_root = parent.is_none();
        let (trace, parent_op) = match parent {
            Some((trace, op, _)) => (trace, op),
            None => {
                let Some(span) = ctx.span(id) else { return };
                // A root operation: decide once whether to record it.
                let settings = self.inner.settings.load_full();
                if IN_SINK.get() || !sample(&self.inner.head_counter, settings.config.sample_rate) {
                    let mut c = Capture::new(&settings);
                    c.at(meta);
                    attrs.record(&mut c);
                    span.extensions_mut().insert(Unrecorded {
                        id: self.inner.next_id(),
                        correlation_id: c.correlation_id,
                    });
                    return;
                }
                let buf = self.inner.new_buf(&settings.config.limits);
                let shared = Arc::new(TraceShared {
                    id: self.inner.next_id(),
                    settings,
                    time: self.inner.time.clone(),
                    started: self.inner.time.read(),
                    started_wall: SystemTime::now(),
                    buf: Mutex::new(buf),
                });
                self.inner.live.fetch_add(1, Ordering::AcqRel);
                (shared, None)
            }
        };
        let op = if meta.fields().is_empty() {
            let name = Text::from_static(meta.name());
            trace.push_op(parent_op, name, meta.target(), Vec::new(), false)
        } else {
            let mut c = Capture::new(&trace.settings);
            c.at(meta);
            attrs.record(&mut c);
            if is_root && let Some(cid) = c.correlation_id.take() {
                trace.buf.lock().correlation_id = Some(cid);
            }
            let name = c
                .otel_name
                .take()
                .unwrap_or_else(|| Text::from_static(meta.name()));
            let fields = c.fields.take_vec();
            trace.push_op(parent_op, name, meta.target(), fields, c.error)
        };
        let rec = (Arc::clone(&trace), op);
        self.spans.insert(id, SpanRecord { trace, op, is_root });
        let key = self.key();
        let _ = CREATED.try_with(|c| c.set(Some((key, id.into_non_zero_u64(), rec))));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some((trace, op, is_root)) = self.spans.get(id) else {
            // An unrecorded root can still learn its correlation id.
            let Some(span) = ctx.span(id) else { return };
            let mut ext = span.extensions_mut();
            if let Some(u) = ext.get_mut::<Unrecorded>() {
                let settings = self.inner.settings.load();
                let mut c = Capture::new(&settings);
                c.at(span.metadata());
                values.record(&mut c);
                if c.correlation_id.is_some() {
                    u.correlation_id = c.correlation_id;
                }
            }
            return;
        };
        let mut c = Capture::new(&trace.settings);
        if let Some(meta) = ctx.metadata(id) {
            c.at(meta);
        }
        values.record(&mut c);
        let max_bytes = trace.limits().max_trace_bytes;
        let mut guard = trace.buf.lock();
        let buf = &mut *guard;
        if is_root && let Some(cid) = c.correlation_id.take() {
            buf.correlation_id = Some(cid);
        }
        buf.failed |= c.error;
        let mut fields = c.fields.take_vec();
        buf.budget.charge(&mut fields, max_bytes);
        let Some(o) = op.and_then(|o| buf.ops.get_mut(o as usize)) else {
            return;
        };
        o.failed |= c.error;
        if let Some(n) = c.otel_name {
            o.name = n;
        }
        for (k, v) in fields {
            match o.fields.iter_mut().find(|(name, _)| *name == k) {
                Some(slot) => slot.1 = v,
                None => o.fields.push((k, v)),
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if self.inner.live.load(Ordering::Acquire) == 0 {
            return;
        }
        // The current span's record is moved out of `ENTERED` while the
        // event is recorded and put back after.
        let (direct, known) = if event.is_contextual() {
            self.current(true, &ctx)
        } else {
            (event.parent().cloned(), None)
        };
        let ((trace, op), own) = match known {
            Some(rec) => (rec, true),
            None => match self.home(direct.clone(), || ctx.event_span(event).map(|s| s.id())) {
                // The record is the direct parent's own unless a per-layer
                // filter made it an ancestor's.
                Home::Recorded((trace, op, own)) => ((trace, op), own),
                Home::Unrecorded | Home::Root => return,
            },
        };
        let meta = event.metadata();
        let mut c = Capture::new(&trace.settings);
        c.at(meta);
        event.record(&mut c);
        let name = match (c.message.take(), c.step_name.take()) {
            (_, Some(step)) => step,
            (Some(msg), None) => msg,
            (None, None) => Text::from_static(meta.name()),
        };
        let failed = *meta.level() == Level::ERROR;
        trace.push_step(op, name, *meta.level(), &mut c.fields, failed);
        drop(c);
        if own
            && event.is_contextual()
            && let Some(id) = direct
        {
            self.give_back(&id, (trace, op));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if self.inner.live.load(Ordering::Acquire) == 0 {
            return;
        }
        let _ = ctx;
        let Some(rec) = self.spans.remove(&id) else {
            return;
        };
        let end = rec.trace.elapsed();
        if let Some(op) = rec.op
            && let Some(o) = rec.trace.buf.lock().ops.get_mut(op as usize)
        {
            o.end = Some(end);
        }
        if rec.is_root {
            self.inner.finish(&rec.trace, end);
            self.inner.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

// === capture from the current span ===

/// What an error captured: the redacted error message and the trace so far.
pub(crate) struct Captured {
    pub(crate) message: String,
    pub(crate) trace: Option<Trace>,
    /// The redaction in force for this trace, for formatting the error later.
    pub(crate) settings: Option<Arc<Settings>>,
}

/// The redactor used when no recorded trace supplies one: the defaults.
pub(crate) fn default_redactor() -> &'static Redactor {
    static DEFAULT: std::sync::LazyLock<Redactor> =
        std::sync::LazyLock::new(|| Redactor::new(&crate::config::RedactionConfig::default()));
    &DEFAULT
}

/// Snapshots the trace of the current span, recording the error `message` as
/// its failing step. The trace is `None` when there is no current span or the
/// subscriber is not built on `tracing_subscriber::Registry`.
pub(crate) fn capture_current(message: &str) -> Captured {
    let current = tracing::Span::current();
    current
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let spans = dispatch.downcast_ref::<TraceLayer>().map(|l| &*l.spans);
            let span = registry.span(id)?;
            Some(capture_in(&span, spans, message))
        })
        .flatten()
        .unwrap_or_else(|| Captured {
            message: scrub_message(default_redactor(), message),
            trace: None,
            settings: None,
        })
}

fn scrub_message(redactor: &Redactor, message: &str) -> String {
    redactor
        .scrub_text(message)
        .unwrap_or_else(|| message.to_owned())
}

fn capture_in<R>(span: &SpanRef<'_, R>, spans: Option<&SpanMap>, message: &str) -> Captured
where
    R: for<'a> LookupSpan<'a>,
{
    if let Some(spans) = spans
        && let Some((trace, op, _)) = spans.get(&span.id())
    {
        let mut active: Vec<u32> = span.scope().filter_map(|s| spans.op(&s.id())).collect();
        active.reverse();
        let mut c = Capture::new(&trace.settings);
        let v = c.text(message);
        // When the failure was just recorded (an error event with the same
        // message, e.g. from `measure_step` or `#[instrument(err)]`), mark
        // that step rather than repeating it.
        let already = {
            let buf = trace.buf.lock();
            buf.steps
                .last()
                .filter(|s| s.failed && buf.step_field(s, "error") == Some(&v))
                .map(|s| s.seq)
        };
        let failing = already.or_else(|| {
            c.fields.push((Cow::Borrowed("error"), v));
            trace.push_step(
                op,
                Text::from_static("error"),
                Level::ERROR,
                &mut c.fields,
                true,
            )
        });
        return Captured {
            message: scrub_message(&trace.settings.redactor, message),
            trace: Some(trace.snapshot(active, failing)),
            settings: Some(Arc::clone(&trace.settings)),
        };
    }
    // Not recorded: the chain of names is all there is.
    let chain: Vec<SpanRef<'_, R>> = span.scope().from_root().collect();
    let (id, correlation_id) = chain
        .first()
        .and_then(|root| {
            root.extensions()
                .get::<Unrecorded>()
                .map(|u| (u.id, u.correlation_id.clone()))
        })
        .unwrap_or((TraceId(0), None));
    let operations: Vec<Operation> = chain
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            Operation {
                id: i,
                parent: i.checked_sub(1),
                name: Text::from_static(s.name()),
                target: Cow::Borrowed(s.metadata().target()),
                fields: Fields::new(),
                start: Duration::ZERO,
                end: None,
                failed: false,
                start_seq: i,
            }
        })
        .collect();
    let n = u32::try_from(operations.len()).unwrap_or(u32::MAX);
    let message = scrub_message(default_redactor(), message);
    let step = Step {
        seq: n,
        operation: n.checked_sub(1),
        name: Text::from_static("error"),
        level: Level::ERROR,
        at: Duration::ZERO,
        fields: std::iter::once((Cow::Borrowed("error"), Value::Str(message.as_str().into())))
            .collect(),
        failed: true,
    };
    Captured {
        message,
        trace: Some(Trace {
            trace_id: id,
            correlation_id: correlation_id.unwrap_or_else(|| id.to_string()),
            started_at: SystemTime::now(),
            duration: None,
            status: TraceStatus::Failed,
            recorded: false,
            active: (0..n).collect(),
            operations,
            failing_step: Some(n),
            steps: vec![step],
            dropped: Dropped::default(),
        }),
        settings: None,
    }
}

/// The correlation id of the current trace, if the current span belongs to
/// one (recorded or not).
///
/// Use it to tag outgoing requests and logs. Requires a subscriber built on
/// `tracing_subscriber::Registry` with a [`TraceLayer`].
#[must_use]
pub fn current_correlation_id() -> Option<String> {
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let span = registry.span(id)?;
            if let Some(layer) = dispatch.downcast_ref::<TraceLayer>()
                && let Some((trace, _, _)) = layer.spans.get(id)
            {
                return Some(trace.correlation_id());
            }
            let root = span.scope().from_root().next()?;
            let ext = root.extensions();
            let u = ext.get::<Unrecorded>()?;
            Some(u.correlation_id.clone().unwrap_or_else(|| u.id.to_string()))
        })
        .flatten()
}
