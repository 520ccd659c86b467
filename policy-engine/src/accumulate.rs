//! Streaming evaluation: rows flow one at a time into compact per-key state ([`WindowState`]),
//! which merges with other partial states (per-hour aggregates kept between runs, per-organization
//! reads in parallel) and is finished into [`Decisions`](crate::Decisions) by
//! [`Accumulator::finish`].
//!
//! Why cells: every row that can take part in a finding (a block, an audit-only or ringfenced
//! row, a row a per-row rule matched) falls in a *cell*, the finest key every grouping of the
//! engine is built from: (organization, application key, computer id, hostname, user, outcome,
//! per-row rules matched). All rows of a cell belong to the same repeat block, repeated-denials
//! pair, fleet-spread file and per-row detection, so the engine can group, threshold and share
//! rows out among detections cell by cell, and a cell keeps only what a detection reports:
//! counts, last time, distinct hashes, names and markers, the oldest evidence ids and the oldest
//! few rows in compact form. Memory follows distinct keys, not rows (except the times of blocks
//! when `repeat_window_minutes` is set, which the sliding window needs, and the ids of one
//! accumulator's rows for de-duplication).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use threatlocker_api::{ActionLogId, ActionLogRow, ComputerId, EActionLogId};

use crate::config::Compiled;
use crate::decisions::{Decisions, Ignored};
use crate::detect::{self, Outcome};
use crate::engine::{row_hashes, row_signers, Engine};
use crate::fx::{FxMap, FxSet};
use crate::input::Input;
use crate::rules::{ids, RiskLevel};
use crate::text::lower;

/// Rows a ticket's evidence lists at most (and so the oldest rows each cell keeps in full).
pub(crate) const CITED_ROWS: usize = 20;

/// A row's place in the engine's total order (time, then ids) and its evidence id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct EvidenceId {
    pub at: DateTime<Utc>,
    pub id: Option<ActionLogId>,
    pub eid: Option<EActionLogId>,
    /// For rows with neither id: their place among such rows (push order), so that they stay
    /// distinct and ties on time keep the order the rows came in.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl EvidenceId {
    fn of(row: &ActionLogRow, at: DateTime<Utc>, seq: u64) -> Self {
        Self {
            at,
            id: row.action_log_id,
            // The string id matters only without the numeric one (for the text and the order:
            // a numeric id is unique after de-duplication); not keeping it saves a string per
            // evidence entry.
            eid: match row.action_log_id {
                Some(_) => None,
                None => row.e_action_log_id.clone(),
            },
            seq,
        }
    }

    /// Moves an id-less row after the `by` id-less rows of another state.
    fn shift(&mut self, by: u64) {
        if self.seq != 0 {
            self.seq += by;
        }
    }

    /// The id as evidence lists show it (`actionLogId`, else `eActionLogId`).
    pub fn text(&self) -> String {
        match (&self.id, &self.eid) {
            (Some(id), _) => id.to_string(),
            (None, Some(e)) => e.to_string(),
            (None, None) => "(no id)".to_owned(),
        }
    }
}

/// The few fields of a row that detections, tickets and approvals cite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CitedRow {
    pub key: EvidenceId,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_id: Option<ComputerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_process_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_process: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
}

impl CitedRow {
    /// A cited row of a cell: its computer id, hostname and user are the cell's (see
    /// [`CitedRow::with_cell`]), so they are not kept twice.
    fn of(row: &ActionLogRow, key: EvidenceId, outcome: Outcome) -> Self {
        Self {
            key,
            outcome,
            organization_name: row.organization_name.clone(),
            computer_id: None,
            hostname: None,
            username: None,
            full_path: row.full_path.clone(),
            process_path: row.process_path.clone(),
            process_name: row.process_name.clone(),
            parent_process_name: row.parent_process_name.clone(),
            created_by_process: row.created_by_process.clone(),
            application_name: row.application_name.clone(),
            policy_name: row.policy_name.clone(),
        }
    }

    /// Fills in the fields the cell's key holds.
    pub fn with_cell(&mut self, key: &CellKey) {
        self.computer_id.clone_from(&key.computer_id);
        self.hostname.clone_from(&key.hostname);
        self.username.clone_from(&key.username);
    }

