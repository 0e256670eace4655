//! The shared behaviour suite: every backend runs these same checks.
#![allow(dead_code, unreachable_pub, clippy::missing_panics_doc)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support fails loudly"
)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use foundation_events::{
    ChainEnd, Error, EventId, EventStore, ExpectedVersion, Expr, LinkDirection, NewEvent, Position,
    Query, Retention, SchemaRegistry, StreamId, Timestamp, TypedEvent,
};
use serde_json::json;

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!("foundation-events-{}", EventId::new()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn postgres_url() -> String {
    std::env::var("FOUNDATION_POSTGRES_URL").expect(
        "FOUNDATION_POSTGRES_URL is not set: run the PostgreSQL tests with `cargo xtask test`",
    )
}

pub fn unique_schema() -> String {
    format!("fe_test_{}", EventId::new().as_uuid().simple())
}

#[cfg(feature = "postgres")]
pub async fn drop_schema(schema: &str) {
    let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

pub fn stream(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

fn ev(t: &str, data: serde_json::Value) -> NewEvent {
    NewEvent::new(t, data).with_source("suite")
}

/// Generates one `#[tokio::test]` per behaviour for a backend.
/// `$make` is an async fn `(Option<Arc<SchemaRegistry>>) -> (Store, Guard)`;
/// `$cleanup` an async fn taking the guard.
#[macro_export]
macro_rules! behaviour_suite {
    ($make:path, $cleanup:path $(, #[$attr:meta])*) => {
        $crate::behaviour_suite!(@tests $make, $cleanup, [$(#[$attr])*],
            append_assigns_versions_and_positions,
            expected_version_is_enforced,
            retries_are_idempotent,
            batches_are_atomic,
            queries_agree_with_the_reference_evaluator,
            pagination_by_position,
            subscriptions_catch_up_then_follow,
            concurrent_writers_keep_global_order,
            trace_trees_and_causal_chains,
            links_are_queryable_both_ways,
            retention_keeps_order,
            schemas_reject_and_upcasters_upgrade,
            generated_filters_agree_with_the_reference_evaluator,
        );
    };
    (@tests $make:path, $cleanup:path, $attrs:tt, $($name:ident),* $(,)?) => {
        $( $crate::behaviour_suite!(@one $make, $cleanup, $attrs, $name); )*
    };
    (@one $make:path, $cleanup:path, [$(#[$attr:meta])*], $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $name() {
            let (store, guard) = $make(None).await;
            support::$name(store).await;
            $cleanup(guard).await;
        }
    };
}

pub async fn append_assigns_versions_and_positions<S: EventStore + Clone>(s: S) {
    let a = stream("a");
    let r = s
        .append(
            &a,
            ExpectedVersion::NoStream,
            vec![ev("t1", json!({})), ev("t2", json!({}))],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            r.stream_version,
            r.first_position,
            r.last_position,
            r.duplicate
        ),
        (2, Position(1), Position(2), false)
    );
    let r = s
        .append(
            &stream("b"),
            ExpectedVersion::Any,
            vec![ev("t1", json!({}))],
        )
        .await
        .unwrap();
    assert_eq!((r.stream_version, r.first_position), (1, Position(3)));
    let events = s.read_stream(&a, 0, 10).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(events[1].event_type, "t2");
    assert_eq!(s.stream_version(&a).await.unwrap(), 2);
    assert_eq!(s.stream_version(&stream("nope")).await.unwrap(), 0);
    assert_eq!(s.head().await.unwrap(), Position(3));
    assert_eq!(s.read_stream(&a, 1, 10).await.unwrap().len(), 1);
    let got = s.get(events[0].id).await.unwrap().unwrap();
    assert_eq!(got, events[0]);
    assert!(s.get(EventId::new()).await.unwrap().is_none());
    // The envelope round-trips through storage.
    let full = ev("full", json!({"nested": {"x": [1, 2.5, "s", null, true]}}))
        .with_subject("sub")
        .with_tenant("acme")
        .with_metadata(json!({"k": "v"}))
        .with_dataschema("urn:schema:full:1")
        .with_time(Timestamp::from_micros(1_700_000_000_123_456));
    let id = full.id;
    s.append(&stream("c"), ExpectedVersion::Any, vec![full.clone()])
        .await
        .unwrap();
    let back = s.get(id).await.unwrap().unwrap();
    assert_eq!(
        (
            back.subject.as_deref(),
            back.tenant.as_deref(),
            &back.metadata,
            &back.data,
            back.time,
            back.dataschema.as_deref()
        ),
        (
            Some("sub"),
            Some("acme"),
            &full.metadata,
            &full.data,
            full.time,
            Some("urn:schema:full:1")
        )
    );
}

pub async fn expected_version_is_enforced<S: EventStore + Clone>(s: S) {
    let a = stream("orders-1");
    let err = s
        .append(&a, ExpectedVersion::StreamExists, vec![ev("t", json!({}))])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::WrongExpectedVersion { actual: 0, .. }),
        "{err}"
    );
    s.append(&a, ExpectedVersion::NoStream, vec![ev("t", json!({}))])
        .await
        .unwrap();
    let err = s
        .append(&a, ExpectedVersion::NoStream, vec![ev("t", json!({}))])
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::WrongExpectedVersion {
            actual: 1,
            expected: ExpectedVersion::NoStream,
            ..
        }
    ));
    let err = s
        .append(&a, ExpectedVersion::Exact(5), vec![ev("t", json!({}))])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { actual: 1, .. }));
    assert!(foundation_core::Classify::kind(&err).is_retryable());
    s.append(&a, ExpectedVersion::Exact(1), vec![ev("t", json!({}))])
        .await
        .unwrap();
    s.append(&a, ExpectedVersion::StreamExists, vec![ev("t", json!({}))])
        .await
        .unwrap();
    s.append(&a, ExpectedVersion::Any, vec![ev("t", json!({}))])
        .await
        .unwrap();
    assert_eq!(s.stream_version(&a).await.unwrap(), 4);
    // Failed appends consumed no positions.
    assert_eq!(s.head().await.unwrap(), Position(4));
}

