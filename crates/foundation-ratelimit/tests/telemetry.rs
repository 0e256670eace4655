//! Telemetry through the `metrics` facade (captured with metrics-util's
//! debugging recorder) and live configuration through `Reloadable`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod support;

use std::time::Duration;

use foundation_core::Reloadable;
use foundation_ratelimit::{Charge, DimensionConfig, LimiterConfig};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[test]
fn denials_remaining_and_waits_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let (limiter, _clock) = support::manual(support::rpm_tpm(60, 1_000));
        limiter.check(Charge::from([1, 1_000])).unwrap();
        assert!(limiter.check(Charge::from([1, 1])).is_err());
        assert!(limiter.check(Charge::from([1, 1])).is_err());
        let _ = limiter.snapshot();
    });
    let metrics = snapshotter.snapshot().into_vec();
    let find = |name: &str, dim: &str| {
        metrics
            .iter()
            .find(|(k, _, _, _)| {
                k.key().name() == name
                    && k.key()
                        .labels()
                        .any(|l| l.key() == "dimension" && l.value() == dim)
            })
            .map(|(_, _, _, v)| v)
    };
    assert_eq!(
        find("foundation_ratelimit_denied_total", "tokens"),
        Some(&DebugValue::Counter(2))
    );
    assert_eq!(
        find("foundation_ratelimit_denied_total", "requests"),
        Some(&DebugValue::Counter(0))
    );
    match find("foundation_ratelimit_remaining", "requests") {
        Some(DebugValue::Gauge(g)) => assert_eq!(g.into_inner(), 59.0),
        other => panic!("remaining gauge: {other:?}"),
    }
}

#[test]
fn waits_are_recorded_in_the_histogram() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    // Handles are taken when the limiter is built, so only that needs the recorder.
    let limiter = rt.block_on(async {
        metrics::with_local_recorder(&recorder, || {
            support::tokio_clock(
                LimiterConfig::new().with_dimension(DimensionConfig::per_second("tokens", 100)),
            )
        })
    });
    rt.block_on(async {
        let _ = limiter.acquire(Charge::from([100])).await.unwrap();
        let _ = limiter.acquire(Charge::from([50])).await.unwrap();
    });
    let waits: Vec<f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(k, _, _, _)| k.key().name() == "foundation_ratelimit_wait_seconds")
        .map(|(_, _, _, v)| match v {
            DebugValue::Histogram(h) => h.into_iter().map(|f| f.into_inner()).collect(),
            other => panic!("{other:?}"),
        })
        .unwrap();
    assert_eq!(waits, [0.0, 0.5]);
}

#[tokio::test(start_paused = true)]
async fn follows_a_live_configuration() {
    let cfg = LimiterConfig::new().with_dimension(DimensionConfig::per_second("tokens", 100));
    let live = Reloadable::new(cfg).unwrap();
    let limiter = support::tokio_clock(live.load().as_ref().clone());
    let task = tokio::spawn(limiter.clone().follow(live.clone()));
    let _ = limiter.try_acquire(Charge::from([100])).unwrap();
    live.update(LimiterConfig::new().with_dimension(DimensionConfig::per_second("tokens", 1_000)))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(limiter.config().dimensions[0].limit, 1_000);
    // A change of dimensions is refused; the limiter keeps going.
    live.update(LimiterConfig::new().with_dimension(DimensionConfig::per_second("other", 5)))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(limiter.config().dimensions[0].name, "tokens");
    task.abort();
}
