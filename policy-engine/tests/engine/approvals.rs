//! One case per approval rule: what auto-approves, what goes to a technician and why.

use policy_engine::{ApprovalScope, Engine, EngineConfig, PendingApproval};
use threatlocker_api::{ActionLogRow, ApprovalStatus};

use crate::support::*;

struct Case {
    name: &'static str,
    config: fn(&mut EngineConfig),
    approval: PendingApproval,
    rows: Vec<ActionLogRow>,
    auto: bool,
    rule: &'static str,
    reason_contains: &'static str,
}

fn no_change(_: &mut EngineConfig) {}

/// The request without its certificates.
fn unsigned(mut r: threatlocker_api::ApprovalRequest) -> threatlocker_api::ApprovalRequest {
    r.json = None;
    r
}

fn cases() -> Vec<Case> {
    let comm = Some(&["Communication"][..]);
    vec![
        Case {
            name: "category_in_list_auto_approves",
            config: no_change,
            approval: pending(request("r1"), comm),
            rows: vec![],
            auto: true,
            rule: "auto_approve.category",
            reason_contains: "Application in approved category (Communication)",
        },
        Case {
            name: "category_match_is_case_insensitive",
            config: no_change,
            approval: pending(request("r1"), Some(&["  communication "][..])),
            rows: vec![],
            auto: true,
            rule: "auto_approve.category",
            reason_contains: "approved category",
        },
        Case {
            name: "one_category_outside_the_list_needs_review",
            config: no_change,
            approval: pending(request("r1"), Some(&["Communication", "Remote Access"][..])),
            rows: vec![],
            auto: false,
            rule: "manual.category_not_allowed",
            reason_contains: "\"Remote Access\" is not in the auto-approve list",
        },
        Case {
            name: "unknown_research_needs_review_and_says_so",
            config: no_change,
            approval: pending(request("r1"), None),
            rows: vec![],
            auto: false,
            rule: "manual.categories_unknown",
            reason_contains: "categories are unknown",
        },
        Case {
            name: "empty_category_list_turns_auto_approval_off",
            config: |c| c.org_variables.threatlocker_auto_approve_categories.clear(),
            approval: pending(request("r1"), comm),
            rows: vec![],
            auto: false,
            rule: "manual.auto_approve_disabled",
            reason_contains: "auto-approval is off",
        },
        Case {
            name: "org_override_of_categories_applies_to_that_org_only",
            config: |c| {
                c.org_overrides.insert(
                    ORG.into(),
                    toml::from_str("threatlocker_auto_approve_categories = \"Finance, HR\"")
                        .unwrap(),
                );
            },
            approval: pending(request("r1"), comm),
            rows: vec![],
            auto: false,
            rule: "manual.category_not_allowed",
            reason_contains: "Communication",
        },
        Case {
            name: "never_approve_hash_wins_over_category",
            config: |c| c.rules.never_approve_hashes = vec!["AA11".into()],
            approval: pending(request("r1"), comm),
            rows: vec![],
            auto: false,
            rule: "manual.never_approve_hash",
            reason_contains: "never-approve list",
        },
        Case {
            name: "never_approve_path_pattern_matches",
            config: |c| c.rules.never_approve_paths = vec!["*\\zoom\\*".into()],
            approval: pending(request("r1"), comm),
            rows: vec![],
            auto: false,
            rule: "manual.never_approve_path",
            reason_contains: "never-approve pattern",
        },
        Case {
            name: "never_approve_signer_matches_the_cn",
            config: |c| {
                c.rules.never_approve_signers = vec!["zoom video communications, inc.".into()]
            },
            approval: pending(request("r1"), comm),
            rows: vec![],
            auto: false,
            rule: "manual.never_approve_signer",
            reason_contains: "signer",
        },
        Case {
            name: "lolbin_is_never_auto_approved",
            config: no_change,
            approval: pending(
                {
                    let mut r = request("r1");
                    r.path = Some("c:\\windows\\system32\\mshta.exe".into());
                    r
                },
                comm,
            ),
            rows: vec![],
            auto: false,
            rule: "manual.lolbin",
            reason_contains: "mshta.exe is a living-off-the-land binary",
        },
        Case {
            name: "unknown_file_spreading_holds_the_request_naming_the_detection",
            config: no_change,
            approval: pending(unsigned(request("r1")), comm),
            rows: vec![
                R::on(1).sha("aa11").block().build(),
                R::on(2).sha("AA11").block().build(),
                R::on(3).sha("aa11").block().build(),
            ],
            auto: false,
            rule: "manual.file_implicated",
            reason_contains: "detect.fleet_spread (fleet_spread) in detection tl:det:",
        },
        Case {
            name: "suspicious_execution_of_the_file_holds_the_request",
            config: no_change,
            approval: pending(request("r1"), comm),
            rows: vec![R::new(1)
                .sha("aa11")
                .data("powershell -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA")
                .block()
                .build()],
            auto: false,
            rule: "manual.file_implicated",
            reason_contains: "detect.encoded_powershell (suspicious_execution)",
        },
        Case {
            name: "ringfence_violation_of_the_file_does_not_hold_it",
            config: no_change,
            approval: pending(request("r1"), comm),
            rows: vec![R::new(1).sha("aa11").ringfenced().build()],
            auto: true,
            rule: "auto_approve.category",
            reason_contains: "approved category",
        },
        Case {
            name: "noisy_user_and_repeat_blocks_do_not_hold_a_signed_built_in_browser",
            config: |c| {
                c.org_variables.threatlocker_auto_approve_categories = vec!["Web Browsers".into()]
            },
            approval: browser(browser_request("r1", "c0ffee")),
            rows: vec![
                // The installer itself, blocked three times (why the user asked)...
                R::new(1).sha("C0FFEE").block().build(),
                R::new(2).sha("c0ffee").block().build(),
                R::new(3).sha("c0ffee").block().build(),
                // ...and the same user fighting other tools on the same computer.
                R::new(4).sha("x1").block().build(),
                R::new(5).sha("x2").block().build(),
                R::new(6).sha("x3").ringfenced().build(),
            ],
            auto: true,
            rule: "auto_approve.category",
            reason_contains: "Application in approved category (Web Browsers); the file is known-good: signed by \"CN=Google LLC, O=Google LLC\" and matches the built-in application Google Chrome",
        },
        Case {
            name: "signed_built_in_browser_blocked_on_three_computers_is_approved",
            config: |c| {
                c.org_variables.threatlocker_auto_approve_categories = vec!["Web Browsers".into()]
            },
            approval: browser(browser_request("r1", "c0ffee")),
            rows: (1..=3).map(|i| R::on(i).sha("c0ffee").block().build()).collect(),
            auto: true,
            rule: "auto_approve.category",
            reason_contains: "known-good",
        },
        Case {
            name: "invalid_certificate_is_not_known_good",
            config: |c| {
                c.org_variables.threatlocker_auto_approve_categories = vec!["Web Browsers".into()]
            },
            approval: browser({
                let mut r = browser_request("r1", "c0ffee");
                r.path = Some("c:\\program files\\setup.exe".into());
                r.json = r.json.map(|j| j.replace("\"validCert\":true", "\"validCert\":false"));
                r
            }),
            rows: vec![],
            auto: false,
            rule: "manual.not_known_good",
            reason_contains: "no valid signature",
        },
        Case {
            name: "unsigned_file_with_approved_category_is_not_known_good",
            config: no_change,
            approval: pending(unsigned(request("r1")), comm),
            rows: vec![],
            auto: false,
            rule: "manual.not_known_good",
            reason_contains: "category (Communication) is approved but the file is not known-good",
        },
        Case {
            name: "trusted_sha256_inside_json_matches_the_request",
            config: |c| c.rules.trusted_hashes = vec!["C0FFEE".into()],
            approval: browser(browser_request("r1", "c0ffee")),
            rows: vec![],
            auto: true,
            rule: "auto_approve.trusted_hash",
            reason_contains: "c0ffee is on trusted_hashes",
        },
        Case {
            name: "trusted_hash_overrides_the_lolbin_flag",
            config: |c| c.rules.trusted_hashes = vec!["aa11".into()],
            approval: pending(
                {
                    let mut r = request("r1");
                    r.path = Some("c:\\windows\\system32\\mshta.exe".into());
                    r
                },
                None,
            ),
            rows: vec![],
            auto: true,
            rule: "auto_approve.trusted_hash",
            reason_contains: "overrides manual.lolbin",
        },
        Case {
            name: "never_approve_signer_wins_over_trusted_hash",
            config: |c| {
                c.rules.trusted_hashes = vec!["aa11".into()];
                c.rules.never_approve_signers = vec!["zoom video communications, inc.".into()];
            },
            approval: pending(request("r1"), comm),
            rows: vec![],
            auto: false,
            rule: "manual.never_approve_signer",
            reason_contains: "never-approve list",
        },
        Case {
            name: "unsigned_binary_in_downloads_needs_review",
            config: no_change,
            approval: pending(
                {
                    let mut r = request("r1");
                    r.path = Some("C:\\Users\\jsmith\\Downloads\\zoominstaller.exe".into());
                    r.json = None;
                    r
                },
                comm,
            ),
            rows: vec![],
            auto: false,
            rule: "manual.unsigned_user_writable_path",
            reason_contains: "user-writable folder (\\users\\)",
        },
        Case {
            name: "signed_binary_in_downloads_can_auto_approve",
            config: no_change,
            approval: pending(
                {
                    let mut r = request("r1");
                    r.path = Some("C:\\Users\\jsmith\\Downloads\\zoominstaller.exe".into());
                    r
                },
                comm,
            ),
            rows: vec![],
            auto: true,
            rule: "auto_approve.category",
            reason_contains: "approved category",
        },
        Case {
            name: "trusted_hash_approves_without_categories",
            config: |c| c.rules.trusted_hashes = vec!["aa11".into()],
            approval: pending(request("r1"), None),
            rows: vec![],
            auto: true,
            rule: "auto_approve.trusted_hash",
            reason_contains: "aa11 is on trusted_hashes",
        },
        Case {
            name: "trusted_signer_approves_without_categories",
            config: |c| c.rules.trusted_signers = vec!["Zoom Video Communications, Inc.".into()],
            approval: pending(request("r1"), None),
            rows: vec![],
            auto: true,
            rule: "auto_approve.trusted_signer",
            reason_contains: "trusted signer",
        },
        Case {
            name: "signer_cn_must_match_exactly_not_as_substring",
            config: |c| c.rules.trusted_signers = vec!["Zoom".into()],
            approval: pending(request("r1"), None),
            rows: vec![],
            auto: false,
            rule: "manual.categories_unknown",
            reason_contains: "unknown",
        },
        Case {
            name: "group_scope_without_group_id_needs_review",
            config: |c| c.rules.approval_scope = ApprovalScope::Group,
            approval: pending(request("r1"), comm),
            rows: vec![],
            auto: false,
            rule: "manual.scope_target_missing",
            reason_contains: "no group id",
        },
        Case {
            name: "request_without_id_needs_review",
            config: no_change,
            approval: pending(
                {
                    let mut r = request("r1");
                    r.approval_request_id = None;
                    r
                },
                comm,
            ),
            rows: vec![],
            auto: false,
            rule: "manual.missing_request_id",
            reason_contains: "no approval request id",
        },
    ]
}

