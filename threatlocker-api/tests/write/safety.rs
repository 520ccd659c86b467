//! One test per safety rule of the permit flow.

use std::time::Duration;

use serde_json::json;
use threatlocker_api::{Error, PermitOptions, PermitScope};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::common::*;

#[tokio::test]
async fn already_approved_request_is_refused_without_any_write() {
    let server = MockServer::start().await;
    mount_status(&server, 4, 4).await;
    mount_take_ownership(&server, 0).await;
    Mock::given(method("POST"))
        .and(path(PERMIT))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let err = permit(&server, &PermitOptions::default())
        .await
        .unwrap_err();
    match err {
        Error::AlreadyActioned { request_id, status } => {
            assert_eq!(request_id, REQUEST_ID);
            assert_eq!(status, "Approved");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(paths_seen(&server).await, vec![format!("GET {GET_BY_ID}")]);
}

#[tokio::test]
async fn every_actioned_status_is_refused() {
    for status in [4, 10, 11, 12, 16] {
        let server = MockServer::start().await;
        mount_status(&server, status, status).await;
        let err = permit(&server, &PermitOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::AlreadyActioned { .. }),
            "{status}: {err:?}"
        );
        assert_eq!(
            paths_seen(&server).await.len(),
            1,
            "status {status}: only the read"
        );
    }
}

#[tokio::test]
async fn timeout_after_permit_then_approved_is_success_without_a_second_post() {
    let server = MockServer::start().await;
    mount_permit_flow(
        &server,
        4,
        "matching_tenant_and_master.json",
        ResponseTemplate::new(200).set_delay(Duration::from_secs(2)),
        1,
    )
    .await;
    let outcome = impatient_client(&server)
        .approvals()
        .permit(&request_id(), &PermitOptions::default())
        .await
        .unwrap();
    assert!(outcome.verified);
    assert!(outcome.recovered_after_unknown);
    let seen = paths_seen(&server).await;
    assert_eq!(seen.iter().filter(|p| p.ends_with(PERMIT)).count(), 1);
    assert_eq!(
        seen.last().unwrap(),
        &format!("GET {GET_BY_ID}"),
        "status re-read last"
    );
}

#[tokio::test]
async fn timeout_after_permit_still_pending_is_outcome_unknown_and_not_reposted() {
    let server = MockServer::start().await;
    mount_permit_flow(
        &server,
        1,
        "matching_tenant_and_master.json",
        ResponseTemplate::new(200).set_delay(Duration::from_secs(2)),
        1,
    )
    .await;
    let err = impatient_client(&server)
        .approvals()
        .permit(&request_id(), &PermitOptions::default())
        .await
        .unwrap_err();
    match &err {
        Error::OutcomeUnknown { operation, source } => {
            assert!(operation.contains(REQUEST_ID), "{operation}");
            assert!(operation.contains("Pending"), "{operation}");
            assert!(source.is_outcome_unknown());
        }
        other => panic!("unexpected {other:?}"),
    }
    let seen = paths_seen(&server).await;
    assert_eq!(
        seen.iter().filter(|p| p.ends_with(GET_BY_ID)).count(),
        2,
        "pre-check + re-read"
    );
}

#[tokio::test]
async fn server_error_after_permit_is_verified_by_rereading() {
    for (status_after, ok) in [(4, true), (1, false)] {
        let server = MockServer::start().await;
        mount_permit_flow(
            &server,
            status_after,
            "matching_tenant_and_master.json",
            ResponseTemplate::new(503).set_body_string("Service Unavailable"),
            1,
        )
        .await;
        let result = permit(&server, &PermitOptions::default()).await;
        match (ok, result) {
            (true, Ok(o)) => assert!(o.verified && o.recovered_after_unknown),
            (false, Err(Error::OutcomeUnknown { source, .. })) => {
                assert_eq!(source.status(), Some(503))
            }
            (_, other) => panic!("status {status_after}: unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn lost_answer_then_rejected_by_someone_else_is_already_actioned() {
    let server = MockServer::start().await;
    mount_permit_flow(
        &server,
        11,
        "matching_tenant_and_master.json",
        ResponseTemplate::new(500),
        1,
    )
    .await;
    let err = permit(&server, &PermitOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyActioned { .. }), "{err:?}");
}

#[tokio::test]
async fn server_saying_already_actioned_becomes_already_actioned() {
    let server = MockServer::start().await;
    mount_permit_flow(
        &server,
        1,
        "matching_tenant_and_master.json",
        ResponseTemplate::new(400).set_body_json(
            json!({"Message": "Approval Request already actioned by tech@msp.example"}),
        ),
        1,
    )
    .await;
    let err = permit(&server, &PermitOptions::default())
        .await
        .unwrap_err();
    match err {
        Error::AlreadyActioned { status, .. } => assert!(status.contains("tech@msp.example")),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn built_in_application_without_org_scope_is_refused_before_any_write() {
    let server = MockServer::start().await;
    mount_permit_flow(
        &server,
        1,
        "matching_master_only.json",
        ResponseTemplate::new(401),
        0,
    )
    .await;
    let err = permit(
        &server,
        &PermitOptions::default().scope(PermitScope::Computer),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    assert!(
        err.to_string().contains("Missing the '' permission"),
        "{err}"
    );
    // Only reads were sent: the request is not even assigned to the API user.
    assert_eq!(
        paths_seen(&server).await,
        vec![
            format!("GET {GET_BY_ID}"),
            format!("GET {GET_DTO}"),
            format!("POST {MATCHING}"),
        ]
    );
}

#[tokio::test]
async fn a_body_refusal_for_a_group_scope_on_a_built_in_also_sends_no_write() {
    let server = MockServer::start().await;
    mount_permit_flow(
        &server,
        1,
        "matching_master_only.json",
        ResponseTemplate::new(401),
        0,
    )
    .await;
    let err = permit(
        &server,
        &PermitOptions::default().scope(PermitScope::ComputerGroup(
            threatlocker_api::ComputerGroupId::from("9a8b7c6d-0000-4e5f-8a9b-0c1d2e3f4a5b"),
        )),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    assert!(err.to_string().contains("built-in"), "{err}");
}

#[tokio::test]
async fn options_that_cannot_succeed_are_refused_before_any_request() {
    let server = MockServer::start().await;
    let err = permit(
        &server,
        &PermitOptions::default()
            .application(threatlocker_api::ApplicationChoice::New(String::new())),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)));
    assert!(paths_seen(&server).await.is_empty());
}

#[tokio::test]
async fn the_api_key_never_leaks_through_write_errors_plans_or_outcomes() {
    let server = MockServer::start().await;
    // A server that echoes the Authorization header into its error body.
    mount_permit_flow(
        &server,
        1,
        "matching_tenant_and_master.json",
        ResponseTemplate::new(500).set_body_string(format!(
            "{{\"Message\":\"bad token {KEY}\",\"Authorization\":\"{KEY}\"}}"
        )),
        1,
    )
    .await;
    let c = client(&server);
    let err = c
        .approvals()
        .permit(&request_id(), &PermitOptions::default())
        .await
        .unwrap_err();
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        texts.push(s.to_string());
        texts.push(format!("{s:?}"));
        source = s.source();
    }
    let other = MockServer::start().await;
    mount_status(&other, 1, 1).await;
    mount_permit_reads(&other, "matching_tenant_and_master.json").await;
    let plan = client(&other)
        .approvals()
        .plan_permit(&request_id(), &PermitOptions::default())
        .await
        .unwrap();
    texts.push(format!("{plan:?}"));
    texts.push(plan.to_string());
    texts.push(format!("{c:?}"));
    for t in &texts {
        assert!(!t.contains(KEY), "key leaked: {t}");
    }
    assert!(texts[0].contains("unknown"), "{}", texts[0]);
}
