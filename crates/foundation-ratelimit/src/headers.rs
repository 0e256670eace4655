//! Parsing providers' rate-limit response headers.
//!
//! Understood:
//!
//! - OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets
//!   as Go-style durations (`6m0s`, `1s`, `20ms`, `1h2m3.5s`);
//! - Anthropic: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`,
//!   resets as RFC 3339 instants;
//! - `retry-after` (seconds or an HTTP date, relative to the response's `date`
//!   header when present) and `retry-after-ms` (preferred when both are sent).
//!
//! Dimension names are `requests`, `tokens`, `input_tokens` and
//! `output_tokens`; a limiter whose dimensions use these names takes the
//! feedback directly through [`RateLimiter::observe`](crate::RateLimiter::observe).
//!
//! Parsing never fails and never panics: a malformed value (empty, not a
//! number, negative, overflowing, a `-1` "unknown" sentinel, a bad date) is
//! skipped with a `debug` event and the rest of the headers still count.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use foundation_ratelimit::headers::RateLimitInfo;
//!
//! let info = RateLimitInfo::parse(
//!     [
//!         ("x-ratelimit-limit-tokens", "30000"),
//!         ("x-ratelimit-remaining-tokens", "0"),
//!         ("x-ratelimit-reset-tokens", "19.5s"),
//!         ("retry-after", "20"),
//!     ],
//!     SystemTime::now(),
//! );
//! let tokens = info.dimension("tokens").unwrap();
//! assert_eq!(tokens.remaining, Some(0));
//! assert_eq!(tokens.reset_after(SystemTime::now()), Some(Duration::from_millis(19_500)));
//! assert_eq!(info.retry_after, Some(Duration::from_secs(20)));
//! ```

use std::time::{Duration, SystemTime};

/// When a dimension resets to full, as the server said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// After this long from the response (OpenAI).
    After(Duration),
    /// At this instant (Anthropic).
    At(SystemTime),
}

/// What the server said about one dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DimensionInfo {
    /// `requests`, `tokens`, `input_tokens` or `output_tokens`.
    pub name: &'static str,
    /// The server's limit.
    pub limit: Option<u64>,
    /// What the server says remains.
    pub remaining: Option<u64>,
    /// When it is full again.
    pub reset: Option<Reset>,
}

// === impl DimensionInfo ===

impl DimensionInfo {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            limit: None,
            remaining: None,
            reset: None,
        }
    }

    /// The reset as a duration from `now` (zero if already past).
    #[must_use]
    pub fn reset_after(&self, now: SystemTime) -> Option<Duration> {
        match self.reset? {
            Reset::After(d) => Some(d),
            Reset::At(t) => Some(t.duration_since(now).unwrap_or(Duration::ZERO)),
        }
    }
}

/// Everything understood from one response's headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RateLimitInfo {
    /// Per-dimension information, one entry per dimension mentioned.
    pub dimensions: Vec<DimensionInfo>,
    /// How long to wait before retrying, from `retry-after-ms` or `retry-after`.
    pub retry_after: Option<Duration>,
    /// The response's `date` header, when present and valid.
    pub date: Option<SystemTime>,
}

const DIMENSIONS: [(&str, &str); 4] = [
    ("requests", "requests"),
    ("tokens", "tokens"),
    ("input-tokens", "input_tokens"),
    ("output-tokens", "output_tokens"),
];

#[derive(Clone, Copy)]
enum Field {
    Limit,
    Remaining,
    Reset,
}

// === impl RateLimitInfo ===

