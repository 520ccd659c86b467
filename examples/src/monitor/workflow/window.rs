//! Reading the window at MSP scale: each run asks the API only for what is new, and takes the
//! older part of the window from per-hour aggregates kept in the state store.
//!
//! The scheme is exact. With `hwm` the previous run's high-water mark (the end of the last
//! window read in full) and `overlap` the configured re-read:
//!
//! - every whole hour of the window that ends at or before `hwm - overlap` (rounded down to the
//!   hour) comes from its kept aggregate ([`policy_engine::WindowState`]);
//! - the rest is read from the API: the overlap and the hours since `hwm`, whose aggregates are
//!   replaced, and the part of the window's first hour that falls inside the window (its kept
//!   aggregate also counts rows from before the window);
//! - rows are de-duplicated by id (per organization, as they are read: a row belongs to one
//!   organization), the reads' ranges are half-open and disjoint, and a row whose hour is taken
//!   from a kept aggregate is dropped, so a row is never counted twice.
//!
//! The report of such a run is that of a full read of the same window, except for a row a
//! computer uploads later than the overlap (its `dateTime` older than `hwm - overlap` when it
//! reaches the API): its hour was kept without it, so incremental runs never count it, and only
//! a full re-read (`run --full`, the daily report) does. Raise `overlap` if computers in the
//! fleet stay offline longer.
//!
//! Aggregates are kept only after a read with no error (an organization that failed would leave
//! a hole), only for the configuration and scope they were built with (a fingerprint), and are
//! pruned when their hour leaves the window. They are a cache of the API's data, not a record of
//! side effects: the exactly-once protocol and the windows marked done are unchanged.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, DurationRound, Utc};
use policy_engine::{Engine, WindowState};
use serde::{Deserialize, Serialize};
use threatlocker_api::ActionLogRow;
use tracing::{debug, info, warn};

use crate::state::{StateError, StateStore};

/// The checkpoint holding the index of kept hours.
const INDEX: &str = "window.index";

fn hour_key(h: DateTime<Utc>) -> String {
    format!("window.hour.{}", h.to_rfc3339())
}

fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::hours(1)).unwrap_or(t)
}

fn ceil_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    let f = floor_hour(t);
    if f == t {
        t
    } else {
        f + Duration::hours(1)
    }
}

/// What is kept between runs besides the hours themselves.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    /// Configuration and scope the hours were built for.
    fingerprint: String,
    /// End of the last window read in full.
    high_water_mark: Option<DateTime<Utc>>,
    /// Hours (their start) kept.
    hours: BTreeSet<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct KeptHour {
    fingerprint: String,
    state: WindowState,
}

/// [`KeptHour`] as written (borrowed: a state is not copied to be kept).
#[derive(Serialize)]
struct KeptHourRef<'a> {
    fingerprint: &'a str,
    state: &'a WindowState,
}

/// How one run reads its window.
pub(crate) struct Plan {
    fingerprint: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// Hours taken from kept aggregates.
    reused: BTreeMap<DateTime<Utc>, WindowState>,
    /// Whole hours read in full this run (kept for the next runs).
    fresh: BTreeSet<DateTime<Utc>>,
    /// Time ranges to ask the API for.
    pub reads: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Hours kept before this run (pruned if not kept again).
    previous: BTreeSet<DateTime<Utc>>,
}

impl Plan {
    /// Plans the read of `[start, end)`: from kept hours where they are valid (unless `full`),
    /// the rest from the API.
    pub fn new(
        state: &StateStore,
        fingerprint: String,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        overlap: Duration,
        full: bool,
    ) -> Self {
        let first_whole = ceil_hour(start);
        let last_whole_end = floor_hour(end).max(first_whole);
        let index = load_index(state);
        let mut reused = BTreeMap::new();
        let mut read_from = first_whole;
        let previous = index.as_ref().map(|i| i.hours.clone()).unwrap_or_default();
        match (&index, full) {
            (_, true) => info!("full read of the window (--full)"),
            (None, _) => debug!("no kept hours: the whole window is read"),
            (Some(i), _) if i.fingerprint != fingerprint => {
                info!("the configuration or scope changed since the hours were kept: the whole window is read")
            }
            (Some(i), false) => {
                let cutoff = i
                    .high_water_mark
                    .map(|h| floor_hour(h.min(end) - overlap))
                    .unwrap_or(first_whole)
                    .min(last_whole_end);
                let mut h = first_whole;
                while h + Duration::hours(1) <= cutoff && i.hours.contains(&h) {
                    match load_hour(state, h, &fingerprint) {
                        Some(s) => {
                            reused.insert(h, s);
                            h += Duration::hours(1);
                        }
                        None => break,
                    }
                }
                read_from = h;
            }
        }
        let mut reads = Vec::new();
        if reused.is_empty() {
            read_from = first_whole.min(end);
            reads.push((start, end));
        } else {
            if start < first_whole {
                reads.push((start, first_whole));
            }
            if read_from < end {
                reads.push((read_from, end));
            }
        }
        let mut fresh = BTreeSet::new();
        let mut h = read_from.max(first_whole);
        while h + Duration::hours(1) <= end {
            fresh.insert(h);
            h += Duration::hours(1);
        }
        info!(
            kept_hours = reused.len(),
            reads = ?reads.iter().map(|(a, b)| format!("{a}..{b}")).collect::<Vec<_>>(),
            "action-log read planned"
        );
        Self {
            fingerprint,
            start,
            end,
            reused,
            fresh,
            reads,
            previous,
        }
    }
}

