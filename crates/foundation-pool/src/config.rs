//! Pool configuration: plain serde data, validated at construction and on
//! every runtime update.

use std::time::Duration;

use foundation_core::config::{Validate, Validator};
use serde::{Deserialize, Serialize};

/// Which idle object an exclusive checkout takes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum QueueMode {
    /// Most recently returned first: keeps a hot core of objects and lets the
    /// rest go idle, so `idle_timeout` can reap them (the usual choice).
    #[default]
    Lifo,
    /// Least recently returned first: spreads use evenly over all objects.
    Fifo,
}

impl From<QueueMode> for deadpool::managed::QueueMode {
    fn from(m: QueueMode) -> Self {
        match m {
            QueueMode::Lifo => Self::Lifo,
            QueueMode::Fifo => Self::Fifo,
        }
    }
}

/// Everything an [`ElasticPool`](crate::ElasticPool) can be told.
///
/// Every field except `name` and `queue_mode` can be changed at runtime with
/// [`ElasticPool::reconfigure`](crate::ElasticPool::reconfigure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Name used as the `pool` label on metrics and in tracing events.
    #[serde(default = "default_name")]
    pub name: String,
    /// Objects the pool keeps ready at all times (warm-up target, shrink floor).
    pub min_size: usize,
    /// Hard upper bound on live objects.
    pub max_size: usize,
    /// Order in which idle objects are handed out.
    #[serde(default)]
    pub queue_mode: QueueMode,
    /// Default deadline of [`ElasticPool::get`](crate::ElasticPool::get).
    #[serde(
        with = "foundation_core::serde_util::duration",
        default = "default_checkout_timeout"
    )]
    #[schemars(with = "String")]
    pub checkout_timeout: Duration,
    /// Upper bound on one `Manager::create` call.
    #[serde(
        with = "foundation_core::serde_util::duration",
        default = "default_create_timeout"
    )]
    #[schemars(with = "String")]
    pub create_timeout: Duration,
    /// Fail a checkout at once with `Overloaded` when the predicted wait
    /// exceeds its deadline, instead of waiting the deadline out.
    #[serde(default = "default_true")]
    pub fail_fast: bool,
    /// Proactive health checking and reaping.
    #[serde(default)]
    pub health: HealthConfig,
    /// The auto-scaling controller.
    #[serde(default)]
    pub controller: ControllerConfig,
    /// Backoff of object creation after failures.
    #[serde(default)]
    pub backoff: BackoffConfig,
}

fn default_name() -> String {
    "default".to_owned()
}
const fn default_true() -> bool {
    true
}
const fn default_checkout_timeout() -> Duration {
    Duration::from_secs(5)
}
const fn default_create_timeout() -> Duration {
    Duration::from_secs(5)
}

// === impl PoolConfig ===

impl PoolConfig {
    /// A configuration with `min_size..=max_size` and defaults for everything
    /// else. Validation happens when the pool is built.
    #[must_use]
    pub fn new(min_size: usize, max_size: usize) -> Self {
        Self {
            name: default_name(),
            min_size,
            max_size,
            queue_mode: QueueMode::default(),
            checkout_timeout: default_checkout_timeout(),
            create_timeout: default_create_timeout(),
            fail_fast: true,
            health: HealthConfig::default(),
            controller: ControllerConfig::default(),
            backoff: BackoffConfig::default(),
        }
    }
}

impl Validate for PoolConfig {
    fn validate_into(&self, v: &mut Validator) {
        v.check(!self.name.is_empty(), "name", "must not be empty");
        v.check(self.max_size >= 1, "max_size", "must be at least 1");
        v.check(
            self.min_size <= self.max_size,
            "min_size",
            format!("must not exceed max_size ({})", self.max_size),
        );
        v.check(
            !self.checkout_timeout.is_zero(),
            "checkout_timeout",
            "must be positive",
        );
        v.check(
            !self.create_timeout.is_zero(),
            "create_timeout",
            "must be positive",
        );
        v.nested("health", &self.health);
        v.nested("controller", &self.controller);
        v.nested("backoff", &self.backoff);
    }
}

