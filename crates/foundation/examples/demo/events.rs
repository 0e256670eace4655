//! Event log and trace trees (foundation-events): the workload's requests,
//! rate-limit waits, retries and failures recorded as events in a SQLite file;
//! a text query finds the request that needed the most retries, and its
//! causal trace tree is rebuilt from the log.
//!
//! The workload is simulated on a logical clock (no sleeping): 24 requests
//! against a provider that answers `429` with `retry-after` for every fourth
//! attempt in a burst, and fails for good after three attempts.

use std::time::Duration;

use foundation::events::{
    EventStore, ExpectedVersion, Expr, LinkDirection, NewEvent, Position, Query, SqliteConfig,
    SqliteStore, StreamId, Timestamp,
};
use serde_json::json;

use crate::report::Report;

const REQUESTS: u64 = 24;
const MAX_ATTEMPTS: u64 = 3;

/// Whether the simulated provider rate-limits attempt `attempt` of request `n`.
fn limited(n: u64, attempt: u64) -> bool {
    // Bursts: requests 4..8 and 16..20 hit the limit; the noisiest ones keep hitting it.
    let in_burst = (4..8).contains(&(n % 12)) || (16..20).contains(&n);
    in_burst && attempt <= (n % 4) + 1
}

pub(crate) async fn run(report: &mut Report) {
    report.section("event log and trace trees (foundation-events)");
    let dir = std::env::temp_dir().join(format!("foundation-demo-events-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();

    // A subscriber (catch-up, then live) counts failures as they are recorded.
    let mut failures = store
        .subscribe(Expr::event_type("llm.failure"), Position::START, 64)
        .unwrap();

    let start = Timestamp::now();
    let mut clock = Duration::ZERO;
    let mut at = |step: Duration| {
        clock += step;
        start.saturating_add(clock)
    };
    let mut appended = 0u64;
    for n in 0..REQUESTS {
        let stream = StreamId::new(format!("request-{n}")).unwrap();
        let request = NewEvent::new(
            "llm.request",
            json!({"request": n, "model": "gpt-4o", "prompt_tokens": 400 + n * 10}),
        )
        .with_source("demo")
        .with_subject(format!("request-{n}"))
        .with_tenant(if n % 3 == 0 { "acme" } else { "globex" })
        .with_time(at(Duration::from_millis(40)));
        let mut batch = vec![request.clone()];
        let mut cause = request.clone();
        let mut last_failure: Option<NewEvent> = None;
        for attempt in 1..=MAX_ATTEMPTS {
            if let Some(failed) = &last_failure {
                let retry_after_ms = 500 * attempt;
                let wait = NewEvent::new(
                    "ratelimit.wait",
                    json!({"request": n, "attempt": attempt, "waited_ms": retry_after_ms}),
                )
                .caused_by_new(failed)
                .with_time(at(Duration::from_millis(retry_after_ms)));
                let retry = NewEvent::new("llm.retry", json!({"request": n, "attempt": attempt}))
                    .caused_by_new(&wait)
                    .with_link("retries", failed.id)
                    .with_time(at(Duration::from_millis(1)));
                batch.push(wait);
                cause = retry.clone();
                batch.push(retry);
            }
            if limited(n, attempt) {
                let failure = NewEvent::new(
                    "llm.failure",
                    json!({"request": n, "attempt": attempt, "status": 429, "error": "rate limit exceeded, retry after backoff"}),
                )
                .caused_by_new(&cause)
                .with_time(at(Duration::from_millis(5)));
                batch.push(failure.clone());
                last_failure = Some(failure);
                if attempt == MAX_ATTEMPTS {
                    let gave_up =
                        NewEvent::new("request.failed", json!({"request": n, "attempts": attempt}))
                            .caused_by_new(last_failure.as_ref().unwrap())
                            .with_time(at(Duration::from_millis(1)));
                    batch.push(gave_up);
                }
            } else {
                let tokens = 400 + n * 10 + 180;
                batch.push(
                    NewEvent::new("llm.response", json!({"request": n, "attempt": attempt, "status": 200, "total_tokens": tokens}))
                        .caused_by_new(&cause)
                        .with_time(at(Duration::from_millis(800))),
                );
                break;
            }
        }
        appended += batch.len() as u64;
        store
            .append(&stream, ExpectedVersion::NoStream, batch)
            .await
            .unwrap();
    }

    let mut seen_failures = 0;
    while failures.checkpoint() < store.head().await.unwrap() {
        let next = tokio::time::timeout(Duration::from_millis(200), failures.next()).await;
        match next {
            Ok(Ok(_)) => seen_failures += 1,
            _ => break,
        }
    }

    report.kv(
        "events recorded (SQLite, WAL)",
        format!("{appended} in {REQUESTS} streams at {}", path.display()),
    );
    for t in [
        "llm.request",
        "llm.response",
        "llm.failure",
        "ratelimit.wait",
        "llm.retry",
        "request.failed",
    ] {
        let n = store.query_all(Expr::event_type(t)).await.unwrap().len();
        report.kv(&format!("  {t}"), n);
    }
    report.kv(
        "failures delivered to a subscriber",
        format!("{seen_failures} (subscribed before the workload; catch-up, then live)"),
    );

    let text =
        r#"type = "llm.failure" and data.status = 429 and data.attempt >= 3 and time > now - 1h"#;
    let found = store.query(&Query::parse(text).unwrap()).await.unwrap();
    report.kv("query", text);
    let Some(hit) = found.events.first() else {
        report.line("no request needed three attempts");
        return;
    };
    report.kv(
        "matches",
        format!(
            "{}; first: event {} (request {})",
            found.events.len(),
            hit.id,
            hit.data["request"]
        ),
    );
    let tree = store.trace_tree(&hit.correlation_id).await.unwrap();
    report.kv(
        "trace tree",
        format!(
            "{} events, {} orphans, {} cycles",
            tree.len(),
            tree.orphans().len(),
            tree.cycles().len()
        ),
    );
    for (depth, e) in tree.walk() {
        let detail = match e.event_type.as_str() {
            "ratelimit.wait" => format!("waited {}ms", e.data["waited_ms"]),
            "llm.failure" => format!("attempt {} -> {}", e.data["attempt"], e.data["status"]),
            "llm.response" => format!(
                "attempt {} -> 200, {} tokens",
                e.data["attempt"], e.data["total_tokens"]
            ),
            "llm.retry" => format!("attempt {}", e.data["attempt"]),
            _ => String::new(),
        };
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" {detail}")
        };
        report.line(format!(
            "  {}{}{detail} [#{}]",
            "  ".repeat(depth),
            e.event_type,
            e.position
        ));
    }
    if let Some((_, first_failure)) = tree.walk().find(|(_, e)| e.event_type == "llm.failure") {
        let retried = store
            .related(first_failure.id, LinkDirection::Incoming, Some("retries"))
            .await
            .unwrap();
        report.kv("`retries` links to the first failure", retried.len());
    }
    let chain = store.causal_chain(hit.id).await.unwrap().unwrap();
    report.kv(
        "causal chain to root",
        chain
            .events
            .iter()
            .rev()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>()
            .join(" -> "),
    );

    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
