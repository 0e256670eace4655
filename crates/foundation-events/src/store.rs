//! The store traits: [`Backend`] (what a storage engine implements) and
//! [`EventStore`] (what applications call, provided for every backend), and
//! catch-up-then-live [`Subscription`]s.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use crate::envelope::{
    AppendResult, EventId, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId, Timestamp,
};
use crate::error::{Error, InvalidEvent};
use crate::query::{Direction, Expr, Field, Page, Query};
use crate::schema::SchemaRegistry;
use crate::trace::{CausalChain, ChainEnd, TraceTree};

/// Most events one append may carry.
pub const MAX_BATCH: usize = 10_000;

/// Which way to follow typed links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkDirection {
    /// Links this event declares (`this -relation-> target`).
    Outgoing,
    /// Links other events declare to this one (`source -relation-> this`).
    Incoming,
}

/// What to prune. Both criteria must hold when both are set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Retention {
    /// Delete events with `time` before this.
    pub before: Option<Timestamp>,
    /// Delete only events of these types.
    pub types: Option<Vec<String>>,
}

impl Retention {
    /// Events older than `t`.
    #[must_use]
    pub fn older_than(t: Timestamp) -> Self {
        Self {
            before: Some(t),
            types: None,
        }
    }

    /// Restricts pruning to `types`.
    #[must_use]
    pub fn with_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    pub(crate) fn as_expr(&self) -> Result<Expr, Error> {
        let mut e = Expr::True;
        if let Some(t) = self.before {
            e = e.and(Expr::field(Field::Time).lt(t));
        }
        if let Some(types) = &self.types {
            if types.is_empty() {
                return Err(Error::InvalidQuery(
                    "retention `types` must not be empty".to_owned(),
                ));
            }
            e = e.and(Expr::event_types(types.iter().cloned()));
        }
        if e == Expr::True {
            return Err(Error::InvalidQuery(
                "retention needs `before` or `types`".to_owned(),
            ));
        }
        Ok(e)
    }
}

