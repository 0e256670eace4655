//! Redaction of secrets at capture time: by field name, inside captured text,
//! and inside structured JSON data.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::Metadata;
use tracing::callsite::Identifier;
use tracing::field::Field;

use crate::config::RedactionConfig;

/// One entry of the per-thread callsite cache: which fields of a callsite
/// (by index, the first 64) are secrets under one compiled redactor, and
/// which need more than plain capture (secrets and the special fields).
#[derive(Clone, Copy)]
struct CacheEntry {
    /// Address of the callsite's `&'static Metadata` (0: empty).
    callsite: usize,
    generation: u64,
    sensitive: u64,
    flagged: u64,
}

const EMPTY: CacheEntry = CacheEntry {
    callsite: 0,
    generation: 0,
    sensitive: 0,
    flagged: 0,
};

/// Sets of the two-way set-associative cache (256 callsites per thread).
const CACHE_SETS: usize = 128;

thread_local! {
    /// Per-thread answers keyed by callsite identity and redactor
    /// generation: name matching runs once per callsite, not per field.
    static CALLSITE_CACHE: [[Cell<CacheEntry>; 2]; CACHE_SETS] =
        const { [const { [const { Cell::new(EMPTY) }, const { Cell::new(EMPTY) }] }; CACHE_SETS] };
}

/// Which fields of one callsite are secrets: a bit per field index, answered
/// from [`Redactor::callsite_mask`].
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldMask {
    callsite: Option<Identifier>,
    sensitive: u64,
    /// Secrets and fields whose name
    /// [`is_special_field`](crate::capture::is_special_field): the fields
    /// that are not plain.
    flagged: u64,
}

// === impl FieldMask ===

impl FieldMask {
    /// Whether `field` is known, from its callsite's masks, to be neither a
    /// secret nor a special field (so its value is captured as is, apart from
    /// text scrubbing and truncation). `false` when unknown.
    #[inline(always)]
    pub(crate) fn is_plain(&self, field: &Field) -> bool {
        let i = field.index();
        i < 64 && self.flagged & (1 << i) == 0 && self.callsite.as_ref() == Some(&field.callsite())
    }
}

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

const DEFAULT_PATTERNS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "credential",
    "credentials",
    "private_key",
    "access_key",
    "session_token",
    "bearer",
];

/// The compiled form of a [`RedactionConfig`].
#[derive(Debug, Clone)]
pub(crate) struct Redactor {
    enabled: bool,
    /// Unique per compiled redactor, so cached answers of an older
    /// configuration are never reused.
    generation: u64,
    /// Each pattern as a sequence of lowercase words.
    patterns: Vec<Vec<String>>,
    /// Lowercase value prefixes.
    value_prefixes: Vec<String>,
}

/// Splits a name into words at non-alphanumeric characters and at camelCase
/// boundaries (`xApiKey` → `x`, `Api`, `Key`).
pub(crate) fn words(name: &str) -> impl Iterator<Item = &str> {
    let bytes = name.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && !bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        let start = i;
        i += 1;
        while i < bytes.len()
            && bytes[i].is_ascii_alphanumeric()
            && !(bytes[i].is_ascii_uppercase() && bytes[i - 1].is_ascii_lowercase())
        {
            i += 1;
        }
        // All split points are ASCII, so they are char boundaries.
        name.get(start..i)
    })
}

// === impl Redactor ===

