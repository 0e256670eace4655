//! Error classification shared by retry policies, fallbacks and circuit breakers.
//!
//! Every Foundation error answers one question for its caller: *what should I do
//! now?* [`ErrorKind`] is that answer (retry, wait for a rate limit, give up, …),
//! [`Classify`] is the trait errors implement to give it, and [`classify`] finds
//! it in any error chain, including boxed ones.
//!
//! ```
//! use std::time::Duration;
//! use foundation_core::error::{classify, BoxError, Classified, ErrorKind};
//!
//! // A leaf error says what it means ...
//! let err: BoxError = Classified::new(
//!     ErrorKind::RateLimited { retry_after: Some(Duration::from_secs(2)) },
//!     "provider answered 429",
//! )
//! .into();
//!
//! // ... and a retry policy far away reads it back, even through a `Box<dyn Error>`.
//! let kind = classify(err.as_ref());
//! assert!(kind.is_retryable());
//! assert_eq!(kind.retry_after(), Some(Duration::from_secs(2)));
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// A type-erased error, as used by `tower`: `Send + Sync + 'static` so it can
/// cross tasks and threads.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What a caller should do about an error.
///
/// The classification is about *the operation*, not the error's origin: a
/// timeout talking to a provider and a timeout waiting for a pool slot are both
/// [`ErrorKind::Timeout`].
///
/// The enum is `#[non_exhaustive]`; match on the helper methods
/// ([`is_retryable`](Self::is_retryable), [`retry_after`](Self::retry_after))
/// when you only need the decision.
///
/// ```
/// use std::time::Duration;
/// use foundation_core::ErrorKind;
///
/// fn backoff(kind: ErrorKind, attempt: u32) -> Option<Duration> {
///     if !kind.is_retryable() {
///         return None;
///     }
///     // A provider's retry-after beats our own exponential guess.
///     Some(kind.retry_after().unwrap_or(Duration::from_millis(100 << attempt.min(6))))
/// }
///
/// assert_eq!(backoff(ErrorKind::InvalidInput, 0), None);
/// assert_eq!(backoff(ErrorKind::Timeout, 2), Some(Duration::from_millis(400)));
/// let limited = ErrorKind::RateLimited { retry_after: Some(Duration::from_secs(3)) };
/// assert_eq!(backoff(limited, 0), Some(Duration::from_secs(3)));
/// assert_eq!(limited.as_str(), "rate_limited");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "kind", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum ErrorKind {
    /// A passing fault (connection reset, 5xx, lost race): retrying may succeed.
    Transient,
    /// The upstream or a local limiter refused for now; retry after the given
    /// delay when one is known.
    RateLimited {
        /// How long to wait before retrying, when the source said so.
        #[cfg_attr(
            feature = "serde",
            serde(default, with = "crate::serde_util::opt_duration")
        )]
        retry_after: Option<Duration>,
    },
    /// The operation did not finish within its deadline. It may be retried if
    /// it is idempotent.
    Timeout,
    /// The target is down or unreachable (circuit open, no healthy backend).
    /// Another target may succeed; the same one should be given time.
    Unavailable,
    /// Local capacity is exhausted (queue full, pool saturated): shed load or
    /// back off. Retrying immediately makes things worse.
    Overloaded,
    /// The request itself is wrong (bad argument, failed validation). Retrying
    /// the same request will fail the same way.
    InvalidInput,
    /// Any other failure that retrying cannot fix (authentication, not found,
    /// content policy).
    Permanent,
    /// The caller gave up (future dropped, shutdown, explicit cancel).
    Cancelled,
    /// Nothing in the error chain said what it means. Policies decide for
    /// themselves; the default policies treat it as not retryable.
    Unclassified,
}

// === impl ErrorKind ===

impl ErrorKind {
    /// Whether retrying the same operation (perhaps later) may succeed.
    ///
    /// True for [`Transient`](Self::Transient), [`RateLimited`](Self::RateLimited),
    /// [`Timeout`](Self::Timeout), [`Unavailable`](Self::Unavailable) and
    /// [`Overloaded`](Self::Overloaded).
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Transient
                | Self::RateLimited { .. }
                | Self::Timeout
                | Self::Unavailable
                | Self::Overloaded
        )
    }

    /// The delay the source asked for before a retry, if any.
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// Whether this failure says something about the *target's* health, so
    /// that a circuit breaker or outlier detector should count it.
    ///
    /// Invalid input, cancellation and local overload are the caller's side and
    /// do not count against the target.
    #[must_use]
    pub const fn counts_against_target(&self) -> bool {
        matches!(
            self,
            Self::Transient | Self::Timeout | Self::Unavailable | Self::RateLimited { .. }
        )
    }

    /// A short stable name, suitable as a metric label (`"rate_limited"`, …).
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::RateLimited { .. } => "rate_limited",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Overloaded => "overloaded",
            Self::InvalidInput => "invalid_input",
            Self::Permanent => "permanent",
            Self::Cancelled => "cancelled",
            Self::Unclassified => "unclassified",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RateLimited {
                retry_after: Some(d),
            } => write!(f, "rate limited (retry after {d:?})"),
            other => f.write_str(&other.as_str().replace('_', " ")),
        }
    }
}