    /// The cited fields as a row, for the per-row helpers (names, parents).
    pub fn to_row(&self) -> ActionLogRow {
        let mut r = ActionLogRow::default();
        r.date_time = Some(self.key.at);
        r.action_log_id = self.key.id;
        r.e_action_log_id = self.key.eid.clone();
        r.organization_name = self.organization_name.clone();
        r.computer_id = self.computer_id.clone();
        r.hostname = self.hostname.clone();
        r.username = self.username.clone();
        r.full_path = self.full_path.clone();
        r.process_path = self.process_path.clone();
        r.process_name = self.process_name.clone();
        r.parent_process_name = self.parent_process_name.clone();
        r.created_by_process = self.created_by_process.clone();
        r.application_name = self.application_name.clone();
        r.policy_name = self.policy_name.clone();
        r
    }
}

/// Per-row rules a row matched whatever the computers' modes, as bits in the rule table's
/// strength order (policy bypass depends on the computer's mode, so it is decided at finish).
pub(crate) const HIT_RULES: [&str; 4] = [
    ids::ENCODED_POWERSHELL,
    ids::LOLBIN_USER_PATH,
    ids::LOLBIN_OFFICE_BROWSER,
    ids::RINGFENCE,
];

/// The finest key of the engine's groupings (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct CellKey {
    pub org: String,
    pub app: String,
    pub app_is_hash: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_id: Option<ComputerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub outcome: Outcome,
    /// Bits of [`HIT_RULES`].
    pub hits: u8,
}

/// A row's organization as the groupings see it (empty without one).
fn org_key(row: &ActionLogRow) -> String {
    row.organization_id
        .as_ref()
        .map(|o| o.as_str().to_owned())
        .unwrap_or_default()
}

/// A computer as the groupings see it: its id, else its lower-cased hostname. Built-in cells
/// ([`CellKey::computer`]) and custom rule groups must agree, or their incidents would split.
fn computer_key(id: Option<&ComputerId>, hostname: Option<&str>) -> String {
    match id.map(|c| c.as_str()).filter(|s| !s.is_empty()) {
        Some(id) => id.to_owned(),
        None => lower(hostname.unwrap_or("").trim_ascii()).into_owned(),
    }
}

impl CellKey {
    /// The computer as the groupings see it: its id, else its lower-cased hostname.
    pub fn computer(&self) -> String {
        computer_key(self.computer_id.as_ref(), self.hostname.as_deref())
    }

    /// The user as repeated denials see it (lower-cased; empty without one).
    pub fn user(&self) -> String {
        self.username
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| lower(u).into_owned())
            .unwrap_or_default()
    }
}

/// What one cell keeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CellAgg {
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<DateTime<Utc>>,
    /// The oldest `max_evidence` row ids, oldest first once normalized.
    pub ids: Vec<EvidenceId>,
    /// The oldest [`CITED_ROWS`] rows, oldest first once normalized.
    pub cited: Vec<CitedRow>,
    /// Every block's time, only when a repeat window is configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<DateTime<Utc>>,
    /// Hashes on the rows (trimmed, as given) other than the key's application key itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<String>,
    /// Whether a row carried the application key itself as a hash (kept as this flag).
    #[serde(default)]
    pub app_hash: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub markers: Vec<String>,
    #[serde(default)]
    pub known_good: bool,
}

/// Adds `s` to a sorted list of distinct strings (the small sets of a cell: a vector costs a
/// fraction of a tree node).
pub(crate) fn insert_sorted(v: &mut Vec<String>, s: &str) {
    if let Err(at) = v.binary_search_by(|x| x.as_str().cmp(s)) {
        v.insert(at, s.to_owned());
    }
}

fn union_sorted(v: &mut Vec<String>, other: Vec<String>) {
    if other.is_empty() {
        return;
    }
    v.extend(other);
    v.sort_unstable();
    v.dedup();
}

/// Keeps the oldest `cap` items of a list that grows: lets it reach twice the cap before
/// sorting and cutting, so a push costs amortized O(log cap).
fn keep_oldest<T: Ord>(v: &mut Vec<T>, cap: usize, force: bool) {
    if v.len() > 2 * cap || (force && v.len() > cap) {
        v.sort_unstable();
        v.dedup();
        v.truncate(cap);
    } else if force {
        v.sort_unstable();
        v.dedup();
    }
}

