//! The layer under a per-layer filter and as clones in several subscribers:
//! each span's record is found through the parent this layer sees, and span
//! ids of different subscribers never mix.

mod support;

use foundation_trace::{TraceConfig, TraceLayer, Value};
use tracing::{Dispatch, info_span};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn filtered_spans_are_skipped_and_their_children_attach_to_the_nearest_seen_ancestor() {
    let layer = TraceLayer::new(TraceConfig::default()).unwrap();
    let h = layer.handle();
    let d = Dispatch::new(
        tracing_subscriber::registry().with(layer.with_filter(filter_fn(|m| m.name() != "hidden"))),
    );
    support::with(&d, || {
        let _root = info_span!("request", correlation_id = "filtered").entered();
        let _hidden = info_span!("hidden").entered();
        let _child = info_span!("child").entered();
        tracing::info!(n = 1u64, "inside");
    });
    let t = h.store().find("filtered").expect("trace kept");
    assert_eq!(t.outline(), ["request", "  child", "    - inside"]);
    assert_eq!(t.steps[0].field("n"), Some(&Value::U64(1)));
    assert!(t.operations.iter().all(|o| o.end.is_some()));
}

#[test]
fn a_clone_in_another_subscriber_keeps_its_own_span_records() {
    let layer = TraceLayer::new(TraceConfig::default()).unwrap();
    let h = layer.handle();
    let a = Dispatch::new(tracing_subscriber::registry().with(layer.clone()));
    let b = Dispatch::new(tracing_subscriber::registry().with(layer));
    // Both registries hand out the same span ids; the traces interleave.
    let ra = support::with(&a, || info_span!("a", correlation_id = "a"));
    let rb = support::with(&b, || info_span!("b", correlation_id = "b"));
    assert_eq!(ra.id(), rb.id());
    for i in 0..3u64 {
        support::with(&a, || ra.in_scope(|| tracing::info!(i, "in a")));
        support::with(&b, || rb.in_scope(|| tracing::info!(i, "in b")));
    }
    support::with(&a, || drop(ra));
    support::with(&b, || drop(rb));
    for name in ["a", "b"] {
        let t = h.store().find(name).expect("trace kept");
        assert_eq!(t.name(), name);
        let steps: Vec<String> = t.steps.iter().map(|s| s.name.to_string()).collect();
        assert_eq!(
            steps,
            [
                format!("in {name}"),
                format!("in {name}"),
                format!("in {name}")
            ]
        );
    }
}

#[test]
fn events_go_to_the_span_the_registry_calls_current_even_with_reentry_and_out_of_order_exits() {
    let (d, h) = support::dispatch(TraceConfig::default());
    support::with(&d, || {
        let root = info_span!("root", correlation_id = "stack");
        let child = info_span!(parent: &root, "child");
        let other = info_span!(parent: &root, "other");
        let g_root = root.enter();
        let g_child = child.enter();
        // Entering an entered span again does not make it current.
        let g_again = root.enter();
        assert_eq!(tracing::Span::current().id(), child.id());
        tracing::info!("after re-entry");
        drop(g_again);
        // Exits out of order: `child` leaves while `other` stays current.
        let g_other = other.enter();
        drop(g_child);
        assert_eq!(tracing::Span::current().id(), other.id());
        tracing::info!("after out-of-order exit");
        drop(g_other);
        tracing::info!("in root");
        drop(g_root);
    });
    let t = h.store().find("stack").expect("trace kept");
    let homes: Vec<(String, String)> = t
        .steps
        .iter()
        .map(|s| {
            let op = s.operation.and_then(|o| t.operation(o)).unwrap();
            (s.name.to_string(), op.name.to_string())
        })
        .collect();
    let expected = [
        ("after re-entry", "child"),
        ("after out-of-order exit", "other"),
        ("in root", "root"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    assert_eq!(homes, expected);
}

/// A value whose `Debug` logs an event itself.
struct Chatty;

impl std::fmt::Debug for Chatty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        tracing::info!("from debug");
        f.write_str("chatty")
    }
}

// `tracing` does not dispatch an event raised inside a subscriber callback
// (here: while the layer formats a field), so only the outer event is seen;
// capturing it must neither deadlock nor lose the current span's record.
#[test]
fn an_event_logged_while_another_is_captured_does_not_disturb_the_capture() {
    let (d, h) = support::dispatch(TraceConfig::default());
    support::with(&d, || {
        let _root = info_span!("root", correlation_id = "nested").entered();
        let _child = info_span!("child").entered();
        tracing::info!(value = ?Chatty, "outer");
        tracing::info!("after");
    });
    let t = h.store().find("nested").expect("trace kept");
    assert_eq!(
        t.outline(),
        ["root", "  child", "    - outer", "    - after"]
    );
    assert_eq!(
        t.steps[0].field("value").and_then(Value::as_str),
        Some("chatty")
    );
}
