//! The recorder through the `metrics` facade: cardinality limits, idle
//! expiry, exposition validity, runtime reconfiguration, cost queries.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use foundation_core::{Cost, ManualClock, Tokens};
use foundation_metrics::config::{Exposition, Matcher, MetricRule, OverflowPolicy, RecorderConfig};
use foundation_metrics::cost::{CostQuery, Dimension, Filter, Usage, record_usage};
use foundation_metrics::sketch::Quantile;
use foundation_metrics::{MetricsHandle, MetricsRecorder};
use support::{Rng, promtext};

fn recorder(config: RecorderConfig, clock: &ManualClock) -> (MetricsRecorder, MetricsHandle) {
    let r = MetricsRecorder::builder()
        .with_config(config)
        .with_clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let h = r.handle();
    (r, h)
}

#[test]
fn cardinality_is_bounded_over_100k_label_sets() {
    let clock = ManualClock::new();
    let config = RecorderConfig {
        cardinality_limit: 1000,
        ..RecorderConfig::default()
    };
    let (r, h) = recorder(config, &clock);
    metrics::with_local_recorder(&r, || {
        for i in 0..1000u32 {
            metrics::histogram!("req_seconds", "user" => i.to_string()).record(0.1);
        }
    });
    let bytes_at_limit = h.allocated_bytes();
    metrics::with_local_recorder(&r, || {
        for i in 1000..100_000u32 {
            metrics::histogram!("req_seconds", "user" => i.to_string()).record(0.2);
        }
    });
    // 1000 series plus one overflow series, and memory did not grow with
    // the 99 000 extra label sets.
    assert_eq!(h.series_count(), 1001);
    assert!(
        h.allocated_bytes() <= bytes_at_limit + bytes_at_limit / 100,
        "{} > {bytes_at_limit}",
        h.allocated_bytes()
    );
    let overflow = h.snapshot("req_seconds", &[("overflow", "true")]).unwrap();
    assert_eq!(overflow.count(), 99_000);
    let total: u64 = h
        .series("req_seconds")
        .iter()
        .map(|s| match &s.value {
            foundation_metrics::SeriesValue::Histogram(x) => x.count(),
            _ => 0,
        })
        .sum();
    assert_eq!(total, 100_000, "folding loses no sample");
    let text = h.render();
    assert!(
        text.contains("foundation_metrics_series_folded_total{metric=\"req_seconds\"} 99000"),
        "{}",
        &text[text.len().saturating_sub(600)..]
    );
    promtext::parse(&text).unwrap();
}

#[test]
fn reject_policy_drops_and_counts() {
    let clock = ManualClock::new();
    let config = RecorderConfig {
        cardinality_limit: 10,
        overflow: OverflowPolicy::Reject,
        metrics: vec![MetricRule {
            matcher: Matcher::Full("wide".into()),
            buckets: None,
            exposition: None,
            cardinality_limit: Some(3),
            windows: None,
        }],
        ..RecorderConfig::default()
    };
    let (r, h) = recorder(config, &clock);
    metrics::with_local_recorder(&r, || {
        for i in 0..20u32 {
            metrics::counter!("wide", "k" => i.to_string()).increment(1);
            metrics::counter!("narrow", "k" => i.to_string()).increment(1);
        }
    });
    assert_eq!(h.series("wide").len(), 3);
    assert_eq!(h.series("narrow").len(), 10);
    let text = h.render();
    assert!(
        text.contains("foundation_metrics_series_rejected_total{metric=\"wide\"} 17"),
        "{text}"
    );
    assert!(
        text.contains("foundation_metrics_series_rejected_total{metric=\"narrow\"} 10"),
        "{text}"
    );
    promtext::parse(&text).unwrap();
}

