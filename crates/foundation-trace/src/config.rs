//! Configuration: what is recorded, what is kept, how big it may get and what
//! is redacted.
//!
//! Plain serde data with defaults for every field, checked by
//! `foundation_core::Validate` when a [`TraceLayer`](crate::TraceLayer)
//! is built or reconfigured.
//!
//! ```
//! use foundation_core::Validate;
//! use foundation_trace::TraceConfig;
//!
//! let config: TraceConfig = serde_json::from_str(r#"{
//!     "sample_rate": 1.0,
//!     "retention": { "max_failed": 50, "max_successful": 20, "successful_sample_rate": 0.1 },
//!     "limits": { "max_steps": 128 },
//!     "redaction": { "field_patterns": ["ssn", "credit_card"] }
//! }"#)?;
//! config.validate()?;
//! assert!(config.redaction.enabled); // on by default
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use foundation_core::{Validate, Validator};
use serde::{Deserialize, Serialize};

/// Everything a [`TraceLayer`](crate::TraceLayer) can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    /// Fraction of root operations that are recorded at all (head sampling),
    /// from `0.0` to `1.0`. Default `1.0`.
    ///
    /// An operation that is not recorded costs almost nothing, and an error
    /// raised inside it carries only the chain of operation names (no step
    /// data or timings): the decision is taken when the root operation starts,
    /// before anyone knows whether it will fail. Keep this at `1.0` when every
    /// failure must explain itself, and use [`RetentionConfig`] to bound what
    /// is kept.
    pub sample_rate: f64,
    /// Which finished traces are kept in the [`TraceStore`](crate::TraceStore).
    pub retention: RetentionConfig,
    /// Size caps for a single trace.
    pub limits: LimitsConfig,
    /// Secrets removed at capture time.
    pub redaction: RedactionConfig,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            sample_rate: 1.0,
            retention: RetentionConfig::default(),
            limits: LimitsConfig::default(),
            redaction: RedactionConfig::default(),
        }
    }
}

// === impl TraceConfig ===

impl TraceConfig {
    /// This configuration with `retention`.
    #[must_use]
    pub fn with_retention(mut self, retention: RetentionConfig) -> Self {
        self.retention = retention;
        self
    }

    /// This configuration with `limits`.
    #[must_use]
    pub fn with_limits(mut self, limits: LimitsConfig) -> Self {
        self.limits = limits;
        self
    }

    /// This configuration with `redaction`.
    #[must_use]
    pub fn with_redaction(mut self, redaction: RedactionConfig) -> Self {
        self.redaction = redaction;
        self
    }

    /// This configuration with head sampling at `rate` (`0.0..=1.0`).
    #[must_use]
    pub fn with_sample_rate(mut self, rate: f64) -> Self {
        self.sample_rate = rate;
        self
    }
}

impl Validate for TraceConfig {
    fn validate_into(&self, v: &mut Validator) {
        check_rate(v, "sample_rate", self.sample_rate);
        v.nested("retention", &self.retention);
        v.nested("limits", &self.limits);
        v.nested("redaction", &self.redaction);
    }
}

fn check_rate(v: &mut Validator, path: &str, rate: f64) {
    v.check(
        rate.is_finite() && (0.0..=1.0).contains(&rate),
        path,
        format!("must be between 0.0 and 1.0, got {rate}"),
    );
}

/// Which finished traces the store keeps.
///
/// Failed and successful traces live in separate bounded buffers, so a flood
/// of successes never evicts the failures you want to look at. Each buffer
/// keeps the most recent traces and evicts the oldest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// How many failed traces to keep (most recent first). `0` keeps none.
    /// Default 256.
    pub max_failed: usize,
    /// How many successful traces to keep. `0` keeps none. Default 64.
    pub max_successful: usize,
    /// Fraction of successful traces that are kept at all, from `0.0` to
    /// `1.0`. Sampling is deterministic and evenly spread (a rate of `0.25`
    /// keeps exactly every fourth). Default `1.0`.
    pub successful_sample_rate: f64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_failed: 256,
            max_successful: 64,
            successful_sample_rate: 1.0,
        }
    }
}

// === impl RetentionConfig ===

impl RetentionConfig {
    /// Keep only failed traces, at most `max_failed` of them.
    #[must_use]
    pub fn failed_only(max_failed: usize) -> Self {
        Self {
            max_failed,
            max_successful: 0,
            successful_sample_rate: 0.0,
        }
    }

    /// Keep the last `n` failed and the last `n` successful traces.
    #[must_use]
    pub fn last(n: usize) -> Self {
        Self {
            max_failed: n,
            max_successful: n,
            successful_sample_rate: 1.0,
        }
    }

    /// This policy, keeping only a `rate` fraction of successful traces.
    #[must_use]
    pub fn with_successful_sample_rate(mut self, rate: f64) -> Self {
        self.successful_sample_rate = rate;
        self
    }
}

impl Validate for RetentionConfig {
    fn validate_into(&self, v: &mut Validator) {
        check_rate(v, "successful_sample_rate", self.successful_sample_rate);
        v.check(
            self.max_failed <= MAX_STORE,
            "max_failed",
            format!("must be at most {MAX_STORE}"),
        );
        v.check(
            self.max_successful <= MAX_STORE,
            "max_successful",
            format!("must be at most {MAX_STORE}"),
        );
    }
}

/// Upper bound on each store buffer, so a typo cannot ask for unbounded memory.
const MAX_STORE: usize = 1_000_000;

