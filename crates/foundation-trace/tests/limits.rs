//! Per-value and per-trace limits cut with a marker, never silently.

mod support;

use foundation_trace::{LimitsConfig, TraceConfig, Value};
use support::{dispatch, with};
use tracing::info_span;

fn limits(max_steps: usize, max_value_bytes: usize, max_trace_bytes: usize) -> TraceConfig {
    TraceConfig::default().with_limits(LimitsConfig {
        max_steps,
        max_operations: 4,
        max_value_bytes,
        max_trace_bytes,
    })
}

#[test]
fn long_values_are_truncated_with_a_marker() {
    let (d, h) = dispatch(limits(100, 32, 10_000));
    let long = "é".repeat(100); // 200 bytes, multi-byte chars
    with(&d, || {
        let _g = info_span!("r", correlation_id = "t").entered();
        tracing::info!(completion = long.as_str(), short = "ok", "answer");
    });
    let t = h.store().find("t").unwrap();
    let Some(Value::Truncated {
        head,
        original_bytes,
    }) = t.steps[0].field("completion")
    else {
        panic!("truncated value expected: {:?}", t.steps[0]);
    };
    assert_eq!(*original_bytes, 200);
    assert!(head.len() <= 32 && head.chars().all(|c| c == 'é'));
    assert_eq!(t.steps[0].field("short"), Some(&Value::Str("ok".into())));
    assert_eq!(t.dropped.truncated_values, 1);
    assert!(t.to_string().contains("[truncated, 200 bytes]"));
    assert!(
        t.to_string()
            .contains("limits cut 0 steps, 0 operations, 1 values")
    );
    assert_eq!(
        t.to_json()["steps"][0]["attributes"]["completion"]["original_bytes"],
        200
    );
}

#[test]
fn step_and_operation_caps_count_what_they_drop() {
    let (d, h) = dispatch(limits(10, 64, 10_000));
    with(&d, || {
        let _g = info_span!("r", correlation_id = "caps").entered();
        for i in 0..50u64 {
            tracing::info!(i, "step");
        }
        for _ in 0..6 {
            let _s = info_span!("child").entered();
        }
        tracing::error!("the failure");
    });
    let t = h.store().find("caps").unwrap();
    assert_eq!(
        t.steps.len(),
        11,
        "10 steps plus the error from the reserve"
    );
    assert_eq!(t.dropped.steps, 40);
    assert_eq!(t.operations.len(), 4);
    assert_eq!(t.dropped.operations, 3);
    assert_eq!(t.failed_step().unwrap().name, "the failure");
    assert!(t.is_failed());
    assert!(t.to_string().contains("limits cut 40 steps, 3 operations"));
}

#[test]
fn trace_byte_budget_marks_values_beyond_it() {
    let (d, h) = dispatch(limits(1000, 64, 256));
    let chunk = "x".repeat(60);
    with(&d, || {
        let _g = info_span!("r", correlation_id = "bytes").entered();
        for _ in 0..10 {
            tracing::info!(data = chunk.as_str(), "chunk");
        }
    });
    let t = h.store().find("bytes").unwrap();
    let kept = t
        .steps
        .iter()
        .filter(|s| matches!(s.field("data"), Some(Value::Str(_))))
        .count();
    assert_eq!(kept, 4, "256 bytes hold four 60-byte values");
    let cut = &t.steps[9];
    assert_eq!(
        cut.field("data"),
        Some(&Value::Truncated {
            head: String::new(),
            original_bytes: 60
        })
    );
    assert_eq!(t.dropped.truncated_values, 6);
}
