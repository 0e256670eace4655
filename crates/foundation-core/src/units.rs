//! Units shared across crates: token counts and money.
//!
//! Money is an integer number of **micro-units** of the account currency
//! (1 USD = 1 000 000 micro-USD), never a float: sums of many small per-request
//! costs must add up exactly, and budgets must compare exactly.
//! All arithmetic is checked (`checked_*`, returning `None` on overflow) or
//! explicitly saturating.
//!
//! ```
//! use foundation_core::units::{Cost, Price, Tokens};
//!
//! // $2.50 per million input tokens
//! let price: Price = "2.50".parse().unwrap();
//! let cost = price.cost_of(Tokens::new(1_234)).unwrap();
//! assert_eq!(cost, Cost::from_micros(3_085)); // $0.003085
//! assert_eq!(cost.to_string(), "0.003085");
//! ```

use std::fmt;
use std::iter::Sum;
use std::str::FromStr;

/// Checked and saturating arithmetic shared by the `u64` newtypes
/// ([`Tokens`], [`Cost`]): one definition, so the two can't drift.
macro_rules! counting_arithmetic {
    ($ty:ident, $max:literal) => {
        impl $ty {
            /// `self + rhs`, or `None` on overflow.
            #[must_use]
            pub const fn checked_add(self, rhs: Self) -> Option<Self> {
                match self.0.checked_add(rhs.0) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `self - rhs`, or `None` if `rhs > self`.
            #[must_use]
            pub const fn checked_sub(self, rhs: Self) -> Option<Self> {
                match self.0.checked_sub(rhs.0) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            #[doc = concat!("`self + rhs`, clamped at ", $max, ".")]
            #[must_use]
            pub const fn saturating_add(self, rhs: Self) -> Self {
                Self(self.0.saturating_add(rhs.0))
            }

            /// `self - rhs`, clamped at zero.
            #[must_use]
            pub const fn saturating_sub(self, rhs: Self) -> Self {
                Self(self.0.saturating_sub(rhs.0))
            }

            /// Sums an iterator, or `None` on overflow.
            pub fn checked_sum<I: IntoIterator<Item = Self>>(iter: I) -> Option<Self> {
                iter.into_iter()
                    .try_fold(Self::ZERO, |acc, x| acc.checked_add(x))
            }
        }

        #[doc = concat!("Saturating sum; use [`", stringify!($ty), "::checked_sum`] to detect overflow.")]
        impl Sum for $ty {
            fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
                iter.fold(Self::ZERO, Self::saturating_add)
            }
        }
    };
}

/// A number of model tokens.
///
/// ```
/// use foundation_core::Tokens;
///
/// let prompt = Tokens::new(1_200);
/// let completion = Tokens::from(300u32);
/// assert_eq!(prompt.checked_add(completion), Some(Tokens::new(1_500)));
/// assert_eq!(completion.checked_sub(prompt), None);
/// assert_eq!(Tokens::checked_sum([prompt, completion]), Some(Tokens::new(1_500)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Tokens(u64);

// === impl Tokens ===

impl Tokens {
    /// Zero tokens.
    pub const ZERO: Self = Self(0);

    /// `n` tokens.
    #[must_use]
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// The count as a plain integer.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for Tokens {
    fn from(n: u64) -> Self {
        Self(n)
    }
}

impl From<u32> for Tokens {
    fn from(n: u32) -> Self {
        Self(u64::from(n))
    }
}

impl From<Tokens> for u64 {
    fn from(t: Tokens) -> Self {
        t.0
    }
}

impl fmt::Display for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} tokens", self.0)
    }
}

counting_arithmetic!(Tokens, "`u64::MAX`");

/// An amount of money in integer micro-units of the account currency.
///
/// Non-negative; refunds and differences are expressed with
/// [`checked_sub`](Self::checked_sub) or [`saturating_sub`](Self::saturating_sub).
/// Parses from and displays as a decimal string with up to six fractional digits
/// (`"0.0015"`, `"12"`), which is also its serde form when the `serde` feature
/// is on; integer micro-units are accepted by [`Cost::from_micros`].
///
/// ```
/// use foundation_core::Cost;
///
/// let budget: Cost = "10".parse()?;
/// let spent = Cost::from_micros(2_500_001);
/// let left = budget.checked_sub(spent).unwrap();
/// assert_eq!(left.to_string(), "7.499999");
/// assert_eq!(spent.checked_sub(budget), None); // no negative money
/// assert!("0.0000001".parse::<Cost>().is_err()); // finer than a micro-unit
/// # Ok::<(), foundation_core::units::ParseAmountError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost(u64);

