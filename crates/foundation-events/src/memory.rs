//! The in-memory backend: for tests and single-process use without persistence.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::envelope::{
    AppendResult, EventId, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId,
};
use crate::error::Error;
use crate::query::{Direction, Expr, Query};
use crate::schema::SchemaRegistry;
use crate::store::{Backend, LinkDirection};

#[derive(Debug, Default)]
struct State {
    /// Events by position; a BTreeMap so pruning keeps positions.
    events: BTreeMap<u64, RecordedEvent>,
    by_id: HashMap<EventId, u64>,
    streams: HashMap<StreamId, u64>,
    head: u64,
    incoming: HashMap<EventId, Vec<(String, EventId)>>,
}

/// An event store in memory. Appends take a write lock, so positions are
/// assigned and made visible in one step: global order holds trivially.
/// Cloning shares the store.
///
/// ```
/// # tokio_test_block_on(async {
/// use foundation_events::{EventStore, ExpectedVersion, MemoryStore, NewEvent, StreamId};
/// use serde_json::json;
///
/// let store = MemoryStore::new();
/// let stream = StreamId::new("order-1")?;
/// store.append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new("order.placed", json!({}))]).await?;
/// assert_eq!(store.stream_version(&stream).await?, 1);
/// # Ok::<(), foundation_events::Error>(())
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    state: Arc<RwLock<State>>,
    head_tx: Arc<watch::Sender<Position>>,
    registry: Option<Arc<SchemaRegistry>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

// === impl MemoryStore ===

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            head_tx: Arc::new(watch::channel(Position::START).0),
            registry: None,
        }
    }

    /// This store (shared) with a schema registry.
    #[must_use]
    pub fn with_registry(mut self, registry: Arc<SchemaRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }
}

/// Decides an append against the current state, the same way in every
/// backend: `None` = go ahead and write; `Some(Ok(_))` = an idempotent retry
/// (nothing to write); `Some(Err(_))` = refused (partial duplicate, or the
/// stream is not at the expected version).
pub(crate) fn decide(
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[NewEvent],
    existing: &[RecordedEvent],
    actual: u64,
) -> Option<Result<AppendResult, Error>> {
    match idempotency(stream, events, existing, actual) {
        Ok(Some(done)) => Some(Ok(done)),
        Ok(None) if expected.matches(actual) => None,
        Ok(None) => Some(Err(Error::WrongExpectedVersion {
            stream: stream.clone(),
            expected,
            actual,
        })),
        Err(e) => Some(Err(e)),
    }
}

/// `Ok(Some(result))` when `events` were all stored before by the same
/// batch (an idempotent retry); an error when only some were.
fn idempotency(
    stream: &StreamId,
    events: &[NewEvent],
    existing: &[RecordedEvent],
    stream_version: u64,
) -> Result<Option<AppendResult>, Error> {
    if existing.is_empty() {
        return Ok(None);
    }
    let by_id: HashMap<EventId, &RecordedEvent> = existing.iter().map(|e| (e.id, e)).collect();
    let all_match = existing.len() == events.len()
        && events
            .iter()
            .all(|n| by_id.get(&n.id).is_some_and(|e| e.same_as(n, stream)))
        && events
            .windows(2)
            .all(|w| by_id[&w[0].id].stream_version + 1 == by_id[&w[1].id].stream_version);
    if !all_match {
        let first = events
            .iter()
            .find(|n| by_id.contains_key(&n.id))
            .map_or(existing[0].id, |n| n.id);
        return Err(Error::DuplicateEvent { id: first });
    }
    let first = by_id[&events[0].id];
    let last = by_id[&events[events.len() - 1].id];
    Ok(Some(AppendResult {
        stream_version: stream_version.max(last.stream_version),
        first_position: first.position,
        last_position: last.position,
        duplicate: true,
    }))
}

