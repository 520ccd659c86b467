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
    // 22 rows: Contoso 4 AnyDesk + 1 uTorrent, Widget 2 + 5 of the noisy user, Fabrikam 3,
    // Northwind 4, and 3 on the MSP's own workstation (the home organization is read too).
    assert_eq!(m.total_events, 22);
    // Every row but the audit-only uTorrent deny on FABRIKAM-WS02 is a block.
    assert_eq!(m.blocked_applications, 21);
    // AnyDesk, uTorrent, PowerShell, CertUtil, mshta, invoice_viewer, the Chrome installer.
    assert_eq!(r.blocked_summary.unique_applications_blocked, 7);
    // AnyDesk 4 times on CONTOSO-WS02, uTorrent 3 times on MSP-WS01 (threshold 3).
    assert_eq!(r.blocked_summary.repeat_blocks, 2);
    // Six pending requests: Zoom (Video Conferencing) and the signed built-in Chrome and
    // Firefox installers (Web Browsers) are approved — Chrome's although its user is noisy;
    // AnyDesk, the PDF converter and invoice_viewer are not.
    assert_eq!(m.approval_requests, 6);
    assert_eq!(r.auto_approvals_processed, 3);
    assert_eq!(r.manual_review_required, 3);
    assert_eq!(m.policy_changes, 3);
    let approved: BTreeSet<(&str, Option<&str>)> = r
        .approval_requests
        .iter()
        .filter(|a| a.auto_approved)
        .map(|a| (a.application.as_str(), a.company.as_deref()))
        .collect();
    assert_eq!(
        approved,
        BTreeSet::from([
            ("Google Chrome", Some("Widget Inc")),
            ("Mozilla Firefox", Some("MSP Parent")),
            ("Zoom", Some("Contoso Dental")),
        ])
    );

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
        "repeated_denials",
    ] {
        assert!(types.contains(expected), "missing {expected} in {types:?}");
    }
    // Encoded PowerShell started by Word on FABRIKAM-WS01 is one detection.
    let word_ps = r
        .security_events
        .iter()
        .find(|e| {
            e.event_type == "suspicious_execution" && e.device.as_deref() == Some("FABRIKAM-WS01")
        })
        .expect("encoded PowerShell from Word");
    assert_eq!(
        word_ps.also_matched,
        vec!["detect.lolbin_office_or_browser_parent"]
    );
    let lolbins = r
        .security_events
        .iter()
        .filter(|e| e.event_type == "lolbin_execution")
        .count();
    assert_eq!(
        lolbins, 2,
        "mshta spawned by Word and certutil spawned by Chrome"
    );

    // One ticket per incident: 9 detections in 7 incidents (FABRIKAM-WS01 and WIDGET-LT03
    // hold two each), every detection points at its incident's PSA ticket, opened this run.
    let tickets = h.psa.tickets();
    assert_eq!(m.security_alerts, 9);
    assert_eq!(r.blocked_summary.tickets_created as usize, tickets.len());
    assert_eq!(tickets.len(), 7);
    let incidents: BTreeSet<&str> = r
        .security_events
        .iter()
        .map(|e| e.incident.as_str())
        .collect();
    assert_eq!(incidents.len(), 7);
    let with_ticket: Vec<_> = r
        .security_events
        .iter()
        .filter(|e| e.ticket_id.is_some())
        .collect();
    assert_eq!(with_ticket.len(), r.security_events.len());
    for e in &r.security_events {
        assert!(!e.action_log_ids.is_empty());
        let t = tickets
            .iter()
            .find(|t| t.external_xref.as_deref() == Some(e.incident.as_str()))
            .expect("the incident's ticket");
        assert_eq!(e.ticket_id.as_deref(), Some(t.id.to_string().as_str()));
    }
    let home = tickets
        .iter()
        .find(|t| t.summary.contains("MSP-WS01"))
        .expect("a ticket for the MSP's own workstation");
    assert!(home.summary.contains("(MSP Parent)"), "{}", home.summary);
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
    // (Zoom, AnyDesk, Chrome, Firefox; the PDF converter and invoice_viewer match none).
    let stats = h.portal.stats();
    // Six lookups for the six requests, and one in each of the three permit flows.
    assert_eq!(stats.per_route["Application/ApplicationGetMatchingList"], 9);
    assert_eq!(
        stats.per_route["Application/ApplicationGetResearchDetailsById"],
        4
    );

    // The permits went through the documented flow, each scoped as the engine decided.
    let permits = h.portal.permits();
    assert_eq!(permits.len(), 3);
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
    assert_eq!(out.report.auto_approvals_processed, 3);
    let permits = h.portal.permits();
    assert_eq!(permits.len(), 3);
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