/// Implemented by errors that know what they mean for the caller.
///
/// Implement it on every public error type of a Foundation crate. When an error
/// is boxed into a [`BoxError`], wrap it with [`Classified::from_classify`] (or
/// use [`into_box_error`]) so [`classify`] can still find the kind.
///
/// ```
/// use foundation_core::error::{Classify, ErrorKind};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("queue is full ({len} waiting)")]
/// struct QueueFull { len: usize }
///
/// impl Classify for QueueFull {
///     fn kind(&self) -> ErrorKind { ErrorKind::Overloaded }
/// }
///
/// assert!(QueueFull { len: 3 }.kind().is_retryable());
/// ```
pub trait Classify {
    /// What the caller should do about this error.
    fn kind(&self) -> ErrorKind;
}

impl Classify for ErrorKind {
    fn kind(&self) -> ErrorKind {
        *self
    }
}

/// An error with an explicit [`ErrorKind`], wrapping a source error or message.
///
/// This is the carrier that lets a kind survive type erasure: [`classify`]
/// recognises it anywhere in a chain. Its `Display` is the inner error's, so
/// wrapping adds no noise to messages.
///
/// ```
/// use foundation_core::error::{classify, Classified, ErrorKind};
///
/// let io = std::io::Error::other("upstream returned 503");
/// let err = Classified::new(ErrorKind::Unavailable, io);
/// assert_eq!(err.to_string(), "upstream returned 503");
/// assert_eq!(classify(&err), ErrorKind::Unavailable);
/// ```
pub struct Classified {
    kind: ErrorKind,
    inner: BoxError,
}

// === impl Classified ===

impl Classified {
    /// Wraps `inner` (an error, or a `&str`/`String` message) with `kind`.
    pub fn new(kind: ErrorKind, inner: impl Into<BoxError>) -> Self {
        Self {
            kind,
            inner: inner.into(),
        }
    }

    /// Wraps an error that classifies itself, keeping its own kind.
    pub fn from_classify<E>(err: E) -> Self
    where
        E: Classify + StdError + Send + Sync + 'static,
    {
        Self {
            kind: err.kind(),
            inner: Box::new(err),
        }
    }

    /// The wrapped error.
    #[must_use]
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        self.inner.as_ref()
    }

    /// Unwraps into the inner error.
    #[must_use]
    pub fn into_inner(self) -> BoxError {
        self.inner
    }
}

impl Classify for Classified {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Debug for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classified")
            .field("kind", &self.kind)
            .field("inner", &self.inner)
            .finish()
    }
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl StdError for Classified {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        // The inner error *is* this error, shown through `Display`; its own
        // source is the next link of the chain.
        self.inner.source()
    }
}

/// Boxes an error that classifies itself so that its kind survives erasure.
///
/// ```
/// use foundation_core::error::{classify, into_box_error, Classify, ErrorKind};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("circuit open")]
/// struct CircuitOpen;
/// impl Classify for CircuitOpen {
///     fn kind(&self) -> ErrorKind { ErrorKind::Unavailable }
/// }
///
/// let boxed = into_box_error(CircuitOpen);
/// assert_eq!(classify(boxed.as_ref()), ErrorKind::Unavailable);
/// ```
pub fn into_box_error<E>(err: E) -> BoxError
where
    E: Classify + StdError + Send + Sync + 'static,
{
    Box::new(Classified::from_classify(err))
}

/// Iterates over an error and its causes, outermost first.
///
/// ```
/// use foundation_core::error::chain;
/// let err = std::io::Error::other("disk on fire");
/// assert_eq!(chain(&err).count(), 1);
/// ```
pub fn chain<'a>(err: &'a (dyn StdError + 'static)) -> Chain<'a> {
    Chain { next: Some(err) }
}

/// Iterator returned by [`chain`].
#[derive(Debug, Clone)]
pub struct Chain<'a> {
    next: Option<&'a (dyn StdError + 'static)>,
}

impl<'a> Iterator for Chain<'a> {
    type Item = &'a (dyn StdError + 'static);

    fn next(&mut self) -> Option<Self::Item> {
        let current = self.next?;
        self.next = current.source();
        Some(current)
    }
}

/// The first error of type `T` in `err`'s chain (including `err` itself).
///
/// Looks through [`Classified`] wrappers and boxed errors.
///
/// ```
/// use foundation_core::error::{cause_ref, BoxError, Classified, ErrorKind};
///
/// let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out");
/// let err: BoxError = Classified::new(ErrorKind::Timeout, io).into();
/// let found = cause_ref::<std::io::Error>(err.as_ref()).unwrap();
/// assert_eq!(found.kind(), std::io::ErrorKind::TimedOut);
/// ```
#[must_use]
pub fn cause_ref<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    chain(err).find_map(|e| {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(c) = e.downcast_ref::<Classified>() {
            let inner: &(dyn StdError + 'static) = c.get_ref();
            return inner.downcast_ref::<T>();
        }
        None
    })
}

