//! L2 on a real Redis server (`cargo xtask test` starts one and sets
//! `FOUNDATION_REDIS_URL`). Every test uses its own key prefix.
#![cfg(feature = "redis")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests and their helpers fail loudly"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use foundation_cache::tier::redis::RedisTier;
use foundation_cache::{CacheConfig, Entry, Key, Loaded, Scope, Tier, TierPolicy, TieredCache};
use support::{Calls, unique};

fn url() -> String {
    std::env::var("FOUNDATION_REDIS_URL")
        .expect("FOUNDATION_REDIS_URL is not set: run `cargo xtask test`, or start redis-server and export it")
}

async fn tier(prefix: &str) -> RedisTier {
    let client = redis::Client::open(url()).unwrap();
    RedisTier::new(
        client.get_multiplexed_async_connection().await.unwrap(),
        prefix,
    )
}

async fn instance(prefix: &str) -> TieredCache<String> {
    TieredCache::builder(CacheConfig::new(1 << 20).with_ttl(Duration::from_secs(300)))
        .with_tier(Arc::new(tier(prefix).await), TierPolicy::default())
        .build()
        .unwrap()
}

#[tokio::test]
#[ignore = "needs Redis: cargo xtask test"]
async fn two_instances_share_l2() {
    let prefix = unique("cache-share");
    let (a, b) = (instance(&prefix).await, instance(&prefix).await);
    let key = Key::new(&Scope::new().with_tenant("acme"), "q");
    let calls = Calls::default();
    let c = calls.clone();
    assert_eq!(
        a.get_or_compute(&key, c.ok("from a")).await.unwrap(),
        "from a"
    );
    let c = calls.clone();
    assert_eq!(
        b.get_or_compute(&key, c.ok("from b")).await.unwrap(),
        "from a"
    );
    assert_eq!(calls.get(), 1, "b found a's value in Redis");
    // An invalidation through b reaches Redis; a still has it in its own L1
    // (L1s are per process: invalidate there too, or keep L1 TTLs short).
    b.invalidate(&key).await.unwrap();
    assert_eq!(b.get(&key).await.unwrap(), None);
    a.memory().remove(&key).await;
    assert_eq!(a.get(&key).await.unwrap(), None);
}

#[tokio::test]
#[ignore = "needs Redis: cargo xtask test"]
async fn invalidation_by_tag_prefix_and_scope() {
    let prefix = unique("cache-inval");
    let cache = instance(&prefix).await;
    let fresh = || instance(&prefix);
    let a = Scope::new().with_tenant("a");
    let b = Scope::new().with_tenant("b");
    cache
        .insert(
            &Key::new(&a, "doc:1"),
            Loaded::new("1".to_string()).with_tags(["t"]),
        )
        .await;
    cache.insert(&Key::new(&a, "doc:2"), "2".to_string()).await;
    cache
        .insert(&Key::new(&a, "doc*"), "glob".to_string())
        .await;
    cache.insert(&Key::new(&b, "doc:2"), "b2".to_string()).await;
    cache.invalidate_tag("t").await.unwrap();
    assert_eq!(
        fresh().await.get(&Key::new(&a, "doc:1")).await.unwrap(),
        None
    );
    cache.invalidate_prefix(&a, "doc:").await.unwrap();
    let f = fresh().await;
    assert_eq!(f.get(&Key::new(&a, "doc:2")).await.unwrap(), None);
    assert_eq!(
        f.get(&Key::new(&a, "doc*")).await.unwrap().as_deref(),
        Some("glob"),
        "glob characters are escaped"
    );
    assert_eq!(
        f.get(&Key::new(&b, "doc:2")).await.unwrap().as_deref(),
        Some("b2")
    );
    cache.invalidate_scope(&b).await.unwrap();
    assert_eq!(
        fresh().await.get(&Key::new(&b, "doc:2")).await.unwrap(),
        None
    );
}

#[tokio::test]
#[ignore = "needs Redis: cargo xtask test"]
async fn server_ttl_follows_the_entry() {
    let prefix = unique("cache-ttl");
    let cache = instance(&prefix).await;
    let key = Key::unscoped("k");
    cache
        .insert(
            &key,
            Loaded::new("v".to_string()).with_ttl(Duration::from_secs(42)),
        )
        .await;
    let client = redis::Client::open(url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}:e:{:016x}:k", key.scope().hash64()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((40_000..=42_000).contains(&pttl), "{pttl}");
}

#[tokio::test]
#[ignore = "needs Redis: cargo xtask test"]
async fn an_entry_of_another_scope_is_never_served() {
    // Simulate a scope-hash collision: store an entry whose recorded scope
    // differs from the key's.
    let prefix = unique("cache-collide");
    let t = tier(&prefix).await;
    let key = Key::new(&Scope::new().with_tenant("victim"), "q");
    let cache = instance(&prefix).await;
    let foreign = Entry {
        meta: foundation_cache::Meta {
            scope: Scope::new().with_tenant("attacker").canonical(),
            created_ms: cache.now_ms(),
            fresh_until_ms: u64::MAX,
            expires_ms: u64::MAX,
            tags: vec![],
            cost_micros: 0,
            load_micros: 0,
        },
        payload: foundation_cache::Payload::Value("attacker's answer".to_string()),
    };
    Tier::<String>::put(&t, &key, Arc::new(foreign), cache.now_ms())
        .await
        .unwrap();
    assert_eq!(cache.get(&key).await.unwrap(), None);
}

#[cfg(feature = "sqlite")]
#[tokio::test]
#[ignore = "needs Redis: cargo xtask test"]
async fn three_tiers_promote_from_sqlite_through_redis_to_memory() {
    use foundation_cache::tier::sqlite::SqliteTier;
    let prefix = unique("cache-3tier");
    let path = std::env::temp_dir().join(format!("{prefix}.db"));
    let build = |l2: RedisTier, l3: SqliteTier| {
        TieredCache::<String>::builder(CacheConfig::new(1 << 20).with_ttl(Duration::from_secs(300)))
            .with_tier(Arc::new(l2), TierPolicy::default())
            .with_tier(Arc::new(l3), TierPolicy::default())
            .build()
            .unwrap()
    };
    let l3 = SqliteTier::open(&path, 1000).await.unwrap();
    let key = Key::new(&Scope::new().with_tenant("acme"), "durable");
    // Only L3 has it (e.g. after Redis was flushed).
    Tier::<String>::put(
        &l3,
        &key,
        Arc::new(Entry {
            meta: foundation_cache::Meta {
                scope: key.scope().canonical().to_owned(),
                created_ms: 0,
                fresh_until_ms: u64::MAX,
                expires_ms: u64::MAX,
                tags: vec![],
                cost_micros: 0,
                load_micros: 0,
            },
            payload: foundation_cache::Payload::Value("from sqlite".to_string()),
        }),
        0,
    )
    .await
    .unwrap();
    let l2 = tier(&prefix).await;
    let cache = build(l2.clone(), l3.clone());
    assert_eq!(
        cache.get(&key).await.unwrap().as_deref(),
        Some("from sqlite")
    );
    assert!(
        cache.memory().get_entry(&key).await.is_some(),
        "promoted to L1"
    );
    let in_redis: Option<Arc<Entry<String>>> = Tier::<String>::get(&l2, &key).await.unwrap();
    assert!(in_redis.is_some(), "promoted to L2");
    let _ = std::fs::remove_file(&path);
}
