//! The behaviour suite on the in-memory backend.
mod support;

use std::sync::Arc;

use foundation_events::{MemoryStore, SchemaRegistry};

async fn make(registry: Option<Arc<SchemaRegistry>>) -> (MemoryStore, ()) {
    let s = MemoryStore::new();
    (match registry { Some(r) => s.with_registry(r), None => s }, ())
}

async fn cleanup(_: ()) {}

behaviour_suite!(make, cleanup);

#[tokio::test]
async fn schemas_with_registry() {
    let (s, ()) = make(Some(support::registry())).await;
    support::schemas_reject_and_upcasters_upgrade(s).await;
}
