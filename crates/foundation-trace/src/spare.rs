//! Buffers of evicted traces, reused by the next traces this thread records.
//!
//! A finished trace that leaves the store is taken apart here instead of
//! being freed piece by piece: its step and operation vectors, the field
//! vector of each step and its short strings go to a per-thread spare list,
//! and recording takes from that list before asking the allocator. Every
//! list is bounded, so a thread never holds more than a few hundred
//! kilobytes this way.

use std::cell::RefCell;

use crate::trace::{Operation, Step, Trace};
use crate::value::{Fields, Value};

/// Most field vectors and strings kept per thread.
const MAX_KEPT: usize = 256;
/// Field vectors larger than this are freed, not kept.
const MAX_FIELDS_CAPACITY: usize = 8;
/// Strings larger than this (bytes) are freed, not kept.
const MAX_STRING_CAPACITY: usize = 64;

struct Spare {
    fields: Vec<Fields>,
    strings: Vec<String>,
    ops: Option<Vec<Operation>>,
    steps: Option<Vec<Step>>,
}

thread_local! {
    static SPARE: RefCell<Spare> = const {
        RefCell::new(Spare { fields: Vec::new(), strings: Vec::new(), ops: None, steps: None })
    };
}

/// Runs `f` on this thread's spare list, unless it is in use (a destructor
/// recording from inside `recycle`) or gone (thread teardown).
fn with_spare<T>(f: impl FnOnce(&mut Spare) -> Option<T>) -> Option<T> {
    SPARE
        .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| f(&mut s)))
        .ok()
        .flatten()
}

/// An empty field vector for about `n` fields.
pub(crate) fn fields(n: usize) -> Fields {
    if n == 0 {
        return Vec::new();
    }
    with_spare(|s| s.fields.pop()).unwrap_or_else(|| Vec::with_capacity(n))
}

/// An owned copy of `text`.
pub(crate) fn string(text: &str) -> String {
    if text.is_empty() || text.len() > MAX_STRING_CAPACITY {
        return text.to_owned();
    }
    match with_spare(|s| s.strings.pop()) {
        Some(mut s) => {
            s.push_str(text);
            s
        }
        None => text.to_owned(),
    }
}

/// Empty operation and step vectors with room for `ops` and `steps`.
pub(crate) fn trace_bufs(ops: usize, steps: usize) -> (Vec<Operation>, Vec<Step>) {
    let (o, s) = with_spare(|s| Some((s.ops.take(), s.steps.take()))).unwrap_or_default();
    let mut o = o.unwrap_or_default();
    let mut s = s.unwrap_or_default();
    o.reserve(ops);
    s.reserve(steps);
    (o, s)
}

/// Takes a trace apart, keeping its buffers for this thread's next traces.
pub(crate) fn recycle(trace: Trace) {
    let Trace {
        mut operations,
        mut steps,
        ..
    } = trace;
    // Whatever is not kept is freed when `with_spare` returns.
    let _ = with_spare(|spare| {
        for f in steps.drain(..).map(|s| s.fields) {
            spare.keep(f);
        }
        for f in operations.drain(..).map(|o| o.fields) {
            spare.keep(f);
        }
        spare.steps.get_or_insert(steps);
        spare.ops.get_or_insert(operations);
        Some(())
    });
}

// === impl Spare ===

impl Spare {
    fn keep(&mut self, mut fields: Fields) {
        for (_, v) in fields.drain(..) {
            if let Value::Str(mut s) = v
                && self.strings.len() < MAX_KEPT
                && (1..=MAX_STRING_CAPACITY).contains(&s.capacity())
            {
                s.clear();
                self.strings.push(s);
            }
        }
        if self.fields.len() < MAX_KEPT && (1..=MAX_FIELDS_CAPACITY).contains(&fields.capacity()) {
            self.fields.push(fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use std::time::{Duration, SystemTime};

    use crate::trace::{Dropped, TraceId, TraceStatus};

    fn trace(steps: usize) -> Trace {
        let step = |i: u32| Step {
            seq: i,
            operation: Some(0),
            name: Cow::Borrowed("s"),
            level: tracing::Level::INFO,
            at: Duration::ZERO,
            fields: vec![
                (Cow::Borrowed("model"), Value::Str("gpt-4o-mini".into())),
                (Cow::Borrowed("n"), Value::U64(1)),
            ],
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
    fn recycled_buffers_come_back_empty_and_the_lists_stay_bounded() {
        recycle(trace(2 * MAX_KEPT));
        let n = with_spare(|s| Some((s.fields.len(), s.strings.len()))).unwrap();
        assert_eq!(n, (MAX_KEPT, MAX_KEPT));
        let f = fields(3);
        assert!(f.is_empty() && f.capacity() >= 2);
        assert_eq!(string("abc"), "abc");
        let (o, s) = trace_bufs(4, 8);
        assert!(o.is_empty() && s.is_empty() && s.capacity() >= 2 * MAX_KEPT);
        // Nothing is kept twice: the step vector is taken.
        let (_, s2) = trace_bufs(0, 0);
        assert_eq!(s2.capacity(), 0);
    }
}
