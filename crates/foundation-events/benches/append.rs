//! Batched append (100 events) against a raw INSERT of the same rows into a
//! table of the same shape in one transaction, on SQLite and PostgreSQL.
//!
//! PostgreSQL runs when `FOUNDATION_POSTGRES_URL` is set (`cargo xtask bench`
//! starts a server); otherwise the group is skipped with a note.
#![allow(missing_docs)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a bench fails loudly and reports"
)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use foundation_events::{
    EventStore, ExpectedVersion, NewEvent, SqliteConfig, SqliteStore, StreamId,
};
use serde_json::json;
#[cfg(feature = "postgres")]
use sqlx::AssertSqlSafe;

const BATCH: usize = 100;

fn batch(n: u64) -> Vec<NewEvent> {
    (0..BATCH)
        .map(|i| {
            NewEvent::new(
                "llm.response",
                json!({"model": "gpt-4o", "tokens": i, "text": "the answer was served quickly"}),
            )
            .with_source("bench")
            .with_correlation_id(format!("corr-{n}"))
        })
        .collect()
}

/// The same columns as the store's events table.
struct RawRow {
    id: String,
    stream: String,
    version: i64,
    ty: String,
    source: String,
    time: i64,
    data: String,
    corr: String,
}

fn raw_rows(events: &[NewEvent], stream: &str, first_version: i64) -> Vec<RawRow> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| RawRow {
            id: e.id.to_string(),
            stream: stream.to_owned(),
            version: first_version + i as i64,
            ty: e.event_type.clone(),
            source: e.source.clone(),
            time: e.time.as_micros(),
            data: e.data.to_string(),
            corr: e.correlation_id.clone(),
        })
        .collect()
}

/// The `foundation` side of a group: 100-event batches through `EventStore::append`.
/// Returns the batch counter so the raw side keeps generating fresh rows.
fn bench_foundation<S: EventStore + Clone + 'static>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    store: &S,
) -> u64 {
    g.throughput(criterion::Throughput::Elements(BATCH as u64));
    let stream = StreamId::new("bench").unwrap();
    let mut n = 0u64;
    g.bench_function("foundation", |b| {
        b.to_async(rt).iter(|| {
            n += 1;
            let events = batch(n);
            let store = store.clone();
            let stream = stream.clone();
            async move {
                store
                    .append(&stream, ExpectedVersion::Any, events)
                    .await
                    .unwrap()
            }
        });
    });
    n
}

fn sqlite(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("fe-bench-{}", foundation_events::EventId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = rt
        .block_on(SqliteStore::open(SqliteConfig::new(dir.join("events.db"))))
        .unwrap();
    // The raw baseline: a table of the same shape and indexes, in the same database.
    rt.block_on(async {
        for stmt in [
            "CREATE TABLE raw_events AS SELECT * FROM events WHERE 0",
            "CREATE UNIQUE INDEX raw_id ON raw_events (id)",
            "CREATE UNIQUE INDEX raw_sv ON raw_events (stream_id, stream_version)",
            "CREATE INDEX raw_type ON raw_events (type, position)",
            "CREATE INDEX raw_corr ON raw_events (correlation_id, position)",
            "CREATE INDEX raw_causation ON raw_events (causation_id)",
            "CREATE INDEX raw_tenant ON raw_events (tenant, position)",
            "CREATE INDEX raw_subject ON raw_events (subject, position)",
            "CREATE INDEX raw_time ON raw_events (time)",
        ] {
            sqlx::query(stmt).execute(store.pool()).await.unwrap();
        }
    });
    let mut g = c.benchmark_group("events_append_sqlite");
    let mut n = bench_foundation(&mut g, &rt, &store);
    let mut version = 0i64;
    let mut position = 0i64;
    g.bench_function("raw_sql", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let rows = raw_rows(&batch(n), "bench", version + 1);
            version += BATCH as i64;
            let first = position + 1;
            position += BATCH as i64;
            let pool = store.pool().clone();
            async move {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
                let mut b = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO raw_events (position, id, stream_id, stream_version, type, source, time, schema_version, data, correlation_id, links) ",
                );
                b.push_values(rows.into_iter().enumerate(), |mut v, (i, r)| {
                    v.push_bind(first + i as i64)
                        .push_bind(r.id)
                        .push_bind(r.stream)
                        .push_bind(r.version)
                        .push_bind(r.ty)
                        .push_bind(r.source)
                        .push_bind(r.time)
                        .push_bind(1i64)
                        .push_bind(r.data)
                        .push_bind(r.corr)
                        .push_bind("[]");
                });
                b.build().execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            }
        });
    });
    g.finish();
    rt.block_on(store.close());
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(not(feature = "postgres"))]
fn postgres(_: &mut Criterion) {
    println!("events_append_postgres: skipped (build with `--features postgres`)");
}

#[cfg(feature = "postgres")]
fn postgres(c: &mut Criterion) {
    let Ok(url) = std::env::var("FOUNDATION_POSTGRES_URL") else {
        println!(
            "events_append_postgres: skipped (set FOUNDATION_POSTGRES_URL or run `cargo xtask bench`)"
        );
        return;
    };
    use foundation_events::{PostgresConfig, PostgresStore};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let schema = format!(
        "fe_bench_{}",
        &foundation_events::EventId::new()
            .as_uuid()
            .simple()
            .to_string()[16..]
    );
    let store = rt
        .block_on(PostgresStore::connect(
            PostgresConfig::new(&url).with_schema(&schema),
        ))
        .unwrap();
    rt.block_on(async {
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE {schema}.raw_events (LIKE {schema}.events INCLUDING ALL)"
        )))
        .execute(store.pool())
        .await
        .unwrap();
    });
    let mut g = c.benchmark_group("events_append_postgres");
    let mut n = bench_foundation(&mut g, &rt, &store);
    let mut version = 0i64;
    let mut position = 0i64;
    let insert = format!(
        "INSERT INTO {schema}.raw_events (position, id, stream_id, stream_version, type, source, time, schema_version, data, correlation_id, links)
         SELECT u.p, u.id, u.s, u.v, u.ty, u.src, u.t, 1, u.d::jsonb, u.c, '[]'::jsonb
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::text[])
              AS u(p, id, s, v, ty, src, t, d, c)"
    );
    g.bench_function("raw_sql", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let rows = raw_rows(&batch(n), "bench", version + 1);
            version += BATCH as i64;
            let first = position + 1;
            position += BATCH as i64;
            let pool = store.pool().clone();
            let insert = insert.clone();
            async move {
                let positions: Vec<i64> = (0..rows.len() as i64).map(|i| first + i).collect();
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(AssertSqlSafe(insert))
                    .bind(positions)
                    .bind(rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>())
                    .bind(rows.iter().map(|r| r.stream.clone()).collect::<Vec<_>>())
                    .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
                    .bind(rows.iter().map(|r| r.ty.clone()).collect::<Vec<_>>())
                    .bind(rows.iter().map(|r| r.source.clone()).collect::<Vec<_>>())
                    .bind(rows.iter().map(|r| r.time).collect::<Vec<_>>())
                    .bind(rows.iter().map(|r| r.data.clone()).collect::<Vec<_>>())
                    .bind(rows.iter().map(|r| r.corr.clone()).collect::<Vec<_>>())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        });
    });
    g.finish();
    rt.block_on(async {
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(store.pool())
            .await
            .unwrap();
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = sqlite, postgres
}
criterion_main!(benches);
