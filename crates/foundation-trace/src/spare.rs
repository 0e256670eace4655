//! Buffers of evicted traces, reused by the next traces this thread records.
//!
//! A finished trace that leaves the store gives its step and operation
//! vectors back here (emptied) instead of freeing them, a finishing trace
//! gives back the buffer its steps' fields were recorded in, and the next
//! trace this thread starts takes them before asking the allocator. One
//! vector of each kind is kept per thread.

use std::cell::RefCell;

use crate::trace::{Operation, Step, Trace};
use crate::value::Entry;

struct Spare {
    ops: Option<Vec<Operation>>,
    steps: Option<Vec<Step>>,
    entries: Option<Vec<Entry>>,
}

thread_local! {
    static SPARE: RefCell<Spare> =
        const { RefCell::new(Spare { ops: None, steps: None, entries: None }) };
}

/// Runs `f` on this thread's spare buffers, unless they are in use (a
/// destructor recording from inside `recycle`) or gone (thread teardown).
fn with_spare<T>(f: impl FnOnce(&mut Spare) -> Option<T>) -> Option<T> {
    SPARE
        .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| f(&mut s)))
        .ok()
        .flatten()
}

/// Empty operation, step and field vectors with room for `ops`, `steps`
/// and `entries`.
pub(crate) fn trace_bufs(
    ops: usize,
    steps: usize,
    entries: usize,
) -> (Vec<Operation>, Vec<Step>, Vec<Entry>) {
    let (o, s, e) =
        with_spare(|s| Some((s.ops.take(), s.steps.take(), s.entries.take()))).unwrap_or_default();
    let mut o = o.unwrap_or_default();
    let mut s = s.unwrap_or_default();
    let mut e = e.unwrap_or_default();
    o.reserve(ops);
    s.reserve(steps);
    e.reserve(entries);
    (o, s, e)
}

/// Keeps a trace's field buffer (emptied) for this thread's next trace.
pub(crate) fn keep_entries(mut entries: Vec<Entry>) {
    entries.clear();
    let _ = with_spare(|spare| {
        // The larger buffer stays.
        if spare
            .entries
            .as_ref()
            .is_none_or(|e| e.capacity() < entries.capacity())
        {
            spare.entries = Some(entries);
        }
        Some(())
    });
}

/// Takes a trace apart, keeping its buffers for this thread's next traces.
pub(crate) fn recycle(trace: Trace) {
    let Trace {
        mut operations,
        mut steps,
        ..
    } = trace;
    // The steps share one field buffer: once they are gone it is ours.
    let entries = steps.iter().find_map(|s| s.fields.shared_buf().cloned());
    operations.clear();
    steps.clear();
    if let Some(entries) = entries.and_then(|e| std::sync::Arc::try_unwrap(e).ok()) {
        keep_entries(entries);
    }
    // Whatever is not kept is freed when `with_spare` returns.
    let _ = with_spare(|spare| {
        spare.steps.get_or_insert(steps);
        spare.ops.get_or_insert(operations);
        Some(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use std::time::{Duration, SystemTime};

    use crate::trace::{Dropped, TraceId, TraceStatus};
    use crate::value::{Text, Value};

    fn trace(steps: usize) -> Trace {
        let step = |i: u32| Step {
            seq: i,
            operation: Some(0),
            name: Text::from_static("s"),
            level: tracing::Level::INFO,
            at: Duration::ZERO,
            fields: [
                (Cow::Borrowed("model"), Value::Str("gpt-4o-mini".into())),
                (Cow::Borrowed("n"), Value::U64(1)),
            ]
            .into_iter()
            .collect(),
            failed: false,
        };
        Trace {
            trace_id: TraceId(1),
            correlation_id: "c".into(),
            started_at: SystemTime::now(),
            duration: None,
            status: TraceStatus::Ok,
            recorded: true,
            operations: Vec::new(),
            steps: (0..u32::try_from(steps).unwrap()).map(step).collect(),
            failing_step: None,
            active: Vec::new(),
            dropped: Dropped::default(),
        }
    }

    #[test]
    fn recycled_buffers_come_back_empty_and_are_kept_once() {
        recycle(trace(100));
        keep_entries(Vec::with_capacity(50));
        let (o, s, e) = trace_bufs(4, 8, 16);
        assert!(o.is_empty() && s.is_empty() && s.capacity() >= 100);
        assert!(e.is_empty() && e.capacity() >= 50);
        // Nothing is kept twice: the step vector is taken.
        let (_, s2, e2) = trace_bufs(0, 0, 0);
        assert_eq!((s2.capacity(), e2.capacity()), (0, 0));
    }
}
