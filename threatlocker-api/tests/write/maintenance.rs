//! Maintenance mode: insert and end, exactly as Appendix A.10.

use chrono::{Duration, TimeZone, Utc};
use serde_json::json;
use threatlocker_api::{
    prepare_maintenance_insert, MaintenanceEnd, MaintenanceRequest, MaintenanceType,
};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::common::*;

const COMPUTER: &str = "9a8b7c6d-2222-4e5f-8a9b-0c1d2e3f4a5b";

#[tokio::test]
async fn insert_is_exactly_appendix_a10() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/portalapi/MaintenanceMode/MaintenanceModeInsert"))
        .and(body_json(json!({
            "computerId": COMPUTER,
            "maintenanceTypeId": 2,
            "startDateTime": "2026-05-14T15:00:00Z",
            "endDateTime": "2026-05-14T17:00:00Z",
            "computerDateTime": "2026-05-14T15:00:00Z",
            "allUsers": true,
            "usersList": [],
            "permitEnd": true,
            "automaticApplication": false,
            "automaticApplicationType": 0,
            "createNewApplication": false,
            "useExistingApplication": false,
            "ticketNumber": "PSA-48214",
            "notes": "Dental imaging software upgrade"
        })))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let start = Utc.with_ymd_and_hms(2026, 5, 14, 15, 0, 0).unwrap();
    client(&server)
        .maintenance()
        .insert(
            &MaintenanceRequest::new(
                COMPUTER,
                MaintenanceType::Installation,
                start,
                start + Duration::hours(2),
            )
            .ticket_number("PSA-48214")
            .notes("Dental imaging software upgrade"),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn end_is_a_patch_with_the_appendix_a10_body() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/portalapi/MaintenanceMode/MaintenanceModeEndById"))
        .and(body_json(json!({
            "computerId": COMPUTER,
            "maintenanceModeId": "2f3e4d5c-7777-4b6a-9c8d-1e2f3a4b5c6d",
            "maintenanceTypeId": 2
        })))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .maintenance()
        .end(&MaintenanceEnd::new(
            COMPUTER,
            "2f3e4d5c-7777-4b6a-9c8d-1e2f3a4b5c6d",
            MaintenanceType::Installation,
        ))
        .await
        .unwrap();
}

#[test]
fn bad_windows_are_refused() {
    let start = Utc.with_ymd_and_hms(2026, 5, 14, 15, 0, 0).unwrap();
    let backwards = MaintenanceRequest::new(
        COMPUTER,
        MaintenanceType::Learning,
        start,
        start - Duration::hours(1),
    );
    assert!(prepare_maintenance_insert(&backwards)
        .unwrap_err()
        .to_string()
        .contains("before it starts"));
    let no_users = MaintenanceRequest::new(
        COMPUTER,
        MaintenanceType::Learning,
        start,
        start + Duration::hours(1),
    )
    .users(Vec::<String>::new());
    assert!(prepare_maintenance_insert(&no_users)
        .unwrap_err()
        .to_string()
        .contains("users"));
    let some_users = MaintenanceRequest::new(
        COMPUTER,
        MaintenanceType::Learning,
        start,
        start + Duration::hours(1),
    )
    .users(["CONTOSO\\jsmith"]);
    let body = prepare_maintenance_insert(&some_users)
        .unwrap()
        .body
        .unwrap();
    assert_eq!(body["allUsers"], json!(false));
    assert_eq!(body["usersList"], json!(["CONTOSO\\jsmith"]));
    assert_eq!(body["maintenanceTypeId"], json!(3));
}
