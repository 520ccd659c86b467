//! Custom detections: a `Rule` in Rust and `[[rules.custom]]` in the configuration, each
//! grouped by (rule, organization, computer) and carried into tickets, notifications, approvals
//! and the report like a built-in detection.

use policy_engine::{
    build_report, Decisions, Engine, EngineConfig, Finding, Outcomes, RiskLevel, Rule,
    SecurityEvent,
};
use threatlocker_api::ActionLogRow;

use crate::support::*;

/// Anything run from the drive letters USB drives mount on.
struct UsbDrive;

impl Rule for UsbDrive {
    fn id(&self) -> &'static str {
        "msp.usb_drive"
    }
    fn check(&self, row: &ActionLogRow) -> Option<Finding> {
        let path = row.full_path.as_deref()?.to_ascii_lowercase();
        ["e:\\", "f:\\"]
            .iter()
            .any(|d| path.starts_with(d))
            .then(|| {
                Finding::new(RiskLevel::High, "A program ran from a removable drive.")
                    .escalate_when_not_stopped()
            })
    }
}

fn usb_engine() -> Engine {
    engine().with_rule(UsbDrive).unwrap()
}

fn of_rule<'d>(d: &'d Decisions, rule: &str) -> Vec<&'d SecurityEvent> {
    d.detections.iter().filter(|e| e.rule == rule).collect()
}

#[test]
fn a_rust_rule_groups_by_organization_and_computer() {
    let rows = vec![
        R::new(1)
            .path("E:\\tools\\setup.exe")
            .sha("bb01")
            .block()
            .build(),
        R::new(2).path("e:\\tools\\other.exe").block().build(),
        R::on(3).path("F:\\x.exe").block().build(),
        R::new(4)
            .host("c3", "WS-3")
            .path("F:\\x.exe")
            .org(ORG2)
            .block()
            .build(),
        R::new(5)
            .path("c:\\program files\\app\\app.exe")
            .block()
            .build(),
    ];
    let d = usb_engine().evaluate(&input(rows));
    let found = of_rule(&d, "msp.usb_drive");
    assert_eq!(found.len(), 3, "{found:#?}");
    let ws1 = found
        .iter()
        .find(|e| e.device.as_deref() == Some("WS-1"))
        .unwrap();
    assert_eq!(ws1.row_count, 2);
    assert_eq!(ws1.action_log_ids, vec!["1", "2"]);
    assert_eq!(ws1.risk_level, RiskLevel::High);
    assert_eq!(ws1.action_taken, "Blocked");
    assert_eq!(ws1.event_type, "custom_detection");
    assert_eq!(ws1.application, "2 applications");
    assert_eq!(ws1.hashes, vec!["bb01"]);
    assert_eq!(ws1.organization_name.as_deref(), Some("Contoso Dental"));
    assert!(ws1
        .reason
        .starts_with("A program ran from a removable drive."));
    let orgs: Vec<_> = found
        .iter()
        .filter(|e| e.device.as_deref() == Some("WS-3"))
        .map(|e| e.organization_id.clone())
        .collect();
    assert_eq!(orgs.len(), 2, "one per organization on the same computer");
    // Without the rule, the same rows yield no such detection.
    assert!(of_rule(&engine().evaluate(&input(vec![])), "msp.usb_drive").is_empty());
}

#[test]
fn a_finding_that_ran_escalates() {
    let d = usb_engine().evaluate(&input(vec![R::new(1).path("e:\\a.exe").build()]));
    let e = of_rule(&d, "msp.usb_drive");
    assert_eq!(e[0].risk_level, RiskLevel::Critical);
    assert_eq!(e[0].action_taken, "Permitted");
}

#[test]
fn custom_detections_flow_into_tickets_notifications_approvals_and_the_report() {
    let rows = vec![R::new(1).path("e:\\zoom.exe").sha("aa11").block().build()];
    let mut req = request("req-1");
    req.path = Some("e:\\zoom.exe".into());
    let input = input(rows).with_approvals(vec![pending(req, Some(&["Communication"]))]);
    let d = usb_engine().evaluate(&input);
    let det = of_rule(&d, "msp.usb_drive")[0].clone();

    let ticket = d
        .tickets
        .iter()
        .find(|t| t.detection_keys.contains(&det.key))
        .expect("a ticket for the custom detection");
    assert!(
        ticket.description.contains("msp.usb_drive"),
        "{}",
        ticket.description
    );
    assert!(d
        .notifications
        .iter()
        .any(|n| n.detection_keys.contains(&det.key)));
    let approval = &d.approvals[0];
    assert!(!approval.auto_approve, "{approval:#?}");
    assert!(approval.detection_keys.contains(&det.key));

    let report = build_report(&d, &Outcomes::new(true));
    assert!(report
        .security_events
        .iter()
        .any(|e| e.rule == "msp.usb_drive" && e.key == det.key));
}

