//! Plain serde configuration of a limiter: its dimensions, concurrency and queue.
//!
//! ```
//! use foundation_ratelimit::{DimensionConfig, LimiterConfig};
//! use foundation_core::Validate;
//!
//! let cfg: LimiterConfig = toml::from_str(r#"
//!     name = "openai"
//!     concurrency = 16
//!     [[dimensions]]
//!     name = "requests"
//!     limit = 500
//!     period = "1m"
//!     [[dimensions]]
//!     name = "tokens"
//!     limit = 200000
//!     period = "1m"
//! "#)?;
//! assert!(cfg.validate().is_ok());
//! assert_eq!(cfg.dimensions[1], DimensionConfig::per_minute("tokens", 200_000));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration;

use foundation_core::{Validate, Validator};
use serde::{Deserialize, Serialize};

use crate::gcra::Gcra;

/// The most rate dimensions one limiter can hold.
///
/// A [`Charge`](crate::Charge) is a fixed array of this many amounts so that it
/// is `Copy` and the hot path never allocates.
pub const MAX_DIMENSIONS: usize = 8;

/// One rate dimension: `limit` units per `period`, with bursts up to `burst`.
///
/// The limit is enforced as a GCRA (generic cell rate algorithm, a leaky
/// bucket without a refill timer): capacity refills continuously at
/// `limit / period`, and at most `burst` units can be taken at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct DimensionConfig {
    /// The dimension's name (`requests`, `tokens`, `input_tokens`, ...): the
    /// key used by charges by name, header feedback and metrics labels.
    pub name: String,
    /// Units allowed per `period`.
    pub limit: u64,
    /// The period of `limit` (`"1m"`, `"1d"`, `"10s"`).
    #[serde(with = "foundation_core::serde_util::duration")]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub period: Duration,
    /// The most units available at once; defaults to `limit` (a full
    /// period's worth, like providers' per-minute buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Bound on the total cost of waiters queued on this dimension; defaults
    /// to twice the burst. Past it, `acquire` fails fast with `QueueFull`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<u64>,
}

// === impl DimensionConfig ===

impl DimensionConfig {
    /// `limit` units per `period`, burst equal to `limit`.
    pub fn new(name: impl Into<String>, limit: u64, period: Duration) -> Self {
        Self {
            name: name.into(),
            limit,
            period,
            burst: None,
            max_queued: None,
        }
    }

    /// `limit` units per second.
    pub fn per_second(name: impl Into<String>, limit: u64) -> Self {
        Self::new(name, limit, Duration::from_secs(1))
    }

    /// `limit` units per minute.
    pub fn per_minute(name: impl Into<String>, limit: u64) -> Self {
        Self::new(name, limit, Duration::from_secs(60))
    }

    /// `limit` units per day.
    pub fn per_day(name: impl Into<String>, limit: u64) -> Self {
        Self::new(name, limit, Duration::from_secs(86_400))
    }

    /// Sets the burst (most units available at once).
    #[must_use]
    pub fn with_burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Sets the bound on queued cost for this dimension.
    #[must_use]
    pub fn with_max_queued(mut self, max_queued: u64) -> Self {
        self.max_queued = Some(max_queued);
        self
    }

    /// The burst in effect (`burst`, or `limit` when unset).
    #[must_use]
    pub fn effective_burst(&self) -> u64 {
        self.burst.unwrap_or(self.limit)
    }

    /// The queue bound in effect (`max_queued`, or twice the burst).
    #[must_use]
    pub fn effective_max_queued(&self) -> u64 {
        self.max_queued
            .unwrap_or_else(|| self.effective_burst().saturating_mul(2))
    }

    pub(crate) fn gcra(&self) -> Option<Gcra> {
        Gcra::new(self.limit, self.period, self.effective_burst())
    }
}

impl Validate for DimensionConfig {
    fn validate_into(&self, v: &mut Validator) {
        v.check(!self.name.trim().is_empty(), "name", "must not be empty");
        v.check(self.limit > 0, "limit", "must be at least 1");
        v.check(!self.period.is_zero(), "period", "must be positive");
        if let Some(burst) = self.burst {
            v.check(burst > 0, "burst", "must be at least 1");
        }
        if let Some(q) = self.max_queued {
            v.check(
                q > 0,
                "max_queued",
                "must be at least 1 (omit it for the default)",
            );
        }
        if self.limit > 0
            && !self.period.is_zero()
            && self.effective_burst() > 0
            && self.gcra().is_none()
        {
            v.error(
                "period",
                format!(
                    "{:?} per {} units with burst {} is out of range (the refill interval or the burst window overflows 64-bit nanoseconds)",
                    self.period,
                    self.limit,
                    self.effective_burst()
                ),
            );
        }
    }
}

/// Bounds of the FIFO queue of `acquire` waiters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct QueueConfig {
    /// The most waiters at once; `acquire` fails with `QueueFull` past it.
    /// Zero disables waiting: `acquire` then fails with `QueueFull` whenever
    /// it would have to wait.
    #[serde(default = "QueueConfig::default_max_waiters")]
    pub max_waiters: usize,
}

// === impl QueueConfig ===

impl QueueConfig {
    const fn default_max_waiters() -> usize {
        1024
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_waiters: Self::default_max_waiters(),
        }
    }
}

