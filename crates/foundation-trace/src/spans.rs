//! The layer's records of recorded spans, by span id.
//!
//! A record is added when a recorded span is created and removed when it
//! closes (the subscriber reports every close to the layer), so an id is
//! never looked up after it was released for reuse. It is read where a
//! span's record is not known on the thread at hand: a span entered or
//! closed on another thread than the one that created it, an explicit
//! parent, an error's snapshot.
//!
//! A span's record is one word: its trace's serial, its operation and
//! whether it is the root. It lives in an open-addressed table of atomic
//! slots, so adding and removing it takes one compare-and-swap and a few
//! stores rather than a lock and a hash-map operation. Spans whose probe
//! sequence is full, and ids the table cannot hold, go to a locked map; the
//! table never blocks and never grows. The open traces themselves are in a
//! locked map by serial, read where a thread does not hold the trace yet.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tracing::span::Id;

use crate::recording::TraceShared;

/// Slots of the table (a power of two): the live child spans it holds
/// before the locked map takes the rest.
const SLOTS: usize = 4096;
/// Slots a key may be placed from its home slot.
const PROBES: usize = 16;
/// A slot never used (ends a probe sequence).
const EMPTY: u64 = 0;
/// A slot whose span closed (probe sequences go on past it).
const GONE: u64 = u64::MAX;

/// Bits of a packed record holding the operation (all ones: none).
const OP_BITS: u32 = 21;
const NO_OP: u64 = (1 << OP_BITS) - 1;
/// Bits holding the trace's serial.
const SERIAL_BITS: u32 = 41;
pub(crate) const SERIAL_MASK: u64 = (1 << SERIAL_BITS) - 1;
/// Set in every packed record (an unset value is no record).
const VALID: u64 = 1 << 63;
/// Set in the record of a trace's root span.
const ROOT: u64 = 1 << 62;

/// What the layer keeps for a recorded span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpanRecord {
    /// Its trace's serial.
    pub(crate) trace: u64,
    /// `None` when the operation cap dropped this span.
    pub(crate) op: Option<u32>,
    /// Whether it is its trace's root (which finishes the trace).
    pub(crate) is_root: bool,
}

struct Slot {
    key: AtomicU64,
    value: AtomicU64,
}

/// Hashes span ids (small, dense integers) by multiplication.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

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

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// The records of one subscriber's recorded spans.
pub(crate) struct SpanMap {
    table: Box<[Slot]>,
    /// Roots, and the spans the table could not take.
    locked: Mutex<IdMap<SpanRecord>>,
    /// Entries of `locked`: misses skip its lock while it is empty.
    locked_len: AtomicUsize,
    /// The open recorded traces by serial.
    traces: Mutex<IdMap<Arc<TraceShared>>>,
}

fn pack(r: SpanRecord) -> u64 {
    let op = r.op.map_or(NO_OP, |o| u64::from(o).min(NO_OP));
    let root = if r.is_root { ROOT } else { 0 };
    VALID | root | ((r.trace & SERIAL_MASK) << OP_BITS) | op
}

fn unpack(v: u64) -> Option<SpanRecord> {
    if v & VALID == 0 {
        return None;
    }
    let op = v & NO_OP;
    let op = if op == NO_OP {
        None
    } else {
        u32::try_from(op).ok()
    };
    Some(SpanRecord {
        trace: (v >> OP_BITS) & SERIAL_MASK,
        op,
        is_root: v & ROOT != 0,
    })
}

// === impl SpanMap ===

impl SpanMap {
    pub(crate) fn new() -> Self {
        Self {
            table: (0..SLOTS)
                .map(|_| Slot {
                    key: AtomicU64::new(EMPTY),
                    value: AtomicU64::new(0),
                })
                .collect(),
            locked: Mutex::default(),
            locked_len: AtomicUsize::new(0),
            traces: Mutex::default(),
        }
    }

    /// The slots `key` may be in, in probe order. The home slot comes from
    /// the id's low bits (the registry's slot address, and its thread's
    /// shard folded in) and not from its generation, so a span reusing a
    /// closed span's registry slot reuses its table slot too, whose cache
    /// line is warm.
    #[inline]
    fn probe(&self, key: u64) -> impl Iterator<Item = &Slot> {
        let home = usize::try_from((key ^ (key >> 32)) & (SLOTS as u64 - 1)).unwrap_or_default();
        (0..PROBES).filter_map(move |i| self.table.get((home + i) & (SLOTS - 1)))
    }

    /// A serial for a new trace, not used by an open trace. Serials are
    /// unique in the process (threads hold traces by serial, whatever
    /// layer they come from).
    pub(crate) fn new_serial(&self) -> u64 {
        static SERIALS: AtomicU64 = AtomicU64::new(0);
        let traces = self.traces.lock();
        loop {
            let s = SERIALS.fetch_add(1, Ordering::Relaxed) & SERIAL_MASK;
            if !traces.contains_key(&s) {
                return s;
            }
        }
    }