impl Backend for MemoryStore {
    async fn append_checked(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        let result = {
            let mut st = self.state.write();
            let actual = st.streams.get(stream).copied().unwrap_or(0);
            let existing: Vec<RecordedEvent> = events
                .iter()
                .filter_map(|e| st.by_id.get(&e.id).and_then(|p| st.events.get(p)).cloned())
                .collect();
            if let Some(outcome) = decide(stream, expected, &events, &existing, actual) {
                return outcome;
            }
            let first = st.head + 1;
            let mut version = actual;
            for e in events {
                version += 1;
                st.head += 1;
                let pos = st.head;
                for l in &e.links {
                    st.incoming
                        .entry(l.target)
                        .or_default()
                        .push((l.relation.clone(), e.id));
                }
                st.by_id.insert(e.id, pos);
                st.events.insert(
                    pos,
                    RecordedEvent::from_new(e, stream.clone(), version, Position(pos)),
                );
            }
            st.streams.insert(stream.clone(), version);
            AppendResult {
                stream_version: version,
                first_position: Position(first),
                last_position: Position(st.head),
                duplicate: false,
            }
        };
        crate::store::advance_head(&self.head_tx, result.last_position);
        Ok(result)
    }

    async fn query_raw(&self, query: &Query) -> Result<Vec<RecordedEvent>, Error> {
        let st = self.state.read();
        let keep = |e: &&RecordedEvent| query.filter.matches(e);
        Ok(match query.direction {
            Direction::Forward => {
                let from = query.cursor.map_or(0, |c| c.get().saturating_add(1));
                st.events
                    .range(from..)
                    .map(|(_, e)| e)
                    .filter(keep)
                    .take(query.limit)
                    .cloned()
                    .collect()
            }
            Direction::Backward => {
                let to = query.cursor.map_or(u64::MAX, Position::get);
                st.events
                    .range(..to)
                    .rev()
                    .map(|(_, e)| e)
                    .filter(keep)
                    .take(query.limit)
                    .cloned()
                    .collect()
            }
        })
    }

    async fn get_raw(&self, ids: &[EventId]) -> Result<Vec<RecordedEvent>, Error> {
        let st = self.state.read();
        Ok(ids
            .iter()
            .filter_map(|id| st.by_id.get(id).and_then(|p| st.events.get(p)))
            .cloned()
            .collect())
    }

    async fn links_raw(
        &self,
        id: EventId,
        direction: LinkDirection,
        relation: Option<&str>,
    ) -> Result<Vec<(String, EventId)>, Error> {
        let st = self.state.read();
        let all: Vec<(String, EventId)> = match direction {
            LinkDirection::Outgoing => st
                .by_id
                .get(&id)
                .and_then(|p| st.events.get(p))
                .map(|e| {
                    e.links
                        .iter()
                        .map(|l| (l.relation.clone(), l.target))
                        .collect()
                })
                .unwrap_or_default(),
            LinkDirection::Incoming => st
                .incoming
                .get(&id)
                .map(|v| {
                    v.iter()
                        .filter(|(_, src)| st.by_id.contains_key(src))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
        };
        Ok(all
            .into_iter()
            .filter(|(r, _)| relation.is_none_or(|want| want == r))
            .collect())
    }

    async fn stream_version_raw(&self, stream: &StreamId) -> Result<u64, Error> {
        Ok(self.state.read().streams.get(stream).copied().unwrap_or(0))
    }

    async fn prune_raw(&self, filter: &Expr) -> Result<u64, Error> {
        let mut st = self.state.write();
        let doomed: Vec<(u64, EventId)> = st
            .events
            .iter()
            .filter(|(_, e)| filter.matches(e))
            .map(|(p, e)| (*p, e.id))
            .collect();
        for (p, id) in &doomed {
            st.events.remove(p);
            st.by_id.remove(id);
            st.incoming.remove(id);
        }
        Ok(doomed.len() as u64)
    }

    async fn head_raw(&self) -> Result<Position, Error> {
        Ok(Position(self.state.read().head))
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.head_tx.subscribe()
    }

    fn registry(&self) -> Option<&SchemaRegistry> {
        self.registry.as_deref()
    }
}
