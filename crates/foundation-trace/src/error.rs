//! Errors that carry the history of the operation that failed.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use foundation_core::error::classify;
use foundation_core::{BoxError, Classify, ErrorKind};
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

use crate::layer::{Settings, capture_current, default_redactor};
use crate::redact::Redactor;
use crate::trace::Trace;

/// An error with the trace of the operation it happened in, up to the
/// failure.
///
/// Created where the error happens (with `?` through `From`,
/// [`InCurrentTrace::in_current_trace`], [`TraceResultExt::with_trace`],
/// [`TracedError::from_error`] or [`TracedError::boxed`]), it snapshots the
/// current trace: the chain of operations, every step with its time and
/// captured data, and a failing step holding the error message. The trace
/// itself is marked failed, so the retention policy keeps it.
///
/// - `Display`: the error message, then the history, one line per operation
///   and step with the elapsed time, the failing step marked.
/// - `source()`: the wrapped error, so `foundation_core::error::classify`,
///   `cause_ref` and `is_caused_by` see through the wrapper.
/// - [`Classify`]: the wrapped error's classification.
/// - `Serialize`: `{"error", "kind", "retryable", "trace"}`.
/// - `Debug`: redacted like the trace (the wrapped error's `Debug` is
///   scrubbed of `key: value` secrets).
///
/// Messages are redacted: the error text recorded in the trace and shown by
/// `Display` goes through the same redaction as captured fields.
///
/// ```
/// use foundation_core::{Classified, ErrorKind, Classify};
/// use foundation_trace::{TraceLayer, TracedError};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// fn parse(raw: &str) -> Result<u32, TracedError<Classified>> {
///     tracing::info!(bytes = raw.len(), "parsing");
///     raw.parse::<u32>()
///         .map_err(|e| Classified::new(ErrorKind::InvalidInput, e))
///         .map_err(TracedError::new)
/// }
///
/// let layer = TraceLayer::builder().build()?;
/// let subscriber = tracing_subscriber::registry().with(layer);
/// let err = tracing::subscriber::with_default(subscriber, || {
///     let _op = tracing::info_span!("handle").entered();
///     parse("forty-two").unwrap_err()
/// });
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
/// let trace = err.trace().unwrap();
/// assert_eq!(trace.outline(), ["handle", "  - parsing", "  - error"]);
/// println!("{err}");
/// # Ok::<(), foundation_core::ValidationErrors>(())
/// ```
pub struct TracedError<E> {
    inner: E,
    message: String,
    trace: Option<Box<Trace>>,
    settings: Option<Arc<Settings>>,
    as_error: fn(&E) -> &(dyn StdError + 'static),
    kind_of: fn(&E) -> ErrorKind,
}

// === impl TracedError ===

impl<E> TracedError<E>
where
    E: Classify + StdError + Send + Sync + 'static,
{
    /// Wraps `err` with the current trace; the classification is `err`'s own.
    #[must_use]
    pub fn new(err: E) -> Self {
        Self::capture(err, |e| e, Classify::kind)
    }
}

impl<E> TracedError<E>
where
    E: StdError + Send + Sync + 'static,
{
    /// Wraps any error with the current trace; the classification is found in
    /// its chain by `foundation_core::error::classify`.
    #[must_use]
    pub fn from_error(err: E) -> Self {
        Self::capture(err, |e| e, |e| classify(e))
    }
}

impl TracedError<BoxError> {
    /// Wraps a boxed error (or anything that converts into one, such as a
    /// message) with the current trace; the classification is found in its
    /// chain by `foundation_core::error::classify`.
    #[must_use]
    pub fn boxed(err: impl Into<BoxError>) -> Self {
        Self::capture(err.into(), |b| &**b, |b| classify(&**b))
    }
}

impl<E> TracedError<E> {
    fn capture(
        inner: E,
        as_error: fn(&E) -> &(dyn StdError + 'static),
        kind_of: fn(&E) -> ErrorKind,
    ) -> Self {
        let captured = capture_current(&as_error(&inner).to_string());
        Self {
            inner,
            message: captured.message,
            trace: captured.trace.map(Box::new),
            settings: captured.settings,
            as_error,
            kind_of,
        }
    }

    /// The wrapped error.
    #[must_use]
    pub fn get_ref(&self) -> &E {
        &self.inner
    }

    /// Unwraps the error, dropping the trace.
    #[must_use]
    pub fn into_inner(self) -> E {
        self.inner
    }

    /// The trace up to the failure; `None` when the error was raised outside
    /// any span or without a [`TraceLayer`](crate::TraceLayer) on a
    /// `tracing_subscriber::Registry`.
    #[must_use]
    pub fn trace(&self) -> Option<&Trace> {
        self.trace.as_deref()
    }

    /// The error message, redacted.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The correlation id of the trace the error happened in.
    #[must_use]
    pub fn correlation_id(&self) -> Option<&str> {
        self.trace().map(|t| t.correlation_id.as_str())
    }

    /// What the caller should do: the wrapped error's classification.
    #[must_use]
    pub fn error_kind(&self) -> ErrorKind {
        (self.kind_of)(&self.inner)
    }
}

/// The trace carried by a [`TracedError<E>`] anywhere in `err`'s chain, for
/// errors that were boxed on their way up.
#[must_use]
pub fn trace_of<'a, E: fmt::Debug + 'static>(
    err: &'a (dyn StdError + 'static),
) -> Option<&'a Trace> {
    foundation_core::error::chain(err)
        .find_map(|e| e.downcast_ref::<TracedError<E>>())
        .and_then(TracedError::trace)
}

