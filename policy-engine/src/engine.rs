//! [`Engine`]: validated configuration plus the pure `evaluate`.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};
use threatlocker_api::{
    ActionLogId, ActionLogRow, ApprovalRequest, ApprovalRequestId, ComputerId, ComputerMode,
    OrganizationId,
};

use crate::accumulate::{
    Accumulator, CellAgg, CellKey, CitedRow, CustomAgg, CustomKey, EvidenceId, HashAgg,
    WindowState, HIT_RULES,
};
use crate::config::{ApprovalScope, Compiled, ConfigError, EngineConfig};
use crate::decisions::*;
use crate::detect::{self, Outcome};
use crate::fx::{FxMap, FxSet};
use crate::input::{Input, PendingApproval};
use crate::rules::{ids, rule, RiskLevel};
use crate::text::{self, clean, lower, truncate_chars};

/// The policy engine: a validated configuration. Cheap to share; `evaluate` takes `&self`.
#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
    pub(crate) compiled: Compiled,
}

impl Engine {
    /// Validates the configuration once. The error names the offending key and value.
    pub fn new(config: EngineConfig) -> Result<Self, ConfigError> {
        let compiled = config.compile()?;
        Ok(Self { config, compiled })
    }

    /// The configuration the engine was built from.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Evaluates one window. Pure and deterministic: no I/O, no clock, sorted outputs.
    ///
    /// Defined as pushing every row of `input.events` into [`Engine::accumulator`] and finishing
    /// it, so a streaming run and a batch run decide alike.
    pub fn evaluate(&self, input: &Input) -> Decisions {
        let mut acc = self.accumulator(input);
        for row in &input.events {
            acc.push(row);
        }
        acc.finish()
    }

    /// A streaming evaluation of the window and pending approvals of `meta` (its `events` are
    /// not read: push rows into the accumulator, or merge kept [`WindowState`]s).
    pub fn accumulator<'e, 'i>(&'e self, meta: &'i Input) -> Accumulator<'e, 'i> {
        Accumulator::new(self, meta)
    }

    /// A fingerprint of the configuration: a [`WindowState`] is valid only for the
    /// configuration it was built with (which rows matched which per-row rule depends on it).
    pub fn fingerprint(&self) -> String {
        let text = serde_json::to_string(&self.config).unwrap_or_default();
        if self.compiled.custom.is_empty() {
            return format!("{:032x}", text::fnv128(&[&text]));
        }
        // Rules registered in Rust are not in the configuration: their ids count too.
        let rules = format!("{:?}", self.compiled.custom);
        format!("{:032x}", text::fnv128(&[&text, &rules]))
    }
}

/// Finishes an accumulator: the decisions of a window from its rows' state.
pub(crate) fn finish(
    engine: &Engine,
    meta: &Input,
    state: WindowState,
    ignored: Ignored,
) -> Decisions {
    Evaluation::new(&engine.compiled, meta).run(state, ignored)
}

/// A row's hashes as given (`sha256Hash`, then `hash`).
pub(crate) fn row_hashes(row: &ActionLogRow) -> impl Iterator<Item = &str> {
    [row.sha256_hash.as_deref(), row.hash.as_deref()]
        .into_iter()
        .flatten()
}

/// What a request says about its file: its hashes (`sha256`, `hash`, and the SHA-256 and hash
/// inside its `json`) and the certificates inside its `json`.
#[derive(Default)]
struct RequestFile {
    /// Folded (trimmed, lower-case), non-empty, distinct.
    hashes: Vec<String>,
    /// The hash to show: a SHA-256 first, as given.
    display_hash: Option<String>,
    /// Certificate subjects from `json` (trimmed, non-empty) and whether each is valid
    /// (`validCert` not false).
    certs: Vec<(String, bool)>,
}

