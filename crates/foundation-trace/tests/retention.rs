//! Finished traces are kept as configured; memory stays bounded.

mod support;

use foundation_trace::{RetentionConfig, TraceConfig};
use support::{dispatch, with};
use tracing::info_span;

#[allow(clippy::unwrap_used, reason = "test helper, fails loudly")]
fn run(d: &tracing::Dispatch, n: u64, fail_every: u64) {
    with(d, || {
        for i in 0..n {
            let _g = info_span!("op", i).entered();
            let _s = info_span!("inner").entered();
            tracing::info!(i, "work");
            if fail_every > 0 && i % fail_every == 0 {
                tracing::error!(i, "failed");
            }
        }
    });
}

#[test]
fn store_stays_bounded_over_100k_operations() {
    let (d, h) = dispatch(TraceConfig::default().with_retention(RetentionConfig {
        max_failed: 50,
        max_successful: 20,
        successful_sample_rate: 0.5,
    }));
    let mut sizes = Vec::new();
    for _ in 0..10 {
        run(&d, 10_000, 7);
        sizes.push(h.store().len());
    }
    let stats = h.store().stats();
    assert_eq!(stats.completed, 100_000);
    // Full after the first round and flat from then on.
    assert!(sizes.iter().all(|&s| s == 70), "{sizes:?}");
    assert_eq!(stats.failed_len, 50);
    assert_eq!(stats.successful_len, 20);
    let failed = 10 * 10_000u64.div_ceil(7); // i % 7 == 0 in each round
    let successful = 100_000 - failed;
    assert_eq!(stats.not_sampled, successful / 2);
    assert_eq!(stats.kept, failed + successful / 2);
    assert_eq!(stats.evicted, stats.kept - 70);
    // The most recent ones are kept.
    let last = h.store().failed().pop().unwrap();
    assert_eq!(
        last.operations[0].field("i").and_then(|v| v.as_u64()),
        Some(9_996)
    );
}

#[test]
fn failed_only_keeps_no_successes() {
    let (d, h) = dispatch(TraceConfig::default().with_retention(RetentionConfig::failed_only(5)));
    run(&d, 100, 10);
    assert_eq!(h.store().successful().len(), 0);
    assert_eq!(h.store().failed().len(), 5);
    assert!(h.store().all().iter().all(|t| t.is_failed()));
}

#[test]
fn head_sampling_records_the_configured_fraction() {
    let (d, h) = dispatch(
        TraceConfig::default()
            .with_sample_rate(0.25)
            .with_retention(RetentionConfig::last(1000)),
    );
    run(&d, 400, 0);
    assert_eq!(h.store().stats().completed, 100);
    assert_eq!(h.store().len(), 100);
}

#[test]
fn reconfiguration_applies_at_once_and_rejects_bad_values() {
    let (d, h) = dispatch(TraceConfig::default().with_retention(RetentionConfig::last(100)));
    run(&d, 50, 0);
    assert_eq!(h.store().len(), 50);
    h.reconfigure(TraceConfig::default().with_retention(RetentionConfig::last(10)))
        .unwrap();
    assert_eq!(h.store().len(), 10);
    run(&d, 50, 0);
    assert_eq!(h.store().len(), 10);
    let err = h
        .reconfigure(TraceConfig::default().with_sample_rate(2.0))
        .unwrap_err();
    assert!(err.has_error_at("sample_rate"));
    assert_eq!(h.config().retention.max_successful, 10);
}
