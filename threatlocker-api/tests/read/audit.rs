//! Action log: search, get by id, file history (quirks 1, 2, 3, 5, 6, 10, 18, 19).

use futures_util::{StreamExt, TryStreamExt};
use serde_json::json;
use threatlocker_api::{
    ActionLogId, ActionOutcome, Enforcement, Error, Method, OsType, Safety, SourceTable,
};
use wiremock::matchers::{body_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

const SEARCH: &str = "/portalapi/ActionLog/ActionLogGetByParametersV2";
const GET: &str = "/portalapi/ActionLog/ActionLogGetByIdV2";
const HISTORY: &str = "/portalapi/ActionLog/ActionLogGetAllForFileHistoryV2";

#[tokio::test]
async fn search_sends_usenewsearch_and_empty_params_fields_and_decodes_rows() {
    let (server, client, _) = setup().await;
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .and(auth())
        .and(header("usenewsearch", "true"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "startDate": "2026-05-14T00:00:00Z",
            "endDate": "2026-05-14T23:59:59Z",
            "pageNumber": 1,
            "pageSize": 100,
            "paramsFieldsDto": [],
            "groupBys": [],
            "exportMode": false,
            "showTotalCount": true,
            "showChildOrganizations": false,
            "onlyTrueDenies": false,
            "simulateDeny": false
        })))
        .respond_with(json(fixture("action_log_rows.json")))
        .expect(1)
        .mount(&server)
        .await;
    let page = client
        .audit()
        .search(utc("2026-05-14T00:00:00.900Z"), utc("2026-05-14T23:59:59Z"))
        .page_size(100)
        .send()
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let first = &page.items[0];
    // Quirk 19: ids beyond i32.
    assert_eq!(first.action_log_id, Some(ActionLogId(81_234_567_890)));
    assert_eq!(first.action_id, Some(ActionOutcome::Deny));
    assert_eq!(first.os_type, Some(OsType::Windows));
    assert!(first.is_block());
    assert_eq!(first.dedupe_key().as_deref(), Some("81234567890"));
    // Unknown fields kept.
    assert_eq!(first.extra["threatLockerItem"]["at"], json!(5));
    // Quirk 18: zone-less timestamp with seven fractional digits, read as UTC.
    let second = &page.items[1];
    assert_eq!(
        second.date_time.unwrap().to_rfc3339(),
        "2026-05-14T13:05:09.123456700+00:00"
    );
    assert!(second.is_audit_only());
    assert!(!second.is_block());
}