pub async fn retries_are_idempotent<S: EventStore + Clone>(s: S) {
    let a = stream("idem");
    let batch = vec![ev("t", json!({"n": 1})), ev("t", json!({"n": 2}))];
    let first = s
        .append(&a, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    // The retry's expected version would now fail; idempotency wins, as in EventStoreDB.
    let again = s
        .append(&a, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.first_position, again.last_position),
        (first.first_position, first.last_position)
    );
    assert_eq!(s.head().await.unwrap(), Position(2));
    // Partial overlap or another stream is not a clean retry.
    let partial = vec![batch[1].clone(), ev("t", json!({}))];
    assert!(matches!(
        s.append(&a, ExpectedVersion::Any, partial)
            .await
            .unwrap_err(),
        Error::DuplicateEvent { .. }
    ));
    let elsewhere = vec![batch[0].clone()];
    assert!(matches!(
        s.append(&stream("other"), ExpectedVersion::Any, elsewhere)
            .await
            .unwrap_err(),
        Error::DuplicateEvent { .. }
    ));
    assert_eq!(s.head().await.unwrap(), Position(2));
}

pub async fn batches_are_atomic<S: EventStore + Clone>(s: S) {
    let a = stream("atomic");
    let bad = vec![ev("t", json!({})), ev("", json!({}))];
    let err = s.append(&a, ExpectedVersion::Any, bad).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidEvent(e) if e.index == 1 && e.field == "type"),
        "{err}"
    );
    let dup = ev("t", json!({}));
    let err = s
        .append(&a, ExpectedVersion::Any, vec![dup.clone(), dup])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidEvent(e) if e.field == "id"),
        "{err}"
    );
    assert!(matches!(
        s.append(&a, ExpectedVersion::Any, vec![])
            .await
            .unwrap_err(),
        Error::InvalidBatch(_)
    ));
    assert_eq!(s.head().await.unwrap(), Position(0));
    assert_eq!(s.stream_version(&a).await.unwrap(), 0);
}

