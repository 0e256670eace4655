//! L3 on SQLite: survives a restart, invalidates by tag/prefix/scope, stays bounded.
#![cfg(feature = "sqlite")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests and their helpers fail loudly"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use foundation_cache::tier::sqlite::SqliteTier;
use foundation_cache::{CacheConfig, Key, Loaded, Scope, TierPolicy, TieredCache};
use support::{Calls, unique};

fn db_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}.db", unique(name)))
}

async fn cache_on(l3: &SqliteTier) -> TieredCache<String> {
    TieredCache::builder(CacheConfig::new(1 << 20).with_ttl(Duration::from_secs(3600)))
        .with_tier(Arc::new(l3.clone()), TierPolicy::default())
        .build()
        .unwrap()
}

#[tokio::test]
async fn semantic_lookups_survive_a_restart_with_an_exported_index() {
    use foundation_cache::semantic::{
        HashingEmbedder, IndexSnapshot, Outcome, SemanticCache, SemanticConfig,
    };
    let path = db_path("semantic-restart");
    let scope = Scope::new().with_tenant("acme").with_model("small");
    let semantic = |exact| {
        SemanticCache::builder(
            exact,
            Arc::new(HashingEmbedder::new(384)),
            SemanticConfig::new(0.8, 1000),
        )
        .build()
        .unwrap()
    };
    let saved: Vec<u8> = {
        let l3 = SqliteTier::open(&path, 1000).await.unwrap();
        let cache = semantic(cache_on(&l3).await);
        for (p, a) in [
            ("How do I reset my password?", "Settings → Security"),
            ("Which plans include SSO?", "Enterprise"),
        ] {
            cache
                .get_or_compute(&scope, p, move || async move {
                    Ok::<_, std::io::Error>(a.to_string())
                })
                .await
                .unwrap();
        }
        serde_json::to_vec(&cache.export_index()).unwrap()
    };
    // A new process: empty L1 and index, same SQLite file, the saved index.
    let l3 = SqliteTier::open(&path, 1000).await.unwrap();
    let cache = semantic(cache_on(&l3).await);
    let calls = Calls::default();
    let (_, before) = cache
        .lookup(&scope, "how do i reset my password")
        .await
        .unwrap();
    assert!(
        matches!(before, Outcome::Miss { nearest: None, .. }),
        "{before:?}"
    );
    let snapshot: IndexSnapshot = serde_json::from_slice(&saved).unwrap();
    assert_eq!(snapshot.len(), 2);
    assert_eq!(cache.import_index(snapshot.clone()).unwrap(), 2);
    assert_eq!(cache.import_index(snapshot).unwrap(), 0, "already indexed");
    let a = cache
        .get_or_compute(&scope, "how do i reset my password", calls.ok("recomputed"))
        .await
        .unwrap();
    assert_eq!(a.value, "Settings → Security");
    assert!(
        matches!(a.outcome, Outcome::Semantic { .. }),
        "{:?}",
        a.outcome
    );
    assert_eq!(calls.get(), 0);
    // Another tenant still sees nothing.
    let (v, _) = cache
        .lookup(
            &Scope::new().with_tenant("globex").with_model("small"),
            "how do i reset my password",
        )
        .await
        .unwrap();
    assert!(v.is_none());
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn survives_a_restart() {
    let path = db_path("restart");
    let key = Key::new(&Scope::new().with_tenant("acme"), "expensive");
    {
        let l3 = SqliteTier::open(&path, 1000).await.unwrap();
        let cache = cache_on(&l3).await;
        let v = cache
            .get_or_compute(&key, || async {
                Ok::<_, std::io::Error>("computed once".to_string())
            })
            .await
            .unwrap();
        assert_eq!(v, "computed once");
    }
    // A new process: fresh L1, same file.
    let l3 = SqliteTier::open(&path, 1000).await.unwrap();
    let cache = cache_on(&l3).await;
    let calls = Calls::default();
    let c = calls.clone();
    let v = cache
        .get_or_compute(&key, c.ok("recomputed"))
        .await
        .unwrap();
    assert_eq!(v, "computed once");
    assert_eq!(calls.get(), 0);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn invalidation_by_tag_prefix_and_scope() {
    let path = db_path("invalidate");
    let l3 = SqliteTier::open(&path, 1000).await.unwrap();
    let cache = cache_on(&l3).await;
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
        .insert(&Key::new(&a, "doc%_"), "like-metachars".to_string())
        .await;
    cache.insert(&Key::new(&b, "doc:2"), "b2".to_string()).await;
    assert_eq!(l3.len().await.unwrap(), 4);
    cache.invalidate_tag("t").await.unwrap();
    assert_eq!(l3.len().await.unwrap(), 3);
    cache.invalidate_prefix(&a, "doc:").await.unwrap();
    assert_eq!(
        l3.len().await.unwrap(),
        2,
        "doc%_ is not matched by the prefix doc:"
    );
    cache.invalidate_scope(&a).await.unwrap();
    assert_eq!(l3.len().await.unwrap(), 1);
    // Only L3 holds it now: a fresh cache sees b's entry.
    let fresh = cache_on(&l3).await;
    assert_eq!(
        fresh.get(&Key::new(&b, "doc:2")).await.unwrap().as_deref(),
        Some("b2")
    );
    assert_eq!(fresh.get(&Key::new(&a, "doc:2")).await.unwrap(), None);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn stays_bounded() {
    let path = db_path("bounded");
    let l3 = SqliteTier::open(&path, 100).await.unwrap();
    let cache = cache_on(&l3).await;
    for i in 0..600 {
        cache
            .insert(&Key::unscoped(format!("k{i}")), "v".to_string())
            .await;
    }
    l3.trim(cache.now_ms()).await.unwrap();
    assert_eq!(l3.len().await.unwrap(), 100);
    // The newest survive.
    let fresh = cache_on(&l3).await;
    assert!(fresh.get(&Key::unscoped("k599")).await.unwrap().is_some());
    assert!(fresh.get(&Key::unscoped("k0")).await.unwrap().is_none());
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn zero_capacity_is_rejected() {
    let e = SqliteTier::open(db_path("zero"), 0).await.unwrap_err();
    assert!(e.to_string().contains("max_entries"), "{e}");
}
