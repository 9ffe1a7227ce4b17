//! UTC timestamps with a fixed precision.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A UTC instant truncated to whole microseconds.
///
/// Truncation matters: both backends store microseconds, so a timestamp read
/// back equals the one written, and a payment serialized before and after a
/// round trip through the database is byte-identical (idempotent replays
/// depend on that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn from_micros(micros: i64) -> Option<Self> {
        Utc.timestamp_micros(micros).single().map(Timestamp)
    }

    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        // Infallible: every DateTime's micros are representable again.
        Timestamp::from_micros(at.timestamp_micros()).unwrap_or(Timestamp(at))
    }

    pub fn as_micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|at| Timestamp::from_datetime(at.with_timezone(&Utc)))
    }

    /// This instant plus `millis`, saturating at the far future.
    pub fn plus_millis(&self, millis: i64) -> Self {
        Timestamp::from_micros(self.as_micros().saturating_add(millis.saturating_mul(1000)))
            .unwrap_or(*self)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom("not an RFC 3339 timestamp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_micros_and_text() {
        let now = Timestamp::from_datetime(Utc::now());
        assert_eq!(Timestamp::from_micros(now.as_micros()), Some(now));
        assert_eq!(Timestamp::parse_rfc3339(&now.to_string()), Some(now));
        assert!(now.to_string().ends_with('Z'));
    }
}