async fn seed_query_corpus<S: EventStore + Clone>(s: &S) -> Vec<foundation_events::RecordedEvent> {
    let base = Timestamp::from_micros(1_764_756_000_000_000);
    let mut batch = Vec::new();
    let models = ["gpt-4o", "claude", "gpt-4o-mini", "llama"];
    for i in 0..40i64 {
        let t = match i % 4 {
            0 => "llm.request",
            1 => "llm.response",
            2 => "ratelimit.wait",
            _ => "llm.retry",
        };
        let mut data = json!({
            "model": models[(i % 4) as usize],
            "n": i,
            "ratio": (i as f64) / 4.0,
            "ok": i % 3 == 0,
            "tags": if i % 5 == 0 { json!(["slow", "retry"]) } else { json!(["fast"]) },
            "usage": {"total_tokens": i * 100},
            "msg": format!("request number {i} was {}", if i % 2 == 0 { "rate limited by the provider" } else { "served quickly" }),
        });
        if i % 7 == 0 {
            data["maybe"] = serde_json::Value::Null;
        }
        let mut e = ev(t, data).with_time(base.saturating_add(Duration::from_secs(i as u64 * 60)));
        if i % 2 == 0 {
            e = e
                .with_subject(format!("req-{}", i % 3))
                .with_tenant(if i % 4 == 0 { "acme" } else { "globex" });
        }
        e = e
            .with_correlation_id(format!("corr-{}", i % 5))
            .with_metadata(json!({"attempt": i % 3}));
        batch.push(e);
    }
    let mut events = Vec::new();
    for (k, chunk) in batch.chunks(10).enumerate() {
        s.append(
            &stream(&format!("q-{k}")),
            ExpectedVersion::Any,
            chunk.to_vec(),
        )
        .await
        .unwrap();
    }
    events.extend(s.query_all(Expr::True).await.unwrap());
    events
}

pub const QUERIES: &[&str] = &[
    r#"type = "llm.response""#,
    r#"type in ("llm.request", "llm.retry")"#,
    r#"type != "llm.request""#,
    r#"stream = "q-2""#,
    r#"subject = "req-1""#,
    r#"subject exists"#,
    r#"not subject exists"#,
    r#"tenant = "acme" or tenant = "globex""#,
    r#"not tenant = "acme""#,
    r#"tenant != "acme""#,
    r#"correlation = "corr-3""#,
    r#"time >= "2025-12-03T10:10:00Z" and time < "2025-12-03T10:20:00Z""#,
    r#"time > now - 15m"#,
    r#"position > 10 and position <= 20"#,
    r#"version = 3"#,
    r#"type > "llm.r" and type <= "llm.retry""#,
    r#"subject < "req-1""#,
    r#"data.model = "gpt-4o""#,
    r#"data.model != "gpt-4o""#,
    r#"data.model > "gpt""#,
    r#"data.model >= "gpt-4o" and data.model < "h""#,
    r#"data.n >= 10 and data.n < 13"#,
    r#"data.n = 7.0"#,
    r#"data.ratio > 2.5"#,
    r#"data.ratio <= 1"#,
    r#"data.n > "5""#,
    r#"data.ok = true"#,
    r#"data.ok != true"#,
    r#"data.maybe = null"#,
    r#"data.maybe exists"#,
    r#"not data.maybe exists"#,
    r#"data.missing != 1"#,
    r#"not data.missing = 1"#,
    r#"data.tags contains "slow""#,
    r#"data.tags[0] = "fast""#,
    r#"data.msg contains "number 1""#,
    r#"data.usage.total_tokens >= 3000"#,
    r#"metadata.attempt = 2"#,
    r#"text contains "rate limited""#,
    r#"text contains "quickly" and type = "llm.response""#,
    r#"not (type = "llm.request" or data.n < 20)"#,
    r#"(tenant = "acme" and data.ok = true) or data.tags contains "retry""#,
];

