//! Policies: list, get with the owning organization (quirk 12, read side).

use serde_json::json;
use threatlocker_api::{OsType, PolicyAction, PolicyId};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

#[tokio::test]
async fn list_sends_filter_and_options() {
    let (server, client, _) = setup().await;
    Mock::given(method("POST"))
        .and(path("/portalapi/Policy/PolicyGetByParameters"))
        .and(auth())
        .and(body_json(json!({
            "filter": "",
            "pageNumber": 1,
            "pageSize": 1000,
            "searchText": "AnyDesk",
            "activeOnly": true,
            "showAllPolicies": true,
            "computerGroupId": "5e4d3c2b-4444-4a1b-9c8d-7e6f5a4b3c2d",
            "osType": 1,
            "childOrganizations": true
        })))
        .respond_with(json(fixture("policies.json")))
        .expect(1)
        .mount(&server)
        .await;
    let page = client
        .policies()
        .list()
        .search_text("AnyDesk")
        .active_only(true)
        .show_all(true)
        .applies_to("5e4d3c2b-4444-4a1b-9c8d-7e6f5a4b3c2d")
        .os_type(OsType::Windows)
        .child_organizations(true)
        .page_size(1000)
        .send()
        .await
        .unwrap();
    let p = &page.items[0];
    assert_eq!(p.policy_action_id, Some(PolicyAction::PermitWithRingfence));
    assert_eq!(p.extra["neverExpires"], json!(true));
}

#[tokio::test]
async fn monitor_mode_reads_as_an_integer_or_a_boolean() {
    // Reference §3.6: `monitorMode` is an integer (0/1/2) in most sources, a boolean in one.
    let (server, client, _) = setup().await;
    let rows = json!([
        {"policyId": "p-int", "name": "a", "monitorMode": 1},
        {"policyId": "p-true", "name": "b", "monitorMode": true},
        {"policyId": "p-false", "name": "c", "monitorMode": false},
        {"policyId": "p-null", "name": "d", "monitorMode": null},
        {"policyId": "p-str", "name": "e", "monitorMode": "2"}
    ]);
    Mock::given(method("POST"))
        .and(path("/portalapi/Policy/PolicyGetByParameters"))
        .respond_with(json(rows))
        .expect(1)
        .mount(&server)
        .await;
    let page = client.policies().list().page_size(10).send().await.unwrap();
    let modes: Vec<Option<i64>> = page.items.iter().map(|p| p.monitor_mode).collect();
    assert_eq!(modes, [Some(1), Some(2), Some(0), None, Some(2)]);
}

#[tokio::test]
async fn get_is_scoped_to_the_owning_organization() {
    let (server, client, _) = setup().await;
    let owner = "3b0f5f7e-1111-4a2b-9c3d-5e6f7a8b9c0d";
    let id = "0d9e8f7a-3333-4b1c-8d2e-6f7a8b9c0d1e";
    Mock::given(method("GET"))
        .and(path("/portalapi/Policy/PolicyGetById"))
        .and(query_param("policyId", id))
        .and(header("managedOrganizationId", owner))
        .respond_with(json(fixture("policies.json")[0].clone()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/portalapi/Policy/PolicyGetById"))
        .and(no_org_header)
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"Message": "Unable to retrieve application policy"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = client
        .with_organization(owner)
        .policies()
        .get(&PolicyId::new(id))
        .await
        .unwrap();
    assert_eq!(p.name.as_deref(), Some("Permit AnyDesk - Front Desk"));
    let err = client.policies().get(&PolicyId::new(id)).await.unwrap_err();
    assert!(err.to_string().contains("owning organization"), "{err}");
}
