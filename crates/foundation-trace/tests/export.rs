//! Export: JSON with OpenTelemetry GenAI names, and the sink hook.

mod support;

use std::sync::Arc;

use foundation_trace::{Trace, TraceConfig, TraceLayer, TraceSink};
use parking_lot::Mutex;
use support::{dispatch, with};
use tracing::info_span;
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn ai_operations_export_with_genai_names() {
    let (d, h) = dispatch(TraceConfig::default());
    with(&d, || {
        let _g = info_span!("chat", correlation_id = "g", user = "u1").entered();
        let _c = info_span!(
            "call_model",
            provider = "openai",
            model = "gpt-4o-mini",
            operation = "chat",
            input_tokens = tracing::field::Empty,
        )
        .entered();
        tracing::Span::current().record("input_tokens", 812u64);
        tracing::info!(
            model = "gpt-4o-mini",
            output_tokens = 40u64,
            finish_reason = "stop",
            "answered"
        );
    });
    let json = h.store().find("g").unwrap().to_json();
    let call = &json["operations"][1]["attributes"];
    assert_eq!(call["gen_ai.provider.name"], "openai");
    assert_eq!(call["gen_ai.request.model"], "gpt-4o-mini");
    assert_eq!(call["gen_ai.operation.name"], "chat");
    assert_eq!(call["gen_ai.usage.input_tokens"], 812);
    let step = &json["steps"][0]["attributes"];
    assert_eq!(step["gen_ai.usage.output_tokens"], 40);
    assert_eq!(step["gen_ai.response.finish_reasons"], "stop");
    // Non-AI operations keep their own names.
    assert_eq!(json["operations"][0]["attributes"]["user"], "u1");
    assert_eq!(json["operations"][1]["status"], "ok");
    assert_eq!(json["status"], "ok");
    assert!(json["duration_ns"].as_u64().is_some());
    assert!(json["start_time_unix_nano"].as_u64().unwrap() > 1_600_000_000_000_000_000);
}

#[derive(Debug, Default)]
struct Collect(Mutex<Vec<Arc<Trace>>>);

impl TraceSink for Collect {
    fn on_trace(&self, trace: &Arc<Trace>) {
        self.0.lock().push(Arc::clone(trace));
    }
}

#[test]
fn sink_sees_each_kept_trace_and_json_lines_round_trip() {
    let sink = Arc::new(Collect::default());
    let layer = TraceLayer::builder()
        .with_config(TraceConfig::default())
        .with_sink(Arc::clone(&sink))
        .build()
        .unwrap();
    let d = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    with(&d, || {
        for i in 0..3u64 {
            let _g = info_span!("op", i).entered();
        }
    });
    let seen = sink.0.lock().clone();
    assert_eq!(seen.len(), 3);
    let mut out = Vec::new();
    foundation_trace::export::write_json_lines(&mut out, &seen).unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["operations"][0]["attributes"]["i"], 2);
}

#[derive(Debug)]
struct Chatty;

impl TraceSink for Chatty {
    fn on_trace(&self, trace: &Arc<Trace>) {
        // A sink may log through tracing, even inside another operation.
        let _s = info_span!("sink").entered();
        tracing::info!(trace = %trace.trace_id, "exported");
    }
}

#[test]
fn a_sink_using_tracing_does_not_deadlock() {
    let layer = TraceLayer::builder().with_sink(Chatty).build().unwrap();
    let h = layer.handle();
    let d = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    with(&d, || {
        for _ in 0..3 {
            let _g = info_span!("op").entered();
            tracing::info!("work");
        }
    });
    // The sink's own operations are not recorded.
    assert_eq!(h.store().stats().completed, 3);
    assert!(h.store().all().iter().all(|t| t.name() == "op"));
}
