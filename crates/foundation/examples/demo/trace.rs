//! Execution traces (foundation-trace): simulated multi-step AI requests run
//! as traced operations; one fails and its attached history is printed.
//!
//! Self-contained: the simulated provider here is a few lines of sleeps and
//! canned answers.

use std::time::Duration;

use foundation::core::{Classified, ErrorKind};
use foundation::trace::{RetentionConfig, TraceConfig, TraceLayer, TracedError, step};
use tracing::Instrument;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

use crate::report::Report;

/// One simulated request: build prompt, call model, parse, invoke tool.
async fn request(id: u32, question: &'static str) -> Result<String, TracedError<Classified>> {
    let prompt = build_prompt(question).await;
    let answer = call_model(id, &prompt).await;
    let tool = parse(&answer)?;
    invoke_tool(tool).await
}

#[tracing::instrument(skip(question))]
async fn build_prompt(question: &str) -> String {
    tokio::time::sleep(Duration::from_millis(1)).await;
    let prompt = format!("You are a helpful assistant.\nQ: {question}");
    step!(
        "prompt built",
        chars = prompt.len() as u64,
        template = "qa-v2"
    );
    prompt
}

async fn call_model(id: u32, prompt: &str) -> String {
    let span = tracing::info_span!(
        "call_model",
        provider = "simulated",
        model = "sim-large-1",
        operation = "chat",
        api_key = "sk-demo-not-a-real-key",
        input_tokens = prompt.len() as u64 / 4,
        output_tokens = tracing::field::Empty,
    );
    async move {
        tokio::time::sleep(Duration::from_millis(3 + u64::from(id % 3))).await;
        // Request 4 gets a truncated answer from the "model".
        let answer = if id == 4 {
            r#"{"tool": "weather", "args": {"city": "Par"#.to_owned()
        } else {
            r#"{"tool": "weather", "args": {"city": "Paris"}}"#.to_owned()
        };
        tracing::Span::current().record("output_tokens", answer.len() as u64 / 4);
        tracing::info!(
            finish_reason = if id == 4 { "length" } else { "stop" },
            "model answered"
        );
        answer
    }
    .instrument(span)
    .await
}

#[tracing::instrument(skip(answer), fields(bytes = answer.len()))]
fn parse(answer: &str) -> Result<&'static str, TracedError<Classified>> {
    if !answer.trim_end().ends_with('}')
        || answer.matches('{').count() != answer.matches('}').count()
    {
        return Err(TracedError::new(Classified::new(
            ErrorKind::InvalidInput,
            "model output is not valid JSON (unbalanced braces)",
        )));
    }
    step!("tool call parsed", tool = "weather");
    Ok("weather")
}

#[tracing::instrument]
async fn invoke_tool(tool: &'static str) -> Result<String, TracedError<Classified>> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    tracing::info!(status = 200u64, "tool answered");
    Ok(format!("{tool}: 18C, clear"))
}

pub(crate) async fn run(report: &mut Report) {
    report.section("execution traces (foundation-trace)");
    let layer = TraceLayer::new(
        TraceConfig::default()
            .with_retention(RetentionConfig::last(16).with_successful_sample_rate(0.5)),
    )
    .expect("valid trace config");
    let traces = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));

    let questions = [
        "weather in Paris?",
        "weather in Oslo?",
        "weather in Lima?",
        "weather in Rome?",
        "weather in Pune?",
        "weather in Kyiv?",
    ];
    let run_one = |i: usize| {
        let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let span = tracing::info_span!(
            "chat_request",
            correlation_id = format!("req-{id}").as_str()
        );
        request(id, questions[i]).instrument(span)
    };
    let results = async {
        let (a, b, c, d, e, f) = tokio::join!(
            run_one(0),
            run_one(1),
            run_one(2),
            run_one(3),
            run_one(4),
            run_one(5)
        );
        [a, b, c, d, e, f]
    }
    .with_subscriber(dispatch)
    .await;

    let failed: Vec<&TracedError<Classified>> =
        results.iter().filter_map(|r| r.as_ref().err()).collect();
    let stats = traces.store().stats();
    report.kv("requests run (4 steps each)", results.len());
    report.kv("failed", failed.len());
    report.kv(
        "traces kept: failed / successful",
        format!("{} / {}", stats.failed_len, stats.successful_len),
    );
    report.kv("successful traces not sampled", stats.not_sampled);
    if let Some(err) = failed.first() {
        report.kv(
            "failure kind (retryable?)",
            format!("{} ({})", err.error_kind(), err.error_kind().is_retryable()),
        );
        let exported = traces
            .store()
            .find(err.correlation_id().unwrap_or_default())
            .map(|t| t.to_json())
            .unwrap_or_default();
        let model_attr = &exported["operations"][2]["attributes"]["gen_ai.request.model"];
        report.kv("export: gen_ai.request.model", model_attr);
        report.kv(
            "export: api_key",
            &exported["operations"][2]["attributes"]["api_key"],
        );
        report.line("history attached to the failed request's error:");
        report.line(err.to_string());
    }
}
