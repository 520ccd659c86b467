//! Reject and ignore: exact bodies (Appendix A.5), bulk, and lost answers.

use std::time::Duration;

use serde_json::json;
use threatlocker_api::{ApprovalRequestId, Error, IgnoreOptions, RejectOptions};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::common::*;

const REJECT: &str = "/portalapi/ApprovalRequest/ApprovalRequestUpdateForReject";
const IGNORE: &str = "/portalapi/ApprovalRequest/ApprovalRequestUpdateForIgnore";

fn a5_options() -> RejectOptions {
    RejectOptions::new("Remote-access tools are not permitted on front-desk machines").respond(
        "Your software request",
        "Please contact the help desk if this is business-critical.",
    )
}

#[tokio::test]
async fn reject_sends_the_appendix_a5_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(REJECT))
        .and(body_json(json!({
            "approvalRequestDtos": [ { "approvalRequestId": REQUEST_ID } ],
            "type": "reject",
            "rejectReason": "Remote-access tools are not permitted on front-desk machines",
            "responseSubject": "Your software request",
            "responseReason": "Please contact the help desk if this is business-critical.",
            "notifyOnResponse": true
        })))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .approvals()
        .reject(&[request_id()], &a5_options())
        .await
        .unwrap();
}

#[tokio::test]
async fn reject_is_bulk_in_one_call() {
    let server = MockServer::start().await;
    let other = "d4e5f6a7-b8c9-4012-9def-0123456789ab";
    Mock::given(method("POST"))
        .and(path(REJECT))
        .and(body_json(json!({
            "approvalRequestDtos": [ { "approvalRequestId": REQUEST_ID }, { "approvalRequestId": other } ],
            "type": "reject",
            "rejectReason": "duplicate",
            "responseSubject": null,
            "responseReason": null,
            "notifyOnResponse": false
        })))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .approvals()
        .reject(
            &[request_id(), ApprovalRequestId::from(other)],
            &RejectOptions::new("duplicate"),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn ignore_sends_its_own_field_names() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(IGNORE))
        .and(body_json(json!({
            "approvalRequestDtos": [ { "approvalRequestId": REQUEST_ID } ],
            "ignoreSubject": "Duplicate request",
            "ignoreReason": "Already handled in PSA-48213",
            "notifyOnIgnore": true
        })))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .approvals()
        .ignore(
            &[request_id()],
            &IgnoreOptions::new("Already handled in PSA-48213")
                .subject("Duplicate request")
                .notify(true),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn empty_id_list_is_refused() {
    let server = MockServer::start().await;
    let err = client(&server)
        .approvals()
        .reject(&[], &RejectOptions::new("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)));
    assert!(paths_seen(&server).await.is_empty());
}

#[tokio::test]
async fn lost_reject_answer_is_settled_by_rereading_and_never_resent() {
    for (status_after, settled) in [(11, true), (10, true), (1, false)] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(REJECT))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
            .expect(1)
            .mount(&server)
            .await;
        mount_status(&server, status_after, status_after).await;
        let result = impatient_client(&server)
            .approvals()
            .reject(&[request_id()], &RejectOptions::new("no"))
            .await;
        match (settled, result) {
            (true, Ok(())) => {}
            (false, Err(Error::OutcomeUnknown { operation, .. })) => {
                assert!(operation.contains("Pending"), "{operation}")
            }
            (_, other) => panic!("status {status_after}: unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn take_ownership_posts_the_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TAKE_OWNERSHIP))
        .and(body_json(json!({ "approvalRequestId": REQUEST_ID })))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .approvals()
        .take_ownership(&request_id())
        .await
        .unwrap();
}
