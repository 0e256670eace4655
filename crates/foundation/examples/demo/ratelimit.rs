//! Rate limiting: a bursty stream of completion requests of varying sizes
//! against the simulated provider, once without a limiter (send, and on 429
//! sleep `retry-after` and retry, as SDKs do) and once through
//! `foundation-ratelimit` configured from the provider's shipped profile and
//! fed back from its headers. Runs on paused tokio time: twenty virtual
//! minutes take well under a second.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use foundation::core::TokioClock;
use foundation::metrics::sketch::{AtomicSketch, Quantile};
use foundation::ratelimit::headers::RateLimitInfo;
use foundation::ratelimit::profile::ProfileSet;
use foundation::ratelimit::{Charge, RateLimiter};
use tokio::time::Instant;

use crate::provider::Provider;
use crate::report::{Report, fmt_duration};

const PROFILE: &str = "openai/tier-1/gpt-4o";
const VIRTUAL_RUN: Duration = Duration::from_secs(20 * 60);
const MAX_ATTEMPTS: u32 = 8;

#[derive(Debug, Default)]
struct Outcome {
    completed: u64,
    failed: u64,
    got_429: u64,
    /// Time from arrival to the successful send, in seconds: a
    /// foundation-metrics sketch (1% relative error, no raw samples kept).
    waits: AtomicSketch,
    tpm_share: f64,
    tpm: u64,
    used_tokens: u64,
    virtual_time: Duration,
}

/// One request of the workload: when it arrives and its size.
#[derive(Debug, Clone, Copy)]
struct Job {
    at: Duration,
    prompt: u64,
    max_tokens: u64,
}

/// Bursts of 3..13 requests every 20..60 s, prompts of 200..2000 tokens and
/// `max_tokens` of 300..3000: about 1.15x the provider's tokens per minute.
fn workload() -> Vec<Job> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |lo: u64, hi: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        lo + seed % (hi - lo)
    };
    let mut jobs = Vec::new();
    let mut t = Duration::ZERO;
    while t < VIRTUAL_RUN {
        for i in 0..rand(3, 14) {
            jobs.push(Job {
                at: t + Duration::from_millis(i * 50),
                prompt: rand(200, 2_000),
                max_tokens: rand(300, 3_000),
            });
        }
        t += Duration::from_secs(rand(20, 61));
    }
    jobs
}

async fn scenario(with_limiter: bool, jobs: &[Job]) -> Outcome {
    let profile = ProfileSet::shipped().unwrap().get(PROFILE).unwrap().clone();
    let rpm = profile.limiter.dimensions[0].limit;
    let tpm = profile.limiter.dimensions[1].limit;
    let provider = Provider::new(rpm, tpm);
    let limiter = with_limiter.then(|| {
        let mut cfg = profile.limiter.clone();
        // The demo's backlog is deliberate (1.15x overload): let up to ten
        // minutes of tokens queue instead of shedding them.
        for d in &mut cfg.dimensions {
            d.max_queued = Some(d.limit * 10);
        }
        RateLimiter::builder(cfg)
            .with_clock(TokioClock)
            .build()
            .unwrap()
    });
    let start = Instant::now();
    let results = Arc::new(std::sync::Mutex::new(Outcome::default()));
    let mut tasks = Vec::new();
    for job in jobs.iter().copied() {
        let (provider, limiter, results) = (provider.clone(), limiter.clone(), results.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start + job.at).await;
            let arrived = Instant::now();
            let charge = Charge::from([1, job.prompt + job.max_tokens]);
            let mut permit = None;
            if let Some(l) = &limiter {
                permit = Some(
                    l.acquire(charge)
                        .await
                        .expect("demo charges fit the profile"),
                );
            }
            let mut got_429 = 0;
            for _ in 0..MAX_ATTEMPTS {
                let sent = Instant::now();
                let resp = provider.complete(job.prompt, job.max_tokens).await;
                let info = RateLimitInfo::parse(
                    resp.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    SystemTime::now(),
                );
                if let Some(l) = &limiter {
                    l.observe(&info);
                }
                if resp.status == 200 {
                    let mut r = results.lock().unwrap();
                    r.completed += 1;
                    r.got_429 += got_429;
                    r.used_tokens += resp.used_tokens;
                    r.waits.record((sent - arrived).as_secs_f64());
                    drop(permit);
                    return;
                }
                got_429 += 1;
                tokio::time::sleep(info.retry_after.unwrap_or(Duration::from_secs(1))).await;
            }
            let mut r = results.lock().unwrap();
            r.failed += 1;
            r.got_429 += got_429;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut out = std::mem::take(&mut *results.lock().unwrap());
    out.tpm_share = provider.stats().admitted_tokens as f64 / provider.token_capacity_used_span();
    out.virtual_time = start.elapsed();
    out.tpm = provider.tpm();
    out
}

fn percentile(waits: &AtomicSketch, q: Quantile) -> Duration {
    Duration::from_secs_f64(waits.quantile(q).unwrap_or(0.0).max(0.0))
}

pub(crate) async fn run(report: &mut Report) {
    report.section("rate limiting (foundation-ratelimit)");
    let jobs = workload();
    let jobs_reserved: u64 = jobs.iter().map(|j| j.prompt + j.max_tokens).sum();
    let real = std::time::Instant::now();
    // Paused time needs a current-thread runtime of its own.
    let (without, with) = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async { (scenario(false, &jobs).await, scenario(true, &jobs).await) })
    })
    .await
    .unwrap();
    report.line(format!(
        "simulated provider with the {PROFILE} profile ({} TPM, OpenAI-style buckets counting prompt + max_tokens, 429 + retry-after);",
        with.tpm
    ));
    report.line(format!(
        "{} bursty requests of 500..5000 tokens over {} virtual minutes (~1.15x the TPM), in {}",
        without.completed + without.failed,
        VIRTUAL_RUN.as_secs() / 60,
        fmt_duration(real.elapsed())
    ));
    report.line(format!(
        "(tokens actually used: {} of the {} reserved; the provider counts max_tokens at admission, so the limiter does too)",
        with.used_tokens,
        jobs_reserved
    ));
    for (name, o) in [
        ("without limiter (retry on 429)", without),
        ("with foundation-ratelimit", with),
    ] {
        report.kv(
            name,
            format!(
                "{} completed, {} failed, {} x 429, {:.1}% of TPM used, wait p50 {} p99 {}",
                o.completed,
                o.failed,
                o.got_429,
                o.tpm_share * 100.0,
                fmt_duration(percentile(&o.waits, Quantile::P50)),
                fmt_duration(percentile(&o.waits, Quantile::P99)),
            ),
        );
    }
}
