//! Baselines: a shifted distribution regresses, a resample does not.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_core::ManualClock;
use foundation_metrics::MetricsRecorder;
use foundation_metrics::baseline::{
    Baseline, BaselineMonitor, Thresholds, Verdict, compare, ks_distance,
};
use foundation_metrics::sketch::Sketch;
use support::Rng;

fn llm(seed: u64, n: usize, scale: f64) -> Sketch {
    let mut rng = Rng::new(seed);
    Sketch::from_samples((0..n).map(|_| rng.llm_latency() * scale))
}

#[test]
fn resample_of_the_same_distribution_is_not_a_regression() {
    let t = Thresholds::default();
    for seed in 0..20 {
        let c = compare(
            &llm(1000 + seed, 20_000, 1.0),
            &llm(2000 + seed, 5_000, 1.0),
            &t,
        );
        assert_eq!(c.verdict, Verdict::Ok, "seed {seed}: {c:?}");
    }
}

#[test]
fn shifted_distribution_is_a_regression() {
    let t = Thresholds::default();
    let c = compare(&llm(1, 20_000, 1.0), &llm(2, 5_000, 1.4), &t);
    let Verdict::Regressed { reasons } = &c.verdict else {
        panic!("{c:?}")
    };
    assert!(
        reasons.iter().any(|r| r.starts_with("p50 ratio")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("KS distance")),
        "{reasons:?}"
    );
    // Slow generations alone getting twice as slow: the median and KS barely
    // move (5% of the mass), the p99 ratio catches it.
    let mut rng = Rng::new(3);
    let tail = Sketch::from_samples((0..5_000).map(|_| {
        let v = rng.llm_latency();
        if v > 3.0 { v * 2.0 } else { v }
    }));
    let c = compare(&llm(1, 20_000, 1.0), &tail, &t);
    let Verdict::Regressed { reasons } = &c.verdict else {
        panic!("{c:?}")
    };
    assert!(
        reasons.iter().all(|r| r.starts_with("p99 ratio")),
        "{reasons:?}"
    );
    // Faster is not a regression.
    assert!(!compare(&llm(1, 20_000, 1.0), &llm(4, 5_000, 0.6), &t).is_regression());
}

#[test]
fn few_samples_never_alarm() {
    let c = compare(
        &llm(1, 20_000, 1.0),
        &llm(2, 50, 5.0),
        &Thresholds::default(),
    );
    assert!(
        matches!(
            c.verdict,
            Verdict::InsufficientData {
                current: 50,
                needed: 200,
                ..
            }
        ),
        "{c:?}"
    );
}

#[test]
fn ks_distance_matches_exact_statistic() {
    let a = llm(5, 3000, 1.0);
    assert_eq!(ks_distance(&a, &a), 0.0);
    let b = llm(6, 3000, 2.0);
    let d = ks_distance(&a, &b);
    assert!(d > 0.3 && d <= 1.0, "{d}");
}

#[test]
fn baselines_round_trip_through_json_files() {
    let dir = std::env::temp_dir().join(format!("fm-baseline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("b.json");
    let b = Baseline::new("llm_latency_seconds", &[("model", "m")], llm(7, 1000, 1.0));
    b.save(&path).unwrap();
    assert_eq!(Baseline::load(&path).unwrap(), b);
    let err = Baseline::from_json("{\"metric\": 1}").unwrap_err();
    assert!(err.to_string().starts_with("baseline decode"), "{err}");
    assert!(Baseline::load(&dir.join("missing.json")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn monitor_reports_through_callback_stream_and_metric() {
    let clock = ManualClock::new();
    let recorder = MetricsRecorder::builder()
        .with_clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let handle = recorder.handle();
    let mut rng = Rng::new(8);
    metrics::with_local_recorder(&recorder, || {
        for _ in 0..5000 {
            metrics::histogram!("llm_latency_seconds", "model" => "m").record(rng.llm_latency());
        }
    });
    let baseline =
        Baseline::capture(&handle, "llm_latency_seconds", &[("model", "m")], None).unwrap();
    let monitor = BaselineMonitor::new(handle.clone());
    monitor
        .watch(baseline, Thresholds::default(), Duration::from_secs(60))
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    monitor.on_regression(move |r| s2.lock().unwrap().push(r.metric.clone()));
    let mut stream = monitor.subscribe();

    // Next minute: same behaviour. No regression.
    clock.advance(Duration::from_secs(70));
    handle.run_upkeep();
    metrics::with_local_recorder(&recorder, || {
        for _ in 0..2000 {
            metrics::histogram!("llm_latency_seconds", "model" => "m").record(rng.llm_latency());
        }
        assert!(monitor.check().is_empty());
    });
    // Then the model slows down by half.
    clock.advance(Duration::from_secs(70));
    handle.run_upkeep();
    let found = metrics::with_local_recorder(&recorder, || {
        for _ in 0..2000 {
            metrics::histogram!("llm_latency_seconds", "model" => "m")
                .record(rng.llm_latency() * 1.5);
        }
        monitor.check()
    });
    assert_eq!(found.len(), 1);
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["llm_latency_seconds".to_owned()]
    );
    assert_eq!(stream.try_recv().unwrap().metric, "llm_latency_seconds");
    assert_eq!(
        handle.counter(
            "foundation_metrics_baseline_regressions_total",
            &[("metric", "llm_latency_seconds")]
        ),
        Some(1)
    );
    assert_eq!(
        handle.gauge(
            "foundation_metrics_baseline_regressed",
            &[("metric", "llm_latency_seconds")]
        ),
        Some(1.0)
    );
    let bad = Thresholds {
        max_ratio: 0.5,
        ..Thresholds::default()
    };
    assert!(
        monitor
            .watch(
                Baseline::new("x", &[], Sketch::new()),
                bad,
                Duration::from_secs(1)
            )
            .unwrap_err()
            .has_error_at("max_ratio")
    );
}
