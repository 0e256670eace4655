//! serde helpers shared by config types across crates.

/// (De)serializes a `Duration` as a human-readable string (`"1m"`, `"250ms"`,
/// `"1h 30m"`); also accepts an integer number of milliseconds.
///
/// ```
/// use std::time::Duration;
///
/// #[derive(serde::Deserialize)]
/// struct Timeouts {
///     #[serde(with = "foundation_core::serde_util::duration")]
///     connect: Duration,
/// }
///
/// let t: Timeouts = serde_json::from_str(r#"{ "connect": "1m 30s" }"#).unwrap();
/// assert_eq!(t.connect, Duration::from_secs(90));
/// let t: Timeouts = serde_json::from_str(r#"{ "connect": 250 }"#).unwrap();
/// assert_eq!(t.connect, Duration::from_millis(250));
/// ```
pub mod duration {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;
    use std::time::Duration;

    /// Serializes as `humantime` text.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    /// Deserializes from `humantime` text or integer milliseconds.
    ///
    /// # Errors
    /// When the value is neither; the message quotes the input.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    pub(crate) struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"250ms\", \"1m 30s\" or integer milliseconds")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            humantime::parse_duration(v)
                .map_err(|e| E::custom(format_args!("invalid duration {v:?}: {e}")))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_millis(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_millis)
                .map_err(|_| E::custom(format_args!("invalid duration {v}: negative")))
        }
    }
}

/// Like [`duration`] for `Option<Duration>` (`null` or absent is `None`).
pub mod opt_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Serializes `Some` as `humantime` text and `None` as null.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Deserializes null as `None`, otherwise like [`super::duration`].
    ///
    /// # Errors
    /// When the value is not a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::duration")] Duration);
        Option::<Wrap>::deserialize(d).map(|o| o.map(|w| w.0))
    }
}
