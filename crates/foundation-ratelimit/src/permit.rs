//! Admission permits: what was charged, settled later with [`Permit::reconcile`].

use std::fmt;

use crate::charge::Charge;
use crate::limiter::RateLimiter;

/// Proof of admission, recording what was charged.
///
/// Reserve, then reconcile: charge the most a request can use (e.g.
/// `max_tokens`), then call [`reconcile`](Self::reconcile) with the real usage
/// from the response; the difference is refunded (or, if the request used
/// more, charged as debt that later requests wait out).
///
/// Dropping the permit releases its concurrency slot, if it holds one. Rate
/// charges are *not* refunded on drop: the request was sent.
#[must_use = "dropping a permit releases its concurrency slot at once"]
pub struct Permit {
    limiter: RateLimiter,
    charged: Charge,
    slot: bool,
}

// === impl Permit ===

impl Permit {
    pub(crate) fn new(limiter: RateLimiter, charged: Charge, slot: bool) -> Self {
        Self {
            limiter,
            charged,
            slot,
        }
    }

    /// What this permit has charged so far (updated by `reconcile`).
    #[must_use]
    pub fn charged(&self) -> Charge {
        self.charged
    }

    /// Whether the permit holds a concurrency slot.
    #[must_use]
    pub fn holds_slot(&self) -> bool {
        self.slot
    }

    /// The limiter that issued the permit.
    #[must_use]
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Settles the charge to `actual`: refunds what was reserved but not used
    /// (waking the head waiter) and charges any excess unconditionally.
    /// May be called more than once; each call settles against the previous.
    pub fn reconcile(&mut self, actual: Charge) {
        if actual != self.charged {
            self.limiter.adjust(&self.charged, &actual);
            self.charged = actual;
        }
    }

    /// Refunds the whole charge (the request was never sent) and releases
    /// the slot.
    pub fn cancel(mut self) {
        self.reconcile(Charge::ZERO);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.slot {
            self.limiter.release_slot();
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("limiter", &self.limiter.name())
            .field("charged", &self.charged)
            .field("slot", &self.slot)
            .finish()
    }
}