/// Size caps for one trace. Whatever is cut is counted and marked, never
/// silently dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Steps (events) recorded per trace; later ones are counted as dropped.
    /// Error-level steps may use a small reserve beyond this cap so the
    /// failure itself is not lost. Default 256.
    pub max_steps: usize,
    /// Operations (spans) recorded per trace. Default 128.
    pub max_operations: usize,
    /// Bytes of one captured value (strings, formatted values, JSON data);
    /// longer values are truncated with a marker. Default 1024.
    pub max_value_bytes: usize,
    /// Bytes of captured values per trace; once reached, further values are
    /// replaced by a truncation marker. Default 64 KiB.
    pub max_trace_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_steps: 256,
            max_operations: 128,
            max_value_bytes: 1024,
            max_trace_bytes: 64 * 1024,
        }
    }
}

impl Validate for LimitsConfig {
    fn validate_into(&self, v: &mut Validator) {
        v.check(self.max_steps >= 1, "max_steps", "must be at least 1");
        v.check(
            self.max_steps <= 1_000_000,
            "max_steps",
            "must be at most 1000000",
        );
        v.check(
            self.max_operations >= 1,
            "max_operations",
            "must be at least 1",
        );
        v.check(
            self.max_operations <= 1_000_000,
            "max_operations",
            "must be at most 1000000",
        );
        v.check(
            self.max_value_bytes >= 16,
            "max_value_bytes",
            "must be at least 16",
        );
        v.check(
            self.max_trace_bytes >= self.max_value_bytes,
            "max_trace_bytes",
            format!(
                "must be at least max_value_bytes ({})",
                self.max_value_bytes
            ),
        );
    }
}

/// Redaction of secrets, applied when a value is captured so that a secret
/// never reaches a stored trace, an error message or an export.
///
/// A field is redacted when its name contains one of the patterns as whole
/// words: names are split into words at `_`, `-`, `.`, spaces and camelCase
/// boundaries, so `api_key`, `x-api-key`, `apiKey` and `openai.api_key` match
/// `api_key`, and `access_token` matches `token`, while
/// `gen_ai.usage.input_tokens` does not. Inside captured text (formatted
/// structs, messages, JSON data) `key: value`, `key=value` and `"key": "value"`
/// pairs with a sensitive key, and `Bearer`/`Basic` credentials, are redacted
/// too. Values starting with one of `value_prefixes` are redacted whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    /// Whether redaction is on. Default `true`; turn it off only for local
    /// debugging.
    pub enabled: bool,
    /// Whether the built-in patterns (`password`, `passwd`, `secret`, `token`,
    /// `api_key`, `apikey`, `authorization`, `cookie`, `credential(s)`,
    /// `private_key`, `access_key`, `session_token`, `bearer`) apply.
    /// Default `true`.
    pub default_patterns: bool,
    /// Extra field-name patterns, in the same word syntax (`"ssn"`,
    /// `"credit_card"`).
    pub field_patterns: Vec<String>,
    /// Values starting with one of these (case-insensitive) are redacted
    /// whole, whatever their field, e.g. `"sk-"`.
    pub value_prefixes: Vec<String>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_patterns: true,
            field_patterns: Vec::new(),
            value_prefixes: Vec::new(),
        }
    }
}

// === impl RedactionConfig ===

impl RedactionConfig {
    /// This configuration with an extra field-name pattern.
    #[must_use]
    pub fn with_field_pattern(mut self, pattern: impl Into<String>) -> Self {
        self.field_patterns.push(pattern.into());
        self
    }

    /// This configuration with an extra value prefix.
    #[must_use]
    pub fn with_value_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.value_prefixes.push(prefix.into());
        self
    }
}

impl Validate for RedactionConfig {
    fn validate_into(&self, v: &mut Validator) {
        for (i, p) in self.field_patterns.iter().enumerate() {
            v.check(
                crate::redact::words(p).next().is_some(),
                foundation_core::FieldPath::root()
                    .field("field_patterns")
                    .index(i),
                "must contain at least one letter or digit",
            );
        }
        for (i, p) in self.value_prefixes.iter().enumerate() {
            v.check(
                p.trim().len() >= 2,
                foundation_core::FieldPath::root()
                    .field("value_prefixes")
                    .index(i),
                "must be at least two non-blank characters",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        TraceConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_field() {
        let mut c = TraceConfig::default().with_sample_rate(1.5);
        c.retention.successful_sample_rate = f64::NAN;
        c.limits.max_steps = 0;
        c.limits.max_trace_bytes = 10;
        c.redaction.field_patterns.push("--".into());
        let err = c.validate().unwrap_err();
        assert!(err.has_error_at("sample_rate"));
        assert!(err.has_error_at("retention.successful_sample_rate"));
        assert!(err.has_error_at("limits.max_steps"));
        assert!(err.has_error_at("limits.max_trace_bytes"));
        assert!(err.to_string().contains("field_patterns[0]"), "{err}");
    }

    #[cfg(feature = "schemars")]
    #[test]
    fn json_schema_describes_the_config() {
        let schema = serde_json::to_value(schemars::schema_for!(TraceConfig)).unwrap();
        let s = schema.to_string();
        assert!(
            s.contains("sample_rate") && s.contains("max_failed") && s.contains("field_patterns"),
            "{s}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<TraceConfig>(r#"{"sample_rat": 1.0}"#).unwrap_err();
        assert!(err.to_string().contains("sample_rat"));
    }
}
