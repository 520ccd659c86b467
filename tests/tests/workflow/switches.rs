//! Each step is switched by its input; the company and event-type filters narrow the run.

use examples::monitor::workflow::RunOptions;

use super::common::{now, Harness};

fn route_count(h: &Harness, route: &str) -> u64 {
    h.portal.stats().per_route.get(route).copied().unwrap_or(0)
}

#[tokio::test]
async fn process_approvals_off_reads_and_actions_no_request() {
    let h = Harness::story().await;
    let out = h.run("process_approvals = false").await;
    assert!(out.report.success);
    assert_eq!(out.report.monitoring_summary.approval_requests, 0);
    assert_eq!(
        route_count(&h, "ApprovalRequest/ApprovalRequestGetByParameters"),
        0
    );
    assert!(h.portal.permits().is_empty());
    assert!(h.portal.deploys().is_empty());
    assert_eq!(out.report.monitoring_summary.total_events, 22);
}

#[tokio::test]
async fn monitor_blocks_off_reads_no_event() {
    let h = Harness::story().await;
    let out = h.run("monitor_blocks = false").await;
    assert!(out.report.success);
    assert_eq!(route_count(&h, "ActionLog/ActionLogGetByParametersV2"), 0);
    assert_eq!(out.report.monitoring_summary.total_events, 0);
    assert_eq!(out.report.monitoring_summary.approval_requests, 6);
}

#[tokio::test]
async fn create_tickets_off_opens_none() {
    let h = Harness::story().await;
    let out = h.run("create_tickets = false").await;
    assert!(out.report.success);
    assert!(out.report.monitoring_summary.security_alerts > 0);
    assert!(out
        .report
        .security_events
        .iter()
        .all(|e| !e.ticket_created && e.ticket_id.is_none()));
    assert_eq!(h.psa.create_calls() + h.psa.search_calls(), 0);
}

#[tokio::test]
async fn company_id_limits_the_run_to_that_companys_organizations() {
    let h = Harness::story().await;
    let contoso = h.portal.dataset().orgs[0].id.clone();
    let text = h.config_text("company_id = \"250\"").replace(
        "\"*\" = \"250\"",
        &format!("\"{contoso}\" = \"250\"\n\"*\" = \"999\""),
    );
    let out = h
        .workflow_from_text(&text)
        .run(RunOptions::new().now(now()))
        .await
        .unwrap();
    assert!(out.report.success, "{:?}", out.report.errors);
    // Contoso Dental only: 4 AnyDesk blocks + 1 uTorrent; the Zoom and AnyDesk requests.
    assert_eq!(out.report.monitoring_summary.total_events, 5);
    assert_eq!(out.report.monitoring_summary.approval_requests, 2);
    assert!(out
        .report
        .security_events
        .iter()
        .all(|e| e.company.as_deref() == Some("Contoso Dental")));
}

#[tokio::test]
async fn a_company_with_no_organization_reads_no_action_log() {
    // No organization maps to company 250: the run must not fall back to a parent-scope
    // action-log search without the child flag (a parent key gets HTTP 500 for it).
    let h = Harness::story().await;
    let text = h
        .config_text("company_id = \"250\"")
        .replace("\"*\" = \"250\"", "\"*\" = \"999\"");
    let out = h
        .workflow_from_text(&text)
        .run(RunOptions::new().now(now()))
        .await
        .unwrap();
    assert!(out.report.success, "{:?}", out.report.errors);
    assert_eq!(route_count(&h, "ActionLog/ActionLogGetByParametersV2"), 0);
    assert_eq!(out.report.monitoring_summary.total_events, 0);
    assert_eq!(out.report.monitoring_summary.approval_requests, 0);
}

#[tokio::test]
async fn event_types_narrow_the_detections_and_the_search() {
    let h = Harness::story().await;
    let out = h.run("event_types = [\"suspicious_execution\"]").await;
    assert!(out.report.success);
    // Encoded PowerShell on WIDGET-LT03 and (started by Word) on FABRIKAM-WS01.
    assert_eq!(out.report.security_events.len(), 2);
    assert!(out
        .report
        .security_events
        .iter()
        .all(|e| e.event_type == "suspicious_execution"));
    assert_eq!(h.psa.tickets().len(), 2);

    let h = Harness::story().await;
    let out = h.run("event_types = [\"network\"]").await;
    // The story has only `execute` rows: an action-type filter on `network` finds none.
    assert_eq!(out.report.monitoring_summary.total_events, 0);
}

#[tokio::test]
async fn without_a_psa_incidents_are_reported_not_ticketed() {
    let h = Harness::story().await;
    let text = h.config_text("");
    let start = text.find("[psa]").unwrap();
    let end = text.find("[state]").unwrap();
    let text = format!(
        "{}[psa]\nkind = \"none\"\n\n{}",
        &text[..start],
        &text[end..]
    );
    let out = h
        .workflow_from_text(&text)
        .run(RunOptions::new().now(now()))
        .await
        .unwrap();
    assert!(out.report.success, "{:?}", out.report.errors);
    assert!(out.report.monitoring_summary.security_alerts > 0);
    assert_eq!(out.report.blocked_summary.tickets_created, 0);
    assert!(out
        .report
        .security_events
        .iter()
        .all(|e| e.ticket_id.is_none()));
    assert_eq!(h.psa.create_calls() + h.psa.search_calls(), 0);
    // Approvals are still processed.
    assert_eq!(out.report.auto_approvals_processed, 3);
}

#[tokio::test]
async fn a_raised_stop_flag_finishes_the_step_in_progress_and_stops() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let h = Harness::story().await;
    let stop = Arc::new(AtomicBool::new(true));
    let err = h
        .workflow("")
        .run(RunOptions::new().now(now()).stop_flag(stop))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            examples::monitor::workflow::WorkflowError::Interrupted {
                next_step: "process approvals"
            }
        ),
        "{err}"
    );
    // The first step (reads only) was finished; nothing was written anywhere.
    assert!(route_count(&h, "ActionLog/ActionLogGetByParametersV2") > 0);
    assert_eq!(h.portal.write_calls(), 0);
    assert!(h.psa.tickets().is_empty());
    let state = examples::state::StateStore::open(&h.state_path).unwrap();
    assert!(state.intents(None, None).unwrap().is_empty());
    assert_eq!(state.windows_done().unwrap(), 0);
}

#[tokio::test]
async fn a_run_can_be_spawned_on_another_task() {
    let h = Harness::story().await;
    let wf = h.workflow("");
    let out = tokio::spawn(async move { wf.run(RunOptions::new().now(now())).await })
        .await
        .expect("the spawned run completes")
        .unwrap();
    assert!(out.report.success, "{:?}", out.report.errors);
    assert_eq!(h.psa.create_calls(), 7);
}
