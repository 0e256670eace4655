//! Tiered, semantic, adaptive caching for services that call AI models.
//!
//! Model calls are slow and cost money; many requests repeat exactly and many
//! more repeat in meaning. This crate caches their results:
//!
//! - [`TieredCache`]: an ordered list of tiers — L1 in-process on moka
//!   ([`MemoryTier`], weighted by encoded size, per-entry expiry), then shared
//!   and durable tiers behind [`Tier`] (`tier::redis::RedisTier`,
//!   `tier::sqlite::SqliteTier`, [`tier::MapTier`] or yours). Reads promote
//!   into faster tiers; each lower tier has a [`TierPolicy`].
//!   [`get_or_compute`](TieredCache::get_or_compute) loads a missing key once
//!   however many tasks ask (single-flight across tiers), serves stale entries
//!   while one background load refreshes them, caches failures only with
//!   `negative_ttl`, and invalidates by key, tag, prefix or [`Scope`].
//! - [`semantic::SemanticCache`]: reuse an answer for a prompt that means the
//!   same, in the same scope (tenant, model, answer-changing parameters), if a
//!   [`semantic::Verifier`] agrees; falls back to exact keys when the
//!   [`semantic::Embedder`] fails.
//! - [`adaptive::AdaptivePolicy`]: cost-aware admission, tier placement and
//!   TTL learned from access statistics and the loader's measured cost.
//! - [`warm::Prefetcher`]: predictive warming from a successor model.
//!
//! Values are stored in every shared tier as a version byte plus
//! [postcard](https://docs.rs/postcard): compact (varints, no field names),
//! serde-driven, no schema step. Entries carry their scope, expiry, tags and
//! the cost of computing them.
//!
//! # A two-tier cache with scopes
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), foundation_cache::Error> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use foundation_cache::tier::MapTier;
//! use foundation_cache::{CacheConfig, Key, Loaded, Scope, TieredCache, TierPolicy};
//! use foundation_core::Cost;
//!
//! // L2 here is the in-process MapTier; in production, RedisTier (feature
//! // `redis`) shared by every instance, or SqliteTier (feature `sqlite`).
//! let l2 = MapTier::new(100_000);
//! let config = CacheConfig::new(64 << 20)          // L1: 64 MiB of encoded entries
//!     .with_ttl(Duration::from_secs(3600))         // hard expiry
//!     .with_fresh_for(Duration::from_secs(3000))   // then stale-while-revalidate
//!     .with_negative_ttl(Duration::from_secs(5));  // remember failures briefly
//! let cache: TieredCache<String> = TieredCache::builder(config)
//!     .with_tier(Arc::new(l2), TierPolicy::default().with_max_ttl(Duration::from_secs(86_400)))
//!     .build()?;
//!
//! // A key lives in a scope: tenant, model and answer-changing parameters.
//! let scope = Scope::new().with_tenant("acme").with_model("gpt-4o-mini").with_param("temperature", "0");
//! let key = Key::new(&scope, "summary:doc-17");
//! let v = cache
//!     .get_or_load(&key, || async {
//!         // ... call the model ...
//!         Ok::<_, std::io::Error>(Loaded::new("a summary".to_string()).with_tags(["doc-17"]).with_cost(Cost::from_micros(1_800)))
//!     })
//!     .await?;
//! assert_eq!(v, "a summary");
//! assert_eq!(cache.get(&key).await?.as_deref(), Some("a summary"));
//!
//! // Another tenant has its own entries.
//! assert_eq!(cache.get(&Key::new(&Scope::new().with_tenant("globex"), "summary:doc-17")).await?, None);
//!
//! // The document changed: drop everything derived from it, in every tier.
//! cache.invalidate_tag("doc-17").await?;
//! assert_eq!(cache.get(&key).await?, None);
//! # Ok(()) }
//! ```
//!
//! # Semantic caching with a custom embedder
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), foundation_cache::Error> {
//! use std::sync::Arc;
//! use futures_util::{FutureExt, future::BoxFuture};
//! use foundation_cache::semantic::{Embedder, HashingEmbedder, Outcome, SemanticCache, SemanticConfig};
//! use foundation_cache::{CacheConfig, Error, Scope, TieredCache};
//!
//! /// Any model: here it delegates to the local hashing embedder.
//! #[derive(Debug)]
//! struct MyEmbedder(HashingEmbedder);
//! impl Embedder for MyEmbedder {
//!     fn dimensions(&self) -> usize { self.0.dimensions() }
//!     fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, Error>> {
//!         async move { Ok(texts.iter().map(|t| self.0.embed_one(t)).collect()) }.boxed()
//!     }
//! }
//!
//! let exact = TieredCache::<String>::builder(CacheConfig::new(16 << 20)).build()?;
//! // Tuning: the threshold trades hit rate for wrong answers; pick it with
//! // `optimize_threshold` on labelled queries, then watch the
//! // `foundation_cache_semantic_similarity` histogram of hits and near misses.
//! let cache = SemanticCache::builder(exact, Arc::new(MyEmbedder(HashingEmbedder::new(384))), SemanticConfig::new(0.85, 100_000)).build()?;
//! let scope = Scope::new().with_tenant("acme");
//! cache.get_or_compute(&scope, "How do I turn on dark mode?", || async { Ok::<_, std::io::Error>("Settings → Appearance".to_string()) }).await?;
//! let same = cache.get_or_compute(&scope, "how do i turn on dark mode", || async { Ok::<_, std::io::Error>("unused".to_string()) }).await?;
//! assert!(matches!(same.outcome, Outcome::Semantic { .. }));
//! // The default verifier refuses the opposite question, however similar.
//! let opposite = cache.get_or_compute(&scope, "How do I turn off dark mode?", || async { Ok::<_, std::io::Error>("Settings → Appearance → Light".to_string()) }).await?;
//! assert!(matches!(opposite.outcome, Outcome::Miss { vetoed: Some(_), .. }));
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
#![cfg_attr(
    feature = "redis",
    doc = "- `redis`: [`tier::redis::RedisTier`], an L2 on a Redis server (redis 1.x, tokio)."
)]
#![cfg_attr(
    not(feature = "redis"),
    doc = "- `redis`: `tier::redis::RedisTier`, an L2 on a Redis server (redis 1.x, tokio)."
)]
#![cfg_attr(
    feature = "sqlite",
    doc = "- `sqlite`: [`tier::sqlite::SqliteTier`], a durable L3 in a SQLite file (sqlx 0.9)."
)]
#![cfg_attr(
    not(feature = "sqlite"),
    doc = "- `sqlite`: `tier::sqlite::SqliteTier`, a durable L3 in a SQLite file (sqlx 0.9)."
)]
//! - `ann`: an HNSW index (USearch) for semantic partitions above
//!   [`semantic::SemanticConfig::ann_threshold`] vectors; without it search is
//!   exact. Needs a C++17 compiler.
//! - `tls`: `https://` endpoints for [`semantic::OpenAiEmbedder`] (rustls).
//! - `schemars`: `JsonSchema` for the configuration types.
//!
//! # Metrics
//!
//! Through the `metrics` facade (the application installs a recorder;
//! handles are registered when a cache is built, so install it first):
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `foundation_cache_hits_total` | counter | `cache`, `tier` |
//! | `foundation_cache_misses_total` | counter | `cache` |
//! | `foundation_cache_cost_saved_micros_total` | counter | `cache` |
//! | `foundation_cache_loads_total` | counter | `cache`, `result` (`ok`/`error`) |
//! | `foundation_cache_load_seconds` | histogram | `cache` |
//! | `foundation_cache_coalesced_total` | counter | `cache` (waiters that joined a running load) |
//! | `foundation_cache_refreshes_total` | counter | `cache` (stale-while-revalidate and warming loads) |
//! | `foundation_cache_not_admitted_total` | counter | `cache` (L1 admission refused by the placement) |
//! | `foundation_cache_lower_writes_skipped_total` | counter | `cache` (lower-tier writes the placement skipped) |
//! | `foundation_cache_discarded_loads_total` | counter | `cache` (values not stored because of a concurrent invalidation) |
//! | `foundation_cache_scope_mismatch_total` | counter | `cache` (shared-tier entries refused for a different scope) |
//! | `foundation_cache_tier_errors_total` | counter | `cache`, `tier` |
//! | `foundation_cache_evictions_total` | counter | `cache`, `cause` (`size`/`expired`/`invalidated`/`replaced`) |
//! | `foundation_cache_semantic_similarity` | histogram | `cache`, `outcome` (`hit`/`below_threshold`/`vetoed`) |
//! | `foundation_cache_semantic_lookups_total` | counter | `cache`, `outcome` (… and `exact`/`embed_failed`/`coalesced`) |
//! | `foundation_cache_prefetches_total` | counter | `cache`, `outcome` (`issued`/`used`/`wasted`/`skipped`) |
//!
//! Loads, invalidation failures and vetoes are also logged through `tracing`
//! at debug/warn level.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod adaptive;
mod cache;
mod config;
pub mod entry;
mod error;
mod scope;
pub mod semantic;
mod telemetry;
pub mod tier;
pub mod warm;

pub use cache::{
    AccessObserver, CacheValue, Decision, Loaded, Placement, TieredCache, TieredCacheBuilder,
};
pub use config::CacheConfig;
pub use entry::{Entry, Meta, Payload};
pub use error::{Error, SharedError};
pub use scope::{Key, Scope, ScopeId, Selector};
pub use tier::{MemoryTier, MemoryTierConfig, Tier, TierPolicy};
