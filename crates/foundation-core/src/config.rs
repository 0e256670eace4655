//! Validated configuration and a live-reloadable handle.
//!
//! Configuration in Foundation is plain serde data, validated once at
//! construction by [`Validate`], whose errors name the offending field by its
//! path (`limits[1].burst`). A [`Reloadable`] holds the live value: readers get
//! the current `Arc<T>` without locking, and [`Reloadable::update`] swaps in a
//! new value only if it validates, so an invalid config never goes live.
//!
//! ```
//! use foundation_core::config::{Reloadable, Validate, ValidationErrors, Validator};
//!
//! #[derive(Debug, Clone)]
//! struct PoolConfig { min: usize, max: usize }
//!
//! impl Validate for PoolConfig {
//!     fn validate_into(&self, v: &mut Validator) {
//!         v.check(self.max > 0, "max", "must be at least 1");
//!         v.check(self.min <= self.max, "min", format!("must not exceed max ({})", self.max));
//!     }
//! }
//!
//! let live = Reloadable::new(PoolConfig { min: 1, max: 8 }).unwrap();
//! let err: ValidationErrors = live.update(PoolConfig { min: 9, max: 8 }).unwrap_err();
//! assert_eq!(err.to_string(), "invalid configuration: min: must not exceed max (8)");
//! assert_eq!(live.load().max, 8); // the old value stays live
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

/// The path of a field inside a configuration value, e.g. `limits[1].burst`.
///
/// ```
/// use foundation_core::FieldPath;
/// let p = FieldPath::root().field("limits").index(1).field("burst");
/// assert_eq!(p.to_string(), "limits[1].burst");
/// assert_eq!(FieldPath::from("retry.max_attempts").to_string(), "retry.max_attempts");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Field(String),
    Index(usize),
    Key(String),
}

// === impl FieldPath ===

impl FieldPath {
    /// The root path (the value itself).
    #[must_use]
    pub fn root() -> Self {
        Self::default()
    }

    /// This path extended by a struct field.
    #[must_use]
    pub fn field(&self, name: impl Into<String>) -> Self {
        self.with(Segment::Field(name.into()))
    }

    /// This path extended by a list index.
    #[must_use]
    pub fn index(&self, i: usize) -> Self {
        self.with(Segment::Index(i))
    }

    /// This path extended by a map key.
    #[must_use]
    pub fn key(&self, key: impl Into<String>) -> Self {
        self.with(Segment::Key(key.into()))
    }

    /// This path followed by `other`.
    #[must_use]
    pub fn join(&self, other: &FieldPath) -> Self {
        let mut segments = self.segments.clone();
        segments.extend(other.segments.iter().cloned());
        Self { segments }
    }

    /// Whether this is the root path.
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    fn with(&self, seg: Segment) -> Self {
        let mut segments = self.segments.clone();
        segments.push(seg);
        Self { segments }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("(root)");
        }
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Field(name) if i == 0 => f.write_str(name)?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(k) => write!(f, "[{k:?}]")?,
            }
        }
        Ok(())
    }
}

impl From<&str> for FieldPath {
    /// A path from dotted field names (`"retry.max_attempts"`).
    fn from(s: &str) -> Self {
        Self {
            segments: s
                .split('.')
                .filter(|p| !p.is_empty())
                .map(|p| Segment::Field(p.to_owned()))
                .collect(),
        }
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ValidationError {
    /// Where the problem is.
    pub path: FieldPath,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
}

/// Every problem found in a configuration value (at least one).
///
/// ```
/// use foundation_core::ValidationErrors;
/// let e = ValidationErrors::single("pool.max", "must be at least 1");
/// assert_eq!(e.to_string(), "invalid configuration: pool.max: must be at least 1");
/// assert_eq!(e.errors()[0].path.to_string(), "pool.max");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors {
    errors: Vec<ValidationError>,
}

// === impl ValidationErrors ===

impl ValidationErrors {
    /// A single error at `path`.
    pub fn single(path: impl Into<FieldPath>, message: impl Into<String>) -> Self {
        Self {
            errors: vec![ValidationError {
                path: path.into(),
                message: message.into(),
            }],
        }
    }

    /// The individual errors, in the order they were found.
    #[must_use]
    pub fn errors(&self) -> &[ValidationError] {
        &self.errors
    }

    /// Whether some error is at exactly `path` (written as in `Display`, e.g. `"limits[0].rate"`).
    #[must_use]
    pub fn has_error_at(&self, path: &str) -> bool {
        self.errors.iter().any(|e| e.path.to_string() == path)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration: ")?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl crate::error::Classify for ValidationErrors {
    fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::InvalidInput
    }
}

/// Collects validation errors while walking a configuration value.
#[derive(Debug, Default)]
pub struct Validator {
    prefix: FieldPath,
    errors: Vec<ValidationError>,
}

// === impl Validator ===

impl Validator {
    /// An empty validator at the root path.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an error at `path` (relative to the current prefix) unless `ok`.
    pub fn check(&mut self, ok: bool, path: impl Into<FieldPath>, message: impl Into<String>) {
        if !ok {
            self.error(path, message);
        }
    }