impl RateLimitInfo {
    /// Parses response headers given as `(name, value)` pairs (an
    /// `http::HeaderMap`'s `iter()` fits). `now` stands in for the response
    /// time when there is no valid `date` header; relative forms (HTTP-date
    /// `retry-after`) are measured from the `date` header when present.
    pub fn parse<K, V>(headers: impl IntoIterator<Item = (K, V)>, now: SystemTime) -> Self
    where
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let mut info = Self::default();
        let mut retry_after_s: Option<RetryAfter> = None;
        let mut retry_after_ms: Option<Duration> = None;
        for (name, value) in headers {
            let name = name.as_ref().to_ascii_lowercase();
            let Ok(value) = std::str::from_utf8(value.as_ref()) else {
                tracing::debug!(header = %name, "ignoring non-UTF-8 rate-limit header");
                continue;
            };
            let value = value.trim();
            match name.as_str() {
                "date" => info.date = httpdate::parse_http_date(value).ok(),
                "retry-after" => {
                    retry_after_s = parse_retry_after(value).or_else(|| ignored(&name, value))
                }
                "retry-after-ms" => {
                    retry_after_ms = parse_millis(value).or_else(|| ignored(&name, value))
                }
                _ => info.parse_dimension_header(&name, value),
            }
        }
        let base = info.date.unwrap_or(now);
        info.retry_after = retry_after_ms.or(match retry_after_s {
            Some(RetryAfter::Delay(d)) => Some(d),
            Some(RetryAfter::At(t)) => Some(t.duration_since(base).unwrap_or(Duration::ZERO)),
            None => None,
        });
        info
    }

    fn parse_dimension_header(&mut self, name: &str, value: &str) {
        let parsed = if let Some(rest) = name.strip_prefix("x-ratelimit-") {
            split_field(rest, true).map(|(field, dim)| self.set(dim, field, value, Flavor::OpenAi))
        } else if let Some(rest) = name.strip_prefix("anthropic-ratelimit-") {
            split_field(rest, false)
                .map(|(field, dim)| self.set(dim, field, value, Flavor::Anthropic))
        } else {
            None
        };
        if parsed == Some(false) {
            tracing::debug!(header = %name, value = %value, "ignoring malformed rate-limit header");
        }
    }

    fn entry(&mut self, dim: &'static str) -> &mut DimensionInfo {
        let pos = match self.dimensions.iter().position(|d| d.name == dim) {
            Some(p) => p,
            None => {
                self.dimensions.push(DimensionInfo::new(dim));
                self.dimensions.len() - 1
            }
        };
        &mut self.dimensions[pos]
    }

    fn set(&mut self, dim: &'static str, field: Field, value: &str, flavor: Flavor) -> bool {
        match field {
            Field::Limit | Field::Remaining => {
                let Some(n) = parse_count(value) else {
                    return false;
                };
                let e = self.entry(dim);
                match field {
                    Field::Limit => e.limit = Some(n),
                    _ => e.remaining = Some(n),
                }
            }
            Field::Reset => {
                let reset = match flavor {
                    Flavor::OpenAi => parse_go_duration(value).map(Reset::After),
                    Flavor::Anthropic => humantime::parse_rfc3339_weak(value).ok().map(Reset::At),
                };
                let Some(reset) = reset else { return false };
                self.entry(dim).reset = Some(reset);
            }
        }
        true
    }

    /// The information about dimension `name`, if the server sent any.
    #[must_use]
    pub fn dimension(&self, name: &str) -> Option<&DimensionInfo> {
        self.dimensions.iter().find(|d| d.name == name)
    }

    /// Whether nothing useful was found.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.dimensions.is_empty() && self.retry_after.is_none()
    }
}

#[derive(Clone, Copy)]
enum Flavor {
    OpenAi,
    Anthropic,
}

enum RetryAfter {
    Delay(Duration),
    At(SystemTime),
}

fn ignored<T>(name: &str, value: &str) -> Option<T> {
    tracing::debug!(header = %name, value = %value, "ignoring malformed rate-limit header");
    None
}

/// `limit-requests` (OpenAI order) or `requests-limit` (Anthropic order).
fn split_field(rest: &str, field_first: bool) -> Option<(Field, &'static str)> {
    let fields = [
        ("limit", Field::Limit),
        ("remaining", Field::Remaining),
        ("reset", Field::Reset),
    ];
    for (fname, field) in fields {
        for (hname, dim) in DIMENSIONS {
            let matches = if field_first {
                rest.strip_prefix(fname).and_then(|r| r.strip_prefix('-')) == Some(hname)
            } else {
                rest.strip_suffix(fname).and_then(|r| r.strip_suffix('-')) == Some(hname)
            };
            if matches {
                return Some((field, dim));
            }
        }
    }
    None
}