#[test]
fn every_approval_rule_decides_its_case() {
    for case in cases() {
        let mut cfg = config();
        (case.config)(&mut cfg);
        let engine = Engine::new(cfg).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let d = engine.evaluate(&input(case.rows).with_approvals(vec![case.approval]));
        assert_eq!(d.approvals.len(), 1, "{}", case.name);
        let a = &d.approvals[0];
        assert_eq!(a.auto_approve, case.auto, "{}: {a:#?}", case.name);
        assert_eq!(a.rule, case.rule, "{}: {}", case.name, a.reason);
        assert!(
            a.reason.contains(case.reason_contains),
            "{}: reason {:?}",
            case.name,
            a.reason
        );
        assert!(
            policy_engine::rules::rule(a.rule).is_some(),
            "{}: rule not in table",
            case.name
        );
        assert_eq!(
            d.policy_changes.len(),
            usize::from(case.auto),
            "{}",
            case.name
        );
        if case.auto {
            let p = &d.policy_changes[0];
            assert_eq!(p.request_id.as_str(), "r1");
            assert_eq!(p.rule, case.rule);
            assert_eq!(a.scope, Some(p.scope));
        }
    }
}

#[test]
fn every_approval_rule_in_the_table_has_a_case() {
    let covered: Vec<&str> = cases().iter().map(|c| c.rule).collect();
    for r in policy_engine::rules::RULES
        .iter()
        .filter(|r| r.kind != policy_engine::rules::RuleKind::Detection)
    {
        assert!(covered.contains(&r.id), "no case for {}", r.id);
    }
}

