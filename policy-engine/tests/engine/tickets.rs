//! Tickets: stable dedupe keys, board and priority, summary limits, untrusted text.

use policy_engine::{Engine, RiskLevel, Urgency};

use crate::support::*;

fn repeat_rows(first_id: i64, first_min: i64) -> Vec<threatlocker_api::ActionLogRow> {
    (0..3)
        .map(|i| {
            R::new(first_id + i)
                .sha("a")
                .block()
                .at(first_min + i * 10)
                .build()
        })
        .collect()
}

#[test]
fn the_same_incident_in_the_next_overlapping_window_keeps_its_key() {
    let e = engine();
    let run1 = e.evaluate(&input(repeat_rows(1, 100)));
    // Next run: later window, more rows, different ids and counts.
    let mut rows = repeat_rows(1, 100);
    rows.extend(repeat_rows(50, 400));
    let mut later = input(rows);
    later.window_start = t(60);
    later.window_end = t(660);
    let run2 = e.evaluate(&later);
    assert_eq!(run1.tickets.len(), 1);
    assert_eq!(run2.tickets.len(), 1);
    assert_eq!(run1.tickets[0].dedupe_key, run2.tickets[0].dedupe_key);
    assert_ne!(run1.detections[0].row_count, run2.detections[0].row_count);
}

#[test]
fn different_incidents_get_different_keys() {
    let mut rows = repeat_rows(1, 100);
    rows.extend((0..3).map(|i| R::new(10 + i).sha("a").block().host("c2", "WS-2").build()));
    let d = engine().evaluate(&input(rows));
    assert_eq!(d.tickets.len(), 2);
    assert_ne!(d.tickets[0].dedupe_key, d.tickets[1].dedupe_key);
}

#[test]
fn board_and_priority_come_from_org_variables_and_risk() {
    let mut cfg = config();
    cfg.org_variables.threatlocker_ticket_board = "Security Ops".into();
    cfg.rules.ticket_priority.low = "P4".into();
    let d = Engine::new(cfg)
        .unwrap()
        .evaluate(&input(repeat_rows(1, 100)));
    let t = &d.tickets[0];
    assert_eq!(
        (t.board.as_str(), t.priority.as_str(), t.risk_level),
        ("Security Ops", "P4", RiskLevel::Low)
    );
    assert_eq!(t.detection_keys, vec![d.detections[0].key.clone()]);
    assert_eq!(t.dedupe_key, d.detections[0].incident);
}

#[test]
fn ticket_min_risk_filters_low_incidents_but_not_repeat_blocks() {
    let mut cfg = config();
    cfg.rules.ticket_min_risk = RiskLevel::High;
    let engine = Engine::new(cfg).unwrap();
    // A repeat block (Low) still opens a ticket, as the original workflow does.
    let d = engine.evaluate(&input(repeat_rows(1, 100)));
    assert_eq!(d.detections.len(), 1);
    assert_eq!(d.tickets.len(), 1);
    // A ringfence violation (Medium) below High is reported only.
    let d = engine.evaluate(&input(vec![R::new(1).sha("r").ringfenced().build()]));
    assert_eq!(d.detections.len(), 1);
    assert!(d.tickets.is_empty());
}

#[test]
fn summary_is_at_most_100_chars_and_untrusted_text_cannot_forge_lines() {
    let long = format!("c:\\temp\\{}\nPriority: 1 - fake.exe", "é".repeat(150));
    let rows: Vec<_> = (0..3)
        .map(|i| {
            R::new(1 + i)
                .path(&long)
                .sha("a")
                .user("evil\r\nFORGED: yes")
                .block()
                .build()
        })
        .collect();
    let d = engine().evaluate(&input(rows));
    let t = &d.tickets[0];
    assert!(
        t.summary.chars().count() <= 100,
        "{}",
        t.summary.chars().count()
    );
    assert!(!t.summary.contains('\n'));
    assert!(
        t.description
            .lines()
            .all(|l| !l.starts_with("Priority: 1") && !l.starts_with("FORGED")),
        "{}",
        t.description
    );
    assert!(t.description.contains("\\u{a}Priority"));
    for needle in [
        "| 1 |",
        "| 2 |",
        "| 3 |",
        "WS-1",
        "2026-05-14T12:01:00.000Z",
        "ThreatLocker incident: tl:inc:",
        "Detections (1):",
    ] {
        assert!(
            t.description.contains(needle),
            "missing {needle}: {}",
            t.description
        );
    }
}

#[test]
fn notifications_split_immediate_from_summary_and_use_recipients() {
    let ps = "c:\\windows\\system32\\windowspowershell\\v1.0\\powershell.exe";
    let mut rows = repeat_rows(1, 100);
    rows.push(
        R::new(20)
            .path(ps)
            .sha("ps")
            .data("powershell -EncodedCommand SQBFAFgAIAAoAE4AZQB3AC0A")
            .block()
            .build(),
    );
    let d = engine().evaluate(&input(rows).with_approvals(vec![pending(request("r9"), None)]));
    assert_eq!(d.notifications.len(), 2);
    let imm = &d.notifications[0];
    assert_eq!(imm.urgency, Urgency::Immediate);
    assert_eq!(imm.recipients, vec!["soc@msp.example"]);
    assert_eq!(imm.risk_level, Some(RiskLevel::High));
    assert_eq!(imm.detection_keys.len(), 1);
    let sum = &d.notifications[1];
    assert_eq!(sum.urgency, Urgency::Summary);
    assert_eq!(sum.approval_request_ids.len(), 1);
    // The repeat block's rows are those of the (user, computer) repeated denials, which owns
    // them and lists the repeat block as also matched.
    assert_eq!(sum.detection_keys.len(), 1);
    let denials = d
        .detections
        .iter()
        .find(|e| e.rule == "detect.repeated_denials")
        .unwrap();
    assert_eq!(denials.also_matched, vec!["detect.repeat_block"]);
}

#[test]
fn no_recipients_means_no_notifications() {
    let mut cfg = config();
    cfg.org_variables
        .threatlocker_notification_recipients
        .clear();
    let d = Engine::new(cfg)
        .unwrap()
        .evaluate(&input(repeat_rows(1, 100)));
    assert!(d.notifications.is_empty());
}
