//! Metrics through the `metrics` facade. Handles are registered once at
//! construction so the hot path does no label work.
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

use std::time::Duration;

use metrics::{Counter, Histogram};

#[derive(Debug)]
pub(crate) struct Telemetry {
    hits: Vec<Counter>,
    tier_errors: Vec<Counter>,
    pub(crate) misses: Counter,
    saved: Counter,
    loads_ok: Counter,
    loads_err: Counter,
    load_seconds: Histogram,
    pub(crate) coalesced: Counter,
    pub(crate) refreshes: Counter,
    pub(crate) not_admitted: Counter,
    pub(crate) lower_skipped: Counter,
    pub(crate) discarded: Counter,
    pub(crate) scope_mismatch: Counter,
}

impl Telemetry {
    pub(crate) fn new<'a>(cache: &str, lower: impl Iterator<Item = &'a str>) -> Self {
        let c = cache.to_owned();
        let tiers: Vec<&str> = std::iter::once("memory").chain(lower).collect();
        Self {
            hits: tiers
                .iter()
                .map(|t| metrics::counter!("foundation_cache_hits_total", "cache" => c.clone(), "tier" => (*t).to_owned()))
                .collect(),
            tier_errors: tiers
                .iter()
                .map(|t| metrics::counter!("foundation_cache_tier_errors_total", "cache" => c.clone(), "tier" => (*t).to_owned()))
                .collect(),
            misses: metrics::counter!("foundation_cache_misses_total", "cache" => c.clone()),
            saved: metrics::counter!("foundation_cache_cost_saved_micros_total", "cache" => c.clone()),
            loads_ok: metrics::counter!("foundation_cache_loads_total", "cache" => c.clone(), "result" => "ok"),
            loads_err: metrics::counter!("foundation_cache_loads_total", "cache" => c.clone(), "result" => "error"),
            load_seconds: metrics::histogram!("foundation_cache_load_seconds", "cache" => c.clone()),
            coalesced: metrics::counter!("foundation_cache_coalesced_total", "cache" => c.clone()),
            refreshes: metrics::counter!("foundation_cache_refreshes_total", "cache" => c.clone()),
            not_admitted: metrics::counter!("foundation_cache_not_admitted_total", "cache" => c.clone()),
            lower_skipped: metrics::counter!("foundation_cache_lower_writes_skipped_total", "cache" => c.clone()),
            discarded: metrics::counter!("foundation_cache_discarded_loads_total", "cache" => c.clone()),
            scope_mismatch: metrics::counter!("foundation_cache_scope_mismatch_total", "cache" => c),
        }
    }

    #[inline]
    pub(crate) fn hit(&self, tier: usize, cost_micros: u64) {
        if let Some(h) = self.hits.get(tier) {
            h.increment(1);
        }
        if cost_micros > 0 {
            self.saved.increment(cost_micros);
        }
    }

    pub(crate) fn tier_error(&self, lower_index: usize) {
        if let Some(c) = self.tier_errors.get(lower_index + 1) {
            c.increment(1);
        }
    }

    pub(crate) fn load(&self, ok: bool, took: Duration) {
        if ok { &self.loads_ok } else { &self.loads_err }.increment(1);
        self.load_seconds.record(took.as_secs_f64());
    }
}
