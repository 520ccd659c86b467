//! Times and durations on the command line: UTC ISO 8601 in, relative forms (`24h`, `7d`,
//! `30m`) accepted. Pure functions; the caller passes `now`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// Parses a point in time: RFC 3339 / ISO 8601 with `Z` or an offset, a zone-less
/// `YYYY-MM-DDTHH:MM[:SS[.fff]]` (taken as UTC, as the action log stores UTC), a date
/// `YYYY-MM-DD` (midnight UTC), `now`, or a relative form meaning "that long ago" (`90m`,
/// `2h`, `1d 6h`, `2h ago`).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty time; use e.g. 2026-05-14T13:00:00Z or 2h (ago)".into());
    }
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    let spaced = t.replacen(' ', "T", 1);
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(&spaced, fmt) {
            return Ok(n.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(n) = d.and_hms_opt(0, 0, 0) {
            return Ok(n.and_utc());
        }
    }
    let rel = t.strip_suffix("ago").map(str::trim_end).unwrap_or(t);
    match parse_duration(rel) {
        Ok(d) => Ok(now - d),
        Err(_) => Err(format!(
            "{t:?} is not a time: use UTC ISO 8601 (2026-05-14T13:00:00Z), a date (2026-05-14) or a relative form (2h, 7d)"
        )),
    }
}

/// Parses a duration (`30m`, `24h`, `7d`, `1h 30m`, humantime syntax). Zero and negative
/// durations are refused.
pub fn parse_duration(s: &str) -> Result<chrono::Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!(
            "{:?} is not a duration ({e}); use e.g. 30m, 24h, 7d",
            s.trim()
        )
    })?;
    if d.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    chrono::Duration::from_std(d).map_err(|_| format!("{:?} is too long", s.trim()))
}

/// The start of a `--since` period: a duration before `now` (`24h`, `7d`) or a time.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let start = match parse_duration(s) {
        Ok(d) => now - d,
        Err(_) => parse_time(s, now)?,
    };
    if start >= now {
        return Err(format!("--since {s:?} is not in the past"));
    }
    Ok(start)
}

/// Formats a time as UTC ISO 8601 with second precision (`2026-05-14T13:02:11Z`), or
/// milliseconds when it has them.
pub fn iso(t: DateTime<Utc>) -> String {
    if t.timestamp_subsec_millis() == 0 {
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    } else {
        t.to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

/// [`iso`] for an optional time (`""` when absent).
pub fn iso_opt(t: Option<DateTime<Utc>>) -> String {
    t.map(iso).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 14, 14, 0, 0).unwrap()
    }

    #[test]
    fn times_parse_in_every_accepted_form() {
        let cases: &[(&str, DateTime<Utc>)] = &[
            (
                "2026-05-14T13:02:11Z",
                Utc.with_ymd_and_hms(2026, 5, 14, 13, 2, 11).unwrap(),
            ),
            (
                "2026-05-14T15:02:11+02:00",
                Utc.with_ymd_and_hms(2026, 5, 14, 13, 2, 11).unwrap(),
            ),
            (
                "2026-05-14T13:02:11",
                Utc.with_ymd_and_hms(2026, 5, 14, 13, 2, 11).unwrap(),
            ),
            (
                "2026-05-14 13:02",
                Utc.with_ymd_and_hms(2026, 5, 14, 13, 2, 0).unwrap(),
            ),
            (
                "2026-05-14",
                Utc.with_ymd_and_hms(2026, 5, 14, 0, 0, 0).unwrap(),
            ),
            ("now", now()),
            ("2h", Utc.with_ymd_and_hms(2026, 5, 14, 12, 0, 0).unwrap()),
            (
                "30m ago",
                Utc.with_ymd_and_hms(2026, 5, 14, 13, 30, 0).unwrap(),
            ),
            ("1d", Utc.with_ymd_and_hms(2026, 5, 13, 14, 0, 0).unwrap()),
        ];
        for (s, want) in cases {
            assert_eq!(parse_time(s, now()).as_ref(), Ok(want), "{s}");
        }
        for bad in ["", "yesterday", "2026-13-01", "14:00"] {
            let e = parse_time(bad, now()).unwrap_err();
            assert!(e.contains("ISO 8601") || e.contains("empty"), "{bad}: {e}");
        }
    }

    #[test]
    fn since_accepts_durations_and_times_in_the_past() {
        assert_eq!(
            parse_since("7d", now()),
            Ok(Utc.with_ymd_and_hms(2026, 5, 7, 14, 0, 0).unwrap())
        );
        assert_eq!(
            parse_since("2026-05-14T00:00:00Z", now()),
            Ok(Utc.with_ymd_and_hms(2026, 5, 14, 0, 0, 0).unwrap())
        );
        assert!(parse_since("2026-06-01", now()).is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("abc").unwrap_err().contains("30m"));
    }

    #[test]
    fn formats_utc_iso() {
        let t = Utc.with_ymd_and_hms(2026, 5, 14, 13, 2, 11).unwrap();
        assert_eq!(iso(t), "2026-05-14T13:02:11Z");
        assert_eq!(
            iso(t + chrono::Duration::milliseconds(483)),
            "2026-05-14T13:02:11.483Z"
        );
    }
}
