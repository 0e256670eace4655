//! Causal traces: the tree (or forest) of one correlation id, and the chain
//! from one event back to its root.
//!
//! Trees are built from causation links, children in time order (then
//! position). Events whose cause is not among the correlated events are
//! *orphans* and become roots; causation cycles (possible because ids are
//! chosen by producers) are reported and broken at their earliest event, so
//! building never loops. The tree is a flat arena, so deep chains cannot
//! overflow the stack.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::envelope::{EventId, RecordedEvent};

/// The causal forest of one correlation id.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceTree {
    events: Vec<RecordedEvent>,
    children: Vec<Vec<usize>>,
    roots: Vec<usize>,
    orphans: Vec<EventId>,
    cycles: Vec<Vec<EventId>>,
}

// === impl TraceTree ===

impl TraceTree {
    /// Builds the forest from events (any order; duplicates by id are ignored).
    #[must_use]
    pub fn build(mut events: Vec<RecordedEvent>) -> Self {
        events.sort_by_key(|e| (e.time, e.position));
        let mut seen = HashSet::new();
        events.retain(|e| seen.insert(e.id));
        let index: HashMap<EventId, usize> =
            events.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
        let parent: Vec<Option<usize>> = events
            .iter()
            .map(|e| e.causation_id.and_then(|c| index.get(&c).copied()))
            .collect();
        let mut orphans = Vec::new();
        let mut roots = Vec::new();
        let mut children = vec![Vec::new(); events.len()];
        for (i, e) in events.iter().enumerate() {
            match parent[i] {
                Some(p) => children[p].push(i),
                None => {
                    if e.causation_id.is_some() {
                        orphans.push(e.id);
                    }
                    roots.push(i);
                }
            }
        }
        // Nodes not reachable from a root sit on (or hang below) a cycle.
        let mut reached = vec![false; events.len()];
        let mark = |start: usize, reached: &mut Vec<bool>, children: &Vec<Vec<usize>>| {
            let mut stack = vec![start];
            while let Some(n) = stack.pop() {
                if !reached[n] {
                    reached[n] = true;
                    stack.extend(children[n].iter().copied());
                }
            }
        };
        for &r in &roots {
            mark(r, &mut reached, &children);
        }
        let mut cycles = Vec::new();
        for start in 0..events.len() {
            if reached[start] {
                continue;
            }
            // Walk causes until a node repeats: that node is on the cycle.
            let mut on_path = HashSet::new();
            let mut n = start;
            while on_path.insert(n) {
                match parent[n] {
                    Some(p) => n = p,
                    None => break,
                }
            }
            let mut cycle = vec![n];
            let mut m = parent[n];
            while let Some(x) = m {
                if x == n {
                    break;
                }
                cycle.push(x);
                m = parent[x];
            }
            // Break the cycle at its earliest event: it becomes a root.
            let Some(&first) = cycle.iter().min() else {
                continue;
            };
            if let Some(p) = parent[first] {
                children[p].retain(|&c| c != first);
            }
            roots.push(first);
            cycle.sort_unstable();
            cycles.push(cycle.iter().map(|&i| events[i].id).collect());
            mark(first, &mut reached, &children);
        }
        roots.sort_unstable();
        Self {
            events,
            children,
            roots,
            orphans,
            cycles,
        }
    }

    /// Number of events.
    #[must_use]
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are no events.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Root node indices (true roots, orphans and broken cycles), in time order.
    #[must_use]
    pub fn roots(&self) -> &[usize] {
        &self.roots
    }

    /// The event at node `i`.
    #[must_use]
    pub fn event(&self, i: usize) -> Option<&RecordedEvent> {
        self.events.get(i)
    }

    /// Children of node `i`, in time order.
    #[must_use]
    pub fn children(&self, i: usize) -> &[usize] {
        self.children.get(i).map_or(&[], Vec::as_slice)
    }

    /// Events whose cause is not among the correlated events.
    #[must_use]
    pub fn orphans(&self) -> &[EventId] {
        &self.orphans
    }

    /// Causation cycles found (each broken at its earliest event).
    #[must_use]
    pub fn cycles(&self) -> &[Vec<EventId>] {
        &self.cycles
    }

    /// Depth-first pre-order walk: `(depth, event)`.
    pub fn walk(&self) -> impl Iterator<Item = (usize, &RecordedEvent)> + '_ {
        let mut stack: Vec<(usize, usize)> = self.roots.iter().rev().map(|&r| (0, r)).collect();
        std::iter::from_fn(move || {
            let (d, n) = stack.pop()?;
            stack.extend(self.children[n].iter().rev().map(|&c| (d + 1, c)));
            Some((d, &self.events[n]))
        })
    }

    /// An indented text rendering, one event per line (`type subject [position]`),
    /// with orphans and cycles flagged.
    #[must_use]
    pub fn render(&self) -> String {
        let orphans: HashSet<_> = self.orphans.iter().collect();
        let cyclic: HashSet<_> = self.cycles.iter().flatten().collect();
        let mut out = String::new();
        for (depth, e) in self.walk() {
            let _ = write!(out, "{}{}", "  ".repeat(depth), e.event_type);
            if let Some(s) = &e.subject {
                let _ = write!(out, " {s}");
            }
            let _ = write!(out, " [#{}]", e.position);
            if orphans.contains(&e.id) {
                out.push_str(" (orphan: cause missing)");
            }
            if cyclic.contains(&e.id) {
                out.push_str(" (in causation cycle)");
            }
            out.push('\n');
        }
        out
    }
}