/// A non-negative integer count; `-1` (unknown) and anything else malformed is `None`.
fn parse_count(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn parse_millis(v: &str) -> Option<Duration> {
    parse_decimal_nanos(v, 1_000_000).map(Duration::from_nanos)
}

fn parse_retry_after(v: &str) -> Option<RetryAfter> {
    if let Some(n) = parse_decimal_nanos(v, 1_000_000_000) {
        return Some(RetryAfter::Delay(Duration::from_nanos(n)));
    }
    httpdate::parse_http_date(v).ok().map(RetryAfter::At)
}

/// A non-negative decimal (`12`, `1.5`) times `scale` nanoseconds, checked.
fn parse_decimal_nanos(v: &str, scale: u64) -> Option<u64> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = int.parse().ok()?;
    let mut nanos = whole.checked_mul(scale)?;
    let mut unit = scale;
    for b in frac.bytes() {
        unit /= 10;
        if unit == 0 {
            break;
        }
        nanos = nanos.checked_add(u64::from(b - b'0') * unit)?;
    }
    Some(nanos)
}

/// A Go `time.Duration` string: `0`, or a sequence of `<decimal><unit>` with
/// units `h`, `m`, `s`, `ms`, `us`/`µs`, `ns` (`6m0s`, `1h2m3.5s`, `20ms`).
pub fn parse_go_duration(v: &str) -> Option<Duration> {
    if v == "0" {
        return Some(Duration::ZERO);
    }
    if v.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = v;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_len == 0 {
            return None;
        }
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale: u64 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" | "μs" => 1_000,
            "ns" => 1,
            _ => return None,
        };
        total = total.checked_add(parse_decimal_nanos(num, scale)?)?;
        rest = next;
    }
    Some(Duration::from_nanos(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Some(Duration::from_millis(3_723_500))
        );
        assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(
            parse_go_duration("19.5s"),
            Some(Duration::from_millis(19_500))
        );
        for bad in ["", "5x", "s", "1.2.3s", "-1s", "1", "99999999999999999999h"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn counts_reject_sentinels_and_overflow() {
        assert_eq!(parse_count("-1"), None);
        assert_eq!(parse_count("99999999999999999999999"), None);
        assert_eq!(parse_count(""), None);
        assert_eq!(parse_count("42"), Some(42));
    }

    #[test]
    fn retry_after_ms_wins() {
        let info = RateLimitInfo::parse(
            [("Retry-After", "2"), ("retry-after-ms", "1500")],
            SystemTime::now(),
        );
        assert_eq!(info.retry_after, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn usage_based_variants_are_not_confused() {
        let info = RateLimitInfo::parse(
            [
                ("x-ratelimit-limit-tokens_usage_based", "5"),
                ("x-ratelimit-limit-tokens", "7"),
            ],
            SystemTime::now(),
        );
        assert_eq!(info.dimension("tokens").unwrap().limit, Some(7));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(name in "[a-zA-Z-]{0,40}", value in "\\PC{0,40}") {
            let _ = RateLimitInfo::parse([(name.as_str(), value.as_str())], SystemTime::UNIX_EPOCH);
            let _ = parse_go_duration(&value);
        }

        #[test]
        fn known_headers_with_arbitrary_values_never_panic(
            idx in 0usize..6, value in proptest::string::bytes_regex("(?s-u:.{0,24})").unwrap()
        ) {
            let names = ["x-ratelimit-reset-tokens", "x-ratelimit-remaining-requests", "retry-after",
                "retry-after-ms", "anthropic-ratelimit-tokens-reset", "date"];
            let _ = RateLimitInfo::parse([(names[idx], value.as_slice())], SystemTime::UNIX_EPOCH);
        }

        #[test]
        fn go_durations_round_trip(h in 0u64..100, m in 0u64..60, ms in 0u64..60_000) {
            let s = format!("{h}h{m}m{}.{:03}s", ms / 1000, ms % 1000);
            prop_assert_eq!(parse_go_duration(&s), Some(Duration::from_millis(h * 3_600_000 + m * 60_000 + ms)));
        }
    }
}