/// [`keep_oldest`] with a quarter of slack, for lists that are many and often full (the
/// evidence of every hash).
fn keep_oldest_tight<T: Ord>(v: &mut Vec<T>, cap: usize) {
    if v.len() > cap + cap / 4 + 1 {
        v.sort_unstable();
        v.truncate(cap);
        v.shrink_to(cap + cap / 4 + 2);
    }
}

impl PartialOrd for CitedRow {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CitedRow {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

impl CellAgg {
    fn normalize(&mut self, max_evidence: usize) {
        keep_oldest(&mut self.ids, max_evidence, true);
        keep_oldest(&mut self.cited, CITED_ROWS, true);
        self.times.sort_unstable();
        self.ids.shrink_to_fit();
        self.cited.shrink_to_fit();
        self.times.shrink_to_fit();
    }

    fn merge(&mut self, other: CellAgg, max_evidence: usize) {
        self.count += other.count;
        self.last = self.last.max(other.last);
        self.ids.extend(other.ids);
        self.cited.extend(other.cited);
        self.times.extend(other.times);
        union_sorted(&mut self.hashes, other.hashes);
        self.app_hash |= other.app_hash;
        union_sorted(&mut self.app_names, other.app_names);
        union_sorted(&mut self.markers, other.markers);
        self.known_good |= other.known_good;
        keep_oldest(&mut self.ids, max_evidence, false);
        keep_oldest(&mut self.cited, CITED_ROWS, false);
    }
}

/// What the approval rules need from the rows carrying one hash (any outcome): kept for every
/// hash, because the requests a later run decides are not known when the rows are read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct HashAgg {
    /// The oldest `max_evidence` row ids.
    pub ids: Vec<EvidenceId>,
    /// Distinct certificate subjects on the rows (trimmed).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub signers: BTreeSet<String>,
    /// Whether any row carries signature evidence.
    #[serde(default)]
    pub signed: bool,
}

/// The group of a custom rule's findings: (the rule's place among the engine's custom rules,
/// organization, computer as the groupings see it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct CustomKey {
    pub rule: u32,
    pub org: String,
    pub computer: String,
}

/// What a custom detection reports from its rows (a custom rule may match any row, so its
/// rows are kept as this aggregate, not in cells).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CustomAgg {
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<DateTime<Utc>>,
    /// The highest risk found, with the oldest row found at that risk and its reason.
    pub best: Option<(RiskLevel, EvidenceId, String)>,
    /// Distinct outcomes of the rows, sorted.
    pub outcomes: Vec<Outcome>,
    /// Distinct trimmed hostnames, usernames; computer ids; application names and keys; hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub computers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<String>,
    /// The oldest `max_evidence` row ids.
    pub ids: Vec<EvidenceId>,
    /// The oldest [`CITED_ROWS`] rows (computer, host and user filled in).
    pub cited: Vec<CitedRow>,
}

impl CustomAgg {
    fn add(
        &mut self,
        row: &ActionLogRow,
        key: &EvidenceId,
        outcome: Outcome,
        (risk, reason): (RiskLevel, String),
        max_evidence: usize,
    ) {
        self.count += 1;
        self.last = self.last.max(Some(key.at));
        self.take_best(risk, key, reason);
        if let Err(at) = self.outcomes.binary_search(&outcome) {
            self.outcomes.insert(at, outcome);
        }
        fn trimmed(s: Option<&str>) -> Option<&str> {
            s.map(str::trim).filter(|s| !s.is_empty())
        }
        if let Some(h) = trimmed(row.hostname.as_deref()) {
            insert_sorted(&mut self.devices, h);
        }
        if let Some(u) = trimmed(row.username.as_deref()) {
            insert_sorted(&mut self.users, u);
        }
        if let Some(c) = &row.computer_id {
            insert_sorted(&mut self.computers, c.as_str());
        }
        if let Some(n) = detect::application_name(row) {
            insert_sorted(&mut self.names, n);
        }
        let (app, _) = detect::application_key(row);
        if !app.is_empty() {
            insert_sorted(&mut self.keys, &app);
        }
        for h in row_hashes(row).map(str::trim).filter(|h| !h.is_empty()) {
            insert_sorted(&mut self.hashes, h);
        }
        self.ids.push(key.clone());
        keep_oldest(&mut self.ids, max_evidence, false);
        if self.cited.len() < CITED_ROWS || self.cited.iter().any(|r| r.key > *key) {
            let mut cited = CitedRow::of(row, key.clone(), outcome);
            cited.computer_id.clone_from(&row.computer_id);
            cited.hostname.clone_from(&row.hostname);
            cited.username.clone_from(&row.username);
            self.cited.push(cited);
            keep_oldest(&mut self.cited, CITED_ROWS, false);
        }
    }

