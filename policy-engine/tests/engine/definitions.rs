//! The design's revised definitions, one table per definition, including the failures measured
//! on a realistic MSP tenant: two findings for the same rows, one ticket per detection, a noisy
//! user holding a signed built-in browser installer.

use std::collections::BTreeSet;

use policy_engine::{build_report, Engine, EngineConfig, Outcomes, RiskLevel, TicketOutcome};
use threatlocker_api::ActionLogRow;

use crate::support::*;

const PS: &str = "c:\\windows\\system32\\windowspowershell\\v1.0\\powershell.exe";
const B64: &str =
    "SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA";

/// Encoded PowerShell started by Word on WS-1 (row `id`).
fn word_powershell(id: i64) -> R {
    R::new(id)
        .path(PS)
        .sha("ps1")
        .process("c:\\program files\\microsoft office\\root\\office16\\winword.exe")
        .data(&format!("powershell.exe -nop -w hidden -enc {B64}"))
}

fn wide_engine(f: impl FnOnce(&mut EngineConfig)) -> Engine {
    let mut c = config();
    c.rules.max_evidence_ids = 10_000;
    f(&mut c);
    Engine::new(c).unwrap()
}

struct DetectionCase {
    name: &'static str,
    rows: Vec<ActionLogRow>,
    /// (rule, also matched) of every detection, sorted.
    expect: Vec<(&'static str, Vec<&'static str>)>,
}

fn detection_cases() -> Vec<DetectionCase> {
    vec![
        DetectionCase {
            name: "encoded_powershell_started_by_word_is_one_suspicious_execution",
            rows: vec![word_powershell(1).build()],
            expect: vec![(
                "detect.encoded_powershell",
                vec!["detect.lolbin_office_or_browser_parent"],
            )],
        },
        DetectionCase {
            name: "same_user_and_computer_is_one_repeated_denials_finding",
            rows: vec![
                R::new(1).sha("a").block().build(),
                R::new(2).sha("b").block().build(),
                R::new(3).sha("c").block().build(),
            ],
            expect: vec![("detect.repeated_denials", vec![])],
        },
        DetectionCase {
            name: "a_repeat_block_inside_repeated_denials_is_also_matched",
            rows: vec![
                R::new(1).sha("a").block().build(),
                R::new(2).sha("a").block().build(),
                R::new(3).sha("a").block().build(),
                R::new(4).sha("b").block().build(),
            ],
            expect: vec![("detect.repeated_denials", vec!["detect.repeat_block"])],
        },
        DetectionCase {
            name: "blocked_encoded_powershell_retried_is_suspicious_not_a_repeat_block",
            rows: (1..=3)
                .map(|i| word_powershell(i).block().build())
                .collect(),
            expect: vec![(
                "detect.encoded_powershell",
                vec![
                    "detect.lolbin_office_or_browser_parent",
                    "detect.repeat_block",
                ],
            )],
        },
        DetectionCase {
            name: "unknown_file_on_three_computers_absorbs_their_repeat_blocks",
            rows: (1..=3)
                .flat_map(|c| {
                    (0..3).map(move |k| {
                        R::new(c * 10 + k)
                            .sha("evil")
                            .host(&format!("c{c}"), &format!("WS-{c}"))
                            .user(&format!("u{c}"))
                            .block()
                            .build()
                    })
                })
                .collect(),
            expect: vec![("detect.fleet_spread", vec!["detect.repeat_block"])],
        },
        DetectionCase {
            name: "signed_built_in_file_blocked_widely_is_only_a_policy_gap",
            rows: (1..=4)
                .map(|i| {
                    R::on(i)
                        .sha("good")
                        .cert("CN=Google LLC")
                        .built_in()
                        .block()
                        .build()
                })
                .collect(),
            expect: vec![("detect.policy_gap", vec![])],
        },
    ]
}

#[test]
fn the_same_rows_never_yield_two_detections() {
    let engine = wide_engine(|_| {});
    for case in detection_cases() {
        let d = engine.evaluate(&input(case.rows));
        let mut got: Vec<(&str, Vec<&str>)> = d
            .detections
            .iter()
            .map(|e| (e.rule, e.also_matched.clone()))
            .collect();
        got.sort();
        assert_eq!(got, case.expect, "{}", case.name);
        let mut seen = BTreeSet::new();
        for e in &d.detections {
            assert!(!e.action_log_ids.is_empty(), "{}: no evidence", case.name);
            for id in &e.action_log_ids {
                assert!(seen.insert(id.clone()), "{}: row {id} twice", case.name);
            }
        }
    }
}

