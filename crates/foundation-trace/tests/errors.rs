//! Errors carry the history of the operation up to the failure.

mod support;

use std::time::Duration;

use foundation_core::error::{BoxError, classify, is_caused_by};
use foundation_core::{Classified, Classify, ErrorKind};
use foundation_trace::{
    InCurrentTrace, TraceConfig, TraceResultExt, TraceStatus, TracedError, trace_of,
};
use support::{dispatch, dispatch_tokio_clock, with};
use tracing::{Instrument, info_span};

#[derive(Debug, thiserror::Error)]
enum ToolError {
    #[error("tool {0} timed out")]
    Timeout(&'static str),
}

impl Classify for ToolError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Timeout
    }
}

#[tracing::instrument]
async fn build_prompt(question: &str) -> String {
    tokio::time::sleep(Duration::from_millis(2)).await;
    tracing::info!(chars = question.len() as u64, "prompt built");
    format!("Q: {question}")
}

#[tracing::instrument(skip(_prompt), fields(model = "m-1"))]
async fn call_model(_prompt: &str) -> String {
    tokio::time::sleep(Duration::from_millis(30)).await;
    tracing::info!(
        input_tokens = 12u64,
        output_tokens = 40u64,
        "model answered"
    );
    "call:search".to_owned()
}

#[tracing::instrument]
async fn run_tool(name: &'static str) -> Result<(), TracedError<ToolError>> {
    tokio::time::sleep(Duration::from_millis(7)).await;
    tracing::info!(tool = name, "invoking");
    Err(ToolError::Timeout(name))?
}

async fn workflow() -> Result<(), TracedError<ToolError>> {
    let prompt = build_prompt("weather?").await;
    let _answer = call_model(&prompt).await;
    run_tool("search").await?;
    tracing::info!("never reached");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn attached_history_matches_what_ran_in_order_with_failing_step() {
    let (d, h) = dispatch_tokio_clock(TraceConfig::default());
    let _default = tracing::dispatcher::set_default(&d);
    let err = workflow()
        .instrument(info_span!("request", correlation_id = "req-9"))
        .await
        .unwrap_err();

    let t = err.trace().expect("history attached");
    assert_eq!(
        t.outline(),
        [
            "request",
            "  build_prompt",
            "    - prompt built",
            "  call_model",
            "    - model answered",
            "  run_tool",
            "    - invoking",
            "    - error",
        ]
    );
    assert_eq!(t.status, TraceStatus::Failed);
    let failing = t.failed_step().unwrap();
    assert_eq!(t.failing_step, Some(failing.seq));
    assert_eq!(
        failing.field("error").unwrap().as_str(),
        Some("tool search timed out")
    );
    assert_eq!(
        t.operation(failing.operation.unwrap()).unwrap().name,
        "run_tool"
    );
    // Open operations at the failure: request > run_tool.
    let active: Vec<_> = t
        .active
        .iter()
        .map(|&i| t.operations[i as usize].name.clone())
        .collect();
    assert_eq!(active, ["request", "run_tool"]);
    // Timings under paused time are exact.
    assert_eq!(t.steps[0].at, Duration::from_millis(2));
    assert_eq!(t.steps[1].at, Duration::from_millis(32));
    assert_eq!(failing.at, Duration::from_millis(39));
    assert_eq!(t.operations[2].duration(), Some(Duration::from_millis(30)));
    assert_eq!(err.correlation_id(), Some("req-9"));

    // Display: the message, then one line per operation and step.
    let shown = err.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines[0], "tool search timed out");
    assert!(
        lines[1].starts_with("trace ") && lines[1].contains("correlation=req-9"),
        "{shown}"
    );
    assert_eq!(lines.len(), 2 + 8, "{shown}");
    assert!(
        lines[3].contains("+ 0.000ms   > build_prompt (2.000ms)"),
        "{shown}"
    );
    assert!(
        lines[4].contains("+ 2.000ms     - prompt built chars=8"),
        "{shown}"
    );
    assert!(
        lines[9].contains("! error") && lines[9].ends_with("<-- failed here"),
        "{shown}"
    );

    // Classification and source survive.
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(matches!(err.get_ref(), ToolError::Timeout("search")));
    assert!(is_caused_by::<ToolError>(&err));

    // The stored trace is failed and holds the failing step too.
    let stored = h.store().find("req-9").unwrap();
    assert!(stored.is_failed());
    assert_eq!(stored.failed_step().unwrap().name, "error");
    assert_eq!(stored.duration, Some(Duration::from_millis(39)));
}