    /// Keeps the reason of the highest risk, and of the oldest row among equals.
    fn take_best(&mut self, risk: RiskLevel, key: &EvidenceId, reason: String) {
        let better = match &self.best {
            None => true,
            Some((r, k, _)) => risk > *r || (risk == *r && key < k),
        };
        if better {
            self.best = Some((risk, key.clone(), reason));
        }
    }

    fn shift(&mut self, by: u64) {
        self.ids.iter_mut().for_each(|k| k.shift(by));
        self.cited.iter_mut().for_each(|r| r.key.shift(by));
        if let Some((_, k, _)) = &mut self.best {
            k.shift(by);
        }
    }

    fn merge(&mut self, other: CustomAgg, max_evidence: usize) {
        self.count += other.count;
        self.last = self.last.max(other.last);
        if let Some((risk, key, reason)) = other.best {
            self.take_best(risk, &key, reason);
        }
        self.outcomes.extend(other.outcomes);
        self.outcomes.sort_unstable();
        self.outcomes.dedup();
        union_sorted(&mut self.devices, other.devices);
        union_sorted(&mut self.users, other.users);
        union_sorted(&mut self.computers, other.computers);
        union_sorted(&mut self.names, other.names);
        union_sorted(&mut self.keys, other.keys);
        union_sorted(&mut self.hashes, other.hashes);
        self.ids.extend(other.ids);
        keep_oldest(&mut self.ids, max_evidence, false);
        self.cited.extend(other.cited);
        keep_oldest(&mut self.cited, CITED_ROWS, false);
    }

    fn normalize(&mut self, max_evidence: usize) {
        keep_oldest(&mut self.ids, max_evidence, true);
        keep_oldest(&mut self.cited, CITED_ROWS, true);
        self.ids.shrink_to_fit();
        self.cited.shrink_to_fit();
    }
}

/// Compact, mergeable, serializable state of the rows of (part of) a window: what
/// [`Accumulator::finish`] needs from them. Two states of disjoint sets of rows merge into the
/// state of their union ([`WindowState::merge`]); the workflow keeps one per hour between runs.
///
/// Built for one engine configuration: which per-row rules matched and which files are
/// known-good is decided as rows are added, so a state must be rebuilt when the rules change
/// (compare [`Engine::fingerprint`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    pub(crate) total_events: u64,
    pub(crate) blocks: u64,
    pub(crate) audit_only: u64,
    pub(crate) permits: u64,
    pub(crate) ringfenced: u64,
    pub(crate) rows_without_id: u64,
    #[serde(with = "pairs")]
    pub(crate) cells: FxMap<CellKey, CellAgg>,
    #[serde(with = "pairs")]
    pub(crate) hashes: FxMap<String, HashAgg>,
    /// Hash application keys with a permitted row (fleet spread needs "not permitted anywhere").
    /// Looked up for every permitted row, so a hash set (a tree of long hex strings was the
    /// largest single cost of adding a row); serialized sorted.
    #[serde(with = "sorted")]
    pub(crate) permitted: FxSet<String>,
    /// Findings of the custom rules (`[[rules.custom]]`, `Engine::with_rule`), per group.
    #[serde(default, skip_serializing_if = "FxMap::is_empty", with = "pairs")]
    pub(crate) custom: FxMap<CustomKey, CustomAgg>,
}

mod pairs {
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::fx::FxMap;

    pub fn serialize<K, V, S>(map: &FxMap<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize + Ord,
        V: Serialize,
        S: Serializer,
    {
        let mut v: Vec<(&K, &V)> = map.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.serialize(s)
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<FxMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let v: Vec<(K, V)> = Vec::deserialize(d)?;
        Ok(v.into_iter().collect())
    }
}

/// A set kept as a sorted list, so equal states serialize alike.
mod sorted {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::fx::FxSet;