pub async fn queries_agree_with_the_reference_evaluator<S: EventStore + Clone>(s: S) {
    let all = seed_query_corpus(&s).await;
    assert_eq!(all.len(), 40);
    let now = Timestamp::from_micros(1_764_756_000_000_000 + 40 * 60 * 1_000_000);
    for q in QUERIES {
        let filter = Expr::parse_at(q, now).unwrap_or_else(|e| panic!("{q}: {e}"));
        let want: Vec<u64> = all
            .iter()
            .filter(|e| filter.matches(e))
            .map(|e| e.position.get())
            .collect();
        let got: Vec<u64> = s
            .query_all(filter)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .iter()
            .map(|e| e.position.get())
            .collect();
        assert_eq!(got, want, "query `{q}`");
        let empty_by_design = [r#"data.missing != 1"#, r#"data.n > "5""#];
        assert!(
            !want.is_empty() || empty_by_design.contains(q),
            "query `{q}` matches nothing in the corpus"
        );
        assert!(
            want.len() < all.len() || q.contains("or tenant") || q.contains("not data.missing"),
            "query `{q}` matches everything"
        );
    }
    // The code API builds the same filters.
    let by_api = Expr::event_type("llm.response").and(Expr::data("n").unwrap().ge(20));
    let n = s.query_all(by_api).await.unwrap().len();
    assert_eq!(n, 5);
}

pub async fn pagination_by_position<S: EventStore + Clone>(s: S) {
    let a = stream("pages");
    for chunk in 0..5 {
        let batch = (0..7)
            .map(|i| {
                ev(
                    if i % 2 == 0 { "even" } else { "odd" },
                    json!({"i": chunk * 7 + i}),
                )
            })
            .collect();
        s.append(&a, ExpectedVersion::Any, batch).await.unwrap();
    }
    let mut q = Query::new(Expr::event_type("even")).with_limit(4);
    let mut seen = Vec::new();
    loop {
        let page = s.query(&q).await.unwrap();
        seen.extend(page.events.iter().map(|e| e.position.get()));
        match page.next {
            Some(c) => q = q.with_cursor(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 20);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let back = s
        .query(&Query::all().backward().with_limit(3))
        .await
        .unwrap();
    assert_eq!(
        back.events
            .iter()
            .map(|e| e.position.get())
            .collect::<Vec<_>>(),
        [35, 34, 33]
    );
    let back2 = s
        .query(
            &Query::all()
                .backward()
                .with_limit(3)
                .with_cursor(back.next.unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(back2.events[0].position, Position(32));
    assert!(matches!(
        s.query(&Query::all().with_limit(0)).await.unwrap_err(),
        Error::InvalidQuery(_)
    ));
}

pub async fn subscriptions_catch_up_then_follow<S: EventStore + Clone + 'static>(s: S) {
    let a = stream("subs");
    for i in 0..5 {
        let t = if i % 2 == 0 { "keep" } else { "skip" };
        s.append(&a, ExpectedVersion::Any, vec![ev(t, json!({"i": i}))])
            .await
            .unwrap();
    }
    let mut sub = s
        .subscribe(Expr::event_type("keep"), Position::START, 2)
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .unwrap()
                .unwrap()
                .data["i"]
                .clone(),
        );
    }
    assert_eq!(got, [json!(0), json!(2), json!(4)]);
    let checkpoint = sub.checkpoint();
    // Caught up: nothing more arrives, and the subscription says it is live
    // (`next` is cancel-safe, so the timeout loses nothing).
    assert!(
        tokio::time::timeout(Duration::from_millis(50), sub.next())
            .await
            .is_err()
    );
    assert!(sub.is_live());
    // Live: a later append reaches the waiting subscriber.
    let writer = {
        let s = s.clone();
        let a = a.clone();
        tokio::spawn(async move {
            s.append(
                &a,
                ExpectedVersion::Any,
                vec![ev("skip", json!({"i": 5})), ev("keep", json!({"i": 6}))],
            )
            .await
            .unwrap();
        })
    };
    let next = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.data["i"], json!(6));
    writer.await.unwrap();
    // Resuming from a stored checkpoint re-delivers what came after it.
    let mut resumed = s
        .subscribe(Expr::event_type("keep"), checkpoint, 10)
        .unwrap();
    let again = tokio::time::timeout(Duration::from_secs(10), resumed.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, next.id);
    assert!(s.subscribe(Expr::True, Position::START, 0).is_err());
}

pub async fn concurrent_writers_keep_global_order<S: EventStore + Clone + 'static>(s: S) {
    const WRITERS: usize = 6;
    const BATCHES: usize = 15;
    const PER: usize = 4;
    let total = WRITERS * BATCHES * PER;
    // A tailing reader that pages forward by position while writers run.
    let reader = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut cursor = Position::START;
            let mut seen = Vec::new();
            while seen.len() < total {
                let page = s
                    .query(&Query::all().with_cursor(cursor).with_limit(7))
                    .await
                    .unwrap();
                for e in page.events {
                    assert!(
                        e.position > cursor,
                        "out of order: {} after {}",
                        e.position,
                        cursor
                    );
                    assert_eq!(
                        e.position.get(),
                        cursor.get() + 1,
                        "skipped a position after {cursor}"
                    );
                    cursor = e.position;
                    seen.push(e.id);
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for b in 0..BATCHES {
                // Half the writers contend on one shared stream with optimistic retries.
                let (st, shared) = if w % 2 == 0 {
                    (stream("shared"), true)
                } else {
                    (stream(&format!("w-{w}")), false)
                };
                let batch: Vec<NewEvent> = (0..PER)
                    .map(|i| ev("c", json!({"w": w, "b": b, "i": i})))
                    .collect();
                ids.extend(batch.iter().map(|e| e.id));
                loop {
                    let expected = if shared {
                        ExpectedVersion::Exact(s.stream_version(&st).await.unwrap())
                    } else {
                        ExpectedVersion::Any
                    };
                    match s.append(&st, expected, batch.clone()).await {
                        Ok(_) => break,
                        Err(Error::WrongExpectedVersion { .. }) => tokio::task::yield_now().await,
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
            ids
        }));
    }
    let mut written = HashSet::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    let seen = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.len(), total);
    let seen_set: HashSet<EventId> = seen.iter().copied().collect();
    assert_eq!(seen_set.len(), total, "duplicates seen");
    assert_eq!(seen_set, written, "lost events");
    let shared = s.read_stream(&stream("shared"), 0, 10_000).await.unwrap();
    assert_eq!(shared.len(), (WRITERS / 2) * BATCHES * PER);
    assert!(
        shared.windows(2).all(
            |w| w[1].stream_version == w[0].stream_version + 1 && w[1].position > w[0].position
        )
    );
}

