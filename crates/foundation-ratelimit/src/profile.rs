//! Provider profiles: shipped, documented limiter configurations for common
//! provider tiers, overridable by name.
//!
//! The shipped data lives in `src/profiles/*.toml` (OpenAI tiers 1-3 for
//! `gpt-4o` and `gpt-4o-mini`, Anthropic tiers 1-4 for Claude Sonnet 4,
//! Google Gemini free and tier 1, and `local/test`), compiled in with
//! `include_str!` and checked by the crate's tests. Provider limits change and
//! differ per organization: treat them as starting points and override them.
//!
//! ```
//! use foundation_ratelimit::profile::ProfileSet;
//! use foundation_ratelimit::RateLimiter;
//!
//! let mut profiles = ProfileSet::shipped()?;
//! // Our organization has a raised tokens limit: override by name (unknown
//! // fields and invalid values are rejected with the field path).
//! profiles.merge(ProfileSet::from_toml(r#"
//!     [[profiles]]
//!     name = "openai/tier-1/gpt-4o"
//!     description = "raised by support ticket"
//!     [profiles.limiter]
//!     name = "openai-gpt-4o"
//!     [[profiles.limiter.dimensions]]
//!     name = "requests"
//!     limit = 500
//!     period = "1m"
//!     [[profiles.limiter.dimensions]]
//!     name = "tokens"
//!     limit = 60000
//!     period = "1m"
//! "#)?);
//! let limiter = RateLimiter::try_new(profiles.get("openai/tier-1/gpt-4o")?.limiter.clone())?;
//! assert_eq!(limiter.snapshot().dimensions[1].remaining, 60_000);
//! # Ok::<(), foundation_ratelimit::ConfigError>(())
//! ```

use foundation_core::{FieldPath, Validate, Validator};
use serde::{Deserialize, Serialize};

use crate::config::LimiterConfig;
use crate::error::ConfigError;

const SHIPPED: [(&str, &str); 4] = [
    ("openai.toml", include_str!("profiles/openai.toml")),
    ("anthropic.toml", include_str!("profiles/anthropic.toml")),
    ("gemini.toml", include_str!("profiles/gemini.toml")),
    ("local.toml", include_str!("profiles/local.toml")),
];

/// One provider tier's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Profile {
    /// `provider/tier/model`, e.g. `openai/tier-1/gpt-4o`.
    pub name: String,
    /// What the profile describes, with the numbers.
    #[serde(default)]
    pub description: String,
    /// The limiter configuration.
    pub limiter: LimiterConfig,
}

impl Validate for Profile {
    fn validate_into(&self, v: &mut Validator) {
        v.check(!self.name.is_empty(), "name", "must not be empty");
        v.nested("limiter", &self.limiter);
    }
}

/// A set of profiles, e.g. the shipped ones merged with local overrides.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ProfileSet {
    /// The profiles, names unique.
    pub profiles: Vec<Profile>,
}

impl Validate for ProfileSet {
    fn validate_into(&self, v: &mut Validator) {
        v.nested("profiles", &self.profiles);
        for (i, p) in self.profiles.iter().enumerate() {
            if self.profiles[..i].iter().any(|o| o.name == p.name) {
                v.error(
                    FieldPath::from("profiles").index(i).field("name"),
                    format!("duplicate profile name {:?}", p.name),
                );
            }
        }
    }
}

// === impl ProfileSet ===

impl ProfileSet {
    /// The profiles shipped with the crate.
    ///
    /// # Errors
    /// Never for the shipped data (the crate's tests parse it); the `Result`
    /// keeps a broken build from panicking.
    pub fn shipped() -> Result<Self, ConfigError> {
        let mut all = Self::default();
        for (file, text) in SHIPPED {
            let set = Self::from_toml(text).map_err(|e| match e {
                ConfigError::Parse(m) => ConfigError::Parse(format!("{file}: {m}")),
                other => other,
            })?;
            all.profiles.extend(set.profiles);
        }
        Ok(all)
    }

    /// Parses and validates a TOML document of `[[profiles]]`.
    ///
    /// # Errors
    /// Parse errors (including unknown fields) or validation errors naming
    /// the field path (`profiles[2].limiter.dimensions[0].limit`).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let set: Self = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        set.validate()?;
        Ok(set)
    }

    /// Adds `other`'s profiles, replacing any with the same name.
    pub fn merge(&mut self, other: ProfileSet) {
        for p in other.profiles {
            match self.profiles.iter_mut().find(|q| q.name == p.name) {
                Some(q) => *q = p,
                None => self.profiles.push(p),
            }
        }
    }

    /// The profile called `name`.
    ///
    /// # Errors
    /// [`ConfigError::UnknownProfile`] listing the known names.
    pub fn get(&self, name: &str) -> Result<&Profile, ConfigError> {
        self.profiles
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ConfigError::UnknownProfile {
                name: name.to_owned(),
                known: self.names().collect::<Vec<_>>().join(", "),
            })
    }

    /// The profile names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.profiles.iter().map(|p| p.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_parse_and_validate() {
        let set = ProfileSet::shipped().unwrap();
        assert!(set.profiles.len() >= 15, "{}", set.profiles.len());
        for prefix in ["openai/", "anthropic/", "gemini/", "local/test"] {
            assert!(set.names().any(|n| n.starts_with(prefix)), "{prefix}");
        }
        let a = set.get("anthropic/tier-1/claude-sonnet-4").unwrap();
        assert_eq!(a.limiter.position("output_tokens"), Some(2));
        let g = set.get("gemini/free/gemini-2.5-flash").unwrap();
        assert_eq!(
            g.limiter.dimensions[2].period,
            std::time::Duration::from_secs(86_400)
        );
        for p in &set.profiles {
            crate::RateLimiter::try_new(p.limiter.clone()).unwrap();
        }
    }

    #[test]
    fn invalid_overrides_name_the_field() {
        let err = ProfileSet::from_toml(
            "[[profiles]]\nname = \"x\"\n[profiles.limiter]\n[[profiles.limiter.dimensions]]\nname = \"requests\"\nlimit = 0\nperiod = \"1m\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("profiles[0].limiter.dimensions[0].limit"),
            "{err}"
        );
        let err = ProfileSet::from_toml("[[profiles]]\nname = \"x\"\nlimits = 3\n").unwrap_err();
        assert!(err.to_string().contains("limits"), "{err}");
        let err = ProfileSet::shipped()
            .unwrap()
            .get("openai/tier-9/gpt-5")
            .unwrap_err();
        assert!(err.to_string().contains("openai/tier-1/gpt-4o"), "{err}");
    }
}