    pub fn serialize<S: Serializer>(set: &FxSet<String>, s: S) -> Result<S::Ok, S::Error> {
        let mut v: Vec<&String> = set.iter().collect();
        v.sort_unstable();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FxSet<String>, D::Error> {
        Ok(Vec::<String>::deserialize(d)?.into_iter().collect())
    }
}

impl WindowState {
    /// Rows (de-duplicated events) the state holds.
    pub fn events(&self) -> u64 {
        self.total_events
    }

    /// Distinct keys the state holds (cells and hashes): what its memory follows.
    pub fn keys(&self) -> usize {
        self.cells.len() + self.hashes.len() + self.custom.len()
    }

    /// Adds one event the caller has already selected (its `dateTime` inside the window the
    /// state is for) and de-duplicated by id, as [`Accumulator::push`] does; a row without a
    /// `dateTime` is ignored. For callers that route rows into several states (one per hour).
    pub fn push_selected(&mut self, engine: &Engine, row: &ActionLogRow) {
        if let Some(at) = row.date_time {
            self.add(&engine.compiled, row, at, None);
        }
    }

    /// Adds one event (already selected and de-duplicated).
    /// `only_hashes`: keep approval facts only for these (folded) hashes; `None` for all.
    fn add(
        &mut self,
        c: &Compiled,
        row: &ActionLogRow,
        at: DateTime<Utc>,
        only_hashes: Option<&FxSet<String>>,
    ) {
        self.total_events += 1;
        let mut seq = 0;
        if row.action_log_id.is_none() && row.e_action_log_id.is_none() {
            self.rows_without_id += 1;
            seq = self.rows_without_id;
        }
        let outcome = detect::outcome(row);
        let (app, app_is_hash) = detect::application_key(row);
        let markers = detect::powershell_markers(row);
        let mut hits = 0u8;
        if !markers.is_empty() {
            hits |= 1;
        }
        if detect::is_lolbin(&c.binaries, row.full_path.as_deref()) {
            if row
                .full_path
                .as_deref()
                .and_then(|p| detect::user_writable(&c.binaries, p))
                .is_some()
            {
                hits |= 2;
            }
            if detect::office_or_browser_parent(c, row).is_some() {
                hits |= 4;
            }
        }
        match outcome {
            Outcome::Block => self.blocks += 1,
            Outcome::AuditOnly => self.audit_only += 1,
            Outcome::Permit => {
                self.permits += 1;
                if app_is_hash && !self.permitted.contains(app.as_ref()) {
                    self.permitted.insert(app.clone().into_owned());
                }
            }
            Outcome::Ringfenced => {
                self.ringfenced += 1;
                hits |= 8;
            }
            Outcome::Other => {}
        }
        let key = EvidenceId::of(row, at, seq);
        // Custom rules look at every accepted row, whatever its outcome.
        if !c.custom.is_empty() {
            let mut group: Option<(String, String)> = None;
            for (r, risk, reason) in c.custom.findings(row, outcome) {
                let (org, computer) = group.get_or_insert_with(|| {
                    (
                        org_key(row),
                        computer_key(row.computer_id.as_ref(), row.hostname.as_deref()),
                    )
                });
                let agg = self
                    .custom
                    .entry(CustomKey {
                        rule: r as u32,
                        org: org.clone(),
                        computer: computer.clone(),
                    })
                    .or_default();
                agg.add(row, &key, outcome, (risk, reason), c.max_evidence.max(1));
            }
        }
        // Approval facts, per hash the row carries (a row listing one hash twice counts once).
        let mut seen_hash: Option<String> = None;
        for h in row_hashes(row) {
            let h = lower(h.trim_ascii());
            if h.is_empty()
                || seen_hash.as_deref() == Some(h.as_ref())
                || only_hashes.is_some_and(|only| !only.contains(h.as_ref()))
            {
                continue;
            }
            let f = match self.hashes.get_mut(h.as_ref()) {
                Some(f) => f,
                None => self.hashes.entry(h.clone().into_owned()).or_default(),
            };
            f.ids.push(key.clone());
            keep_oldest_tight(&mut f.ids, c.max_evidence.max(1));
            if row.cert_exists == Some(true) {
                f.signed = true;
            }
            for s in row_signers(row) {
                f.signed = true;
                if !f.signers.contains(s) {
                    f.signers.insert(s.to_owned());
                }
            }
            seen_hash = Some(h.into_owned());
        }
        // Rows that can take part in no finding end here: they are counted, nothing more.
        let in_cell = matches!(
            outcome,
            Outcome::Block | Outcome::AuditOnly | Outcome::Ringfenced
        ) || hits != 0;
        if !in_cell {
            return;
        }
        // The row's hashes: the application key itself is kept as a flag, others as text.
        let mut app_hash = false;
        let mut other_hashes: [Option<&str>; 2] = [None, None];
        for (slot, h) in other_hashes.iter_mut().zip(row_hashes(row)) {
            let h = h.trim();
            if h == app.as_ref() {
                app_hash = true;
            } else if !h.is_empty() {
                *slot = Some(h);
            }
        }
        let cell = CellKey {
            org: org_key(row),
            app: app.into_owned(),
            app_is_hash,
            computer_id: row.computer_id.clone(),
            hostname: row.hostname.clone(),
            username: row.username.clone(),
            outcome,
            hits,
        };
        let agg = self.cells.entry(cell).or_insert_with(|| CellAgg {
            // Most cells hold a row or two: no room reserved for four (a cited row is large).
            ids: Vec::with_capacity(1),
            cited: Vec::with_capacity(1),
            ..CellAgg::default()
        });
        agg.count += 1;
        agg.last = agg.last.max(Some(at));
        agg.ids.push(key.clone());
        keep_oldest(&mut agg.ids, c.max_evidence.max(1), false);
        let older_than_cited =
            agg.cited.len() < CITED_ROWS || agg.cited.iter().any(|r| r.key > key);
        if older_than_cited {
            agg.cited.push(CitedRow::of(row, key, outcome));
            keep_oldest(&mut agg.cited, CITED_ROWS, false);
        }
        if c.repeat_window.is_some() && outcome == Outcome::Block {
            agg.times.push(at);
        }
        agg.app_hash |= app_hash;
        for h in other_hashes.into_iter().flatten() {
            insert_sorted(&mut agg.hashes, h);
        }
        if let Some(n) = detect::application_name(row) {
            insert_sorted(&mut agg.app_names, n);
        }
        for m in markers {
            insert_sorted(&mut agg.markers, m);
        }
        if !agg.known_good && crate::engine::row_known_good(c, row) {
            agg.known_good = true;
        }
    }