// === impl Cost ===

impl Cost {
    /// No money.
    pub const ZERO: Self = Self(0);
    /// The largest representable amount (about 18.4 trillion units).
    pub const MAX: Self = Self(u64::MAX);

    /// Micro-units per whole unit of currency.
    pub const MICROS_PER_UNIT: u64 = 1_000_000;

    /// An amount of `micros` micro-units.
    #[must_use]
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// An amount of whole currency units, or `None` on overflow.
    #[must_use]
    pub const fn from_units(units: u64) -> Option<Self> {
        match units.checked_mul(Self::MICROS_PER_UNIT) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// The amount in micro-units.
    #[must_use]
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// `self * n`, or `None` on overflow.
    #[must_use]
    pub const fn checked_mul(self, n: u64) -> Option<Self> {
        match self.0.checked_mul(n) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// The amount as a float of whole units, for display and statistics only.
    /// Never compute money with it.
    #[must_use]
    #[allow(
        clippy::cast_precision_loss,
        reason = "documented lossy view for display"
    )]
    pub fn as_units_f64(self) -> f64 {
        self.0 as f64 / Self::MICROS_PER_UNIT as f64
    }
}

counting_arithmetic!(Cost, "[`Cost::MAX`]");

impl fmt::Display for Cost {
    /// Decimal whole units with six fractional digits (`"0.003085"`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / Self::MICROS_PER_UNIT;
        let frac = self.0 % Self::MICROS_PER_UNIT;
        write!(f, "{whole}.{frac:06}")
    }
}

/// Why a decimal amount could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseAmountError {
    /// The string was empty.
    #[error("empty amount")]
    Empty,
    /// A character other than digits and one `.` was found.
    #[error("invalid character {found:?} at byte {at} in amount {input:?}")]
    InvalidChar {
        /// The whole input.
        input: String,
        /// The offending character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
    /// More than six fractional digits: the amount is finer than a micro-unit.
    #[error("amount {input:?} has more than 6 fractional digits (finer than a micro-unit)")]
    TooPrecise {
        /// The whole input.
        input: String,
    },
    /// The amount does not fit in 64 bits of micro-units.
    #[error("amount {input:?} is too large")]
    Overflow {
        /// The whole input.
        input: String,
    },
}

impl crate::error::Classify for ParseAmountError {
    fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::InvalidInput
    }
}

/// Parses `"12.345"` into micro-units exactly.
fn parse_micros(s: &str) -> Result<u64, ParseAmountError> {
    let input = s.trim();
    if input.is_empty() {
        return Err(ParseAmountError::Empty);
    }
    let (whole, frac) = match input.split_once('.') {
        Some((w, f)) => (w, f),
        None => (input, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return Err(ParseAmountError::InvalidChar {
            input: input.to_owned(),
            found: '.',
            at: 0,
        });
    }
    for (at, found) in input.char_indices() {
        let is_sep = found == '.' && Some(at) == input.find('.');
        if !found.is_ascii_digit() && !is_sep {
            return Err(ParseAmountError::InvalidChar {
                input: input.to_owned(),
                found,
                at,
            });
        }
    }
    if frac.len() > 6 {
        return Err(ParseAmountError::TooPrecise {
            input: input.to_owned(),
        });
    }
    let overflow = || ParseAmountError::Overflow {
        input: input.to_owned(),
    };
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| overflow())?
    };
    let mut frac_micros: u64 = 0;
    for (i, d) in frac.bytes().enumerate() {
        frac_micros += u64::from(d - b'0') * 10u64.pow(5 - i as u32);
    }
    whole
        .checked_mul(Cost::MICROS_PER_UNIT)
        .and_then(|w| w.checked_add(frac_micros))
        .ok_or_else(overflow)
}

impl FromStr for Cost {
    type Err = ParseAmountError;

    /// Parses a decimal amount of whole units with at most six fractional digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_micros(s).map(Self)
    }
}

/// A price per **million** tokens, in micro-units (the way providers publish
/// prices: "$2.50 / 1M input tokens" is `Price::from_micros_per_million(2_500_000)`).
///
/// Parses from and displays as a decimal amount of whole units per million
/// tokens (`"2.50"`).
///
/// ```
/// use foundation_core::{Cost, Price, Tokens};
///
/// let output: Price = "10.00".parse()?; // $10 per 1M output tokens
/// assert_eq!(output.cost_of(Tokens::new(350)), Some(Cost::from_micros(3_500)));
/// // Rounded up: 1 token at $0.15/1M is 0.15 micro-units, billed as 1.
/// let cheap: Price = "0.15".parse()?;
/// assert_eq!(cheap.cost_of(Tokens::new(1)), Some(Cost::from_micros(1)));
/// # Ok::<(), foundation_core::units::ParseAmountError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(u64);

