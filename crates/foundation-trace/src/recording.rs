//! A trace while it records: the state its spans share ([`TraceShared`]),
//! and the per-thread [`Journal`] that batches a thread's additions to it.
//!
//! Recording a step takes no lock. Operation ids and history positions come
//! from one atomic counter per trace; the operations, steps and operation end
//! times a thread records while it is inside one of the trace's entered spans
//! go to that thread's journal, which moves them into the trace under its
//! lock in one batch: when the thread leaves the trace (exits the last of its
//! entered spans), turns to another trace, holds [`JOURNAL_BATCH`] items, or
//! ends. A trace's root closes only after every span of the trace has closed,
//! so every journal holding part of it has been flushed by then. What other
//! threads record (a span closed elsewhere, an event with an explicit parent
//! the thread is not inside) goes to the trace directly under its lock.
//!
//! Additions from several threads arrive in the order their batches do, so
//! the trace is put in order (by operation id and history position) and end
//! times, failures and late field updates are applied to its operations when
//! it is taken out: at the root's close, or for an error's snapshot.

use std::borrow::Cow;
use std::cell::RefCell;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use foundation_core::SharedClock;
use parking_lot::Mutex;
use tracing::{Event, Level};

use crate::capture::{Capture, Scratch};
use crate::config::LimitsConfig;
use crate::layer::Settings;
use crate::trace::{Dropped, Operation, Step, Trace, TraceId, TraceStatus};
use crate::value::{Entry, Fields, Text, Value};

/// Extra steps an error-level event may use beyond `limits.max_steps`, so the
/// failure is recorded even when the cap was reached.
const ERROR_RESERVE: usize = 8;

/// Items (operations, steps and end times) a journal holds before it moves
/// them into their trace, whatever the thread does next. Bounds the memory a
/// thread holds for a trace it stays inside of for long.
pub(crate) const JOURNAL_BATCH: usize = 256;

/// Bits of [`TraceShared::counters`] that count history positions; the bits
/// above count operations.
const SEQ_BITS: u32 = 40;
/// A trace stops handing out positions (and operation ids) past these, so
/// the two counts never run into each other.
const SEQ_LIMIT: u64 = 1 << (SEQ_BITS - 1);
const OPS_LIMIT: u64 = 1 << (63 - SEQ_BITS);
/// The history-position bits of the counter.
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// Where timings come from: the CPU's time-stamp counter through `quanta`
/// by default (a counter read instead of a `clock_gettime` call), or the
/// clock given to [`TraceLayerBuilder::with_clock`](crate::TraceLayerBuilder::with_clock).
#[derive(Clone)]
pub(crate) enum TimeSource {
    Counter(quanta::Clock),
    Clock(SharedClock),
}

/// A reading of a [`TimeSource`]: a raw counter value or an instant.
#[derive(Clone, Copy)]
pub(crate) enum Reading {
    Counter(u64),
    Instant(Instant),
}

impl TimeSource {
    pub(crate) fn read(&self) -> Reading {
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

impl std::fmt::Debug for TimeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Counter(_) => f.write_str("TimeSource::Counter"),
            Self::Clock(c) => f.debug_tuple("TimeSource::Clock").field(c).finish(),
        }
    }
}

/// The per-trace state shared by every span of the trace.
pub(crate) struct TraceShared {
    pub(crate) id: TraceId,
    /// Unique among the layer's traces (names the trace in span records).
    pub(crate) serial: u64,
    pub(crate) settings: Arc<Settings>,
    time: TimeSource,
    started: Reading,
    started_wall: SystemTime,
    /// Operations started (bits from [`SEQ_BITS`] up) and history positions
    /// handed out (bits below).
    counters: AtomicU64,
    /// Operations refused by `limits.max_operations`.
    ops_dropped: AtomicU64,
    /// Set when the root closed and the trace was taken out.
    finished: AtomicBool,
    pub(crate) buf: Mutex<TraceBuf>,
}

/// A step to overwrite in place.
const BLANK_STEP: Step = Step {
    seq: 0,
    operation: None,
    name: Text::from_static(""),
    level: Level::INFO,
    at: Duration::ZERO,
    fields: Fields::new(),
    failed: false,
};