#[test]
fn no_row_is_in_two_detections_on_a_mixed_tenant() {
    let mut rows = Vec::new();
    let mut id = 0;
    let mut next = || {
        id += 1;
        id
    };
    for c in 0..6 {
        let host = |r: R| r.host(&format!("c{c}"), &format!("WS-{c}"));
        for k in 0..4 {
            rows.push(host(R::new(next()).sha(&format!("app{c}-{}", k % 3)).block()).build());
        }
        rows.push(host(word_powershell(next())).build());
        rows.push(host(R::new(next()).sha("spread").block()).build());
        rows.push(host(R::new(next()).sha("ring").ringfenced()).build());
    }
    let d = wide_engine(|_| {}).evaluate(&input(rows));
    let mut seen = BTreeSet::new();
    let mut counted = 0;
    for e in &d.detections {
        counted += e.row_count;
        for id in &e.action_log_ids {
            assert!(seen.insert(id.clone()), "row {id} in two detections");
        }
    }
    assert_eq!(counted as usize, seen.len());
    let types: BTreeSet<&str> = d.detections.iter().map(|e| e.event_type).collect();
    for t in [
        "suspicious_execution",
        "fleet_spread",
        "repeated_denials",
        "ringfence_violation",
    ] {
        assert!(types.contains(t), "{t} missing: {types:?}");
    }
}

