//! Cache configuration.

use std::time::Duration;

use foundation_core::{Validate, Validator};

use crate::tier::MemoryTierConfig;

/// Configuration of a [`TieredCache`](crate::TieredCache).
///
/// ```
/// use foundation_cache::CacheConfig;
/// let c: CacheConfig = serde_json::from_str(r#"{
///     "memory": { "max_capacity": 67108864 },
///     "ttl": "1h", "fresh_for": "50m", "negative_ttl": "5s"
/// }"#).unwrap();
/// foundation_core::Validate::validate(&c).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// L1 (in-process) settings.
    pub memory: MemoryTierConfig,
    /// How long an entry lives unless its loader says otherwise (`None`: until evicted).
    #[serde(default, with = "foundation_core::serde_util::opt_duration")]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub ttl: Option<Duration>,
    /// How long an entry is fresh; between `fresh_for` and `ttl` it is served
    /// stale while one background load refreshes it (stale-while-revalidate,
    /// refresh-ahead). `None`: fresh until it expires.
    #[serde(default, with = "foundation_core::serde_util::opt_duration")]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub fresh_for: Option<Duration>,
    /// Cache loader failures for this long (negative caching, L1 only).
    /// `None`: failures are never cached.
    #[serde(default, with = "foundation_core::serde_util::opt_duration")]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub negative_ttl: Option<Duration>,
}

// === impl CacheConfig ===

impl CacheConfig {
    /// An L1 of `max_capacity` bytes, no TTL, no staleness, no negative caching.
    #[must_use]
    pub fn new(max_capacity: u64) -> Self {
        Self {
            memory: MemoryTierConfig {
                max_capacity,
                time_to_idle: None,
            },
            ttl: None,
            fresh_for: None,
            negative_ttl: None,
        }
    }

    /// Sets the default TTL.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the freshness window (stale-while-revalidate after it).
    #[must_use]
    pub fn with_fresh_for(mut self, fresh: Duration) -> Self {
        self.fresh_for = Some(fresh);
        self
    }

    /// Enables negative caching of loader failures.
    #[must_use]
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Sets L1's time-to-idle.
    #[must_use]
    pub fn with_time_to_idle(mut self, tti: Duration) -> Self {
        self.memory.time_to_idle = Some(tti);
        self
    }
}

impl Validate for CacheConfig {
    fn validate_into(&self, v: &mut Validator) {
        v.nested("memory", &self.memory);
        v.check(self.ttl != Some(Duration::ZERO), "ttl", "must be positive");
        v.check(
            self.fresh_for != Some(Duration::ZERO),
            "fresh_for",
            "must be positive",
        );
        v.check(
            self.negative_ttl != Some(Duration::ZERO),
            "negative_ttl",
            "must be positive",
        );
        if let (Some(f), Some(t)) = (self.fresh_for, self.ttl) {
            v.check(
                f <= t,
                "fresh_for",
                format!("must not exceed ttl ({})", humantime::format_duration(t)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let c = CacheConfig::new(0)
            .with_ttl(Duration::from_secs(1))
            .with_fresh_for(Duration::from_secs(2));
        let e = c.validate().unwrap_err();
        assert!(e.has_error_at("memory.max_capacity"), "{e}");
        assert!(e.has_error_at("fresh_for"), "{e}");
        assert!(
            serde_json::from_str::<CacheConfig>(r#"{"memory":{"max_capacity":1},"ttl_typo":"1s"}"#)
                .is_err()
        );
    }
}
