//! Whether an action-log row is usable, the same way for every reader.
//!
//! The API's answers are input like any other: a row without an id cannot be de-duplicated
//! across pages and runs, a row without `dateTime` cannot be placed in a window, and a date
//! such as `0001-01-01` (a .NET default) or one far in the future would sit outside every
//! window or hold a checkpoint in the wrong place. Such rows are rejected — counted, with a
//! reason, and named in the log and the report — never silently dropped and never forwarded.
//!
//! [`validate_action_log_row`] is pure (the caller passes `now`) so the monitor, the SIEM
//! forwarder and the investigations give the same verdict on the same row.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use super::ActionLogRow;

/// How far past `now` a row's `dateTime` may be (clock skew between computers and the
/// portal) before it is rejected.
pub const MAX_FUTURE_SKEW: Duration = Duration::days(1);

/// Example ids kept per [`RowRejections`] (enough to find the rows, bounded for huge windows).
pub const MAX_REJECTED_EXAMPLES: usize = 5;

/// The earliest `dateTime` accepted: 2000-01-01T00:00:00Z. ThreatLocker did not exist
/// before; earlier dates are default values (`0001-01-01`) or damaged rows.
pub fn earliest_row_date() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(DateTime::<Utc>::MIN_UTC, |n| n.and_utc())
}

/// Why an action-log row was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RowRejection {
    /// Neither `actionLogId` nor `eActionLogId` (or only empty ones).
    MissingId,
    /// No `dateTime` (absent, `null`, or not a timestamp).
    MissingDateTime,
    /// `dateTime` before 2000-01-01 (such as `0001-01-01`).
    DateBefore2000,
    /// `dateTime` more than [`MAX_FUTURE_SKEW`] after `now`.
    DateInFuture,
}

impl RowRejection {
    /// The reason as written in reports (`missing_id`, `missing_date_time`,
    /// `date_before_2000`, `date_in_future`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingId => "missing_id",
            Self::MissingDateTime => "missing_date_time",
            Self::DateBefore2000 => "date_before_2000",
            Self::DateInFuture => "date_in_future",
        }
    }
}

impl fmt::Display for RowRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingId => "no actionLogId or eActionLogId",
            Self::MissingDateTime => "no dateTime",
            Self::DateBefore2000 => "dateTime before 2000-01-01",
            Self::DateInFuture => "dateTime more than a day in the future",
        })
    }
}

/// Checks one action-log row: it needs an id (`actionLogId`, else a non-empty
/// `eActionLogId`) and a `dateTime` from 2000-01-01 up to a day after `now`. The first
/// failing check is the reason.
pub fn validate_action_log_row(row: &ActionLogRow, now: DateTime<Utc>) -> Result<(), RowRejection> {
    let has_id = row.action_log_id.is_some()
        || row
            .e_action_log_id
            .as_ref()
            .is_some_and(|e| !e.as_str().trim().is_empty());
    if !has_id {
        return Err(RowRejection::MissingId);
    }
    let Some(at) = row.date_time else {
        return Err(RowRejection::MissingDateTime);
    };
    if at < earliest_row_date() {
        return Err(RowRejection::DateBefore2000);
    }
    if at > now + MAX_FUTURE_SKEW {
        return Err(RowRejection::DateInFuture);
    }
    Ok(())
}

/// A readable name for a row in logs and reports: its id, else where and when it happened.
pub fn row_label(row: &ActionLogRow) -> String {
    if let Some(id) = row.action_log_id {
        return id.to_string();
    }
    if let Some(e) = row
        .e_action_log_id
        .as_ref()
        .filter(|e| !e.as_str().trim().is_empty())
    {
        return e.to_string();
    }
    format!(
        "(no id; computer {}, dateTime {})",
        row.hostname.as_deref().unwrap_or("?"),
        row.date_time
            .map_or_else(|| "?".to_owned(), |t| t.to_rfc3339())
    )
}

/// The rows a reader rejected: how many, per reason, and a few examples to find them by.
/// Serializes as `{"total": n, "by_reason": {"missing_id": n, ...}, "examples": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RowRejections {
    /// Rows rejected.
    pub total: u64,
    /// Rows rejected per reason ([`RowRejection::as_str`]).
    pub by_reason: BTreeMap<&'static str, u64>,
    /// Up to [`MAX_REJECTED_EXAMPLES`] rows, as `"<id>: <reason>"`.
    pub examples: Vec<String>,
}

impl RowRejections {
    /// No rejection yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one rejected row.
    pub fn record(&mut self, row: &ActionLogRow, reason: RowRejection) {
        self.total += 1;
        *self.by_reason.entry(reason.as_str()).or_default() += 1;
        if self.examples.len() < MAX_REJECTED_EXAMPLES {
            self.examples.push(format!("{}: {reason}", row_label(row)));
        }
    }