pub async fn trace_trees_and_causal_chains<S: EventStore + Clone>(s: S) {
    let a = stream("trace");
    let root = ev("request", json!({}))
        .with_correlation_id("job-1")
        .with_time(Timestamp::from_micros(10));
    let wait = ev("ratelimit.wait", json!({}))
        .caused_by_new(&root)
        .with_time(Timestamp::from_micros(20));
    let call = ev("llm.call", json!({}))
        .caused_by_new(&root)
        .with_time(Timestamp::from_micros(30));
    let fail = ev("llm.failure", json!({}))
        .caused_by_new(&call)
        .with_time(Timestamp::from_micros(40));
    let missing = EventId::new();
    let orphan = ev("late", json!({}))
        .with_correlation_id("job-1")
        .with_causation_id(missing)
        .with_time(Timestamp::from_micros(50));
    let c1 = EventId::new();
    let c2 = EventId::new();
    let cyc1 = ev("cyc", json!({}))
        .with_id(c1)
        .with_correlation_id("job-1")
        .with_causation_id(c2)
        .with_time(Timestamp::from_micros(60));
    let cyc2 = ev("cyc", json!({}))
        .with_id(c2)
        .with_correlation_id("job-1")
        .with_causation_id(c1)
        .with_time(Timestamp::from_micros(70));
    let other = ev("noise", json!({})).with_correlation_id("job-2");
    let fail_id = fail.id;
    s.append(
        &a,
        ExpectedVersion::Any,
        vec![
            root.clone(),
            call,
            wait,
            fail,
            orphan.clone(),
            cyc1,
            cyc2,
            other,
        ],
    )
    .await
    .unwrap();
    let tree = s.trace_tree("job-1").await.unwrap();
    assert_eq!(tree.len(), 7);
    let lines: Vec<String> = tree
        .walk()
        .map(|(d, e)| format!("{}{}", "-".repeat(d), e.event_type))
        .collect();
    assert_eq!(
        lines,
        [
            "request",
            "-ratelimit.wait",
            "-llm.call",
            "--llm.failure",
            "late",
            "cyc",
            "-cyc"
        ]
    );
    assert_eq!(tree.orphans(), &[orphan.id]);
    assert_eq!(tree.cycles().len(), 1);
    let chain = s.causal_chain(fail_id).await.unwrap().unwrap();
    assert_eq!(
        chain
            .events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        ["llm.failure", "llm.call", "request"]
    );
    assert_eq!(chain.end, ChainEnd::Root);
    assert_eq!(
        s.causal_chain(orphan.id).await.unwrap().unwrap().end,
        ChainEnd::MissingCause(missing)
    );
    assert_eq!(
        s.causal_chain(c1).await.unwrap().unwrap().end,
        ChainEnd::Cycle(c1)
    );
    assert!(s.causal_chain(EventId::new()).await.unwrap().is_none());
    // Causation is queryable too.
    assert_eq!(
        s.query_all(Expr::causation(root.id)).await.unwrap().len(),
        2
    );
}