#[test]
fn evidence_names_the_rows_with_the_same_hash_and_other_flags() {
    let mut req = request("r1");
    req.path = Some("c:\\users\\x\\downloads\\mshta.exe".into());
    req.json = None;
    let rows = vec![
        R::new(7).sha("aa11").block().build(),
        R::new(8).sha("other").block().build(),
    ];
    let d = engine()
        .evaluate(&input(rows).with_approvals(vec![pending(req, Some(&["Communication"][..]))]));
    let a = &d.approvals[0];
    assert_eq!(a.action_log_ids, vec!["7"]);
    assert_eq!(a.rule, "manual.lolbin");
    assert_eq!(
        a.also_flagged_by,
        vec!["manual.unsigned_user_writable_path"]
    );
}

#[test]
fn actioned_requests_are_not_decided() {
    let mut r = request("r1");
    r.status_id = Some(ApprovalStatus::Approved);
    let d = engine()
        .evaluate(&input(vec![]).with_approvals(vec![pending(r, Some(&["Communication"][..]))]));
    assert!(d.approvals.is_empty());
    assert_eq!(d.ignored.approvals_not_pending, 1);
}

#[test]
fn organization_scope_plans_an_organization_wide_change() {
    let mut cfg = config();
    cfg.org_overrides.insert(
        ORG.into(),
        toml::from_str("approval_scope = \"organization\"").unwrap(),
    );
    let d = Engine::new(cfg).unwrap().evaluate(
        &input(vec![]).with_approvals(vec![pending(request("r1"), Some(&["Productivity"][..]))]),
    );
    assert_eq!(d.policy_changes[0].scope, ApprovalScope::Organization);
    assert_eq!(
        d.policy_changes[0]
            .application_id
            .as_ref()
            .map(|a| a.as_str()),
        Some("app-zoom")
    );
}

#[test]
fn a_request_listed_twice_is_decided_once() {
    let p = pending(request("r1"), Some(&["Communication"][..]));
    let d = engine().evaluate(&input(vec![]).with_approvals(vec![p.clone(), p]));
    assert_eq!(d.approvals.len(), 1);
    assert_eq!(d.policy_changes.len(), 1);
    assert_eq!(d.ignored.duplicate_approvals, 1);
}

#[test]
fn request_and_rows_match_on_either_hash_field() {
    // Which algorithm `hash` uses is uncertain: match `hash` and `sha256` against both row fields.
    let mut req = request("r1");
    req.sha256 = None;
    req.hash = Some("BEEF01".into());
    let mut by_hash = R::new(3).block().build();
    by_hash.hash = Some("beef01".into());
    let by_sha = R::new(4).sha("beef01").block().build();
    let d = engine().evaluate(
        &input(vec![
            by_hash,
            by_sha,
            R::new(5).sha("other").block().build(),
        ])
        .with_approvals(vec![pending(req, Some(&["Communication"][..]))]),
    );
    assert_eq!(d.approvals[0].action_log_ids, vec!["3", "4"]);
    assert_eq!(d.approvals[0].hash.as_deref(), Some("BEEF01"));
}
