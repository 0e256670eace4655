//! Plain `tracing` instrumentation is captured: spans as operations, events
//! as steps, with fields, order and correlation ids.

mod support;

use foundation_trace::{TraceConfig, TraceStatus, Value, current_correlation_id, step};
use support::{dispatch, with};
use tracing::{Level, event, info_span, instrument};

#[instrument(fields(model = "m-1"))]
fn call_model(prompt_len: usize) -> usize {
    event!(
        Level::INFO,
        input_tokens = prompt_len as u64 / 4,
        "request sent"
    );
    prompt_len / 2
}

#[test]
fn spans_and_events_become_operations_and_steps() {
    let (d, h) = dispatch(TraceConfig::default());
    with(&d, || {
        let root = info_span!("request", correlation_id = "req-1", user = 7u64);
        let _g = root.enter();
        step!("prompt built", chars = 40u64);
        call_model(40);
        let parse = info_span!("parse", ok = tracing::field::Empty);
        parse.in_scope(|| tracing::debug!(bytes = 20u64, "parsing"));
        parse.record("ok", true);
    });
    let t = h.store().find("req-1").expect("trace kept");
    assert_eq!(t.status, TraceStatus::Ok);
    assert!(t.recorded);
    assert_eq!(
        t.outline(),
        [
            "request",
            "  - prompt built",
            "  call_model",
            "    - request sent",
            "  parse",
            "    - parsing",
        ]
    );
    let call = &t.operations[1];
    assert_eq!(call.parent, Some(0));
    assert_eq!(call.field("model"), Some(&Value::Str("m-1".into())));
    assert_eq!(call.field("prompt_len"), Some(&Value::U64(40)));
    assert!(call.duration().is_some());
    assert_eq!(t.steps[1].field("input_tokens"), Some(&Value::U64(10)));
    assert_eq!(t.steps[1].level, Level::INFO);
    // `record` after creation updates the operation.
    assert_eq!(t.operations[2].field("ok"), Some(&Value::Bool(true)));
    // The correlation id came from the root span; the field is kept too.
    assert_eq!(t.operations[0].field("user"), Some(&Value::U64(7)));
}

#[test]
fn correlation_id_is_generated_when_not_given_and_settable_later() {
    let (d, h) = dispatch(TraceConfig::default());
    let generated = with(&d, || {
        let _g = info_span!("job").entered();
        current_correlation_id().unwrap()
    });
    assert_eq!(generated.len(), 16);
    assert_eq!(h.store().find(&generated).unwrap().name(), "job");

    with(&d, || {
        let root = info_span!("late", correlation_id = tracing::field::Empty);
        root.record("correlation_id", "incoming-42");
        let _g = root.enter();
        assert_eq!(current_correlation_id().as_deref(), Some("incoming-42"));
    });
    assert!(h.store().find("incoming-42").is_some());
}

#[test]
fn error_events_mark_the_trace_failed() {
    let (d, h) = dispatch(TraceConfig::default());
    with(&d, || {
        let _g = info_span!("op", correlation_id = "c").entered();
        let _s = info_span!("inner").entered();
        tracing::error!(code = 500u64, "upstream failed");
    });
    let t = h.store().find("c").unwrap();
    assert_eq!(t.status, TraceStatus::Failed);
    assert!(t.operations[1].failed);
    assert_eq!(t.failed_step().unwrap().name, "upstream failed");
    assert_eq!(h.store().failed().len(), 1);
}

#[test]
fn otel_fields_name_and_fail_operations() {
    let (d, h) = dispatch(TraceConfig::default());
    with(&d, || {
        let _g = info_span!("op", correlation_id = "o").entered();
        let s = info_span!(
            "step",
            otel.name = "call tool",
            otel.status_code = tracing::field::Empty
        );
        s.record("otel.status_code", "ERROR");
    });
    let t = h.store().find("o").unwrap();
    assert_eq!(t.operations[1].name, "call tool");
    assert!(t.operations[1].failed);
    assert!(t.is_failed());
}

#[test]
fn events_outside_any_span_are_not_recorded() {
    let (d, h) = dispatch(TraceConfig::default());
    with(&d, || tracing::info!("free-floating"));
    assert!(h.store().is_empty());
    assert_eq!(h.store().stats().completed, 0);
}

#[test]
fn explicit_roots_start_separate_traces() {
    let (d, h) = dispatch(TraceConfig::default());
    with(&d, || {
        let _a = info_span!("a", correlation_id = "a").entered();
        let _b = info_span!(parent: None, "b", correlation_id = "b").entered();
        tracing::info!("in b");
    });
    assert_eq!(h.store().find("a").unwrap().steps.len(), 0);
    assert_eq!(h.store().find("b").unwrap().steps.len(), 1);
}