/// Routes the rows of a run into per-hour accumulators (hours kept for the next runs) and one
/// for the rest of the window, then merges them.
pub(crate) struct Router<'e> {
    engine: &'e Engine,
    plan: Plan,
    /// The state of each fresh hour, and of the rest of the window.
    hours: BTreeMap<DateTime<Utc>, WindowState>,
    rest: WindowState,
    rows: u64,
}

impl<'e> Router<'e> {
    /// A router for `plan`.
    pub fn new(engine: &'e Engine, plan: Plan) -> Self {
        Self {
            engine,
            hours: BTreeMap::new(),
            rest: WindowState::default(),
            rows: 0,
            plan,
        }
    }

    /// Rows received from the API.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// One row from the API.
    pub fn push(&mut self, row: ActionLogRow) {
        self.rows += 1;
        let hour = row.date_time.map(floor_hour);
        if hour.is_some_and(|h| self.plan.reused.contains_key(&h)) {
            // Already counted in the hour's kept aggregate (a boundary row answered twice).
            return;
        }
        let state = match hour.filter(|h| self.plan.fresh.contains(h)) {
            Some(h) => self.hours.entry(h).or_default(),
            None => {
                // Outside the window (the API's range may include its end) or undated.
                if !row
                    .date_time
                    .is_some_and(|t| t >= self.plan.start && t < self.plan.end)
                {
                    return;
                }
                &mut self.rest
            }
        };
        state.push_selected(self.engine, &row);
    }

    /// Keeps the fresh hours and the index (after a read with no error), prunes hours that
    /// left the window, and returns the state of the whole window.
    pub fn finish(
        mut self,
        store: Option<&StateStore>,
        read_ok: bool,
    ) -> Result<WindowState, StateError> {
        for h in &self.plan.fresh {
            let mut s = self.hours.remove(h).unwrap_or_default();
            s.normalize(self.engine);
            self.hours.insert(*h, s);
        }
        if let (Some(store), true) = (store, read_ok) {
            for (h, s) in &self.hours {
                let kept = KeptHourRef {
                    fingerprint: &self.plan.fingerprint,
                    state: s,
                };
                let text = serde_json::to_string(&kept).unwrap_or_default();
                store.checkpoint_set(&hour_key(*h), &text)?;
            }
            let hours: BTreeSet<DateTime<Utc>> = self
                .plan
                .reused
                .keys()
                .chain(self.hours.keys())
                .copied()
                .collect();
            for old in self.plan.previous.difference(&hours) {
                store.checkpoint_set(&hour_key(*old), "")?;
            }
            let index = Index {
                fingerprint: self.plan.fingerprint.clone(),
                high_water_mark: Some(self.plan.end),
                hours,
            };
            let text = serde_json::to_string(&index).unwrap_or_default();
            store.checkpoint_set(INDEX, &text)?;
        } else if !read_ok {
            warn!("the action log was not read in full: no hour is kept for the next run");
        }
        let mut all = std::mem::take(&mut self.rest);
        for (_, s) in std::mem::take(&mut self.plan.reused) {
            all.merge(s, self.engine);
        }
        for (_, s) in self.hours {
            all.merge(s, self.engine);
        }
        Ok(all)
    }
}

/// What kept hours are valid for: the engine's configuration, the scope and the organizations
/// read (a new organization's older rows are in no kept hour), and the action types searched.
pub(crate) fn fingerprint(
    engine: &Engine,
    scope: &super::Scope,
    action_types: &[String],
    targets: &super::fetch::Targets,
) -> String {
    let mut orgs: Vec<&str> = targets.orgs.iter().map(|o| o.as_str()).collect();
    orgs.sort_unstable();
    let text = format!(
        "{}|{:?}|{}|{:?}|{:?}|{}|{}|{}",
        engine.fingerprint(),
        scope.company_id,
        scope.include_child_organizations,
        scope.companies,
        action_types,
        targets.include_children,
        targets.home,
        orgs.join(",")
    );
    // FNV-1a, 64 bits: stable across builds (the std hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn load_index(state: &StateStore) -> Option<Index> {
    match state.checkpoint_get(INDEX) {
        Ok(Some(text)) if !text.is_empty() => match serde_json::from_str(&text) {
            Ok(i) => Some(i),
            Err(e) => {
                warn!(error = %crate::errors::ErrorChain(&e), "the kept-hours index is unreadable: the whole window is read");
                None
            }
        },
        Ok(_) => None,
        Err(e) => {
            warn!(error = %crate::errors::ErrorChain(&e), "reading the kept-hours index failed: the whole window is read");
            None
        }
    }
}

