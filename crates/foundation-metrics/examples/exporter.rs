//! Installs the recorder, serves `/metrics` on an ephemeral port, records
//! simulated LLM latencies and costs through the facade, then prints the
//! URL, in-process percentiles and a scrape of the endpoint.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "an example prints and fails loudly"
)]

use foundation_core::{Cost, Tokens};
use foundation_metrics::cost::{CostQuery, Dimension, Filter, Usage, record_usage};
use foundation_metrics::exporter::Exporter;
use foundation_metrics::{MetricsRecorder, sketch::Quantile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let handle = MetricsRecorder::builder()
        .build()
        .unwrap()
        .install()
        .unwrap();
    let exporter = Exporter::builder(handle.clone())
        .with_listen_addr(([127, 0, 0, 1], 0).into())
        .spawn()
        .await
        .unwrap();
    println!("serving http://{}/metrics", exporter.local_addr());

    for i in 0..10_000u64 {
        let model = if i % 4 == 0 { "large" } else { "small" };
        let slow = i % 20 == 0;
        let latency = if slow {
            5.0 + (i % 7) as f64
        } else {
            0.3 + (i % 50) as f64 / 100.0
        };
        metrics::histogram!("llm_request_duration_seconds", "model" => model).record(latency);
        record_usage(&Usage {
            provider: "example",
            model,
            tenant: ["a", "b", "c"][(i % 3) as usize],
            input: Tokens::new(500 + i % 1000),
            output: Tokens::new(100 + i % 300),
            cost: Cost::from_micros(if model == "large" { 4_000 } else { 300 } + i % 100),
        });
    }

    let large = handle
        .histogram("llm_request_duration_seconds", &[("model", "large")])
        .unwrap();
    println!(
        "large: p50 {:.3}s p99 {:.3}s",
        large.quantile(Quantile::P50).unwrap(),
        large.quantile(Quantile::P99).unwrap()
    );
    let costs = CostQuery::new(handle.clone());
    println!("total spend ${}", costs.total_cost(&Filter::all()));
    for (tenant, spend) in costs.top_by_spend(Dimension::Tenant, 2, None) {
        println!("tenant {tenant}: ${spend}");
    }

    let mut s = tokio::net::TcpStream::connect(exporter.local_addr())
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    for line in body
        .lines()
        .filter(|l| {
            l.contains("llm_request_duration_seconds_bucket{model=\"large\"") && !l.ends_with(" 0")
        })
        .take(6)
    {
        println!("{line}");
    }
}