impl<E> Classify for TracedError<E> {
    fn kind(&self) -> ErrorKind {
        self.error_kind()
    }
}

impl<E> From<E> for TracedError<E>
where
    E: Classify + StdError + Send + Sync + 'static,
{
    /// Captures the current trace, so `?` attaches the history.
    fn from(err: E) -> Self {
        Self::new(err)
    }
}

impl<E> fmt::Display for TracedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(t) = &self.trace {
            write!(f, "\n{t}")?;
        }
        Ok(())
    }
}

impl<E: fmt::Debug> fmt::Debug for TracedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redactor: &Redactor = match &self.settings {
            Some(s) => &s.redactor,
            None => default_redactor(),
        };
        let inner = format!("{:?}", self.inner);
        let inner = redactor.scrub_text(&inner).unwrap_or(inner);
        f.debug_struct("TracedError")
            .field("inner", &format_args!("{inner}"))
            .field("kind", &self.error_kind())
            .field("trace", &self.trace)
            .finish()
    }
}

impl<E: fmt::Debug> StdError for TracedError<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some((self.as_error)(&self.inner))
    }
}

impl<E> Serialize for TracedError<E> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let kind = self.error_kind();
        let mut st = s.serialize_struct("TracedError", 4)?;
        st.serialize_field("error", &self.message)?;
        st.serialize_field("kind", kind.as_str())?;
        st.serialize_field("retryable", &kind.is_retryable())?;
        st.serialize_field("trace", &self.trace)?;
        st.end()
    }
}

/// Attaches the current trace to an error.
pub trait InCurrentTrace: Sized {
    /// Wraps `self` with the trace of the current span.
    fn in_current_trace(self) -> TracedError<Self>;
}

impl<E> InCurrentTrace for E
where
    E: Classify + StdError + Send + Sync + 'static,
{
    fn in_current_trace(self) -> TracedError<Self> {
        TracedError::new(self)
    }
}

/// Attaches the current trace to the error of a `Result`.
pub trait TraceResultExt<T, E> {
    /// Wraps the error, if any, with the trace of the current span.
    ///
    /// # Errors
    /// The wrapped error.
    fn with_trace(self) -> Result<T, TracedError<E>>;
}

impl<T, E> TraceResultExt<T, E> for Result<T, E>
where
    E: Classify + StdError + Send + Sync + 'static,
{
    fn with_trace(self) -> Result<T, TracedError<E>> {
        self.map_err(TracedError::new)
    }
}