/// Background health checks, lifetime and idle reaping (bb8's `reaper`,
/// `max_lifetime`, `idle_timeout`, `test_on_check_out`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// How often idle objects are checked with `Manager::recycle` in the
    /// background, and how often the reaper runs.
    #[serde(
        with = "foundation_core::serde_util::duration",
        default = "default_check_interval"
    )]
    #[schemars(with = "String")]
    pub check_interval: Duration,
    /// Upper bound on one check (background or on checkout); an object whose
    /// check times out is discarded.
    #[serde(
        with = "foundation_core::serde_util::duration",
        default = "default_check_timeout"
    )]
    #[schemars(with = "String")]
    pub check_timeout: Duration,
    /// How many objects a background round checks at the same time.
    #[serde(default = "default_check_concurrency")]
    pub max_concurrent_checks: usize,
    /// Check an object on checkout when it has not been checked for this long
    /// (`0s`: always, like bb8's `test_on_check_out`; absent: never).
    #[serde(
        with = "foundation_core::serde_util::opt_duration",
        default = "default_check_after"
    )]
    #[schemars(with = "Option<String>")]
    pub check_on_checkout_after: Option<Duration>,
    /// Objects older than this are replaced: on checkout, on return and by the
    /// reaper, whichever comes first.
    #[serde(with = "foundation_core::serde_util::opt_duration", default)]
    #[schemars(with = "Option<String>")]
    pub max_lifetime: Option<Duration>,
    /// Idle objects in excess of `min_size` idle for longer than this are closed.
    #[serde(
        with = "foundation_core::serde_util::opt_duration",
        default = "default_idle_timeout"
    )]
    #[schemars(with = "Option<String>")]
    pub idle_timeout: Option<Duration>,
}

const fn default_check_interval() -> Duration {
    Duration::from_secs(30)
}
const fn default_check_timeout() -> Duration {
    Duration::from_secs(2)
}
const fn default_check_concurrency() -> usize {
    2
}
#[allow(
    clippy::unnecessary_wraps,
    reason = "serde default must match the field type"
)]
const fn default_check_after() -> Option<Duration> {
    Some(Duration::from_secs(10))
}
#[allow(
    clippy::unnecessary_wraps,
    reason = "serde default must match the field type"
)]
const fn default_idle_timeout() -> Option<Duration> {
    Some(Duration::from_secs(600))
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            check_interval: default_check_interval(),
            check_timeout: default_check_timeout(),
            max_concurrent_checks: default_check_concurrency(),
            check_on_checkout_after: default_check_after(),
            max_lifetime: None,
            idle_timeout: default_idle_timeout(),
        }
    }
}

impl Validate for HealthConfig {
    fn validate_into(&self, v: &mut Validator) {
        v.check(
            !self.check_interval.is_zero(),
            "check_interval",
            "must be positive",
        );
        v.check(
            !self.check_timeout.is_zero(),
            "check_timeout",
            "must be positive",
        );
        v.check(
            self.max_concurrent_checks >= 1,
            "max_concurrent_checks",
            "must be at least 1",
        );
        if let Some(l) = self.max_lifetime {
            v.check(!l.is_zero(), "max_lifetime", "must be positive when set");
        }
        if let Some(i) = self.idle_timeout {
            v.check(!i.is_zero(), "idle_timeout", "must be positive when set");
        }
    }
}