/// A limiter's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct LimiterConfig {
    /// A name for telemetry labels (`limiter="openai"`); defaults to `"default"`.
    #[serde(default = "LimiterConfig::default_name")]
    pub name: String,
    /// The rate dimensions, at most [`MAX_DIMENSIONS`], with unique names.
    /// A charge's amounts are positional in this order.
    pub dimensions: Vec<DimensionConfig>,
    /// The most permits in flight at once (each permit takes one slot until
    /// dropped); `None` for no concurrency limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Bounds of the waiter queue.
    #[serde(default)]
    pub queue: QueueConfig,
}

// === impl LimiterConfig ===

impl LimiterConfig {
    fn default_name() -> String {
        "default".to_owned()
    }

    /// An empty configuration named `"default"`; add dimensions with
    /// [`with_dimension`](Self::with_dimension).
    #[must_use]
    pub fn new() -> Self {
        Self {
            name: Self::default_name(),
            dimensions: Vec::new(),
            concurrency: None,
            queue: QueueConfig::default(),
        }
    }

    /// Sets the telemetry name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Appends a rate dimension.
    #[must_use]
    pub fn with_dimension(mut self, dim: DimensionConfig) -> Self {
        self.dimensions.push(dim);
        self
    }

    /// Sets the concurrency limit.
    #[must_use]
    pub fn with_concurrency(mut self, max_in_flight: u32) -> Self {
        self.concurrency = Some(max_in_flight);
        self
    }

    /// Sets the most waiters at once.
    #[must_use]
    pub fn with_max_waiters(mut self, max_waiters: usize) -> Self {
        self.queue.max_waiters = max_waiters;
        self
    }

    /// The position of the dimension called `name`.
    #[must_use]
    pub fn position(&self, name: &str) -> Option<usize> {
        self.dimensions.iter().position(|d| d.name == name)
    }

    /// Parses and validates a TOML configuration.
    ///
    /// # Errors
    /// A syntax/shape error (unknown fields are rejected) or the validation
    /// errors with their field paths.
    pub fn from_toml(text: &str) -> Result<Self, crate::ConfigError> {
        let cfg: Self =
            toml::from_str(text).map_err(|e| crate::ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl Validate for LimiterConfig {
    fn validate_into(&self, v: &mut Validator) {
        v.check(!self.name.is_empty(), "name", "must not be empty");
        v.check(
            self.dimensions.len() <= MAX_DIMENSIONS,
            "dimensions",
            format!(
                "at most {MAX_DIMENSIONS} dimensions are supported, got {}",
                self.dimensions.len()
            ),
        );
        v.check(
            !self.dimensions.is_empty() || self.concurrency.is_some(),
            "dimensions",
            "a limiter needs at least one dimension or a concurrency limit",
        );
        v.nested("dimensions", &self.dimensions);
        for (i, d) in self.dimensions.iter().enumerate() {
            if self.dimensions[..i].iter().any(|o| o.name == d.name) {
                v.error(
                    foundation_core::FieldPath::from("dimensions")
                        .index(i)
                        .field("name"),
                    format!("duplicate dimension name {:?}", d.name),
                );
            }
        }
        if let Some(c) = self.concurrency {
            v.check(
                c > 0,
                "concurrency",
                "must be at least 1 (omit it for no limit)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foundation_core::Validate;

    #[test]
    fn errors_name_field_paths() {
        let cfg = LimiterConfig::new()
            .with_dimension(DimensionConfig::per_minute("requests", 0))
            .with_dimension(DimensionConfig::per_minute("requests", 5).with_burst(0))
            .with_concurrency(0);
        let err = cfg.validate().unwrap_err();
        assert!(err.has_error_at("dimensions[0].limit"), "{err}");
        assert!(err.has_error_at("dimensions[1].burst"), "{err}");
        assert!(err.has_error_at("dimensions[1].name"), "{err}");
        assert!(err.has_error_at("concurrency"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = LimiterConfig::from_toml(
            "[[dimensions]]\nname = \"r\"\nlimit = 1\nperiod = \"1s\"\nbrust = 3\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("brust"), "{err}");
    }

    #[test]
    fn too_many_dimensions_and_overflow_are_rejected() {
        let mut cfg = LimiterConfig::new();
        for i in 0..=MAX_DIMENSIONS {
            cfg = cfg.with_dimension(DimensionConfig::per_second(format!("d{i}"), 1));
        }
        assert!(cfg.validate().unwrap_err().has_error_at("dimensions"));
        let cfg = LimiterConfig::new().with_dimension(
            DimensionConfig::new("slow", 1, Duration::from_secs(86_400 * 365 * 100))
                .with_burst(u64::MAX),
        );
        assert!(
            cfg.validate()
                .unwrap_err()
                .has_error_at("dimensions[0].period")
        );
        assert!(LimiterConfig::new().validate().is_err());
    }

    #[cfg(feature = "schemars")]
    #[test]
    fn json_schema_names_the_fields() {
        let schema = serde_json::to_string(&schemars::schema_for!(LimiterConfig)).unwrap();
        for field in [
            "dimensions",
            "concurrency",
            "max_waiters",
            "burst",
            "max_queued",
            "period",
        ] {
            assert!(schema.contains(field), "{field} missing from {schema}");
        }
    }
}
