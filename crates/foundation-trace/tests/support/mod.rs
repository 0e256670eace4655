//! Shared helpers for the integration tests.
#![allow(dead_code, reason = "each test file uses a different subset")]
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use foundation_trace::{TraceConfig, TraceHandle, TraceLayer};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

/// A dispatcher with a `TraceLayer` on a registry, and the layer's handle.
pub(crate) fn dispatch(config: TraceConfig) -> (Dispatch, TraceHandle) {
    let layer = TraceLayer::new(config).unwrap();
    let handle = layer.handle();
    (
        Dispatch::new(tracing_subscriber::registry().with(layer)),
        handle,
    )
}

/// Like [`dispatch`], with tokio's clock so paused time drives timestamps.
pub(crate) fn dispatch_tokio_clock(config: TraceConfig) -> (Dispatch, TraceHandle) {
    let layer = TraceLayer::builder()
        .with_config(config)
        .with_clock(foundation_core::TokioClock)
        .build()
        .unwrap();
    let handle = layer.handle();
    (
        Dispatch::new(tracing_subscriber::registry().with(layer)),
        handle,
    )
}

/// Runs `f` with `d` as the thread's default dispatcher.
pub(crate) fn with<T>(d: &Dispatch, f: impl FnOnce() -> T) -> T {
    tracing::dispatcher::with_default(d, f)
}