/// An operation to overwrite in place.
const BLANK_OP: Operation = Operation {
    id: 0,
    parent: None,
    name: Text::from_static(""),
    target: Cow::Borrowed(""),
    fields: Fields::new(),
    start: Duration::ZERO,
    end: None,
    failed: false,
    start_seq: 0,
};

/// What a new operation gets from its trace.
#[derive(Clone, Copy)]
pub(crate) struct OpSlot {
    pub(crate) id: u32,
    pub(crate) seq: u32,
    pub(crate) start: Duration,
}

impl OpSlot {
    /// The operation.
    #[inline]
    pub(crate) fn op(
        self,
        parent: Option<u32>,
        name: Text,
        target: &'static str,
        fields: Vec<Entry>,
        failed: bool,
    ) -> Operation {
        Operation {
            id: self.id,
            parent,
            name,
            target: Cow::Borrowed(target),
            fields: fields.into(),
            start: self.start,
            end: None,
            failed,
            start_seq: self.seq,
        }
    }
}

/// What a trace holds, as far as it has arrived.
#[derive(Default, Clone)]
pub(crate) struct TraceBuf {
    pub(crate) correlation_id: Option<String>,
    /// Operations, in the order they arrived.
    ops: Vec<Operation>,
    /// Steps in the order they arrived, their fields pending as ranges of
    /// `entries`.
    pub(crate) steps: Vec<Step>,
    /// The fields of all steps.
    entries: Vec<Entry>,
    /// End times of operations (applied when the trace is taken out).
    ends: Vec<(u32, Duration)>,
    /// Field updates of operations that had not arrived yet, one per
    /// operation (applied when the trace is taken out).
    patches: Vec<Patch>,
    budget: Budget,
    failed: bool,
}

/// A field update (`Span::record`) of one operation.
#[derive(Clone)]
pub(crate) struct Patch {
    pub(crate) op: u32,
    pub(crate) name: Option<Text>,
    pub(crate) fields: Fields,
    pub(crate) failed: bool,
}

/// What a trace has spent of its byte budget, and what the limits cut.
#[derive(Default, Clone)]
struct Budget {
    bytes: usize,
    dropped: Dropped,
}

// === impl TraceShared ===

impl TraceShared {
    pub(crate) fn new(
        id: TraceId,
        serial: u64,
        settings: Arc<Settings>,
        time: TimeSource,
        buf: TraceBuf,
    ) -> Self {
        Self {
            id,
            serial,
            settings,
            started: time.read(),
            time,
            started_wall: SystemTime::now(),
            counters: AtomicU64::new(0),
            ops_dropped: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            buf: Mutex::new(buf),
        }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.time.since(self.started)
    }

    pub(crate) fn limits(&self) -> &LimitsConfig {
        &self.settings.config.limits
    }