    /// Merges the state of other rows (disjoint from this state's) into this one.
    pub fn merge(&mut self, mut other: WindowState, engine: &Engine) {
        let max_evidence = engine.compiled.max_evidence.max(1);
        let by = self.rows_without_id;
        if by > 0 && other.rows_without_id > 0 {
            for agg in other.cells.values_mut() {
                agg.ids.iter_mut().for_each(|k| k.shift(by));
                agg.cited.iter_mut().for_each(|r| r.key.shift(by));
            }
            for f in other.hashes.values_mut() {
                f.ids.iter_mut().for_each(|k| k.shift(by));
            }
            for agg in other.custom.values_mut() {
                agg.shift(by);
            }
        }
        self.total_events += other.total_events;
        self.blocks += other.blocks;
        self.audit_only += other.audit_only;
        self.permits += other.permits;
        self.ringfenced += other.ringfenced;
        self.rows_without_id += other.rows_without_id;
        self.permitted.extend(other.permitted);
        for (k, v) in other.cells {
            match self.cells.get_mut(&k) {
                Some(mine) => mine.merge(v, max_evidence),
                None => {
                    self.cells.insert(k, v);
                }
            }
        }
        for (k, v) in other.custom {
            match self.custom.get_mut(&k) {
                Some(mine) => mine.merge(v, max_evidence),
                None => {
                    self.custom.insert(k, v);
                }
            }
        }
        for (k, v) in other.hashes {
            let mine = self.hashes.entry(k).or_default();
            mine.ids.extend(v.ids);
            keep_oldest(&mut mine.ids, max_evidence, false);
            mine.signers.extend(v.signers);
            mine.signed |= v.signed;
        }
    }

