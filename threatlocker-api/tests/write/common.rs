//! Shared helpers: fixtures, a client for a mock server, the usual permit-flow routes.

use std::time::Duration;

use serde_json::{json, Value};
use threatlocker_api::{AdminNotes, ApprovalRequestId, Client, PermitOptions, PermitOutcome};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const REQUEST_ID: &str = "c3d4e5f6-a7b8-4901-8cde-f1234567890a";
pub const ORG: &str = "3b0f5f7e-1111-4a2b-9c3d-5e6f7a8b9c0d";

pub const GET_BY_ID: &str = "/portalapi/ApprovalRequest/ApprovalRequestGetById";
pub const TAKE_OWNERSHIP: &str = "/portalapi/ApprovalRequest/ApprovalRequestUpdateForTakeOwnership";
pub const GET_DTO: &str = "/portalapi/ApprovalRequest/ApprovalRequestGetPermitApplicationById";
pub const MATCHING: &str = "/portalapi/Application/ApplicationGetMatchingList";
pub const PERMIT: &str = "/portalapi/ApprovalRequest/ApprovalRequestPermitApplication";

pub fn fixture(name: &str) -> Value {
    let p = format!("{}/tests/fixtures/write/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{p}: {e}"))
}

pub fn client(server: &MockServer) -> Client {
    Client::builder(KEY)
        .base_url(server.uri())
        .max_requests_per_second(0.0)
        .build()
        .unwrap()
}

/// A client whose requests time out quickly (for the lost-answer tests).
pub fn impatient_client(server: &MockServer) -> Client {
    Client::builder(KEY)
        .base_url(server.uri())
        .max_requests_per_second(0.0)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
}

/// Permits the usual request through a client for `server`.
pub async fn permit(
    server: &MockServer,
    opts: &PermitOptions,
) -> threatlocker_api::Result<PermitOutcome> {
    client(server).approvals().permit(&request_id(), opts).await
}

pub fn request_id() -> ApprovalRequestId {
    ApprovalRequestId::from(REQUEST_ID)
}

pub fn approval_with_status(status: i32) -> Value {
    let mut v = fixture("approval_pending.json");
    v["statusId"] = json!(status);
    v
}

/// The options that turn `permit_dto.json` into the reference's A.4 body.
pub fn a4_options() -> PermitOptions {
    PermitOptions::default().admin_notes(
        AdminNotes::default()
            .ticket("PSA-48213")
            .comments("Verified vendor installer"),
    )
}

/// The expected permit body: Appendix A.4 verbatim, plus the DTO's other keys round-tripped
/// unchanged (nulls included) and the admin notes.
pub fn expected_a4_body() -> Value {
    let mut v = fixture("permit_a4.json");
    let m = v.as_object_mut().unwrap();
    for (k, val) in [
        ("actionLog", Value::Null),
        ("isFromActionLog", json!(false)),
        ("edgeStoreUrl", Value::Null),
        ("ringfencingOptions", Value::Null),
        ("isRingfenced", json!(false)),
        ("systemAudits", Value::Null),
        ("responseSubject", Value::Null),
        ("responseReason", Value::Null),
        ("notifyOnResponse", json!(false)),
        (
            "adminNotes",
            json!({"ticket": "PSA-48213", "requestorEmail": null, "comments": "Verified vendor installer"}),
        ),
    ] {
        m.insert(k.into(), val);
    }
    v
}

/// GetById answering `first` once, then `then` for every later read.
pub async fn mount_status(server: &MockServer, first: i32, then: i32) {
    Mock::given(method("GET"))
        .and(path(GET_BY_ID))
        .and(query_param("approvalRequestId", REQUEST_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(approval_with_status(first)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(GET_BY_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(approval_with_status(then)))
        .with_priority(2)
        .mount(server)
        .await;
}

/// The reads of the permit flow (DTO, matching list).
pub async fn mount_permit_reads(server: &MockServer, matching_fixture: &str) {
    Mock::given(method("GET"))
        .and(path(GET_DTO))
        .and(query_param("approvalRequestId", REQUEST_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("permit_dto.json")))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(MATCHING))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(matching_fixture)))
        .expect(1)
        .mount(server)
        .await;
}

/// The permit POST answering `response`, expected exactly `times` times (never a second POST;
/// 0: it must not be sent).
pub async fn mount_permit(server: &MockServer, response: ResponseTemplate, times: u64) {
    Mock::given(method("POST"))
        .and(path(PERMIT))
        .respond_with(response)
        .expect(times)
        .mount(server)
        .await;
}

/// A whole permit flow: the request pending on the first read and `then` on every later one,
/// its DTO and the `matching` list (each read once), and the two writes (take ownership, the
/// permit answering `permit`) each expected `writes` times (0: no write may be sent).
pub async fn mount_permit_flow(
    server: &MockServer,
    then: i32,
    matching: &str,
    permit: ResponseTemplate,
    writes: u64,
) {
    mount_status(server, 1, then).await;
    mount_take_ownership(server, writes).await;
    mount_permit_reads(server, matching).await;
    mount_permit(server, permit, writes).await;
}

pub async fn mount_take_ownership(server: &MockServer, times: u64) {
    Mock::given(method("POST"))
        .and(path(TAKE_OWNERSHIP))
        .respond_with(ResponseTemplate::new(200))
        .expect(times)
        .mount(server)
        .await;
}

/// Paths of every request the server saw, in order.
pub async fn paths_seen(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect()
}

/// Body of the n-th request to `p`.
pub async fn body_of(server: &MockServer, p: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == p)
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}
