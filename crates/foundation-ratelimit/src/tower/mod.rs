//! A tower middleware whose clones share one limiter.
//!
//! Unlike `tower::limit::RateLimit`, whose state lives in each service clone,
//! [`RateLimit`] holds a [`RateLimiter`] handle, so every clone (and every
//! connection's service) draws from the same quota. The cost of each request
//! comes from a cost extractor (`Fn(&Request) -> Charge`); the wait happens
//! in the response future (FIFO, cancellation-safe), so `poll_ready` only
//! reflects the inner service. An optional [`Reconcile`] hook sees each
//! response with the permit, to settle the real usage or feed back headers.
//! Errors are [`RateLimitError`]s boxed through
//! [`foundation_core::error::into_box_error`], so `classify` reads them as
//! rate limited with their retry-after.
//!
//! ```
//! use std::time::Duration;
//! use foundation_ratelimit::tower::RateLimitLayer;
//! use foundation_ratelimit::{Charge, DimensionConfig, LimiterConfig, Permit, RateLimiter};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! struct Completion { max_tokens: u64 }
//! struct Usage { total_tokens: u64 }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! let limiter = RateLimiter::try_new(
//!     LimiterConfig::new()
//!         .with_dimension(DimensionConfig::per_minute("requests", 500))
//!         .with_dimension(DimensionConfig::per_minute("tokens", 200_000)),
//! )?;
//! let layer = RateLimitLayer::new(limiter.clone(), |req: &Completion| Charge::from([1, req.max_tokens]))
//!     .with_reconcile(|resp: &Usage, permit: &mut Permit| permit.reconcile(Charge::from([1, resp.total_tokens])))
//!     .with_max_wait(Duration::from_secs(30));
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|req: Completion| async move { Ok::<_, tower::BoxError>(Usage { total_tokens: req.max_tokens / 4 }) });
//! let usage = svc.ready().await?.call(Completion { max_tokens: 4_000 }).await?;
//! assert_eq!(usage.total_tokens, 1_000);
//! // Reserved 4000 tokens, settled at 1000:
//! assert_eq!(limiter.snapshot().dimensions[1].remaining, 199_000);
//! # Ok(()) }
//! ```

mod error;
mod future;
mod layer;

use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use foundation_core::BoxError;
use tower::Service;

pub use self::error::RateLimitError;
pub use self::future::ResponseFuture;
pub use self::layer::RateLimitLayer;
use crate::charge::Charge;
use crate::limiter::RateLimiter;
use crate::permit::Permit;

/// Settles a permit from a response (real usage, header feedback).
pub trait Reconcile<Response> {
    /// Called once with each successful response and its permit.
    fn reconcile(&self, response: &Response, permit: &mut Permit);
}

impl<F, Response> Reconcile<Response> for F
where
    F: Fn(&Response, &mut Permit),
{
    fn reconcile(&self, response: &Response, permit: &mut Permit) {
        self(response, permit);
    }
}

/// The default hook: keeps the reserved charge.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReconcile;

impl<Response> Reconcile<Response> for NoReconcile {
    fn reconcile(&self, _: &Response, _: &mut Permit) {}
}

/// The rate-limiting service; see the [module docs](self).
#[derive(Clone)]
pub struct RateLimit<S, C, H = NoReconcile> {
    inner: S,
    limiter: RateLimiter,
    cost: C,
    reconcile: H,
    max_wait: Option<Duration>,
}

// === impl RateLimit ===

impl<S, C, H> RateLimit<S, C, H> {
    /// Wraps `inner`.
    pub fn new(
        inner: S,
        limiter: RateLimiter,
        cost: C,
        reconcile: H,
        max_wait: Option<Duration>,
    ) -> Self {
        Self {
            inner,
            limiter,
            cost,
            reconcile,
            max_wait,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The shared limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }
}

impl<S, C, H, Req> Service<Req> for RateLimit<S, C, H>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    Req: Send + 'static,
    C: Fn(&Req) -> Charge,
    H: Reconcile<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let charge = (self.cost)(&req);
        // Call the instance that was driven to readiness, leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = self.limiter.clone();
        let max_wait = self.max_wait;
        let acquire = Box::pin(async move {
            match max_wait {
                Some(d) => limiter.acquire_within(charge, d).await,
                None => limiter.acquire(charge).await,
            }
        });
        ResponseFuture::new(
            acquire,
            Box::new(move || inner.call(req)),
            self.reconcile.clone(),
        )
    }
}

impl<S: fmt::Debug, C, H> fmt::Debug for RateLimit<S, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter.name())
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}
