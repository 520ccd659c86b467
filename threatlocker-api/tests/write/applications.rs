//! Application writes: minimal insert, hash-only rule (Appendix A.9), options list.

use serde_json::json;
use threatlocker_api::{
    prepare_hash_rule_insert, ApplicationId, ApplicationOptionsQuery, NewApplication, OsType,
};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::common::*;

const SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

#[tokio::test]
async fn insert_sends_the_minimal_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/portalapi/Application/ApplicationInsert"))
        .and(header("managedOrganizationId", ORG))
        .and(body_json(json!({
            "name": "Dental Imaging",
            "osType": 1,
            "description": "Imaging suite",
            "applicationFileUpdates": []
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "applicationId": "7c6b5a49-5555-4d3c-8b2a-1f0e9d8c7b6a",
            "name": "Dental Imaging",
            "applicationName": "Dental Imaging",
            "osType": 1
        })))
        .expect(1)
        .mount(&server)
        .await;
    let app = client(&server)
        .applications()
        .insert(
            &NewApplication::new("Dental Imaging", OsType::Windows)
                .description("Imaging suite")
                .organization(ORG),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        app.application_id,
        Some(ApplicationId::from("7c6b5a49-5555-4d3c-8b2a-1f0e9d8c7b6a"))
    );
}

#[tokio::test]
async fn hash_rule_is_exactly_appendix_a9() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/portalapi/ApplicationFile/ApplicationFileInsert"))
        .and(body_json(json!({
            "applicationFileId": 0,
            "applicationId": "7c6b5a49-5555-4d3c-8b2a-1f0e9d8c7b6a",
            "osType": 1,
            "hash": SHA,
            "isHashOnly": true,
            "fullPath": "",
            "processPath": "",
            "cert": "",
            "installedBy": "",
            "keyFile": false,
            "notes": "Added by API for ticket PSA-48213",
            "updateStatus": 1
        })))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .applications()
        .insert_hash_rule(
            &ApplicationId::from("7c6b5a49-5555-4d3c-8b2a-1f0e9d8c7b6a"),
            OsType::Windows,
            &SHA.to_ascii_uppercase(),
            "Added by API for ticket PSA-48213",
        )
        .await
        .unwrap();
}

#[test]
fn hash_rule_refuses_what_is_not_a_sha256() {
    for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63)] {
        let err = prepare_hash_rule_insert(&"app".into(), OsType::Windows, bad, "").unwrap_err();
        assert!(err.to_string().contains("SHA-256"), "{bad}: {err}");
    }
}

#[tokio::test]
async fn options_list_sends_the_query_and_reads_rows_with_both_name_keys() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/portalapi/Application/ApplicationGetForApplicationOptions"))
        .and(body_json(json!({
            "organizationId": ORG,
            "osType": 1,
            "includeBuiltIn": false,
            "searchText": "zoom",
            "hostName": null,
            "appliesToId": null,
            "onlyPermitted": false
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"applicationId": "a-1", "name": "Zoom", "applicationName": "Zoom", "organizationName": "Contoso Dental", "osType": 1},
            {"applicationId": "a-2", "applicationName": "Zoom Rooms", "osType": 1}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let apps = client(&server)
        .applications()
        .options_list(
            &ApplicationOptionsQuery::new(OsType::Windows)
                .organization_id(ORG)
                .include_built_in(false)
                .search_text("zoom"),
        )
        .await
        .unwrap();
    let names: Vec<_> = apps
        .iter()
        .map(|a| a.display_name().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, ["Zoom", "Zoom Rooms"]);
}
