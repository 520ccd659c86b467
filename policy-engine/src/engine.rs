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
    pub fn evaluate(&self, input: &Input) -> Decisions {
        Evaluation::new(&self.compiled, input).run()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum RowId<'a> {
    Num(i64),
    Str(&'a str),
}

/// One selected event with what the engine derives from it.
struct Ev<'a> {
    row: &'a ActionLogRow,
    time: DateTime<Utc>,
    org: &'a str,
    computer: Cow<'a, str>,
    app: Cow<'a, str>,
    app_is_hash: bool,
    outcome: Outcome,
}

/// A row's hashes as given (`sha256Hash`, then `hash`).
pub(crate) fn row_hashes(row: &ActionLogRow) -> impl Iterator<Item = &str> {
    [row.sha256_hash.as_deref(), row.hash.as_deref()]
        .into_iter()
        .flatten()
}

/// A request's hashes (`sha256`, then `hash`), folded, non-empty.
fn request_hashes(r: &ApprovalRequest) -> impl Iterator<Item = String> + '_ {
    [r.sha256.as_deref(), r.hash.as_deref()]
        .into_iter()
        .flatten()
        .map(text::fold)
        .filter(|h| !h.is_empty())
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

fn computer_key(row: &ActionLogRow) -> Cow<'_, str> {
    match row
        .computer_id
        .as_ref()
        .map(|c| c.as_str())
        .filter(|s| !s.is_empty())
    {
        Some(id) => Cow::Borrowed(id),
        None => lower(row.hostname.as_deref().unwrap_or("").trim_ascii()),
    }
}

fn user_key(row: &ActionLogRow) -> Option<Cow<'_, str>> {
    row.username
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(lower)
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

pub(crate) fn incident_key(parts: &[&str]) -> String {
    format!("tl:inc:{:032x}", text::fnv128(parts))
}

/// What the approval rules need from the rows of one requested hash, gathered once per
/// evaluation however many requests share the hash.
#[derive(Default)]
struct HashFacts<'e> {
    /// The oldest rows (at most `max_evidence`), oldest first: the request's evidence.
    evidence: Vec<u32>,
    /// Distinct certificate subjects on the rows (trimmed).
    signers: BTreeSet<&'e str>,
    /// Whether any row carries signature evidence.
    signed: bool,
    /// Distinct computers on which the hash was blocked.
    blocked_on: BTreeSet<&'e str>,
}