/// How a causal chain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainEnd {
    /// At an event without a cause.
    Root,
    /// At an event whose cause is not stored (pruned, or never appended).
    MissingCause(EventId),
    /// A cause repeated: the chain loops back to this event.
    Cycle(EventId),
}

/// The chain from an event back to its root: `events[0]` is the starting
/// event, each next one its cause.
#[derive(Debug, Clone, PartialEq)]
pub struct CausalChain {
    /// The events, effect first.
    pub events: Vec<RecordedEvent>,
    /// Why the walk stopped.
    pub end: ChainEnd,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{NewEvent, Position, StreamId, Timestamp};
    use serde_json::json;

    fn ev(n: u64, id: EventId, cause: Option<EventId>) -> RecordedEvent {
        let mut e = NewEvent::new(format!("e{n}"), json!({}))
            .with_id(id)
            .with_time(Timestamp::from_micros(n as i64));
        e.causation_id = cause;
        RecordedEvent::from_new(e, StreamId::new("s").unwrap(), n, Position(n))
    }

    #[test]
    fn builds_tree_with_orphans_and_cycles() {
        let ids: Vec<EventId> = (0..8).map(|_| EventId::new()).collect();
        let missing = EventId::new();
        let events = vec![
            ev(5, ids[5], Some(missing)), // orphan
            ev(1, ids[1], Some(ids[0])),
            ev(0, ids[0], None), // root
            ev(2, ids[2], Some(ids[0])),
            ev(3, ids[3], Some(ids[1])),
            ev(6, ids[6], Some(ids[7])), // cycle 6 <-> 7
            ev(7, ids[7], Some(ids[6])),
        ];
        let t = TraceTree::build(events);
        assert_eq!(t.len(), 7);
        assert_eq!(t.orphans(), &[ids[5]]);
        assert_eq!(t.cycles().len(), 1);
        let order: Vec<String> = t
            .walk()
            .map(|(d, e)| format!("{d}{}", e.event_type))
            .collect();
        assert_eq!(order, ["0e0", "1e1", "2e3", "1e2", "0e5", "0e6", "1e7"]);
        assert!(t.render().contains("(orphan: cause missing)"));
    }

    proptest::proptest! {
        /// Any causation graph (missing causes, self-causes, cycles, shared
        /// parents): every event is walked exactly once, children follow
        /// their parent in time order, orphans are exactly the events whose
        /// cause is absent, and every cycle is reported.
        #[test]
        fn every_event_appears_once_whatever_the_links(
            causes in proptest::collection::vec(proptest::option::of(0usize..40), 1..40),
            times in proptest::collection::vec(0i64..20, 40),
        ) {
            let n = causes.len();
            let ids: Vec<EventId> = (0..n).map(|_| EventId::new()).collect();
            let missing = EventId::new();
            let events: Vec<RecordedEvent> = (0..n).map(|i| {
                let cause = causes[i].map(|c| if c < n { ids[c] } else { missing });
                let mut e = ev(i as u64, ids[i], cause);
                e.time = Timestamp::from_micros(times[i]);
                e
            }).collect();
            let t = TraceTree::build(events.clone());
            let walked: Vec<EventId> = t.walk().map(|(_, e)| e.id).collect();
            let unique: HashSet<EventId> = walked.iter().copied().collect();
            proptest::prop_assert_eq!(walked.len(), n);
            proptest::prop_assert_eq!(unique.len(), n);
            for i in 0..t.len() {
                let kids = t.children(i);
                let parent = t.event(i).map(|e| e.id);
                for w in kids.windows(2) {
                    let (a, b) = (t.event(w[0]).map(|e| (e.time, e.position)), t.event(w[1]).map(|e| (e.time, e.position)));
                    proptest::prop_assert!(a <= b);
                }
                for &k in kids {
                    proptest::prop_assert_eq!(t.event(k).and_then(|e| e.causation_id), parent);
                }
            }
            let expected_orphans: HashSet<EventId> = events.iter().filter(|e| e.causation_id == Some(missing)).map(|e| e.id).collect();
            proptest::prop_assert_eq!(t.orphans().iter().copied().collect::<HashSet<_>>(), expected_orphans);
            let has_cycle = (0..n).any(|start| {
                let mut seen = HashSet::new();
                let mut cur = Some(start);
                while let Some(c) = cur {
                    if !seen.insert(c) { return true; }
                    cur = causes[c].filter(|&p| p < n);
                }
                false
            });
            proptest::prop_assert_eq!(!t.cycles().is_empty(), has_cycle);
        }
    }

    #[test]
    fn deep_chain_does_not_overflow() {
        let ids: Vec<EventId> = (0..50_000).map(|_| EventId::new()).collect();
        let events = (0..50_000)
            .map(|i| ev(i as u64, ids[i], i.checked_sub(1).map(|p| ids[p])))
            .collect();
        let t = TraceTree::build(events);
        assert_eq!(t.walk().last().map(|(d, _)| d), Some(49_999));
    }
}