#[test]
fn idle_series_expire_unless_held() {
    let clock = ManualClock::new();
    let config = RecorderConfig {
        idle_timeout: Some(Duration::from_secs(60)),
        ..RecorderConfig::default()
    };
    let (r, h) = recorder(config, &clock);
    let held = metrics::with_local_recorder(&r, || {
        metrics::histogram!("lat_seconds", "model" => "old").record(1.0);
        metrics::counter!("calls", "model" => "old").increment(1);
        metrics::gauge!("inflight").set(3.0);
        metrics::histogram!("lat_seconds", "model" => "held")
    });
    held.record(0.5);
    assert_eq!(h.series_count(), 4);
    h.run_upkeep();
    clock.advance(Duration::from_secs(30));
    metrics::with_local_recorder(&r, || metrics::gauge!("inflight").set(2.0));
    h.run_upkeep();
    clock.advance(Duration::from_secs(45));
    let report = h.run_upkeep();
    assert_eq!(report.expired, 2, "idle histogram and counter go");
    assert!(h.snapshot("lat_seconds", &[("model", "old")]).is_none());
    assert_eq!(
        h.gauge("inflight", &[]),
        Some(2.0),
        "recently set gauge stays"
    );
    // A handle someone holds is never expired, so its samples are never lost.
    clock.advance(Duration::from_secs(600));
    h.run_upkeep();
    held.record(0.7);
    assert_eq!(
        h.snapshot("lat_seconds", &[("model", "held")])
            .unwrap()
            .count(),
        2
    );
    assert!(h.gauge("inflight", &[]).is_none());
    // An expired name can be registered again, under the limit as before.
    metrics::with_local_recorder(&r, || {
        metrics::counter!("calls", "model" => "old").increment(5)
    });
    assert_eq!(h.counter("calls", &[("model", "old")]), Some(5));
}

#[test]
fn exposition_is_valid_and_matches_the_data() {
    let clock = ManualClock::new();
    let config = RecorderConfig {
        metrics: vec![MetricRule {
            matcher: Matcher::Full("queue_wait_seconds".into()),
            buckets: None,
            exposition: Some(Exposition::Summary),
            cardinality_limit: None,
            windows: None,
        }],
        ..RecorderConfig::default()
    };
    let (r, h) = recorder(config, &clock);
    let mut rng = Rng::new(9);
    metrics::with_local_recorder(&r, || {
        metrics::describe_histogram!(
            "llm_latency_seconds",
            metrics::Unit::Seconds,
            "Latency of model calls.\nEnd to end."
        );
        for _ in 0..10_000 {
            let v = rng.llm_latency();
            metrics::histogram!("llm_latency_seconds", "model" => "big", "le" => "x").record(v);
            metrics::histogram!("queue_wait_seconds").record(v / 10.0);
        }
        metrics::counter!("http.requests", "path" => "/a\"b\\c\nd", "__bad" => "1").increment(3);
        metrics::gauge!("temperature", "where" => "é").set(-1.5);
        metrics::histogram!("weird").record(f64::NAN);
        metrics::histogram!("weird").record(1.0);
        metrics::gauge!("llm_latency_seconds").set(1.0); // kind conflict: refused
    });
    let text = h.render();
    let families = promtext::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let lat = families
        .iter()
        .find(|f| f.name == "llm_latency_seconds")
        .unwrap();
    assert_eq!(lat.kind, "histogram");
    assert!(lat.help.as_deref().unwrap().contains("End to end."));
    let labels = [("model", "big"), ("exported_le", "x")];
    let count = lat.sample("llm_latency_seconds_count", &labels).unwrap();
    assert_eq!(count, 10_000.0);
    let le1 = lat
        .sample(
            "llm_latency_seconds_bucket",
            &[("model", "big"), ("exported_le", "x"), ("le", "1")],
        )
        .unwrap();
    // ~95% of LLM-like calls finish within 1 s.
    assert!((0.85..0.97).contains(&(le1 / count)), "{le1}");
    let wait = families
        .iter()
        .find(|f| f.name == "queue_wait_seconds")
        .unwrap();
    assert_eq!(wait.kind, "summary");
    let p99 = wait
        .sample("queue_wait_seconds", &[("quantile", "0.99")])
        .unwrap();
    assert!((0.5..0.9).contains(&p99), "{p99}");
    let c = families
        .iter()
        .find(|f| f.name == "http_requests_total")
        .unwrap();
    assert_eq!(c.kind, "counter");
    assert_eq!(
        c.sample(
            "http_requests_total",
            &[("path", "/a\"b\\c\nd"), ("exported__bad", "1")]
        ),
        Some(3.0)
    );
    assert!(text.contains("foundation_metrics_invalid_samples_total{metric=\"weird\"} 1"));
    assert!(text.contains("foundation_metrics_kind_conflicts_total 1"));
}

