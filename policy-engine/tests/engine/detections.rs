//! One case per detection rule, plus near-misses that must stay quiet.

use policy_engine::{RiskLevel, SecurityEvent};
use threatlocker_api::{ActionLogRow, Computer, ComputerMode};

use crate::support::*;

struct Case {
    name: &'static str,
    rows: Vec<ActionLogRow>,
    computers: Vec<Computer>,
    /// (rule, risk, action_taken) that must fire; `None` = no detection of `absent_rule`.
    expect: Option<(&'static str, RiskLevel, &'static str)>,
    absent_rule: &'static str,
}

const PS: &str = "c:\\windows\\system32\\windowspowershell\\v1.0\\powershell.exe";
const B64: &str =
    "SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA";

/// PowerShell (hash `ps1`) run with `data` as its command line: row `id`, a permit.
fn powershell(id: i64, data: &str) -> R {
    R::new(id).path(PS).sha("ps1").data(data)
}

fn cases() -> Vec<Case> {
    let secure = || vec![computer("comp-1", "WS-1", ComputerMode::Secure)];
    let learning = || vec![computer("comp-1", "WS-1", ComputerMode::Learning)];
    vec![
        Case {
            name: "encoded_command_blocked_is_high_suspicious_execution",
            rows: vec![powershell(1, &format!("powershell.exe -nop -enc {B64}"))
                .block()
                .build()],
            computers: vec![],
            expect: Some(("detect.encoded_powershell", RiskLevel::High, "Blocked")),
            absent_rule: "",
        },
        Case {
            name: "encoded_command_that_ran_escalates_to_critical",
            rows: vec![powershell(1, "powershell -EncodedCommand ZQBjAGgAbwAgAGgAaQA=").build()],
            computers: vec![],
            expect: Some((
                "detect.encoded_powershell",
                RiskLevel::Critical,
                "Permitted",
            )),
            absent_rule: "",
        },
        Case {
            name: "frombase64string_in_a_command_line_extra_field_is_found",
            rows: vec![{
                let mut r = R::new(1).path(PS).sha("ps1").block().build();
                r.extra.insert(
                    "commandLine".into(),
                    "pwsh -c \"[Convert]::FromBase64String($x)\"".into(),
                );
                r
            }],
            computers: vec![],
            expect: Some(("detect.encoded_powershell", RiskLevel::High, "Blocked")),
            absent_rule: "",
        },
        Case {
            name: "char_join_obfuscation_is_found",
            rows: vec![powershell(1, "iex (([char[]](73,69,88)) -join '')")
                .block()
                .build()],
            computers: vec![],
            expect: Some(("detect.encoded_powershell", RiskLevel::High, "Blocked")),
            absent_rule: "",
        },
        Case {
            name: "hidden_window_alone_is_not_obfuscation",
            rows: vec![
                powershell(1, "powershell.exe -w hidden -File c:\\scripts\\backup.ps1").build(),
            ],
            computers: vec![],
            expect: None,
            absent_rule: "detect.encoded_powershell",
        },
        Case {
            name: "plain_powershell_is_quiet",
            rows: vec![powershell(1, "powershell.exe -File c:\\scripts\\x.ps1 -e short").build()],
            computers: vec![],
            expect: None,
            absent_rule: "detect.encoded_powershell",
        },
        Case {
            name: "lolbin_copied_to_user_folder_is_lolbin_execution",
            rows: vec![R::new(1)
                .path("C:\\Users\\jsmith\\AppData\\Local\\Temp\\certutil.exe")
                .sha("cu1")
                .block()
                .build()],
            computers: vec![],
            expect: Some((
                "detect.lolbin_user_writable_path",
                RiskLevel::High,
                "Blocked",
            )),
            absent_rule: "",
        },
        Case {
            name: "lolbin_in_system32_is_quiet",
            rows: vec![R::new(1)
                .path("c:\\windows\\system32\\certutil.exe")
                .sha("cu1")
                .build()],
            computers: vec![],
            expect: None,
            absent_rule: "detect.lolbin_user_writable_path",
        },
        Case {
            name: "lolbin_started_by_word_is_lolbin_execution",
            rows: vec![R::new(1)
                .path("c:\\windows\\system32\\mshta.exe")
                .sha("mshta")
                .process("C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE")
                .build()],
            computers: vec![],
            expect: Some((
                "detect.lolbin_office_or_browser_parent",
                RiskLevel::Critical,
                "Permitted",
            )),
            absent_rule: "",
        },
        Case {
            name: "lolbin_started_by_a_browser_via_parent_process_name",
            rows: vec![{
                let mut r = R::new(1)
                    .path("c:\\windows\\system32\\rundll32.exe")
                    .sha("r32")
                    .block()
                    .build();
                r.parent_process_name = Some("chrome.exe".into());
                r
            }],
            computers: vec![],
            expect: Some((
                "detect.lolbin_office_or_browser_parent",
                RiskLevel::High,
                "Blocked",
            )),
            absent_rule: "",
        },
        Case {
            name: "unknown_hash_blocked_on_three_computers_is_fleet_spread",
            rows: vec![
                R::on(3)
                    .path("c:\\temp\\x.exe")
                    .sha("bad")
                    .block()
                    .at(30)
                    .build(),
                R::on(1)
                    .path("c:\\temp\\x.exe")
                    .sha("bad")
                    .block()
                    .at(10)
                    .build(),
                R::on(2)
                    .path("c:\\temp\\x.exe")
                    .sha("bad")
                    .block()
                    .at(20)
                    .build(),
            ],
            computers: vec![],
            expect: Some(("detect.fleet_spread", RiskLevel::High, "Blocked")),
            absent_rule: "",
        },
        Case {
            name: "hash_permitted_somewhere_is_not_fleet_spread",
            rows: vec![
                R::on(1).sha("known").block().build(),
                R::on(2).sha("known").block().build(),
                R::on(3).sha("known").block().build(),
                R::on(4).sha("known").build(),
            ],
            computers: vec![],
            expect: None,
            absent_rule: "detect.fleet_spread",
        },
        Case {
            name: "two_computers_are_below_the_fleet_threshold",
            rows: vec![
                R::on(1).sha("bad").block().build(),
                R::on(2).sha("bad").block().build(),
            ],
            computers: vec![],
            expect: None,
            absent_rule: "detect.fleet_spread",
        },
        Case {
            name: "audit_only_on_secure_computer_is_policy_bypass",
            rows: vec![R::new(1)
                .path("c:\\tools\\nmap.exe")
                .sha("nmap")
                .audit()
                .policy("p1", "Watch tools")
                .build()],
            computers: secure(),
            expect: Some(("detect.policy_bypass", RiskLevel::High, "Audit only")),
            absent_rule: "",
        },
        Case {
            name: "audit_only_on_learning_computer_is_baseline_noise",
            rows: vec![R::new(1)
                .path("c:\\tools\\nmap.exe")
                .sha("nmap")
                .audit()
                .build()],
            computers: learning(),
            expect: None,
            absent_rule: "detect.policy_bypass",
        },
        Case {
            name: "ringfenced_action_is_ringfence_violation",
            rows: vec![R::new(1)
                .path("c:\\program files\\zoom\\zoom.exe")
                .sha("zoom")
                .ringfenced()
                .build()],
            computers: vec![],
            expect: Some((
                "detect.ringfence_violation",
                RiskLevel::Medium,
                "Ringfenced",
            )),
            absent_rule: "",
        },
        Case {
            name: "three_blocks_across_apps_for_a_user_on_one_computer_is_repeated_denials",
            rows: vec![
                R::new(1).sha("a").block().build(),
                R::new(2).sha("b").block().build(),
                R::new(3).sha("c").block().build(),
            ],
            computers: vec![],
            expect: Some(("detect.repeated_denials", RiskLevel::Medium, "Blocked")),
            absent_rule: "",
        },
        Case {
            name: "a_user_spread_over_three_computers_is_not_repeated_denials",
            rows: vec![
                R::on(1).sha("a").block().build(),
                R::on(2).sha("b").block().build(),
                R::on(3).sha("c").block().build(),
            ],
            computers: vec![],
            expect: None,
            absent_rule: "detect.repeated_denials",
        },
        Case {
            name: "three_users_once_each_on_one_computer_are_not_repeated_denials",
            rows: vec![
                R::new(1).user("a").sha("a").block().build(),
                R::new(2).user("b").sha("b").block().build(),
                R::new(3).user("c").sha("c").block().build(),
            ],
            computers: vec![],
            expect: None,
            absent_rule: "detect.repeated_denials",
        },
        Case {
            name: "rows_without_user_count_under_the_computer_alone",
            rows: (1..=3)
                .map(|i| R::new(i).no_user().sha(&format!("h{i}")).block().build())
                .collect(),
            computers: vec![],
            expect: Some(("detect.repeated_denials", RiskLevel::Medium, "Blocked")),
            absent_rule: "",
        },
        Case {
            name: "signed_built_in_file_blocked_widely_is_a_low_policy_gap",
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
            computers: vec![],
            expect: Some(("detect.policy_gap", RiskLevel::Low, "Blocked")),
            absent_rule: "",
        },
        Case {
            name: "signed_built_in_file_blocked_widely_is_not_fleet_spread",
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
            computers: vec![],
            expect: None,
            absent_rule: "detect.fleet_spread",
        },
        Case {
            name: "signed_but_not_built_in_file_blocked_widely_is_fleet_spread",
            rows: (1..=3)
                .map(|i| R::on(i).sha("bad").cert("CN=Someone").block().build())
                .collect(),
            computers: vec![],
            expect: Some(("detect.fleet_spread", RiskLevel::High, "Blocked")),
            absent_rule: "",
        },
        Case {
            name: "one_app_blocked_three_times_is_a_repeat_block_not_repeated_denials",
            rows: vec![
                R::new(1).sha("a").block().build(),
                R::new(2).sha("a").block().build(),
                R::new(3).sha("a").block().build(),
            ],
            computers: vec![],
            expect: Some(("detect.repeat_block", RiskLevel::Low, "Blocked")),
            absent_rule: "",
        },
    ]
}

