//! The permit flow over HTTP: call order, exact body, organization scoping, read-back.

use serde_json::json;
use threatlocker_api::{ApprovalStatus, Error, PermitOptions, PermitScope};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::common::*;

#[tokio::test]
async fn permit_reads_everything_before_taking_ownership_and_posts_the_a4_body_once() {
    let server = MockServer::start().await;
    mount_status(&server, 1, 4).await;
    Mock::given(method("POST"))
        .and(path(TAKE_OWNERSHIP))
        .and(body_json(json!({ "approvalRequestId": REQUEST_ID })))
        .and(header("managedOrganizationId", ORG))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    mount_permit_reads(&server, "matching_tenant_and_master.json").await;
    Mock::given(method("POST"))
        .and(path(PERMIT))
        .and(header("managedOrganizationId", ORG))
        .and(header("Authorization", KEY))
        .and(body_json(expected_a4_body()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .expect(1)
        .mount(&server)
        .await;

    let outcome = permit(&server, &a4_options()).await.unwrap();
    assert!(outcome.verified);
    assert!(!outcome.recovered_after_unknown);
    assert_eq!(outcome.status_after, Some(ApprovalStatus::Approved));
    assert_eq!(outcome.response, Some(json!({"ok": true})));

    assert_eq!(
        paths_seen(&server).await,
        vec![
            format!("GET {GET_BY_ID}"),
            format!("GET {GET_DTO}"),
            format!("POST {MATCHING}"),
            format!("POST {TAKE_OWNERSHIP}"),
            format!("POST {PERMIT}"),
            format!("GET {GET_BY_ID}"),
        ]
    );
    // The matching lookup describes the file from the DTO and the request.
    let matching = &body_of(&server, MATCHING).await[0];
    assert_eq!(
        matching["path"],
        json!("c:\\users\\jsmith\\downloads\\zoominstallerfull.exe")
    );
    assert_eq!(
        matching["hash"],
        json!("a94a8fe5ccb19ba61c4c0873d391e987982fbbd3")
    );
    assert_eq!(matching["osType"], json!(1));
    assert_eq!(matching["approvalRequestId"], json!(REQUEST_ID));
}

#[tokio::test]
async fn a_200_whose_read_back_is_not_approved_is_reported_unverified() {
    let server = MockServer::start().await;
    mount_permit_flow(
        &server,
        1,
        "matching_tenant_and_master.json",
        ResponseTemplate::new(200),
        1,
    )
    .await;
    let outcome = permit(&server, &PermitOptions::default()).await.unwrap();
    assert!(!outcome.verified);
    assert_eq!(outcome.status_after, Some(ApprovalStatus::Pending));
    assert_eq!(outcome.response, None);
}

#[tokio::test]
async fn built_in_application_for_org_scope_is_permitted() {
    let server = MockServer::start().await;
    mount_permit_flow(
        &server,
        4,
        "matching_master_only.json",
        ResponseTemplate::new(200),
        1,
    )
    .await;
    let outcome = permit(
        &server,
        &PermitOptions::default().scope(PermitScope::EntireOrganization),
    )
    .await
    .unwrap();
    assert!(outcome.verified);
    let body = &body_of(&server, PERMIT).await[0];
    assert_eq!(body["policyLevel"]["toEntireOrganization"], json!(true));
    // Both name keys the server sent come back, and nothing invented is added.
    let app = body["matchingApplications"]["matchingApplication"]
        .as_object()
        .unwrap();
    assert_eq!(app["applicationName"], json!("Zoom"));
    assert_eq!(app["name"], json!("Zoom"));
    assert!(app.keys().all(|k| !k.starts_with('\u{0}')), "{app:?}");
}

#[tokio::test]
async fn server_errors_reach_the_caller_with_message_and_hint() {
    let server = MockServer::start().await;
    mount_permit_flow(
        &server,
        1,
        "matching_tenant_and_master.json",
        ResponseTemplate::new(401).set_body_json(
            json!({"LoggerId": "0HMV", "StatusCode": 401, "Message": "Missing the '' permission"}),
        ),
        1,
    )
    .await;
    let err = permit(&server, &PermitOptions::default())
        .await
        .unwrap_err();
    match &err {
        Error::Api {
            status,
            message,
            hint,
            logger_id,
            ..
        } => {
            assert_eq!(*status, 401);
            assert_eq!(message.as_deref(), Some("Missing the '' permission"));
            assert_eq!(logger_id.as_deref(), Some("0HMV"));
            assert!(
                hint.unwrap_or("").contains("entire organization"),
                "{hint:?}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.to_string().contains(KEY));
}

#[tokio::test]
async fn validation_417_keeps_its_message() {
    let server = MockServer::start().await;
    mount_permit_flow(
        &server,
        1,
        "matching_tenant_and_master.json",
        ResponseTemplate::new(417).set_body_json(json!({
            "StatusCode": 417,
            "Message": "Provided applies to ID does not associate with a known OS type"
        })),
        1,
    )
    .await;
    let err = permit(&server, &PermitOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("HTTP 417"), "{text}");
    assert!(text.contains("known OS type"), "{text}");
    assert!(text.contains("policyLevel flag false"), "{text}");
}

/// Where a tenant refuses the permit DTO to a non-owner, the flow falls back to the
/// live-verified order (take ownership, then read the DTO) instead of failing, and still posts
/// the permit exactly once.
#[tokio::test]
async fn dto_refused_before_ownership_falls_back_to_taking_ownership_first() {
    let server = MockServer::start().await;
    // Pending for every read until the permit has been posted (then approved).
    Mock::given(method("GET"))
        .and(path(GET_BY_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(approval_with_status(1)))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(GET_BY_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(approval_with_status(4)))
        .with_priority(2)
        .mount(&server)
        .await;
    // The first DTO read (before ownership) is refused; the second one succeeds.
    Mock::given(method("GET"))
        .and(path(GET_DTO))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "StatusCode": 403, "Message": "You are not assigned to this approval request"
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(GET_DTO))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("permit_dto.json")))
        .with_priority(2)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(MATCHING))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("matching_tenant_and_master.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    mount_take_ownership(&server, 1).await;
    mount_permit(&server, ResponseTemplate::new(200), 1).await;

    let outcome = permit(&server, &a4_options()).await.unwrap();
    assert!(outcome.verified);
    let seen = paths_seen(&server).await;
    let own = seen
        .iter()
        .position(|p| p.ends_with(TAKE_OWNERSHIP))
        .unwrap();
    let last_dto = seen.iter().rposition(|p| p.ends_with(GET_DTO)).unwrap();
    assert!(
        own < last_dto,
        "ownership is taken before the second DTO read: {seen:?}"
    );
    assert_eq!(seen.iter().filter(|p| p.ends_with(PERMIT)).count(), 1);
}
