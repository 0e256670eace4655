//! Secrets never reach a captured trace, an error message or an export.

mod support;

use foundation_core::{Classified, ErrorKind};
use foundation_trace::{RedactionConfig, TraceConfig, TracedError, Value, measure_step};
use support::{dispatch, with};
use tracing::info_span;

const SECRET: &str = "sk-live-4f9a8b7c6d5e";

#[derive(Debug)]
#[allow(dead_code, reason = "read through Debug")]
struct Request {
    model: &'static str,
    api_key: &'static str,
}

#[allow(clippy::unwrap_used, reason = "test helper, fails loudly")]
fn all_renderings(err: &TracedError<Classified>, h: &foundation_trace::TraceHandle) -> Vec<String> {
    vec![
        err.to_string(),
        format!("{err:?}"),
        format!("{err:#?}"),
        serde_json::to_string(err).unwrap(),
        h.store().export_json().to_string(),
        format!("{:?}", h.store().all()),
        h.store().all().iter().map(ToString::to_string).collect(),
    ]
}

#[test]
fn secrets_never_appear_in_display_debug_json_or_store() {
    let (d, h) = dispatch(
        TraceConfig::default().with_redaction(RedactionConfig::default().with_field_pattern("ssn")),
    );
    let err = with(&d, || {
        let _g = info_span!(
            "request",
            correlation_id = "r",
            authorization = format!("Bearer {SECRET}").as_str(),
        )
        .entered();
        let req = Request {
            model: "m",
            api_key: SECRET,
        };
        tracing::info!(request = ?req, "built request");
        tracing::info!(
            password = SECRET,
            token = SECRET,
            user.ssn = "123-45-6789",
            "credentials"
        );
        tracing::info!(
            header = format!("Authorization: Bearer {SECRET}").as_str(),
            "raw header"
        );
        tracing::info!("calling with api_key={SECRET} now");
        tracing::warn!(
            url = format!("https://x/?token={SECRET}&a=1").as_str(),
            "redirect"
        );
        TracedError::new(Classified::new(
            ErrorKind::Permanent,
            format!("auth failed for api_key: {SECRET}"),
        ))
    });
    for s in all_renderings(&err, &h) {
        assert!(!s.contains(SECRET), "secret leaked in: {s}");
        assert!(!s.contains("123-45-6789"), "ssn leaked in: {s}");
    }
    let t = h.store().find("r").unwrap();
    assert_eq!(t.steps[1].field("password"), Some(&Value::Redacted));
    assert_eq!(t.steps[1].field("user.ssn"), Some(&Value::Redacted));
    assert_eq!(
        t.operations[0].field("authorization"),
        Some(&Value::Redacted)
    );
    // Non-secret data survives.
    let built = t.steps[0].field("request").unwrap().as_str().unwrap();
    assert!(
        built.contains("model: \"m\"") && built.contains("[REDACTED]"),
        "{built}"
    );
    assert_eq!(err.message(), "auth failed for api_key: [REDACTED]");
}

#[tokio::test]
async fn structured_step_data_is_redacted_by_key() {
    let (d, h) = dispatch(TraceConfig::default());
    let _default = tracing::dispatcher::set_default(&d);
    let span = info_span!("request", correlation_id = "data");
    let out: Result<u32, std::io::Error> = measure_step(
        "call model",
        serde_json::json!({
            "model": "m",
            "api_key": SECRET,
            "headers": {"x-api-key": SECRET, "accept": "json"},
            "input_tokens": 5,
        }),
        async { Ok(1) },
    )
    .instrument_in(&span)
    .await;
    drop(span);
    assert_eq!(out.unwrap(), 1);
    let t = h.store().find("data").unwrap();
    let op = &t.operations[1];
    assert_eq!(op.name, "call model");
    // The data object's keys become fields of the step's operation.
    let Some(Value::Json(headers)) = op.field("headers") else {
        panic!("structured data expected: {op:?}")
    };
    assert_eq!(headers["x-api-key"], "[REDACTED]");
    assert_eq!(headers["accept"], "json");
    assert_eq!(op.field("input_tokens"), Some(&Value::U64(5)));
    // ... and export with GenAI names.
    let json = t.to_json();
    assert_eq!(
        json["operations"][1]["attributes"]["gen_ai.request.model"],
        "m"
    );
    assert_eq!(op.field("api_key"), Some(&Value::Redacted));
    assert!(!t.to_json().to_string().contains(SECRET));
    assert!(!t.to_string().contains(SECRET));
}

#[test]
fn redaction_can_be_turned_off_for_local_debugging() {
    let (d, h) = dispatch(TraceConfig::default().with_redaction(RedactionConfig {
        enabled: false,
        ..RedactionConfig::default()
    }));
    with(&d, || {
        let _g = info_span!("r", correlation_id = "off").entered();
        tracing::info!(password = "visible", "x");
    });
    let t = h.store().find("off").unwrap();
    assert_eq!(
        t.steps[0].field("password"),
        Some(&Value::Str("visible".into()))
    );
}

/// One callsite recorded under different redaction settings on one thread:
/// the per-callsite answer of one configuration is never reused by another.
#[test]
fn the_same_callsite_follows_each_configuration() {
    fn step(cid: &str) {
        let _g = info_span!("r", correlation_id = cid).entered();
        tracing::info!(ssn = "123-45-6789", model = "m", "x");
    }
    let strict =
        TraceConfig::default().with_redaction(RedactionConfig::default().with_field_pattern("ssn"));
    let (d, h) = dispatch(TraceConfig::default());
    with(&d, || step("before"));
    h.reconfigure(strict.clone()).unwrap();
    with(&d, || step("after"));
    let (d2, h2) = dispatch(TraceConfig::default());
    with(&d2, || step("other layer"));
    let (d3, h3) = dispatch(strict);
    with(&d3, || step("strict layer"));

    let ssn = |h: &foundation_trace::TraceHandle, cid: &str| {
        h.store().find(cid).unwrap().steps[0].field("ssn").cloned()
    };
    let plain = Some(Value::Str("123-45-6789".into()));
    assert_eq!(ssn(&h, "before"), plain);
    assert_eq!(ssn(&h, "after"), Some(Value::Redacted));
    assert_eq!(ssn(&h2, "other layer"), plain);
    assert_eq!(ssn(&h3, "strict layer"), Some(Value::Redacted));
    assert_eq!(
        h3.store().find("strict layer").unwrap().steps[0].field("model"),
        Some(&Value::Str("m".into()))
    );
}

trait InstrumentIn: std::future::Future + Sized {
    fn instrument_in(self, span: &tracing::Span) -> tracing::instrument::Instrumented<Self> {
        tracing::Instrument::instrument(self, span.clone())
    }
}
impl<F: std::future::Future> InstrumentIn for F {}