    /// The next history position, or `None` once a trace has handed out
    /// 2^39 of them.
    fn next_seq(&self) -> Option<u32> {
        if self.counters.load(Ordering::Relaxed) & SEQ_MASK >= SEQ_LIMIT {
            return None;
        }
        let n = self.counters.fetch_add(1, Ordering::Relaxed) & SEQ_MASK;
        // Positions past `u32::MAX` all read as the last one.
        Some(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The id, history position and start time of a new operation; `None`
    /// over the operation cap (counted).
    pub(crate) fn next_op(&self, is_root: bool) -> Option<OpSlot> {
        // The root starts the trace; children are timed from it.
        let start = if is_root {
            Duration::ZERO
        } else {
            self.elapsed()
        };
        let now = self.counters.load(Ordering::Relaxed);
        let max_ops = self.limits().max_operations as u64;
        if now >> SEQ_BITS >= max_ops.min(OPS_LIMIT) || now & SEQ_MASK >= SEQ_LIMIT {
            self.ops_dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let n = self
            .counters
            .fetch_add((1 << SEQ_BITS) | 1, Ordering::Relaxed);
        let id = n >> SEQ_BITS;
        if id >= max_ops {
            // Another thread took the last id first.
            self.ops_dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(OpSlot {
            id: u32::try_from(id).unwrap_or(u32::MAX),
            seq: u32::try_from(n & SEQ_MASK).unwrap_or(u32::MAX),
            start,
        })
    }

    /// Records an operation directly.
    pub(crate) fn push_op(&self, op: Operation) {
        let max_bytes = self.limits().max_trace_bytes;
        self.buf.lock().push_op(op, max_bytes);
    }

    /// Records a step directly; returns its history position, or `None`
    /// when a limit dropped it.
    pub(crate) fn push_step(
        &self,
        op: Option<u32>,
        name: Text,
        level: Level,
        fields: &mut Scratch,
        failed: bool,
    ) -> Option<u32> {
        let at = self.elapsed();
        let Some(seq) = self.next_seq() else {
            self.buf.lock().budget.dropped.steps += 1;
            return None;
        };
        let step = Step {
            seq,
            operation: op,
            name,
            level,
            at,
            fields: Fields::new(),
            failed,
        };
        let limits = self.limits();
        let mut buf = self.buf.lock();
        let start = buf.entries.len();
        fields.drain_into(&mut buf.entries);
        let n = buf.entries.len() - start;
        buf.push_step(step, start, n, limits).then_some(seq)
    }

    /// Records the end of operation `op` directly.
    pub(crate) fn push_end(&self, op: u32, end: Duration) {
        self.buf.lock().ends.push((op, end));
    }

    /// Applies a field update: the root's correlation id, a failure mark,
    /// and the operation's new fields and name.
    pub(crate) fn update(
        &self,
        correlation_id: Option<String>,
        failed: bool,
        patch: Option<Patch>,
    ) {
        let max_bytes = self.limits().max_trace_bytes;
        let max_ops = self.limits().max_operations;
        let mut buf = self.buf.lock();
        if correlation_id.is_some() {
            buf.correlation_id = correlation_id;
        }
        buf.failed |= failed;
        let Some(mut patch) = patch else { return };
        buf.budget.charge(&mut patch.fields, max_bytes);
        if let Some(o) = buf.ops.iter_mut().rev().find(|o| o.id == patch.op) {
            patch.apply(o);
            return;
        }
        // Still in another thread's journal: applied when the trace is taken
        // out (one pending update per operation).
        if let Some(p) = buf.patches.iter_mut().find(|p| p.op == patch.op) {
            p.merge(patch);
        } else if buf.patches.len() < max_ops {
            buf.patches.push(patch);
        }
    }

    pub(crate) fn set_correlation_id(&self, id: String) {
        self.buf.lock().correlation_id = Some(id);
    }

    pub(crate) fn correlation_id(&self) -> String {
        self.buf
            .lock()
            .correlation_id
            .clone()
            .unwrap_or_else(|| self.id.to_string())
    }

    /// The step recorded last, if it failed and its field `name` is `value`.
    pub(crate) fn last_failed_step_with(&self, name: &str, value: &Value) -> Option<u32> {
        let buf = self.buf.lock();
        let s = buf.steps.last().filter(|s| s.failed)?;
        let r = s.fields.pending_range()?;
        buf.entries
            .get(r)?
            .iter()
            .any(|(k, v)| k == name && v == value)
            .then_some(s.seq)
    }

    /// A copy of the trace so far, with `active` open operations.
    pub(crate) fn snapshot(&self, active: Vec<u32>, failing_step: Option<u32>) -> Trace {
        let buf = self.buf.lock().clone();
        let mut trace = self.make_trace(buf, None);
        if trace.status == TraceStatus::Ok {
            trace.status = TraceStatus::InProgress;
        }
        trace.failing_step = failing_step;
        trace.active = active;
        trace
    }

    /// Takes the finished trace out (the buffer is left empty), with the
    /// number of operations, steps and fields it recorded.
    pub(crate) fn finish(&self, end: Duration) -> (Trace, [usize; 3]) {
        self.finished.store(true, Ordering::Release);
        let buf = std::mem::take(&mut *self.buf.lock());
        let sizes = [buf.ops.len(), buf.steps.len(), buf.entries.len()];
        let mut trace = self.make_trace(buf, Some(end));
        // A stored trace holds little more than it uses, whatever the hint
        // reserved.
        if trace.operations.capacity() > 2 * trace.operations.len() + 8 {
            trace.operations.shrink_to_fit();
        }
        if trace.steps.capacity() > 2 * trace.steps.len() + 8 {
            trace.steps.shrink_to_fit();
        }
        (trace, sizes)
    }

    /// Puts `buf` in order, applies what waited for its operations, and
    /// makes it a [`Trace`].
    fn make_trace(&self, mut buf: TraceBuf, end: Option<Duration>) -> Trace {
        buf.settle();
        if !buf.entries.is_empty() {
            let shared = Arc::new(std::mem::take(&mut buf.entries));
            for s in &mut buf.steps {
                s.fields.resolve(&shared);
            }
        }
        let mut dropped = buf.budget.dropped;
        dropped.operations += self.ops_dropped.load(Ordering::Relaxed);
        Trace {
            trace_id: self.id,
            correlation_id: buf.correlation_id.unwrap_or_else(|| self.id.to_string()),
            started_at: self.started_wall,
            duration: end,
            status: if buf.failed {
                TraceStatus::Failed
            } else {
                TraceStatus::Ok
            },
            recorded: true,
            operations: buf.ops,
            steps: buf.steps,
            failing_step: None,
            active: Vec::new(),
            dropped,
        }
    }
}

// === impl TraceBuf ===

impl TraceBuf {
    /// Empty buffers with room for `ops` operations, `steps` steps and
    /// `entries` fields.
    pub(crate) fn with_capacity(ops: usize, steps: usize, entries: usize) -> Self {
        let (ops, steps, entries) = crate::spare::trace_bufs(ops, steps, entries);
        Self {
            ops,
            steps,
            entries,
            ..Self::default()
        }
    }

    fn push_op(&mut self, mut op: Operation, max_bytes: usize) {
        self.budget.charge(&mut op.fields, max_bytes);
        self.failed |= op.failed;
        self.ops.push(op);
    }

    /// Adds `step`, whose fields are the `n` entries from `start` (the last
    /// ones of `entries`); returns false (and removes them) when the step
    /// cap drops it.
    fn push_step(&mut self, mut step: Step, start: usize, n: usize, limits: &LimitsConfig) -> bool {
        let cap = if step.failed {
            limits.max_steps + ERROR_RESERVE
        } else {
            limits.max_steps
        };
        self.failed |= step.failed;
        if self.steps.len() >= cap {
            self.budget.dropped.steps += 1;
            self.entries.truncate(start);
            return false;
        }
        if let Some(fields) = self.entries.get_mut(start..) {
            self.budget.charge(fields, limits.max_trace_bytes);
        }
        step.fields = Fields::pending(start, n);
        self.steps.push(step);
        true
    }

    /// Moves what `j` holds into the trace.
    fn absorb(&mut self, j: &mut Batch, limits: &LimitsConfig) {
        for op in &mut j.ops {
            if !op.fields.is_empty() {
                self.budget.charge(&mut op.fields, limits.max_trace_bytes);
            }
            self.failed |= op.failed;
        }
        self.ops.append(&mut j.ops);
        if self.steps.is_empty() && self.entries.is_empty() && j.steps.len() <= limits.max_steps {
            // Everything fits: copied in bulk. The journal keeps its own
            // vectors, whose memory the thread keeps warm (a trace's vectors
            // come from traces evicted long ago).
            self.budget.charge(&mut j.entries, limits.max_trace_bytes);
            self.failed |= j.steps.iter().any(|s| s.failed);
            self.steps.append(&mut j.steps);
            self.entries.append(&mut j.entries);
        } else {
            let mut from = j.entries.drain(..);
            for s in j.steps.drain(..) {
                let n = s.fields.pending_range().map_or(0, |r| r.len());
                let start = self.entries.len();
                self.entries.extend(from.by_ref().take(n));
                self.push_step(s, start, n, limits);
            }
        }
        self.ends.append(&mut j.ends);
    }

    /// Orders operations by id and steps by position, then applies end
    /// times, failed steps and pending field updates to the operations.
    fn settle(&mut self) {
        if !self.ops.is_sorted_by_key(|o| o.id) {
            self.ops.sort_unstable_by_key(|o| o.id);
        }
        if !self.steps.is_sorted_by_key(|s| s.seq) {
            self.steps.sort_by_key(|s| s.seq);
        }
        let ops = &mut self.ops;
        for (op, end) in self.ends.drain(..) {
            if let Some(o) = find_op(ops, op) {
                o.end = Some(end);
            }
        }
        for s in &self.steps {
            if s.failed
                && let Some(o) = s.operation.and_then(|op| find_op(ops, op))
            {
                o.failed = true;
            }
        }
        for p in self.patches.drain(..) {
            if let Some(o) = find_op(ops, p.op) {
                p.apply(o);
            }
        }
        self.failed |= ops.iter().any(|o| o.failed);
    }
}

/// Operation `id` of `ops` sorted by id (usually at index `id`).
fn find_op(ops: &mut [Operation], id: u32) -> Option<&mut Operation> {
    let i = match ops.get(id as usize) {
        Some(o) if o.id == id => id as usize,
        _ => ops.binary_search_by_key(&id, |o| o.id).ok()?,
    };
    ops.get_mut(i)
}

// === impl Patch ===

impl Patch {
    fn apply(self, o: &mut Operation) {
        o.failed |= self.failed;
        if let Some(n) = self.name {
            o.name = n;
        }
        upsert(&mut o.fields, self.fields);
    }

    fn merge(&mut self, later: Self) {
        self.failed |= later.failed;
        if later.name.is_some() {
            self.name = later.name;
        }
        upsert(&mut self.fields, later.fields);
    }
}

/// Sets each of `new` in `fields`: replaces a field of the same name, or
/// appends it.
fn upsert(fields: &mut Fields, new: Fields) {
    for (k, v) in new.iter().cloned() {
        match fields.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => fields.push((k, v)),
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

// === the per-thread state ===

/// No slot: the span has no known record on this thread.
pub(crate) const NO_SLOT: u32 = u32::MAX;
/// No operation: the operation cap dropped the span.
pub(crate) const NO_OP: u32 = u32::MAX;

/// What the layer keeps per thread: the entered spans, the traces they
/// belong to, the span created last, and the journal.
///
/// Entered spans refer to their trace by a slot of [`Local::traces`] that
/// counts its users on this thread, so entering, exiting and recording in a
/// span touch no shared reference count.
pub(crate) struct Local {
    /// The spans entered on this thread, innermost last, per subscriber
    /// (keyed by the address of its layer's span map). It follows the
    /// registry's own stack of entered spans (the same pushes and pops), so
    /// the current span, and while it is entered its record, are known
    /// without a lookup.
    pub(crate) stack: Vec<Frame>,
    /// The traces of this thread's frames, the span created last and the
    /// journal, with how many of those use each.
    traces: Vec<Option<LocalTrace>>,
    /// The recorded span this thread created last, until it is entered here
    /// (usually at once) or another span is created.
    created: Option<Frame>,
    journal: Journal,
}

/// A trace this thread holds, with its users here. A slot whose users are
/// gone keeps its trace until the slot is taken by another trace, so a span
/// entered again (an instrumented future polled again) finds its trace
/// without touching a shared reference count.
struct LocalTrace {
    serial: u64,
    trace: Arc<TraceShared>,
    users: u32,
}

/// A span entered on this thread (or created last), in [`Local`].
#[derive(Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) key: usize,
    pub(crate) id: NonZeroU64,
    /// Entered again while already entered (so not the current span, as in
    /// the registry).
    pub(crate) again: bool,
    /// Its trace's slot while entered, when known (recorded spans), or
    /// [`NO_SLOT`]. The span is open while entered, so its id is not reused.
    pub(crate) slot: u32,
    /// Its operation, or [`NO_OP`].
    pub(crate) op: u32,
}

impl Frame {
    pub(crate) fn op(&self) -> Option<u32> {
        (self.op != NO_OP).then_some(self.op)
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = const {
        RefCell::new(Local {
            stack: Vec::new(),
            traces: Vec::new(),
            created: None,
            journal: Journal { slot: NO_SLOT, batch: Batch::new() },
        })
    };
}

/// Runs `f` on this thread's [`Local`]; `None` while it is in use further
/// up the stack (a field's `Debug` that logs) or gone (thread teardown).
#[inline]
pub(crate) fn with_local<T>(f: impl FnOnce(&mut Local) -> T) -> Option<T> {
    LOCAL
        .try_with(|l| l.try_borrow_mut().ok().map(|mut l| f(&mut l)))
        .ok()
        .flatten()
}

impl Local {
    /// The trace in `slot`.
    #[inline]
    pub(crate) fn trace(&self, slot: u32) -> Option<&Arc<TraceShared>> {
        self.traces
            .get(slot as usize)
            .and_then(Option::as_ref)
            .map(|t| &t.trace)
    }

    /// The slot of `trace`, with one more user.
    pub(crate) fn hold(&mut self, trace: &Arc<TraceShared>) -> u32 {
        if let Some(slot) = self.hold_serial(trace.serial) {
            return slot;
        }
        let t = Some(LocalTrace {
            serial: trace.serial,
            trace: Arc::clone(trace),
            users: 1,
        });
        // A free slot, or one whose trace has no users here.
        let i = match self
            .traces
            .iter()
            .position(|t| t.as_ref().is_none_or(|t| t.users == 0))
        {
            Some(i) => {
                self.traces[i] = t;
                i
            }
            None => {
                self.traces.push(t);
                self.traces.len() - 1
            }
        };
        u32::try_from(i).unwrap_or(NO_SLOT)
    }

    /// The slot holding the trace with serial `serial`, with one more user.
    #[inline]
    fn hold_serial(&mut self, serial: u64) -> Option<u32> {
        let i = self.traces.iter().position(|t| {
            // A finished trace's serial may be given to a new trace.
            t.as_ref()
                .is_some_and(|t| t.serial == serial && !t.trace.finished.load(Ordering::Acquire))
        })?;
        if let Some(Some(t)) = self.traces.get_mut(i) {
            t.users += 1;
        }
        u32::try_from(i).ok()
    }

    /// One more user of `slot`.
    #[inline]
    fn retain(&mut self, slot: u32) {
        if let Some(Some(t)) = self.traces.get_mut(slot as usize) {
            t.users += 1;
        }
    }

    /// One user less of `slot` (the slot keeps its trace until another
    /// trace needs it).
    #[inline]
    fn release(&mut self, slot: u32) {
        if let Some(Some(t)) = self.traces.get_mut(slot as usize) {
            t.users = t.users.saturating_sub(1);
        }
    }

    /// Forgets the span created last (a new one is being created).
    #[inline]
    pub(crate) fn forget_created(&mut self) {
        if let Some(c) = self.created.take()
            && c.slot != NO_SLOT
        {
            self.release(c.slot);
        }
    }

    /// Remembers span `id` of subscriber `key`, just created in `slot` (one
    /// more user) as operation `op`, for its first entry.
    #[inline]
    pub(crate) fn created(&mut self, key: usize, id: NonZeroU64, slot: u32, op: Option<u32>) {
        self.forget_created();
        self.retain(slot);
        self.set_created(key, id, slot, op);
    }

    /// [`created`](Self::created) for a span of `trace`, which this thread
    /// may not hold yet.
    pub(crate) fn created_in(
        &mut self,
        key: usize,
        id: NonZeroU64,
        trace: &Arc<TraceShared>,
        op: Option<u32>,
    ) {
        self.forget_created();
        let slot = self.hold(trace);
        self.set_created(key, id, slot, op);
    }

    fn set_created(&mut self, key: usize, id: NonZeroU64, slot: u32, op: Option<u32>) {
        self.created = Some(Frame {
            key,
            id,
            again: false,
            slot,
            op: op.unwrap_or(NO_OP),
        });
    }

    /// The current span of subscriber `key`: the innermost entered span not
    /// entered again.
    #[inline]
    pub(crate) fn current(&self, key: usize) -> Option<Frame> {
        self.stack
            .iter()
            .rev()
            .find(|x| x.key == key && !x.again)
            .copied()
    }

    /// The trace slot and operation of the current span of subscriber
    /// `key`, when its record is known here.
    #[inline]
    pub(crate) fn current_record(&self, key: usize) -> Option<(u32, Option<u32>)> {
        let f = self.stack.iter().rev().find(|x| x.key == key && !x.again)?;
        (f.slot != NO_SLOT).then(|| (f.slot, f.op()))
    }

    /// Pushes span `id` of subscriber `key` on the entered stack; returns
    /// whether its record is not known here (neither created last here nor
    /// entered already).
    #[inline]
    pub(crate) fn enter(&mut self, key: usize, id: NonZeroU64) -> bool {
        let again = self.stack.iter().any(|x| x.key == key && x.id == id);
        let mut frame = match self.created.take() {
            Some(c) if c.key == key && c.id == id => c,
            other => {
                self.created = other;
                Frame {
                    key,
                    id,
                    again,
                    slot: NO_SLOT,
                    op: NO_OP,
                }
            }
        };
        if again && frame.slot != NO_SLOT {
            self.release(frame.slot);
            frame.slot = NO_SLOT;
        }
        frame.again = again;
        let missing = !again && frame.slot == NO_SLOT;
        self.stack.push(frame);
        missing
    }

    /// Sets the record of the innermost entry of span `id` (found after it
    /// was entered): its trace from this thread's slots by `serial`, or else
    /// `trace` when given. `false` when the trace is needed and not given.
    pub(crate) fn set_record(
        &mut self,
        key: usize,
        id: NonZeroU64,
        serial: u64,
        op: Option<u32>,
        trace: Option<&Arc<TraceShared>>,
    ) -> bool {
        let Some(i) = self
            .stack
            .iter()
            .rposition(|x| x.key == key && x.id == id && !x.again)
        else {
            return true;
        };
        if self.stack[i].slot != NO_SLOT {
            return true;
        }
        let slot = match (self.hold_serial(serial), trace) {
            (Some(slot), _) => slot,
            (None, Some(trace)) => self.hold(trace),
            (None, None) => return false,
        };
        if let Some(f) = self.stack.get_mut(i) {
            f.slot = slot;
            f.op = op.unwrap_or(NO_OP);
        }
        true
    }

    /// Whether one of this thread's entered spans is in `slot`.
    #[inline]
    fn inside_slot(&self, slot: u32) -> bool {
        slot != NO_SLOT && self.stack.iter().any(|e| e.slot == slot)
    }

    /// Removes the innermost entry of span `id` of subscriber `key`, and
    /// flushes the journal if this thread thereby left the journal's trace.
    #[inline]
    pub(crate) fn exit(&mut self, key: usize, id: NonZeroU64) {
        let Some(i) = self.stack.iter().rposition(|x| x.key == key && x.id == id) else {
            return;
        };
        let e = self.stack.remove(i);
        if e.slot != NO_SLOT {
            self.release(e.slot);
        }
        // Left the journal's trace: its items go to the trace now.
        let j = self.journal.slot;
        if j != NO_SLOT && !self.inside_slot(j) {
            self.flush();
        }
    }

    /// Moves the journal's items into their trace.
    pub(crate) fn flush(&mut self) {
        let slot = std::mem::replace(&mut self.journal.slot, NO_SLOT);
        if slot == NO_SLOT {
            return;
        }
        let Self {
            traces, journal, ..
        } = self;
        if journal.batch.len() > 0
            && let Some(Some(t)) = traces.get(slot as usize)
        {
            t.trace
                .buf
                .lock()
                .absorb(&mut journal.batch, t.trace.limits());
        }
        self.journal.batch.clear();
        self.release(slot);
    }

    /// Flushes the journal if it holds items of `trace`.
    pub(crate) fn flush_for(&mut self, trace: &Arc<TraceShared>) {
        let j = self.journal.slot;
        if j != NO_SLOT && self.trace(j).is_some_and(|t| Arc::ptr_eq(t, trace)) {
            self.flush();
        }
    }

    /// Makes the journal that of `slot`, flushing another trace's items.
    #[inline]
    fn open(&mut self, slot: u32) {
        if self.journal.slot != slot {
            self.flush();
            self.retain(slot);
            self.journal.slot = slot;
        }
    }

    /// Flushes once the journal holds a batch.
    #[inline]
    fn added(&mut self) {
        let b = &self.journal.batch;
        if b.len() >= JOURNAL_BATCH || b.entries.len() >= 4 * JOURNAL_BATCH {
            self.flush();
        }
    }

    /// Journals operation `op` of the trace in `slot` (this thread is inside
    /// that trace).
    #[inline]
    pub(crate) fn journal_op(&mut self, slot: u32, op: Operation) {
        self.open(slot);
        self.journal.batch.ops.push(op);
        self.added();
    }

    /// Journals a fieldless operation of `meta`'s callsite (built in place).
    #[inline]
    pub(crate) fn journal_plain_op(
        &mut self,
        slot: u32,
        next: OpSlot,
        parent: Option<u32>,
        meta: &'static tracing::Metadata<'static>,
    ) {
        self.open(slot);
        // Pushed as a constant and filled in place (see `record_event`).
        let ops = &mut self.journal.batch.ops;
        ops.push(BLANK_OP);
        if let Some(o) = ops.last_mut() {
            o.id = next.id;
            o.parent = parent;
            o.name = Text::from_static(meta.name());
            o.target = Cow::Borrowed(meta.target());
            o.start = next.start;
            o.start_seq = next.seq;
        }
        self.added();
    }

    /// Records `event` as a step of this thread's current span of
    /// subscriber `key` into the journal, its fields captured straight into
    /// the journal's field buffer; `false` when that span's record is not
    /// known here (the general path decides). A field's `Debug` that logs
    /// meanwhile records through the general path (this state is borrowed).
    #[inline]
    pub(crate) fn record_event(&mut self, key: usize, event: &Event<'_>) -> bool {
        let Some(cur) = self.current(key) else {
            return false;
        };
        let Some(trace) = self.trace(cur.slot) else {
            return false;
        };
        let Some(seq) = trace.next_seq() else {
            trace.buf.lock().budget.dropped.steps += 1;
            return true;
        };
        self.open(cur.slot);
        let Self {
            traces, journal, ..
        } = self;
        let Some(Some(local)) = traces.get(cur.slot as usize) else {
            return false;
        };
        let trace = &local.trace;
        let meta = event.metadata();
        let b = &mut journal.batch;
        let start = b.entries.len();
        let mut c = Capture::with_fields(
            &trace.settings,
            Scratch::from_vec(std::mem::take(&mut b.entries)),
        );
        c.at(meta);
        event.record(&mut c);
        let at = trace.elapsed();
        let name = c.step_name(meta);
        b.entries = c.fields.into_vec();
        let level = *meta.level();
        // Pushed as a constant and filled in place: a step built on the
        // stack and moved is read back wider than it was written, which
        // stalls the store buffer.
        b.steps.push(BLANK_STEP);
        if let Some(s) = b.steps.last_mut() {
            s.seq = seq;
            s.operation = cur.op();
            s.name = name;
            s.level = level;
            s.at = at;
            s.fields = Fields::pending(start, b.entries.len().saturating_sub(start));
            s.failed = level == Level::ERROR;
        }
        self.added();
        true
    }

    /// Journals the end of operation `op` of the trace with serial
    /// `trace` if this thread is inside that trace; `false` otherwise.
    #[inline]
    pub(crate) fn journal_end_in(&mut self, trace: u64, op: u32) -> bool {
        let Some((slot, end)) = self.stack.iter().rev().find_map(|e| {
            let t = self.trace(e.slot)?;
            (t.serial == trace).then(|| (e.slot, t.elapsed()))
        }) else {
            return false;
        };
        self.open(slot);
        // Usually the operation is among the last the journal holds.
        let ops = &mut self.journal.batch.ops;
        match ops.iter_mut().rev().take(8).find(|o| o.id == op) {
            Some(o) => o.end = Some(end),
            None => {
                self.journal.batch.ends.push((op, end));
                self.added();
            }
        }
        true
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // Thread teardown: what the journal holds still reaches its trace.
        self.flush();
    }
}

/// Operations, steps and end times a thread recorded for one trace, not yet
/// moved into it.
struct Journal {
    /// The slot of the trace (one user), or [`NO_SLOT`].
    slot: u32,
    batch: Batch,
}

/// The items of a [`Journal`].
struct Batch {
    ops: Vec<Operation>,
    steps: Vec<Step>,
    /// The fields of `steps`, in order.
    entries: Vec<Entry>,
    ends: Vec<(u32, Duration)>,
}

impl Batch {
    const fn new() -> Self {
        Self {
            ops: Vec::new(),
            steps: Vec::new(),
            entries: Vec::new(),
            ends: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.ops.len() + self.steps.len() + self.ends.len()
    }

    fn clear(&mut self) {
        self.ops.clear();
        self.steps.clear();
        self.entries.clear();
        self.ends.clear();
    }
}

/// Flushes this thread's journal if it holds items of `trace` (before the
/// trace is read).
pub(crate) fn flush_local(trace: &Arc<TraceShared>) {
    let _ = with_local(|l| l.flush_for(trace));
}
