//! Caching model answers: a support assistant answers a stream of questions
//! from two tenants; many repeat exactly, many are rephrased, and some are
//! near-duplicates with the opposite meaning ("enable" vs "disable"). Each
//! question goes through `foundation-cache`'s semantic cache (local hashing
//! embedder, per-tenant scopes, lexical verifier) in front of a simulated
//! slow, priced model. Runs on a paused clock: the model's seconds are virtual.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use foundation::cache::semantic::{HashingEmbedder, Outcome, SemanticCache, SemanticConfig};
use foundation::cache::{CacheConfig, Loaded, Scope, TieredCache};
use foundation::core::{Cost, Price, Tokens};

use crate::report::{Report, fmt_duration};

/// (question, paraphrase, opposite near-duplicate)
const QUESTIONS: &[(&str, &str, &str)] = &[
    (
        "How do I enable two-factor authentication?",
        "how can I enable two factor authentication",
        "How do I disable two-factor authentication?",
    ),
    (
        "How do I reset my password?",
        "how can i reset my password please",
        "How do I not reset my password?",
    ),
    (
        "What is the refund policy for annual plans?",
        "what's the refund policy for annual plans",
        "What is the refund policy for monthly plans?",
    ),
    (
        "How do I export my data to CSV?",
        "how can I export my data to csv",
        "How do I import my data from CSV?",
    ),
    (
        "Can I add more than 10 users to a team?",
        "can I add more than 10 users to my team",
        "Can I add more than 50 users to a team?",
    ),
    (
        "How do I turn on dark mode?",
        "how to turn on dark mode",
        "How do I turn off dark mode?",
    ),
    (
        "Where can I download the desktop app?",
        "where can I download the desktop application",
        "Where can I upload the desktop app?",
    ),
    (
        "How do I cancel my subscription?",
        "how can I cancel my subscription",
        "How do I not cancel my subscription?",
    ),
];

const MODEL_LATENCY: Duration = Duration::from_millis(1200);
const OUTPUT_TOKENS: u64 = 350;

/// The simulated model: slow, and priced like a mid-size hosted model.
async fn model(
    tenant: &str,
    prompt: &str,
    calls: &AtomicU64,
) -> Result<Loaded<String>, std::io::Error> {
    calls.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(MODEL_LATENCY).await;
    let input = Tokens::new(prompt.len() as u64 / 4 + 200);
    let cost = price_in()
        .cost_of(input)
        .unwrap_or(Cost::from_micros(0))
        .saturating_add(
            price_out()
                .cost_of(Tokens::new(OUTPUT_TOKENS))
                .unwrap_or(Cost::from_micros(0)),
        );
    Ok(Loaded::new(format!("[{tenant}] answer to: {prompt}")).with_cost(cost))
}

fn price_in() -> Price {
    "2.50".parse().unwrap()
}

fn price_out() -> Price {
    "10.00".parse().unwrap()
}

#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    exact: u64,
    semantic: u64,
    vetoed: u64,
    near_misses: u64,
    leaks: u64,
    wrong_polarity: u64,
    cost_with: u64,
    cost_without: u64,
    virtual_with: Duration,
    hit_wall: Vec<Duration>,
}

