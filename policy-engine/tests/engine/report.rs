//! The report's shape and numbers, per the design's definitions table.

use policy_engine::{build_report, ApprovalOutcome, Outcomes, TicketOutcome};

use crate::support::*;

fn decisions() -> policy_engine::Decisions {
    let mut rows: Vec<_> = (0..3)
        .map(|i| R::new(1 + i).sha("a").block().build())
        .collect();
    rows.push(R::new(10).sha("b").block().host("c2", "WS-2").build());
    rows.push(R::new(11).sha("c").build());
    rows.push(R::new(11).sha("c").build()); // duplicate
    rows.push(R::new(12).sha("d").audit().build());
    let approvals = vec![
        pending(request("r1"), Some(&["Communication"][..])),
        pending(request("r2"), None),
        pending(request("r3"), Some(&["Productivity"][..])),
    ];
    engine().evaluate(&input(rows).with_approvals(approvals))
}

#[test]
fn report_serializes_to_the_design_shape() {
    let d = decisions();
    let r = build_report(&d, &Outcomes::new(true));
    let v = serde_json::to_value(&r).unwrap();
    // (JSON pointer, keys the object there must have)
    let shape: [(&str, &[&str]); 5] = [
        (
            "",
            &[
                "success",
                "monitoring_summary",
                "approval_requests",
                "security_events",
                "blocked_summary",
                "auto_approvals_processed",
                "manual_review_required",
            ],
        ),
        (
            "/monitoring_summary",
            &[
                "total_events",
                "approval_requests",
                "blocked_applications",
                "security_alerts",
                "policy_changes",
            ],
        ),
        (
            "/approval_requests/0",
            &[
                "request_id",
                "application",
                "hash",
                "requested_by",
                "company",
                "device",
                "auto_approved",
                "reason",
            ],
        ),
        (
            "/security_events/0",
            &[
                "event_type",
                "application",
                "company",
                "device",
                "user",
                "action_taken",
                "risk_level",
                "ticket_created",
                "ticket_id",
            ],
        ),
        (
            "/blocked_summary",
            &[
                "unique_applications_blocked",
                "repeat_blocks",
                "tickets_created",
            ],
        ),
    ];
    for (at, keys) in shape {
        let obj = v.pointer(at).unwrap_or_else(|| panic!("missing {at}"));
        for k in keys {
            assert!(obj.get(k).is_some(), "missing {at}/{k}");
        }
    }
    assert_eq!(v["security_events"][0]["risk_level"], "Low");
    for k in ["incident", "action_log_ids", "also_matched", "ticket_id"] {
        assert!(v["security_events"][0].get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["approval_requests"][0]["company"], "Contoso Dental");
}

#[test]
fn numbers_follow_the_definitions_in_a_real_run() {
    let d = decisions();
    let key = d.tickets[0].dedupe_key.clone();
    let mut o = Outcomes::new(false);
    o.approvals
        .insert("r1".into(), ApprovalOutcome::permitted());
    o.approvals
        .insert("r3".into(), ApprovalOutcome::failed("HTTP 500"));
    o.policy_changes_applied.insert("r1".into());
    o.tickets.insert(key, TicketOutcome::new("SEC-15", true));
    let r = build_report(&d, &o);
    let s = r.monitoring_summary;
    assert_eq!(s.total_events, 6, "de-duplicated rows");
    assert_eq!(s.approval_requests, 3);
    assert_eq!(s.blocked_applications, 4, "block rows, not distinct apps");
    assert_eq!(s.security_alerts, r.security_events.len() as u64);
    assert_eq!(s.policy_changes, 1);
    assert_eq!(r.blocked_summary.unique_applications_blocked, 2);
    assert_eq!(r.blocked_summary.repeat_blocks, 1);
    assert_eq!(r.blocked_summary.tickets_created, 1);
    assert_eq!(r.auto_approvals_processed, 1);
    assert_eq!(r.manual_review_required, 2);
    assert!(!r.success, "an approval error fails the run");
    assert!(r
        .errors
        .iter()
        .any(|e| e.contains("r3") && e.contains("HTTP 500")));
    let r3 = r
        .approval_requests
        .iter()
        .find(|a| a.request_id.as_deref() == Some("r3"))
        .unwrap();
    assert!(!r3.auto_approved && r3.reason.contains("failed"));
    let ev = &r.security_events[0];
    assert!(ev.ticket_created);
    assert_eq!(ev.ticket_id.as_deref(), Some("SEC-15"));
}

#[test]
fn an_existing_ticket_is_linked_but_not_counted_as_created() {
    let d = decisions();
    let mut o = Outcomes::new(false);
    o.tickets.insert(
        d.tickets[0].dedupe_key.clone(),
        TicketOutcome::new("SEC-9", false),
    );
    let r = build_report(&d, &o);
    assert_eq!(r.blocked_summary.tickets_created, 0);
    assert_eq!(r.security_events[0].ticket_id.as_deref(), Some("SEC-9"));
    assert!(!r.security_events[0].ticket_created);
    assert!(r.success);
}

#[test]
fn dry_run_reports_planned_changes_but_processes_nothing() {
    let d = decisions();
    let r = build_report(&d, &Outcomes::new(true));
    assert_eq!(
        r.monitoring_summary.policy_changes, 2,
        "planned ones in dry run"
    );
    assert_eq!(r.auto_approvals_processed, 0);
    assert_eq!(r.manual_review_required, 3);
    let r1 = r
        .approval_requests
        .iter()
        .find(|a| a.request_id.as_deref() == Some("r1"))
        .unwrap();
    assert!(r1.auto_approved && r1.reason.contains("dry run"));
    assert!(r.dry_run && r.success);
}
