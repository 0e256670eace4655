//! A multi-step AI workflow instrumented with plain `tracing`: one request
//! fails, and its error prints the history of what ran; the kept traces are
//! exported as JSON with OpenTelemetry GenAI names.
//!
//! Run with `cargo run -p foundation-trace --example workflow`.
#![allow(clippy::print_stdout, reason = "the example's job is to print")]
#![allow(clippy::unwrap_used, reason = "an example fails loudly")]

use std::time::Duration;

use foundation_core::{Classified, ErrorKind};
use foundation_trace::{RetentionConfig, TraceConfig, TraceLayer, TracedError, measure_step, step};
use serde_json::json;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[tracing::instrument(skip(question), fields(chars))]
async fn build_prompt(question: &str) -> String {
    let prompt = format!("Answer briefly.\nQ: {question}");
    tracing::Span::current().record("chars", prompt.len() as u64);
    prompt
}

async fn call_model(prompt: &str, fail: bool) -> Result<String, Classified> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    if fail {
        return Err(Classified::new(
            ErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(2)),
            },
            "provider answered 429 (authorization: Bearer sk-example-secret)",
        ));
    }
    tracing::info!(
        output_tokens = 42u64,
        finish_reason = "stop",
        "model answered"
    );
    Ok(format!("echo: {}", prompt.len()))
}

async fn handle(id: u32) -> Result<String, TracedError<Classified>> {
    let prompt = build_prompt("what is a trace?").await;
    step!("cache miss", key = "q:1");
    let answer = measure_step(
        "call model",
        json!({ "model": "gpt-4o-mini", "provider": "openai", "input_tokens": prompt.len() / 4 }),
        call_model(&prompt, id == 2),
    )
    .await?;
    step!("answer parsed", bytes = answer.len());
    Ok(answer)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let layer =
        TraceLayer::new(TraceConfig::default().with_retention(RetentionConfig::last(10))).unwrap();
    let traces = layer.handle();
    // Applications install the subscriber; libraries never do.
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();

    for id in 1..=3 {
        let span = tracing::info_span!(
            "chat_request",
            correlation_id = format!("req-{id}").as_str()
        );
        match handle(id).instrument(span).await {
            Ok(answer) => println!("req-{id}: {answer}"),
            Err(err) => {
                println!(
                    "req-{id} failed (retryable: {}):",
                    err.error_kind().is_retryable()
                );
                println!("{err}\n");
            }
        }
    }
    let failed = traces.store().failed();
    println!(
        "{}",
        serde_json::to_string_pretty(&failed[0].to_json()).unwrap()
    );
}
