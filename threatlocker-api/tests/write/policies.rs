//! Policy writes: insert, full-replace update, delete grouped by owning organization, deploy.

use chrono::{TimeZone, Utc};
use serde_json::json;
use threatlocker_api::{
    prepare_policy_delete, Error, NewPolicy, OrganizationId, OsType, PolicyAction, PolicyId,
    PolicyRef,
};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::common::*;

const INSERT: &str = "/portalapi/Policy/PolicyInsert";
const UPDATE: &str = "/portalapi/Policy/PolicyUpdateById";
const DELETE: &str = "/portalapi/Policy/PolicyUpdateForDeleteByIds";
const DEPLOY: &str = "/portalapi/DeployPolicyQueue/DeployPolicies";
const CHILD: &str = "8c7d6e5f-aaaa-4b3c-9d2e-1f0a9b8c7d6e";

#[tokio::test]
async fn delete_sends_a_bare_array_per_owning_organization() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(DELETE))
        .and(header("managedOrganizationId", ORG))
        .and(body_json(json!([
            {"policyId": "p-1", "organizationId": ORG, "name": "Permit Zoom"},
            {"policyId": "p-2", "organizationId": ORG, "name": null}
        ])))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(DELETE))
        .and(header("managedOrganizationId", CHILD))
        .and(body_json(json!([
            {"policyId": "p-3", "organizationId": CHILD, "name": "Child policy"}
        ])))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .policies()
        .delete(&[
            PolicyRef::new("p-1", ORG).name("Permit Zoom"),
            PolicyRef::new("p-3", CHILD).name("Child policy"),
            PolicyRef::new("p-2", ORG),
            PolicyRef::new("p-1", ORG).name("Permit Zoom"),
        ])
        .await
        .unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[test]
fn delete_without_owning_org_is_refused() {
    let err = prepare_policy_delete(&[PolicyRef::new("p-1", "")]).unwrap_err();
    assert!(err.to_string().contains("owning organization"), "{err}");
    assert!(prepare_policy_delete(&[]).is_err());
}

#[tokio::test]
async fn deploy_is_scoped_by_header_with_the_org_in_the_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(DEPLOY))
        .and(header("managedOrganizationId", CHILD))
        .and(body_json(
            json!({"organizationId": CHILD, "managedOrganizationId": CHILD}),
        ))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    // Even a client scoped elsewhere deploys the organization it is asked to.
    client(&server)
        .with_organization(ORG)
        .policies()
        .deploy(&OrganizationId::from(CHILD))
        .await
        .unwrap();
}

#[tokio::test]
async fn insert_sends_the_policy_fields() {
    let server = MockServer::start().await;
    let rf = json!({
        "restrictApplication": true,
        "restrictApplicationSpawning": false,
        "restrictFileAccess": true,
        "restrictNetworkAccess": false,
        "restrictRegistryAccess": false,
        "rfFilePolicy": [{ "path": "C:\\PatientData\\*", "action": 2, "permission": 2 }]
    });
    Mock::given(method("POST"))
        .and(path(INSERT))
        .and(header("managedOrganizationId", ORG))
        .and(body_json(json!({
            "name": "Permit AnyDesk - Front Desk",
            "applicationIdList": ["7c6b5a49-5555-4d3c-8b2a-1f0e9d8c7b6a"],
            "computerGroupId": "5e4d3c2b-4444-4a1b-9c8d-7e6f5a4b3c2d",
            "osType": 1,
            "policyActionId": 6,
            "isEnabled": true,
            "logAction": true,
            "elevationStatus": 0,
            "policyScheduleStatus": 1,
            "endDate": "2026-06-14T00:00:00Z",
            "ringfencingOptions": rf.clone()
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"policyId": "new-policy"})))
        .expect(1)
        .mount(&server)
        .await;
    let policy = NewPolicy::new(
        "Permit AnyDesk - Front Desk",
        OsType::Windows,
        "5e4d3c2b-4444-4a1b-9c8d-7e6f5a4b3c2d",
    )
    .application("7c6b5a49-5555-4d3c-8b2a-1f0e9d8c7b6a")
    .action(PolicyAction::PermitWithRingfence)
    .end_date(Utc.with_ymd_and_hms(2026, 6, 14, 0, 0, 0).unwrap())
    .ringfencing(rf)
    .organization(ORG);
    let created = client(&server).policies().insert(&policy).await.unwrap();
    assert_eq!(created, Some(json!({"policyId": "new-policy"})));
}

#[tokio::test]
async fn insert_refuses_a_policy_without_applications() {
    let server = MockServer::start().await;
    let err = client(&server)
        .policies()
        .insert(&NewPolicy::new("x", OsType::Windows, "g"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("applicationIdList"), "{err}");
    assert!(paths_seen(&server).await.is_empty());
}

#[tokio::test]
async fn update_puts_the_full_object_scoped_to_its_owner() {
    let server = MockServer::start().await;
    let policy = json!({
        "policyId": "p-1", "organizationId": CHILD, "name": "Permit Zoom", "osType": 1,
        "policyActionId": 1, "isEnabled": false, "applicationIdList": ["a"], "computerGroupId": "g",
        "logAction": true, "ringfencingOptions": null
    });
    Mock::given(method("PUT"))
        .and(path(UPDATE))
        .and(header("managedOrganizationId", CHILD))
        .and(body_json(policy.clone()))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    client(&server).policies().update(policy).await.unwrap();
    let err = client(&server)
        .policies()
        .update(json!({"name": "no id"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("policyId"));
}

#[tokio::test]
async fn wrong_owner_error_keeps_the_message_and_names_the_rule() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(UPDATE))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "Message": "Insufficient permission to update policies in the selected destination"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .policies()
        .update(json!({"policyId": "p-1"}))
        .await
        .unwrap_err();
    match &err {
        Error::Api {
            status: 400,
            message,
            hint,
            ..
        } => {
            assert!(message
                .as_deref()
                .unwrap_or("")
                .contains("selected destination"));
            assert!(hint.unwrap_or("").contains("owns the policy"), "{hint:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_lost_deploy_answer_is_outcome_unknown_and_sent_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(DEPLOY))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .policies()
        .deploy(&OrganizationId::from(ORG))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err:?}");
}

#[tokio::test]
async fn update_with_reads_from_the_owner_patches_and_puts_everything_back() {
    let server = MockServer::start().await;
    let stored = json!({
        "policyId": "p-1", "organizationId": CHILD, "name": "Permit Zoom", "osType": 1,
        "policyActionId": 1, "isEnabled": true, "applicationIdList": ["a"], "computerGroupId": "g",
        "logAction": true, "policyScheduleStatus": 0, "endDate": null, "notifyOnRequest": false
    });
    Mock::given(method("GET"))
        .and(path("/portalapi/Policy/PolicyGetById"))
        .and(query_param("policyId", "p-1"))
        .and(header("managedOrganizationId", CHILD))
        .respond_with(ResponseTemplate::new(200).set_body_json(stored.clone()))
        .expect(1)
        .mount(&server)
        .await;
    let mut want = stored.clone();
    want["isEnabled"] = json!(false);
    Mock::given(method("PUT"))
        .and(path(UPDATE))
        .and(header("managedOrganizationId", CHILD))
        .and(body_json(want.clone()))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let sent = client(&server)
        .policies()
        .update_with(&PolicyId::from("p-1"), &OrganizationId::from(CHILD), |p| {
            p["isEnabled"] = json!(false)
        })
        .await
        .unwrap();
    assert_eq!(sent, want);
}