struct TicketCase {
    name: &'static str,
    config: fn(&mut EngineConfig),
    rows: Vec<ActionLogRow>,
    /// (summary contains, detections in the ticket) per ticket.
    tickets: Vec<(&'static str, usize)>,
}

fn ticket_cases() -> Vec<TicketCase> {
    vec![
        TicketCase {
            name: "several_detections_on_one_computer_are_one_ticket_naming_it",
            config: |_| {},
            rows: vec![
                word_powershell(1).build(),
                R::new(2).sha("a").block().build(),
                R::new(3).sha("b").block().build(),
                R::new(4).sha("c").block().build(),
                R::new(5).sha("r").ringfenced().build(),
            ],
            tickets: vec![("Suspicious execution + 2 more on WS-1 (Contoso Dental)", 3)],
        },
        TicketCase {
            name: "two_computers_are_two_tickets",
            config: |_| {},
            rows: vec![
                word_powershell(1).build(),
                word_powershell(2).host("c2", "WS-2").build(),
            ],
            tickets: vec![("on WS-1", 1), ("on WS-2", 1)],
        },
        TicketCase {
            name: "fleet_spread_is_one_ticket_naming_the_file",
            config: |_| {},
            rows: (1..=3)
                .map(|i| {
                    R::on(i)
                        .sha("evil")
                        .path("c:\\temp\\evil.exe")
                        .block()
                        .build()
                })
                .collect(),
            tickets: vec![("Fleet spread: evil.exe on 3 computers", 1)],
        },
        TicketCase {
            name: "a_policy_gap_opens_no_ticket_even_at_ticket_min_risk_low",
            config: |c| c.rules.ticket_min_risk = RiskLevel::Low,
            rows: (1..=3)
                .map(|i| {
                    R::on(i)
                        .sha("good")
                        .cert("CN=Google LLC")
                        .built_in()
                        .block()
                        .build()
                })
                .collect(),
            tickets: vec![],
        },
        TicketCase {
            name: "a_repeat_block_opens_a_ticket_below_the_default_medium",
            config: |_| {},
            rows: (1..=3)
                .map(|i| R::new(i).sha("a").block().build())
                .collect(),
            tickets: vec![("Repeat block on WS-1", 1)],
        },
        TicketCase {
            name: "below_ticket_min_risk_without_repeat_block_is_reported_only",
            config: |c| c.rules.ticket_min_risk = RiskLevel::High,
            rows: vec![R::new(1).sha("r").ringfenced().build()],
            tickets: vec![],
        },
    ]
}

#[test]
fn one_ticket_per_incident() {
    for case in ticket_cases() {
        let d = wide_engine(case.config).evaluate(&input(case.rows));
        let got: Vec<(String, usize)> = d
            .tickets
            .iter()
            .map(|t| (t.summary.clone(), t.detection_keys.len()))
            .collect();
        assert_eq!(got.len(), case.tickets.len(), "{}: {got:#?}", case.name);
        for ((summary, n), (want, want_n)) in got.iter().zip(&case.tickets) {
            assert!(summary.contains(want), "{}: {summary}", case.name);
            assert_eq!(n, want_n, "{}: {summary}", case.name);
        }
        for t in &d.tickets {
            // The dedupe key is the incident of every detection the ticket holds.
            for k in &t.detection_keys {
                let det = d.detections.iter().find(|e| &e.key == k).unwrap();
                assert_eq!(det.incident, t.dedupe_key, "{}", case.name);
            }
        }
    }
}

#[test]
fn the_default_ticket_min_risk_is_medium() {
    assert_eq!(
        EngineConfig::default().rules.ticket_min_risk,
        RiskLevel::Medium
    );
}

#[test]
fn the_incident_key_does_not_depend_on_rule_or_window() {
    let e = engine();
    // Run 1: a repeat block on WS-1. Run 2, a later overlapping window: suspicious execution.
    let run1 = e.evaluate(&input(
        (1..=3)
            .map(|i| R::new(i).sha("a").block().build())
            .collect(),
    ));
    let mut later = input(vec![word_powershell(400).at(400).build()]);
    later.window_start = t(60);
    later.window_end = t(660);
    let run2 = e.evaluate(&later);
    assert_ne!(run1.detections[0].rule, run2.detections[0].rule);
    assert_ne!(run1.detections[0].key, run2.detections[0].key);
    assert_eq!(run1.detections[0].incident, run2.detections[0].incident);
    assert_eq!(run1.tickets[0].dedupe_key, run2.tickets[0].dedupe_key);
    // Another computer is another incident.
    let other = e.evaluate(&input(vec![word_powershell(1).host("c2", "WS-2").build()]));
    assert_ne!(other.detections[0].incident, run2.detections[0].incident);
}

#[test]
fn every_report_entry_carries_its_incident_evidence_and_ticket() {
    let rows = vec![
        word_powershell(1).build(),
        R::new(2).sha("a").block().build(),
        R::new(3).sha("b").block().build(),
        R::new(4).sha("c").block().build(),
        // Reported only: a Medium ringfence on another computer with ticket_min_risk High.
        R::new(5).sha("r").ringfenced().host("c2", "WS-2").build(),
    ];
    let d = wide_engine(|c| c.rules.ticket_min_risk = RiskLevel::High).evaluate(&input(rows));
    assert_eq!(d.tickets.len(), 1);
    let mut o = Outcomes::new(false);
    o.tickets.insert(
        d.tickets[0].dedupe_key.clone(),
        TicketOutcome::new("SEC-1", true),
    );
    let r = build_report(&d, &o);
    assert_eq!(r.security_events.len(), 3);
    for e in &r.security_events {
        assert!(e.incident.starts_with("tl:inc:"));
        assert!(!e.action_log_ids.is_empty());
        let ticketed = e.incident == d.tickets[0].dedupe_key;
        assert_eq!(e.ticket_id.is_some(), ticketed, "{e:?}");
        assert_eq!(e.ticket_created, ticketed);
    }
    assert_eq!(r.blocked_summary.tickets_created, 1);
    let ps = r
        .security_events
        .iter()
        .find(|e| e.event_type == "suspicious_execution")
        .unwrap();
    assert_eq!(
        ps.also_matched,
        vec!["detect.lolbin_office_or_browser_parent"]
    );
}

#[test]
fn sixteen_browser_installers_on_noisy_computers_are_all_approved() {
    // The measured failure: 0 of 16 signed built-in browser installers approved, held by the
    // requesting users' repeated denials and by fleet spread of the installer itself.
    let mut cfg = config();
    cfg.org_variables.threatlocker_auto_approve_categories = vec!["Web Browsers".into()];
    let engine = Engine::new(cfg).unwrap();
    let mut rows = Vec::new();
    let mut approvals = Vec::new();
    for i in 0..16i64 {
        let (c, host) = (format!("c{i}"), format!("WS-{i}"));
        let mut req = browser_request(&format!("r{i:02}"), "c0ffee");
        req.computer_id = Some(c.as_str().into());
        req.hostname = Some(host.clone());
        approvals.push(browser(req));
        for k in 0..3 {
            rows.push(
                R::new(i * 10 + k)
                    .host(&c, &host)
                    .sha("c0ffee")
                    .block()
                    .build(),
            );
        }
        for k in 3..6 {
            rows.push(
                R::new(i * 10 + k)
                    .host(&c, &host)
                    .sha(&format!("x{i}-{k}"))
                    .block()
                    .build(),
            );
        }
    }
    let d = engine.evaluate(&input(rows).with_approvals(approvals));
    let approved = d.approvals.iter().filter(|a| a.auto_approve).count();
    assert_eq!(approved, 16, "{:#?}", d.approvals[0]);
    assert!(d.detections.iter().all(|e| e.event_type != "fleet_spread"));
    assert!(d
        .detections
        .iter()
        .any(|e| e.event_type == "repeated_denials"));
}