/// The value of `key` in a JSON object, the key matched case-insensitively (the `json` field
/// mixes `fullPath`/`fullpath` spellings).
fn json_get<'v>(
    obj: &'v serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'v serde_json::Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn json_str<'v>(obj: &'v serde_json::Map<String, serde_json::Value>, key: &str) -> Option<&'v str> {
    json_get(obj, key)
        .and_then(|v| v.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Reads a request's file facts. A `json` that is not a JSON object is ignored (the request
/// then has only its own fields).
fn request_file(r: &ApprovalRequest) -> RequestFile {
    let parsed: Option<serde_json::Map<String, serde_json::Value>> = r
        .json
        .as_deref()
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .and_then(|v| match v {
            serde_json::Value::Object(m) => Some(m),
            _ => None,
        });
    let json = parsed.as_ref();
    let own = |s: Option<&'_ str>| {
        s.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let json_sha = json.and_then(|j| json_str(j, "sha256").or_else(|| json_str(j, "sha256Hash")));
    let json_hash = json.and_then(|j| json_str(j, "hash"));
    let ordered = [
        own(r.sha256.as_deref()),
        json_sha.map(str::to_owned),
        own(r.hash.as_deref()),
        json_hash.map(str::to_owned),
    ];
    let mut out = RequestFile {
        display_hash: ordered.iter().flatten().next().cloned(),
        ..RequestFile::default()
    };
    for h in ordered.iter().flatten() {
        let f = text::fold(h);
        if !out.hashes.contains(&f) {
            out.hashes.push(f);
        }
    }
    if let Some(j) = json {
        let mut add = |subject: &str, valid: bool| {
            let s = subject.trim();
            if !s.is_empty() && !out.certs.iter().any(|(x, _)| x == s) {
                out.certs.push((s.to_owned(), valid));
            }
        };
        for list in ["certs", "certificates"] {
            for cert in json_get(j, list)
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                match cert {
                    serde_json::Value::String(s) => add(s, true),
                    serde_json::Value::Object(o) => {
                        if let Some(s) = json_str(o, "subject") {
                            let valid = json_get(o, "validCert")
                                .and_then(|v| v.as_bool())
                                .unwrap_or(true);
                            add(s, valid);
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(s) = json_str(j, "cert") {
            add(s, true);
        }
    }
    out
}

/// The (folded) hashes of the pending requests of an input.
pub(crate) fn requested_hashes(input: &Input) -> FxSet<String> {
    input
        .approvals
        .iter()
        .filter(|a| !a.request.status_id.is_some_and(|s| s.is_actioned()))
        .flat_map(|a| request_file(&a.request).hashes)
        .collect()
}

/// Detection types that implicate the file itself, and so hold an approval request for it.
const IMPLICATING_TYPES: &[&str] = &[
    "suspicious_execution",
    "lolbin_execution",
    "policy_bypass",
    "fleet_spread",
];

/// The rule that makes a detection implicate its file: its own, else the first also-matched
/// rule of an implicating type. A custom rule's finding implicates the file it names: the MSP
/// wrote the rule to say such executions are suspicious.
fn implicating_rule(d: &SecurityEvent) -> Option<&'static str> {
    if rule(d.rule).is_none() {
        return Some(d.rule);
    }
    let implicates = |id: &str| rule(id).is_some_and(|r| IMPLICATING_TYPES.contains(&r.event_type));
    if implicates(d.rule) {
        return Some(d.rule);
    }
    d.also_matched.iter().copied().find(|id| implicates(id))
}

/// A computer incident's key: organization + computer.
pub(crate) fn computer_incident(org: &str, computer: &str) -> String {
    format!("tl:inc:{:032x}", text::fnv128(&["computer", org, computer]))
}

/// A file incident's key (fleet spread, policy gap): organization + application key.
fn file_incident(org: &str, app: &str) -> String {
    format!(
        "tl:inc:{:032x}",
        text::fnv128(&["file", org, &app.to_lowercase()])
    )
}

/// Evidence id of a row: `actionLogId`, else `eActionLogId`.
pub(crate) fn row_id(row: &ActionLogRow) -> String {
    match (&row.action_log_id, &row.e_action_log_id) {
        (Some(id), _) => id.to_string(),
        (None, Some(e)) => e.to_string(),
        (None, None) => "(no id)".to_owned(),
    }
}

pub(crate) fn row_order(a: &ActionLogRow, b: &ActionLogRow) -> std::cmp::Ordering {
    fn key(r: &ActionLogRow) -> (Option<DateTime<Utc>>, Option<ActionLogId>, Option<&str>) {
        let e = r.e_action_log_id.as_ref().map(|e| e.as_str());
        (r.date_time, r.action_log_id, e)
    }
    key(a).cmp(&key(b))
}

/// Highest number of times within any span of `window` (times sorted).
fn max_in_span(times: &[DateTime<Utc>], window: Option<chrono::Duration>) -> usize {
    let Some(w) = window else { return times.len() };
    let (mut best, mut lo) = (0, 0);
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= w {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

fn join_sorted<'x>(it: impl Iterator<Item = &'x str>) -> Option<String> {
    let set: BTreeSet<&str> = it.map(str::trim).filter(|s| !s.is_empty()).collect();
    if set.is_empty() {
        None
    } else {
        Some(set.into_iter().collect::<Vec<_>>().join(", "))
    }
}

/// A detection's key.
pub(crate) fn detection_key(parts: &[&str]) -> String {
    format!("tl:det:{:032x}", text::fnv128(parts))
}

/// Certificate subjects on a row (`cert`, `certs`, `certificates[].subject`), trimmed, non-empty.
pub(crate) fn row_signers(row: &ActionLogRow) -> impl Iterator<Item = &str> {
    row.cert
        .iter()
        .chain(row.certs.iter().flatten())
        .chain(
            row.certificates
                .iter()
                .flatten()
                .filter_map(|c| c.subject.as_ref()),
        )
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
}

/// Rows a set of rules found, before the rows are shared out among detections.
struct Group {
    rule: &'static str,
    org: String,
    app: Option<String>,
    /// The computer, for detections on one computer; `None` for file-wide ones (fleet spread,
    /// policy gap), whose incident is the file.
    computer: Option<String>,
    /// The user, for repeated denials of a (user, computer) pair.
    user: Option<String>,
    rows: Vec<u32>,
    /// Weaker rules that matched the same rows.
    also: BTreeSet<&'static str>,
    /// Rows left to a stronger detection.
    shared_rows: u64,
    extra_reason: String,
    computers_affected: u64,
    patient_zero: Option<Sighting>,
}

impl Group {
    fn new(
        rule: &'static str,
        org: &str,
        app: Option<&str>,
        computer: Option<&str>,
        rows: Vec<u32>,
    ) -> Self {
        Self {
            rule,
            org: org.to_owned(),
            app: app.map(str::to_owned),
            computer: computer.map(str::to_owned),
            user: None,
            rows,
            also: BTreeSet::new(),
            shared_rows: 0,
            extra_reason: String::new(),
            computers_affected: 0,
            patient_zero: None,
        }
    }

    /// The incident the group's detection belongs to.
    fn incident(&self) -> String {
        match &self.computer {
            Some(computer) => computer_incident(&self.org, computer),
            None => file_incident(&self.org, self.app.as_deref().unwrap_or("")),
        }
    }
}

/// The rows one per-row rule owns on one (organization, application, computer), and the weaker
/// per-row rules that matched them too.
#[derive(Default)]
struct RowGroup {
    rows: Vec<u32>,
    also: BTreeSet<&'static str>,
}

/// What the approval rules look up, built once per evaluation.
struct ApprovalFacts<'x> {
    hash_facts: &'x FxMap<String, HashAgg>,
    /// Detection keys per (lower-case) hash.
    hash_detections: &'x FxMap<String, Vec<String>>,
    /// Detections implicating a file, per (lower-case) application key: (key, rule).
    implicated: &'x FxMap<String, Vec<(&'x str, &'static str)>>,
}

/// One cell with what the groupings derive from its key at finish.
struct Cell {
    key: CellKey,
    agg: CellAgg,
    /// The computer as the groupings see it.
    computer: String,
    /// The user as repeated denials see it (empty without one).
    user: String,
    /// The per-row rule owning the cell's rows, and the others its rows matched.
    owner: Option<&'static str>,
    also: Vec<&'static str>,
}

/// Rows in `rows` (cells).
fn count(cells: &[Cell], rows: &[u32]) -> u64 {
    rows.iter().map(|&i| cells[i as usize].agg.count).sum()
}

/// The oldest row of `rows` (cells; never empty, and every cell cites its oldest row).
fn first_row<'x>(cells: &'x [Cell], rows: &[u32]) -> &'x CitedRow {
    rows.iter()
        .filter_map(|&i| cells[i as usize].agg.cited.first())
        .min()
        .expect("a group has rows, and a cell cites its oldest row")
}

/// The newest time among `rows` (cells).
fn last_time(cells: &[Cell], rows: &[u32]) -> Option<DateTime<Utc>> {
    rows.iter()
        .filter_map(|&i| cells[i as usize].agg.last)
        .max()
}

/// Block times of `rows` (cells), sorted (kept only with a repeat window).
fn sorted_times(cells: &[Cell], rows: &[u32]) -> Vec<DateTime<Utc>> {
    let mut t: Vec<DateTime<Utc>> = rows
        .iter()
        .flat_map(|&i| cells[i as usize].agg.times.iter().copied())
        .collect();
    t.sort_unstable();
    t
}

/// The oldest `k` rows of `rows` (cells), oldest first.
fn oldest_cited<'x>(cells: &'x [Cell], rows: &[u32], k: usize) -> Vec<&'x CitedRow> {
    let mut all: Vec<&CitedRow> = rows
        .iter()
        .flat_map(|&i| cells[i as usize].agg.cited.iter())
        .collect();
    all.sort_unstable();
    all.truncate(k);
    all
}

struct Evaluation<'c, 'a> {
    c: &'c Compiled,
    input: &'a Input,
    org_names: BTreeMap<&'a str, &'a str>,
    secure: FxMap<String, bool>,
}

impl<'c, 'a> Evaluation<'c, 'a> {
    fn new(c: &'c Compiled, input: &'a Input) -> Self {
        let mut org_names = BTreeMap::new();
        for top in &input.organizations {
            for o in top.flatten() {
                if let (Some(id), Some(name)) = (o.organization_id.as_ref(), o.label()) {
                    org_names.insert(id.as_str(), name);
                }
            }
        }
        let mut secure = FxMap::default();
        for comp in &input.computers {
            let is_secure = comp.effective_mode() == Some(ComputerMode::Secure);
            if let Some(id) = &comp.computer_id {
                secure.insert(id.as_str().to_owned(), is_secure);
            }
            for name in [comp.hostname.as_deref(), comp.computer_name.as_deref()]
                .into_iter()
                .flatten()
            {
                secure
                    .entry(name.trim().to_lowercase())
                    .or_insert(is_secure);
            }
        }
        Self {
            c,
            input,
            org_names,
            secure,
        }
    }

    fn org_name(&self, org: &str, row: Option<&ActionLogRow>) -> Option<String> {
        self.org_names
            .get(org)
            .map(|s| (*s).to_owned())
            .or_else(|| row.and_then(|r| r.organization_name.clone()))
    }

    fn is_secure_cell(&self, k: &CellKey) -> bool {
        if let Some(v) = k
            .computer_id
            .as_ref()
            .and_then(|id| self.secure.get(id.as_str()))
        {
            return *v;
        }
        k.hostname
            .as_deref()
            .and_then(|h| self.secure.get(&h.trim().to_lowercase()))
            .copied()
            .unwrap_or(false)
    }

