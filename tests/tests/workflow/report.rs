//! The report's numbers for the known (story) data set, by the design's definitions.

use std::collections::BTreeSet;

use serde_json::json;

use super::common::Harness;

#[tokio::test]
async fn report_numbers_follow_the_definitions_for_the_story_data_set() {
    let h = Harness::story().await;
    let out = h.run("").await;
    let r = &out.report;
    assert!(r.success, "errors: {:?}", r.errors);
    let m = &r.monitoring_summary;
    // 13 rows: Contoso 4 AnyDesk + 1 uTorrent, Widget 2, Fabrikam 2, Northwind 4.
    assert_eq!(m.total_events, 13);
    // Every row but the audit-only uTorrent deny on FABRIKAM-WS02 is a block.
    assert_eq!(m.blocked_applications, 12);
    // AnyDesk, uTorrent, PowerShell, CertUtil, mshta, invoice_viewer.
    assert_eq!(r.blocked_summary.unique_applications_blocked, 6);
    // AnyDesk blocked 4 times on CONTOSO-WS02 (threshold 3); nothing else repeats.
    assert_eq!(r.blocked_summary.repeat_blocks, 1);
    // Five pending requests: Zoom (Video Conferencing) and Chrome (Web Browsers) are in the
    // auto-approve categories; AnyDesk, the PDF converter and invoice_viewer are not.
    assert_eq!(m.approval_requests, 5);
    assert_eq!(r.auto_approvals_processed, 2);
    assert_eq!(r.manual_review_required, 3);
    assert_eq!(m.policy_changes, 2);
    let approved: BTreeSet<&str> = r
        .approval_requests
        .iter()
        .filter(|a| a.auto_approved)
        .map(|a| a.application.as_str())
        .collect();
    assert_eq!(approved, BTreeSet::from(["Google Chrome", "Zoom"]));

    // Detections: one entry per detection, the count in the summary.
    assert_eq!(m.security_alerts as usize, r.security_events.len());
    let types: BTreeSet<&str> = r
        .security_events
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    for expected in [
        "suspicious_execution",
        "lolbin_execution",
        "fleet_spread",
        "policy_bypass",
        "repeat_block",
    ] {
        assert!(types.contains(expected), "missing {expected} in {types:?}");
    }
    let lolbins = r
        .security_events
        .iter()
        .filter(|e| e.event_type == "lolbin_execution")
        .count();
    assert_eq!(
        lolbins, 2,
        "mshta spawned by Word and certutil spawned by Chrome"
    );

    // Every ticketed detection points at a real PSA ticket, opened this run.
    let tickets = h.psa.tickets();
    let with_ticket: Vec<_> = r
        .security_events
        .iter()
        .filter(|e| e.ticket_id.is_some())
        .collect();
    assert_eq!(r.blocked_summary.tickets_created as usize, tickets.len());
    assert_eq!(with_ticket.len(), tickets.len());
    for e in with_ticket {
        assert!(e.ticket_created);
        let id: i64 = e.ticket_id.as_deref().unwrap().parse().unwrap();
        let t = tickets.iter().find(|t| t.id == id).expect("ticket exists");
        assert_eq!(t.company, json!({"id": 250}));
        assert_eq!(t.board, json!({"name": "ThreatLocker"}));
        assert!(t.external_xref.as_deref().unwrap().starts_with("tl:"));
        assert!(t.summary.chars().count() <= 100);
    }

    // Research is read once per distinct matched application
    // (Zoom, AnyDesk, Chrome; the PDF converter and invoice_viewer match none).
    let stats = h.portal.stats();
    // Five lookups for the five requests, and one in each of the two permit flows.
    assert_eq!(stats.per_route["Application/ApplicationGetMatchingList"], 7);
    assert_eq!(
        stats.per_route["Application/ApplicationGetResearchDetailsById"],
        3
    );

    // The permits went through the documented flow, each scoped as the engine decided.
    let permits = h.portal.permits();
    assert_eq!(permits.len(), 2);
    assert!(permits.iter().all(|p| p.scope == "computer"));
    // Policies were deployed once to each organization that got a permit.
    let mut deploys = h.portal.deploys();
    deploys.sort();
    let mut orgs: Vec<String> = permits.iter().map(|p| p.organization_id.clone()).collect();
    orgs.sort();
    orgs.dedup();
    assert_eq!(deploys, orgs);
}

#[tokio::test]
async fn permits_act_on_the_requests_own_organization() {
    // The strict reading of `managedOrganizationId`: without the header a parent key acts on
    // its home organization, where the child organizations' requests are not found by id.
    let h = Harness::story().await;
    h.portal.require_owning_organization(true);
    let out = h.run("").await;
    assert!(out.report.success, "errors: {:?}", out.report.errors);
    assert_eq!(out.report.auto_approvals_processed, 2);
    let permits = h.portal.permits();
    assert_eq!(permits.len(), 2);
    for p in &permits {
        assert_eq!(h.portal.approval_status(&p.approval_request_id), Some(4));
    }
    let mut deploys = h.portal.deploys();
    deploys.sort();
    let mut orgs: Vec<String> = permits.iter().map(|p| p.organization_id.clone()).collect();
    orgs.sort();
    orgs.dedup();
    assert_eq!(deploys, orgs);
}

#[tokio::test]
async fn report_json_has_the_original_workflow_shape() {
    let h = Harness::story().await;
    let out = h.run("").await;
    let v = out.report_json();
    for key in [
        "success",
        "monitoring_summary",
        "approval_requests",
        "security_events",
        "blocked_summary",
        "auto_approvals_processed",
        "manual_review_required",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    for key in [
        "total_events",
        "approval_requests",
        "blocked_applications",
        "security_alerts",
        "policy_changes",
    ] {
        assert!(
            v["monitoring_summary"][key].is_u64(),
            "monitoring_summary.{key}"
        );
    }
    for key in [
        "unique_applications_blocked",
        "repeat_blocks",
        "tickets_created",
    ] {
        assert!(v["blocked_summary"][key].is_u64(), "blocked_summary.{key}");
    }
    let a = &v["approval_requests"][0];
    for key in [
        "request_id",
        "application",
        "hash",
        "requested_by",
        "company",
        "device",
        "auto_approved",
        "reason",
    ] {
        assert!(a.get(key).is_some(), "approval_requests[].{key}");
    }
    let e = &v["security_events"][0];
    for key in [
        "event_type",
        "application",
        "company",
        "device",
        "user",
        "action_taken",
        "risk_level",
        "ticket_created",
        "ticket_id",
    ] {
        assert!(e.get(key).is_some(), "security_events[].{key}");
    }
    assert!(
        v.get("planned_writes").is_none(),
        "only dry runs list planned writes"
    );
}