    /// Adds another tally to this one (examples kept up to the cap).
    pub fn merge(&mut self, other: RowRejections) {
        self.total += other.total;
        for (k, v) in other.by_reason {
            *self.by_reason.entry(k).or_default() += v;
        }
        let room = MAX_REJECTED_EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }

    /// Whether nothing was rejected.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Keeps the acceptable rows of `rows` (in order) and counts the others.
    pub fn filter(&mut self, rows: &mut Vec<ActionLogRow>, now: DateTime<Utc>) {
        rows.retain(|row| match validate_action_log_row(row, now) {
            Ok(()) => true,
            Err(reason) => {
                self.record(row, reason);
                false
            }
        });
    }
}

impl fmt::Display for RowRejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} row(s) rejected", self.total)?;
        let reasons: Vec<String> = self
            .by_reason
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        if !reasons.is_empty() {
            write!(f, " ({})", reasons.join(", "))?;
        }
        if !self.examples.is_empty() {
            write!(f, "; e.g. {}", self.examples.join("; "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ActionLogId, EActionLogId};

    fn now() -> DateTime<Utc> {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    fn row(id: Option<i64>, eid: Option<&str>, at: Option<&str>) -> ActionLogRow {
        ActionLogRow {
            action_log_id: id.map(ActionLogId::from),
            e_action_log_id: eid.map(EActionLogId::new),
            date_time: at.map(|s| crate::time::parse_timestamp(s).unwrap()),
            ..ActionLogRow::default()
        }
    }

    #[test]
    fn each_rule_has_its_reason() {
        use RowRejection::*;
        let cases: &[(&str, ActionLogRow, Result<(), RowRejection>)] = &[
            (
                "numeric id and a date",
                row(Some(1), None, Some("2026-03-01T11:00:00Z")),
                Ok(()),
            ),
            (
                "string id only",
                row(None, Some("abc"), Some("2026-03-01T11:00:00")),
                Ok(()),
            ),
            (
                "no id at all",
                row(None, None, Some("2026-03-01T11:00:00Z")),
                Err(MissingId),
            ),
            (
                "blank string id",
                row(None, Some("  "), Some("2026-03-01T11:00:00Z")),
                Err(MissingId),
            ),
            (
                "no dateTime",
                row(Some(1), None, None),
                Err(MissingDateTime),
            ),
            (
                "the .NET default date",
                row(Some(1), None, Some("0001-01-01T00:00:00")),
                Err(DateBefore2000),
            ),
            (
                "just before 2000",
                row(Some(1), None, Some("1999-12-31T23:59:59Z")),
                Err(DateBefore2000),
            ),
            (
                "2000-01-01 itself",
                row(Some(1), None, Some("2000-01-01T00:00:00Z")),
                Ok(()),
            ),
            (
                "a day ahead (clock skew)",
                row(Some(1), None, Some("2026-03-02T12:00:00Z")),
                Ok(()),
            ),
            (
                "more than a day ahead",
                row(Some(1), None, Some("2026-03-02T12:00:01Z")),
                Err(DateInFuture),
            ),
            (
                "missing id wins over a bad date",
                row(None, None, Some("0001-01-01T00:00:00")),
                Err(MissingId),
            ),
        ];
        for (name, r, want) in cases {
            assert_eq!(validate_action_log_row(r, now()), *want, "{name}");
        }
    }

    #[test]
    fn the_tally_counts_per_reason_and_caps_examples() {
        let mut rows = vec![row(Some(7), None, Some("2026-03-01T10:00:00Z"))];
        for i in 0..8 {
            rows.push(row(Some(100 + i), None, Some("0001-01-01T00:00:00")));
        }
        rows.push(row(None, None, Some("2026-03-01T10:00:00Z")));
        let mut t = RowRejections::new();
        t.filter(&mut rows, now());
        assert_eq!(rows.len(), 1);
        assert_eq!(t.total, 9);
        assert_eq!(t.by_reason["date_before_2000"], 8);
        assert_eq!(t.by_reason["missing_id"], 1);
        assert_eq!(t.examples.len(), MAX_REJECTED_EXAMPLES);
        assert!(t.examples[0].starts_with("100: "), "{:?}", t.examples);
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["by_reason"]["date_before_2000"], 8);
        assert!(t
            .to_string()
            .starts_with("9 row(s) rejected (date_before_2000: 8, missing_id: 1)"));
    }

    #[test]
    fn merged_tallies_add_up() {
        let mut a = RowRejections::new();
        a.record(&row(Some(1), None, None), RowRejection::MissingDateTime);
        let mut b = RowRejections::new();
        b.record(&row(Some(2), None, None), RowRejection::MissingDateTime);
        b.record(&row(None, None, None), RowRejection::MissingId);
        a.merge(b);
        assert_eq!(a.total, 3);
        assert_eq!(a.by_reason["missing_date_time"], 2);
        assert_eq!(a.examples.len(), 3);
        assert!(a.examples[2].starts_with("(no id; computer ?"));
    }
}