    fn run(self, state: WindowState, ignored: Ignored) -> Decisions {
        let input = self.input;
        let c = self.c;
        let mut ignored = ignored;

        // Cells in a fixed order, with what the groupings derive from their keys. Policy bypass
        // is decided here: it depends on the computers' modes, which are the run's.
        let mut cells: Vec<Cell> = state
            .cells
            .into_iter()
            // Every cell built from rows cites its oldest row; a kept state read back damaged
            // may not, and is skipped rather than trusted.
            .filter(|(_, agg)| agg.count > 0 && !agg.cited.is_empty())
            .map(|(key, agg)| {
                let mut hits: Vec<&'static str> = Vec::new();
                for (bit, id) in HIT_RULES.iter().enumerate() {
                    if *id == ids::RINGFENCE
                        && key.outcome == Outcome::AuditOnly
                        && self.is_secure_cell(&key)
                    {
                        hits.push(ids::POLICY_BYPASS);
                    }
                    if key.hits & (1 << bit) != 0 {
                        hits.push(id);
                    }
                }
                let (owner, also) = match hits.split_first() {
                    Some((o, rest)) => (Some(*o), rest.to_vec()),
                    None => (None, Vec::new()),
                };
                let mut agg = agg;
                for r in &mut agg.cited {
                    r.with_cell(&key);
                }
                if agg.app_hash {
                    crate::accumulate::insert_sorted(&mut agg.hashes, &key.app);
                }
                Cell {
                    computer: key.computer(),
                    user: key.user(),
                    owner,
                    also,
                    key,
                    agg,
                }
            })
            .collect();
        cells.sort_by(|a, b| a.key.cmp(&b.key));
        let cells = &cells[..];
        // Custom rules' groups, in a fixed order (a damaged kept group is skipped).
        let mut custom: Vec<(CustomKey, CustomAgg)> = state
            .custom
            .into_iter()
            .filter(|(_, g)| g.count > 0 && !g.cited.is_empty() && g.best.is_some())
            .collect();
        custom.sort_by(|a, b| a.0.cmp(&b.0));

        // Hashes of requests whose file is known-good by the request alone (a signed built-in
        // installer): such a file blocked widely is a policy gap, not a fleet spread.
        let mut known_good_hashes: FxSet<String> = FxSet::default();
        for a in input
            .approvals
            .iter()
            .filter(|a| !a.request.status_id.is_some_and(|s| s.is_actioned()))
        {
            let file = request_file(&a.request);
            if self
                .request_known_good(a, &file, &BTreeSet::new())
                .is_some()
            {
                known_good_hashes.extend(file.hashes);
            }
        }

        // Aggregation, keyed by cell.
        let mut blocks = BlockAnalysis {
            total_events: state.total_events,
            blocks: state.blocks,
            audit_only: state.audit_only,
            permits: state.permits,
            ringfenced: state.ringfenced,
            ..Default::default()
        };
        let mut blocked_apps: FxSet<&str> = FxSet::default();
        let mut repeat: FxMap<(&str, &str, &str), Vec<u32>> = FxMap::default();
        // (organization, computer, user): rows without a user count under the computer alone.
        let mut denials: FxMap<(&str, &str, &str), Vec<u32>> = FxMap::default();
        let mut fleet: FxMap<(&str, &str), Vec<u32>> = FxMap::default();
        // Per-row rules: (owning rule, organization, application, computer).
        let mut row_groups: FxMap<(&'static str, &str, &str, &str), RowGroup> = FxMap::default();
        for (i, cell) in cells.iter().enumerate() {
            let i = i as u32;
            let k = &cell.key;
            if k.outcome == Outcome::Block {
                blocked_apps.insert(&k.app);
                repeat
                    .entry((&k.org, &k.app, &cell.computer))
                    .or_default()
                    .push(i);
                denials
                    .entry((&k.org, &cell.computer, &cell.user))
                    .or_default()
                    .push(i);
                if k.app_is_hash {
                    fleet.entry((&k.org, &k.app)).or_default().push(i);
                }
            }
            if let Some(owner) = cell.owner {
                let g = row_groups
                    .entry((owner, &k.org, &k.app, &cell.computer))
                    .or_default();
                g.rows.push(i);
                g.also.extend(cell.also.iter().copied());
            }
        }
        blocks.unique_applications_blocked = blocked_apps.len() as u64;

        let mut groups: Vec<Group> = Vec::new();
        // At least the organization's threshold of blocks (within the repeat window, if set).
        let reaches_threshold = |org: &str, rows: &[u32]| {
            let threshold = c.org(org_id(org).as_ref()).threshold as usize;
            let n = count(cells, rows) as usize;
            n >= threshold
                && (c.repeat_window.is_none()
                    || max_in_span(&sorted_times(cells, rows), c.repeat_window) >= threshold)
        };

        // Repeat blocks.
        for ((org, app, computer), rows) in &repeat {
            if !reaches_threshold(org, rows) {
                continue;
            }
            let first = first_row(cells, rows);
            let first_full = first.to_row();
            blocks.repeat_blocks.push(RepeatBlock {
                organization_id: org_id(org),
                application_key: (*app).to_owned(),
                application: detect::application_name(&first_full)
                    .unwrap_or(app)
                    .to_owned(),
                computer_id: first.computer_id.clone(),
                device: first.hostname.clone(),
                count: count(cells, rows),
                first_seen: Some(first.key.at),
                last_seen: last_time(cells, rows),
                action_log_ids: self.evidence(cells, rows),
            });
            groups.push(Group::new(
                ids::REPEAT_BLOCK,
                org,
                Some(app),
                Some(computer),
                rows.clone(),
            ));
        }

        // Repeated denials: one finding per (user, computer) pair.
        for ((org, computer, user), rows) in &denials {
            if !reaches_threshold(org, rows) {
                continue;
            }
            let apps: BTreeSet<&str> = rows
                .iter()
                .map(|&i| cells[i as usize].key.app.as_str())
                .collect();
            let first = first_row(cells, rows);
            let n = count(cells, rows);
            blocks.denials.push(DenialCount {
                organization_id: org_id(org),
                user: (!user.is_empty()).then(|| first.username.clone()).flatten(),
                device: first.hostname.clone(),
                computer_id: first.computer_id.clone(),
                count: n,
                applications: apps.len() as u64,
                action_log_ids: self.evidence(cells, rows),
            });
            // One application is a repeat block, reported as such.
            if apps.len() >= 2 {
                let mut g = Group::new(
                    ids::REPEATED_DENIALS,
                    org,
                    None,
                    Some(computer),
                    rows.clone(),
                );
                g.user = (!user.is_empty()).then(|| (*user).to_owned());
                g.extra_reason = format!("{} blocks across {} applications", n, apps.len());
                groups.push(g);
            }
        }

        // Fleet spread: hashes blocked on enough computers and permitted nowhere in the window.
        // A known-good file blocked widely is a policy gap instead.
        for ((org, app), rows) in &fleet {
            let computers: BTreeSet<&str> = rows
                .iter()
                .map(|&i| cells[i as usize].computer.as_str())
                .collect();
            if (computers.len() as u64) < u64::from(c.fleet_threshold)
                || state.permitted.contains(*app)
            {
                continue;
            }
            let folded = lower(app);
            let known_good = c.trusted_hashes.contains(folded.as_ref())
                || known_good_hashes.contains(folded.as_ref())
                || rows.iter().any(|&i| cells[i as usize].agg.known_good);
            let pz = first_row(cells, rows);
            let rule = if known_good {
                ids::POLICY_GAP
            } else {
                ids::FLEET_SPREAD
            };
            let mut g = Group::new(rule, org, Some(app), None, rows.clone());
            g.extra_reason = format!("blocked on {} computers", computers.len());
            g.computers_affected = computers.len() as u64;
            g.patient_zero = Some(Sighting {
                computer_id: pz.computer_id.clone(),
                device: pz.hostname.clone(),
                at: Some(pz.key.at),
                action_log_id: Some(pz.key.text()),
            });
            groups.push(g);
        }

        // Per-row detections.
        for ((rule_id, org, app, computer), rg) in row_groups {
            let mut g = Group::new(rule_id, org, Some(app), Some(computer), rg.rows);
            g.also = rg.also;
            groups.push(g);
        }

        // The same rows never yield two detections: the strongest claims them (see `claim`).
        let groups = self.claim(cells, groups);

        // Build and sort detections (with their rows, for tickets).
        let mut detections: Vec<(SecurityEvent, Vec<u32>)> = groups
            .into_iter()
            .map(|g| self.detection(cells, g))
            .collect();
        // Custom rules (`[[rules.custom]]`, `Engine::with_rule`), grouped like the per-row ones.
        detections.extend(crate::custom::detections(
            &c.custom,
            &custom,
            cells.len() as u32,
            |org, row| self.org_name(org, Some(row)),
        ));
        sort_by_borrowed_key!(detections, |x| (
            Reverse(x.0.risk_level),
            x.0.event_type,
            &x.0.organization_id,
            &x.0.device,
            &x.0.application,
            &x.0.key,
        ));
        sort_by_borrowed_key!(blocks.repeat_blocks, |x| (
            &x.organization_id,
            Reverse(x.count),
            &x.application_key,
            &x.computer_id,
            &x.device,
        ));
        sort_by_borrowed_key!(blocks.denials, |x| (
            &x.organization_id,
            Reverse(x.count),
            &x.device,
            &x.user,
            &x.computer_id,
            &x.action_log_ids,
        ));

        let tickets = self.tickets(cells, &custom, &detections);
        let detections: Vec<SecurityEvent> = detections.into_iter().map(|(d, _)| d).collect();

        // Approvals: what the approval rules need from the rows of each hash was gathered as the
        // rows came in (see `HashAgg`).
        let hash_facts = &state.hashes;
        let mut hash_detections: FxMap<String, Vec<String>> = FxMap::default();
        let mut implicated: FxMap<String, Vec<(&str, &'static str)>> = FxMap::default();
        for d in &detections {
            for h in &d.hashes {
                hash_detections
                    .entry(h.to_lowercase())
                    .or_default()
                    .push(d.key.clone());
            }
            if let (Some(app), Some(rule_id)) = (&d.application_key, implicating_rule(d)) {
                implicated
                    .entry(app.to_lowercase())
                    .or_default()
                    .push((d.key.as_str(), rule_id));
            }
        }
        let facts = ApprovalFacts {
            hash_facts,
            hash_detections: &hash_detections,
            implicated: &implicated,
        };
        let mut approvals: Vec<ApprovalDecision> = Vec::new();
        // The first request with each id is the one decided (and the one a permit applies to).
        let mut first_request: BTreeMap<&ApprovalRequestId, &PendingApproval> = BTreeMap::new();
        for pa in &input.approvals {
            if let Some(id) = &pa.request.approval_request_id {
                match first_request.entry(id) {
                    Entry::Occupied(_) => {
                        ignored.duplicate_approvals += 1;
                        continue;
                    }
                    Entry::Vacant(v) => {
                        v.insert(pa);
                    }
                }
            }
            if pa.request.status_id.is_some_and(|s| s.is_actioned()) {
                ignored.approvals_not_pending += 1;
                continue;
            }
            approvals.push(self.approval(pa, &facts));
        }
        sort_by_borrowed_key!(approvals, |x| (
            &x.request_id,
            &x.organization_id,
            &x.path,
            &x.hash,
            &x.requested_by,
            &x.device,
        ));
        let policy_changes = approvals
            .iter()
            .filter(|a| a.auto_approve)
            .filter_map(|a| {
                let pa = first_request.get(a.request_id.as_ref()?)?;
                let r = &pa.request;
                Some(PlannedPolicyChange {
                    request_id: r.approval_request_id.clone()?,
                    organization_id: r.organization_id.clone(),
                    scope: a.scope.unwrap_or_default(),
                    computer_id: r.computer_id.clone(),
                    computer_group_id: r.computer_group_id.clone(),
                    application_id: pa
                        .application
                        .as_ref()
                        .and_then(|x| x.application_id.clone()),
                    application: a.application.clone(),
                    hash: a.hash.clone(),
                    path: a.path.clone(),
                    rule: a.rule,
                })
            })
            .collect();

        let notifications = self.notifications(&detections, &approvals);

        Decisions {
            now: input.now,
            window_start: input.window_start,
            window_end: input.window_end,
            ignored,
            approvals,
            blocks,
            detections,
            tickets,
            policy_changes,
            notifications,
        }
    }

    /// The oldest `max_evidence` evidence ids of `rows` (cells), oldest first.
    fn evidence(&self, cells: &[Cell], rows: &[u32]) -> Vec<String> {
        let mut all: Vec<&EvidenceId> = rows
            .iter()
            .flat_map(|&i| cells[i as usize].agg.ids.iter())
            .collect();
        all.sort_unstable();
        all.truncate(self.c.max_evidence);
        all.into_iter().map(EvidenceId::text).collect()
    }

    /// A detection's risk level and the least stopped outcome among `rows`: the rule's default,
    /// one level up for rules that escalate when the action was not stopped.
    fn assess(&self, cells: &[Cell], rule_id: &str, rows: &[u32]) -> (RiskLevel, &'static str) {
        let r = rule(rule_id).unwrap_or(&crate::rules::RULES[0]);
        let outcomes: BTreeSet<Outcome> = rows
            .iter()
            .map(|&i| cells[i as usize].key.outcome)
            .collect();
        let action_taken = Outcome::least_stopped_label(|o| outcomes.contains(&o));
        let mut risk = r.default_risk.unwrap_or(RiskLevel::Medium);
        if r.escalates_when_not_stopped && outcomes.iter().any(|o| o.not_stopped()) {
            risk = risk.escalated();
        }
        (risk, action_taken)
    }

    /// Shares the rows out so that no row is in two detections: groups are taken strongest
    /// first (risk, then the rule table's order); each keeps the rows no stronger group took.
    /// A group left with no rows yields no detection: its rule is listed as also matched by
    /// the groups that took its rows (as a weaker group that kept some rows also is).
    fn claim(&self, cells: &[Cell], mut groups: Vec<Group>) -> Vec<Group> {
        let risks: Vec<RiskLevel> = groups
            .iter()
            .map(|g| self.assess(cells, g.rule, &g.rows).0)
            .collect();
        let mut order: Vec<usize> = (0..groups.len()).collect();
        sort_by_borrowed_key!(order, |i| (
            Reverse(risks[*i]),
            crate::rules::strength(groups[*i].rule),
            &groups[*i].org,
            &groups[*i].app,
            &groups[*i].computer,
            &groups[*i].user,
        ));
        const FREE: u32 = u32::MAX;
        let mut owner: Vec<u32> = vec![FREE; cells.len()];
        let mut keep = vec![true; groups.len()];
        let mut also: Vec<(usize, &'static str)> = Vec::new();
        for gi in order {
            let g = &mut groups[gi];
            let mut owners: BTreeSet<u32> = BTreeSet::new();
            let mine: Vec<u32> = g
                .rows
                .iter()
                .copied()
                .filter(|&r| match owner[r as usize] {
                    FREE => true,
                    o => {
                        owners.insert(o);
                        false
                    }
                })
                .collect();
            for &o in &owners {
                also.push((o as usize, g.rule));
                also.extend(g.also.iter().map(|a| (o as usize, *a)));
            }
            if mine.is_empty() {
                keep[gi] = false;
                continue;
            }
            for &r in &mine {
                owner[r as usize] = gi as u32;
            }
            g.shared_rows = count(cells, &g.rows) - count(cells, &mine);
            g.rows = mine;
        }
        for (o, rule_id) in also {
            if groups[o].rule != rule_id {
                groups[o].also.insert(rule_id);
            }
        }
        groups
            .into_iter()
            .zip(keep)
            .filter_map(|(g, k)| k.then_some(g))
            .collect()
    }

    /// Why a request's file is known-good, if it is: a trusted hash (its own or the SHA-256 in
    /// its `json`), a trusted valid signer, or a valid signature on a file whose matching
    /// application is a built-in or researched by ThreatLocker. `row_signers` adds the signers
    /// seen on the file's action-log rows.
    fn request_known_good(
        &self,
        pa: &PendingApproval,
        file: &RequestFile,
        row_signers: &BTreeSet<String>,
    ) -> Option<(Option<&'static str>, String)> {
        let c = self.c;
        if let Some(h) = file.hashes.iter().find(|h| c.trusted_hashes.contains(*h)) {
            return Some((
                Some(ids::AUTO_TRUSTED_HASH),
                format!("its hash {h} is on trusted_hashes"),
            ));
        }
        let valid: Vec<&str> = file
            .certs
            .iter()
            .filter(|(_, v)| *v)
            .map(|(s, _)| s.as_str())
            .chain(row_signers.iter().map(String::as_str))
            .collect();
        if let Some(s) = valid
            .iter()
            .find(|s| c.trusted_signers.iter().any(|t| signer_is(s, t)))
        {
            return Some((
                Some(ids::AUTO_TRUSTED_SIGNER),
                format!("signed by trusted signer \"{}\"", clean(s)),
            ));
        }
        let signer = valid.first()?;
        let app = pa.application.as_ref();
        if let Some(a) = app.filter(|a| a.is_master_owned()) {
            return Some((
                None,
                format!(
                    "signed by \"{}\" and matches the built-in application {}",
                    clean(signer),
                    clean(a.display_name().unwrap_or("(unnamed)"))
                ),
            ));
        }
        if app.is_some() && pa.research.is_some() {
            return Some((
                None,
                format!(
                    "signed by \"{}\" and its application is researched by ThreatLocker",
                    clean(signer)
                ),
            ));
        }
        None
    }

    fn detection(&self, cells: &[Cell], g: Group) -> (SecurityEvent, Vec<u32>) {
        let c = self.c;
        let r = rule(g.rule).unwrap_or(&crate::rules::RULES[0]);
        let parts: Vec<&Cell> = g.rows.iter().map(|&i| &cells[i as usize]).collect();
        let first_row = first_row(cells, &g.rows).to_row();
        let first = &first_row;
        let (risk, action_taken) = self.assess(cells, g.rule, &g.rows);
        let device = join_sorted(parts.iter().filter_map(|x| x.key.hostname.as_deref()));
        let user = join_sorted(parts.iter().filter_map(|x| x.key.username.as_deref()));
        let computers: BTreeSet<&ComputerId> = parts
            .iter()
            .filter_map(|x| x.key.computer_id.as_ref())
            .collect();
        let hashes: BTreeSet<String> = parts
            .iter()
            .flat_map(|x| x.agg.hashes.iter().cloned())
            .collect();
        let application = match &g.app {
            Some(app) => detect::application_name(first).unwrap_or(app).to_owned(),
            None => {
                let names: BTreeSet<&str> = parts
                    .iter()
                    .flat_map(|x| x.agg.app_names.iter().map(String::as_str))
                    .collect();
                format!("{} applications", names.len())
            }
        };
        let n = count(cells, &g.rows);
        let who = |d: &Option<String>| {
            d.as_deref()
                .map(|s| clean(s).into_owned())
                .unwrap_or_else(|| "an unknown computer".into())
        };
        let mut reason = match g.rule {
            ids::ENCODED_POWERSHELL => {
                let markers: BTreeSet<&str> = parts.iter().flat_map(|x| x.agg.markers.iter().map(String::as_str)).collect();
                format!(
                    "PowerShell ran with an encoded or obfuscated command on {} ({} row(s); markers: {}); outcome {}.",
                    who(&device),
                    n,
                    markers.into_iter().collect::<Vec<_>>().join(", "),
                    action_taken
                )
            }
            ids::LOLBIN_USER_PATH => format!(
                "The living-off-the-land binary {} ran from a user-writable folder ({}) on {}; outcome {}.",
                clean(&application),
                first.full_path.as_deref().and_then(|p| detect::user_writable(&c.binaries, p)).unwrap_or("?"),
                who(&device),
                action_taken
            ),
            ids::LOLBIN_OFFICE_BROWSER => format!(
                "The living-off-the-land binary {} was started by {} on {}; outcome {}.",
                clean(&application),
                clean(detect::office_or_browser_parent(c, first).map(text::file_name).unwrap_or("an Office application or browser")),
                who(&device),
                action_taken
            ),
            ids::FLEET_SPREAD => format!(
                "The unknown file {} ({}) was {}; it is not known-good and was not permitted anywhere in the window. Patient zero: {}.",
                clean(&application),
                g.app.as_deref().unwrap_or(""),
                g.extra_reason,
                g.patient_zero.as_ref().and_then(|p| p.device.as_deref()).map(clean).unwrap_or(Cow::Borrowed("unknown"))
            ),
            ids::POLICY_GAP => format!(
                "The known-good file {} ({}) was {}: a policy gap (consider permitting it), not an outbreak.",
                clean(&application),
                g.app.as_deref().unwrap_or(""),
                g.extra_reason,
            ),
            ids::POLICY_BYPASS => format!(
                "{} was only audited (monitor mode) on {}, a Secure-mode computer: the rule matched without enforcing ({} row(s)). Review the policy{} and consider making it a block.",
                clean(&application),
                who(&device),
                n,
                first.policy_name.as_deref().map(|p| format!(" \"{}\"", clean(p))).unwrap_or_default()
            ),
            ids::RINGFENCE => format!(
                "{} tried {} access(es) its ringfence does not allow on {}.",
                clean(&application),
                n,
                who(&device)
            ),
            ids::REPEATED_DENIALS => match &g.user {
                Some(_) => format!(
                    "User {} had {} on {} in the window: a user fighting their tooling (consider an approval) or malware retrying.",
                    user.as_deref().map(clean).unwrap_or(Cow::Borrowed("?")),
                    g.extra_reason,
                    who(&device),
                ),
                None => format!(
                    "Computer {} had {} (no user on the rows) in the window: a user fighting their tooling (consider an approval) or malware retrying.",
                    who(&device),
                    g.extra_reason
                ),
            },
            _ => format!(
                "{} was blocked {} times on {} (threshold {}).",
                clean(&application),
                n + g.shared_rows,
                who(&device),
                c.org(org_id(&g.org).as_ref()).threshold
            ),
        };
        if g.shared_rows > 0 {
            reason.push_str(&format!(
                " {} more row(s) belong to a stronger detection.",
                g.shared_rows
            ));
        }
        if !g.also.is_empty() {
            reason.push_str(&format!(
                " Also matched: {}.",
                g.also.iter().copied().collect::<Vec<_>>().join(", ")
            ));
        }
        // As the original workflow reports it: "powershell.exe (obfuscated script)".
        let application = if g.rule == ids::ENCODED_POWERSHELL {
            format!("{application} (obfuscated script)")
        } else {
            application
        };
        let key = detection_key(&[
            &g.org,
            g.rule,
            g.app.as_deref().unwrap_or(""),
            g.computer.as_deref().unwrap_or(""),
            g.user.as_deref().unwrap_or(""),
        ]);
        let incident = g.incident();
        let ev = SecurityEvent {
            key,
            incident,
            event_type: r.event_type,
            rule: r.id,
            also_matched: g.also.iter().copied().collect(),
            risk_level: risk,
            reason,
            organization_id: org_id(&g.org),
            organization_name: self.org_name(&g.org, Some(first)),
            device,
            computer_id: if computers.len() == 1 {
                computers.into_iter().next().cloned()
            } else {
                None
            },
            user,
            application,
            application_key: g.app.clone(),
            action_taken,
            first_seen: first.date_time,
            last_seen: last_time(cells, &g.rows),
            row_count: n,
            action_log_ids: self.evidence(cells, &g.rows),
            hashes: hashes.into_iter().collect(),
            patient_zero: g.patient_zero,
            computers_affected: g.computers_affected,
        };
        (ev, g.rows)
    }

    /// One ticket per incident whose worst risk reaches `ticket_min_risk` or that holds a
    /// repeat block; an incident of policy gaps only opens none.
    fn tickets(
        &self,
        cells: &[Cell],
        custom: &[(CustomKey, CustomAgg)],
        detections: &[(SecurityEvent, Vec<u32>)],
    ) -> Vec<PlannedTicket> {
        let c = self.c;
        // Incidents in the order of their worst detection (detections are sorted worst first).
        let mut order: Vec<&str> = Vec::new();
        let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (d, _)) in detections.iter().enumerate() {
            let m = members.entry(d.incident.as_str()).or_default();
            if m.is_empty() {
                order.push(d.incident.as_str());
            }
            m.push(i);
        }
        let title = |d: &SecurityEvent| match d.event_type {
            "suspicious_execution" => "Suspicious execution",
            "lolbin_execution" => "LOLBin execution",
            "fleet_spread" => "Fleet spread",
            "policy_bypass" => "Policy bypass",
            "repeated_denials" => "Repeated denials",
            "ringfence_violation" => "Ringfence violation",
            "repeat_block" => "Repeat block",
            "policy_gap" => "Policy gap",
            other => other,
        };
        let mut out = Vec::new();
        for incident in order {
            let idx = &members[incident];
            let ds: Vec<&SecurityEvent> = idx.iter().map(|&i| &detections[i].0).collect();
            let worst = ds[0];
            let holds_repeat = ds.iter().any(|d| {
                d.rule == ids::REPEAT_BLOCK || d.also_matched.contains(&ids::REPEAT_BLOCK)
            });
            if ds.iter().all(|d| d.rule == ids::POLICY_GAP)
                || (worst.risk_level < c.ticket_min_risk && !holds_repeat)
            {
                continue;
            }
            let org = c.org(worst.organization_id.as_ref());
            let file_incident = worst.event_type == "fleet_spread";
            let more = match ds.len() {
                1 => String::new(),
                n => format!(" + {} more", n - 1),
            };
            let place = if file_incident {
                format!(
                    "{} on {} computers",
                    worst.application, worst.computers_affected
                )
            } else {
                format!(
                    "on {}",
                    worst
                        .device
                        .as_deref()
                        .or(worst.user.as_deref())
                        .unwrap_or("an unknown computer")
                )
            };
            let head = if file_incident {
                format!("[{}] {}{}: {}", worst.risk_level, title(worst), more, place)
            } else {
                format!("[{}] {}{} {}", worst.risk_level, title(worst), more, place)
            };
            let summary_raw = match &worst.organization_name {
                Some(o) => format!("{head} ({o})"),
                None => head,
            };
            let summary = truncate_chars(&clean(&summary_raw), 100);
            let mut desc = String::new();
            let mut line = |k: &str, v: &str| {
                desc.push_str(k);
                desc.push_str(": ");
                desc.push_str(&clean(v));
                desc.push('\n');
            };
            line("ThreatLocker incident", incident);
            line("Risk", worst.risk_level.as_str());
            line(
                "Organization",
                &format!(
                    "{} ({})",
                    worst.organization_name.as_deref().unwrap_or("unknown"),
                    worst
                        .organization_id
                        .as_ref()
                        .map(|o| o.as_str())
                        .unwrap_or("no id")
                ),
            );
            if file_incident {
                line("File", &worst.application);
                if let Some(k) = &worst.application_key {
                    line("Application key", k);
                }
                if let Some(pz) = &worst.patient_zero {
                    line(
                        "Patient zero",
                        &format!(
                            "{} at {} (action log {})",
                            pz.device.as_deref().unwrap_or("unknown"),
                            fmt_time(pz.at),
                            pz.action_log_id.as_deref().unwrap_or("?")
                        ),
                    );
                }
            } else {
                line("Device", worst.device.as_deref().unwrap_or("unknown"));
            }
            let first_seen = ds.iter().filter_map(|d| d.first_seen).min();
            let last_seen = ds.iter().filter_map(|d| d.last_seen).max();
            line("First seen", &fmt_time(first_seen));
            line("Last seen", &fmt_time(last_seen));
            desc.push_str(&format!("\nDetections ({}):\n", ds.len()));
            for d in ds.iter().take(NOTIFY_MAX_LINES) {
                let also = if d.also_matched.is_empty() {
                    String::new()
                } else {
                    format!("; also matched {}", d.also_matched.join(", "))
                };
                desc.push_str(&clean(&format!(
                    "- [{}] {} ({}{}) {}: {} [{}]",
                    d.risk_level, d.event_type, d.rule, also, d.application, d.reason, d.key
                )));
                desc.push('\n');
            }
            if ds.len() > NOTIFY_MAX_LINES {
                desc.push_str(&format!("... and {} more\n", ds.len() - NOTIFY_MAX_LINES));
            }
            desc.push_str(
                "\nEvidence (oldest first; time | action log id | host | user | outcome | path):\n",
            );
            const MAX_LINES: usize = crate::accumulate::CITED_ROWS;
            let rows: Vec<u32> = idx
                .iter()
                .flat_map(|&i| detections[i].1.iter().copied())
                .collect();
            // Indices past the cells stand for custom groups (see `custom::detections`).
            let (own, groups): (Vec<u32>, Vec<u32>) =
                rows.iter().partition(|&&i| (i as usize) < cells.len());
            let groups: Vec<&CustomAgg> = groups
                .iter()
                .filter_map(|&i| custom.get(i as usize - cells.len()).map(|g| &g.1))
                .collect();
            let total = (count(cells, &own) + groups.iter().map(|g| g.count).sum::<u64>()) as usize;
            let mut cited = oldest_cited(cells, &own, MAX_LINES);
            cited.extend(groups.iter().flat_map(|g| g.cited.iter()));
            cited.sort_unstable();
            cited.dedup_by(|a, b| a.key == b.key);
            cited.truncate(MAX_LINES.min(c.max_evidence.max(1)));
            for r in cited {
                let l = format!(
                    "- {} | {} | {} | {} | {} | {}",
                    fmt_time(Some(r.key.at)),
                    r.key.text(),
                    r.hostname.as_deref().unwrap_or(""),
                    r.username.as_deref().unwrap_or(""),
                    r.outcome.label(),
                    r.full_path
                        .as_deref()
                        .or(r.process_path.as_deref())
                        .unwrap_or("")
                );
                desc.push_str(&clean(&l));
                desc.push('\n');
            }
            if total > MAX_LINES {
                desc.push_str(&format!("... and {} more row(s)\n", total - MAX_LINES));
            }
            out.push(PlannedTicket {
                dedupe_key: incident.to_owned(),
                detection_keys: ds.iter().map(|d| d.key.clone()).collect(),
                last_seen,
                organization_id: worst.organization_id.clone(),
                organization_name: worst.organization_name.clone(),
                board: org.board.clone(),
                priority: c.priorities.for_risk(worst.risk_level).to_owned(),
                risk_level: worst.risk_level,
                summary,
                description: truncate_chars(&desc, 8000),
            });
        }
        out
    }

    /// Decides one pending request. Order: a missing id, the never-approve lists (they always
    /// win), detections implicating the file; then the trusted lists (which override what
    /// follows); then the LOLBin and unsigned-in-a-user-folder flags, the categories, and
    /// whether the file is known-good.
    fn approval(&self, pa: &PendingApproval, facts: &ApprovalFacts<'_>) -> ApprovalDecision {
        let c = self.c;
        let r: &ApprovalRequest = &pa.request;
        let org = c.org(r.organization_id.as_ref());
        let file = request_file(r);
        let hashes = &file.hashes;
        let found: Vec<&HashAgg> = hashes
            .iter()
            .filter_map(|h| facts.hash_facts.get(h))
            .collect();
        // The oldest rows of the union are among the oldest of each part; a row carrying two
        // of the request's hashes counts once.
        let mut rows: Vec<&EvidenceId> = found.iter().flat_map(|f| f.ids.iter()).collect();
        rows.sort_unstable();
        rows.dedup();
        rows.truncate(c.max_evidence);

        // Signers: the request's json certificates, plus the matching rows' signers.
        let row_signers: BTreeSet<String> = found
            .iter()
            .flat_map(|f| f.signers.iter().cloned())
            .collect();
        let mut signers: BTreeSet<String> = row_signers.clone();
        signers.extend(file.certs.iter().map(|(s, _)| s.clone()));
        let signed = file.certs.iter().any(|(_, valid)| *valid) || found.iter().any(|f| f.signed);
        let signer_matches = |list: &[String]| -> Option<String> {
            signers
                .iter()
                .find(|s| list.iter().any(|t| signer_is(s, t)))
                .cloned()
        };
        let detection_keys: Vec<String> = {
            let set: BTreeSet<&String> = hashes
                .iter()
                .filter_map(|h| facts.hash_detections.get(h))
                .flatten()
                .collect();
            set.into_iter().cloned().collect()
        };
        let implicating: BTreeSet<(&str, &'static str)> = hashes
            .iter()
            .filter_map(|h| facts.implicated.get(h))
            .flatten()
            .copied()
            .collect();
        let known_good = self.request_known_good(pa, &file, &row_signers);
        let path = r.path.as_deref().map(str::trim).filter(|p| !p.is_empty());
        let application = pa
            .application
            .as_ref()
            .and_then(|a| a.name.clone())
            .filter(|n| !n.trim().is_empty())
            .or_else(|| r.file_name().map(str::to_owned))
            .unwrap_or_else(|| "unknown application".to_owned());
        let categories: Vec<String> = pa
            .research
            .as_ref()
            .map(|x| x.categories.clone())
            .unwrap_or_default();

        // Flags nothing overrides.
        let mut hard: Vec<(&'static str, String)> = Vec::new();
        if r.approval_request_id.is_none() {
            hard.push((
                ids::MANUAL_MISSING_ID,
                "the request has no approval request id".into(),
            ));
        }
        if let Some(h) = hashes.iter().find(|h| c.never_hashes.contains(*h)) {
            hard.push((
                ids::MANUAL_NEVER_HASH,
                format!("its hash {h} is on the never-approve list"),
            ));
        }
        if let Some(p) = path {
            if let Some(pat) = c.never_paths.iter().find(|pat| text::glob_ci(pat, p)) {
                hard.push((
                    ids::MANUAL_NEVER_PATH,
                    format!(
                        "its path matches the never-approve pattern \"{}\"",
                        clean(pat)
                    ),
                ));
            }
        }
        if let Some(s) = signer_matches(&c.never_signers) {
            hard.push((
                ids::MANUAL_NEVER_SIGNER,
                format!("its signer \"{}\" is on the never-approve list", clean(&s)),
            ));
        }
        if let Some((key, rule_id)) = implicating.iter().next() {
            let event_type = rule(rule_id).map_or("", |r| r.event_type);
            let others = implicating.len() - 1;
            hard.push((
                ids::MANUAL_IMPLICATED,
                format!(
                    "the file is implicated by {rule_id} ({event_type}) in detection {key}{}",
                    if others > 0 {
                        format!(" and {others} other detection(s)")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        // Flags the trusted lists override.
        let mut soft: Vec<(&'static str, String)> = Vec::new();
        if detect::is_lolbin(&c.binaries, path) {
            soft.push((
                ids::MANUAL_LOLBIN,
                format!(
                    "{} is a living-off-the-land binary",
                    clean(text::file_name(path.unwrap_or("")))
                ),
            ));
        }
        if !signed {
            if let Some(m) = path.and_then(|p| detect::user_writable(&c.binaries, p)) {
                soft.push((
                    ids::MANUAL_UNSIGNED_USER_PATH,
                    format!("it is unsigned (no signature evidence) and lives in a user-writable folder ({m})"),
                ));
            }
        }

        let trusted = known_good
            .as_ref()
            .and_then(|(rule_id, why)| rule_id.map(|id| (id, why)));
        let (auto, rule_id, reason, also): (bool, &'static str, String, Vec<&'static str>) =
            if let Some((id, why)) = hard.first() {
                let also = hard
                    .iter()
                    .skip(1)
                    .chain(&soft)
                    .map(|(id, _)| *id)
                    .collect();
                (false, id, format!("Manual review: {why}."), also)
            } else if let Some((id, why)) = trusted {
                let overridden: Vec<&'static str> = soft.iter().map(|(id, _)| *id).collect();
                let note = if overridden.is_empty() {
                    String::new()
                } else {
                    format!(" (overrides {})", overridden.join(", "))
                };
                (true, id, format!("Auto-approved: {why}{note}."), overridden)
            } else if let Some((id, why)) = soft.first() {
                let also = soft.iter().skip(1).map(|(id, _)| *id).collect();
                (false, id, format!("Manual review: {why}."), also)
            } else if org.categories.is_empty() {
                (false, ids::MANUAL_DISABLED, "Manual review: auto-approval is off for this organization (no auto-approve categories).".into(), Vec::new())
            } else if pa.research.is_none() {
                (
                    false,
                    ids::MANUAL_UNKNOWN_CATEGORIES,
                    "Manual review: the application's categories are unknown (no research details)."
                        .into(),
                    Vec::new(),
                )
            } else if categories.iter().all(|c| c.trim().is_empty()) {
                (
                    false,
                    ids::MANUAL_UNKNOWN_CATEGORIES,
                    "Manual review: the application's research lists no categories.".into(),
                    Vec::new(),
                )
            } else if let Some(bad) = categories
                .iter()
                .find(|cat| !org.categories.contains(&text::fold(cat)))
            {
                (
                    false,
                    ids::MANUAL_CATEGORY,
                    format!(
                        "Manual review: category \"{}\" is not in the auto-approve list.",
                        clean(bad)
                    ),
                    Vec::new(),
                )
            } else {
                let mut cats: Vec<&str> = categories
                    .iter()
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .collect();
                cats.sort_unstable();
                cats.dedup();
                let cats = clean(&cats.join(", ")).into_owned();
                match &known_good {
                    Some((_, why)) => (
                        true,
                        ids::AUTO_CATEGORY,
                        format!("Application in approved category ({cats}); the file is known-good: {why}."),
                        Vec::new(),
                    ),
                    None => (
                        false,
                        ids::MANUAL_NOT_KNOWN_GOOD,
                        format!(
                            "Manual review: the category ({cats}) is approved but the file is not known-good: {}.",
                            if signed {
                                "its matching application is neither a built-in nor researched by ThreatLocker"
                            } else {
                                "it has no valid signature"
                            }
                        ),
                        Vec::new(),
                    ),
                }
            };
        let (auto, rule_id, reason, scope) = if auto {
            let scope = org.scope;
            let target_known = match scope {
                ApprovalScope::Computer => r.computer_id.is_some(),
                ApprovalScope::Group => r.computer_group_id.is_some(),
                ApprovalScope::Organization => r.organization_id.is_some(),
            };
            if target_known {
                (true, rule_id, reason, Some(scope))
            } else {
                (
                    false,
                    ids::MANUAL_SCOPE,
                    format!(
                        "Manual review: the approval scope is {} but the request carries no {} id.",
                        scope.as_str(),
                        scope.as_str()
                    ),
                    None,
                )
            }
        } else {
            (false, rule_id, reason, None)
        };
        let mut cats = categories.clone();
        cats.sort();
        ApprovalDecision {
            request_id: r.approval_request_id.clone(),
            organization_id: r.organization_id.clone(),
            organization_name: r
                .organization_id
                .as_ref()
                .and_then(|o| self.org_names.get(o.as_str()).map(|s| (*s).to_owned()))
                .or_else(|| r.organization_name.clone()),
            application,
            hash: file.display_hash.clone(),
            path: path.map(str::to_owned),
            requested_by: r.username.clone().or_else(|| r.requestor.clone()),
            device: r.hostname.clone(),
            auto_approve: auto,
            rule: rule_id,
            reason,
            also_flagged_by: also,
            categories: cats,
            signers: signers.into_iter().collect(),
            known_good: known_good.is_some(),
            action_log_ids: rows.into_iter().map(EvidenceId::text).collect(),
            detection_keys,
            scope,
        }
    }

    fn notifications(
        &self,
        detections: &[SecurityEvent],
        approvals: &[ApprovalDecision],
    ) -> Vec<PlannedNotification> {
        let c = self.c;
        let mut per_org: BTreeMap<
            Option<&OrganizationId>,
            (Vec<&SecurityEvent>, Vec<&ApprovalDecision>),
        > = BTreeMap::new();
        for d in detections {
            per_org
                .entry(d.organization_id.as_ref())
                .or_default()
                .0
                .push(d);
        }
        for a in approvals.iter().filter(|a| !a.auto_approve) {
            per_org
                .entry(a.organization_id.as_ref())
                .or_default()
                .1
                .push(a);
        }
        let mut out = Vec::new();
        for (org_id, (dets, manual)) in per_org {
            let org = c.org(org_id);
            if org.recipients.is_empty() && !c.notify_without_recipients {
                continue;
            }
            let org_name = dets
                .first()
                .and_then(|d| d.organization_name.clone())
                .or_else(|| manual.first().and_then(|a| a.organization_name.clone()));
            let label = org_name
                .clone()
                .or_else(|| org_id.map(|o| o.to_string()))
                .unwrap_or_else(|| "unknown organization".into());
            let (urgent, rest): (Vec<&SecurityEvent>, Vec<&SecurityEvent>) = dets
                .into_iter()
                .partition(|d| d.risk_level >= c.notify_min_risk);
            let describe = |d: &SecurityEvent| {
                format!(
                    "- [{}] {} — {} ({})\n",
                    d.risk_level,
                    d.event_type,
                    clean(&d.reason),
                    d.key
                )
            };
            if !urgent.is_empty() {
                let max = urgent.iter().map(|d| d.risk_level).max();
                let mut body = format!("{} security event(s) need attention now:\n", urgent.len());
                list_capped(&mut body, &urgent, describe);
                out.push(PlannedNotification {
                    organization_id: org_id.cloned(),
                    organization_name: org_name.clone(),
                    recipients: org.recipients.clone(),
                    urgency: Urgency::Immediate,
                    risk_level: max,
                    subject: truncate_chars(
                        &clean(&format!(
                            "[ThreatLocker] {} {} alert(s) for {}",
                            urgent.len(),
                            max.map(RiskLevel::as_str).unwrap_or(""),
                            label
                        )),
                        150,
                    ),
                    body,
                    detection_keys: urgent.iter().map(|d| d.key.clone()).collect(),
                    approval_request_ids: Vec::new(),
                });
            }
            if !rest.is_empty() || !manual.is_empty() {
                let mut body = String::new();
                if !rest.is_empty() {
                    body.push_str(&format!("{} lower-risk security event(s):\n", rest.len()));
                    list_capped(&mut body, &rest, describe);
                }
                if !manual.is_empty() {
                    body.push_str(&format!(
                        "{} approval request(s) need manual review:\n",
                        manual.len()
                    ));
                    for a in manual.iter().take(NOTIFY_MAX_LINES) {
                        body.push_str(&format!(
                            "- {} on {} by {}: {}\n",
                            clean(&a.application),
                            clean(a.device.as_deref().unwrap_or("unknown")),
                            clean(a.requested_by.as_deref().unwrap_or("unknown")),
                            clean(&a.reason)
                        ));
                    }
                    if manual.len() > NOTIFY_MAX_LINES {
                        let more = manual.len() - NOTIFY_MAX_LINES;
                        body.push_str(&format!("... and {more} more\n"));
                    }
                }
                out.push(PlannedNotification {
                    organization_id: org_id.cloned(),
                    organization_name: org_name,
                    recipients: org.recipients.clone(),
                    urgency: Urgency::Summary,
                    risk_level: rest.iter().map(|d| d.risk_level).max(),
                    subject: truncate_chars(
                        &clean(&format!("[ThreatLocker] Summary for {label}")),
                        150,
                    ),
                    body,
                    detection_keys: rest.iter().map(|d| d.key.clone()).collect(),
                    approval_request_ids: manual
                        .iter()
                        .filter_map(|a| a.request_id.clone())
                        .collect(),
                });
            }
        }
        out
    }
}

/// Most entries listed in one notification body (the rest are counted).
const NOTIFY_MAX_LINES: usize = 50;

fn list_capped(
    body: &mut String,
    items: &[&SecurityEvent],
    describe: impl Fn(&SecurityEvent) -> String,
) {
    for d in items.iter().take(NOTIFY_MAX_LINES) {
        body.push_str(&describe(d));
    }
    if items.len() > NOTIFY_MAX_LINES {
        body.push_str(&format!(
            "... and {} more\n",
            items.len() - NOTIFY_MAX_LINES
        ));
    }
}

fn org_id(org: &str) -> Option<OrganizationId> {
    if org.is_empty() {
        None
    } else {
        Some(OrganizationId::new(org))
    }
}

fn fmt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| "unknown".into())
}

/// Whether a row's file is known-good: a trusted hash or signer, or signed and a
/// built-in application.
pub(crate) fn row_known_good(c: &Compiled, row: &ActionLogRow) -> bool {
    if row_hashes(row).any(|h| c.trusted_hashes.contains(lower(h.trim_ascii()).as_ref())) {
        return true;
    }
    let mut signed = row.cert_exists == Some(true);
    for s in row_signers(row) {
        signed = true;
        if c.trusted_signers.iter().any(|t| signer_is(s, t)) {
            return true;
        }
    }
    signed && row.application_is_built_in == Some(true)
}

/// Whether a certificate subject matches a configured (lower-case) signer: the whole subject or
/// its `CN=` value, case-insensitively.
fn signer_is(subject: &str, configured: &str) -> bool {
    let s = subject.trim().to_lowercase();
    if s == configured {
        return true;
    }
    let mut rest = s.as_str();
    while let Some(pos) = rest.find("cn=") {
        let at_start = pos == 0 || matches!(rest.as_bytes()[pos - 1], b',' | b' ' | b'/');
        let value = &rest[pos + 3..];
        let cn = match value.strip_prefix('"') {
            Some(q) => q.split('"').next().unwrap_or(""),
            None => value.split(',').next().unwrap_or(""),
        };
        if at_start && cn.trim() == configured {
            return true;
        }
        rest = value;
    }
    false
}
