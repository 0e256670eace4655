//! The `tracing_subscriber::Layer` that records traces.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use foundation_core::{Clock, SharedClock, Validate, ValidationErrors};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::capture::Capture;
use crate::config::{LimitsConfig, TraceConfig};
use crate::export::TraceSink;
use crate::recording::{Local, Patch, TimeSource, TraceBuf, TraceShared, flush_local, with_local};
use crate::redact::Redactor;
use crate::spans::SpanMap;
use crate::store::{TraceStore, sample};
use crate::trace::{Dropped, Operation, Step, Trace, TraceId, TraceStatus};
use crate::value::{Fields, Text, Value};

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
}

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

/// Span extension of a root span that head sampling skipped (rare, so it
/// lives in the span's extensions rather than in the [`SpanMap`]).
pub(crate) struct Unrecorded {
    pub(crate) id: TraceId,
    pub(crate) correlation_id: Option<String>,
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
        TraceBuf::with_capacity(
            ops.clamp(1, limits.max_operations.max(1)),
            steps.clamp(1, limits.max_steps.max(1)),
            entries.min(4 * limits.max_steps.max(1)),
        )
    }

    fn finish(&self, shared: &TraceShared, end: Duration) {
        let (trace, [ops, steps, entries]) = shared.finish(end);
        self.size_hint.0.store(ops, Ordering::Relaxed);
        self.size_hint.1.store(steps, Ordering::Relaxed);
        self.size_hint.2.store(entries, Ordering::Relaxed);
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
    /// This layer's key in the per-thread state.
    #[inline]
    fn key(&self) -> usize {
        Arc::as_ptr(&self.spans).addr()
    }

    #[inline]
    fn live(&self) -> bool {
        self.inner.live.load(Ordering::Acquire) > 0
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

    /// Records span `id`, a child of this thread's current span, when that
    /// span's record is known here: the operation goes to the journal.
    /// `false` when the general path must decide (no current span, its
    /// record unknown here, or this thread's state in use).
    fn new_child_here(&self, key: usize, attrs: &Attributes<'_>, id: &Id) -> bool {
        let meta = attrs.metadata();
        with_local(|l| {
            l.forget_created();
            let Some((slot, parent)) = l.current_record(key) else {
                return false;
            };
            let Some(trace) = l.trace(slot) else {
                return false;
            };
            let serial = trace.serial;
            let op = if meta.fields().is_empty() {
                // The common shape, built in place in the journal.
                let next = trace.next_op(false);
                if let Some(next) = next {
                    l.journal_plain_op(slot, next, parent, meta);
                }
                next.map(|n| n.id)
            } else {
                // A field's `Debug` that logs records through the general
                // path (this thread's state is borrowed).
                let (name, fields, failed, _) = span_parts(&trace.settings, attrs);
                let op = trace
                    .next_op(false)
                    .map(|n| n.op(parent, name, meta.target(), fields, failed));
                let id = op.as_ref().map(|o| o.id);
                if let Some(op) = op {
                    l.journal_op(slot, op);
                }
                id
            };
            self.spans.insert_child(id, serial, op);
            l.created(key, id.into_non_zero_u64(), slot, op);
            true
        })
        .unwrap_or(false)
    }
}

/// The parent the subscriber gives a new span or an event: the current
/// span (from this thread's state, or else the subscriber's) when
/// `contextual`, else `explicit`.
fn parent_id<S>(
    key: usize,
    contextual: bool,
    explicit: Option<&Id>,
    ctx: &Context<'_, S>,
) -> Option<Id>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if !contextual {
        return explicit.cloned();
    }
    match with_local(|l| l.current(key)) {
        Some(cur) => cur.map(|c| Id::from_non_zero_u64(c.id)),
        None => ctx.current_span().id().cloned(),
    }
}

