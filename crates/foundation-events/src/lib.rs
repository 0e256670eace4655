//! A durable, queryable, append-only event log with schemas and causal traces.
//!
//! AI workflows produce streams of events — request sent, tokens counted,
//! tool called, answer judged — that people need to search and whose
//! cause-and-effect chains they need to reconstruct. This crate stores them:
//!
//! - **Envelope** ([`NewEvent`], [`RecordedEvent`]): UUIDv7 id, CloudEvents
//!   attributes (`type`, `source`, `subject`, `time`, `dataschema`), schema
//!   version, JSON data and metadata, correlation and causation ids, tenant,
//!   stream id with per-stream version, and a global [`Position`].
//! - **Appends** ([`EventStore::append`]): atomic batches, optimistic
//!   concurrency per stream ([`ExpectedVersion`]: any / no stream / exists /
//!   exact) with a typed [`Error::WrongExpectedVersion`], idempotent retries by
//!   event id.
//! - **Backends** behind one trait ([`Backend`]): [`MemoryStore`],
//!   `SqliteStore` (embedded default; file, WAL, FTS5) and `PostgresStore`
//!   (multi-node; LISTEN/NOTIFY, tsvector), proven equal by one test suite.
//! - **Queries** ([`Query`], [`Expr`]): by type, stream, subject, tenant,
//!   time, correlation, causation, JSON paths in data (equals / compare /
//!   contains / exists) and full text, with cursor pagination by position;
//!   and a [text language](lang) with parse errors that point at the token.
//! - **Subscriptions** ([`EventStore::subscribe`]): catch-up from a
//!   checkpoint, then live, filtered, pull-based (bounded).
//! - **Causal traces** ([`EventStore::trace_tree`], [`EventStore::causal_chain`])
//!   with orphans and cycles reported; typed [links](EventStore::related)
//!   between events queryable both ways; [retention](EventStore::prune).
//! - **Schemas** ([`SchemaRegistry`]): JSON Schema per type and version,
//!   checked on append with the failing path; upcasters on read;
//!   [`TypedEvent`] for Rust types.
//!
//! ```
//! use foundation_events::{EventStore, Expr, ExpectedVersion, MemoryStore, NewEvent, Query, StreamId};
//! use serde_json::json;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let stream = StreamId::new("request-42")?;
//! let sent = NewEvent::new("llm.request", json!({"model": "gpt-4o"})).with_source("gateway");
//! let got = NewEvent::new("llm.response", json!({"model": "gpt-4o", "tokens": 812})).caused_by_new(&sent);
//! let correlation = sent.correlation_id.clone();
//! store.append(&stream, ExpectedVersion::NoStream, vec![sent, got]).await?;
//!
//! // The same filter, in code and in the text language.
//! let q = Query::parse(r#"type = "llm.response" and data.tokens > 500 and time > now - 1h"#)?;
//! assert_eq!(store.query(&q).await?.events.len(), 1);
//! let by_code = Expr::event_type("llm.response").and(Expr::data("tokens")?.gt(500));
//! assert_eq!(store.query(&Query::new(by_code)).await?.events.len(), 1);
//!
//! let tree = store.trace_tree(&correlation).await?;
//! assert_eq!(tree.render().lines().collect::<Vec<_>>()[1].trim(), "llm.response [#2]");
//! # Ok::<(), foundation_events::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Typed events and subscriptions
//!
//! ```
//! use foundation_events::{EventStore, ExpectedVersion, Expr, MemoryStore, NewEvent, Position, StreamId, TypedEvent};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct TokensCounted { model: String, total: u64 }
//! impl TypedEvent for TokensCounted {
//!     const TYPE: &'static str = "llm.tokens";
//!     const VERSION: u32 = 1;
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! // Subscribe before anything is written: catch-up (nothing yet), then live.
//! let mut sub = store.subscribe(Expr::event_type(TokensCounted::TYPE), Position::START, 64)?;
//! let counted = TokensCounted { model: "gpt-4o".into(), total: 812 };
//! store.append(&StreamId::new("usage")?, ExpectedVersion::Any, vec![NewEvent::typed(&counted)?]).await?;
//! let event = sub.next().await?;
//! assert_eq!(event.decode::<TokensCounted>()?, counted);
//! let resume_from = sub.checkpoint(); // store it; subscribe from it after a restart
//! assert_eq!(resume_from, event.position);
//! # Ok::<(), foundation_events::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Global order
//!
//! Readers (queries by position, subscriptions) must never skip an event
//! that commits later with a lower position — the bug behind Marten's
//! high-water-mark machinery (#3321 and friends), where database sequences hand
//! out numbers at insert time but transactions commit in another order. This
//! crate avoids the problem instead of detecting it: **positions are assigned
//! inside the append transaction under a lock held until commit**, so they are
//! gap-free and in commit order.
//!
//! - PostgreSQL: the append transaction first updates a one-row counter
//!   (`UPDATE log_head SET position = position + n`); the row lock serializes
//!   appenders until commit, and a rolled-back append gives its numbers back.
//! - SQLite: appends run in `BEGIN IMMEDIATE` transactions (one writer at a
//!   time, by SQLite's design) and bump the same counter.
//! - Memory: one write lock.
//!
//! The price is that appends to *different* streams serialize on the counter
//! (as in EventStoreDB's single writer); batches amortize it. Pruning deletes
//! rows but never lowers the counter, so positions are never reused.
//!
//! # Feature flags
//!
//! - `sqlite` (default): `SqliteStore`.
//! - `postgres`: `PostgresStore`.
//! - `schemars`: `JsonSchema` for the configuration types.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod envelope;
pub mod error;
pub mod lang;
mod memory;
pub mod query;
pub mod schema;
mod store;
pub mod trace;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

pub use envelope::{
    AppendResult, EventId, ExpectedVersion, Link, NewEvent, Position, RecordedEvent, StreamId,
    Timestamp, TypedEvent,
};
pub use error::Error;
pub use memory::MemoryStore;
pub use query::{Direction, Expr, Field, Literal, Page, Query};
pub use schema::SchemaRegistry;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use sql::postgres::{PostgresConfig, PostgresStore};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sql::sqlite::{SqliteConfig, SqliteStore};
pub use store::{Backend, EventStore, LinkDirection, MAX_BATCH, Retention, Subscription};
pub use trace::{CausalChain, ChainEnd, TraceTree};

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