    /// Records an error at `path` (relative to the current prefix).
    pub fn error(&mut self, path: impl Into<FieldPath>, message: impl Into<String>) {
        self.errors.push(ValidationError {
            path: self.prefix.join(&path.into()),
            message: message.into(),
        });
    }

    /// Validates a nested value under `path`.
    pub fn nested<T: Validate + ?Sized>(&mut self, path: impl Into<FieldPath>, value: &T) {
        let saved = self.prefix.clone();
        self.prefix = saved.join(&path.into());
        value.validate_into(self);
        self.prefix = saved;
    }

    /// Runs `f` with the prefix extended by `path` (for lists and maps).
    pub fn within(&mut self, path: impl Into<FieldPath>, f: impl FnOnce(&mut Self)) {
        let saved = self.prefix.clone();
        self.prefix = saved.join(&path.into());
        f(self);
        self.prefix = saved;
    }

    /// The current prefix, for building paths such as `v.path().index(i)`.
    #[must_use]
    pub fn path(&self) -> &FieldPath {
        &self.prefix
    }

    /// `Ok(())` when no error was recorded.
    ///
    /// # Errors
    /// All recorded errors.
    pub fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors {
                errors: self.errors,
            })
        }
    }
}

impl From<FieldPath> for Validator {
    fn from(prefix: FieldPath) -> Self {
        Self {
            prefix,
            errors: Vec::new(),
        }
    }
}

/// A configuration value that can check itself.
///
/// Implement [`validate_into`](Self::validate_into); call
/// [`validate`](Self::validate). Nested values and lists validate under their
/// own path with [`Validator::nested`]:
///
/// ```
/// use foundation_core::{Validate, Validator};
///
/// struct Dimension { name: String, burst: u64 }
/// struct Limits { dimensions: Vec<Dimension> }
///
/// impl Validate for Dimension {
///     fn validate_into(&self, v: &mut Validator) {
///         v.check(!self.name.is_empty(), "name", "must not be empty");
///         v.check(self.burst > 0, "burst", "must be at least 1");
///     }
/// }
/// impl Validate for Limits {
///     fn validate_into(&self, v: &mut Validator) {
///         v.check(!self.dimensions.is_empty(), "dimensions", "needs at least one dimension");
///         v.nested("dimensions", &self.dimensions);
///     }
/// }
///
/// let bad = Limits { dimensions: vec![
///     Dimension { name: "requests".into(), burst: 10 },
///     Dimension { name: "tokens".into(), burst: 0 },
/// ]};
/// let err = bad.validate().unwrap_err();
/// assert!(err.has_error_at("dimensions[1].burst"));
/// ```
pub trait Validate {
    /// Records every problem with `self` into `v`, with paths relative to `v`'s prefix.
    fn validate_into(&self, v: &mut Validator);

    /// Checks `self`, returning every problem found.
    ///
    /// # Errors
    /// The problems, each naming its field path.
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut v = Validator::new();
        self.validate_into(&mut v);
        v.finish()
    }
}

impl<T: Validate> Validate for [T] {
    fn validate_into(&self, v: &mut Validator) {
        for (i, item) in self.iter().enumerate() {
            v.nested(FieldPath::root().index(i), item);
        }
    }
}

impl<T: Validate> Validate for Vec<T> {
    fn validate_into(&self, v: &mut Validator) {
        self.as_slice().validate_into(v);
    }
}

impl<T: Validate> Validate for Option<T> {
    fn validate_into(&self, v: &mut Validator) {
        if let Some(inner) = self {
            inner.validate_into(v);
        }
    }
}

/// A live configuration value that can be replaced at runtime.
///
/// Clones share the same value. Reads ([`load`](Self::load)) are lock-free
/// (`arc-swap`); [`update`](Self::update) validates first, so readers only ever
/// see valid values. Each accepted update bumps a [`version`](Self::version);
/// with the `tokio` feature, `subscribe` gives an async
/// change notification.
pub struct Reloadable<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    value: ArcSwap<T>,
    version: AtomicU64,
    // Serializes writers so that `update_with` is a proper read-modify-write.
    write: std::sync::Mutex<()>,
    #[cfg(feature = "tokio")]
    notify: tokio::sync::watch::Sender<u64>,
}

// === impl Reloadable ===