    /// Sorts and cuts every capped list (after which the state is canonical: equal rows give
    /// equal states, whatever the order they came in).
    pub fn normalize(&mut self, engine: &Engine) {
        let max_evidence = engine.compiled.max_evidence.max(1);
        for agg in self.cells.values_mut() {
            agg.normalize(max_evidence);
        }
        for f in self.hashes.values_mut() {
            keep_oldest(&mut f.ids, max_evidence, true);
            f.ids.shrink_to_fit();
        }
        for agg in self.custom.values_mut() {
            agg.normalize(max_evidence);
        }
        self.cells.shrink_to_fit();
        self.hashes.shrink_to_fit();
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum RowKey {
    Num(i64),
    Str(EActionLogId),
}

/// Streams rows into a [`WindowState`] for one window and evaluates it.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use policy_engine::{Engine, EngineConfig, Input};
///
/// let engine = Engine::new(EngineConfig::default())?;
/// let now = Utc.with_ymd_and_hms(2026, 5, 14, 14, 0, 0).unwrap();
/// let meta = Input::new(now, now - chrono::Duration::hours(24), now);
/// let mut acc = engine.accumulator(&meta);
/// # let rows: Vec<threatlocker_api::ActionLogRow> = Vec::new();
/// for row in &rows {
///     acc.push(row);
/// }
/// let decisions = acc.finish();
/// assert_eq!(decisions.blocks.total_events, 0);
/// # Ok::<(), policy_engine::ConfigError>(())
/// ```
///
/// Rows are selected (`window_start <= dateTime < window_end`) and de-duplicated by id as they
/// are pushed; a state merged in with [`merge_state`](Self::merge_state) must hold other rows
/// than the pushed ones (the workflow keeps disjoint hours).
///
/// Pushed rows add approval facts only for the hashes of `meta`'s pending requests (what this
/// evaluation decides), so a state from [`into_state`](Self::into_state) serves those requests
/// only. A state kept across runs, whose requests change, is built with
/// [`WindowState::push_selected`], which keeps them for every hash.
pub struct Accumulator<'e, 'i> {
    engine: &'e Engine,
    meta: &'i Input,
    seen: FxSet<RowKey>,
    ignored: Ignored,
    state: WindowState,
    /// The (folded) hashes of the pending requests of `meta`: the only ones whose approval
    /// facts pushed rows add (as a batch evaluation needs).
    requested_hashes: FxSet<String>,
}

impl<'e, 'i> Accumulator<'e, 'i> {
    pub(crate) fn new(engine: &'e Engine, meta: &'i Input) -> Self {
        Self {
            engine,
            meta,
            seen: FxSet::default(),
            ignored: Ignored::default(),
            state: WindowState::default(),
            requested_hashes: crate::engine::requested_hashes(meta),
        }
    }

    /// Adds one row; returns whether it was counted (in the window, not a duplicate).
    pub fn push(&mut self, row: &ActionLogRow) -> bool {
        let Some(at) = row.date_time else {
            self.ignored.undated_rows += 1;
            return false;
        };
        if at < self.meta.window_start || at >= self.meta.window_end {
            self.ignored.outside_window += 1;
            return false;
        }
        let id = match (&row.action_log_id, &row.e_action_log_id) {
            (Some(n), _) => Some(RowKey::Num(n.get())),
            (None, Some(e)) => Some(RowKey::Str(e.clone())),
            (None, None) => None,
        };
        if let Some(id) = id {
            if !self.seen.insert(id) {
                self.ignored.duplicate_rows += 1;
                return false;
            }
        }
        self.state
            .add(&self.engine.compiled, row, at, Some(&self.requested_hashes));
        true
    }

    /// Merges the state of other rows of the window (see the type's documentation).
    pub fn merge_state(&mut self, other: WindowState) {
        self.state.merge(other, self.engine);
    }

    /// The state so far.
    pub fn state(&self) -> &WindowState {
        &self.state
    }

    /// What was ignored so far (rows outside the window, duplicates, undated rows).
    pub fn ignored(&self) -> &Ignored {
        &self.ignored
    }

    /// The state, normalized, for keeping (the de-duplication ids are dropped).
    pub fn into_state(mut self) -> WindowState {
        self.state.normalize(self.engine);
        self.state
    }

    /// Evaluates the window: the decisions of `engine.evaluate` on the same rows.
    pub fn finish(mut self) -> Decisions {
        drop(std::mem::take(&mut self.seen));
        self.state.normalize(self.engine);
        let mut ignored = self.ignored;
        ignored.rows_without_id = self.state.rows_without_id;
        crate::engine::finish(self.engine, self.meta, self.state, ignored)
    }
}