/// Parameters of the auto-scaling [`Controller`](crate::Controller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// Whether the controller runs; when off, capacity stays at `max_size`
    /// (deadpool's behaviour).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often demand is sampled and a decision taken.
    #[serde(
        with = "foundation_core::serde_util::duration",
        default = "default_tick"
    )]
    #[schemars(with = "String")]
    pub tick: Duration,
    /// Time constant of the exponential smoothing of the inputs.
    #[serde(
        with = "foundation_core::serde_util::duration",
        default = "default_smoothing"
    )]
    #[schemars(with = "String")]
    pub smoothing: Duration,
    /// Grow when smoothed utilization (in use / capacity) reaches this.
    #[serde(default = "default_scale_up_utilization")]
    pub scale_up_utilization: f64,
    /// Shrink when smoothed utilization falls to this (must be below
    /// `scale_up_utilization`: the gap is the hysteresis band).
    #[serde(default = "default_scale_down_utilization")]
    pub scale_down_utilization: f64,
    /// Grow when the smoothed checkout wait reaches this.
    #[serde(
        with = "foundation_core::serde_util::duration",
        default = "default_wait_threshold"
    )]
    #[schemars(with = "String")]
    pub scale_up_wait: Duration,
    /// Capacity multiplier of one growth step (at least the current waiters are added).
    #[serde(default = "default_growth_factor")]
    pub growth_factor: f64,
    /// Fraction of capacity removed by one shrink step (at least one object).
    #[serde(default = "default_shrink_fraction")]
    pub shrink_fraction: f64,
    /// Minimum time between two growth steps.
    #[serde(
        with = "foundation_core::serde_util::duration",
        default = "default_up_cooldown"
    )]
    #[schemars(with = "String")]
    pub scale_up_cooldown: Duration,
    /// Minimum time after any change before a shrink step.
    #[serde(
        with = "foundation_core::serde_util::duration",
        default = "default_down_cooldown"
    )]
    #[schemars(with = "String")]
    pub scale_down_cooldown: Duration,
}

const fn default_tick() -> Duration {
    Duration::from_millis(250)
}
const fn default_smoothing() -> Duration {
    Duration::from_secs(2)
}
const fn default_scale_up_utilization() -> f64 {
    0.8
}
const fn default_scale_down_utilization() -> f64 {
    0.3
}
const fn default_wait_threshold() -> Duration {
    Duration::from_millis(20)
}
const fn default_growth_factor() -> f64 {
    1.5
}
const fn default_shrink_fraction() -> f64 {
    0.1
}
const fn default_up_cooldown() -> Duration {
    Duration::from_secs(1)
}
const fn default_down_cooldown() -> Duration {
    Duration::from_secs(30)
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tick: default_tick(),
            smoothing: default_smoothing(),
            scale_up_utilization: default_scale_up_utilization(),
            scale_down_utilization: default_scale_down_utilization(),
            scale_up_wait: default_wait_threshold(),
            growth_factor: default_growth_factor(),
            shrink_fraction: default_shrink_fraction(),
            scale_up_cooldown: default_up_cooldown(),
            scale_down_cooldown: default_down_cooldown(),
        }
    }
}

impl Validate for ControllerConfig {
    fn validate_into(&self, v: &mut Validator) {
        v.check(!self.tick.is_zero(), "tick", "must be positive");
        v.check(!self.smoothing.is_zero(), "smoothing", "must be positive");
        let unit = |x: f64| x.is_finite() && x > 0.0 && x <= 1.0;
        v.check(
            unit(self.scale_up_utilization),
            "scale_up_utilization",
            "must be in (0, 1]",
        );
        v.check(
            unit(self.scale_down_utilization)
                && self.scale_down_utilization < self.scale_up_utilization,
            "scale_down_utilization",
            format!(
                "must be in (0, 1] and below scale_up_utilization ({})",
                self.scale_up_utilization
            ),
        );
        v.check(
            self.growth_factor.is_finite()
                && self.growth_factor >= 1.0
                && self.growth_factor <= 16.0,
            "growth_factor",
            "must be in [1, 16]",
        );
        v.check(
            self.shrink_fraction.is_finite()
                && self.shrink_fraction > 0.0
                && self.shrink_fraction < 1.0,
            "shrink_fraction",
            "must be in (0, 1)",
        );
        v.check(
            self.scale_down_cooldown >= self.scale_up_cooldown,
            "scale_down_cooldown",
            "must not be shorter than scale_up_cooldown (shrink slower than grow)",
        );
    }
}

