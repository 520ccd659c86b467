//! Lenient timestamp parsing and the request date format.
//!
//! Responses carry ISO-8601 timestamps with anywhere from zero to seven fractional digits, and
//! sometimes no zone at all (which the API means as UTC). Requests must use
//! `YYYY-MM-DDTHH:MM:SSZ` exactly.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Parses a timestamp as the API sends it: RFC 3339 with or without a zone, with any fractional
/// precision, with a `T` or a space between date and time. A value without a zone is UTC.
///
/// Returns `None` for a string that is none of these.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    // chrono's RFC 3339 parser wants a `T`; accept a space too.
    if s.len() > 10 && s.as_bytes()[10] == b' ' {
        let with_t = format!("{}T{}", &s[..10], &s[11..]);
        if let Ok(dt) = DateTime::parse_from_rfc3339(&with_t) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(naive.and_utc());
        }
    }
    None
}

/// Formats a date for a request body or query: `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds),
/// the only form the API documents for requests.
pub fn format_request_date(dt: DateTime<Utc>) -> String {
    dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Formats a timestamp for output (reports, round-tripped models): RFC 3339, UTC, `Z`.
pub fn format_timestamp(dt: DateTime<Utc>) -> String {
    dt.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Serde adapter for `Option<DateTime<Utc>>` fields using [`parse_timestamp`].
///
/// `null`, a missing field and an empty string all read as `None`; an unparseable string is an
/// error (so a decode error names the field's JSON path).
pub mod option {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Deserializes a lenient optional timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let raw: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
        match raw {
            None => Ok(None),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => super::parse_timestamp(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid timestamp {s:?}"))),
        }
    }

    /// Serializes as RFC 3339 UTC (`null` when absent).
    pub fn serialize<S: Serializer>(v: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(dt) => s.serialize_str(&super::format_timestamp(*dt)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_every_shape_the_api_sends() {
        let want = Utc.with_ymd_and_hms(2026, 5, 14, 13, 2, 11).unwrap();
        for s in [
            "2026-05-14T13:02:11Z",
            "2026-05-14T13:02:11",
            "2026-05-14 13:02:11",
            "2026-05-14T13:02:11+00:00",
            "2026-05-14T15:02:11+02:00",
        ] {
            assert_eq!(parse_timestamp(s), Some(want), "{s}");
        }
        let seven = parse_timestamp("2026-05-14T13:10:03.2210000Z").unwrap();
        assert_eq!(seven.timestamp_subsec_millis(), 221);
        let zoneless_frac = parse_timestamp("2026-05-14T13:02:11.483").unwrap();
        assert_eq!(zoneless_frac.timestamp_subsec_millis(), 483);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp(""), None);
    }

    #[test]
    fn request_dates_are_whole_seconds_with_z() {
        let dt = Utc.with_ymd_and_hms(2026, 5, 14, 0, 0, 0).unwrap()
            + chrono::Duration::milliseconds(999);
        assert_eq!(format_request_date(dt), "2026-05-14T00:00:00Z");
    }
}
