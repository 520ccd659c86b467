//! Scope and incidents: the home organization is read in every mode, and each incident has at
//! most one open ticket — later detections add notes to it, a closed one is followed by a new
//! one.

use chrono::Duration;
use examples::monitor::workflow::RunOptions;

use super::common::{now, Harness};

#[tokio::test]
async fn the_home_organization_is_read_with_and_without_child_organizations() {
    for (children, events, requests) in [(true, 22, 6), (false, 3, 1)] {
        let h = Harness::story().await;
        let text = h.config_text("").replace(
            "max_concurrency = 4",
            &format!("max_concurrency = 4\ninclude_child_organizations = {children}"),
        );
        let out = h
            .workflow_from_text(&text)
            .run(RunOptions::new().now(now()))
            .await
            .unwrap();
        let r = &out.report;
        assert!(r.success, "children {children}: {:?}", r.errors);
        assert_eq!(
            r.monitoring_summary.total_events, events,
            "children {children}"
        );
        assert_eq!(
            r.monitoring_summary.approval_requests, requests,
            "children {children}"
        );
        // The MSP's own workstation: its repeat block is ticketed under the home's name, and
        // the technician's Firefox request (a signed built-in browser installer) is approved.
        let home = r
            .security_events
            .iter()
            .find(|e| e.device.as_deref() == Some("MSP-WS01"))
            .expect("the home organization's detection");
        assert_eq!(home.company.as_deref(), Some("MSP Parent"));
        assert!(home.ticket_id.is_some());
        let firefox = r
            .approval_requests
            .iter()
            .find(|a| a.application == "Mozilla Firefox")
            .expect("the home organization's request");
        assert!(firefox.auto_approved, "{}", firefox.reason);
        assert_eq!(firefox.company.as_deref(), Some("MSP Parent"));
    }
}

#[tokio::test]
async fn a_parent_search_without_the_child_flag_that_fails_still_reads_the_home_rows() {
    // The other reading of reference §1.3: the home organization's rows come only with the
    // child flag. The run falls back to it and keeps the rows of no listed child.
    for (children, events) in [(true, 22), (false, 3)] {
        let h = Harness::story().await;
        h.portal.require_child_flag_at_parent_scope(true);
        let text = h.config_text("").replace(
            "max_concurrency = 4",
            &format!("max_concurrency = 4\ninclude_child_organizations = {children}"),
        );
        let out = h
            .workflow_from_text(&text)
            .run(RunOptions::new().now(now()))
            .await
            .unwrap();
        assert!(
            out.report.success,
            "children {children}: {:?}",
            out.report.errors
        );
        assert_eq!(
            out.report.monitoring_summary.total_events, events,
            "children {children}"
        );
        assert!(out
            .report
            .security_events
            .iter()
            .any(|e| e.company.as_deref() == Some("MSP Parent")));
    }
}

#[tokio::test]
async fn an_incident_has_one_open_ticket_and_a_new_one_once_it_is_closed() {
    let h = Harness::story().await;
    let wf = h.workflow("process_approvals = false");
    // 150 minutes earlier: three AnyDesk blocks on CONTOSO-WS02, a repeat block.
    let early = wf
        .run(RunOptions::new().now(now() - Duration::minutes(150)))
        .await
        .unwrap();
    assert_eq!(
        early.report.blocked_summary.tickets_created as usize,
        h.psa.create_calls() as usize
    );
    let first = h
        .psa
        .tickets()
        .into_iter()
        .find(|t| t.summary.contains("on CONTOSO-WS02"))
        .expect("the incident's ticket");
    // A technician closes it in the PSA.
    h.psa.close(first.id);
    let creates = h.psa.create_calls();

    // The fourth block arrives: the incident's next detection opens a new ticket.
    let out = wf.run(RunOptions::new().now(now())).await.unwrap();
    assert!(out.report.success, "{:?}", out.report.errors);
    let same_ref: Vec<_> = h
        .psa
        .tickets()
        .into_iter()
        .filter(|t| t.external_xref == first.external_xref)
        .collect();
    assert_eq!(same_ref.len(), 2, "a new ticket after the closed one");
    let second = same_ref.iter().find(|t| !t.closed_flag).unwrap().clone();
    assert_ne!(second.id, first.id);
    assert!(h
        .psa
        .tickets()
        .iter()
        .find(|t| t.id == first.id)
        .unwrap()
        .notes
        .is_empty());
    let created_now = h.psa.create_calls() - creates;
    assert_eq!(out.report.blocked_summary.tickets_created, created_now);
    let e = out
        .report
        .security_events
        .iter()
        .find(|e| e.device.as_deref() == Some("CONTOSO-WS02"))
        .unwrap();
    assert_eq!(e.ticket_id.as_deref(), Some(second.id.to_string().as_str()));

    // Later runs: the open ticket gets notes for newer evidence, never a second open ticket.
    for minutes in [5, 10] {
        let out = wf
            .run(RunOptions::new().now(now() + Duration::minutes(minutes)))
            .await
            .unwrap();
        assert!(out.report.success, "{:?}", out.report.errors);
        assert_eq!(out.report.blocked_summary.tickets_created, 0);
    }
    let open: Vec<_> = h
        .psa
        .tickets()
        .into_iter()
        .filter(|t| t.external_xref == first.external_xref && !t.closed_flag)
        .collect();
    assert_eq!(open.len(), 1);
}

#[tokio::test]
async fn a_later_detection_on_the_same_computer_adds_a_note_not_a_ticket() {
    let h = Harness::story().await;
    let wf = h.workflow("process_approvals = false");
    // At now - 94 min only the encoded PowerShell on WIDGET-LT03 (95 min ago) is in the window;
    // the certutil from Chrome (93 min ago) comes later: same computer, same incident.
    let early = wf
        .run(RunOptions::new().now(now() - Duration::minutes(94)))
        .await
        .unwrap();
    let lt03 = |r: &policy_engine::MonitoringReport| {
        r.security_events
            .iter()
            .filter(|e| e.device.as_deref() == Some("WIDGET-LT03"))
            .count()
    };
    assert_eq!(lt03(&early.report), 1);
    let before: Vec<_> = h
        .psa
        .tickets()
        .into_iter()
        .filter(|t| t.summary.contains("WIDGET-LT03"))
        .collect();
    assert_eq!(before.len(), 1);
    let out = wf.run(RunOptions::new().now(now())).await.unwrap();
    assert_eq!(lt03(&out.report), 2);
    let after: Vec<_> = h
        .psa
        .tickets()
        .into_iter()
        .filter(|t| t.external_xref == before[0].external_xref)
        .collect();
    assert_eq!(after.len(), 1, "no second ticket for the incident");
    assert_eq!(after[0].notes.len(), 1, "the later detection is a note");
}
