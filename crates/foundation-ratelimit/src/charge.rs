//! What one request costs in each dimension.

use std::fmt;

use crate::config::MAX_DIMENSIONS;

/// The amounts one request takes from each rate dimension, by position in the
/// limiter's configuration (`[requests, tokens]` for an RPM+TPM limiter).
///
/// `Copy` and allocation-free. Build it positionally (`Charge::from([1, 1500])`,
/// [`with`](Self::with)) or by name through
/// [`RateLimiter::charge`](crate::RateLimiter::charge). Amounts for positions
/// past the limiter's dimensions must be zero.
///
/// ```
/// use foundation_ratelimit::Charge;
/// let c = Charge::from([1, 1500]);
/// assert_eq!(c.get(1), 1500);
/// assert_eq!(c.with(1, 900).get(1), 900);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Charge {
    amounts: [u64; MAX_DIMENSIONS],
}

// === impl Charge ===

impl Charge {
    /// Nothing in any dimension (a concurrency-only permit).
    pub const ZERO: Self = Self {
        amounts: [0; MAX_DIMENSIONS],
    };

    /// The same as [`Charge::ZERO`].
    #[must_use]
    pub const fn new() -> Self {
        Self::ZERO
    }

    /// This charge with `amount` at position `dimension`.
    ///
    /// A position `>= MAX_DIMENSIONS` is ignored (no limiter has it).
    #[must_use]
    pub const fn with(mut self, dimension: usize, amount: u64) -> Self {
        if dimension < MAX_DIMENSIONS {
            self.amounts[dimension] = amount;
        }
        self
    }

    /// The amount at position `dimension` (zero past the end).
    #[must_use]
    pub const fn get(&self, dimension: usize) -> u64 {
        if dimension < MAX_DIMENSIONS {
            self.amounts[dimension]
        } else {
            0
        }
    }

    /// All amounts, by position.
    #[must_use]
    pub const fn amounts(&self) -> &[u64; MAX_DIMENSIONS] {
        &self.amounts
    }

    /// Whether every amount is zero.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.amounts.iter().all(|&a| a == 0)
    }

    /// Per-position saturating sum.
    #[must_use]
    pub fn saturating_add(mut self, other: Self) -> Self {
        for (a, b) in self.amounts.iter_mut().zip(other.amounts) {
            *a = a.saturating_add(b);
        }
        self
    }
}

impl<const N: usize> From<[u64; N]> for Charge {
    /// Positional amounts; entries past [`MAX_DIMENSIONS`] are ignored.
    fn from(values: [u64; N]) -> Self {
        Self::from(&values[..])
    }
}

impl From<&[u64]> for Charge {
    /// Positional amounts; entries past [`MAX_DIMENSIONS`] are ignored.
    fn from(values: &[u64]) -> Self {
        let mut c = Self::ZERO;
        for (slot, v) in c.amounts.iter_mut().zip(values) {
            *slot = *v;
        }
        c
    }
}

impl fmt::Debug for Charge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self
            .amounts
            .iter()
            .rposition(|&a| a != 0)
            .map_or(0, |i| i + 1);
        f.debug_list().entries(&self.amounts[..last]).finish()
    }
}