#[test]
fn buckets_can_change_at_runtime_without_losing_history() {
    let clock = ManualClock::new();
    let (r, h) = recorder(RecorderConfig::default(), &clock);
    metrics::with_local_recorder(&r, || {
        for i in 0..100 {
            metrics::histogram!("job_seconds").record(f64::from(i / 10 * 10 + 5));
        }
    });
    assert!(h.render().contains("job_seconds_bucket{le=\"30\"} 30"));
    assert!(h.render().contains("job_seconds_bucket{le=\"60\"} 60"));
    h.config()
        .update_with(|c| {
            let mut c = c.clone();
            c.metrics.push(MetricRule {
                matcher: Matcher::Full("job_seconds".into()),
                buckets: Some(vec![50.0, 80.0]),
                exposition: None,
                cardinality_limit: None,
                windows: None,
            });
            c
        })
        .unwrap();
    let text = h.render();
    assert!(text.contains("job_seconds_bucket{le=\"50\"} 50"), "{text}");
    assert!(text.contains("job_seconds_bucket{le=\"80\"} 80"), "{text}");
    promtext::parse(&text).unwrap();
    // Invalid updates are refused and the old config stays.
    let bad = h.config().update_with(|c| RecorderConfig {
        cardinality_limit: 0,
        ..c.clone()
    });
    assert!(bad.unwrap_err().has_error_at("cardinality_limit"));
}

#[test]
fn queries_find_series_in_any_label_order_and_windows_move() {
    let clock = ManualClock::new();
    let (r, h) = recorder(RecorderConfig::default(), &clock);
    metrics::with_local_recorder(&r, || {
        for _ in 0..100 {
            metrics::histogram!("rt_seconds", "a" => "1", "b" => "2").record(2.0);
        }
    });
    clock.advance(Duration::from_secs(300));
    h.run_upkeep();
    metrics::with_local_recorder(&r, || {
        for _ in 0..10 {
            metrics::histogram!("rt_seconds", "a" => "1", "b" => "2").record(0.5);
        }
    });
    let held = h
        .histogram("rt_seconds", &[("b", "2"), ("a", "1")])
        .unwrap();
    assert_eq!(held.count(), 110);
    let minute = held.window(Duration::from_secs(60));
    assert_eq!(minute.sketch.count(), 10);
    assert!((minute.sketch.quantile(Quantile::P99).unwrap() - 0.5).abs() < 0.006);
    let stats = h
        .stats("rt_seconds", &[("a", "1"), ("b", "2")], &[Quantile::P50])
        .unwrap();
    assert_eq!(stats.count, 110);
    assert!((stats.quantile(Quantile::P50).unwrap() - 2.0).abs() < 0.021);
    assert!(h.histogram("rt_seconds", &[("a", "1")]).is_none());
}