#[test]
fn serializes_to_json_with_kind_and_trace() {
    let (d, _h) = dispatch(TraceConfig::default());
    let err = with(&d, || {
        let _g = info_span!("op", correlation_id = "j").entered();
        tracing::info!(n = 1u64, "before");
        ToolError::Timeout("x").in_current_trace()
    });
    let v = serde_json::to_value(&err).unwrap();
    assert_eq!(v["error"], "tool x timed out");
    assert_eq!(v["kind"], "timeout");
    assert_eq!(v["retryable"], true);
    assert_eq!(v["trace"]["correlation_id"], "j");
    assert_eq!(v["trace"]["steps"][0]["name"], "before");
    assert_eq!(v["trace"]["steps"][1]["failed"], true);
    assert_eq!(v["trace"]["failing_step"], v["trace"]["steps"][1]["seq"]);
}

#[test]
fn works_with_boxed_errors_and_question_mark() {
    let (d, _h) = dispatch(TraceConfig::default());
    fn inner() -> Result<(), TracedError<ToolError>> {
        tracing::info!("inner step");
        Err(ToolError::Timeout("db")).with_trace()
    }
    fn outer() -> Result<(), BoxError> {
        inner()?;
        Ok(())
    }
    let boxed = with(&d, || {
        let _g = info_span!("op").entered();
        outer().unwrap_err()
    });
    // The history is found through the box ...
    let t = trace_of::<ToolError>(boxed.as_ref()).unwrap();
    assert_eq!(t.outline(), ["op", "  - inner step", "  - error"]);
    // ... and so is the source error.
    assert!(is_caused_by::<ToolError>(boxed.as_ref()));

    // A boxed error keeps a classification set with `Classified`.
    let err = with(&d, || {
        let _g = info_span!("op").entered();
        TracedError::boxed(Classified::new(
            ErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(3)),
            },
            "429 from provider",
        ))
    });
    assert_eq!(err.kind().retry_after(), Some(Duration::from_secs(3)));
    let boxed: BoxError = Box::new(err);
    assert_eq!(
        classify(boxed.as_ref()).retry_after(),
        Some(Duration::from_secs(3))
    );

    // Any std error: classified from its chain.
    let err = with(&d, || {
        let _g = info_span!("op").entered();
        TracedError::from_error(std::io::Error::from(std::io::ErrorKind::TimedOut))
    });
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[test]
fn sampled_out_traces_still_give_the_operation_chain() {
    let (d, h) = dispatch(TraceConfig::default().with_sample_rate(0.0));
    let err = with(&d, || {
        let _g = info_span!("request", correlation_id = "nope").entered();
        let _s = info_span!("call_model").entered();
        tracing::info!("not recorded");
        ToolError::Timeout("m").in_current_trace()
    });
    let t = err.trace().unwrap();
    assert!(!t.recorded);
    assert_eq!(t.outline(), ["request", "  call_model", "    - error"]);
    assert_eq!(t.correlation_id, "nope");
    assert!(err.to_string().contains("sampled out"));
    assert!(h.store().is_empty());
}

#[test]
fn without_a_span_there_is_no_trace_but_the_error_is_intact() {
    let (d, _h) = dispatch(TraceConfig::default());
    let err = with(&d, || ToolError::Timeout("z").in_current_trace());
    assert!(err.trace().is_none());
    assert_eq!(err.to_string(), "tool z timed out");
    let err = ToolError::Timeout("z").in_current_trace(); // no subscriber at all
    assert!(err.trace().is_none());
    assert_eq!(err.into_inner().to_string(), "tool z timed out");
}

#[tokio::test]
async fn a_failure_already_recorded_is_marked_not_repeated() {
    let (d, _h) = dispatch(TraceConfig::default());
    let _default = tracing::dispatcher::set_default(&d);
    async fn flow() -> Result<(), TracedError<Classified>> {
        foundation_trace::measure_step("call model", serde_json::json!({"model": "m"}), async {
            Err::<(), _>(Classified::new(ErrorKind::Transient, "503 from provider"))
        })
        .await?;
        Ok(())
    }
    let err = flow().instrument(info_span!("request")).await.unwrap_err();
    let t = err.trace().unwrap();
    assert_eq!(
        t.outline(),
        ["request", "  call model", "    - step failed"]
    );
    assert_eq!(t.steps.iter().filter(|s| s.failed).count(), 1);
    assert_eq!(t.failing_step, Some(t.steps[0].seq));
    assert_eq!(err.kind(), ErrorKind::Transient);
}