fn load_hour(state: &StateStore, h: DateTime<Utc>, fingerprint: &str) -> Option<WindowState> {
    let text = state.checkpoint_get(&hour_key(h)).ok()??;
    let kept: KeptHour = serde_json::from_str(&text).ok()?;
    (kept.fingerprint == fingerprint).then_some(kept.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// A store whose index says the hours of `[from, to)` are kept, read up to `hwm`.
    fn store_with(fp: &str, from: &str, to: &str, hwm: &str) -> StateStore {
        let store = StateStore::open_in_memory().unwrap();
        let mut hours = BTreeSet::new();
        let mut h = t(from);
        while h < t(to) {
            let kept = KeptHourRef {
                fingerprint: fp,
                state: &WindowState::default(),
            };
            store
                .checkpoint_set(&hour_key(h), &serde_json::to_string(&kept).unwrap())
                .unwrap();
            hours.insert(h);
            h += Duration::hours(1);
        }
        let index = Index {
            fingerprint: fp.to_owned(),
            high_water_mark: Some(t(hwm)),
            hours,
        };
        store
            .checkpoint_set(INDEX, &serde_json::to_string(&index).unwrap())
            .unwrap();
        store
    }

    /// (name, fingerprint, overlap hours, full, expected reads, fresh hours)
    type PlanCase<'a> = (&'a str, &'a str, i64, bool, Vec<(&'a str, &'a str)>, usize);

    #[test]
    fn reads_follow_the_high_water_mark_minus_the_overlap() {
        let store = store_with(
            "fp",
            "2026-05-13T12:00:00Z",
            "2026-05-14T12:00:00Z",
            "2026-05-14T12:00:00Z",
        );
        let (start, end) = (t("2026-05-13T12:30:00Z"), t("2026-05-14T12:30:00Z"));
        let cases: [PlanCase<'_>; 5] = [
            (
                "the window's first half hour and the overlap onwards",
                "fp",
                2,
                false,
                vec![
                    ("2026-05-13T12:30:00Z", "2026-05-13T13:00:00Z"),
                    ("2026-05-14T10:00:00Z", "2026-05-14T12:30:00Z"),
                ],
                2,
            ),
            (
                "no overlap: from the high-water mark's hour",
                "fp",
                0,
                false,
                vec![
                    ("2026-05-13T12:30:00Z", "2026-05-13T13:00:00Z"),
                    ("2026-05-14T12:00:00Z", "2026-05-14T12:30:00Z"),
                ],
                0,
            ),
            (
                "--full reads the whole window",
                "fp",
                2,
                true,
                vec![("2026-05-13T12:30:00Z", "2026-05-14T12:30:00Z")],
                23,
            ),
            (
                "another configuration reads the whole window",
                "other",
                2,
                false,
                vec![("2026-05-13T12:30:00Z", "2026-05-14T12:30:00Z")],
                23,
            ),
            (
                "an overlap as long as the window reads it all",
                "fp",
                24,
                false,
                vec![("2026-05-13T12:30:00Z", "2026-05-14T12:30:00Z")],
                23,
            ),
        ];
        for (name, fp, overlap, full, reads, fresh) in cases {
            let plan = Plan::new(
                &store,
                fp.into(),
                start,
                end,
                Duration::hours(overlap),
                full,
            );
            let want: Vec<(DateTime<Utc>, DateTime<Utc>)> =
                reads.iter().map(|(a, b)| (t(a), t(b))).collect();
            assert_eq!(plan.reads, want, "{name}");
            assert_eq!(plan.fresh.len(), fresh, "{name}");
            assert_eq!(
                plan.reused.len() + plan.fresh.len(),
                23,
                "{name}: every whole hour"
            );
        }
    }

    #[test]
    fn a_missing_or_damaged_hour_is_read_again_from_there() {
        let store = store_with(
            "fp",
            "2026-05-13T12:00:00Z",
            "2026-05-14T12:00:00Z",
            "2026-05-14T12:00:00Z",
        );
        store
            .checkpoint_set(&hour_key(t("2026-05-14T02:00:00Z")), "{not json")
            .unwrap();
        let plan = Plan::new(
            &store,
            "fp".into(),
            t("2026-05-13T12:30:00Z"),
            t("2026-05-14T12:30:00Z"),
            Duration::hours(2),
            false,
        );
        assert_eq!(
            plan.reads.last(),
            Some(&(t("2026-05-14T02:00:00Z"), t("2026-05-14T12:30:00Z")))
        );
        assert_eq!(plan.reused.len(), 13);
    }
}
