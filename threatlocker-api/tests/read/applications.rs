//! Applications: search (quirk 13), get, matching list, research details.

use serde_json::json;
use threatlocker_api::{ApplicationId, MatchCert, MatchQuery, OsType, SearchBy};
use wiremock::matchers::{body_json, body_partial_json, method, path, query_param};
use wiremock::Mock;

use crate::common::*;

const SEARCH: &str = "/portalapi/Application/ApplicationGetByParameters";
const SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

#[tokio::test]
async fn search_by_hash_sends_the_documented_body() {
    let (server, client, _) = setup().await;
    // Reference A.8.
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .and(auth())
        .and(body_json(json!({
            "searchText": SHA,
            "searchBy": "hash",
            "orderBy": "name",
            "isAscending": true,
            "category": 0,
            "osType": 1,
            "includeChildOrganizations": false,
            "isHidden": false,
            "permittedApplications": false,
            "countries": [],
            "categories": [],
            "pageNumber": 1,
            "pageSize": 50
        })))
        .respond_with(json(json!([
            fixture("application.json")["application"].clone()
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let page = client
        .applications()
        .search(SHA, SearchBy::Hash)
        .os_type(OsType::Windows)
        .page_size(50)
        .send()
        .await
        .unwrap();
    let app = &page.items[0];
    // Quirk 13: `computerCounts` is plural.
    assert_eq!(app.computer_counts, Some(12));
    assert!(app.is_master_owned());
}

#[tokio::test]
async fn blank_search_text_is_sent_as_a_space() {
    let (server, client, _) = setup().await;
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .and(body_partial_json(
            json!({"searchText": " ", "searchBy": "app", "category": 2, "osType": 0}),
        ))
        .respond_with(json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let page = client
        .applications()
        .search("", SearchBy::Name)
        .category(2)
        .send()
        .await
        .unwrap();
    assert!(page.items.is_empty());
}

#[tokio::test]
async fn get_tolerates_nesting_under_application_or_data_or_none() {
    let (server, client, _) = setup().await;
    let inner = fixture("application.json")["application"].clone();
    for (id, body) in [
        ("a1", fixture("application.json")),
        ("a2", json!({"data": inner.clone()})),
        ("a3", inner.clone()),
    ] {
        Mock::given(method("GET"))
            .and(path("/portalapi/Application/ApplicationGetById"))
            .and(auth())
            .and(query_param("applicationId", id))
            .respond_with(json(body))
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/portalapi/Application/ApplicationGetById"))
        .and(query_param("applicationId", "gone"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("null"))
        .expect(1)
        .mount(&server)
        .await;
    let err = client
        .applications()
        .get(&ApplicationId::new("gone"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    for id in ["a1", "a2", "a3"] {
        let app = client
            .applications()
            .get(&ApplicationId::new(id))
            .await
            .unwrap();
        assert_eq!(app.name.as_deref(), Some("AnyDesk"), "{id}");
        assert!(app.extra.contains_key("applicationFiles"), "{id}");
    }
}

#[tokio::test]
async fn matching_list_sends_the_query_and_reads_has_matching() {
    let (server, client, _) = setup().await;
    // Reference A.8, second body.
    Mock::given(method("POST"))
        .and(path("/portalapi/Application/ApplicationGetMatchingList"))
        .and(auth())
        .and(body_json(json!({
            "osType": 1,
            "hash": "",
            "sha256": SHA,
            "path": "c:\\program files\\anydesk\\anydesk.exe",
            "processPath": "",
            "certs": [ { "sha": "", "subject": "CN=philandro Software GmbH", "validCert": true } ],
            "createdBys": []
        })))
        .respond_with(json(json!({
            "matchingApplications": [
                {"applicationId": "7c6b5a49-5555-4d3c-8b2a-1f0e9d8c7b6a", "name": "AnyDesk", "organizationName": "master", "osType": 1}
            ],
            "hasMatching": true
        })))
        .expect(1)
        .mount(&server)
        .await;
    let list = client
        .applications()
        .matching_list(
            MatchQuery::new(OsType::Windows)
                .sha256(SHA)
                .path("c:\\program files\\anydesk\\anydesk.exe")
                .cert(MatchCert::new("CN=philandro Software GmbH", "", true)),
        )
        .await
        .unwrap();
    assert_eq!(list.has_matching, Some(true));
    assert!(list.matching_applications[0].is_master_owned());
}

#[tokio::test]
async fn research_details_with_categories() {
    let (server, client, _) = setup().await;
    Mock::given(method("GET"))
        .and(path(
            "/portalapi/Application/ApplicationGetResearchDetailsById",
        ))
        .and(auth())
        .and(query_param(
            "applicationId",
            "7c6b5a49-5555-4d3c-8b2a-1f0e9d8c7b6a",
        ))
        .respond_with(json(fixture("research_details.json")))
        .expect(1)
        .mount(&server)
        .await;
    let r = client
        .applications()
        .research_details(&ApplicationId::new("7c6b5a49-5555-4d3c-8b2a-1f0e9d8c7b6a"))
        .await
        .unwrap();
    assert_eq!(r.categories, vec!["Remote Access", "Productivity"]);
    assert_eq!(r.countries_where_code_compiled, vec!["DE"]);
    assert_eq!(r.business_rating, Some(4));
}