/// Whether an error of type `T` appears anywhere in `err`'s chain.
///
/// ```
/// use foundation_core::error::is_caused_by;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("loading config")]
/// struct Load(#[source] std::io::Error);
///
/// let err = Load(std::io::Error::other("missing"));
/// assert!(is_caused_by::<std::io::Error>(&err));
/// assert!(!is_caused_by::<std::fmt::Error>(&err));
/// ```
#[must_use]
pub fn is_caused_by<T: StdError + 'static>(err: &(dyn StdError + 'static)) -> bool {
    cause_ref::<T>(err).is_some()
}

/// Finds what an arbitrary error means for the caller.
///
/// Walks the chain from the outside in and returns the first kind it can tell:
/// an explicit [`Classified`] wrapper, then well-known std errors
/// (`std::io::Error` by its `ErrorKind`). Returns [`ErrorKind::Unclassified`]
/// when nothing in the chain says.
///
/// Typed errors that implement [`Classify`] should be asked directly
/// (`err.kind()`); this function is for errors that have been boxed.
///
/// ```
/// use foundation_core::error::{classify, ErrorKind};
///
/// let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
/// assert_eq!(classify(&reset), ErrorKind::Transient);
/// let opaque = std::fmt::Error;
/// assert_eq!(classify(&opaque), ErrorKind::Unclassified);
/// ```
#[must_use]
pub fn classify(err: &(dyn StdError + 'static)) -> ErrorKind {
    for e in chain(err) {
        if let Some(c) = e.downcast_ref::<Classified>() {
            return c.kind();
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(kind) = classify_io(io.kind())
        {
            return kind;
        }
    }
    ErrorKind::Unclassified
}

fn classify_io(kind: std::io::ErrorKind) -> Option<ErrorKind> {
    use std::io::ErrorKind as Io;
    Some(match kind {
        Io::TimedOut => ErrorKind::Timeout,
        Io::ConnectionRefused | Io::NotConnected | Io::AddrNotAvailable => ErrorKind::Unavailable,
        Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::Interrupted => {
            ErrorKind::Transient
        }
        Io::UnexpectedEof | Io::WouldBlock => ErrorKind::Transient,
        Io::InvalidInput | Io::InvalidData => ErrorKind::InvalidInput,
        Io::PermissionDenied | Io::NotFound | Io::Unsupported => ErrorKind::Permanent,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] BoxError);

    #[derive(Debug, thiserror::Error)]
    #[error("leaf")]
    struct Leaf;

    impl Classify for Leaf {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Unavailable
        }
    }

    #[test]
    fn classify_finds_wrapped_kind_through_layers() {
        let err = Outer(into_box_error(Leaf));
        assert_eq!(classify(&err), ErrorKind::Unavailable);
        assert!(is_caused_by::<Leaf>(&err));
        assert!(cause_ref::<Leaf>(&err).is_some());
    }

    #[test]
    fn outermost_classification_wins() {
        let inner = Classified::new(ErrorKind::Transient, "reset");
        let err = Classified::new(ErrorKind::Permanent, Outer(Box::new(inner)));
        assert_eq!(classify(&err), ErrorKind::Permanent);
    }

    #[test]
    fn io_errors_are_classified() {
        let err = Outer(Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)));
        assert_eq!(classify(&err), ErrorKind::Timeout);
        let err = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&err), ErrorKind::Unavailable);
        let err = std::io::Error::other("whatever");
        assert_eq!(classify(&err), ErrorKind::Unclassified);
    }

    #[test]
    fn unclassified_is_not_retryable() {
        assert!(!ErrorKind::Unclassified.is_retryable());
        assert!(!ErrorKind::InvalidInput.is_retryable());
        assert!(!ErrorKind::Cancelled.is_retryable());
        assert!(ErrorKind::Overloaded.is_retryable());
        assert!(!ErrorKind::Overloaded.counts_against_target());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trip() {
        let rl = ErrorKind::RateLimited {
            retry_after: Some(Duration::from_millis(1500)),
        };
        let json = serde_json::to_string(&rl).unwrap();
        assert_eq!(json, r#"{"kind":"rate_limited","retry_after":"1s 500ms"}"#);
        assert_eq!(serde_json::from_str::<ErrorKind>(&json).unwrap(), rl);
        let t: ErrorKind = serde_json::from_str(r#"{"kind":"timeout"}"#).unwrap();
        assert_eq!(t, ErrorKind::Timeout);
        let none: ErrorKind = serde_json::from_str(r#"{"kind":"rate_limited"}"#).unwrap();
        assert_eq!(none.retry_after(), None);
    }

    #[test]
    fn display_is_lowercase_without_period() {
        assert_eq!(ErrorKind::InvalidInput.to_string(), "invalid input");
        let rl = ErrorKind::RateLimited {
            retry_after: Some(Duration::from_millis(1500)),
        };
        assert_eq!(rl.to_string(), "rate limited (retry after 1.5s)");
        let wrapped = Classified::new(ErrorKind::Timeout, "took too long");
        assert_eq!(wrapped.to_string(), "took too long");
    }
}
