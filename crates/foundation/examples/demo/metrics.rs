//! Latency and cost distributions (foundation-metrics): simulated provider
//! calls recorded through the `metrics` facade, served on `/metrics`, and read
//! back in-process for percentiles, cost per request and top spenders.

use std::time::Duration;

use fmetrics::baseline::{Baseline, Thresholds, Verdict, compare};
use fmetrics::cost::{CostQuery, Dimension, Filter, Usage, record_usage};
use fmetrics::exporter::Exporter;
use fmetrics::sketch::Quantile;
use fmetrics::{MetricsRecorder, SeriesValue};
use foundation::core::{Cost, Price, Tokens};
use foundation::metrics as fmetrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::report::{Report, fmt_duration};

/// SplitMix64 for reproducible simulated traffic.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        let n = (-2.0 * self.unit().max(1e-300).ln()).sqrt()
            * (2.0 * std::f64::consts::PI * self.unit()).cos();
        median * (sigma * n).exp()
    }
}

struct Model {
    name: &'static str,
    input: Price,
    output: Price,
    /// (fast median, slow median, share of slow generations)
    latency: (f64, f64, f64),
}

const REQUESTS: u32 = 20_000;
const TENANTS: [&str; 6] = ["acme", "globex", "initech", "umbrella", "hooli", "stark"];

fn simulate(rng: &mut Rng, models: &[Model], slowdown: f64, n: u32) {
    for i in 0..n {
        let m = &models[usize::from(rng.unit() < 0.35)];
        // Skewed tenants: the first few send most traffic.
        let t = TENANTS[((rng.unit().powi(2)) * TENANTS.len() as f64) as usize % TENANTS.len()];
        let (fast, slow, share) = m.latency;
        let latency = if rng.unit() < share {
            rng.lognormal(slow, 0.3)
        } else {
            rng.lognormal(fast, 0.4)
        } * slowdown;
        let wait = if i % 10 == 0 {
            rng.lognormal(0.05, 1.0)
        } else {
            rng.lognormal(0.002, 0.5)
        };
        let input = Tokens::new(rng.lognormal(900.0, 0.9) as u64 + 1);
        let output = Tokens::new(rng.lognormal(250.0, 0.8) as u64 + 1);
        let cost = m
            .input
            .cost_of(input)
            .unwrap()
            .saturating_add(m.output.cost_of(output).unwrap());
        ::metrics::histogram!("llm_request_duration_seconds", "model" => m.name).record(latency);
        ::metrics::histogram!("llm_queue_wait_seconds", "model" => m.name).record(wait);
        ::metrics::counter!("llm_requests", "model" => m.name).increment(1);
        record_usage(&Usage {
            provider: "simulated",
            model: m.name,
            tenant: t,
            input,
            output,
            cost,
        });
    }
}

fn verdict(c: &fmetrics::baseline::Comparison) -> String {
    match &c.verdict {
        Verdict::Regressed { reasons } => format!("REGRESSED: {}", reasons.join("; ")),
        Verdict::Ok => format!(
            "ok (KS D={:.3}, critical {:.3})",
            c.ks_distance, c.ks_critical
        ),
        other => format!("{other:?}"),
    }
}