    /// Records root span `id` of `trace`.
    pub(crate) fn insert_root(&self, id: &Id, trace: &Arc<TraceShared>, op: Option<u32>) {
        self.traces.lock().insert(trace.serial, Arc::clone(trace));
        self.insert(
            id,
            SpanRecord {
                trace: trace.serial,
                op,
                is_root: true,
            },
        );
    }

    /// Records child span `id` of the trace with serial `trace`.
    pub(crate) fn insert_child(&self, id: &Id, trace: u64, op: Option<u32>) {
        self.insert(
            id,
            SpanRecord {
                trace,
                op,
                is_root: false,
            },
        );
    }

    fn insert(&self, id: &Id, record: SpanRecord) {
        let key = id.into_u64();
        if key != GONE {
            for slot in self.probe(key) {
                let k = slot.key.load(Ordering::Relaxed);
                if (k == EMPTY || k == GONE)
                    && slot
                        .key
                        .compare_exchange(k, key, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    slot.value.store(pack(record), Ordering::Release);
                    return;
                }
            }
        }
        let mut locked = self.locked.lock();
        if locked.insert(key, record).is_none() {
            self.locked_len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The slot holding `key`, if any.
    fn find(&self, key: u64) -> Option<&Slot> {
        if key == GONE {
            return None;
        }
        for slot in self.probe(key) {
            match slot.key.load(Ordering::Acquire) {
                k if k == key => return Some(slot),
                EMPTY => return None,
                _ => {}
            }
        }
        None
    }

    /// The record of span `id`.
    pub(crate) fn lookup(&self, id: &Id) -> Option<SpanRecord> {
        let key = id.into_u64();
        if let Some(slot) = self.find(key) {
            let v = slot.value.load(Ordering::Acquire);
            // The slot may have been released and taken by another span
            // meanwhile: the value counts only if the key is still ours.
            if slot.key.load(Ordering::Acquire) == key
                && let Some(r) = unpack(v)
            {
                return Some(r);
            }
        }
        if self.locked_len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.locked.lock().get(&key).copied()
    }

    /// The open trace with serial `serial`.
    pub(crate) fn trace(&self, serial: u64) -> Option<Arc<TraceShared>> {
        self.traces.lock().get(&serial).cloned()
    }

    /// Forgets the trace with serial `serial` (it finished).
    pub(crate) fn finished(&self, serial: u64) {
        self.traces.lock().remove(&serial);
    }

    /// The trace, operation and root flag of the recorded span `id`.
    pub(crate) fn get(&self, id: &Id) -> Option<(Arc<TraceShared>, Option<u32>, bool)> {
        let r = self.lookup(id)?;
        Some((self.trace(r.trace)?, r.op, r.is_root))
    }

    /// The operation of the recorded span `id`.
    pub(crate) fn op(&self, id: &Id) -> Option<u32> {
        self.lookup(id).and_then(|r| r.op)
    }

    /// Removes the record of span `id` (it closed).
    pub(crate) fn remove(&self, id: &Id) -> Option<SpanRecord> {
        let key = id.into_u64();
        if let Some(slot) = self.find(key) {
            // Only the span's own close removes it: no read-modify-write
            // is needed.
            let v = slot.value.load(Ordering::Acquire);
            slot.value.store(0, Ordering::Release);
            slot.key.store(GONE, Ordering::Release);
            if let Some(r) = unpack(v) {
                return Some(r);
            }
        }
        if self.locked_len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut locked = self.locked.lock();
        let r = locked.remove(&key);
        if r.is_some() {
            self.locked_len.fetch_sub(1, Ordering::Relaxed);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Packing keeps every serial (within the mask) and operation.
        #[test]
        fn pack_round_trips(
            serial in 0u64..(1 << 41),
            op in proptest::option::of(0u32..1_048_576),
            is_root in any::<bool>(),
        ) {
            let r = SpanRecord { trace: serial, op, is_root };
            prop_assert_eq!(unpack(pack(r)), Some(r));
        }

        // Any interleaving of inserts and removals of distinct ids leaves
        // the map answering like a hash map, including when probe
        // sequences fill up and records go to the locked map.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((1u64..20_000, any::<bool>()), 1..3000)) {
            let map = SpanMap::new();
            let mut model: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
            for (i, (id, insert)) in ops.into_iter().enumerate() {
                // Spread some ids over few home slots to fill probes.
                let id = if i % 3 == 0 { id * 4096 } else { id };
                let sid = Id::from_u64(id);
                if insert && !model.contains_key(&id) {
                    map.insert_child(&sid, id % 1000, Some(7));
                    model.insert(id, id % 1000);
                } else if !insert {
                    let got = map.remove(&sid).map(|r| r.trace);
                    prop_assert_eq!(got, model.remove(&id));
                }
            }
            for (id, serial) in &model {
                prop_assert_eq!(map.lookup(&Id::from_u64(*id)).map(|r| r.trace), Some(*serial));
            }
        }
    }
}