fn find<'a>(d: &'a [SecurityEvent], rule: &str) -> Option<&'a SecurityEvent> {
    d.iter().find(|e| e.rule == rule)
}

#[test]
fn every_detection_rule_fires_on_its_case_and_stays_quiet_on_near_misses() {
    let engine = engine();
    for case in cases() {
        let input = input(case.rows.clone()).with_computers(case.computers);
        let d = engine.evaluate(&input);
        match case.expect {
            Some((rule, risk, taken)) => {
                let e = find(&d.detections, rule).unwrap_or_else(|| {
                    panic!("{}: {rule} did not fire: {:#?}", case.name, d.detections)
                });
                assert_eq!(e.risk_level, risk, "{}", case.name);
                assert_eq!(e.action_taken, taken, "{}", case.name);
                assert!(!e.action_log_ids.is_empty(), "{}: no evidence", case.name);
                assert!(!e.reason.is_empty(), "{}", case.name);
                assert!(
                    e.key.starts_with("tl:det:") && e.key.len() <= 40,
                    "{}: {}",
                    case.name,
                    e.key
                );
                assert!(
                    e.incident.starts_with("tl:inc:") && e.incident.len() <= 40,
                    "{}: {}",
                    case.name,
                    e.incident
                );
            }
            None => assert!(
                find(&d.detections, case.absent_rule).is_none(),
                "{}: fired: {:#?}",
                case.name,
                d.detections
            ),
        }
    }
}

