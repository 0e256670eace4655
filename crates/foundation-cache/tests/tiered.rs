//! Tiered cache behaviour: single-flight, expiry and staleness on paused
//! time, promotion, negative caching, invalidation, isolation, cancellation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests and their helpers fail loudly"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use foundation_cache::tier::MapTier;
use foundation_cache::{CacheConfig, Error, Key, Loaded, Scope, TieredCache};
use support::{Calls, two_tier};

fn l1_only(config: CacheConfig) -> TieredCache<String> {
    TieredCache::builder(config).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_misses_compute_once() {
    let cache = l1_only(CacheConfig::new(1 << 20));
    let calls = Calls::default();
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let key = Key::unscoped("popular");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, calls, barrier, key) =
                (cache.clone(), calls.clone(), barrier.clone(), key.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                cache
                    .get_or_compute(&key, move || async move {
                        calls.bump();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, std::io::Error>("value".to_string())
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "value");
    }
    assert_eq!(calls.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn single_flight_spans_tiers_and_writes_through() {
    let l2 = MapTier::new(100);
    let a = two_tier(CacheConfig::new(1 << 20), &l2);
    let b = two_tier(CacheConfig::new(1 << 20), &l2);
    let key = Key::unscoped("k");
    let calls = Calls::default();
    let c = calls.clone();
    let v = a.get_or_compute(&key, c.ok("x")).await.unwrap();
    assert_eq!(v, "x");
    assert_eq!(l2.len(), 1, "written through to L2");
    // The other instance finds it in L2 without loading, and promotes it.
    let c = calls.clone();
    let v = b.get_or_compute(&key, c.ok("y")).await.unwrap();
    assert_eq!(v, "x");
    assert_eq!(calls.get(), 1);
    assert!(
        b.memory().get_entry(&key).await.is_some(),
        "promoted into L1"
    );
}

#[tokio::test(start_paused = true)]
async fn entries_expire_on_the_cache_clock_in_every_tier() {
    let l2 = MapTier::new(100);
    let cache = two_tier(
        CacheConfig::new(1 << 20).with_ttl(Duration::from_secs(10)),
        &l2,
    );
    let key = Key::unscoped("k");
    cache.insert(&key, "v".to_string()).await;
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some("v"));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(cache.get(&key).await.unwrap(), None, "expired in L1 and L2");
    // A per-entry TTL overrides the default.
    cache
        .insert(
            &key,
            Loaded::new("w".to_string()).with_ttl(Duration::from_secs(100)),
        )
        .await;
    tokio::time::advance(Duration::from_secs(50)).await;
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some("w"));
}

#[tokio::test(start_paused = true)]
async fn promotion_keeps_the_original_expiry() {
    let l2 = MapTier::new(100);
    let cache = two_tier(
        CacheConfig::new(1 << 20).with_ttl(Duration::from_secs(10)),
        &l2,
    );
    let key = Key::unscoped("k");
    cache.insert(&key, "v".to_string()).await;
    cache.memory().remove(&key).await;
    tokio::time::advance(Duration::from_secs(8)).await;
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some("v"));
    let e = cache.memory().get_entry(&key).await.expect("promoted");
    assert_eq!(e.meta.expires_ms - e.meta.created_ms, 10_000);
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(cache.get(&key).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn errors_are_not_cached_unless_negative_caching_is_on() {
    let cache = l1_only(CacheConfig::new(1 << 20));
    let key = Key::unscoped("k");
    let calls = Calls::default();
    for _ in 0..2 {
        let c = calls.clone();
        let r = cache
            .get_or_compute(&key, c.fail(std::io::ErrorKind::TimedOut))
            .await;
        assert!(matches!(r, Err(Error::Load(_))));
    }
    assert_eq!(calls.get(), 2, "each call retried the loader");

    let cache = l1_only(CacheConfig::new(1 << 20).with_negative_ttl(Duration::from_secs(5)));
    let calls = Calls::default();
    for _ in 0..3 {
        let c = calls.clone();
        let _ = cache
            .get_or_compute(&key, c.fail(std::io::ErrorKind::TimedOut))
            .await;
    }
    assert_eq!(calls.get(), 1, "failure cached");
    let r = cache.get(&key).await;
    match r {
        Err(Error::CachedFailure { kind, .. }) => {
            assert_eq!(kind, foundation_core::ErrorKind::Timeout)
        }
        other => panic!("expected cached failure, got {other:?}"),
    }
    tokio::time::advance(Duration::from_secs(6)).await;
    let c = calls.clone();
    let v = cache.get_or_compute(&key, c.ok("ok")).await.unwrap();
    assert_eq!((v.as_str(), calls.get()), ("ok", 2));
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let cfg = CacheConfig::new(1 << 20)
        .with_ttl(Duration::from_secs(60))
        .with_fresh_for(Duration::from_secs(10));
    let cache = l1_only(cfg);
    let key = Key::unscoped("k");
    cache.insert(&key, "old".to_string()).await;
    tokio::time::advance(Duration::from_secs(20)).await;
    let calls = Calls::default();
    for _ in 0..5 {
        let c = calls.clone();
        let v = cache
            .get_or_compute(&key, c.slow("new", Duration::from_secs(1)))
            .await
            .unwrap();
        assert_eq!(v, "old", "stale value served without waiting");
    }
    assert!(cache.is_loading(&key));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(calls.get(), 1, "one background refresh");
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some("new"));
}

#[tokio::test(start_paused = true)]
async fn invalidation_by_key_tag_prefix_and_scope_reaches_every_tier() {
    let l2 = MapTier::new(100);
    let cache = two_tier(CacheConfig::new(1 << 20), &l2);
    let acme = Scope::new().with_tenant("acme");
    let globex = Scope::new().with_tenant("globex");
    let k = |s: &Scope, n: &str| Key::new(s, n);
    cache
        .insert(
            &k(&acme, "doc:1:summary"),
            Loaded::new("a1".to_string()).with_tags(["doc:1"]),
        )
        .await;
    cache
        .insert(&k(&acme, "doc:2:summary"), "a2".to_string())
        .await;
    cache.insert(&k(&acme, "user:9"), "u9".to_string()).await;
    cache
        .insert(&k(&globex, "doc:2:summary"), "g2".to_string())
        .await;
    cache
        .insert(
            &k(&globex, "other"),
            Loaded::new("g3".to_string()).with_tags(["doc:1"]),
        )
        .await;

    cache.invalidate_tag("doc:1").await.unwrap();
    assert_eq!(cache.get(&k(&acme, "doc:1:summary")).await.unwrap(), None);
    assert_eq!(cache.get(&k(&globex, "other")).await.unwrap(), None);
    cache.invalidate_prefix(&acme, "doc:").await.unwrap();
    assert_eq!(cache.get(&k(&acme, "doc:2:summary")).await.unwrap(), None);
    assert_eq!(
        cache
            .get(&k(&globex, "doc:2:summary"))
            .await
            .unwrap()
            .as_deref(),
        Some("g2"),
        "other scope untouched"
    );
    assert_eq!(
        cache.get(&k(&acme, "user:9")).await.unwrap().as_deref(),
        Some("u9")
    );
    cache.invalidate_scope(&globex).await.unwrap();
    assert_eq!(cache.get(&k(&globex, "doc:2:summary")).await.unwrap(), None);
    cache.invalidate(&k(&acme, "user:9")).await.unwrap();
    assert_eq!(cache.get(&k(&acme, "user:9")).await.unwrap(), None);
    assert!(l2.is_empty(), "L2 emptied too");
}

#[tokio::test(start_paused = true)]
async fn an_invalidation_during_a_load_keeps_its_value_out_of_the_tiers() {
    let cache = l1_only(CacheConfig::new(1 << 20));
    let key = Key::unscoped("k");
    let c2 = cache.clone();
    let k2 = key.clone();
    let task = tokio::spawn(async move {
        c2.get_or_compute(&k2, || async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, std::io::Error>("computed from old data".to_string())
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cache.invalidate(&key).await.unwrap();
    assert_eq!(
        task.await.unwrap().unwrap(),
        "computed from old data",
        "the waiter still gets its answer"
    );
    assert_eq!(
        cache.get(&key).await.unwrap(),
        None,
        "but it was not stored"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_does_not_strand_its_followers() {
    let cache = l1_only(CacheConfig::new(1 << 20));
    let key = Key::unscoped("k");
    let calls = Calls::default();
    let loader = |c: Calls| c.slow("v", Duration::from_secs(1));
    let (c1, k1) = (cache.clone(), key.clone());
    let leader = tokio::spawn({
        let l = loader(calls.clone());
        async move { c1.get_or_compute(&k1, l).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (c2, k2) = (cache.clone(), key.clone());
    let follower = tokio::spawn({
        let l = loader(calls.clone());
        async move { c2.get_or_compute(&k2, l).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    leader.abort();
    assert_eq!(follower.await.unwrap().unwrap(), "v");
    assert_eq!(calls.get(), 1, "the follower drove the leader's load");
}

#[tokio::test(start_paused = true)]
async fn scopes_never_share_exact_entries() {
    let cache = l1_only(CacheConfig::new(1 << 20));
    let base = Scope::new().with_tenant("acme").with_model("m1");
    let scopes = [
        base.clone(),
        base.clone().with_tenant("globex"),
        base.clone().with_model("m2"),
        base.clone().with_param("temperature", "0.7"),
        base.clone().with_param("system", "be terse"),
    ];
    for (i, s) in scopes.iter().enumerate() {
        let v = cache
            .get_or_compute(&Key::new(s, "same prompt"), move || async move {
                Ok::<_, std::io::Error>(format!("answer {i}"))
            })
            .await
            .unwrap();
        assert_eq!(
            v,
            format!("answer {i}"),
            "scope {i} got someone else's answer"
        );
    }
}

#[test]
fn invalid_configuration_is_rejected_with_the_field() {
    let e = TieredCache::<String>::builder(CacheConfig::new(0))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("memory.max_capacity"), "{e}");
}

#[tokio::test]
async fn runtime_reconfiguration_changes_ttl_but_not_capacity() {
    let cache = l1_only(CacheConfig::new(1 << 20));
    cache
        .reconfigure(CacheConfig::new(1 << 20).with_ttl(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(cache.config().ttl, Some(Duration::from_secs(5)));
    assert!(cache.reconfigure(CacheConfig::new(1 << 10)).is_err());
    assert!(
        cache
            .reconfigure(CacheConfig::new(1 << 20).with_ttl(Duration::ZERO))
            .is_err()
    );
}

#[tokio::test]
async fn l1_is_bounded_by_weight() {
    let cache = l1_only(CacheConfig::new(10_000));
    for i in 0..1_000 {
        cache
            .insert(&Key::unscoped(format!("k{i}")), "x".repeat(100))
            .await;
    }
    cache.memory().run_pending_tasks().await;
    assert!(
        cache.memory().weighted_size() <= 10_000,
        "{}",
        cache.memory().weighted_size()
    );
    assert!(cache.memory().entry_count() < 100);
}

/// A tier whose backend is down: every operation fails.
#[derive(Debug)]
struct DownTier;

impl foundation_cache::Tier<String> for DownTier {
    fn name(&self) -> &'static str {
        "down"
    }
    fn get<'a>(
        &'a self,
        _: &'a Key,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<Option<Arc<foundation_cache::Entry<String>>>, Error>,
    > {
        Box::pin(async { Err(Error::Codec("connection refused".into())) })
    }
    fn put<'a>(
        &'a self,
        _: &'a Key,
        _: Arc<foundation_cache::Entry<String>>,
        _: u64,
    ) -> futures_util::future::BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Err(Error::Codec("connection refused".into())) })
    }
    fn invalidate<'a>(
        &'a self,
        _: &'a foundation_cache::Selector,
    ) -> futures_util::future::BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Err(Error::Codec("connection refused".into())) })
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_lower_tier_degrades_to_a_miss_not_an_error() {
    let l3 = MapTier::new(100);
    let cache: TieredCache<String> = TieredCache::builder(CacheConfig::new(1 << 20))
        .with_tier(Arc::new(DownTier), foundation_cache::TierPolicy::default())
        .with_tier(
            Arc::new(l3.clone()),
            foundation_cache::TierPolicy::default(),
        )
        .build()
        .unwrap();
    let key = Key::unscoped("k");
    let calls = Calls::default();
    let c = calls.clone();
    assert_eq!(cache.get_or_compute(&key, c.ok("v")).await.unwrap(), "v");
    assert_eq!(
        l3.len(),
        1,
        "the healthy tier behind the broken one was written"
    );
    cache.memory().remove(&key).await;
    assert_eq!(
        cache.get(&key).await.unwrap().as_deref(),
        Some("v"),
        "read past the broken tier"
    );
    // Invalidation reports the broken tier, but still clears the others.
    assert!(cache.invalidate(&key).await.is_err());
    assert!(l3.is_empty());
    assert_eq!(calls.get(), 1);
}
