//! System audit (quirk 11), maintenance history, tags (quirk 16), escape hatches.

use futures_util::TryStreamExt;
use serde_json::json;
use threatlocker_api::{ComputerId, MaintenanceType};
use wiremock::matchers::{body_json, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

#[tokio::test]
async fn system_audit_filters_by_email_address_and_reads_details_objects() {
    let (server, client, _) = setup().await;
    // Reference A.11 plus an administrator filter.
    Mock::given(method("POST"))
        .and(path("/portalapi/SystemAudit/SystemAuditGetByParameters"))
        .and(auth())
        .and(body_json(json!({
            "startDate": "2026-05-13T15:00:00Z",
            "endDate": "2026-05-14T15:00:00Z",
            "action": "Logon",
            "effectiveAction": "Denied",
            "emailAddress": "tech@msp.example",
            "ipAddress": "203.0.113.*",
            "details": "password",
            "viewChildOrganizations": true,
            "objectId": "00000000-0000-0000-0000-000000000000",
            "pageNumber": 1,
            "pageSize": 100
        })))
        .respond_with(json(fixture("system_audit.json")))
        .expect(1)
        .mount(&server)
        .await;
    let rows: Vec<_> = client
        .system_audit()
        .search(utc("2026-05-13T15:00:00Z"), utc("2026-05-14T15:00:00Z"))
        .action("Logon")
        .effective_action("Denied")
        .email_address("tech@msp.example")
        .ip_address("203.0.113.*")
        .details("password")
        .child_organizations(true)
        .page_size(100)
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let d = rows[0].details.as_ref().unwrap();
    assert_eq!(d.function.as_deref(), Some("Logon"));
    assert_eq!(d.details.as_deref(), Some("Invalid password"));
    // A null id and a string `details` are tolerated.
    assert_eq!(rows[1].system_audit_id, None);
    assert_eq!(
        rows[1].details.as_ref().unwrap().details.as_deref(),
        Some("Viewed approvals")
    );
}

#[tokio::test]
async fn maintenance_history_by_computer() {
    let (server, client, _) = setup().await;
    Mock::given(method("GET"))
        .and(path(
            "/portalapi/MaintenanceMode/MaintenanceModeGetByComputerIdV2",
        ))
        .and(auth())
        .and(query_param(
            "computerId",
            "9a8b7c6d-2222-4e5f-8a9b-0c1d2e3f4a5b",
        ))
        .and(query_param("pageNumber", "1"))
        .and(query_param("pageSize", "20"))
        .respond_with(json(fixture("maintenance.json")))
        .expect(1)
        .mount(&server)
        .await;
    let page = client
        .maintenance()
        .by_computer(&ComputerId::new("9a8b7c6d-2222-4e5f-8a9b-0c1d2e3f4a5b"))
        .page_size(20)
        .send()
        .await
        .unwrap();
    let w = &page.items[0];
    assert_eq!(w.maintenance_type_id, Some(MaintenanceType::Installation));
    assert_eq!(w.added_by.as_deref(), Some("tech@msp.example"));
    assert_eq!(w.ended_by, None);
}

#[tokio::test]
async fn tag_dropdown_uses_the_typo_path_and_sends_all_three_parameters() {
    let (server, client, _) = setup().await;
    Mock::given(method("GET"))
        .and(path("/portalapi/Tag/TagGetDowndownOptionsByOrganizationId"))
        .and(auth())
        .and(query_param("includeBuiltIns", "false"))
        .and(query_param("tagType", "1"))
        .and(query_param("includeNetworkTagInMaster", "true"))
        .respond_with(json(fixture("tags.json")))
        .expect(1)
        .mount(&server)
        .await;
    let tags = client.tags().dropdown().send().await.unwrap();
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[1].label.as_deref(), Some("MSP Parent\\RMM Servers"));
    let req = client
        .tags()
        .dropdown()
        .include_built_ins(true)
        .tag_type(2)
        .include_network_tag_in_master(false)
        .prepare();
    assert_eq!(
        req.to_string().lines().next().unwrap(),
        "GET /portalapi/Tag/TagGetDowndownOptionsByOrganizationId?includeBuiltIns=true&tagType=2&includeNetworkTagInMaster=false"
    );
}

#[tokio::test]
async fn escape_hatches() {
    let (server, client, _) = setup().await;
    Mock::given(method("GET"))
        .and(path(
            "/portalapi/OnlineDevices/OnlineDevicesGetByParameters",
        ))
        .and(auth())
        .and(query_param("pageNumber", "1"))
        .and(query_param("orderBy", "HostName"))
        .respond_with(ResponseTemplate::new(200).set_body_string("null"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/portalapi/ScheduledAgentAction/GetByParameters"))
        .and(body_json(json!({"pageNumber": 1})))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/portalapi/ScheduledAgentAction/GetByParameters"))
        .respond_with(json(json!([{"id": 1}])))
        .expect(1)
        .mount(&server)
        .await;
    let v = client
        .get_json(
            "/portalapi/OnlineDevices/OnlineDevicesGetByParameters",
            &[("pageNumber", "1"), ("orderBy", "HostName")],
        )
        .await
        .unwrap();
    assert!(v.is_null());
    // search_json is retried like a read.
    let v = client
        .search_json(
            "/portalapi/ScheduledAgentAction/GetByParameters",
            json!({"pageNumber": 1}),
        )
        .await
        .unwrap();
    assert_eq!(v, json!([{"id": 1}]));
}