#[test]
fn the_incident_key_is_stable_across_windows() {
    let a = usb_engine().evaluate(&input(vec![R::new(1).path("e:\\a.exe").build()]));
    let b = usb_engine().evaluate(&input(vec![
        R::new(1).path("e:\\a.exe").build(),
        R::new(7).path("e:\\b.exe").build(),
    ]));
    assert_eq!(
        of_rule(&a, "msp.usb_drive")[0].key,
        of_rule(&b, "msp.usb_drive")[0].key
    );
}

struct Named(&'static str);

impl Rule for Named {
    fn id(&self) -> &'static str {
        self.0
    }
    fn check(&self, _: &ActionLogRow) -> Option<Finding> {
        None
    }
}

#[test]
fn with_rule_refuses_taken_or_blank_ids() {
    for id in ["detect.repeat_block", "", "has space"] {
        let err = engine().with_rule(Named(id)).unwrap_err();
        assert_eq!(err.key, "Engine::with_rule", "{id}: {err}");
    }
    let err = usb_engine().with_rule(UsbDrive).unwrap_err();
    assert!(err.to_string().contains("another custom rule"), "{err}");
    let mut cfg = config();
    cfg.rules.custom = toml_rules(
        "[[rules.custom]]\nid = \"x\"\naction = \"block\"\nrisk = \"Low\"\nreason = \"r\"\n",
    );
    let err = Engine::new(cfg)
        .unwrap()
        .with_rule(Named("custom.x"))
        .unwrap_err();
    assert!(err.to_string().contains("another custom rule"), "{err}");
}

#[test]
fn the_security_event_builder_derives_a_stable_key() {
    let a = SecurityEvent::builder("msp.x", RiskLevel::Low, "r")
        .device(Some("WS-1".into()))
        .build();
    let b = SecurityEvent::builder("msp.x", RiskLevel::High, "other reason")
        .device(Some("ws-1".into()))
        .build();
    assert_eq!(a.key, b.key, "same rule and computer, same incident");
    let c = SecurityEvent::builder("msp.y", RiskLevel::Low, "r")
        .device(Some("WS-1".into()))
        .build();
    assert_ne!(a.key, c.key);
    let k = SecurityEvent::builder("msp.x", RiskLevel::Low, "r")
        .key("mine")
        .build();
    assert_eq!(k.key, "mine");
}

// ---- declarative rules ------------------------------------------------------------------------

fn toml_rules(text: &str) -> Vec<policy_engine::CustomRuleConfig> {
    let cfg: EngineConfig = toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    cfg.rules.custom
}

fn declarative(body: &str) -> Engine {
    let mut cfg = config();
    cfg.rules.custom = toml_rules(&format!(
        "[[rules.custom]]\nid = \"t\"\nrisk = \"High\"\nreason = \"Matched.\"\n{body}"
    ));
    Engine::new(cfg).unwrap_or_else(|e| panic!("{body}: {e}"))
}

fn fires(engine: &Engine, row: ActionLogRow) -> bool {
    !of_rule(&engine.evaluate(&input(vec![row])), "custom.t").is_empty()
}

