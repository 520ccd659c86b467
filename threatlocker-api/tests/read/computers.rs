//! Computers: list with filters, get.

use futures_util::TryStreamExt;
use serde_json::json;
use threatlocker_api::{ComputerId, ComputerMode, ComputerSearchBy, MaintenanceType};
use wiremock::matchers::{body_json, body_partial_json, method, path};
use wiremock::Mock;

use crate::common::*;

const LIST: &str = "/portalapi/Computer/ComputerGetByAllParameters";

#[tokio::test]
async fn list_learning_machines_across_child_orgs() {
    let (server, client, _) = setup().await;
    // Reference A.6.
    Mock::given(method("POST"))
        .and(path(LIST))
        .and(auth())
        .and(body_json(json!({
            "pageNumber": 1,
            "pageSize": 100,
            "orderBy": "lastcheckin",
            "isAscending": false,
            "searchText": "",
            "searchBy": 1,
            "action": "Learning",
            "kindOfAction": "Computer Mode",
            "computerGroup": "00000000-0000-0000-0000-000000000000",
            "childOrganizations": true,
            "showLastCheckIn": true,
            "showDeleted": false,
            "isExport": false
        })))
        .respond_with(json(fixture("computers.json")))
        .expect(1)
        .mount(&server)
        .await;
    let page = client
        .computers()
        .list()
        .mode(ComputerMode::Learning)
        .child_organizations(true)
        .order_by("lastcheckin")
        .ascending(false)
        .page_size(100)
        .send()
        .await
        .unwrap();
    let c = &page.items[0];
    assert_eq!(c.effective_mode(), Some(ComputerMode::Learning));
    assert_eq!(c.maintenance_type_id, Some(MaintenanceType::Learning));
    assert_eq!(
        c.last_checkin.unwrap().to_rfc3339(),
        "2026-05-14T13:10:03.221+00:00"
    );
    assert_eq!(c.extra["denyCountThreeDays"], json!(12));
    assert_eq!(page.items[1].mode, Some(ComputerMode::Learning));
}

#[tokio::test]
async fn list_with_other_filters_streams() {
    let (server, client, _) = setup().await;
    Mock::given(method("POST"))
        .and(path(LIST))
        .and(body_json(json!({
            "pageNumber": 1,
            "pageSize": 500,
            "orderBy": "computername",
            "isAscending": true,
            "searchText": "jsmith",
            "searchBy": 2,
            "action": "",
            "kindOfAction": "TamperProtectionDisabled",
            "computerGroup": "5e4d3c2b-4444-4a1b-9c8d-7e6f5a4b3c2d",
            "childOrganizations": false,
            "showLastCheckIn": false,
            "showDeleted": true,
            "isExport": false,
            "threatlockerVersion": "10.3.4"
        })))
        .respond_with(json(fixture("computers.json")))
        .expect(1)
        .mount(&server)
        .await;
    let rows: Vec<_> = client
        .computers()
        .list()
        .search_text("jsmith")
        .search_by(ComputerSearchBy::Username)
        .kind_of_action("TamperProtectionDisabled")
        .computer_group("5e4d3c2b-4444-4a1b-9c8d-7e6f5a4b3c2d")
        .show_last_checkin(false)
        .show_deleted(true)
        .threatlocker_version("10.3.4")
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
}

#[tokio::test]
async fn get_filters_the_list_by_computer_id() {
    let (server, client, _) = setup().await;
    Mock::given(method("POST"))
        .and(path(LIST))
        .and(body_partial_json(json!({
            "computerId": "1b2c3d4e-3333-4f5a-9b8c-7d6e5f4a3b2c",
            "childOrganizations": true
        })))
        .respond_with(json(fixture("computers.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(LIST))
        .and(body_partial_json(
            json!({"computerId": "ffffffff-0000-0000-0000-000000000000"}),
        ))
        .respond_with(json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let c = client
        .computers()
        .get(&ComputerId::new("1b2c3d4e-3333-4f5a-9b8c-7d6e5f4a3b2c"))
        .await
        .unwrap();
    assert_eq!(c.name(), Some("WS-IMAGING-01"));
    let err = client
        .computers()
        .get(&ComputerId::new("ffffffff-0000-0000-0000-000000000000"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}
