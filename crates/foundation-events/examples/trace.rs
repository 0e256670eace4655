//! Records a small LLM workflow in SQLite, finds it with the text query
//! language and prints its causal trace tree.
//!
//! `cargo run -p foundation-events --example trace`
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "an example prints and fails loudly"
)]

use foundation_events::{
    EventStore, ExpectedVersion, NewEvent, Query, SqliteConfig, SqliteStore, StreamId,
};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir =
        std::env::temp_dir().join(format!("foundation-events-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = SqliteStore::open(SqliteConfig::new(dir.join("events.db"))).await?;

    let request = NewEvent::new(
        "llm.request",
        json!({"model": "gpt-4o", "prompt": "summarise the incident"}),
    )
    .with_source("example");
    let first = NewEvent::new(
        "llm.failure",
        json!({"status": 429, "error": "rate limit exceeded"}),
    )
    .caused_by_new(&request);
    let wait = NewEvent::new("ratelimit.wait", json!({"waited_ms": 250})).caused_by_new(&first);
    let retry = NewEvent::new("llm.retry", json!({"attempt": 2}))
        .caused_by_new(&wait)
        .with_link("retries", request.id);
    let answer = NewEvent::new("llm.response", json!({"model": "gpt-4o", "tokens": 412}))
        .caused_by_new(&retry);
    let correlation = request.correlation_id.clone();
    store
        .append(
            &StreamId::new("request-1")?,
            ExpectedVersion::NoStream,
            vec![request, first, wait, retry, answer],
        )
        .await?;

    let text = r#"type = "llm.failure" and data.status = 429 and text contains "rate limit""#;
    let page = store.query(&Query::parse(text)?).await?;
    println!("query: {text}\nfound: {} event(s)", page.events.len());
    let tree = store.trace_tree(&page.events[0].correlation_id).await?;
    assert_eq!(page.events[0].correlation_id, correlation);
    print!("{}", tree.render());

    store.close().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