impl Redactor {
    pub(crate) fn new(config: &RedactionConfig) -> Self {
        let defaults: &[&str] = if config.default_patterns {
            DEFAULT_PATTERNS
        } else {
            &[]
        };
        let defaults = defaults.iter().copied();
        let patterns = defaults
            .chain(config.field_patterns.iter().map(String::as_str))
            .map(|p| words(p).map(str::to_ascii_lowercase).collect::<Vec<_>>())
            .filter(|w| !w.is_empty())
            .collect();
        static GENERATION: AtomicU64 = AtomicU64::new(1);
        Self {
            enabled: config.enabled,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            patterns,
            value_prefixes: config
                .value_prefixes
                .iter()
                .map(|p| p.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The sensitive (and special) fields of the callsite `meta`, from a
    /// per-thread cache keyed by the callsite's identity.
    #[inline]
    pub(crate) fn callsite_mask(&self, meta: &'static Metadata<'static>) -> FieldMask {
        let key = std::ptr::from_ref(meta).addr();
        // Fibonacci hashing of the address picks the set (top 7 bits).
        let h = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57;
        let set = (h as usize) % CACHE_SETS;
        let hit = CALLSITE_CACHE.with(|c| {
            let ways = &c[set];
            let e = ways[0].get();
            if e.callsite == key && e.generation == self.generation {
                return Some(e);
            }
            let e = ways[1].get();
            (e.callsite == key && e.generation == self.generation).then_some(e)
        });
        let e = match hit {
            Some(e) => e,
            None => self.fill_cache(meta, key, set),
        };
        FieldMask {
            callsite: Some(meta.callsite()),
            sensitive: e.sensitive,
            flagged: e.flagged,
        }
    }

    /// Computes the masks of a callsite missing from the cache and caches
    /// them.
    #[cold]
    #[inline(never)]
    fn fill_cache(&self, meta: &'static Metadata<'static>, key: usize, set: usize) -> CacheEntry {
        let mut e = CacheEntry {
            callsite: key,
            generation: self.generation,
            sensitive: 0,
            flagged: 0,
        };
        for f in meta.fields().iter().filter(|f| f.index() < 64) {
            let bit = 1 << f.index();
            if self.is_sensitive_name(f.name()) {
                e.sensitive |= bit;
                e.flagged |= bit;
            }
            if crate::capture::is_special_field(f.name()) {
                e.flagged |= bit;
            }
        }
        CALLSITE_CACHE.with(|c| {
            // The most recent entry goes to way 0; way 0 moves to way 1.
            let ways = &c[set];
            ways[1].set(ways[0].get());
            ways[0].set(e);
        });
        e
    }

    /// Whether `field` must be redacted: from `mask` when the field belongs
    /// to its callsite, by name otherwise.
    pub(crate) fn is_sensitive_field(&self, mask: &FieldMask, field: &Field) -> bool {
        if !self.enabled {
            return false;
        }
        if field.index() < 64 && mask.callsite.as_ref() == Some(&field.callsite()) {
            return mask.sensitive & (1 << field.index()) != 0;
        }
        self.is_sensitive_name(field.name())
    }

    /// Whether a field with this name must be redacted.
    pub(crate) fn is_sensitive_name(&self, name: &str) -> bool {
        if !self.enabled {
            return false;
        }
        let mut buf: [&str; 24] = [""; 24];
        let mut n = 0;
        for w in words(name) {
            if n == buf.len() {
                break;
            }
            buf[n] = w;
            n += 1;
        }
        let ws = &buf[..n];
        self.patterns.iter().any(|p| {
            ws.windows(p.len())
                .any(|win| win.iter().zip(p).all(|(a, b)| a.eq_ignore_ascii_case(b)))
        })
    }

    /// Whether a value must be replaced whole because of its prefix.
    fn has_secret_prefix(&self, s: &str) -> bool {
        if self.value_prefixes.is_empty() {
            return false;
        }
        let t = s.trim_start().as_bytes();
        self.value_prefixes
            .iter()
            .any(|p| t.len() >= p.len() && t[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
    }

    /// Whether [`scrub_text`](Self::scrub_text) is sure to leave `s` as it
    /// is: redaction is off, or no value prefix is configured and `s` holds
    /// nothing a secret span starts at ([`may_hold_secret`]). One pass over
    /// `s`.
    #[inline(always)]
    pub(crate) fn leaves(&self, s: &str) -> bool {
        !self.enabled || (self.value_prefixes.is_empty() && !may_hold_secret(s.as_bytes()))
    }

    /// Redacts secrets inside free text. Returns `None` when nothing changed.
    #[inline]
    pub(crate) fn scrub_text(&self, s: &str) -> Option<String> {
        if self.leaves(s) {
            return None;
        }
        self.scrub_text_full(s)
    }

    /// [`scrub_text`](Self::scrub_text) without the fast path.
    #[inline(never)]
    fn scrub_text_full(&self, s: &str) -> Option<String> {
        if !self.enabled {
            return None;
        }
        if self.has_secret_prefix(s) {
            return Some(REDACTED.to_owned());
        }
        // Cheap pre-check: every pattern we rewrite needs a separator.
        if !has_separator(s.as_bytes()) {
            return None;
        }
        let spans = self.secret_spans(s);
        if spans.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for (start, end) in spans {
            out.push_str(s.get(last..start).unwrap_or_default());
            out.push_str(REDACTED);
            last = end;
        }
        out.push_str(s.get(last..).unwrap_or_default());
        Some(out)
    }

    /// Byte ranges of secret values in `s`, in order and non-overlapping.
    fn secret_spans(&self, s: &str) -> Vec<(usize, usize)> {
        let b = s.as_bytes();
        let mut spans = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if !is_key_byte(b[i]) {
                i += 1;
                continue;
            }
            let key_start = i;
            while i < b.len() && is_key_byte(b[i]) {
                i += 1;
            }
            let key = s.get(key_start..i).unwrap_or_default();
            let scheme = key.eq_ignore_ascii_case("bearer") || key.eq_ignore_ascii_case("basic");
            // After the key: optional closing quote, spaces, then `:` or `=`.
            let mut j = i;
            if j < b.len() && matches!(b[j], b'"' | b'\'') {
                j += 1;
            }
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            let value_start = if j < b.len() && matches!(b[j], b':' | b'=') {
                j += 1;
                while j < b.len() && b[j] == b' ' {
                    j += 1;
                }
                if self.is_sensitive_name(key) {
                    Some(j)
                } else {
                    None
                }
            } else if scheme && i < b.len() && b[i] == b' ' {
                // `Bearer abc...` anywhere in text.
                let mut k = i;
                while k < b.len() && b[k] == b' ' {
                    k += 1;
                }
                Some(k)
            } else {
                None
            };
            let Some(vs) = value_start else {
                continue;
            };
            let end = value_end(b, vs);
            if end > vs {
                // Keep the quotes of a quoted value, redact what is inside.
                let quoted = matches!(b[vs], b'"' | b'\'');
                let (rs, re) = if quoted && end - vs >= 2 {
                    (vs + 1, end - 1)
                } else {
                    (vs, end)
                };
                if spans.last().is_none_or(|&(_, e)| rs >= e) {
                    spans.push((rs, re));
                }
            }
            i = end.max(i);
        }
        spans
    }

    /// Redacts secrets in JSON data: values under sensitive keys, and
    /// secrets inside strings.
    pub(crate) fn scrub_json(&self, v: &mut serde_json::Value) {
        if !self.enabled {
            return;
        }
        match v {
            serde_json::Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    if self.is_sensitive_name(k) {
                        *val = serde_json::Value::String(REDACTED.to_owned());
                    } else {
                        self.scrub_json(val);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| self.scrub_json(i)),
            serde_json::Value::String(s) => {
                if let Some(clean) = self.scrub_text(s) {
                    *s = clean;
                }
            }
            _ => {}
        }
    }
}

/// Whether [`Redactor::secret_spans`] may find a secret in `b`: it holds `:`
/// or `=` (a `key: value` or `key=value` pair), or a space right after
/// `bearer` or `basic` (an auth scheme before its credential). Every span
/// starts at one of these, so `false` means there is none.
#[inline(always)]
fn may_hold_secret(b: &[u8]) -> bool {
    // Most values hold no separator at all: one pass decides.
    has_separator(b) && may_hold_secret_slow(b)
}

/// [`may_hold_secret`] for text holding a separator.
#[inline(never)]
fn may_hold_secret_slow(b: &[u8]) -> bool {
    match separators(b) {
        0 => false,
        SPACE => scheme_before_space(b),
        _ => true,
    }
}

/// Whether `b` holds `:`, `=` or a space, eight bytes at a time: a short
/// slice is read as one or two overlapping words, so no byte loop runs.
#[inline(always)]
fn has_separator(b: &[u8]) -> bool {
    let n = b.len();
    let found = if n > 16 {
        return separators_long(b) != 0;
    } else if n >= 8 {
        // Two overlapping words cover 8 to 16 bytes.
        separator_bits(word8(b, 0)) | separator_bits(word8(b, n - 8))
    } else if n >= 4 {
        // Two overlapping 4-byte words cover 4 to 7 bytes.
        separator_bits(u64::from(word4(b, 0)) | (u64::from(word4(b, n - 4)) << 32))
    } else if n > 0 {
        // The first, middle and last byte cover 1 to 3 bytes; zero bytes are
        // no separator.
        separator_bits(u64::from(b[0]) | (u64::from(b[n / 2]) << 8) | (u64::from(b[n - 1]) << 16))
    } else {
        0
    };
    found != 0
}

/// [`separators`] bit: `b` holds `:` or `=`.
const KEY_VALUE: u8 = 1;
/// [`separators`] bit: `b` holds a space.
const SPACE: u8 = 2;

/// Which separators `b` holds ([`KEY_VALUE`], [`SPACE`]), eight bytes at a
/// time, as [`has_separator`] reads them.
fn separators(b: &[u8]) -> u8 {
    let n = b.len();
    let (kv, space) = if n > 16 {
        return separators_long(b);
    } else if n >= 8 {
        // Two overlapping words cover 8 to 16 bytes.
        let (w0, w1) = (word8(b, 0), word8(b, n - 8));
        (
            key_value_bits(w0) | key_value_bits(w1),
            space_bits(w0) | space_bits(w1),
        )
    } else if n >= 4 {
        // Two overlapping 4-byte words cover 4 to 7 bytes.
        let w = u64::from(word4(b, 0)) | (u64::from(word4(b, n - 4)) << 32);
        (key_value_bits(w), space_bits(w))
    } else if n > 0 {
        // The first, middle and last byte cover 1 to 3 bytes; zero bytes are
        // no separator.
        let w = u64::from(b[0]) | (u64::from(b[n / 2]) << 8) | (u64::from(b[n - 1]) << 16);
        (key_value_bits(w), space_bits(w))
    } else {
        (0, 0)
    };
    (u8::from(kv != 0) * KEY_VALUE) | (u8::from(space != 0) * SPACE)
}

/// [`separators`] for more than 16 bytes.
#[inline(never)]
fn separators_long(b: &[u8]) -> u8 {
    let n = b.len();
    let mut space = 0;
    let mut i = 0;
    while i + 8 <= n {
        let w = word8(b, i);
        if key_value_bits(w) != 0 {
            return KEY_VALUE;
        }
        space |= space_bits(w);
        i += 8;
    }
    if i != n && n >= 8 {
        // The last bytes, as the (overlapping) last word.
        let w = word8(b, n - 8);
        if key_value_bits(w) != 0 {
            return KEY_VALUE;
        }
        space |= space_bits(w);
    }
    u8::from(space != 0) * SPACE
}

/// Whether a space in `b` follows `bearer` or `basic` (any case).
#[inline(never)]
fn scheme_before_space(b: &[u8]) -> bool {
    (5..b.len()).any(|p| {
        b[p] == b' '
            && matches!(b[p - 1] | 0x20, b'r' | b'c')
            && ((p >= 6 && b[p - 6..p].eq_ignore_ascii_case(b"bearer"))
                || b[p - 5..p].eq_ignore_ascii_case(b"basic"))
    })
}

/// The eight bytes of `b` at `i` as a little-endian word.
#[inline(always)]
fn word8(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// The four bytes of `b` at `i` as a little-endian word.
#[inline(always)]
fn word4(b: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(w)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Per byte of `w`: the high bit set where the byte is `c` (whether any is
/// set is exact; only positions above the first match can be wrong).
#[inline(always)]
fn eq_bits(w: u64, c: u8) -> u64 {
    // A zero byte of `x` borrows into its high bit; `!w` excludes bytes with
    // the high bit set, which are never ASCII.
    let x = w ^ (ONES * u64::from(c));
    x.wrapping_sub(ONES) & !x & !w & HIGH
}

/// Non-zero when a byte of `w` is `:` or `=`.
#[inline(always)]
fn key_value_bits(w: u64) -> u64 {
    eq_bits(w, b':') | eq_bits(w, b'=')
}

/// Non-zero when a byte of `w` is `:`, `=` or a space.
#[inline(always)]
fn separator_bits(w: u64) -> u64 {
    key_value_bits(w) | space_bits(w)
}

/// Non-zero when a byte of `w` is a space.
#[inline(always)]
fn space_bits(w: u64) -> u64 {
    eq_bits(w, b' ')
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Where a value starting at `start` ends: the closing quote of a quoted
/// value; for an unquoted one, the next delimiter, letting an auth scheme
/// (`Bearer xyz`) run through its credential.
fn value_end(b: &[u8], start: usize) -> usize {
    if start >= b.len() {
        return start;
    }
    let q = b[start];
    if matches!(q, b'"' | b'\'') {
        let mut k = start + 1;
        while k < b.len() {
            if b[k] == b'\\' {
                k += 2;
                continue;
            }
            if b[k] == q {
                return k + 1;
            }
            k += 1;
        }
        return b.len();
    }
    let delim = |c: u8| {
        matches!(
            c,
            b',' | b';' | b'}' | b')' | b']' | b'&' | b'\n' | b' ' | b'"'
        )
    };
    let mut k = start;
    while k < b.len() && !delim(b[k]) {
        k += 1;
    }
    let word = &b[start..k];
    if (word.eq_ignore_ascii_case(b"bearer") || word.eq_ignore_ascii_case(b"basic"))
        && k < b.len()
        && b[k] == b' '
    {
        k += 1;
        while k < b.len() && !delim(b[k]) {
            k += 1;
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn redactor() -> Redactor {
        Redactor::new(&RedactionConfig::default().with_field_pattern("ssn"))
    }

    #[test]
    fn names_match_whole_words() {
        let r = redactor();
        for name in [
            "api_key",
            "x-api-key",
            "apiKey",
            "openai.api_key",
            "password",
            "Authorization",
            "access_token",
            "client_secret",
            "user.ssn",
        ] {
            assert!(r.is_sensitive_name(name), "{name}");
        }
        for name in [
            "gen_ai.usage.input_tokens",
            "max_tokens",
            "model",
            "prompt",
            "keyboard",
            "author",
        ] {
            assert!(!r.is_sensitive_name(name), "{name}");
        }
    }

    #[test]
    fn text_pairs_are_redacted() {
        let r = redactor();
        let s = r#"Request { model: "gpt", api_key: "sk-live-123", n: 1 }"#;
        let out = r.scrub_text(s).unwrap();
        assert_eq!(
            out,
            r#"Request { model: "gpt", api_key: "[REDACTED]", n: 1 }"#
        );

        let out = r.scrub_text("Authorization: Bearer abc.def ok").unwrap();
        assert_eq!(out, "Authorization: [REDACTED] ok");
        let out = r.scrub_text("calling with bearer xyz123").unwrap();
        assert_eq!(out, "calling with bearer [REDACTED]");
        let out = r.scrub_text("url?token=abc&x=1").unwrap();
        assert_eq!(out, "url?token=[REDACTED]&x=1");
        let out = r
            .scrub_text(r#"{"password":"hunter2","user":"bob"}"#)
            .unwrap();
        assert_eq!(out, r#"{"password":"[REDACTED]","user":"bob"}"#);
        assert_eq!(r.scrub_text("input_tokens: 12"), None);
        assert_eq!(r.scrub_text("plain"), None);
    }

    #[test]
    fn separator_check_matches_the_bytewise_one() {
        let naive = |s: &[u8]| s.iter().any(|&c| matches!(c, b':' | b'=' | b' '));
        let samples: [&[u8]; 8] = [
            b"gpt-4o-mini",
            b"gpt-4o-mini:x",
            b"abcdefgh=",
            b"abcdefghijklmnop qr",
            "h\u{e9}llo w\u{f6}rld".as_bytes(),
            &[0xBA, 0xBD, 0xA0, 0x3A - 1, 0x3D + 1, 0x21, 0x7F, 0xFF, 0x9A],
            b"",
            b"0123456789abcdef:",
        ];
        for s in samples {
            assert_eq!(has_separator(s), naive(s), "{s:?}");
        }
        for b in 0..=255u8 {
            let s = [b'a', b'b', b'c', b'd', b'e', b'f', b'g', b];
            assert_eq!(has_separator(&s), naive(&s), "{b}");
        }
    }

    #[test]
    fn value_prefixes_redact_whole_value() {
        let r = Redactor::new(&RedactionConfig::default().with_value_prefix("sk-"));
        assert_eq!(r.scrub_text("SK-abc").as_deref(), Some(REDACTED));
        assert_eq!(r.scrub_text("skate"), None);
    }

    #[test]
    fn disabled_redacts_nothing() {
        let r = Redactor::new(&RedactionConfig {
            enabled: false,
            ..RedactionConfig::default()
        });
        assert!(!r.is_sensitive_name("password"));
        assert_eq!(r.scrub_text("password=x"), None);
    }

    #[test]
    fn json_is_scrubbed_recursively() {
        let r = redactor();
        let mut v = serde_json::json!({
            "headers": {"Authorization": "Bearer abc", "accept": "json"},
            "items": [{"token": "t"}, "password=p"],
        });
        r.scrub_json(&mut v);
        let s = v.to_string();
        assert!(
            !s.contains("abc") && !s.contains("\"t\"") && !s.contains("=p"),
            "{s}"
        );
        assert!(s.contains("json"));
    }

    #[test]
    fn plain_text_is_left_without_a_full_scan() {
        let r = redactor();
        for s in [
            "gpt-4o-mini",
            "step 5 finished",
            "a b c",
            "",
            "no scheme here",
        ] {
            assert!(r.leaves(s), "{s}");
        }
        for s in [
            "calling with bearer xyz123",
            "Basic dXNlcjpwYXNz",
            "x BEARER y",
            "token=abc",
            "password: b",
        ] {
            assert!(!r.leaves(s), "{s}");
            assert!(r.scrub_text(s).is_some(), "{s}");
        }
        assert!(!r.leaves("abasic x"));
        assert_eq!(r.scrub_text("abasic x"), None);
    }

    #[test]
    fn separator_check_covers_every_length_and_position() {
        let naive = |s: &[u8]| s.iter().any(|&c| matches!(c, b':' | b'=' | b' '));
        for n in 0..=40 {
            let plain: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(!has_separator(&plain), "{n}");
            for at in 0..n {
                for c in [b':', b'=', b' ', 0x3B, 0x1F, 0xBA, 0xA0] {
                    let mut s = plain.clone();
                    s[at] = c;
                    assert_eq!(has_separator(&s), naive(&s), "{s:?}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn separator_check_matches_bytewise_on_random_bytes(
            s in prop::collection::vec(any::<u8>(), 0..48),
        ) {
            let naive = s.iter().any(|&c| matches!(c, b':' | b'=' | b' '));
            prop_assert_eq!(has_separator(&s), naive);
            let kv = s.iter().any(|&c| matches!(c, b':' | b'='));
            let space = s.contains(&b' ');
            let want = (u8::from(kv) * KEY_VALUE) | (u8::from(space) * SPACE);
            // A key-value separator in a long slice ends the scan early.
            if s.len() > 16 && kv {
                prop_assert!(separators(&s) & KEY_VALUE != 0);
            } else {
                prop_assert_eq!(separators(&s), want);
            }
        }

        // The fast path of `scrub_text` never changes its answer, and only
        // claims text it would leave as is.
        #[test]
        fn scrub_fast_path_agrees_with_full_scrub(
            parts in prop::collection::vec(
                prop::sample::select(vec![
                    "api_key", "token", "Bearer ", "basic", "password", "sk-", "SK-",
                    "gpt-4o-mini", "x", ":", "=", " ", "\"", "'", ",", "é", "\t", "abc123",
                    "bearer", "BASIC", "xbasic", "Bearer", "r ", "c ", "step done",
                ]),
                0..10,
            ),
            tail in "[ -~]{0,12}",
        ) {
            let text = format!("{}{tail}", parts.concat());
            for r in [
                redactor(),
                Redactor::new(&RedactionConfig::default().with_value_prefix("sk-")),
                Redactor::new(&RedactionConfig { enabled: false, ..RedactionConfig::default() }),
            ] {
                let full = r.scrub_text_full(&text);
                prop_assert_eq!(r.scrub_text(&text), full.clone(), "{}", text);
                if r.leaves(&text) {
                    prop_assert!(full.is_none(), "{}", text);
                }
            }
        }

        // A secret assigned to a sensitive key never survives, whatever
        // surrounds it.
        #[test]
        fn secret_never_survives(
            prefix in "([a-z]{0,8}[ ,{])?",
            key in prop::sample::select(vec!["api_key", "password", "token", "Authorization", "secret"]),
            sep in prop::sample::select(vec![": ", "=", " = ", "\": \""]),
            secret in "[A-Za-z0-9]{8,20}",
            suffix in "[a-z ,}]{0,12}",
        ) {
            let text = format!("{prefix}{key}{sep}{secret}{suffix}");
            let r = redactor();
            let out = r.scrub_text(&text).unwrap_or(text.clone());
            prop_assert!(!out.contains(&secret), "{} -> {}", text, out);
        }
    }
}