// === impl Price ===

impl Price {
    /// Free.
    pub const FREE: Self = Self(0);

    /// A price of `micros` micro-units per million tokens.
    #[must_use]
    pub const fn from_micros_per_million(micros: u64) -> Self {
        Self(micros)
    }

    /// The price in micro-units per million tokens.
    #[must_use]
    pub const fn micros_per_million(self) -> u64 {
        self.0
    }

    /// The cost of `tokens` at this price, rounded **up** to the next
    /// micro-unit (a provider never bills less than the exact amount), or
    /// `None` on overflow.
    #[must_use]
    pub fn cost_of(self, tokens: Tokens) -> Option<Cost> {
        let exact = u128::from(self.0) * u128::from(tokens.get());
        let micros = exact.div_ceil(1_000_000);
        u64::try_from(micros).ok().map(Cost::from_micros)
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/1M tokens", Cost::from_micros(self.0))
    }
}

impl FromStr for Price {
    type Err = ParseAmountError;

    /// Parses a decimal amount of whole units per million tokens.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_micros(s).map(Self)
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{Cost, Price};
    use serde::de::{self, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::fmt;

    struct AmountVisitor(&'static str);

    impl Visitor<'_> for AmountVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{} as a decimal string such as \"0.0015\"", self.0)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            super::parse_micros(v).map_err(E::custom)
        }
    }

    impl Serialize for Cost {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    impl<'de> Deserialize<'de> for Cost {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(AmountVisitor("an amount of money"))
                .map(Cost::from_micros)
        }
    }

    impl Serialize for Price {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(&Cost::from_micros(self.0))
        }
    }

    impl<'de> Deserialize<'de> for Price {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(AmountVisitor("a price per million tokens"))
                .map(Price::from_micros_per_million)
        }
    }
}

#[cfg(feature = "schemars")]
mod schema_impls {
    use super::{Cost, Price};
    use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
    use std::borrow::Cow;

    const DECIMAL: &str = r"^(\d+(\.\d{0,6})?|\.\d{1,6})$";

