//! A dry run sends no write anywhere and shows what it would do.

use examples::monitor::workflow::RunOptions;
use examples::state::IntentKind;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, ResponseTemplate};

use super::common::{now, Harness};

#[tokio::test]
async fn a_dry_run_sends_no_write_and_lists_the_planned_ones() {
    let h = Harness::story().await;
    // Any write reaching a server fails the test (these mocks take precedence over the
    // simulators' catch-all and must see zero calls).
    for route in [
        "/portalapi/ApprovalRequest/ApprovalRequestPermitApplication",
        "/portalapi/ApprovalRequest/ApprovalRequestUpdateForTakeOwnership",
        "/portalapi/ApprovalRequest/ApprovalRequestUpdateForReject",
        "/portalapi/DeployPolicyQueue/DeployPolicies",
    ] {
        Mock::given(method("POST"))
            .and(path(route))
            .respond_with(ResponseTemplate::new(500))
            .with_priority(1)
            .expect(0)
            .named(route)
            .mount(h.portal.server())
            .await;
    }
    Mock::given(method("POST"))
        .and(path_regex(r"/service/tickets(/\d+/notes)?$"))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .expect(0)
        .named("PSA writes")
        .mount(h.psa.server())
        .await;

    let out = h.run("dry_run = true").await;
    assert!(out.dry_run && out.run_id.is_none());
    assert!(out.report.success, "{:?}", out.report.errors);
    // The numbers are those a real run would report, marked as not applied.
    assert_eq!(out.report.monitoring_summary.approval_requests, 6);
    assert_eq!(out.report.monitoring_summary.policy_changes, 3);
    assert!(out
        .report
        .approval_requests
        .iter()
        .filter(|a| a.auto_approved)
        .all(|a| a.reason.contains("dry run")));

    let permits: Vec<_> = out
        .planned_writes
        .iter()
        .filter(|w| w.kind == IntentKind::Permit)
        .collect();
    assert_eq!(permits.len(), 3);
    for p in &permits {
        // The exact requests: take ownership, then the permit POST with its full body.
        let paths: Vec<&str> = p.requests.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/portalapi/ApprovalRequest/ApprovalRequestUpdateForTakeOwnership",
                "/portalapi/ApprovalRequest/ApprovalRequestPermitApplication"
            ]
        );
        assert!(p.requests[1].body.as_ref().unwrap()["approvalRequest"]["json"].is_string());
    }
    let deploys: Vec<_> = out
        .planned_writes
        .iter()
        .filter(|w| w.kind == IntentKind::PolicyDeploy)
        .collect();
    assert_eq!(
        deploys.len(),
        3,
        "one deploy per organization with a permit"
    );
    assert!(deploys
        .iter()
        .all(|d| d.requests[0].path == "/portalapi/DeployPolicyQueue/DeployPolicies"));
    let tickets = out
        .planned_writes
        .iter()
        .filter(|w| w.kind == IntentKind::Ticket)
        .count();
    // One ticket per incident.
    let incidents: std::collections::BTreeSet<&str> = out
        .report
        .security_events
        .iter()
        .map(|e| e.incident.as_str())
        .collect();
    assert_eq!(tickets, incidents.len());
    assert!(tickets < out.report.monitoring_summary.security_alerts as usize);
    let json = out.report_json();
    assert_eq!(
        json["planned_writes"].as_array().unwrap().len(),
        out.planned_writes.len()
    );

    assert_eq!(h.portal.write_calls(), 0);
    assert!(h.psa.tickets().is_empty());
    assert!(
        !h.state_path.exists(),
        "a dry run does not even create the state file"
    );
    h.portal.server().verify().await;
    h.psa.server().verify().await;
}

#[tokio::test]
async fn a_dry_run_after_a_real_run_plans_nothing_already_done() {
    let h = Harness::story().await;
    h.workflow("")
        .run(RunOptions::new().now(now()))
        .await
        .unwrap();
    let tickets = h.psa.tickets().len();
    let out = h.run("dry_run = true").await;
    assert!(out
        .planned_writes
        .iter()
        .all(|w| w.kind != IntentKind::Ticket));
    assert!(out
        .planned_writes
        .iter()
        .all(|w| w.kind != IntentKind::Permit));
    // Existing tickets are still reported against their incidents' detections.
    assert!(out
        .report
        .security_events
        .iter()
        .all(|e| e.ticket_id.is_some()));
    let ids: std::collections::BTreeSet<_> = out
        .report
        .security_events
        .iter()
        .filter_map(|e| e.ticket_id.clone())
        .collect();
    assert_eq!(ids.len(), tickets);
    assert_eq!(h.psa.tickets().len(), tickets);
}

#[tokio::test]
async fn no_secret_appears_in_the_report_the_plan_the_state_or_debug_output() {
    let h = Harness::story().await;
    let env = h.env();
    let secrets: Vec<String> = env.values().cloned().collect();
    let wf = h.workflow("");
    let real = wf.run(RunOptions::new().now(now())).await.unwrap();
    let dry = h.run("dry_run = true").await;
    let state = examples::state::StateStore::open(&h.state_path).unwrap();
    let intents = serde_json::to_string(&state.intents(None, None).unwrap()).unwrap();
    let texts = [
        serde_json::to_string(&real.report_json()).unwrap(),
        serde_json::to_string(&dry.report_json()).unwrap(),
        format!("{wf:?}"),
        format!("{:?}", h.config("")),
        format!("{dry:?}"),
        intents,
    ];
    for secret in &secrets {
        for t in &texts {
            assert!(
                !t.contains(secret.as_str()),
                "a secret leaked into {t:.200}"
            );
        }
    }
}
