//! The behaviour suite on PostgreSQL (a fresh schema per test, dropped after).
//! Run with `cargo xtask test`, which starts PostgreSQL and sets `FOUNDATION_POSTGRES_URL`.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod support;

use std::sync::Arc;
use std::time::Duration;

use foundation_events::{PostgresConfig, PostgresStore, SchemaRegistry};

async fn make(registry: Option<Arc<SchemaRegistry>>) -> (PostgresStore, String) {
    let schema = support::unique_schema();
    let mut config = PostgresConfig::new(support::postgres_url()).with_schema(&schema);
    config.max_connections = 4;
    config.poll_interval = Duration::from_millis(200);
    let s = PostgresStore::connect(config).await.unwrap();
    (
        match registry {
            Some(r) => s.with_registry(r),
            None => s,
        },
        schema,
    )
}

async fn cleanup(schema: String) {
    support::drop_schema(&schema).await;
}

behaviour_suite!(make, cleanup, #[ignore = "needs PostgreSQL: cargo xtask test"]);

#[tokio::test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
async fn schemas_with_registry() {
    let (s, schema) = make(Some(support::registry())).await;
    support::schemas_reject_and_upcasters_upgrade(s).await;
    cleanup(schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: cargo xtask test"]
async fn notifications_cross_store_instances() {
    use foundation_events::{Backend, EventStore, ExpectedVersion, Expr, NewEvent, Position};
    // Two stores on one schema stand for two nodes: an append on one wakes a
    // subscriber on the other through LISTEN/NOTIFY, well before the poll interval.
    let (a, schema) = make(None).await;
    let mut config = PostgresConfig::new(support::postgres_url()).with_schema(&schema);
    config.poll_interval = Duration::from_secs(60);
    let b = PostgresStore::connect(config).await.unwrap();
    let mut sub = b.subscribe(Expr::True, Position::START, 10).unwrap();
    let mut head = b.watch_head();
    assert!(
        tokio::time::timeout(Duration::from_millis(50), sub.next())
            .await
            .is_err()
    );
    assert!(sub.is_live());
    let writer = tokio::spawn(async move {
        a.append(
            &support::stream("n"),
            ExpectedVersion::Any,
            vec![NewEvent::new("t", serde_json::json!({}))],
        )
        .await
        .unwrap();
    });
    let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.position, Position(1));
    tokio::time::timeout(
        Duration::from_secs(10),
        head.wait_for(|p| *p >= Position(1)),
    )
    .await
    .unwrap()
    .unwrap();
    writer.await.unwrap();
    cleanup(schema).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
async fn indexed_filters_use_their_index() {
    use foundation_events::{EventStore, ExpectedVersion, Expr, NewEvent, Query};
    let (s, schema) = make(None).await;
    for b in 0..4 {
        let batch = (0..1_000)
            .map(|i| {
                let n = b * 1_000 + i;
                NewEvent::new(
                    format!("t{}", n % 50),
                    serde_json::json!({"model": format!("m{n}"), "text": format!("word{n}")}),
                )
                .with_correlation_id(format!("c{n}"))
            })
            .collect();
        s.append(&support::stream("plan"), ExpectedVersion::Any, batch)
            .await
            .unwrap();
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {schema}.events")))
        .execute(s.pool())
        .await
        .unwrap();
    let plan = |q: Query| {
        let s = s.clone();
        async move { s.explain(&q).await.unwrap().join(" | ") }
    };
    let p = plan(Query::new(Expr::correlation("c17"))).await;
    assert!(p.contains("events_correlation"), "{p}");
    let p = plan(Query::new(Expr::data("model").unwrap().eq("m17"))).await;
    assert!(p.contains("events_data"), "{p}");
    let p = plan(Query::new(Expr::text("word17"))).await;
    assert!(p.contains("events_tsv"), "{p}");
    cleanup(schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: cargo xtask test"]
async fn subscriptions_survive_a_killed_listen_connection() {
    use foundation_events::{EventStore, ExpectedVersion, Expr, NewEvent, Position};
    let schema = support::unique_schema();
    // A long poll interval: only notifications can wake the subscriber in time.
    let mut config = PostgresConfig::new(support::postgres_url()).with_schema(&schema);
    config.poll_interval = Duration::from_secs(60);
    let s = PostgresStore::connect(config.clone()).await.unwrap();
    let mut sub = s.subscribe(Expr::True, Position::START, 10).unwrap();
    // Fault: the server terminates this store's LISTEN connection (as a failover
    // or an admin would); other tests' connections are left alone.
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND query LIKE '%' || $1 || '%'",
    )
    .bind(format!("foundation_events_{schema}"))
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert!(!killed.is_empty(), "no LISTEN connection found");
    for i in 0..3 {
        s.append(
            &support::stream("f"),
            ExpectedVersion::Any,
            vec![NewEvent::new("t", serde_json::json!({"i": i}))],
        )
        .await
        .unwrap();
    }
    for i in 0..3 {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.data["i"], i);
    }
    // Notifications resume after the listener reconnects: a later append from
    // another node wakes the subscriber well before a long poll interval.
    let other = PostgresStore::connect(config).await.unwrap();
    // Wait (bounded) until the listener has reconnected: two LISTEN connections on the channel again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND query LIKE '%' || $1 || '%'")
            .bind(format!("foundation_events_{schema}"))
            .fetch_one(s.pool())
            .await
            .unwrap();
        if n >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the LISTEN connection did not come back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    other
        .append(
            &support::stream("f"),
            ExpectedVersion::Any,
            vec![NewEvent::new("t", serde_json::json!({"i": 3}))],
        )
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.data["i"], 3);
    cleanup(schema).await;
}