/// Exponential backoff with jitter for object creation after failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    /// Delay after the first failure.
    #[serde(
        with = "foundation_core::serde_util::duration",
        default = "default_backoff_initial"
    )]
    #[schemars(with = "String")]
    pub initial: Duration,
    /// Upper bound of the delay.
    #[serde(
        with = "foundation_core::serde_util::duration",
        default = "default_backoff_max"
    )]
    #[schemars(with = "String")]
    pub max: Duration,
    /// Growth of the delay per consecutive failure.
    #[serde(default = "default_backoff_multiplier")]
    pub multiplier: f64,
    /// Fraction of the delay that is randomized (0: none, 1: full jitter).
    #[serde(default = "default_backoff_jitter")]
    pub jitter: f64,
}

const fn default_backoff_initial() -> Duration {
    Duration::from_millis(100)
}
const fn default_backoff_max() -> Duration {
    Duration::from_secs(10)
}
const fn default_backoff_multiplier() -> f64 {
    2.0
}
const fn default_backoff_jitter() -> f64 {
    0.5
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: default_backoff_initial(),
            max: default_backoff_max(),
            multiplier: default_backoff_multiplier(),
            jitter: default_backoff_jitter(),
        }
    }
}

impl Validate for BackoffConfig {
    fn validate_into(&self, v: &mut Validator) {
        v.check(!self.initial.is_zero(), "initial", "must be positive");
        v.check(
            self.max >= self.initial,
            "max",
            format!("must not be below initial ({:?})", self.initial),
        );
        v.check(
            self.multiplier.is_finite() && self.multiplier >= 1.0,
            "multiplier",
            "must be at least 1",
        );
        v.check(
            self.jitter.is_finite() && (0.0..=1.0).contains(&self.jitter),
            "jitter",
            "must be in [0, 1]",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_fields() {
        let mut c = PoolConfig::new(5, 2);
        c.controller.scale_down_utilization = 0.9;
        c.backoff.jitter = 2.0;
        let err = c.validate().unwrap_err();
        assert!(err.has_error_at("min_size"), "{err}");
        assert!(
            err.has_error_at("controller.scale_down_utilization"),
            "{err}"
        );
        assert!(err.has_error_at("backoff.jitter"), "{err}");
        assert!(PoolConfig::new(0, 1).validate().is_ok());
        assert!(
            PoolConfig::new(0, 0)
                .validate()
                .unwrap_err()
                .has_error_at("max_size")
        );
    }

    #[test]
    fn json_schema_describes_the_config() {
        let schema = serde_json::to_value(schemars::schema_for!(PoolConfig)).unwrap();
        let props = &schema["properties"];
        assert!(props["min_size"].is_object());
        assert_eq!(props["checkout_timeout"]["type"], "string");
        assert!(
            schema["required"]
                .as_array()
                .unwrap()
                .contains(&"max_size".into())
        );
    }

    #[test]
    fn deserializes_with_defaults_and_rejects_unknown_fields() {
        let c: PoolConfig = serde_json::from_str(
            r#"{ "min_size": 2, "max_size": 8, "health": { "max_lifetime": "30m", "check_on_checkout_after": null } }"#,
        )
        .unwrap();
        assert_eq!(c.health.max_lifetime, Some(Duration::from_secs(1800)));
        assert_eq!(c.health.check_on_checkout_after, None);
        assert_eq!(c.controller, ControllerConfig::default());
        assert!(
            serde_json::from_str::<PoolConfig>(r#"{ "min_size": 1, "max_size": 2, "maxsize": 3 }"#)
                .is_err()
        );
    }
}
