//! RPM + TPM against OpenAI-style limits: reserve `max_tokens`, settle with
//! the real usage, feed back the response headers. Runs on paused tokio time
//! so a virtual minute passes at once.
//!
//! `cargo run -p foundation-ratelimit --example openai_rpm_tpm`
#![allow(clippy::print_stdout, clippy::unwrap_used, reason = "example")]

use std::time::{Duration, SystemTime};

use foundation_core::TokioClock;
use foundation_ratelimit::RateLimiter;
use foundation_ratelimit::headers::RateLimitInfo;
use foundation_ratelimit::profile::ProfileSet;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = ProfileSet::shipped()
            .unwrap()
            .get("openai/tier-1/gpt-4o")
            .unwrap()
            .limiter
            .clone();
        let limiter = RateLimiter::builder(cfg)
            .with_clock(TokioClock)
            .build()
            .unwrap();
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for i in 0..16u64 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                let (prompt, max_tokens) = (500 + i * 37 % 900, 1_500);
                let charge = limiter
                    .charge([("requests", 1), ("tokens", prompt + max_tokens)])
                    .unwrap();
                let mut permit = limiter.acquire(charge).await.unwrap();
                let admitted_at = start.elapsed();
                // ... the provider answers with its usage and headers ...
                let used = prompt + max_tokens / 3;
                permit.reconcile(limiter.charge([("requests", 1), ("tokens", used)]).unwrap());
                let headers = [
                    ("x-ratelimit-remaining-tokens", "12000"),
                    ("x-ratelimit-reset-tokens", "36s"),
                ];
                limiter.observe(&RateLimitInfo::parse(headers, SystemTime::now()));
                admitted_at
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let at: Duration = t.await.unwrap();
            if i % 4 == 0 {
                println!("request {i:>2} admitted after {at:?}");
            }
        }
        println!("{:#?}", limiter.snapshot());
    });
}