async fn scenario() -> (Tally, u64) {
    let exact = TieredCache::<String>::builder(
        CacheConfig::new(32 << 20).with_ttl(Duration::from_secs(3600)),
    )
    .with_name("demo-answers")
    .build()
    .unwrap();
    let cache = SemanticCache::builder(
        exact,
        Arc::new(HashingEmbedder::new(384)),
        SemanticConfig::new(0.8, 10_000),
    )
    .build()
    .unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let mut t = Tally::default();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..160 {
        let tenant = if rand(3) == 0 { "globex" } else { "acme" };
        let scope = Scope::new()
            .with_tenant(tenant)
            .with_model("support-model-v2")
            .with_param("temperature", "0");
        // Skewed popularity: low indexes are asked more.
        let q = (rand(QUESTIONS.len() as u64) * rand(QUESTIONS.len() as u64)
            / QUESTIONS.len() as u64) as usize;
        let (base, para, opposite) = QUESTIONS[q];
        let roll = rand(100);
        let prompt = if roll < 50 {
            base
        } else if roll < 85 {
            para
        } else {
            opposite
        };
        let started_virtual = tokio::time::Instant::now();
        let started = Instant::now();
        let (c, tn, p) = (calls.clone(), tenant.to_owned(), prompt.to_owned());
        let answer = cache
            .get_or_load(
                &scope,
                prompt,
                move || async move { model(&tn, &p, &c).await },
            )
            .await
            .unwrap();
        let wall = started.elapsed();
        t.virtual_with += started_virtual.elapsed();
        t.requests += 1;
        let full_cost = model_cost(prompt);
        t.cost_without += full_cost;
        if !answer.value.starts_with(&format!("[{tenant}]")) {
            t.leaks += 1;
        }
        match &answer.outcome {
            Outcome::Exact => {
                t.exact += 1;
                t.hit_wall.push(wall);
            }
            Outcome::Semantic { matched, .. } => {
                t.semantic += 1;
                t.hit_wall.push(wall);
                if (prompt == opposite) != (&**matched == opposite) {
                    t.wrong_polarity += 1;
                }
            }
            Outcome::Miss {
                vetoed: Some(_), ..
            } => {
                t.vetoed += 1;
                t.cost_with += full_cost;
            }
            Outcome::Miss {
                nearest: Some(s), ..
            } if *s >= 0.6 => {
                t.near_misses += 1;
                t.cost_with += full_cost;
            }
            _ => t.cost_with += full_cost,
        }
    }
    (t, calls.load(Ordering::Relaxed))
}

fn model_cost(prompt: &str) -> u64 {
    let input = price_in()
        .cost_of(Tokens::new(prompt.len() as u64 / 4 + 200))
        .unwrap_or(Cost::from_micros(0));
    input
        .saturating_add(
            price_out()
                .cost_of(Tokens::new(OUTPUT_TOKENS))
                .unwrap_or(Cost::from_micros(0)),
        )
        .as_micros()
}

pub(crate) async fn run(report: &mut Report) {
    report.section("Tiered and semantic cache (foundation-cache)");
    report.line(
        "160 support questions from two tenants: 50% repeats, 35% rephrasings, 15% near-duplicates",
    );
    report.line("with another meaning (enable/disable, 10/50 users); simulated model: 1.2 s, $2.50/$10 per 1M tokens");
    let (t, calls) = tokio::task::spawn_blocking(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(scenario())
    })
    .await
    .unwrap();
    let mut hit_wall = t.hit_wall.clone();
    hit_wall.sort();
    let p50 = hit_wall
        .get(hit_wall.len() / 2)
        .copied()
        .unwrap_or_default();
    report.kv(
        "requests / model calls",
        format!("{} / {calls}", t.requests),
    );
    report.kv("exact hits", t.exact);
    report.kv(
        "semantic hits",
        format!(
            "{} (wrong-meaning matches served: {})",
            t.semantic, t.wrong_polarity
        ),
    );
    report.kv(
        "vetoed by the verifier",
        format!(
            "{} (near-duplicates with another meaning, recomputed)",
            t.vetoed
        ),
    );
    report.kv("cross-tenant answers", t.leaks);
    report.kv(
        "model cost",
        format!(
            "${} with cache vs ${} without (saved ${})",
            Cost::from_micros(t.cost_with),
            Cost::from_micros(t.cost_without),
            Cost::from_micros(t.cost_without - t.cost_with)
        ),
    );
    report.kv(
        "mean latency",
        format!(
            "{} with cache vs {} without (model time, virtual)",
            fmt_duration(t.virtual_with / t.requests.max(1) as u32),
            fmt_duration(MODEL_LATENCY)
        ),
    );
    report.kv(
        "cache hit latency",
        format!("p50 {} (measured)", fmt_duration(p50)),
    );
}