#[tokio::test]
async fn enforced_denies_add_action_id_99_and_the_monitor_only_entry() {
    let (server, client, _) = setup().await;
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .and(header("usenewsearch", "true"))
        .and(body_json(json!({
            "startDate": "2026-05-14T00:00:00Z",
            "endDate": "2026-05-14T23:59:59Z",
            "pageNumber": 1,
            "pageSize": 100,
            "actionId": 99,
            "hostname": "WS-FRONTDESK-*",
            "paramsFieldsDto": [
                { "fieldAttributeId": 34, "fieldType": 1, "filterType": 1, "name": "MonitorOnly", "value": "false" }
            ],
            "groupBys": [],
            "exportMode": false,
            "showTotalCount": true,
            "showChildOrganizations": false,
            "onlyTrueDenies": true,
            "simulateDeny": false
        })))
        .respond_with(json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let page = client
        .audit()
        .search(utc("2026-05-14T00:00:00Z"), utc("2026-05-14T23:59:59Z"))
        .enforcement(Enforcement::Enforced)
        .hostname("WS-FRONTDESK-*")
        .page_size(100)
        .send()
        .await
        .unwrap();
    assert!(page.items.is_empty());
}

#[test]
fn monitor_only_with_an_explicit_outcome_and_every_filter() {
    let client = threatlocker_api::Client::builder(KEY)
        .base_url("http://127.0.0.1:1")
        .build()
        .unwrap();
    let req = client
        .audit()
        .search(utc("2026-05-13T15:00:00Z"), utc("2026-05-14T15:00:00Z"))
        .outcome(ActionOutcome::DenyWithRequest)
        .enforcement(Enforcement::MonitorOnly)
        .action_type("execute")
        .action_types(["execute", "install"])
        .full_path("c:\\users\\*\\downloads\\*.exe")
        .policy("0d9e8f7a-3333-4b1c-8d2e-6f7a8b9c0d1e")
        .child_organizations(true)
        .group_bys(vec![11, 17])
        .source_table(SourceTable::DenyActionLog)
        .page(3)
        .page_size(250)
        .prepare();
    assert_eq!(req.method, Method::Post);
    assert_eq!(req.safety, Safety::Read);
    assert_eq!(req.path, SEARCH);
    assert_eq!(
        req.headers,
        vec![("usenewsearch".to_owned(), "true".to_owned())]
    );
    assert_eq!(
        req.body.unwrap(),
        json!({
            "startDate": "2026-05-13T15:00:00Z",
            "endDate": "2026-05-14T15:00:00Z",
            "pageNumber": 3,
            "pageSize": 250,
            "actionId": 3,
            "actionType": "execute",
            "actionTypes": ["execute", "install"],
            "fullPath": "c:\\users\\*\\downloads\\*.exe",
            "policyId": "0d9e8f7a-3333-4b1c-8d2e-6f7a8b9c0d1e",
            "sourceTableId": 2,
            "paramsFieldsDto": [
                { "fieldAttributeId": 34, "fieldType": 1, "filterType": 1, "name": "MonitorOnly", "value": "true" }
            ],
            "groupBys": [11, 17],
            "exportMode": false,
            "showTotalCount": true,
            "showChildOrganizations": true,
            "onlyTrueDenies": false,
            "simulateDeny": true
        })
    );
}

#[tokio::test]
async fn an_empty_200_body_is_an_empty_page() {
    // Quirk 1/8: a 200 with an empty body (what the API sends without `usenewsearch`) or
    // `null` reads as no rows, not a decode error.
    let (server, client, _) = setup().await;
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .mount(&server)
        .await;
    let s = utc("2026-05-14T00:00:00Z");
    assert!(client
        .audit()
        .search(s, s)
        .send()
        .await
        .unwrap()
        .items
        .is_empty());
    let rows: Vec<_> = client
        .audit()
        .search(s, s)
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert!(rows.is_empty());
}

#[tokio::test]
async fn get_by_id_with_a_source_table() {
    let (server, client, _) = setup().await;
    let row = fixture("action_log_rows.json")[0].clone();
    Mock::given(method("GET"))
        .and(path(GET))
        .and(auth())
        .and(query_param(
            "eActionLogId",
            "6f1c2d3e-4b5a-4c7d-9e8f-0a1b2c3d4e5f",
        ))
        .and(query_param("sourceTableId", "2"))
        .and(query_param("getAllParents", "true"))
        .respond_with(json(row))
        .expect(1)
        .mount(&server)
        .await;
    let got = client
        .audit()
        .get("6f1c2d3e-4b5a-4c7d-9e8f-0a1b2c3d4e5f")
        .source_table(SourceTable::DenyActionLog)
        .all_parents(true)
        .send()
        .await
        .unwrap();
    assert_eq!(got.hostname.as_deref(), Some("WS-FRONTDESK-02"));
}

#[tokio::test]
async fn get_by_id_reads_a_list_answer_as_the_requested_row() {
    // The shape with the parent chain is UNCERTAIN (reference §3.1.2): a list of rows is
    // read as the row with the requested id.
    let (server, client, _) = setup().await;
    let rows = fixture("action_log_rows.json");
    let wanted = rows[1]["eActionLogId"].as_str().unwrap().to_owned();
    Mock::given(method("GET"))
        .and(path(GET))
        .and(query_param("eActionLogId", wanted.as_str()))
        .respond_with(json(rows.clone()))
        .expect(1)
        .mount(&server)
        .await;
    let got = client
        .audit()
        .get(wanted.as_str())
        .source_table(SourceTable::DenyActionLog)
        .all_parents(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.e_action_log_id.as_ref().map(|e| e.as_str()),
        Some(wanted.as_str())
    );
}

#[tokio::test]
async fn get_by_id_without_a_table_tries_none_then_1_then_2() {
    let (server, client, _) = setup().await;
    let id = "7a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
    Mock::given(method("GET"))
        .and(path(GET))
        .and(query_param("eActionLogId", id))
        .and(query_param_is_missing("sourceTableId"))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"LoggerId":"1","StatusCode":500,"Message":"A problem occurred with the request (1)"}),
        ))
        // Not retried: the next table is tried instead.
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(GET))
        .and(query_param("sourceTableId", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_string("null"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(GET))
        .and(query_param("sourceTableId", "2"))
        .respond_with(json(fixture("action_log_rows.json")[1].clone()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(GET))
        .and(query_param("sourceTableId", "3"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let got = client.audit().get(id).send().await.unwrap();
    assert_eq!(got.hostname.as_deref(), Some("WS-IMAGING-01"));
}

#[tokio::test]
async fn get_by_id_not_found_anywhere_is_not_found() {
    let (server, client, _) = setup().await;
    Mock::given(method("GET"))
        .and(path(GET))
        .respond_with(ResponseTemplate::new(200))
        .expect(5)
        .mount(&server)
        .await;
    let err = client.audit().get("abc-def").send().await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn get_by_id_refuses_blank_and_numeric_ids_before_sending() {
    // Quirk 5: the numeric actionLogId makes V2 answer 500.
    let (server, client, _) = setup().await;
    for id in ["", "   ", "81234567890"] {
        let err = client.audit().get(id).send().await.unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{id:?}: {err:?}");
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn file_history_by_hostname_and_by_computer() {
    let (server, client, _) = setup().await;
    Mock::given(method("GET"))
        .and(path(HISTORY))
        .and(auth())
        .and(query_param(
            "fullPath",
            "c:\\users\\jsmith\\downloads\\anydesk.exe",
        ))
        .and(query_param("hostname", "WS-FRONTDESK-02"))
        .and(query_param("pageNumber", "1"))
        .and(query_param("pageSize", "25"))
        .respond_with(json(fixture("action_log_rows.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(HISTORY))
        .and(query_param(
            "computerId",
            "9a8b7c6d-2222-4e5f-8a9b-0c1d2e3f4a5b",
        ))
        .and(query_param_is_missing("hostname"))
        .respond_with(json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let page = client
        .audit()
        .file_history("c:\\users\\jsmith\\downloads\\anydesk.exe")
        .hostname("WS-FRONTDESK-02")
        .page_size(25)
        .send()
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let rows: Vec<_> = client
        .audit()
        .file_history("c:\\x.exe")
        .computer("9a8b7c6d-2222-4e5f-8a9b-0c1d2e3f4a5b")
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert!(rows.is_empty());
}

#[tokio::test]
async fn file_history_without_hostname_or_computer_is_refused_before_sending() {
    // Quirk 6: the API answers 417 "Missing Parameters"; we refuse first.
    let (server, client, _) = setup().await;
    let err = client
        .audit()
        .file_history("c:\\x.exe")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::InvalidRequest(m) if m.contains("hostname")));
    let streamed: Vec<_> = futures_util::StreamExt::collect::<Vec<_>>(
        client
            .audit()
            .file_history("c:\\x.exe")
            .hostname("  ")
            .stream(),
    )
    .await;
    assert_eq!(streamed.len(), 1);
    assert!(matches!(streamed[0], Err(Error::InvalidRequest(_))));
    assert!(server.received_requests().await.unwrap().is_empty());
}

/// Reference §3.1.1 marks `sourceTableId` UNCERTAIN: one source reports HTTP 500 unless it is
/// sent. `stream()` searches without it and, on a 500, reads each source table and merges the
/// rows without repeats; the deprecated `stream_any_table` does the same.
#[tokio::test]
async fn stream_reads_per_source_table_after_a_500() {
    use wiremock::matchers::body_partial_json;

    let (server, client, _) = setup().await;
    let row =
        |id: i64| json!({"actionLogId": id, "eActionLogId": format!("e-{id}"), "actionId": 2});
    for (table, rows) in [
        (1, json!([row(1), row(2)])),
        (2, json!([row(2), row(3)])),
        (3, json!([])),
        (4, json!(null)),
    ] {
        Mock::given(method("POST"))
            .and(path(SEARCH))
            .and(body_partial_json(json!({ "sourceTableId": table })))
            .respond_with(json(rows))
            .with_priority(1)
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "StatusCode": 500, "Message": "A problem occurred with the request"
        })))
        .with_priority(10)
        .mount(&server)
        .await;

    let rows: Vec<_> = client
        .audit()
        .search(utc("2026-05-14T00:00:00Z"), utc("2026-05-14T23:59:59Z"))
        .stream()
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<i64> = rows
        .iter()
        .filter_map(|r| r.action_log_id)
        .map(|i| i.get())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
}

/// The old name still works, and a chosen source table is read alone, without the fallback.
#[tokio::test]
#[allow(deprecated)]
async fn stream_any_table_is_an_alias_and_a_chosen_table_does_not_fall_back() {
    use wiremock::matchers::body_partial_json;

    let (server, client, _) = setup().await;
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .and(body_partial_json(json!({ "sourceTableId": 2 })))
        .respond_with(ResponseTemplate::new(500))
        .expect(4)
        .mount(&server)
        .await;
    let items: Vec<_> = client
        .audit()
        .search(utc("2026-05-14T00:00:00Z"), utc("2026-05-14T23:59:59Z"))
        .source_table(SourceTable::DenyActionLog)
        .stream_any_table()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].as_ref().unwrap_err().status(), Some(500));
}

#[tokio::test]
async fn sha256_search_keeps_only_rows_of_that_file() {
    let (server, client, _) = setup().await;
    let wanted = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(json(json!([
            {"actionLogId": 1, "sha256Hash": wanted.to_uppercase()},
            {"actionLogId": 2, "sha256Hash": "ab".repeat(32)},
            {"actionLogId": 3, "sha256Hash": null, "hash": wanted},
            {"actionLogId": 4},
        ])))
        .expect(2)
        .mount(&server)
        .await;
    let search = client
        .audit()
        .search(utc("2026-05-14T00:00:00Z"), utc("2026-05-14T23:59:59Z"))
        .sha256(format!(" {} ", wanted.to_uppercase()));
    let ids = |rows: &[threatlocker_api::ActionLogRow]| -> Vec<i64> {
        rows.iter()
            .filter_map(|r| r.action_log_id.map(|i| i.get()))
            .collect()
    };
    let streamed: Vec<_> = search.clone().stream().try_collect().await.unwrap();
    assert_eq!(ids(&streamed), [1, 3]);
    let page = search.send().await.unwrap();
    assert_eq!(ids(&page.items), [1, 3]);
}

#[tokio::test]
async fn sha256_that_is_not_a_digest_is_refused_before_sending() {
    let (server, client, _) = setup().await;
    let search = client
        .audit()
        .search(utc("2026-05-14T00:00:00Z"), utc("2026-05-14T23:59:59Z"))
        .sha256("5d41402abc4b2a76b9719d911017c592");
    let err = search.clone().send().await.unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    assert!(err.to_string().contains("64 hex digits"), "{err}");
    let streamed: Vec<_> = search.stream().collect().await;
    assert!(matches!(streamed[..], [Err(Error::InvalidRequest(_))]));
    assert!(server.received_requests().await.unwrap().is_empty());
}