/// A new span's operation name (its `otel.name`, else the callsite's), its
/// captured fields, whether they mark it failed, and its `correlation_id`.
fn span_parts(
    settings: &Settings,
    attrs: &Attributes<'_>,
) -> (Text, Vec<crate::value::Entry>, bool, Option<String>) {
    let meta = attrs.metadata();
    if meta.fields().is_empty() {
        return (Text::from_static(meta.name()), Vec::new(), false, None);
    }
    let mut c = Capture::new(settings);
    c.at(meta);
    attrs.record(&mut c);
    let name = c
        .otel_name
        .take()
        .unwrap_or_else(|| Text::from_static(meta.name()));
    (name, c.fields.take_vec(), c.error, c.correlation_id.take())
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
        let nz = id.into_non_zero_u64();
        let missing = with_local(|l| l.enter(key, nz)).unwrap_or(false);
        // A span created elsewhere (an instrumented future polled on
        // another thread, or again after it was exited): its record once per
        // entry, not per event, and its trace from this thread's own slots
        // when the thread holds it already.
        if missing
            && self.live()
            && let Some(rec) = self.spans.lookup(id)
        {
            let held = with_local(|l| l.set_record(key, nz, rec.trace, rec.op, None));
            if held == Some(false)
                && let Some(trace) = self.spans.trace(rec.trace)
            {
                let _ = with_local(|l| l.set_record(key, nz, rec.trace, rec.op, Some(&trace)));
            }
        }
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let key = self.key();
        let _ = with_local(|l| l.exit(key, id.into_non_zero_u64()));
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let key = self.key();
        if attrs.is_contextual() && self.live() && self.new_child_here(key, attrs, id) {
            return;
        }
        // The general path: a root, an explicit parent, or a parent whose
        // record this thread does not know.
        let _ = with_local(Local::forget_created);
        let direct = parent_id(key, attrs.is_contextual(), attrs.parent(), &ctx);
        if direct.is_some() && !self.live() {
            // No recorded trace is open, so this span's cannot be one.
            return;
        }
        let meta = attrs.metadata();
        let parent = match self.home(direct, || ctx.span(id)?.parent().map(|p| p.id())) {
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
                let shared = Arc::new(TraceShared::new(
                    self.inner.next_id(),
                    self.spans.new_serial(),
                    settings,
                    self.inner.time.clone(),
                    buf,
                ));
                self.inner.live.fetch_add(1, Ordering::AcqRel);
                (shared, None)
            }
        };
        let (name, fields, failed, correlation_id) = span_parts(&trace.settings, attrs);
        if is_root && let Some(cid) = correlation_id {
            trace.set_correlation_id(cid);
        }
        let op = trace.next_op(is_root).map(|slot| {
            let op = slot.op(parent_op, name, meta.target(), fields, failed);
            let id = op.id;
            trace.push_op(op);
            id
        });
        if is_root {
            self.spans.insert_root(id, &trace, op);
        } else {
            self.spans.insert_child(id, trace.serial, op);
        }
        let nz = id.into_non_zero_u64();
        let _ = with_local(|l| l.created_in(key, nz, &trace, op));
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
        // The operation is most likely still in this thread's journal.
        flush_local(&trace);
        let correlation_id = c.correlation_id.take().filter(|_| is_root);
        let patch = op.map(|op| Patch {
            op,
            name: c.otel_name.take(),
            fields: c.fields.take_vec().into(),
            failed: c.error,
        });
        trace.update(correlation_id, c.error, patch);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !self.live() {
            return;
        }
        let key = self.key();
        let meta = event.metadata();
        let level = *meta.level();
        let failed = level == Level::ERROR;
        if event.is_contextual() {
            // This thread is inside the current span's trace: the step goes
            // to the journal. A field's `Debug` that logs records through
            // the general path (this thread's state is borrowed).
            let done = with_local(|l| l.record_event(key, event));
            if done == Some(true) {
                return;
            }
        }
        let direct = parent_id(key, event.is_contextual(), event.parent(), &ctx);
        let (trace, op) = match self.home(direct, || ctx.event_span(event).map(|s| s.id())) {
            Home::Recorded((trace, op, _)) => (trace, op),
            Home::Unrecorded | Home::Root => return,
        };
        let mut c = Capture::new(&trace.settings);
        c.at(meta);
        event.record(&mut c);
        let name = c.step_name(meta);
        let mut fields = c.fields;
        trace.push_step(op, name, level, &mut fields, failed);
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        if !self.live() {
            return;
        }
        let Some(rec) = self.spans.remove(&id) else {
            return;
        };
        if rec.is_root {
            let Some(trace) = self.spans.trace(rec.trace) else {
                return;
            };
            let end = trace.elapsed();
            if let Some(op) = rec.op {
                trace.push_end(op, end);
            }
            self.spans.finished(trace.serial);
            flush_local(&trace);
            self.inner.finish(&trace, end);
            self.inner.live.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let Some(op) = rec.op else { return };
        // Closed inside its trace on this thread (the usual case): the end
        // goes to the journal.
        let journaled = with_local(|l| l.journal_end_in(rec.trace, op)).unwrap_or(false);
        if !journaled && let Some(trace) = self.spans.trace(rec.trace) {
            trace.push_end(op, trace.elapsed());
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
        // What this thread recorded of the trace is read too.
        flush_local(&trace);
        let mut active: Vec<u32> = span.scope().filter_map(|s| spans.op(&s.id())).collect();
        active.reverse();
        let mut c = Capture::new(&trace.settings);
        let v = c.text(message);
        // When the failure was just recorded (an error event with the same
        // message, e.g. from `measure_step` or `#[instrument(err)]`), mark
        // that step rather than repeating it.
        let already = trace.last_failed_step_with("error", &v);
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
