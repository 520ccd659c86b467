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
    if let Some(dt) = parse_common(s.as_bytes()) {
        return Some(dt);
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

/// Fast path for the shapes nearly every row carries: `YYYY-MM-DDTHH:MM:SS`, an optional
/// fraction of up to nine digits, and an optional `Z` (a `T` or a space between date and
/// time). Anything else (offsets, odd widths) goes to the general parsers.
fn parse_common(b: &[u8]) -> Option<DateTime<Utc>> {
    fn num(b: &[u8]) -> Option<u32> {
        b.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    }
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (hour, minute, second) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some((b'.', frac)) = rest.split_first() {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(&frac[..digits])? * 10u32.pow(9 - digits as u32);
        rest = &frac[digits..];
    }
    if !matches!(rest, b"" | b"Z" | b"z") {
        return None;
    }
    let year = i32::try_from(year).ok()?;
    chrono::NaiveDate::from_ymd_opt(year, month, day)?
        .and_hms_nano_opt(hour, minute, second, nanos)
        .map(|n| n.and_utc())
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
    use std::fmt;

    use chrono::{DateTime, Utc};
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// Deserializes a lenient optional timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        d.deserialize_option(OptVisitor)
    }

    struct OptVisitor;

    impl<'de> Visitor<'de> for OptVisitor {
        type Value = Option<DateTime<Utc>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a timestamp string or null")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            // Borrow the string from the input when possible: no allocation per timestamp.
            d.deserialize_str(self)
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            if s.trim().is_empty() {
                return Ok(None);
            }
            super::parse_timestamp(s)
                .map(Some)
                .ok_or_else(|| E::custom(format!("invalid timestamp {s:?}")))
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
        assert_eq!(parse_timestamp("2026-02-30T00:00:00Z"), None);
        let nine = parse_timestamp("2026-05-14t13:02:11.123456789z").unwrap();
        assert_eq!(nine.timestamp_subsec_nanos(), 123_456_789);
        let fast = parse_timestamp("2026-05-14T13:02:11.5").unwrap();
        assert_eq!(fast.timestamp_subsec_millis(), 500);
        assert_eq!(parse_timestamp(""), None);
    }

    #[test]
    fn serde_adapter_reads_null_empty_and_strings() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(default, with = "super::option")]
            t: Option<DateTime<Utc>>,
        }
        let read = |s: &str| serde_json::from_str::<T>(s).map(|t| t.t);
        assert_eq!(read(r#"{"t":null}"#).unwrap(), None);
        assert_eq!(read(r#"{}"#).unwrap(), None);
        assert_eq!(read(r#"{"t":" "}"#).unwrap(), None);
        assert!(read(r#"{"t":"2026-05-14T13:02:11"}"#).unwrap().is_some());
        assert!(read(r#"{"t":"2026-05-14T13:02:11\u005a"}"#)
            .unwrap()
            .is_some());
        assert!(read(r#"{"t":"garbage"}"#).is_err());
        assert!(read(r#"{"t":5}"#).is_err());
    }

    #[test]
    fn request_dates_are_whole_seconds_with_z() {
        let dt = Utc.with_ymd_and_hms(2026, 5, 14, 0, 0, 0).unwrap()
            + chrono::Duration::milliseconds(999);
        assert_eq!(format_request_date(dt), "2026-05-14T00:00:00Z");
    }
}
