//! The behaviour suite on the in-memory backend.
mod support;

use std::sync::Arc;

use foundation_events::{MemoryStore, SchemaRegistry};

async fn make(registry: Option<Arc<SchemaRegistry>>) -> (MemoryStore, ()) {
    let s = MemoryStore::new();
    (
        match registry {
            Some(r) => s.with_registry(r),
            None => s,
        },
        (),
    )
}

async fn cleanup(_: ()) {}

behaviour_suite!(make, cleanup);

#[tokio::test]
async fn schemas_with_registry() {
    let (s, ()) = make(Some(support::registry())).await;
    support::schemas_reject_and_upcasters_upgrade(s).await;
}

#[test]
fn appends_are_counted_through_the_metrics_facade() {
    use foundation_events::{EventStore, ExpectedVersion, NewEvent};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = MemoryStore::new();
            let st = support::stream("m");
            let batch = vec![
                NewEvent::new("t", serde_json::json!({})),
                NewEvent::new("t", serde_json::json!({})),
            ];
            s.append(&st, ExpectedVersion::NoStream, batch.clone())
                .await
                .unwrap();
            s.append(&st, ExpectedVersion::NoStream, batch)
                .await
                .unwrap(); // idempotent retry
            let _ = s
                .append(
                    &st,
                    ExpectedVersion::NoStream,
                    vec![NewEvent::new("t", serde_json::json!({}))],
                )
                .await;
        });
    });
    let mut counts = std::collections::HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let DebugValue::Counter(n) = value {
            let label = key
                .key()
                .labels()
                .map(|l| l.value().to_owned())
                .next()
                .unwrap_or_default();
            counts.insert(format!("{}{{{label}}}", key.key().name()), n);
        }
    }
    assert_eq!(counts["foundation_events_appends_total{ok}"], 1);
    assert_eq!(counts["foundation_events_appends_total{duplicate}"], 1);
    assert_eq!(counts["foundation_events_appends_total{conflict}"], 1);
    assert_eq!(counts["foundation_events_appended_events_total{}"], 2);
}
