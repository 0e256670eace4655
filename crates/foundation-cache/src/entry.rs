//! Stored entries, their metadata, the wire format and the cache's time base.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use foundation_core::{Cost, ErrorKind, SharedClock};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Metadata stored with every entry, in every tier.
///
/// Times are milliseconds since the Unix epoch on the cache's [`TimeBase`],
/// so shared tiers agree across processes and tests can drive them with
/// paused tokio time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The canonical scope text of the key the entry was stored under;
    /// checked on every read from a shared tier.
    pub scope: String,
    /// When the entry was computed.
    pub created_ms: u64,
    /// Until when the entry is fresh; after that it is served stale while a
    /// refresh runs (stale-while-revalidate).
    pub fresh_until_ms: u64,
    /// When the entry expires (`u64::MAX`: never).
    pub expires_ms: u64,
    /// Invalidation tags.
    pub tags: Vec<String>,
    /// What computing the value cost (money), as the loader reported it.
    pub cost_micros: u64,
    /// How long computing the value took.
    pub load_micros: u64,
}

// === impl Meta ===

impl Meta {
    /// Whether the entry has expired at `now_ms`.
    #[must_use]
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_ms
    }

    /// Whether the entry is past its freshness at `now_ms` (but maybe not expired).
    #[must_use]
    pub fn is_stale(&self, now_ms: u64) -> bool {
        now_ms >= self.fresh_until_ms
    }

    /// The time left before expiry at `now_ms` (`None`: never expires).
    #[must_use]
    pub fn remaining(&self, now_ms: u64) -> Option<Duration> {
        (self.expires_ms != u64::MAX)
            .then(|| Duration::from_millis(self.expires_ms.saturating_sub(now_ms)))
    }

    /// The money a hit on this entry saves.
    #[must_use]
    pub fn cost(&self) -> Cost {
        Cost::from_micros(self.cost_micros)
    }
}

/// What an entry holds: a value, or a cached failure (negative caching).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payload<V> {
    /// A computed value.
    Value(V),
    /// A failure remembered for `negative_ttl` (never written to shared tiers).
    Failure {
        /// The failure's message.
        message: String,
        /// Its classification name ([`ErrorKind::as_str`]).
        kind: String,
    },
}

/// One cache entry: payload plus metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry<V> {
    /// Metadata.
    pub meta: Meta,
    /// The payload.
    pub payload: Payload<V>,
}

// === impl Entry ===

impl<V> Entry<V> {
    /// The value, or the cached failure as an error.
    ///
    /// # Errors
    /// [`Error::CachedFailure`] for a negative entry.
    pub fn value(&self) -> Result<&V, Error> {
        match &self.payload {
            Payload::Value(v) => Ok(v),
            Payload::Failure { message, kind } => Err(Error::CachedFailure {
                message: Arc::from(message.as_str()),
                kind: kind_from_str(kind),
            }),
        }
    }
}

impl<V: Serialize> Entry<V> {
    /// Encodes the entry in the wire format: a version byte, then postcard.
    ///
    /// # Errors
    /// [`Error::Codec`] when the value cannot be serialized.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        postcard::to_extend(self, vec![FORMAT_VERSION]).map_err(|e| Error::Codec(e.to_string()))
    }
}

impl<V: DeserializeOwned> Entry<V> {
    /// Decodes an entry written by [`encode`](Self::encode).
    ///
    /// # Errors
    /// [`Error::Codec`] for an unknown format version or bad bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        match bytes.split_first() {
            Some((&FORMAT_VERSION, rest)) => {
                postcard::from_bytes(rest).map_err(|e| Error::Codec(e.to_string()))
            }
            Some((v, _)) => Err(Error::Codec(format!("unknown entry format version {v}"))),
            None => Err(Error::Codec("empty entry".into())),
        }
    }
}

/// The wire format version (first byte of every encoded entry).
pub const FORMAT_VERSION: u8 = 1;

