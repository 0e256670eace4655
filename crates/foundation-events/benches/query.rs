//! Query by correlation id over many stored events, and a trace tree of
//! 1,000 events, on SQLite. The anchor (`raw_sql`) is the same SELECT on the
//! same index through sqlx, without decoding into envelopes (or building the tree).
//!
//! Scale: 1,000,000 stored events in 100,000 correlations (10 events each).
#![allow(missing_docs)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench fails loudly"
)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use foundation_events::{
    EventId, EventStore, ExpectedVersion, Expr, NewEvent, SqliteConfig, SqliteStore, StreamId,
};
use serde_json::json;

const STORED: usize = 1_000_000;
const CORRELATIONS: usize = 100_000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("fe-bench-q-{}", EventId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = rt
        .block_on(SqliteStore::open(SqliteConfig::new(dir.join("events.db"))))
        .unwrap();
    rt.block_on(async {
        let stream = StreamId::new("seed").unwrap();
        for chunk in 0..STORED / 5_000 {
            let batch: Vec<NewEvent> = (0..5_000)
                .map(|i| {
                    let n = chunk * 5_000 + i;
                    NewEvent::new("llm.response", json!({"n": n, "model": "gpt-4o"}))
                        .with_correlation_id(format!("corr-{}", n % CORRELATIONS))
                })
                .collect();
            store
                .append(&stream, ExpectedVersion::Any, batch)
                .await
                .unwrap();
        }
        // One correlation of 1,000 events forming a tree (each caused by an earlier one).
        let root = NewEvent::new("request", json!({})).with_correlation_id("tree");
        let mut ids = vec![root.id];
        let mut batch = vec![root];
        for i in 1..1_000usize {
            let parent = ids[(i * 7919) % ids.len()];
            let e = NewEvent::new("step", json!({"i": i}))
                .with_correlation_id("tree")
                .with_causation_id(parent);
            ids.push(e.id);
            batch.push(e);
        }
        store
            .append(&StreamId::new("tree").unwrap(), ExpectedVersion::Any, batch)
            .await
            .unwrap();
    });

    let mut g = c.benchmark_group("events_query_correlation");
    let mut k = 0usize;
    g.bench_function("foundation", |b| {
        b.to_async(&rt).iter(|| {
            k += 1;
            let store = store.clone();
            let corr = format!("corr-{}", (k * 31) % CORRELATIONS);
            async move {
                let found = store.query_all(Expr::correlation(corr)).await.unwrap();
                assert_eq!(found.len(), STORED / CORRELATIONS);
            }
        });
    });
    g.bench_function("raw_sql", |b| {
        b.to_async(&rt).iter(|| {
            k += 1;
            let pool = store.pool().clone();
            let corr = format!("corr-{}", (k * 31) % CORRELATIONS);
            async move {
                let rows = sqlx::query(
                    "SELECT position, id, stream_id, stream_version, type, source, subject, time, schema_version, dataschema, data, metadata, correlation_id, causation_id, tenant, links
                     FROM events WHERE correlation_id = $1 ORDER BY position",
                )
                .bind(corr)
                .fetch_all(&pool)
                .await
                .unwrap();
                assert_eq!(rows.len(), STORED / CORRELATIONS);
            }
        });
    });
    g.finish();

    let mut g = c.benchmark_group("events_trace_tree");
    g.bench_function("foundation", |b| {
        b.to_async(&rt).iter(|| {
            let store = store.clone();
            async move {
                let tree = store.trace_tree("tree").await.unwrap();
                assert_eq!(tree.len(), 1_000);
            }
        });
    });
    g.bench_function("raw_sql", |b| {
        b.to_async(&rt).iter(|| {
            let pool = store.pool().clone();
            async move {
                let rows = sqlx::query(
                    "SELECT position, id, stream_id, stream_version, type, source, subject, time, schema_version, dataschema, data, metadata, correlation_id, causation_id, tenant, links
                     FROM events WHERE correlation_id = $1 ORDER BY position",
                )
                .bind("tree")
                .fetch_all(&pool)
                .await
                .unwrap();
                assert_eq!(rows.len(), 1_000);
            }
        });
    });
    g.finish();
    rt.block_on(store.close());
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
