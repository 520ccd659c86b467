//! Time parsing shared by the configuration readers and the binaries' flags: times of day
//! (the daily report, `watch`'s schedule) and bounded durations (intervals, polls, timeouts).

use std::time::Duration;

use chrono::NaiveTime;

/// Parses a local time of day, `HH:MM` (24-hour), naming `key` in the error.
pub fn parse_time_of_day(key: &str, s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M")
        .map_err(|_| format!("{key}: {s:?} is not a time of day; use HH:MM, e.g. 07:00"))
}

/// Parses a duration such as `30m` or `1h 30m` and checks it lies in `[min, max]`; the error
/// says what is allowed (the caller names the flag or key).
pub fn parse_bounded_duration(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e}); use e.g. 30s, 5m, 1h"))?;
    if d < min || d > max {
        return Err(format!(
            "{s:?} is out of range: use from {} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}