pub(crate) fn kind_from_str(s: &str) -> ErrorKind {
    match s {
        "transient" => ErrorKind::Transient,
        "rate_limited" => ErrorKind::RateLimited { retry_after: None },
        "timeout" => ErrorKind::Timeout,
        "unavailable" => ErrorKind::Unavailable,
        "overloaded" => ErrorKind::Overloaded,
        "invalid_input" => ErrorKind::InvalidInput,
        "permanent" => ErrorKind::Permanent,
        "cancelled" => ErrorKind::Cancelled,
        _ => ErrorKind::Unclassified,
    }
}

/// The cache's notion of "now" in Unix milliseconds: wall-clock time at
/// construction plus the elapsed time of a [`Clock`](foundation_core::Clock).
///
/// With `TokioClock` (the default) paused-time tests drive expiry in every
/// tier; across processes the values agree to within clock skew.
#[derive(Debug, Clone)]
pub struct TimeBase {
    clock: SharedClock,
    origin: Instant,
    origin_ms: u64,
}

// === impl TimeBase ===

impl TimeBase {
    /// A time base on `clock`.
    #[must_use]
    pub fn new(clock: SharedClock) -> Self {
        let origin = clock.now();
        let origin_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self {
            clock,
            origin,
            origin_ms,
        }
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        let since = self.clock.now().saturating_duration_since(self.origin);
        // u64 arithmetic (no u128 division): this runs on every lookup.
        let ms = since
            .as_secs()
            .saturating_mul(1_000)
            .saturating_add(u64::from(since.subsec_millis()));
        self.origin_ms.saturating_add(ms)
    }

    /// The underlying clock's instant.
    #[must_use]
    pub fn instant(&self) -> Instant {
        self.clock.now()
    }
}

pub(crate) fn add_ms(now_ms: u64, d: Option<Duration>) -> u64 {
    match d {
        Some(d) => now_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta() -> Meta {
        Meta {
            scope: "t4:acme".into(),
            created_ms: 1,
            fresh_until_ms: 5,
            expires_ms: 10,
            tags: vec!["doc:1".into()],
            cost_micros: 1500,
            load_micros: 20_000,
        }
    }

    proptest! {
        #[test]
        fn round_trips(v in proptest::collection::vec(any::<u8>(), 0..256), s in ".{0,40}") {
            let e = Entry { meta: meta(), payload: Payload::Value((v, s)) };
            let bytes = e.encode().unwrap();
            prop_assert_eq!(Entry::decode(&bytes).unwrap(), e);
        }
    }

    #[test]
    fn rejects_unknown_versions_and_garbage() {
        let e = Entry {
            meta: meta(),
            payload: Payload::Value(7u32),
        };
        let mut bytes = e.encode().unwrap();
        bytes[0] = 9;
        assert!(
            matches!(Entry::<u32>::decode(&bytes), Err(Error::Codec(m)) if m.contains("version 9"))
        );
        assert!(Entry::<u32>::decode(&[]).is_err());
        assert!(Entry::<u32>::decode(&[FORMAT_VERSION, 0xff]).is_err());
    }

    #[test]
    fn format_is_compact() {
        // A 100-byte answer costs little more than 100 bytes on the wire.
        let e = Entry {
            meta: meta(),
            payload: Payload::Value("x".repeat(100)),
        };
        let n = e.encode().unwrap().len();
        assert!(n < 100 + 40, "{n} bytes");
    }

    #[test]
    fn expiry_and_staleness() {
        let m = meta();
        assert!(!m.is_stale(4) && m.is_stale(5) && !m.is_expired(9) && m.is_expired(10));
        assert_eq!(m.remaining(4), Some(Duration::from_millis(6)));
        assert_eq!(
            Meta {
                expires_ms: u64::MAX,
                ..m
            }
            .remaining(4),
            None
        );
    }
}