/// A storage engine. Implemented by [`MemoryStore`](crate::MemoryStore),
/// `SqliteStore` and `PostgresStore`; applications call the [`EventStore`]
/// methods, which validate, apply schemas and upcasters and build on these.
///
/// Contract (checked by the shared behaviour suite in `tests/`):
/// - `append_checked` is atomic, enforces `expected`, treats a batch whose
///   every id is already stored in `stream` in the same order as an
///   idempotent retry (returns the original positions with `duplicate`), and
///   assigns positions so that readers never see a gap filled later;
/// - `query_raw` evaluates [`Expr`] with the semantics of [`Expr::matches`].
pub trait Backend: Send + Sync {
    /// Appends a validated, non-empty batch.
    fn append_checked(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<AppendResult, Error>> + Send;

    /// Runs a checked query, without upcasting.
    fn query_raw(
        &self,
        query: &Query,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, Error>> + Send;

    /// Loads events by id, without upcasting (missing ids are skipped).
    fn get_raw(
        &self,
        ids: &[EventId],
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, Error>> + Send;

    /// Ids linked to/from `id`, with their relation.
    fn links_raw(
        &self,
        id: EventId,
        direction: LinkDirection,
        relation: Option<&str>,
    ) -> impl Future<Output = Result<Vec<(String, EventId)>, Error>> + Send;

    /// The stream's version (0 = no stream); pruning does not lower it.
    fn stream_version_raw(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Deletes matching events; returns how many.
    fn prune_raw(&self, filter: &Expr) -> impl Future<Output = Result<u64, Error>> + Send;

    /// The highest committed position (0 when empty).
    fn head_raw(&self) -> impl Future<Output = Result<Position, Error>> + Send;

    /// A receiver that changes when new events may have been committed.
    fn watch_head(&self) -> watch::Receiver<Position>;

    /// How often a live subscription re-polls when no notification arrives
    /// (covers notifications lost on reconnects or appends by other processes).
    fn poll_interval(&self) -> Duration {
        Duration::from_millis(500)
    }

    /// The schema registry, if any.
    fn registry(&self) -> Option<&SchemaRegistry>;
}

/// The event store API, provided for every [`Backend`].
pub trait EventStore: Backend {
    /// Appends `events` to `stream` atomically, if the stream is at `expected`.
    ///
    /// Envelopes and schemas are checked first (nothing is written when one
    /// fails). Retrying a batch with the same event ids is idempotent.
    ///
    /// # Errors
    /// [`Error::WrongExpectedVersion`], [`Error::DuplicateEvent`],
    /// [`Error::InvalidEvent`], [`Error::Schema`], [`Error::InvalidBatch`],
    /// [`Error::Backend`].
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<AppendResult, Error>> + Send {
        async move {
            if let Err(e) = check_batch(&events, self.registry()) {
                metrics::counter!("foundation_events_appends_total", "outcome" => "invalid")
                    .increment(1);
                return Err(e);
            }
            let n = events.len();
            let started = std::time::Instant::now();
            let result = self.append_checked(stream, expected, events).await;
            let outcome = match &result {
                Ok(r) if r.duplicate => "duplicate",
                Ok(_) => "ok",
                Err(Error::WrongExpectedVersion { .. }) => "conflict",
                Err(Error::DuplicateEvent { .. }) => "invalid",
                Err(_) => "error",
            };
            metrics::counter!("foundation_events_appends_total", "outcome" => outcome).increment(1);
            metrics::histogram!("foundation_events_append_seconds")
                .record(started.elapsed().as_secs_f64());
            if outcome == "ok" {
                metrics::counter!("foundation_events_appended_events_total").increment(n as u64);
            }
            match &result {
                Ok(r) => tracing::debug!(
                    stream = %stream,
                    events = n,
                    first = r.first_position.get(),
                    last = r.last_position.get(),
                    version = r.stream_version,
                    duplicate = r.duplicate,
                    "appended"
                ),
                Err(e) => {
                    tracing::debug!(stream = %stream, events = n, error = %e, "append refused")
                }
            }
            result
        }
    }

    /// The stream's version: the number of events ever appended to it (0 = no
    /// stream). Pruning does not lower it.
    ///
    /// # Errors
    /// [`Error::Backend`].
    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64, Error>> + Send {
        self.stream_version_raw(stream)
    }

    /// The highest committed global position ([`Position::START`] when empty).
    ///
    /// # Errors
    /// [`Error::Backend`].
    fn head(&self) -> impl Future<Output = Result<Position, Error>> + Send {
        self.head_raw()
    }

    /// One page of events matching `query`, upcast.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`], [`Error::Backend`], [`Error::Decode`].
    fn query(&self, query: &Query) -> impl Future<Output = Result<Page, Error>> + Send {
        async move {
            query.check()?;
            let mut events = self.query_raw(query).await?;
            self.upcast_all(&mut events)?;
            let next = (events.len() == query.limit)
                .then(|| events.last().map(|e| e.position))
                .flatten();
            Ok(Page { events, next })
        }
    }

    /// Every event matching `filter` (all pages), forward. Use [`query`](Self::query)
    /// for large results.
    ///
    /// # Errors
    /// As [`query`](Self::query).
    fn query_all(
        &self,
        filter: Expr,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, Error>> + Send {
        async move {
            let mut q = Query::new(filter).with_limit(crate::query::MAX_LIMIT);
            let mut out = Vec::new();
            loop {
                let page = self.query(&q).await?;
                out.extend(page.events);
                match page.next {
                    Some(c) => q.cursor = Some(c),
                    None => return Ok(out),
                }
            }
        }
    }

    /// Events of `stream` with version > `after_version`, up to `limit`.
    ///
    /// # Errors
    /// As [`query`](Self::query).
    fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, Error>> + Send {
        async move {
            let v = i64::try_from(after_version)
                .map_err(|_| Error::InvalidQuery("version too large".to_owned()))?;
            let filter = Expr::stream(stream.as_str()).and(Expr::field(Field::Version).gt(v));
            Ok(self
                .query(&Query::new(filter).with_limit(limit))
                .await?
                .events)
        }
    }

    /// One event by id, upcast.
    ///
    /// # Errors
    /// [`Error::Backend`], [`Error::Decode`].
    fn get(
        &self,
        id: EventId,
    ) -> impl Future<Output = Result<Option<RecordedEvent>, Error>> + Send {
        async move {
            let mut found = self.get_raw(&[id]).await?;
            self.upcast_all(&mut found)?;
            Ok(found.pop())
        }
    }

    /// Events linked to/from `id` by typed links (any relation when `None`),
    /// in position order, with their relation.
    ///
    /// # Errors
    /// [`Error::Backend`], [`Error::Decode`].
    fn related(
        &self,
        id: EventId,
        direction: LinkDirection,
        relation: Option<&str>,
    ) -> impl Future<Output = Result<Vec<(String, RecordedEvent)>, Error>> + Send {
        async move {
            let links = self.links_raw(id, direction, relation).await?;
            let ids: Vec<EventId> = links.iter().map(|(_, id)| *id).collect();
            let mut events = self.get_raw(&ids).await?;
            self.upcast_all(&mut events)?;
            events.sort_by_key(|e| e.position);
            let mut out = Vec::new();
            for e in events {
                for (rel, _) in links.iter().filter(|(_, lid)| *lid == e.id) {
                    out.push((rel.clone(), e.clone()));
                }
            }
            Ok(out)
        }
    }

    /// The causal forest of `correlation_id` (served by the correlation index).
    ///
    /// # Errors
    /// As [`query`](Self::query).
    fn trace_tree(
        &self,
        correlation_id: &str,
    ) -> impl Future<Output = Result<TraceTree, Error>> + Send {
        async move {
            Ok(TraceTree::build(
                self.query_all(Expr::correlation(correlation_id)).await?,
            ))
        }
    }

    /// The chain from `id` back to its root cause (one id lookup per step),
    /// stopping at a missing cause or a cycle. `None` when `id` is not stored.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    fn causal_chain(
        &self,
        id: EventId,
    ) -> impl Future<Output = Result<Option<CausalChain>, Error>> + Send {
        async move {
            let Some(first) = self.get(id).await? else {
                return Ok(None);
            };
            let mut seen = HashSet::from([first.id]);
            let mut events = vec![first];
            loop {
                let Some(cause) = events.last().and_then(|e| e.causation_id) else {
                    return Ok(Some(CausalChain {
                        events,
                        end: ChainEnd::Root,
                    }));
                };
                if !seen.insert(cause) {
                    return Ok(Some(CausalChain {
                        events,
                        end: ChainEnd::Cycle(cause),
                    }));
                }
                match self.get(cause).await? {
                    Some(e) => events.push(e),
                    None => {
                        return Ok(Some(CausalChain {
                            events,
                            end: ChainEnd::MissingCause(cause),
                        }));
                    }
                }
            }
        }
    }

    /// Deletes events by age and/or type. Positions of the remaining events do
    /// not change, stream versions do not go back, and positions are never reused.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] for an empty policy, [`Error::Backend`].
    fn prune(&self, retention: &Retention) -> impl Future<Output = Result<u64, Error>> + Send {
        async move {
            let filter = retention.as_expr()?;
            self.prune_raw(&filter).await
        }
    }

    /// Subscribes to events matching `filter` after `checkpoint`: catches up
    /// from the log, then follows new appends. `batch` bounds how many events
    /// are buffered (1..=[`MAX_LIMIT`](crate::query::MAX_LIMIT)).
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] for a bad filter or batch size.
    fn subscribe(
        &self,
        filter: Expr,
        checkpoint: Position,
        batch: usize,
    ) -> Result<Subscription<Self>, Error>
    where
        Self: Clone + Sized,
    {
        Query::new(filter.clone()).with_limit(batch).check()?;
        Ok(Subscription {
            store: self.clone(),
            head: self.watch_head(),
            filter,
            checkpoint,
            buffer: VecDeque::with_capacity(batch),
            batch,
            live: false,
        })
    }

    /// Applies the registry's upcasters.
    ///
    /// # Errors
    /// [`Error::Decode`] when an upcaster fails.
    fn upcast_all(&self, events: &mut [RecordedEvent]) -> Result<(), Error> {
        if let Some(r) = self.registry() {
            events.iter_mut().try_for_each(|e| r.upcast(e))?;
        }
        Ok(())
    }
}

impl<T: Backend + ?Sized> EventStore for T {}

/// Moves a head watch forward (never back), waking subscribers only on change.
pub(crate) fn advance_head(head: &watch::Sender<Position>, to: Position) {
    head.send_if_modified(|h| {
        let newer = to > *h;
        if newer {
            *h = to;
        }
        newer
    });
}

pub(crate) fn check_batch(
    events: &[NewEvent],
    registry: Option<&SchemaRegistry>,
) -> Result<(), Error> {
    if events.is_empty() {
        return Err(Error::InvalidBatch(
            "a batch needs at least one event".to_owned(),
        ));
    }
    if events.len() > MAX_BATCH {
        return Err(Error::InvalidBatch(format!(
            "a batch holds at most {MAX_BATCH} events, got {}",
            events.len()
        )));
    }
    let mut ids = HashSet::with_capacity(events.len());
    for (index, e) in events.iter().enumerate() {
        e.validate().map_err(|err| InvalidEvent { index, ..err })?;
        if !ids.insert(e.id) {
            return Err(InvalidEvent {
                index,
                id: e.id,
                field: "id",
                reason: "appears twice in the batch".to_owned(),
            }
            .into());
        }
        if let Some(r) = registry {
            r.check(e)?;
        }
    }
    Ok(())
}

/// A catch-up-then-live subscription. Pull-based: [`next`](Self::next) reads
/// at most `batch` events at a time from the store, so a slow consumer holds
/// back nothing but itself (no unbounded queue).
///
/// Delivery is at-least-once across restarts: store [`checkpoint`](Self::checkpoint)
/// after handling an event and resubscribe from it. `next` is cancel-safe:
/// dropping its future loses no event.
#[derive(Debug)]
pub struct Subscription<S> {
    store: S,
    head: watch::Receiver<Position>,
    filter: Expr,
    checkpoint: Position,
    buffer: VecDeque<RecordedEvent>,
    batch: usize,
    live: bool,
}

// === impl Subscription ===

impl<S: EventStore + Clone> Subscription<S> {
    /// The next matching event, waiting for new appends once caught up.
    ///
    /// # Errors
    /// Store errors; the subscription stays usable (the next call retries).
    pub async fn next(&mut self) -> Result<RecordedEvent, Error> {
        loop {
            if let Some(e) = self.buffer.pop_front() {
                self.checkpoint = e.position;
                return Ok(e);
            }
            // Mark the current head as seen *before* reading, so an append
            // committed after the read wakes us.
            self.head.borrow_and_update();
            let q = Query {
                filter: self.filter.clone(),
                cursor: Some(self.checkpoint),
                direction: Direction::Forward,
                limit: self.batch,
            };
            let page = self.store.query(&q).await?;
            if !page.events.is_empty() {
                self.buffer.extend(page.events);
                continue;
            }
            self.live = true;
            let poll = self.store.poll_interval();
            tokio::select! {
                changed = self.head.changed() => {
                    if changed.is_err() {
                        // The notifier is gone (store dropped): fall back to polling.
                        tokio::time::sleep(poll).await;
                    }
                }
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Position of the last event returned by [`next`](Self::next) (or the
    /// starting checkpoint): store it to resume later.
    #[must_use]
    pub fn checkpoint(&self) -> Position {
        self.checkpoint
    }

    /// Whether the subscription has caught up with the log at least once.
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.live
    }
}