pub async fn links_are_queryable_both_ways<S: EventStore + Clone>(s: S) {
    let a = stream("links");
    let first = ev("llm.call", json!({}));
    let retry = ev("llm.call", json!({})).with_link("retries", first.id);
    let undo = ev("refund", json!({}))
        .with_link("compensates", first.id)
        .with_link("related_to", retry.id);
    let (f, r, u) = (first.id, retry.id, undo.id);
    s.append(&a, ExpectedVersion::Any, vec![first, retry, undo])
        .await
        .unwrap();
    let incoming = s.related(f, LinkDirection::Incoming, None).await.unwrap();
    assert_eq!(
        incoming
            .iter()
            .map(|(rel, e)| (rel.as_str(), e.id))
            .collect::<Vec<_>>(),
        [("retries", r), ("compensates", u)]
    );
    let only = s
        .related(f, LinkDirection::Incoming, Some("compensates"))
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    let out = s.related(u, LinkDirection::Outgoing, None).await.unwrap();
    assert_eq!(
        out.iter()
            .map(|(rel, e)| (rel.as_str(), e.id))
            .collect::<Vec<_>>(),
        [("compensates", f), ("related_to", r)]
    );
    assert_eq!(s.get(u).await.unwrap().unwrap().links.len(), 2);
}

pub async fn retention_keeps_order<S: EventStore + Clone>(s: S) {
    let a = stream("ret");
    let old = Timestamp::from_micros(1_000_000);
    let new = Timestamp::now();
    let batch = vec![
        ev("debug", json!({"w": "alpha"})).with_time(old),
        ev("keep", json!({})).with_time(old),
        ev("debug", json!({})).with_time(new),
        ev("keep", json!({})).with_time(new),
    ];
    s.append(&a, ExpectedVersion::Any, batch).await.unwrap();
    assert!(s.prune(&Retention::default()).await.is_err());
    let n = s
        .prune(&Retention::older_than(Timestamp::from_micros(2_000_000)).with_types(["debug"]))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let n = s
        .prune(&Retention::default().with_types(["debug"]))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let left: Vec<u64> = s
        .query_all(Expr::True)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position.get())
        .collect();
    assert_eq!(left, [2, 4]);
    assert_eq!(s.query_all(Expr::text("alpha")).await.unwrap().len(), 0);
    // The stream keeps its version and positions are never reused.
    assert_eq!(s.stream_version(&a).await.unwrap(), 4);
    let r = s
        .append(&a, ExpectedVersion::Exact(4), vec![ev("keep", json!({}))])
        .await
        .unwrap();
    assert_eq!((r.first_position, r.stream_version), (Position(5), 5));
    let n = s
        .prune(&Retention::older_than(Timestamp::from_micros(2_000_000)))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(s.head().await.unwrap(), Position(5));
}

