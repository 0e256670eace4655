//! kill -9 of a process in the middle of a batch append leaves all or nothing
//! of that batch, on SQLite and on PostgreSQL.
//!
//! The test binary re-runs itself as the writer (`crash_child_helper` with
//! `FOUNDATION_EVENTS_CRASH_CHILD` set), waits until it is appending large
//! batches, kills it with SIGKILL and checks the log.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "the child reports readiness on stdout; tests fail loudly"
)]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use foundation_events::{EventStore, ExpectedVersion, Expr, NewEvent};
use serde_json::json;

const BATCH: usize = 2_000;
const ENV: &str = "FOUNDATION_EVENTS_CRASH_CHILD";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn write_forever<S: EventStore>(store: S) {
    println!("CRASH-CHILD-READY");
    loop {
        let n = foundation_events::EventId::new().to_string();
        let batch: Vec<NewEvent> = (0..BATCH)
            .map(|i| NewEvent::new("crash.test", json!({"batch": n, "i": i, "pad": "x".repeat(400), "words": "killed mid batch"})))
            .collect();
        store
            .append(&support::stream("crash"), ExpectedVersion::Any, batch)
            .await
            .unwrap();
    }
}

/// Not a test on its own: the child process of the crash tests. Does nothing
/// unless `FOUNDATION_EVENTS_CRASH_CHILD` is set.
#[test]
fn crash_child_helper() {
    let Ok(target) = std::env::var(ENV) else {
        return;
    };
    runtime().block_on(async {
        if let Some(path) = target.strip_prefix("sqlite:") {
            #[cfg(feature = "sqlite")]
            write_forever(
                foundation_events::SqliteStore::open(foundation_events::SqliteConfig::new(path))
                    .await
                    .unwrap(),
            )
            .await;
            let _ = path;
        } else if let Some(schema) = target.strip_prefix("postgres:") {
            #[cfg(feature = "postgres")]
            write_forever(
                foundation_events::PostgresStore::connect(
                    foundation_events::PostgresConfig::new(support::postgres_url())
                        .with_schema(schema),
                )
                .await
                .unwrap(),
            )
            .await;
            let _ = schema;
        }
    });
}

/// Runs the child against `target`, kills it after `delay`, returns whether it died by SIGKILL.
fn run_and_kill(target: &str, delay: Duration) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_helper",
            "--exact",
            "--nocapture",
            "--include-ignored",
            "--test-threads",
            "1",
        ])
        .env(ENV, target)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut ready = false;
    for line in BufReader::new(stdout).lines() {
        if line.unwrap().contains("CRASH-CHILD-READY") {
            ready = true;
            break;
        }
    }
    assert!(ready, "the child did not start writing");
    std::thread::sleep(delay);
    // SIGKILL: no destructor, no rollback from the client side.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child finished on its own");
}

async fn check_all_or_nothing<S: EventStore>(store: &S) -> usize {
    let events = store.query_all(Expr::stream("crash")).await.unwrap();
    let n = events.len();
    assert_eq!(n % BATCH, 0, "a partial batch is visible: {n} events");
    assert_eq!(
        store
            .stream_version(&support::stream("crash"))
            .await
            .unwrap(),
        n as u64
    );
    // Every batch is whole and occupies consecutive positions.
    let mut batches: std::collections::BTreeMap<String, Vec<u64>> =
        std::collections::BTreeMap::new();
    for e in &events {
        batches
            .entry(e.data["batch"].as_str().unwrap().to_owned())
            .or_default()
            .push(e.position.get());
    }
    for positions in batches.values() {
        assert_eq!(positions.len(), BATCH);
        assert!(
            positions.windows(2).all(|w| w[1] == w[0] + 1),
            "a batch has gaps"
        );
    }
    assert!(store.head().await.unwrap().get() >= events.last().map_or(0, |e| e.position.get()));
    // The store is still writable after the crash.
    store
        .append(
            &support::stream("after-crash"),
            ExpectedVersion::Any,
            vec![NewEvent::new("after", json!({}))],
        )
        .await
        .unwrap();
    n
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_kill_9_mid_batch_is_all_or_nothing() {
    let dir = support::TempDir::new();
    let path = dir.0.join("crash.db");
    for (round, ms) in [150u64, 400, 900].into_iter().enumerate() {
        run_and_kill(
            &format!("sqlite:{}", path.display()),
            Duration::from_millis(ms),
        );
        let n = runtime().block_on(async {
            let store =
                foundation_events::SqliteStore::open(foundation_events::SqliteConfig::new(&path))
                    .await
                    .unwrap();
            let n = check_all_or_nothing(&store).await;
            store.close().await;
            n
        });
        eprintln!("round {round}: {n} events survived");
    }
}

#[cfg(feature = "postgres")]
#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn postgres_kill_9_mid_batch_is_all_or_nothing() {
    let schema = support::unique_schema();
    for ms in [300u64, 800] {
        run_and_kill(&format!("postgres:{schema}"), Duration::from_millis(ms));
        runtime().block_on(async {
            let store = foundation_events::PostgresStore::connect(
                foundation_events::PostgresConfig::new(support::postgres_url())
                    .with_schema(&schema),
            )
            .await
            .unwrap();
            check_all_or_nothing(&store).await;
        });
    }
    runtime().block_on(support::drop_schema(&schema));
}