    impl JsonSchema for Cost {
        fn schema_name() -> Cow<'static, str> {
            "Cost".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "type": "string",
                "pattern": DECIMAL,
                "description": "Amount of money in whole currency units, at most 6 fractional digits (e.g. \"0.0015\")",
            })
        }
    }

    impl JsonSchema for Price {
        fn schema_name() -> Cow<'static, str> {
            "Price".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "type": "string",
                "pattern": DECIMAL,
                "description": "Price per million tokens in whole currency units (e.g. \"2.50\")",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_decimal_amounts_exactly() {
        assert_eq!("0.0015".parse::<Cost>().unwrap(), Cost::from_micros(1_500));
        assert_eq!("12".parse::<Cost>().unwrap(), Cost::from_micros(12_000_000));
        assert_eq!(".5".parse::<Cost>().unwrap(), Cost::from_micros(500_000));
        assert_eq!("3.".parse::<Cost>().unwrap(), Cost::from_micros(3_000_000));
    }

    #[test]
    fn rejects_bad_amounts_with_reason() {
        assert_eq!("".parse::<Cost>(), Err(ParseAmountError::Empty));
        assert!(matches!(
            "1.2.3".parse::<Cost>(),
            Err(ParseAmountError::InvalidChar {
                found: '.',
                at: 3,
                ..
            })
        ));
        assert!(matches!(
            "-1".parse::<Cost>(),
            Err(ParseAmountError::InvalidChar { found: '-', .. })
        ));
        assert!(matches!(
            "0.0000001".parse::<Cost>(),
            Err(ParseAmountError::TooPrecise { .. })
        ));
        assert!(matches!(
            "99999999999999999999".parse::<Cost>(),
            Err(ParseAmountError::Overflow { .. })
        ));
        assert!(matches!(
            ".".parse::<Cost>(),
            Err(ParseAmountError::InvalidChar { .. })
        ));
    }

    #[test]
    fn price_rounds_up_to_micro() {
        let p = Price::from_micros_per_million(1); // $0.000001 per 1M tokens
        assert_eq!(p.cost_of(Tokens::new(1)), Some(Cost::from_micros(1)));
        assert_eq!(p.cost_of(Tokens::ZERO), Some(Cost::ZERO));
        let p: Price = "15".parse().unwrap();
        assert_eq!(
            p.cost_of(Tokens::new(1_000_000)),
            Some(Cost::from_units(15).unwrap())
        );
        assert_eq!(
            Price::from_micros_per_million(u64::MAX).cost_of(Tokens::new(u64::MAX)),
            None
        );
    }

    #[test]
    fn display_forms() {
        assert_eq!(Cost::from_micros(3_085).to_string(), "0.003085");
        assert_eq!(Tokens::new(7).to_string(), "7 tokens");
        assert_eq!(
            "2.5".parse::<Price>().unwrap().to_string(),
            "2.500000/1M tokens"
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trip() {
        let c: Cost = serde_json::from_str("\"1.25\"").unwrap();
        assert_eq!(c, Cost::from_micros(1_250_000));
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"1.250000\"");
        let err = serde_json::from_str::<Cost>("\"1.2x\"").unwrap_err();
        assert!(err.to_string().contains("invalid character"), "{err}");
        let t: Tokens = serde_json::from_str("42").unwrap();
        assert_eq!(t, Tokens::new(42));
    }

    #[cfg(feature = "schemars")]
    #[test]
    fn json_schema_describes_decimal_strings() {
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code, reason = "only the schema is used")]
        struct Budget {
            limit: Cost,
            price: Price,
            max_tokens: Tokens,
        }
        let schema = serde_json::to_value(schemars::schema_for!(Budget)).unwrap();
        assert_eq!(schema["properties"]["max_tokens"]["$ref"], "#/$defs/Tokens");
        assert_eq!(schema["$defs"]["Tokens"]["type"], "integer");
        let cost = &schema["$defs"]["Cost"];
        assert_eq!(cost["type"], "string");
        let re = cost["pattern"].as_str().unwrap();
        assert!(re.contains(r"\d{0,6}"), "{re}");
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(micros in any::<u64>()) {
            let c = Cost::from_micros(micros);
            prop_assert_eq!(c.to_string().parse::<Cost>().unwrap(), c);
        }

        #[test]
        fn checked_add_matches_u128(a in any::<u64>(), b in any::<u64>()) {
            let wide = u128::from(a) + u128::from(b);
            let got = Cost::from_micros(a).checked_add(Cost::from_micros(b));
            prop_assert_eq!(got.map(Cost::as_micros).map(u128::from), (wide <= u128::from(u64::MAX)).then_some(wide));
            let t = Tokens::new(a).checked_add(Tokens::new(b));
            prop_assert_eq!(t.map(Tokens::get).map(u128::from), (wide <= u128::from(u64::MAX)).then_some(wide));
        }

        #[test]
        fn sub_then_add_is_identity(a in any::<u64>(), b in any::<u64>()) {
            let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
            let d = Cost::from_micros(hi).checked_sub(Cost::from_micros(lo)).unwrap();
            prop_assert_eq!(d.checked_add(Cost::from_micros(lo)), Some(Cost::from_micros(hi)));
            prop_assert_eq!(Cost::from_micros(lo).checked_sub(Cost::from_micros(hi)).is_none(), lo < hi);
            prop_assert_eq!(Cost::from_micros(lo).saturating_sub(Cost::from_micros(hi)), Cost::from_micros(lo.saturating_sub(hi)));
        }

        #[test]
        fn price_is_monotone_and_never_undercharges(p in 0u64..100_000_000_000, t1 in 0u64..1_000_000_000, t2 in 0u64..1_000_000_000) {
            let price = Price::from_micros_per_million(p);
            let (lo, hi) = if t1 <= t2 { (t1, t2) } else { (t2, t1) };
            let c_lo = price.cost_of(Tokens::new(lo)).unwrap();
            let c_hi = price.cost_of(Tokens::new(hi)).unwrap();
            prop_assert!(c_lo <= c_hi);
            // Never less than exact, never a full micro-unit more.
            let exact = u128::from(p) * u128::from(hi);
            let billed = u128::from(c_hi.as_micros()) * 1_000_000;
            prop_assert!(billed >= exact && billed - exact < 1_000_000);
        }

        #[test]
        fn checked_sum_detects_overflow(xs in proptest::collection::vec(any::<u64>(), 0..8)) {
            let wide: u128 = xs.iter().map(|&x| u128::from(x)).sum();
            let got = Cost::checked_sum(xs.iter().copied().map(Cost::from_micros));
            prop_assert_eq!(got.is_some(), wide <= u128::from(u64::MAX));
            let sat: Cost = xs.iter().copied().map(Cost::from_micros).sum();
            prop_assert_eq!(u128::from(sat.as_micros()), wide.min(u128::from(u64::MAX)));
        }
    }
}