#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Answer {
    pub model: String,
    pub total_tokens: u64,
}

impl TypedEvent for Answer {
    const TYPE: &'static str = "llm.answer";
    const VERSION: u32 = 2;
}

pub fn registry() -> Arc<SchemaRegistry> {
    let mut r = SchemaRegistry::new();
    r.register_schema(
        "llm.answer",
        1,
        &json!({"type": "object", "required": ["model", "tokens"], "properties": {"model": {"type": "string"}, "tokens": {"type": "integer", "minimum": 0}}}),
    )
    .unwrap();
    r.register_schema(
        "llm.answer",
        2,
        &json!({"type": "object", "required": ["model", "total_tokens"], "additionalProperties": false,
                "properties": {"model": {"type": "string"}, "total_tokens": {"type": "integer", "minimum": 0}}}),
    )
    .unwrap();
    r.register_upcaster("llm.answer", 1, |v| {
        let model = v.get("model").cloned().ok_or("missing model")?;
        let tokens = v.get("tokens").cloned().ok_or("missing tokens")?;
        Ok(json!({"model": model, "total_tokens": tokens}))
    });
    Arc::new(r)
}

/// Needs a store built with [`registry`]; the macro's stores have none, so
/// each backend file calls this with its own registry-enabled store.
pub async fn schemas_reject_and_upcasters_upgrade<S: EventStore + Clone>(s: S) {
    if s.registry().is_none() {
        // Without a registry anything goes: the same event is accepted.
        s.append(
            &stream("schema"),
            ExpectedVersion::Any,
            vec![ev("llm.answer", json!({"tokens": -1}))],
        )
        .await
        .unwrap();
        return;
    }
    let a = stream("schema");
    let bad = ev("llm.answer", json!({"model": "m", "tokens": -1}));
    let err = s
        .append(
            &a,
            ExpectedVersion::Any,
            vec![ev("llm.answer", json!({"model": "m", "tokens": 1})), bad],
        )
        .await
        .unwrap_err();
    let Error::Schema(v) = &err else {
        panic!("{err}")
    };
    assert_eq!((v.path.as_str(), v.version), ("/tokens", 1));
    assert_eq!(s.head().await.unwrap(), Position(0));
    let unknown = ev("llm.answer", json!({})).with_schema_version(9);
    assert!(matches!(
        s.append(&a, ExpectedVersion::Any, vec![unknown])
            .await
            .unwrap_err(),
        Error::Schema(_)
    ));
    let v1 = ev("llm.answer", json!({"model": "gpt-4o", "tokens": 12}));
    let v1_id = v1.id;
    let v2 = NewEvent::typed(&Answer {
        model: "claude".into(),
        total_tokens: 7,
    })
    .unwrap();
    s.append(&a, ExpectedVersion::Any, vec![v1, v2])
        .await
        .unwrap();
    let got = s.get(v1_id).await.unwrap().unwrap();
    assert_eq!(got.schema_version, 2);
    assert_eq!(
        got.decode::<Answer>().unwrap(),
        Answer {
            model: "gpt-4o".into(),
            total_tokens: 12
        }
    );
    let all = s.query_all(Expr::event_type("llm.answer")).await.unwrap();
    let decoded: Vec<Answer> = all.iter().map(|e| e.decode().unwrap()).collect();
    assert_eq!(
        decoded[1],
        Answer {
            model: "claude".into(),
            total_tokens: 7
        }
    );
}