#[test]
fn cost_totals_are_exact_and_distributions_answer_questions() {
    let clock = ManualClock::new();
    let (r, h) = recorder(RecorderConfig::default(), &clock);
    let mut rng = Rng::new(11);
    let mut exact_total = 0u64;
    let mut per_tenant = std::collections::BTreeMap::<String, u64>::new();
    let mut big_model_costs = Vec::new();
    metrics::with_local_recorder(&r, || {
        for i in 0..5000u32 {
            let tenant = format!("t{}", i % 7);
            let model = if i % 3 == 0 { "big" } else { "small" };
            let tokens = (rng.lognormal(800.0, 0.8) as u64).max(1);
            let micros = tokens * if model == "big" { 10 } else { 1 };
            exact_total += micros;
            *per_tenant.entry(tenant.clone()).or_default() += micros;
            if model == "big" {
                big_model_costs.push(micros as f64);
            }
            record_usage(&Usage {
                provider: "p",
                model,
                tenant: &tenant,
                input: Tokens::new(tokens),
                output: Tokens::new(tokens / 4),
                cost: Cost::from_micros(micros),
            });
        }
    });
    let q = CostQuery::new(h.clone());
    assert_eq!(q.total_cost(&Filter::all()), Cost::from_micros(exact_total));
    let top = q.top_by_spend(Dimension::Tenant, 3, None);
    let mut want: Vec<_> = per_tenant
        .iter()
        .map(|(k, v)| (k.clone(), Cost::from_micros(*v)))
        .collect();
    want.sort_by_key(|a| std::cmp::Reverse(a.1));
    assert_eq!(top, want[..3].to_vec());
    // Within an hour window the spend is the same (exact integer sums).
    assert_eq!(
        q.top_by_spend(Dimension::Tenant, 3, Some(Duration::from_secs(3600))),
        top
    );
    let p99 = q
        .cost_quantile(
            &Filter::all().model("big"),
            Quantile::P99,
            Some(Duration::from_secs(3600)),
        )
        .unwrap();
    let exact = support::exact_quantile(&support::sorted(big_model_costs), 0.99);
    assert!(
        (p99.as_micros() as f64 - exact).abs() / exact <= 0.011,
        "{p99} vs {exact}"
    );
    assert!(q.total_tokens(&Filter::all().tenant("t1"), None) > Tokens::ZERO);
    promtext::parse(&h.render()).unwrap();
}

#[test]
fn per_metric_windows_trade_history_for_memory() {
    let clock = ManualClock::new();
    let config = RecorderConfig {
        metrics: vec![MetricRule {
            matcher: Matcher::Prefix("bulk_".into()),
            buckets: None,
            exposition: None,
            cardinality_limit: None,
            windows: Some(Vec::new()),
        }],
        ..RecorderConfig::default()
    };
    let (r, h) = recorder(config, &clock);
    let mut rng = Rng::new(12);
    for _ in 0..70 {
        metrics::with_local_recorder(&r, || {
            for _ in 0..100 {
                let v = rng.llm_latency();
                metrics::histogram!("bulk_seconds").record(v);
                metrics::histogram!("routed_seconds").record(v);
            }
        });
        clock.advance(Duration::from_secs(60));
        h.run_upkeep();
    }
    let bulk = h.histogram("bulk_seconds", &[]).unwrap();
    let routed = h.histogram("routed_seconds", &[]).unwrap();
    assert_eq!(bulk.snapshot(), routed.snapshot());
    // Without windows a "window" is everything since start.
    assert_eq!(bulk.window(Duration::from_secs(60)).sketch.count(), 7000);
    assert!(routed.window(Duration::from_secs(60)).sketch.count() <= 200);
    assert!(
        bulk.allocated_bytes() * 4 < routed.allocated_bytes(),
        "{} vs {}",
        bulk.allocated_bytes(),
        routed.allocated_bytes()
    );
}

#[test]
fn promtext_parser_self_check() {
    promtext::self_check();
}

/// `promtool check metrics` on a full exposition.
#[test]
#[ignore = "needs promtool (Debian package prometheus): cargo xtask test"]
fn promtool_accepts_the_exposition() {
    use std::io::Write;
    let clock = ManualClock::new();
    let (r, h) = recorder(
        RecorderConfig {
            cardinality_limit: 5,
            ..RecorderConfig::default()
        },
        &clock,
    );
    metrics::with_local_recorder(&r, || {
        for i in 0..20u32 {
            metrics::histogram!("llm_latency_seconds", "model" => i.to_string())
                .record(f64::from(i) / 10.0);
        }
        metrics::counter!("requests", "path" => "/x\"y").increment(1);
        metrics::gauge!("inflight").set(2.0);
        record_usage(&Usage {
            provider: "p",
            model: "m",
            tenant: "t",
            input: Tokens::new(10),
            output: Tokens::new(5),
            cost: Cost::from_micros(42),
        });
    });
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool not found: install the Debian package `prometheus`");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(h.render().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejected the exposition:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
