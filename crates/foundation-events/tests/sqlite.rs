//! The behaviour suite on the SQLite backend (a fresh file per test).
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod support;

use std::sync::Arc;

use foundation_events::{SchemaRegistry, SqliteConfig, SqliteStore};
use support::TempDir;

async fn make(registry: Option<Arc<SchemaRegistry>>) -> (SqliteStore, TempDir) {
    let dir = TempDir::new();
    let mut config = SqliteConfig::new(dir.0.join("events.db"));
    config.poll_interval = std::time::Duration::from_millis(50);
    let s = SqliteStore::open(config).await.unwrap();
    (
        match registry {
            Some(r) => s.with_registry(r),
            None => s,
        },
        dir,
    )
}

async fn cleanup(dir: TempDir) {
    drop(dir);
}

behaviour_suite!(make, cleanup);

#[tokio::test]
async fn schemas_with_registry() {
    let (s, dir) = make(Some(support::registry())).await;
    support::schemas_reject_and_upcasters_upgrade(s).await;
    drop(dir);
}

#[tokio::test]
async fn reopening_keeps_the_log_and_head() {
    use foundation_events::{EventStore, ExpectedVersion, NewEvent, Position};
    let dir = TempDir::new();
    let path = dir.0.join("events.db");
    {
        let s = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
        s.append(
            &support::stream("x"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new("t", serde_json::json!({}))],
        )
        .await
        .unwrap();
        s.close().await;
    }
    let s = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
    assert_eq!(s.head().await.unwrap(), Position(1));
    let r = s
        .append(
            &support::stream("x"),
            ExpectedVersion::Exact(1),
            vec![NewEvent::new("t", serde_json::json!({}))],
        )
        .await
        .unwrap();
    assert_eq!(r.last_position, Position(2));
}

#[tokio::test]
async fn invalid_config_names_the_field() {
    let mut c = SqliteConfig::new("");
    c.max_connections = 0;
    let err = SqliteStore::open(c).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("path") && msg.contains("max_connections"),
        "{msg}"
    );
}

#[tokio::test]
async fn indexed_filters_use_their_index() {
    use foundation_events::{Expr, Query};
    let (s, dir) = make(None).await;
    let plan = |q: Query| {
        let s = s.clone();
        async move { s.explain(&q).await.unwrap().join(" | ") }
    };
    let p = plan(Query::new(Expr::correlation("c"))).await;
    assert!(p.contains("events_correlation"), "{p}");
    let p =
        plan(Query::new(Expr::event_type("t")).with_cursor(foundation_events::Position(10))).await;
    assert!(p.contains("events_type"), "{p}");
    let p = plan(Query::new(Expr::text("rate limit"))).await;
    assert!(p.contains("events_fts"), "{p}");
    let p = plan(Query::new(
        Expr::stream("s").and(Expr::field(foundation_events::Field::Version).gt(3)),
    ))
    .await;
    assert!(
        p.contains("sqlite_autoindex_events_2") || p.contains("stream_id"),
        "{p}"
    );
    let p = plan(Query::new(Expr::tenant("acme"))).await;
    assert!(p.contains("events_tenant"), "{p}");
    drop(dir);
}

#[tokio::test]
async fn a_foreign_writer_holding_the_lock_gives_a_retryable_busy_error() {
    use foundation_core::Classify;
    use foundation_events::{Error, EventStore, ExpectedVersion, NewEvent};
    use sqlx::Connection;
    let dir = TempDir::new();
    let path = dir.0.join("events.db");
    let mut config = SqliteConfig::new(&path);
    config.busy_timeout = std::time::Duration::from_millis(100);
    let s = SqliteStore::open(config).await.unwrap();
    // Another process (here: another connection) holds the write lock.
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let err = s
        .append(
            &support::stream("x"),
            ExpectedVersion::Any,
            vec![NewEvent::new("t", serde_json::json!({}))],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(err.kind().is_retryable(), "{err}: {:?}", err.kind());
    // Once the lock is released the same append succeeds and nothing leaked.
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    let r = s
        .append(
            &support::stream("x"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new("t", serde_json::json!({}))],
        )
        .await
        .unwrap();
    assert_eq!(r.first_position, foundation_events::Position(1));
}
