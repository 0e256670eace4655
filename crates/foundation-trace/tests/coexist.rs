//! The layer shares the registry with other layers that keep per-span data
//! in extensions (as `tracing-opentelemetry` does with `OtelData`), and with
//! `#[instrument(err)]`.

mod support;

use foundation_core::{Classified, ErrorKind};
use foundation_trace::{TraceConfig, TraceLayer};
use support::with;
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Stands in for `tracing-opentelemetry`: its own extension per span, read
/// back at close.
#[derive(Debug, Default)]
struct OtherLayer(parking_lot::Mutex<Vec<(String, u64)>>);

struct OtherData {
    name: String,
    events: u64,
}

#[allow(clippy::unwrap_used, reason = "a test layer fails loudly")]
impl<S> tracing_subscriber::Layer<S> for &'static OtherLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        span.extensions_mut().insert(OtherData {
            name: attrs.metadata().name().to_owned(),
            events: 0,
        });
    }
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.event_span(event)
            && let Some(d) = span.extensions_mut().get_mut::<OtherData>()
        {
            d.events += 1;
        }
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let ext = span.extensions();
        let d = ext.get::<OtherData>().unwrap();
        self.0.lock().push((d.name.clone(), d.events));
    }
}

#[test]
fn both_layers_see_every_span_with_their_own_data() {
    let other: &'static OtherLayer = Box::leak(Box::default());
    let layer = TraceLayer::new(TraceConfig::default()).unwrap();
    let h = layer.handle();
    // Order does not matter; put the other layer on either side.
    let d = tracing::Dispatch::new(tracing_subscriber::registry().with(other).with(layer));
    with(&d, || {
        let _g = tracing::info_span!("request", correlation_id = "both").entered();
        let _c = tracing::info_span!("call").entered();
        tracing::info!("one");
        tracing::info!("two");
    });
    assert_eq!(
        *other.0.lock(),
        [("call".to_owned(), 2), ("request".to_owned(), 0)]
    );
    let t = h.store().find("both").unwrap();
    assert_eq!(t.outline(), ["request", "  call", "    - one", "    - two"]);
}

#[tracing::instrument(err)]
fn flaky(n: u64) -> Result<u64, Classified> {
    tracing::info!(n, "trying");
    Err(Classified::new(ErrorKind::Transient, "reset by peer"))
}

#[test]
fn instrument_err_marks_the_failing_step() {
    let (d, h) = support::dispatch(TraceConfig::default());
    with(&d, || {
        let _g = tracing::info_span!("request", correlation_id = "ie").entered();
        let _ = flaky(3);
    });
    let t = h.store().find("ie").unwrap();
    assert!(t.is_failed());
    let failed = t.failed_step().unwrap();
    assert_eq!(
        failed.field("error").unwrap().as_str(),
        Some("reset by peer")
    );
    assert_eq!(
        t.operation(failed.operation.unwrap()).unwrap().name,
        "flaky"
    );
    assert!(t.operations[1].failed);
}
