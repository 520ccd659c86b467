//! Time-of-day parsing shared by the daily report's configuration and `watch`'s schedule.

use chrono::NaiveTime;

/// Parses a local time of day, `HH:MM` (24-hour), naming `key` in the error.
pub fn parse_time_of_day(key: &str, s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M")
        .map_err(|_| format!("{key}: {s:?} is not a time of day; use HH:MM, e.g. 07:00"))
}
