//! [`RateLimitLayer`].

use std::fmt;
use std::time::Duration;

use tower::Layer;

use super::{NoReconcile, RateLimit};
use crate::limiter::RateLimiter;

/// Applies [`RateLimit`] to a service; cheap to clone, and every service it
/// builds shares the same limiter.
#[derive(Clone)]
pub struct RateLimitLayer<C, H = NoReconcile> {
    limiter: RateLimiter,
    cost: C,
    reconcile: H,
    max_wait: Option<Duration>,
}

// === impl RateLimitLayer ===

impl<C> RateLimitLayer<C> {
    /// A layer charging each request `cost(&request)` against `limiter`.
    pub fn new(limiter: RateLimiter, cost: C) -> Self {
        Self {
            limiter,
            cost,
            reconcile: NoReconcile,
            max_wait: None,
        }
    }
}

impl<C, H> RateLimitLayer<C, H> {
    /// Settles each permit from its response with `hook`.
    #[must_use]
    pub fn with_reconcile<H2>(self, hook: H2) -> RateLimitLayer<C, H2> {
        RateLimitLayer {
            limiter: self.limiter,
            cost: self.cost,
            reconcile: hook,
            max_wait: self.max_wait,
        }
    }

    /// Fails fast (with the predicted wait as retry-after) instead of waiting
    /// longer than `max_wait`.
    #[must_use]
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }
}

impl<S, C: Clone, H: Clone> Layer<S> for RateLimitLayer<C, H> {
    type Service = RateLimit<S, C, H>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(
            inner,
            self.limiter.clone(),
            self.cost.clone(),
            self.reconcile.clone(),
            self.max_wait,
        )
    }
}

impl<C, H> fmt::Debug for RateLimitLayer<C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter.name())
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}
