//! The Redis backend against a real server (`cargo xtask test` starts one and
//! sets `FOUNDATION_REDIS_URL`).
//!
//! The sharing test runs several limiter instances on separate connections in
//! separate tasks, plus one separate OS process (this test binary re-run as a
//! child in worker mode), all hammering one quota whose period is an hour, so
//! refill during the test is negligible and the bound is exact: together
//! they must never admit more than the burst of any dimension.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests and their helpers fail loudly"
)]
#![cfg(feature = "redis")]

use std::process::Command;
use std::time::Duration;

use foundation_ratelimit::redis::RedisRateLimiter;
use foundation_ratelimit::{AcquireError, Charge, DimensionConfig, LimiterConfig};

const REQUESTS: u64 = 300;
const TOKENS: u64 = 20_000;
const CHILD_ENV: &str = "FOUNDATION_RATELIMIT_REDIS_CHILD_PREFIX";

fn url() -> String {
    std::env::var("FOUNDATION_REDIS_URL")
        .expect("FOUNDATION_REDIS_URL is not set: run `cargo xtask test`, or start redis-server and export it")
}

fn config() -> LimiterConfig {
    LimiterConfig::new()
        .with_dimension(DimensionConfig::new(
            "requests",
            REQUESTS,
            Duration::from_secs(3_600),
        ))
        .with_dimension(DimensionConfig::new(
            "tokens",
            TOKENS,
            Duration::from_secs(3_600),
        ))
}

async fn limiter(prefix: &str) -> RedisRateLimiter {
    let client = redis::Client::open(url()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    RedisRateLimiter::new(conn, prefix, config()).unwrap()
}

/// Hammers the quota until it has been denied many times in a row; returns
/// the admitted (requests, tokens).
async fn hammer(limiter: RedisRateLimiter, seed: u64) -> (u64, u64) {
    let (mut r, mut t, mut denied_in_row) = (0, 0, 0);
    let mut i = seed;
    while denied_in_row < 50 {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let tokens = (i >> 33) % 120;
        match limiter.try_acquire(Charge::from([1, tokens])).await {
            Ok(_) => {
                r += 1;
                t += tokens;
                denied_in_row = 0;
            }
            Err(AcquireError::RateLimited { .. }) => denied_in_row += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    (r, t)
}

/// Entry point of the child process; does nothing unless the parent set the
/// worker variable (so a plain `--ignored` run just passes through).
#[tokio::test]
#[ignore = "needs Redis: cargo xtask test"]
async fn redis_child_worker() {
    let Ok(prefix) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (r, t) = hammer(limiter(&prefix).await, 99).await;
    println!("CHILD-ADMITTED {r} {t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: cargo xtask test"]
async fn instances_in_tasks_and_processes_share_one_quota() {
    let prefix = format!(
        "test-rl-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "redis_child_worker",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &prefix)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut tasks = Vec::new();
    for seed in 0..4 {
        let l = limiter(&prefix).await;
        tasks.push(tokio::spawn(hammer(l, seed)));
    }
    let (mut r, mut t) = (0, 0);
    for task in tasks {
        let (a, b) = task.await.unwrap();
        r += a;
        t += b;
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest may print the test name on the same line: read after the marker.
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-ADMITTED").map(|(_, rest)| rest))
        .expect("child reported nothing");
    let nums: Vec<u64> = line
        .split_whitespace()
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    let (cr, ct) = (nums[0], nums[1]);
    assert!(cr > 0, "the child process took part");
    r += cr;
    t += ct;
    // One hour periods: at most ~0.1% refill over the test; allow one unit of it.
    assert!(
        r <= REQUESTS + 1,
        "admitted {r} requests together, quota {REQUESTS}"
    );
    assert!(
        t <= TOKENS + 120,
        "admitted {t} tokens together, quota {TOKENS}"
    );
    assert!(
        r >= REQUESTS - 5 || t >= TOKENS - 240,
        "quota was not used: {r} requests, {t} tokens"
    );
}

#[tokio::test]
#[ignore = "needs Redis: cargo xtask test"]
async fn atomic_denial_and_reconcile() {
    let prefix = format!("test-rl-atomic-{}", std::process::id());
    let l = limiter(&prefix).await;
    let mut p = l.try_acquire(Charge::from([1, TOKENS])).await.unwrap();
    // Tokens are exhausted: a denial must not charge requests.
    for _ in 0..10 {
        let err = l.try_acquire(Charge::from([1, 1])).await.unwrap_err();
        assert_eq!(err.dimension(), Some("tokens"));
        // One token refills every 180ms.
        assert!(err.retry_after().unwrap() > Duration::from_millis(170));
    }
    // Settle at 5000 tokens: 15000 come back.
    p.reconcile(Charge::from([1, 5_000])).await.unwrap();
    let _ = l.try_acquire(Charge::from([1, 15_000])).await.unwrap();
    assert!(l.try_acquire(Charge::from([1, 10])).await.is_err());
    // Requests used: 2 (the denials charged nothing), so 298 remain.
    let other = limiter(&format!("{prefix}-x")).await;
    drop(other);
    let err = l
        .try_acquire(Charge::from([0, TOKENS + 1]))
        .await
        .unwrap_err();
    assert!(matches!(err, AcquireError::ExceedsBurst { .. }));
    for _ in 0..(REQUESTS - 2) {
        let _ = l.try_acquire(Charge::from([1, 0])).await.unwrap();
    }
    assert!(l.try_acquire(Charge::from([1, 0])).await.is_err());
    // Deadline: the predicted wait is about 12s per request, so a 1s deadline fails at once.
    let err = l
        .acquire_within(Charge::from([1, 0]), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AcquireError::WouldExceedDeadline { .. }),
        "{err}"
    );
}