impl<T: Validate> Reloadable<T> {
    /// Validates `value` and makes it the live value.
    ///
    /// # Errors
    /// The validation errors of `value`.
    pub fn new(value: T) -> Result<Self, ValidationErrors> {
        value.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                value: ArcSwap::from_pointee(value),
                version: AtomicU64::new(0),
                write: std::sync::Mutex::new(()),
                #[cfg(feature = "tokio")]
                notify: tokio::sync::watch::Sender::new(0),
            }),
        })
    }

    /// The current value.
    #[must_use]
    pub fn load(&self) -> Arc<T> {
        self.shared.value.load_full()
    }

    /// How many updates have been accepted since creation.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.shared.version.load(Ordering::Acquire)
    }

    /// Validates `value` and, if valid, makes it the live value.
    /// Returns the previous value.
    ///
    /// # Errors
    /// The validation errors of `value`; the live value is unchanged.
    pub fn update(&self, value: T) -> Result<Arc<T>, ValidationErrors> {
        value.validate()?;
        let _guard = self.lock_writer();
        Ok(self.store(value))
    }

    /// Derives a new value from the current one and applies it like
    /// [`update`](Self::update). Concurrent `update_with` calls do not lose
    /// each other's changes.
    ///
    /// # Errors
    /// The validation errors of the derived value; the live value is unchanged.
    pub fn update_with(&self, f: impl FnOnce(&T) -> T) -> Result<Arc<T>, ValidationErrors> {
        let _guard = self.lock_writer();
        let next = f(&self.shared.value.load());
        next.validate()?;
        Ok(self.store(next))
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        // The mutex guards no data, so a poisoned lock is still usable.
        self.shared
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn store(&self, value: T) -> Arc<T> {
        let prev = self.shared.value.swap(Arc::new(value));
        let version = self.shared.version.fetch_add(1, Ordering::AcqRel) + 1;
        #[cfg(feature = "tokio")]
        self.shared.notify.send_replace(version);
        #[cfg(not(feature = "tokio"))]
        let _ = version;
        prev
    }
}

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
impl<T> Reloadable<T> {
    /// A receiver that is notified with the new version after each accepted update.
    #[must_use]
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.notify.subscribe()
    }
}

impl<T> Clone for Reloadable<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloadable")
            .field("version", &self.shared.version.load(Ordering::Relaxed))
            .field("value", &self.shared.value.load())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Limit {
        rate: u64,
        burst: u64,
    }

    impl Validate for Limit {
        fn validate_into(&self, v: &mut Validator) {
            v.check(self.rate > 0, "rate", "must be positive");
            v.check(self.burst >= 1, "burst", "must be at least 1");
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Config {
        limits: Vec<Limit>,
        fallback: Option<Limit>,
    }

    impl Validate for Config {
        fn validate_into(&self, v: &mut Validator) {
            v.nested("limits", &self.limits);
            v.nested("fallback", &self.fallback);
        }
    }

    #[test]
    fn errors_name_the_field_path() {
        let cfg = Config {
            limits: vec![Limit { rate: 1, burst: 1 }, Limit { rate: 0, burst: 0 }],
            fallback: Some(Limit { rate: 0, burst: 3 }),
        };
        let err = cfg.validate().unwrap_err();
        let paths: Vec<String> = err.errors().iter().map(|e| e.path.to_string()).collect();
        assert_eq!(
            paths,
            ["limits[1].rate", "limits[1].burst", "fallback.rate"]
        );
        assert!(err.has_error_at("limits[1].burst"));
        assert_eq!(
            err.to_string(),
            "invalid configuration: limits[1].rate: must be positive; \
             limits[1].burst: must be at least 1; fallback.rate: must be positive"
        );
    }

    #[test]
    fn path_display() {
        let p = FieldPath::root()
            .field("tenants")
            .key("acme")
            .field("quota")
            .index(2);
        assert_eq!(p.to_string(), "tenants[\"acme\"].quota[2]");
        assert_eq!(FieldPath::from("a.b").to_string(), "a.b");
        assert_eq!(FieldPath::root().to_string(), "(root)");
    }

    #[test]
    fn invalid_update_keeps_old_value() {
        let live = Reloadable::new(Limit { rate: 5, burst: 5 }).unwrap();
        let reader = live.clone();
        assert!(live.update(Limit { rate: 0, burst: 5 }).is_err());
        assert_eq!(reader.load().rate, 5);
        assert_eq!(live.version(), 0);
        let prev = live.update(Limit { rate: 7, burst: 5 }).unwrap();
        assert_eq!(prev.rate, 5);
        assert_eq!(reader.load().rate, 7);
        assert_eq!(reader.version(), 1);
        assert!(Reloadable::new(Limit { rate: 0, burst: 0 }).is_err());
    }

    #[test]
    fn concurrent_update_with_loses_nothing() {
        let live = Reloadable::new(Limit { rate: 1, burst: 1 }).unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                let live = live.clone();
                s.spawn(move || {
                    for _ in 0..250 {
                        live.update_with(|l| Limit {
                            rate: l.rate + 1,
                            burst: l.burst,
                        })
                        .unwrap();
                    }
                });
            }
        });
        assert_eq!(live.load().rate, 1001);
        assert_eq!(live.version(), 1000);
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn subscribers_see_updates() {
        let live = Reloadable::new(Limit { rate: 1, burst: 1 }).unwrap();
        let mut rx = live.subscribe();
        live.update(Limit { rate: 2, burst: 1 }).unwrap();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 1);
        assert_eq!(live.load().rate, 2);
    }
}