/// Certificate subjects on a row (`cert`, `certs`, `certificates[].subject`), trimmed, non-empty.
fn row_signers(row: &ActionLogRow) -> impl Iterator<Item = &str> {
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

struct Group {
    rule: &'static str,
    org: String,
    app: Option<String>,
    subject: String,
    rows: Vec<u32>,
    extra_reason: String,
    computers_affected: u64,
    patient_zero: Option<Sighting>,
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

    fn is_secure(&self, row: &ActionLogRow) -> bool {
        if let Some(v) = row
            .computer_id
            .as_ref()
            .and_then(|id| self.secure.get(id.as_str()))
        {
            return *v;
        }
        row.hostname
            .as_deref()
            .and_then(|h| self.secure.get(&h.trim().to_lowercase()))
            .copied()
            .unwrap_or(false)
    }

    fn run(self) -> Decisions {
        let input = self.input;
        let c = self.c;
        let mut ignored = Ignored::default();

        // Pass 1: window, de-duplication, derived keys.
        let mut seen: FxSet<RowId<'a>> = FxSet::default();
        seen.reserve(input.events.len());
        let mut evs: Vec<Ev<'a>> = Vec::with_capacity(input.events.len());
        for row in &input.events {
            let Some(time) = row.date_time else {
                ignored.undated_rows += 1;
                continue;
            };
            if time < input.window_start || time >= input.window_end {
                ignored.outside_window += 1;
                continue;
            }
            let id = match (&row.action_log_id, &row.e_action_log_id) {
                (Some(n), _) => Some(RowId::Num(n.get())),
                (None, Some(e)) => Some(RowId::Str(e.as_str())),
                (None, None) => None,
            };
            match id {
                Some(id) => {
                    if !seen.insert(id) {
                        ignored.duplicate_rows += 1;
                        continue;
                    }
                }
                None => ignored.rows_without_id += 1,
            }
            let (app, app_is_hash) = detect::application_key(row);
            evs.push(Ev {
                row,
                time,
                org: row
                    .organization_id
                    .as_ref()
                    .map(|o| o.as_str())
                    .unwrap_or(""),
                computer: computer_key(row),
                app,
                app_is_hash,
                outcome: detect::outcome(row),
            });
        }
        drop(seen);

        // Hashes of the pending approval requests, whose rows are indexed below.
        let approval_hashes: FxSet<String> = input
            .approvals
            .iter()
            .filter(|a| !a.request.status_id.is_some_and(|s| s.is_actioned()))
            .flat_map(|a| request_hashes(&a.request))
            .collect();

        // Pass 2: aggregation.
        let mut blocks = BlockAnalysis {
            total_events: evs.len() as u64,
            ..Default::default()
        };
        let mut blocked_apps: FxSet<&str> = FxSet::default();
        let mut repeat: FxMap<(&str, &str, &str), Vec<u32>> = FxMap::default();
        let mut by_user: FxMap<(&str, Cow<'a, str>), Vec<u32>> = FxMap::default();
        let mut by_computer: FxMap<(&str, &str), Vec<u32>> = FxMap::default();
        let mut fleet: FxMap<(&str, &str), Vec<u32>> = FxMap::default();
        let mut row_groups: FxMap<(&'static str, &str, &str, &str), Vec<u32>> = FxMap::default();
        let mut by_hash: FxMap<String, Vec<u32>> = FxMap::default();

        for (i, ev) in evs.iter().enumerate() {
            let i = i as u32;
            let row = ev.row;
            let key = |rule: &'static str| (rule, ev.org, ev.app.as_ref(), ev.computer.as_ref());
            match ev.outcome {
                Outcome::Block => {
                    blocks.blocks += 1;
                    blocked_apps.insert(&ev.app);
                    repeat
                        .entry((ev.org, &ev.app, &ev.computer))
                        .or_default()
                        .push(i);
                    if let Some(u) = user_key(row) {
                        by_user.entry((ev.org, u)).or_default().push(i);
                    }
                    by_computer
                        .entry((ev.org, &ev.computer))
                        .or_default()
                        .push(i);
                    if ev.app_is_hash {
                        fleet.entry((ev.org, &ev.app)).or_default().push(i);
                    }
                }
                Outcome::AuditOnly => {
                    blocks.audit_only += 1;
                    if self.is_secure(row) {
                        row_groups
                            .entry(key(ids::POLICY_BYPASS))
                            .or_default()
                            .push(i);
                    }
                }
                Outcome::Permit => {
                    blocks.permits += 1;
                }
                Outcome::Ringfenced => {
                    blocks.ringfenced += 1;
                    row_groups.entry(key(ids::RINGFENCE)).or_default().push(i);
                }
                Outcome::Other => {}
            }
            if !detect::powershell_markers(row).is_empty() {
                row_groups
                    .entry(key(ids::ENCODED_POWERSHELL))
                    .or_default()
                    .push(i);
            }
            if detect::is_lolbin(&c.binaries, row.full_path.as_deref()) {
                if row
                    .full_path
                    .as_deref()
                    .and_then(|p| detect::user_writable(&c.binaries, p))
                    .is_some()
                {
                    row_groups
                        .entry(key(ids::LOLBIN_USER_PATH))
                        .or_default()
                        .push(i);
                }
                if detect::office_or_browser_parent(c, row).is_some() {
                    row_groups
                        .entry(key(ids::LOLBIN_OFFICE_BROWSER))
                        .or_default()
                        .push(i);
                }
            }
            if !approval_hashes.is_empty() {
                for h in row_hashes(row) {
                    let h = lower(h.trim_ascii());
                    if let Some(list) = by_hash.get_mut(h.as_ref()) {
                        list.push(i);
                    } else if approval_hashes.contains(h.as_ref()) {
                        by_hash.insert(h.into_owned(), vec![i]);
                    }
                }
            }
        }
        blocks.unique_applications_blocked = blocked_apps.len() as u64;

        let mut groups: Vec<Group> = Vec::new();
        let sorted_times = |rows: &[u32]| {
            let mut t: Vec<DateTime<Utc>> = rows.iter().map(|&i| evs[i as usize].time).collect();
            t.sort_unstable();
            t
        };
        // At least the organization's threshold of blocks (within the repeat window, if set).
        let reaches_threshold = |org: &str, rows: &[u32]| {
            let threshold = c.org(org_id(org).as_ref()).threshold as usize;
            rows.len() >= threshold
                && max_in_span(&sorted_times(rows), c.repeat_window) >= threshold
        };

        // Repeat blocks.
        for ((org, app, computer), rows) in &repeat {
            if !reaches_threshold(org, rows) {
                continue;
            }
            let ordered = self.ordered(&evs, rows);
            let first = &evs[ordered[0] as usize];
            blocks.repeat_blocks.push(RepeatBlock {
                organization_id: org_id(org),
                application_key: (*app).to_owned(),
                application: detect::application_name(first.row)
                    .unwrap_or(app)
                    .to_owned(),
                computer_id: first.row.computer_id.clone(),
                device: first.row.hostname.clone(),
                count: rows.len() as u64,
                first_seen: Some(first.time),
                last_seen: ordered.last().map(|&i| evs[i as usize].time),
                action_log_ids: self.evidence(&evs, &ordered),
            });
            groups.push(Group {
                rule: ids::REPEAT_BLOCK,
                org: (*org).to_owned(),
                app: Some((*app).to_owned()),
                subject: (*computer).to_owned(),
                rows: ordered,
                extra_reason: String::new(),
                computers_affected: 0,
                patient_zero: None,
            });
        }

        // Repeated denials per user and per computer.
        let mut denial =
            |org: &str, subject: &str, rows: &[u32], is_user: bool| -> Option<DenialCount> {
                if !reaches_threshold(org, rows) {
                    return None;
                }
                let ordered = self.ordered(&evs, rows);
                let apps: BTreeSet<&str> =
                    rows.iter().map(|&i| evs[i as usize].app.as_ref()).collect();
                let first = evs[ordered[0] as usize].row;
                let display = if is_user {
                    first.username.clone().unwrap_or_else(|| subject.to_owned())
                } else {
                    first.hostname.clone().unwrap_or_else(|| subject.to_owned())
                };
                let out = DenialCount {
                    organization_id: org_id(org),
                    subject: display,
                    computer_id: if is_user {
                        None
                    } else {
                        first.computer_id.clone()
                    },
                    count: rows.len() as u64,
                    applications: apps.len() as u64,
                    action_log_ids: self.evidence(&evs, &ordered),
                };
                if apps.len() >= 2 {
                    groups.push(Group {
                        rule: if is_user {
                            ids::REPEATED_DENIALS_USER
                        } else {
                            ids::REPEATED_DENIALS_COMPUTER
                        },
                        org: org.to_owned(),
                        app: None,
                        subject: subject.to_owned(),
                        rows: ordered,
                        extra_reason: format!(
                            "{} blocks across {} applications",
                            rows.len(),
                            apps.len()
                        ),
                        computers_affected: 0,
                        patient_zero: None,
                    });
                }
                Some(out)
            };
        for ((org, user), rows) in &by_user {
            if let Some(d) = denial(org, user, rows, true) {
                blocks.denials_by_user.push(d);
            }
        }
        for ((org, computer), rows) in &by_computer {
            if let Some(d) = denial(org, computer, rows, false) {
                blocks.denials_by_computer.push(d);
            }
        }

        // Fleet spread: hashes blocked on enough computers, then (only for those few) whether
        // they were permitted anywhere, so the common permit rows cost nothing here.
        let mut candidates: Vec<(&str, &str, &Vec<u32>, BTreeSet<&str>)> = Vec::new();
        for ((org, app), rows) in &fleet {
            let computers: BTreeSet<&str> = rows
                .iter()
                .map(|&i| evs[i as usize].computer.as_ref())
                .collect();
            if (computers.len() as u64) >= u64::from(c.fleet_threshold)
                && !c.trusted_hashes.contains(lower(app).as_ref())
            {
                candidates.push((org, app, rows, computers));
            }
        }
        let candidate_keys: FxSet<&str> = candidates.iter().map(|x| x.1).collect();
        let permitted: FxSet<&str> = if candidate_keys.is_empty() {
            FxSet::default()
        } else {
            evs.iter()
                .filter(|ev| {
                    ev.outcome == Outcome::Permit && candidate_keys.contains(ev.app.as_ref())
                })
                .map(|ev| ev.app.as_ref())
                .collect()
        };
        for (org, app, rows, computers) in candidates {
            if permitted.contains(app) {
                continue;
            }
            let ordered = self.ordered(&evs, rows);
            let pz = evs[ordered[0] as usize].row;
            groups.push(Group {
                rule: ids::FLEET_SPREAD,
                org: (*org).to_owned(),
                app: Some((*app).to_owned()),
                subject: String::new(),
                rows: ordered,
                extra_reason: format!("blocked on {} computers", computers.len()),
                computers_affected: computers.len() as u64,
                patient_zero: Some(Sighting {
                    computer_id: pz.computer_id.clone(),
                    device: pz.hostname.clone(),
                    at: pz.date_time,
                    action_log_id: Some(row_id(pz)),
                }),
            });
        }

        // Per-row detections.
        for ((rule_id, org, app, computer), rows) in &row_groups {
            groups.push(Group {
                rule: rule_id,
                org: (*org).to_owned(),
                app: Some((*app).to_owned()),
                subject: (*computer).to_owned(),
                rows: self.ordered(&evs, rows),
                extra_reason: String::new(),
                computers_affected: 0,
                patient_zero: None,
            });
        }

        // Build and sort detections (with their rows, for tickets).
        let mut detections: Vec<(SecurityEvent, Vec<u32>)> = groups
            .into_iter()
            .map(|g| self.detection(&evs, g))
            .collect();
        // Custom rules (`[[rules.custom]]`, `Engine::with_rule`), grouped like the per-row ones.
        detections.extend(crate::custom::detections(
            &c.custom,
            evs.iter()
                .map(|ev| (ev.row, ev.outcome, ev.org, ev.computer.as_ref())),
            c.max_evidence,
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
        for list in [&mut blocks.denials_by_user, &mut blocks.denials_by_computer] {
            sort_by_borrowed_key!(list, |x| (
                &x.organization_id,
                Reverse(x.count),
                &x.subject,
                &x.computer_id,
                &x.action_log_ids,
            ));
        }

        let tickets = self.tickets(&evs, &detections);
        let detections: Vec<SecurityEvent> = detections.into_iter().map(|(d, _)| d).collect();

        // Approvals: what the approval rules need from the rows of each requested hash, gathered
        // once per distinct hash (many requests often share one hash; see `HashFacts`).
        let hash_facts: FxMap<String, HashFacts<'_>> = by_hash
            .into_iter()
            .map(|(h, rows)| (h, self.hash_facts(&evs, rows)))
            .collect();
        let mut hash_detections: FxMap<String, Vec<String>> = FxMap::default();
        for d in &detections {
            for h in &d.hashes {
                hash_detections
                    .entry(h.to_lowercase())
                    .or_default()
                    .push(d.key.clone());
            }
        }
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
            approvals.push(self.approval(pa, &evs, &hash_facts, &hash_detections));
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

    /// Row indices ordered oldest first (total order: time, then ids).
    fn ordered(&self, evs: &[Ev<'a>], rows: &[u32]) -> Vec<u32> {
        let mut v = rows.to_vec();
        v.sort_by(|&a, &b| row_order(evs[a as usize].row, evs[b as usize].row));
        v
    }

    /// The oldest `max_evidence` of `rows` (distinct indices), oldest first, in the total order
    /// `ordered` gives (time, then ids, then input position).
    fn oldest(&self, evs: &[Ev<'a>], mut rows: Vec<u32>) -> Vec<u32> {
        let cmp =
            |a: &u32, b: &u32| row_order(evs[*a as usize].row, evs[*b as usize].row).then(a.cmp(b));
        let k = self.c.max_evidence.max(1);
        if rows.len() > k {
            rows.select_nth_unstable_by(k - 1, cmp);
            rows.truncate(k);
        }
        rows.sort_unstable_by(cmp);
        rows
    }

    /// One pass over the rows of one requested hash (row indices in input order).
    fn hash_facts<'e>(&self, evs: &'e [Ev<'a>], mut rows: Vec<u32>) -> HashFacts<'e> {
        // A row whose `sha256Hash` and `hash` fold to the same value was listed twice in a row.
        rows.dedup();
        let mut facts = HashFacts::default();
        for &i in &rows {
            let ev = &evs[i as usize];
            let row = ev.row;
            if row.cert_exists == Some(true) {
                facts.signed = true;
            }
            for s in row_signers(row) {
                facts.signers.insert(s);
                facts.signed = true;
            }
            if ev.outcome == Outcome::Block {
                facts.blocked_on.insert(&ev.computer);
            }
        }
        facts.evidence = self.oldest(evs, rows);
        facts
    }

    fn evidence(&self, evs: &[Ev<'a>], ordered: &[u32]) -> Vec<String> {
        ordered
            .iter()
            .take(self.c.max_evidence)
            .map(|&i| row_id(evs[i as usize].row))
            .collect()
    }

    fn detection(&self, evs: &[Ev<'a>], g: Group) -> (SecurityEvent, Vec<u32>) {
        let c = self.c;
        let r = rule(g.rule).unwrap_or(&crate::rules::RULES[0]);
        let rows: Vec<&ActionLogRow> = g.rows.iter().map(|&i| evs[i as usize].row).collect();
        let first = rows[0];
        let outcomes: BTreeSet<Outcome> = g.rows.iter().map(|&i| evs[i as usize].outcome).collect();
        // The least stopped outcome among the rows.
        let action_taken = [
            Outcome::Permit,
            Outcome::AuditOnly,
            Outcome::Ringfenced,
            Outcome::Block,
        ]
        .into_iter()
        .find(|o| outcomes.contains(o))
        .map_or("Observed", Outcome::label);
        let mut risk = r.default_risk.unwrap_or(RiskLevel::Medium);
        let not_stopped = matches!(action_taken, "Permitted" | "Audit only");
        if r.escalates_when_not_stopped && not_stopped {
            risk = risk.escalated();
        }
        let device = join_sorted(rows.iter().filter_map(|r| r.hostname.as_deref()));
        let user = join_sorted(rows.iter().filter_map(|r| r.username.as_deref()));
        let computers: BTreeSet<&ComputerId> =
            rows.iter().filter_map(|r| r.computer_id.as_ref()).collect();
        let hashes: BTreeSet<String> = rows
            .iter()
            .flat_map(|r| row_hashes(r))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        let application = match &g.app {
            Some(app) => detect::application_name(first).unwrap_or(app).to_owned(),
            None => {
                let names: BTreeSet<&str> = rows
                    .iter()
                    .filter_map(|r| detect::application_name(r))
                    .collect();
                format!("{} applications", names.len())
            }
        };
        let n = rows.len();
        let who = |d: &Option<String>| {
            d.as_deref()
                .map(|s| clean(s).into_owned())
                .unwrap_or_else(|| "an unknown computer".into())
        };
        let reason = match g.rule {
            ids::ENCODED_POWERSHELL => {
                let markers: BTreeSet<&str> = rows.iter().flat_map(|r| detect::powershell_markers(r)).collect();
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
                "The unknown file {} ({}) was {}; it is not trusted and was not permitted anywhere in the window. Patient zero: {}.",
                clean(&application),
                g.app.as_deref().unwrap_or(""),
                g.extra_reason,
                g.patient_zero.as_ref().and_then(|p| p.device.as_deref()).map(clean).unwrap_or(Cow::Borrowed("unknown"))
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
            ids::REPEATED_DENIALS_USER => format!(
                "User {} had {} in the window: a user fighting their tooling (consider an approval) or malware retrying.",
                user.as_deref().map(clean).unwrap_or(Cow::Borrowed("?")),
                g.extra_reason
            ),
            ids::REPEATED_DENIALS_COMPUTER => format!(
                "Computer {} had {} in the window: a user fighting their tooling (consider an approval) or malware retrying.",
                who(&device),
                g.extra_reason
            ),
            _ => format!(
                "{} was blocked {} times on {} (threshold {}).",
                clean(&application),
                n,
                who(&device),
                c.org(org_id(&g.org).as_ref()).threshold
            ),
        };
        // As the original workflow reports it: "powershell.exe (obfuscated script)".
        let application = if g.rule == ids::ENCODED_POWERSHELL {
            format!("{application} (obfuscated script)")
        } else {
            application
        };
        let key = incident_key(&[&g.org, g.rule, g.app.as_deref().unwrap_or(""), &g.subject]);
        let ev = SecurityEvent {
            key,
            event_type: r.event_type,
            rule: r.id,
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
            last_seen: rows.last().and_then(|r| r.date_time),
            row_count: n as u64,
            action_log_ids: self.evidence(evs, &g.rows),
            hashes: hashes.into_iter().collect(),
            patient_zero: g.patient_zero,
            computers_affected: g.computers_affected,
        };
        (ev, g.rows)
    }

    fn tickets(
        &self,
        evs: &[Ev<'a>],
        detections: &[(SecurityEvent, Vec<u32>)],
    ) -> Vec<PlannedTicket> {
        let c = self.c;
        let mut out = Vec::new();
        for (index, (d, rows)) in detections.iter().enumerate() {
            if d.risk_level < c.ticket_min_risk {
                continue;
            }
            let org = c.org(d.organization_id.as_ref());
            let title = match d.event_type {
                "suspicious_execution" => "Suspicious execution",
                "lolbin_execution" => "LOLBin execution",
                "fleet_spread" => "Fleet spread",
                "policy_bypass" => "Policy bypass",
                "repeated_denials" => "Repeated denials",
                "ringfence_violation" => "Ringfence violation",
                "repeat_block" => "Repeat block",
                other => other,
            };
            let place = match (&d.device, &d.user) {
                (Some(dev), _)
                    if d.event_type != "repeated_denials"
                        || d.rule == ids::REPEATED_DENIALS_COMPUTER =>
                {
                    dev.clone()
                }
                (_, Some(u)) => u.clone(),
                (Some(dev), None) => dev.clone(),
                (None, None) => "unknown".to_owned(),
            };
            let summary_raw = match &d.organization_name {
                Some(org) => format!(
                    "[{}] {}: {} on {} ({})",
                    d.risk_level, title, d.application, place, org
                ),
                None => format!(
                    "[{}] {}: {} on {}",
                    d.risk_level, title, d.application, place
                ),
            };
            let summary = truncate_chars(&clean(&summary_raw), 100);
            let mut desc = String::new();
            let mut line = |k: &str, v: &str| {
                desc.push_str(k);
                desc.push_str(": ");
                desc.push_str(&clean(v));
                desc.push('\n');
            };
            line(
                "ThreatLocker detection",
                &format!("{} ({})", d.event_type, d.rule),
            );
            line("Risk", d.risk_level.as_str());
            line(
                "Organization",
                &format!(
                    "{} ({})",
                    d.organization_name.as_deref().unwrap_or("unknown"),
                    d.organization_id
                        .as_ref()
                        .map(|o| o.as_str())
                        .unwrap_or("no id")
                ),
            );
            line("Device", d.device.as_deref().unwrap_or("unknown"));
            line("User", d.user.as_deref().unwrap_or("unknown"));
            line("Application", &d.application);
            if let Some(k) = &d.application_key {
                line("Application key", k);
            }
            line("Action taken", d.action_taken);
            line("Reason", &d.reason);
            line("First seen", &fmt_time(d.first_seen));
            line("Last seen", &fmt_time(d.last_seen));
            line("Rows", &d.row_count.to_string());
            if !d.hashes.is_empty() {
                line("Hashes", &d.hashes.join(", "));
            }
            if let Some(pz) = &d.patient_zero {
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
            line("Incident key", &d.key);
            desc.push_str(
                "\nEvidence (oldest first; time | action log id | host | user | outcome | path):\n",
            );
            const MAX_LINES: usize = 20;
            for &i in rows.iter().take(MAX_LINES) {
                let r = evs[i as usize].row;
                let outcome = evs[i as usize].outcome.label();
                let l = format!(
                    "- {} | {} | {} | {} | {} | {}",
                    fmt_time(r.date_time),
                    row_id(r),
                    r.hostname.as_deref().unwrap_or(""),
                    r.username.as_deref().unwrap_or(""),
                    outcome,
                    r.full_path
                        .as_deref()
                        .or(r.process_path.as_deref())
                        .unwrap_or("")
                );
                desc.push_str(&clean(&l));
                desc.push('\n');
            }
            if rows.len() > MAX_LINES {
                desc.push_str(&format!("... and {} more row(s)\n", rows.len() - MAX_LINES));
            }
            out.push(PlannedTicket {
                dedupe_key: d.key.clone(),
                detection_key: d.key.clone(),
                detection_index: index,
                organization_id: d.organization_id.clone(),
                organization_name: d.organization_name.clone(),
                board: org.board.clone(),
                priority: c.priorities.for_risk(d.risk_level).to_owned(),
                risk_level: d.risk_level,
                summary,
                description: truncate_chars(&desc, 8000),
            });
        }
        out
    }

    fn approval(
        &self,
        pa: &PendingApproval,
        evs: &[Ev<'a>],
        hash_facts: &FxMap<String, HashFacts<'_>>,
        hash_detections: &FxMap<String, Vec<String>>,
    ) -> ApprovalDecision {
        let c = self.c;
        let r: &ApprovalRequest = &pa.request;
        let org = c.org(r.organization_id.as_ref());
        let hash = r
            .sha256
            .as_deref()
            .or(r.hash.as_deref())
            .map(str::trim)
            .filter(|h| !h.is_empty());
        let hashes: BTreeSet<String> = request_hashes(r).collect();
        let facts: Vec<&HashFacts<'_>> = hashes.iter().filter_map(|h| hash_facts.get(h)).collect();
        let rows: Vec<u32> = match facts.as_slice() {
            [one] => one.evidence.clone(),
            many => {
                // The oldest rows of the union are among the oldest of each part.
                let mut all: Vec<u32> = many.iter().flat_map(|f| &f.evidence).copied().collect();
                all.sort_unstable();
                all.dedup();
                self.oldest(evs, all)
            }
        };

        // Signers: the request's json `certs[].subject`, plus the matching rows' signers.
        let mut signers: BTreeSet<String> = BTreeSet::new();
        let mut signed = false;
        if let Some(json) = r.json.as_deref() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(json) {
                if let Some(certs) = v.get("certs").and_then(|c| c.as_array()) {
                    for cert in certs {
                        if let Some(s) = cert
                            .get("subject")
                            .and_then(|s| s.as_str())
                            .filter(|s| !s.trim().is_empty())
                        {
                            signers.insert(s.trim().to_owned());
                            signed = true;
                        }
                    }
                }
            }
        }
        for f in &facts {
            signed |= f.signed;
            signers.extend(f.signers.iter().map(|s| (*s).to_owned()));
        }
        let blocked_on = match facts.as_slice() {
            [one] => one.blocked_on.len(),
            many => many
                .iter()
                .flat_map(|f| &f.blocked_on)
                .collect::<BTreeSet<_>>()
                .len(),
        };
        let signer_matches = |list: &[String]| -> Option<String> {
            signers
                .iter()
                .find(|s| list.iter().any(|t| signer_is(s, t)))
                .cloned()
        };
        let detection_keys: Vec<String> = {
            let set: BTreeSet<&String> = hashes
                .iter()
                .filter_map(|h| hash_detections.get(h))
                .flatten()
                .collect();
            set.into_iter().cloned().collect()
        };
        let trusted_hash = hashes.iter().any(|h| c.trusted_hashes.contains(h));
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

        let mut flags: Vec<(&'static str, String)> = Vec::new();
        if r.approval_request_id.is_none() {
            flags.push((
                ids::MANUAL_MISSING_ID,
                "the request has no approval request id".into(),
            ));
        }
        if let Some(h) = hashes.iter().find(|h| c.never_hashes.contains(*h)) {
            flags.push((
                ids::MANUAL_NEVER_HASH,
                format!("its hash {h} is on the never-approve list"),
            ));
        }
        if let Some(p) = path {
            if let Some(pat) = c.never_paths.iter().find(|pat| text::glob_ci(pat, p)) {
                flags.push((
                    ids::MANUAL_NEVER_PATH,
                    format!(
                        "its path matches the never-approve pattern \"{}\"",
                        clean(pat)
                    ),
                ));
            }
        }
        if let Some(s) = signer_matches(&c.never_signers) {
            flags.push((
                ids::MANUAL_NEVER_SIGNER,
                format!("its signer \"{}\" is on the never-approve list", clean(&s)),
            ));
        }
        if detect::is_lolbin(&c.binaries, path) {
            flags.push((
                ids::MANUAL_LOLBIN,
                format!(
                    "{} is a living-off-the-land binary",
                    clean(text::file_name(path.unwrap_or("")))
                ),
            ));
        }
        if blocked_on as u64 >= u64::from(c.fleet_threshold) {
            flags.push((
                ids::MANUAL_FLEET,
                format!("its hash was blocked on {blocked_on} computers in the window"),
            ));
        }
        if !detection_keys.is_empty() {
            flags.push((
                ids::MANUAL_DETECTION,
                format!(
                    "{} detection(s) in this run involve the same hash",
                    detection_keys.len()
                ),
            ));
        }
        if !trusted_hash && !signed {
            if let Some(m) = path.and_then(|p| detect::user_writable(&c.binaries, p)) {
                flags.push((
                    ids::MANUAL_UNSIGNED_USER_PATH,
                    format!("it is unsigned (no signature evidence) and lives in a user-writable folder ({m})"),
                ));
            }
        }

        let (auto, rule_id, reason): (bool, &'static str, String) = if let Some((id, why)) =
            flags.first()
        {
            (false, id, format!("Manual review: {why}."))
        } else if trusted_hash {
            (
                true,
                ids::AUTO_TRUSTED_HASH,
                "Auto-approved: the file's hash is on the trusted list.".into(),
            )
        } else if let Some(s) = signer_matches(&c.trusted_signers) {
            (
                true,
                ids::AUTO_TRUSTED_SIGNER,
                format!("Auto-approved: signed by trusted signer \"{}\".", clean(&s)),
            )
        } else if org.categories.is_empty() {
            (false, ids::MANUAL_DISABLED, "Manual review: auto-approval is off for this organization (no auto-approve categories).".into())
        } else if pa.research.is_none() {
            (
                false,
                ids::MANUAL_UNKNOWN_CATEGORIES,
                "Manual review: the application's categories are unknown (no research details)."
                    .into(),
            )
        } else if categories.iter().all(|c| c.trim().is_empty()) {
            (
                false,
                ids::MANUAL_UNKNOWN_CATEGORIES,
                "Manual review: the application's research lists no categories.".into(),
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
            )
        } else {
            let mut cats: Vec<&str> = categories
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .collect();
            cats.sort_unstable();
            cats.dedup();
            (
                true,
                ids::AUTO_CATEGORY,
                format!(
                    "Application in approved category ({}).",
                    clean(&cats.join(", "))
                ),
            )
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
            hash: hash.map(str::to_owned),
            path: path.map(str::to_owned),
            requested_by: r.username.clone().or_else(|| r.requestor.clone()),
            device: r.hostname.clone(),
            auto_approve: auto,
            rule: rule_id,
            reason,
            also_flagged_by: flags.iter().skip(1).map(|(id, _)| *id).collect(),
            categories: cats,
            signers: signers.into_iter().collect(),
            action_log_ids: self.evidence(evs, &rows),
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