pub(crate) async fn run(report: &mut Report) {
    report.section("latency and cost distributions (foundation-metrics)");
    let recorder = MetricsRecorder::builder().build().unwrap();
    let handle = recorder.handle();
    // The demo is an application, so it may install the recorder globally
    // (other sections' facade metrics then show up on /metrics too); the
    // simulated traffic below records through it locally either way.
    let global = recorder.clone().install().is_ok();
    let exporter = Exporter::builder(handle.clone())
        .with_listen_addr(([127, 0, 0, 1], 0).into())
        .spawn()
        .await
        .unwrap();
    let url = format!("http://{}/metrics", exporter.local_addr());
    report.kv("/metrics served at", &url);
    report.kv("recorder installed globally", global);

    let models = [
        Model {
            name: "small",
            input: "0.15".parse().unwrap(),
            output: "0.60".parse().unwrap(),
            latency: (0.35, 2.0, 0.02),
        },
        Model {
            name: "large",
            input: "2.50".parse().unwrap(),
            output: "10.00".parse().unwrap(),
            latency: (0.5, 5.5, 0.05),
        },
    ];
    let mut rng = Rng(6);
    let started = std::time::Instant::now();
    ::metrics::with_local_recorder(&recorder, || simulate(&mut rng, &models, 1.0, REQUESTS));
    report.kv(
        "simulated requests",
        format!("{REQUESTS} in {}", fmt_duration(started.elapsed())),
    );

    for m in &models {
        let lat = handle
            .histogram("llm_request_duration_seconds", &[("model", m.name)])
            .unwrap();
        let s = lat.snapshot();
        report.kv(
            &format!("latency {} (n={})", m.name, s.count()),
            format!(
                "mean {}  p50 {}  p99 {}  p99.9 {}",
                fmt_duration(Duration::from_secs_f64(s.mean().unwrap())),
                fmt_duration(Duration::from_secs_f64(
                    lat.quantile(Quantile::P50).unwrap()
                )),
                fmt_duration(Duration::from_secs_f64(
                    lat.quantile(Quantile::P99).unwrap()
                )),
                fmt_duration(Duration::from_secs_f64(
                    lat.quantile(Quantile::P999).unwrap()
                )),
            ),
        );
        let wait = handle
            .window(
                "llm_queue_wait_seconds",
                &[("model", m.name)],
                Duration::from_secs(60),
            )
            .unwrap();
        report.kv(
            &format!("queue wait {} (last minute)", m.name),
            format!(
                "p50 {}  p99 {}",
                fmt_duration(Duration::from_secs_f64(
                    wait.sketch.quantile(Quantile::P50).unwrap()
                )),
                fmt_duration(Duration::from_secs_f64(
                    wait.sketch.quantile(Quantile::P99).unwrap()
                )),
            ),
        );
    }
    let costs = CostQuery::new(handle.clone());
    let hour = Some(Duration::from_secs(3600));
    for m in &models {
        let filter = Filter::all().model(m.name);
        report.kv(
            &format!("cost/request {} (this hour)", m.name),
            format!(
                "p50 ${}  p99 ${}",
                costs.cost_quantile(&filter, Quantile::P50, hour).unwrap(),
                costs.cost_quantile(&filter, Quantile::P99, hour).unwrap()
            ),
        );
    }
    report.kv(
        "total spend (exact micro-units)",
        format!("${}", costs.total_cost(&Filter::all())),
    );
    report.kv("total tokens", costs.total_tokens(&Filter::all(), None));
    let top: Vec<String> = costs
        .top_by_spend(Dimension::Tenant, 3, hour)
        .into_iter()
        .map(|(t, c): (String, Cost)| format!("{t} ${c}"))
        .collect();
    report.kv("top 3 tenants by spend", top.join(", "));

    // Baseline: save the large model's latency, then the provider slows down.
    let baseline = Baseline::capture(
        &handle,
        "llm_request_duration_seconds",
        &[("model", "large")],
        None,
    )
    .unwrap();
    let mut rng = Rng(7);
    let degraded = MetricsRecorder::builder().build().unwrap();
    ::metrics::with_local_recorder(&degraded, || simulate(&mut rng, &models, 1.5, 4000));
    let now = degraded
        .handle()
        .snapshot("llm_request_duration_seconds", &[("model", "large")])
        .unwrap();
    let cmp = compare(&baseline.sketch, &now, &Thresholds::default());
    report.kv("baseline: provider 1.5x slower", verdict(&cmp));
    let mut rng = Rng(8);
    let same = MetricsRecorder::builder().build().unwrap();
    ::metrics::with_local_recorder(&same, || simulate(&mut rng, &models, 1.0, 4000));
    let resample = same
        .handle()
        .snapshot("llm_request_duration_seconds", &[("model", "large")])
        .unwrap();
    let cmp = compare(&baseline.sketch, &resample, &Thresholds::default());
    report.kv("baseline: same provider", verdict(&cmp));

    // Scrape our own endpoint, as Prometheus would.
    let mut stream = tokio::net::TcpStream::connect(exporter.local_addr())
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: demo\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    let families = body.lines().filter(|l| l.starts_with("# TYPE")).count();
    let histograms = body
        .lines()
        .filter(|l| l.starts_with("# TYPE") && l.ends_with("histogram"))
        .count();
    report.kv(
        "scrape",
        format!(
            "{} bytes, {families} families ({histograms} histograms)",
            body.len()
        ),
    );
    let series = handle
        .series("llm_requests")
        .iter()
        .filter(|s| matches!(s.value, SeriesValue::Counter(_)))
        .count();
    report.kv(
        "series / memory",
        format!(
            "{} series ({series} request counters), ~{} KiB",
            handle.series_count(),
            handle.allocated_bytes() / 1024
        ),
    );
    exporter.shutdown();
}
