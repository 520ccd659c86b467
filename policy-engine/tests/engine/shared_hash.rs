//! Many requests sharing hashes that match many rows: each decision must be what a direct reading
//! of the rows gives (the engine gathers each hash's rows once, not once per request).

use std::collections::{BTreeSet, HashSet};

use policy_engine::{ApprovalDecision, Engine, EngineConfig, PendingApproval};
use threatlocker_api::ActionLogRow;

use crate::support::*;

const EVIDENCE: usize = 7;

fn cfg() -> EngineConfig {
    let mut c = config();
    c.rules.max_evidence_ids = EVIDENCE;
    c
}

/// 1 200 rows over four hashes (one written in upper case, one only in the `hash` field), blocks
/// on up to five computers, signers in `cert` and `certs`, id-less rows tied on time, re-sent
/// rows and rows outside the window.
fn rows() -> Vec<ActionLogRow> {
    let mut out = Vec::new();
    for i in 0..1_200i64 {
        let mut r = R::new(i + 1).at((i * 7) % 300);
        r = match i % 4 {
            0 => r.sha("AA11"),
            1 => r.sha(" aa11 "),
            2 => r,
            _ => r.sha("cc33").path("c:\\users\\x\\downloads\\tool.exe"),
        };
        if matches!(i % 4, 1 | 2) {
            r.0.hash = Some("bb22".into());
        }
        if i % 3 == 0 {
            let comp = if i % 4 == 3 { 0 } else { i % 5 };
            r = r
                .block()
                .host(&format!("comp-{comp}"), &format!("WS-{comp}"));
        }
        if i % 4 != 3 {
            if i % 6 == 0 {
                r = r.cert("CN=Vendor A, O=Vendor A");
            } else if i % 10 == 1 {
                r.0.certs = Some(vec!["  CN=Vendor B  ".into(), " ".into()]);
            }
        }
        if i % 50 == 0 {
            r.0.action_log_id = None;
            r = r.at(0);
        }
        if i % 97 == 0 {
            out.push(r.clone().build());
        }
        if i % 113 == 0 {
            r = r.at(700);
        }
        out.push(r.build());
    }
    out
}

fn requests() -> Vec<PendingApproval> {
    let mut out = Vec::new();
    let shapes: [(usize, Option<&str>, Option<&str>, bool); 5] = [
        (30, Some("aa11"), None, true),
        (30, None, Some("BB22"), true),
        (30, Some("aa11"), Some("bb22"), true),
        (10, Some("cc33"), None, false),
        (5, Some("dd44"), None, false),
    ];
    for (shape, (n, sha, hash, zoom)) in shapes.into_iter().enumerate() {
        for k in 0..n {
            let mut r = request(&format!("r-{shape}-{k:02}"));
            r.sha256 = sha.map(str::to_owned);
            r.hash = hash.map(str::to_owned);
            r.computer_id = Some(format!("comp-{}", k % 7).as_str().into());
            if !zoom {
                r.path = Some("c:\\users\\x\\downloads\\tool.exe".into());
                r.json = None;
            }
            out.push(pending(r, Some(&["Communication"][..])));
        }
    }
    out
}

/// A direct reading of the rows for one request, as the definitions in the README state it.
struct Expected {
    ids: Vec<String>,
    signers: Vec<String>,
    /// Signed (every request here has research and a matching application).
    known_good: bool,
    unsigned_user_path: bool,
}

fn expected(rows: &[ActionLogRow], p: &PendingApproval) -> Expected {
    let fold = |s: &str| s.trim().to_lowercase();
    let hashes: BTreeSet<String> = [p.request.sha256.as_deref(), p.request.hash.as_deref()]
        .into_iter()
        .flatten()
        .map(fold)
        .collect();
    let mut seen = HashSet::new();
    let mut matching: Vec<&ActionLogRow> = rows
        .iter()
        .filter(|r| r.date_time.is_some_and(|d| d >= t(0) && d < t(600)))
        .filter(|r| r.action_log_id.is_none_or(|id| seen.insert(id)))
        .filter(|r| {
            [r.sha256_hash.as_deref(), r.hash.as_deref()]
                .into_iter()
                .flatten()
                .any(|h| hashes.contains(&fold(h)))
        })
        .collect();
    matching.sort_by_key(|r| (r.date_time, r.action_log_id)); // stable: input order breaks ties
    let mut signers: BTreeSet<String> = BTreeSet::new();
    if p.request.json.is_some() {
        signers.insert("CN=\"Zoom Video Communications, Inc.\", O=Zoom".into());
    }
    let mut signed = !signers.is_empty();
    for r in &matching {
        signed |= r.cert_exists == Some(true);
        for s in r.cert.iter().chain(r.certs.iter().flatten()) {
            if !s.trim().is_empty() {
                signers.insert(s.trim().to_owned());
                signed = true;
            }
        }
    }
    Expected {
        ids: matching
            .iter()
            .take(EVIDENCE)
            .map(|r| {
                r.action_log_id
                    .map_or_else(|| "(no id)".to_owned(), |i| i.to_string())
            })
            .collect(),
        signers: signers.into_iter().collect(),
        known_good: signed,
        unsigned_user_path: !signed && p.request.json.is_none(),
    }
}

fn flagged(a: &ApprovalDecision, rule: &str) -> bool {
    a.rule == rule || a.also_flagged_by.contains(&rule)
}

#[test]
fn requests_sharing_hashes_get_the_decisions_a_direct_reading_of_the_rows_gives() {
    let engine = Engine::new(cfg()).unwrap();
    let rows = rows();
    let requests = requests();
    let d = engine.evaluate(&input(rows.clone()).with_approvals(requests.clone()));
    assert_eq!(d.approvals.len(), requests.len());

    for p in &requests {
        let id = p.request.approval_request_id.clone();
        let a = d.approvals.iter().find(|a| a.request_id == id).unwrap();
        let e = expected(&rows, p);
        let name = id.as_ref().map(|i| i.as_str()).unwrap_or("?");
        assert_eq!(a.action_log_ids, e.ids, "{name}: evidence");
        assert_eq!(a.signers, e.signers, "{name}: signers");
        assert_eq!(a.known_good, e.known_good, "{name}: known-good");
        assert_eq!(
            flagged(a, "manual.unsigned_user_writable_path"),
            e.unsigned_user_path,
            "{name}: unsigned"
        );
        // Evaluated alone, the request is decided exactly the same way.
        let alone = engine.evaluate(&input(rows.clone()).with_approvals(vec![p.clone()]));
        assert_eq!(&alone.approvals[0], a, "{name}: alone vs. shared");
    }

    // The data exercises what it should: truncated evidence with id-less ties first, signers
    // from rows and from the request, known-good files and others.
    let first = &d.approvals[0];
    assert_eq!(first.action_log_ids.len(), EVIDENCE);
    assert!(first.action_log_ids.contains(&"(no id)".to_owned()));
    assert!(first
        .signers
        .contains(&"CN=Vendor A, O=Vendor A".to_owned()));
    assert!(d.approvals.iter().any(|a| a.known_good));
    assert!(d.approvals.iter().any(|a| !a.known_good));
    assert!(d
        .approvals
        .iter()
        .any(|a| flagged(a, "manual.unsigned_user_writable_path")));
}
