//! Approval requests: search (quirks 4, 7), count, get, permit DTO.

use futures_util::TryStreamExt;
use serde_json::json;
use threatlocker_api::{ApprovalRequestId, ApprovalStatus, Error, RequestType};
use wiremock::matchers::{body_json, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

const SEARCH: &str = "/portalapi/ApprovalRequest/ApprovalRequestGetByParameters";

#[tokio::test]
async fn search_sends_the_documented_body_and_decodes_the_reason() {
    let (server, client, _) = setup().await;
    // Reference A.2: pending, newest first, all child orgs.
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .and(auth())
        .and(no_org_header)
        .and(body_json(json!({
            "statusId": 1,
            "searchText": "",
            "orderBy": "datetime",
            "isAscending": false,
            "showChildOrganizations": true,
            "showCurrentTierOnly": false,
            "requestTypeId": 0,
            "pageNumber": 1,
            "pageSize": 50
        })))
        .respond_with(json(fixture("approval_requests.json")))
        .expect(1)
        .mount(&server)
        .await;
    let page = client
        .approvals()
        .search(ApprovalStatus::Pending)
        .child_organizations(true)
        .page_size(50)
        .send()
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let r = &page.items[0];
    // Quirk 7: base64 reason decoded into its own field, raw kept.
    assert_eq!(
        r.requestor_reason_decoded.as_deref(),
        Some("Need this for the patient call")
    );
    assert_eq!(
        r.requestor_reason.as_deref(),
        Some("TmVlZCB0aGlzIGZvciB0aGUgcGF0aWVudCBjYWxs")
    );
    assert_eq!(r.status_id, Some(ApprovalStatus::Pending));
    assert_eq!(r.instance().as_deref(), Some("h"));
    assert!(r.extra.contains_key("approvalRequestTimerDto"));
    assert_eq!(page.items[1].requestor_reason_decoded, None);
}

#[tokio::test]
async fn search_with_every_option_streams_decoded_rows() {
    let (server, client, _) = setup().await;
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .and(body_json(json!({
            "statusId": 4,
            "searchText": "*zoom*",
            "orderBy": "username",
            "isAscending": true,
            "showChildOrganizations": false,
            "showCurrentTierOnly": false,
            "requestTypeId": 2,
            "pageNumber": 1,
            "pageSize": 10
        })))
        .respond_with(json(fixture("approval_requests.json")))
        .expect(1)
        .mount(&server)
        .await;
    let rows: Vec<_> = client
        .approvals()
        .search(ApprovalStatus::Approved)
        .search_text("*zoom*")
        .order_by("username")
        .ascending(true)
        .request_type(RequestType::Elevation)
        .page_size(10)
        .stream()
        .try_collect()
        .await
        .unwrap();
    // Short page (2 < 10): one request only.
    assert_eq!(rows.len(), 2);
    assert!(rows[0].requestor_reason_decoded.is_some());
}

#[tokio::test]
async fn missing_status_500_body_is_parsed_in_pascal_case() {
    // Quirk 4 is prevented by the type system (status is required); the 500 the API sends
    // for a bad status is still reported with its message.
    let (server, client, _) = setup().await;
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"LoggerId":"L1","StatusCode":500,"Message":"A problem occurred with the request (L1)"}),
        ))
        .expect(4)
        .mount(&server)
        .await;
    let err = client
        .approvals()
        .search(ApprovalStatus::Other(0))
        .send()
        .await
        .unwrap_err();
    let Error::RetriesExhausted { last, .. } = err else {
        panic!("unexpected {err:?}")
    };
    assert!(last.to_string().contains("A problem occurred"));
    assert!(last.to_string().contains("statusId"), "{last}");
}

#[tokio::test]
async fn count_reads_a_bare_integer() {
    let (server, client, _) = setup().await;
    Mock::given(method("GET"))
        .and(path("/portalapi/ApprovalRequest/ApprovalRequestGetCount"))
        .and(auth())
        .and(query_param("includeChildOrganizations", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_string("7"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/portalapi/ApprovalRequest/ApprovalRequestGetCount"))
        .and(query_param("includeChildOrganizations", "false"))
        .respond_with(ResponseTemplate::new(200).set_body_string("\"not a number\""))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(client.approvals().count(true).await.unwrap(), 7);
    let err = client.approvals().count(false).await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn get_by_id_decodes_fields() {
    let (server, client, _) = setup().await;
    let id = "c3d4e5f6-a7b8-4901-8cde-f1234567890a";
    Mock::given(method("GET"))
        .and(path("/portalapi/ApprovalRequest/ApprovalRequestGetById"))
        .and(auth())
        .and(query_param("approvalRequestId", id))
        .respond_with(json(fixture("approval_requests.json")[0].clone()))
        .expect(1)
        .mount(&server)
        .await;
    let r = client
        .approvals()
        .get(&ApprovalRequestId::new(id))
        .await
        .unwrap();
    assert_eq!(r.approval_request_id.as_ref().map(|i| i.as_str()), Some(id));
    // Quirk 16: the action description in `json` uses the Swagger's odd casing.
    let action = r.action_details().unwrap();
    assert_eq!(
        action.full_path.as_deref(),
        Some("c:\\users\\jsmith\\downloads\\zoominstallerfull.exe")
    );
    assert_eq!(action.serial_number.as_deref(), Some("5CG1234XYZ"));
    assert_eq!(
        action.certs[0].subject.as_deref(),
        Some("CN=Zoom Video Communications, Inc.")
    );
    assert_eq!(
        r.requestor_reason_decoded.as_deref(),
        Some("Need this for the patient call")
    );
    Mock::given(method("GET"))
        .and(path("/portalapi/ApprovalRequest/ApprovalRequestGetById"))
        .and(query_param("approvalRequestId", "gone"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let err = client
        .approvals()
        .get(&ApprovalRequestId::new("gone"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let blank = client.approvals().get(&ApprovalRequestId::new(" ")).await;
    assert!(matches!(blank, Err(Error::InvalidRequest(_))));
}

#[tokio::test]
async fn permit_application_dto_is_kept_as_raw_json_with_nulls() {
    let (server, client, _) = setup().await;
    let id = "c3d4e5f6-a7b8-4901-8cde-f1234567890a";
    let dto = json!({
        "approvalRequest": {"approvalRequestId": id, "json": "{\"fullPath\":\"c:\\\\x.exe\"}"},
        "fileDetails": {"fullPath": "c:\\x.exe", "requestorReason": "Need this for the patient call"},
        "matchingApplications": {"hasMatchingApplication": false, "existingApplication": null},
        "policyExpirationDate": null,
        "someFutureKey": [1, 2]
    });
    Mock::given(method("GET"))
        .and(path(
            "/portalapi/ApprovalRequest/ApprovalRequestGetPermitApplicationById",
        ))
        .and(query_param("approvalRequestId", id))
        .respond_with(json(dto.clone()))
        .expect(1)
        .mount(&server)
        .await;
    let got = client
        .approvals()
        .permit_application_dto(&ApprovalRequestId::new(id))
        .await
        .unwrap();
    assert_eq!(got, dto);
    assert!(got["policyExpirationDate"].is_null());
    assert!(got
        .as_object()
        .unwrap()
        .contains_key("policyExpirationDate"));
}
