//! The Foundation demo workload: a service calling a simulated AI provider,
//! composed from the Foundation crates on embedded defaults (in-memory,
//! SQLite). Run it with `cargo xtask demo`.
//!
//! Each capability adds its part as a module here (`demo/<capability>.rs`)
//! and one call in `main`; capabilities that have not landed say so.
#![allow(clippy::print_stdout, reason = "the demo's job is to print its report")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a demo fails loudly"
)]

mod cache;
mod events;
mod metrics;
mod pool;
mod provider;
mod ratelimit;
mod report;
mod trace;

use report::Report;

/// Capabilities planned in docs/architecture.md that have no crate yet: the
/// demo says so rather than pretending.
const NOT_YET: [&str; 6] = [
    "service discovery and balancing (foundation-mesh)",
    "event-sourced aggregates and projections (foundation-eventsourcing)",
    "replicated CRDT state (foundation-state)",
    "provider and model registry, routing (foundation-ai)",
    "declarative pipelines (foundation-pipeline)",
    "tenant quotas and billing (foundation-tenant)",
];

#[tokio::main]
async fn main() {
    let mut report = Report::new();
    println!("Foundation demo: a bursty service calling a simulated AI provider");
    println!("(embedded defaults: in-memory state, SQLite files in a temporary directory)");

    const PARTS: u64 = 6;
    report.progress("demo parts", 0, PARTS);
    ratelimit::run(&mut report).await;
    report.progress("demo parts", 1, PARTS);
    trace::run(&mut report).await;
    report.progress("demo parts", 2, PARTS);
    metrics::run(&mut report).await;
    report.progress("demo parts", 3, PARTS);
    events::run(&mut report).await;
    report.progress("demo parts", 4, PARTS);
    cache::run(&mut report).await;
    report.progress("demo parts", 5, PARTS);
    pool::run(&mut report).await;
    report.progress("demo parts", 6, PARTS);

    report.section("not in the demo yet");
    for capability in NOT_YET {
        report.line(format!("{capability}: the crate has not landed"));
    }

    report.finish();
}