#[test]
fn every_detection_rule_in_the_table_has_a_case() {
    let covered: Vec<&str> = cases()
        .iter()
        .filter_map(|c| c.expect.map(|e| e.0))
        .collect();
    for r in policy_engine::rules::RULES
        .iter()
        .filter(|r| r.kind == policy_engine::rules::RuleKind::Detection)
    {
        assert!(covered.contains(&r.id), "no case for {}", r.id);
    }
}

#[test]
fn fleet_spread_names_the_earliest_sighting_as_patient_zero() {
    let rows = cases()
        .into_iter()
        .find(|c| c.name.starts_with("unknown_hash"))
        .unwrap()
        .rows;
    let d = engine().evaluate(&input(rows));
    let e = find(&d.detections, "detect.fleet_spread").unwrap();
    let pz = e.patient_zero.as_ref().unwrap();
    assert_eq!(pz.device.as_deref(), Some("WS-1"));
    assert_eq!(pz.action_log_id.as_deref(), Some("1"));
    assert_eq!(e.computers_affected, 3);
    assert_eq!(
        e.action_log_ids,
        vec!["1", "2", "3"],
        "evidence is oldest first"
    );
}

#[test]
fn trusted_hash_is_never_fleet_spread() {
    let rows = cases()
        .into_iter()
        .find(|c| c.name.starts_with("unknown_hash"))
        .unwrap()
        .rows;
    let mut cfg = config();
    cfg.rules.trusted_hashes = vec!["BAD".into()];
    // "bad" is hex: the list is case-insensitive.
    let d = policy_engine::Engine::new(cfg)
        .unwrap()
        .evaluate(&input(rows));
    assert!(find(&d.detections, "detect.fleet_spread").is_none());
}

#[test]
fn rows_of_one_incident_are_one_detection() {
    let rows = (1..=4)
        .map(|i| powershell(i, &format!("-enc {B64}")).block().build())
        .collect();
    let d = engine().evaluate(&input(rows));
    let all: Vec<_> = d
        .detections
        .iter()
        .filter(|e| e.rule == "detect.encoded_powershell")
        .collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].row_count, 4);
    assert_eq!(all[0].application, "powershell.exe (obfuscated script)");
}

#[test]
fn detections_are_sorted_most_severe_first() {
    let rows = vec![
        R::new(1).sha("a").block().build(),
        R::new(2).sha("a").block().build(),
        R::new(3).sha("a").block().build(),
        powershell(4, &format!("-enc {B64}")).build(),
    ];
    let d = engine().evaluate(&input(rows));
    let risks: Vec<RiskLevel> = d.detections.iter().map(|e| e.risk_level).collect();
    let mut sorted = risks.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(risks, sorted);
    assert_eq!(risks[0], RiskLevel::Critical);
}
