//! Every write can be built and shown without being sent.

use chrono::{TimeZone, Utc};
use threatlocker_api::{
    prepare_application_insert, prepare_hash_rule_insert, prepare_ignore, prepare_maintenance_end,
    prepare_maintenance_insert, prepare_policy_delete, prepare_policy_deploy,
    prepare_policy_insert, prepare_policy_update, prepare_reject, prepare_take_ownership,
    IgnoreOptions, MaintenanceEnd, MaintenanceRequest, MaintenanceType, Method, NewApplication,
    NewPolicy, OrganizationId, OsType, PolicyRef, RejectOptions, Safety,
};
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::common::*;

#[tokio::test]
async fn plan_permit_reads_but_sends_no_write() {
    let server = MockServer::start().await;
    mount_status(&server, 1, 1).await;
    mount_permit_reads(&server, "matching_tenant_and_master.json").await;
    for p in [TAKE_OWNERSHIP, PERMIT] {
        Mock::given(method("POST"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(200))
            .expect(0)
            .mount(&server)
            .await;
    }
    let plan = client(&server)
        .approvals()
        .plan_permit(&request_id(), &a4_options())
        .await
        .unwrap();

    assert_eq!(plan.requests.len(), 2);
    assert_eq!(plan.requests[0], {
        let mut r = prepare_take_ownership(&request_id());
        r.organization = Some(OrganizationId::from(ORG));
        r
    });
    let permit = plan.permit_request().unwrap();
    assert_eq!(permit.method, Method::Post);
    assert_eq!(permit.path, PERMIT);
    assert_eq!(permit.safety, Safety::Write);
    assert_eq!(permit.organization.as_ref().map(|o| o.as_str()), Some(ORG));
    assert_eq!(plan.permit_body(), Some(&expected_a4_body()));

    // The matching list keeps both name keys the server sent.
    let tenant = &plan.matching.matching_applications[1];
    assert_eq!(tenant.application_name.as_deref(), Some("Zoom"));
    assert_eq!(tenant.name.as_deref(), Some("Zoom"));

    let shown = plan.to_string();
    assert!(shown.contains(&format!("POST {TAKE_OWNERSHIP}")), "{shown}");
    assert!(shown.contains(&format!("POST {PERMIT}")), "{shown}");
    assert!(
        shown.contains("\"useMatchingApplication\": true"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("managedOrganizationId: {ORG}")),
        "{shown}"
    );
    assert!(!shown.contains(KEY), "the key never appears in a dry run");

    let seen = paths_seen(&server).await;
    assert!(
        seen.iter()
            .all(|p| !p.ends_with(PERMIT) && !p.ends_with(TAKE_OWNERSHIP)),
        "{seen:?}"
    );
}

#[tokio::test]
async fn plan_permit_refuses_an_already_actioned_request() {
    let server = MockServer::start().await;
    mount_status(&server, 11, 11).await;
    let err = client(&server)
        .approvals()
        .plan_permit(&request_id(), &a4_options())
        .await
        .unwrap_err();
    assert!(
        matches!(err, threatlocker_api::Error::AlreadyActioned { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn preparing_every_write_sends_nothing() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let _client = client(&server);
    let start = Utc.with_ymd_and_hms(2026, 5, 14, 15, 0, 0).unwrap();
    let org = OrganizationId::from(ORG);
    let mut all = vec![
        prepare_take_ownership(&request_id()),
        prepare_reject(&[request_id()], &RejectOptions::new("no")).unwrap(),
        prepare_ignore(&[request_id()], &IgnoreOptions::new("dup")).unwrap(),
        prepare_application_insert(&NewApplication::new("Zoom", OsType::Windows)).unwrap(),
        prepare_hash_rule_insert(&"app".into(), OsType::Windows, &"ab".repeat(32), "n").unwrap(),
        prepare_policy_insert(&NewPolicy::new("p", OsType::Windows, "g").application("a")).unwrap(),
        prepare_policy_update(serde_json::json!({"policyId": "p", "organizationId": ORG})).unwrap(),
        prepare_policy_deploy(&org).unwrap(),
        prepare_maintenance_insert(&MaintenanceRequest::new(
            "c",
            MaintenanceType::Installation,
            start,
            start + chrono::Duration::hours(2),
        ))
        .unwrap(),
        prepare_maintenance_end(&MaintenanceEnd::new(
            "c",
            "m",
            MaintenanceType::Installation,
        ))
        .unwrap(),
    ];
    all.extend(prepare_policy_delete(&[PolicyRef::new("p", ORG)]).unwrap());
    for r in &all {
        assert_eq!(r.safety, Safety::Write, "{}", r.endpoint());
        let shown = r.to_string();
        assert!(
            shown.starts_with(&format!("{} /portalapi/", r.method)),
            "{shown}"
        );
        assert!(!shown.contains(KEY));
    }
    // `server` verifies `.expect(0)` on drop.
}
