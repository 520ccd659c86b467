//! Organizations: children, accessible list.

use futures_util::TryStreamExt;
use serde_json::json;
use wiremock::matchers::{body_json, method, path, query_param};
use wiremock::Mock;

use crate::common::*;

#[tokio::test]
async fn children_sends_child_organizations_true_and_keeps_nesting() {
    let (server, client, _) = setup().await;
    // Reference A.7.
    Mock::given(method("POST"))
        .and(path(
            "/portalapi/Organization/OrganizationGetChildOrganizationsByParameters",
        ))
        .and(auth())
        .and(body_json(json!({
            "pageNumber": 1, "pageSize": 100, "searchText": "", "orderBy": "name",
            "isAscending": true, "includeAllChildren": true, "childOrganizations": true
        })))
        .respond_with(json(fixture("child_organizations.json")))
        .expect(1)
        .mount(&server)
        .await;
    let orgs: Vec<_> = client
        .organizations()
        .children()
        .page_size(100)
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(orgs.len(), 2);
    assert_eq!(orgs[0].label(), Some("Contoso Dental"));
    let all: Vec<_> = orgs.iter().flat_map(|o| o.flatten()).collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all[1].label(), Some("Contoso Dental East"));
    assert_eq!(orgs[1].extra["activeCount"], json!(15));
}

#[test]
fn children_options_shape_the_body() {
    let client = threatlocker_api::Client::builder(KEY)
        .base_url("http://127.0.0.1:1")
        .build()
        .unwrap();
    let req = client
        .organizations()
        .children()
        .include_all_children(false)
        .search_text("contoso")
        .order_by("dateAdded")
        .ascending(false)
        .page(2)
        .page_size(10)
        .prepare();
    assert_eq!(
        req.body.unwrap(),
        json!({
            "pageNumber": 2, "pageSize": 10, "searchText": "contoso", "orderBy": "dateAdded",
            "isAscending": false, "includeAllChildren": false, "childOrganizations": true
        })
    );
}

#[tokio::test]
async fn accessible_organizations_as_dropdown_options_bare_or_wrapped() {
    let (server, client, _) = setup().await;
    Mock::given(method("GET"))
        .and(path(
            "/portalapi/Organization/OrganizationGetForMoveComputers",
        ))
        .and(auth())
        .and(query_param("searchText", ""))
        .respond_with(json(json!([
            {"label": "Contoso Dental", "value": "3b0f5f7e-1111-4a2b-9c3d-5e6f7a8b9c0d"},
            {"label": "Fabrikam Billing", "value": "4c1a6b8f-2222-4b3c-8d4e-6f7a8b9c0d1e"}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/portalapi/Organization/OrganizationGetForMoveComputers",
        ))
        .and(query_param("searchText", "fab"))
        .respond_with(json(json!({"organizations": [
            {"label": "Fabrikam Billing", "value": "4c1a6b8f-2222-4b3c-8d4e-6f7a8b9c0d1e"}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    let all = client.organizations().accessible("").await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[1].value.as_deref(),
        Some("4c1a6b8f-2222-4b3c-8d4e-6f7a8b9c0d1e")
    );
    let some = client.organizations().accessible("fab").await.unwrap();
    assert_eq!(some[0].label.as_deref(), Some("Fabrikam Billing"));
}
