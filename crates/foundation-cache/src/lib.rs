//! Tiered, semantic, adaptive caching for services that call AI models.
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
