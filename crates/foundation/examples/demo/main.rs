//! The Foundation demo workload: a service calling a simulated AI provider,
//! composed from the Foundation crates on embedded defaults (in-memory,
//! SQLite). Run it with `cargo xtask demo`.
//!
//! Each capability adds its part as a module here (`demo/<capability>.rs`)
//! and one call in `main`; capabilities that have not landed say so.
#![allow(clippy::print_stdout, reason = "the demo's job is to print its report")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a demo fails loudly")]

mod cache;
mod events;
mod pool;
mod provider;
mod ratelimit;
mod metrics;
mod report;
mod trace;

use report::Report;

#[tokio::main]
async fn main() {
    let mut report = Report::new();
    println!("Foundation demo: a bursty service calling a simulated AI provider");
    println!("(embedded defaults: in-memory state, SQLite files in a temporary directory)");

    let pending = [
    ];
    ratelimit::run(&mut report).await;
    trace::run(&mut report).await;
    metrics::run(&mut report).await;
    events::run(&mut report).await;
    cache::run(&mut report).await;

    for (capability, issue) in pending {
        report.not_yet(capability, issue);
    }

    pool::run(&mut report).await;

    report.finish();
}