/// One case per match key: a row that matches and a near miss that must not.
#[test]
fn each_declarative_field_matches_and_misses() {
    let by_org_id = format!("organization = \"{ORG2}\"");
    let cases: Vec<(&str, &str, ActionLogRow, ActionLogRow)> = vec![
        (
            "path glob, any of a list, case-insensitive",
            "path = [\"d:\\\\*\", \"e:\\\\*\"]",
            R::new(1).path("E:\\Setup.exe").build(),
            R::new(1).path("c:\\e:\\setup.exe").build(),
        ),
        (
            "process by file name",
            "process = \"explorer.exe\"",
            R::new(1).process("C:\\Windows\\Explorer.EXE").build(),
            R::new(1).process("c:\\windows\\explorer2.exe").build(),
        ),
        (
            "process by path when the pattern has a separator",
            "process = \"c:\\\\users\\\\*\"",
            R::new(1).process("C:\\Users\\bob\\x.exe").build(),
            R::new(1).process("c:\\windows\\users.exe").build(),
        ),
        (
            "parent process (parentProcessName or createdByProcess)",
            "parent_process = \"winword.exe\"",
            {
                let mut r = R::new(1).build();
                r.created_by_process = Some("C:\\Office\\WINWORD.EXE".into());
                r
            },
            {
                let mut r = R::new(1).build();
                r.parent_process_name = Some("excel.exe".into());
                r
            },
        ),
        (
            "user glob",
            "user = \"contoso\\\\j*\"",
            R::new(1).user("CONTOSO\\jsmith").build(),
            R::new(1).user("CONTOSO\\admin").build(),
        ),
        (
            "action block",
            "action = \"block\"",
            R::new(1).block().build(),
            R::new(1).audit().build(),
        ),
        (
            "action permit",
            "action = \"permit\"",
            R::new(1).build(),
            R::new(1).block().build(),
        ),
        (
            "action audit",
            "action = \"audit\"",
            R::new(1).audit().build(),
            R::new(1).block().build(),
        ),
        (
            "organization by id",
            &by_org_id,
            R::new(1).org(ORG2).build(),
            R::new(1).build(),
        ),
        (
            "organization by the row's name",
            "organization = \"contoso dental\"",
            R::new(1).build(),
            {
                let mut r = R::new(1).org(ORG2).build();
                r.organization_name = Some("Widget Inc".into());
                r
            },
        ),
        (
            "every key set must match",
            "path = \"e:\\\\*\"\naction = \"block\"",
            R::new(1).path("e:\\a.exe").block().build(),
            R::new(1).path("e:\\a.exe").build(),
        ),
    ];
    for (name, body, hit, miss) in cases {
        let engine = declarative(body);
        assert!(fires(&engine, hit), "{name}: should match");
        assert!(!fires(&engine, miss), "{name}: should not match");
    }
}

#[test]
fn declarative_risk_reason_and_escalation_reach_the_detection() {
    let engine = declarative("path = \"e:\\\\*\"\nescalate_when_not_stopped = true");
    let d = engine.evaluate(&input(vec![R::new(1).path("e:\\a.exe").build()]));
    let e = of_rule(&d, "custom.t")[0];
    assert_eq!(e.risk_level, RiskLevel::Critical, "High escalated: it ran");
    assert!(e.reason.starts_with("Matched."), "{}", e.reason);
    let engine = declarative("path = \"e:\\\\*\"");
    let d = engine.evaluate(&input(vec![R::new(1).path("e:\\a.exe").build()]));
    assert_eq!(of_rule(&d, "custom.t")[0].risk_level, RiskLevel::High);
}

#[test]
fn declarative_errors_name_the_key() {
    let cases = [
        (
            "id = \"t\"\nrisk = \"High\"\nreason = \"r\"\n",
            "rules.custom[0].id",
            "at least one",
        ),
        (
            "id = \"a b\"\nrisk = \"High\"\nreason = \"r\"\naction = \"block\"\n",
            "rules.custom[0].id",
            "letters",
        ),
        (
            "id = \"t\"\nrisk = \"High\"\nreason = \" \"\naction = \"block\"\n",
            "rules.custom[0].reason",
            "non-empty",
        ),
        (
            "id = \"t\"\nrisk = \"High\"\nreason = \"r\"\npath = [\"e:*\", \"\"]\n",
            "rules.custom[0].path[1]",
            "non-empty",
        ),
        (
            "id = \"t\"\nrisk = \"High\"\nreason = \"r\"\nuser = \"\"\n",
            "rules.custom[0].user[0]",
            "non-empty",
        ),
    ];
    for (body, key, problem) in cases {
        let mut cfg = config();
        cfg.rules.custom = toml_rules(&format!("[[rules.custom]]\n{body}"));
        let err = Engine::new(cfg).unwrap_err();
        assert_eq!(err.key, key, "{body}");
        assert!(err.to_string().contains(problem), "{body}: {err}");
    }
    let mut cfg = config();
    cfg.rules.custom = toml_rules(
        "[[rules.custom]]\nid = \"t\"\nrisk = \"Low\"\nreason = \"r\"\naction = \"block\"\n[[rules.custom]]\nid = \"t\"\nrisk = \"Low\"\nreason = \"r\"\naction = \"audit\"\n",
    );
    assert_eq!(Engine::new(cfg).unwrap_err().key, "rules.custom[1].id");
    for bad in [
        "[[rules.custom]]\nid = \"t\"\nrisk = \"High\"\nreason = \"r\"\naction = \"deny\"\n",
        "[[rules.custom]]\nid = \"t\"\nrisk = \"Severe\"\nreason = \"r\"\n",
        "[[rules.custom]]\nid = \"t\"\nrisk = \"High\"\nreason = \"r\"\nhash = \"ab\"\n",
    ] {
        assert!(toml::from_str::<EngineConfig>(bad).is_err(), "{bad}");
    }
}