/// Random filter trees over the query corpus (leaves on every field kind,
/// and/or/not up to depth 3).
pub fn filter_strategy() -> impl proptest::strategy::Strategy<Value = Expr> {
    use foundation_events::{Field, Literal};
    use proptest::prelude::*;
    let lit = prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        (-5i64..45).prop_map(Literal::Int),
        (-2.0f64..12.0).prop_map(|f| Literal::Float((f * 4.0).round() / 4.0)),
        prop::sample::select(vec![
            "gpt-4o",
            "claude",
            "gpt",
            "fast",
            "slow",
            "h",
            "",
            "request number 1"
        ])
        .prop_map(|s| Literal::Str(s.to_owned())),
    ];
    let path = prop::sample::select(vec![
        "model",
        "n",
        "ratio",
        "ok",
        "tags",
        "tags[0]",
        "usage.total_tokens",
        "maybe",
        "missing",
        "msg",
    ]);
    let op = prop::sample::select(vec!["=", "!=", "<", "<=", ">", ">="]);
    let data_leaf = (path.clone(), op, lit.clone()).prop_map(|(p, op, v)| {
        let f = Expr::data(p).unwrap();
        match op {
            "=" => f.eq(v),
            "!=" => f.ne(v),
            "<" => f.lt(v),
            "<=" => f.le(v),
            ">" => f.gt(v),
            _ => f.ge(v),
        }
    });
    let contains = (path.clone(), lit).prop_map(|(p, v)| Expr::data(p).unwrap().contains(v));
    let exists = path.prop_map(|p| Expr::data(p).unwrap().exists());
    let envelope = prop_oneof![
        prop::sample::select(vec!["llm.request", "llm.response", "llm.retry", "nope"])
            .prop_map(Expr::event_type),
        prop::sample::select(vec!["acme", "globex"]).prop_map(Expr::tenant),
        prop::sample::select(vec!["req-0", "req-1"]).prop_map(Expr::subject),
        Just(Expr::field(Field::Subject).exists()),
        (0i64..45).prop_map(|p| Expr::field(Field::Position).gt(p)),
        (0i64..12).prop_map(|v| Expr::field(Field::Version).le(v)),
        prop::sample::select(vec!["rate", "quickly", "number provider"]).prop_map(Expr::text),
        prop::sample::select(vec!["corr-1", "corr-4"]).prop_map(Expr::correlation),
        prop::sample::select(vec!["llm.r", "llm.retry", "ratelimit"])
            .prop_map(|t| Expr::field(Field::Type).gt(t)),
        (0u64..45).prop_map(|m| Expr::field(Field::Time)
            .lt(Timestamp::from_micros(1_764_756_000_000_000)
                .saturating_add(Duration::from_secs(m * 60)))),
        Just(Expr::metadata("attempt").unwrap().eq(1)),
    ];
    let leaf = prop_oneof![3 => data_leaf, 1 => contains, 1 => exists, 2 => envelope];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 1..3).prop_map(Expr::Or),
            inner.prop_map(Expr::negate),
        ]
    })
}

pub async fn generated_filters_agree_with_the_reference_evaluator<S: EventStore + Clone>(s: S) {
    use proptest::strategy::{Strategy, ValueTree};
    let all = seed_query_corpus(&s).await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = filter_strategy();
    let mut nonempty = 0;
    for _ in 0..300 {
        let filter = strategy.new_tree(&mut runner).unwrap().current();
        if filter.check().is_err() {
            continue;
        }
        let want: Vec<u64> = all
            .iter()
            .filter(|e| filter.matches(e))
            .map(|e| e.position.get())
            .collect();
        let got: Vec<u64> = s
            .query_all(filter.clone())
            .await
            .unwrap_or_else(|e| panic!("{filter:?}: {e}"))
            .iter()
            .map(|e| e.position.get())
            .collect();
        assert_eq!(got, want, "filter {filter:?}");
        nonempty += usize::from(!want.is_empty() && want.len() < all.len());
    }
    assert!(
        nonempty > 50,
        "the generator produced too few selective filters ({nonempty})"
    );
}
