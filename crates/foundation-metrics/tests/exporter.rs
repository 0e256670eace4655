//! Scraping `/metrics` over real HTTP, and upkeep without scrapes.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use foundation_core::TokioClock;
use foundation_metrics::MetricsRecorder;
use foundation_metrics::config::RecorderConfig;
use foundation_metrics::exporter::Exporter;
use support::{Rng, promtext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn request(addr: std::net::SocketAddr, raw: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn scrape_over_http_and_parse() {
    let recorder = MetricsRecorder::builder().build().unwrap();
    let handle = recorder.handle();
    let mut rng = Rng::new(21);
    metrics::with_local_recorder(&recorder, || {
        for i in 0..5000 {
            let model = if i % 2 == 0 { "a" } else { "b" };
            metrics::histogram!("llm_latency_seconds", "model" => model).record(rng.llm_latency());
            metrics::counter!("llm_requests", "model" => model).increment(1);
        }
    });
    let exporter = Exporter::builder(handle)
        .with_listen_addr(([127, 0, 0, 1], 0).into())
        .spawn()
        .await
        .unwrap();
    let addr = exporter.local_addr();

    let (head, body) = request(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let families = promtext::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let lat = families
        .iter()
        .find(|f| f.name == "llm_latency_seconds")
        .unwrap();
    assert_eq!(
        lat.sample("llm_latency_seconds_count", &[("model", "a")]),
        Some(2500.0)
    );
    let req = families
        .iter()
        .find(|f| f.name == "llm_requests_total")
        .unwrap();
    assert_eq!(
        req.sample("llm_requests_total", &[("model", "b")]),
        Some(2500.0)
    );

    let (head, body) = request(addr, "HEAD /metrics?x=1 HTTP/1.1\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.is_empty());
    let (head, _) = request(addr, "GET /nope HTTP/1.1\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = request(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
    assert!(
        head.starts_with("HTTP/1.1 405") && head.contains("Allow: GET, HEAD"),
        "{head}"
    );
    let (head, _) = request(addr, "garbage\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    let (head, _) = request(addr, &huge).await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    exporter.shutdown();
}

#[tokio::test(start_paused = true)]
async fn slow_clients_time_out_and_do_not_block_others() {
    let handle = MetricsRecorder::builder().build().unwrap().handle();
    let exporter = Exporter::builder(handle)
        .with_listen_addr(([127, 0, 0, 1], 0).into())
        .with_request_timeout(Duration::from_secs(2))
        .with_max_connections(2)
        .spawn()
        .await
        .unwrap();
    let addr = exporter.local_addr();
    // A client that never finishes its request head (slowloris).
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    stuck
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Another client is still served meanwhile.
    let (head, _) = request(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The stuck one gets 408 once its time is up (paused time jumps there).
    let mut buf = Vec::new();
    stuck.read_to_end(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"));
}

#[tokio::test(start_paused = true)]
async fn upkeep_runs_without_scrapes_and_memory_stays_flat() {
    let config = RecorderConfig {
        idle_timeout: Some(Duration::from_secs(30)),
        ..RecorderConfig::default()
    };
    let recorder = MetricsRecorder::builder()
        .with_config(config)
        .with_clock(Arc::new(TokioClock))
        .build()
        .unwrap();
    let handle = recorder.handle();
    let exporter = Exporter::builder(handle.clone())
        .with_listen_addr(([127, 0, 0, 1], 0).into())
        .with_upkeep_interval(Duration::from_secs(5))
        .spawn()
        .await
        .unwrap();
    let mut rng = Rng::new(22);
    let mut sizes = Vec::new();
    // Eighty simulated minutes of steady traffic on one series plus a stream
    // of short-lived label sets, nobody scraping. The hour window's ring is
    // full after 60 minutes; from then on nothing may grow.
    for second in 0..4800u32 {
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..20 {
                metrics::histogram!("steady_seconds", "model" => "m").record(rng.llm_latency());
            }
            metrics::counter!("one_off", "request" => second.to_string()).increment(1);
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        if second % 600 == 599 {
            sizes.push((handle.series_count(), handle.allocated_bytes()));
        }
    }
    // Idle one-off series expire (30 s timeout, 5 s upkeep): about 35 remain.
    assert!(sizes.iter().all(|(series, _)| *series <= 40), "{sizes:?}");
    let (_, at_70) = sizes[6];
    let (_, at_80) = sizes[7];
    assert!(at_80 <= at_70 + at_70 / 20, "{sizes:?}");
    // The minute window only holds the last minute's samples.
    let w = handle
        .window("steady_seconds", &[("model", "m")], Duration::from_secs(60))
        .unwrap();
    assert!(
        (1_100..=1_400).contains(&w.sketch.count()),
        "{}",
        w.sketch.count()
    );
    drop(exporter);
}
