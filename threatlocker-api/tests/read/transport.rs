//! Transport: headers, retry, wrong instance, redirects, secrets.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use threatlocker_api::{Client, Error, RetryPolicy, TransportKind};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

const COUNT: &str = "/portalapi/ApprovalRequest/ApprovalRequestGetCount";

#[tokio::test]
async fn sends_raw_key_accept_and_organization_headers() {
    let (server, client, _) = setup().await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .and(auth())
        .and(header("accept", "application/json"))
        .and(no_org_header)
        .respond_with(json(json!(3)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .and(auth())
        .and(header(
            "managedOrganizationId",
            "3b0f5f7e-1111-4a2b-9c3d-5e6f7a8b9c0d",
        ))
        .respond_with(json(json!(5)))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(client.approvals().count(true).await.unwrap(), 3);
    let scoped = client.with_organization("3b0f5f7e-1111-4a2b-9c3d-5e6f7a8b9c0d");
    assert_eq!(scoped.approvals().count(true).await.unwrap(), 5);
}

#[tokio::test]
async fn rate_limited_read_waits_for_retry_after_then_succeeds() {
    let (server, client, sleeper) = setup().await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "7"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .respond_with(json(json!(2)))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(client.approvals().count(false).await.unwrap(), 2);
    assert_eq!(sleeper.delays(), vec![Duration::from_secs(7)]);
}

#[tokio::test]
async fn service_unavailable_storm_then_success_backs_off_with_jitter() {
    let (server, client, sleeper) = setup().await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .expect(3)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .respond_with(json(json!(9)))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(client.approvals().count(false).await.unwrap(), 9);
    let delays = sleeper.delays();
    assert_eq!(delays.len(), 3);
    // Full jitter: each wait is within [0, base * 2^(n-1)] with base 500 ms.
    for (i, d) in delays.iter().enumerate() {
        assert!(*d <= Duration::from_millis(500 << i), "delay {i} = {d:?}");
    }
}

#[tokio::test]
async fn persistent_failure_reports_retries_exhausted_with_the_last_error() {
    let (server, client, sleeper) = setup().await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .respond_with(ResponseTemplate::new(502))
        .expect(4)
        .mount(&server)
        .await;
    let err = client.approvals().count(false).await.unwrap_err();
    match &err {
        Error::RetriesExhausted { attempts, last } => {
            assert_eq!(*attempts, 4);
            assert_eq!(last.status(), Some(502));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.status(), Some(502));
    assert_eq!(sleeper.delays().len(), 3);
}

#[tokio::test]
async fn server_error_on_a_read_search_is_retried() {
    let (server, client, _) = setup().await;
    let p = "/portalapi/Computer/ComputerGetByAllParameters";
    Mock::given(method("POST"))
        .and(path(p))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"LoggerId":"0HMV","StatusCode":500,"Message":"A problem occurred with the request (0HMV)"}),
        ))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(p))
        .respond_with(json(fixture("computers.json")))
        .expect(1)
        .mount(&server)
        .await;
    let page = client.computers().list().send().await.unwrap();
    assert_eq!(page.items.len(), 2);
}

#[tokio::test]
async fn validation_error_417_is_not_retried() {
    let (server, client, sleeper) = setup().await;
    Mock::given(method("POST"))
        .and(path("/portalapi/ActionLog/ActionLogGetByParametersV2"))
        .respond_with(ResponseTemplate::new(417).set_body_json(
            json!({"LoggerId":"0HMV2K9Q1A2B3","StatusCode":417,"Message":"Invalid Date Range"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let end = utc("2026-05-14T23:59:59Z");
    let err = client.audit().search(end, end).send().await.unwrap_err();
    match &err {
        Error::Api {
            status,
            message,
            logger_id,
            hint,
            ..
        } => {
            assert_eq!(*status, 417);
            assert_eq!(message.as_deref(), Some("Invalid Date Range"));
            assert_eq!(logger_id.as_deref(), Some("0HMV2K9Q1A2B3"));
            assert!(hint.is_some());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("Invalid Date Range"));
    assert!(sleeper.delays().is_empty());
}

#[tokio::test]
async fn write_post_is_never_retried() {
    let (server, client, sleeper) = setup().await;
    Mock::given(method("POST"))
        .and(path("/portalapi/Some/SomethingInsert"))
        .and(body_json(json!({"name": "x"})))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    let err = client
        .post_json("/portalapi/Some/SomethingInsert", json!({"name": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(!matches!(err, Error::RetriesExhausted { .. }));
    assert!(err.is_outcome_unknown());
    assert!(sleeper.delays().is_empty());
}

#[tokio::test]
async fn write_whose_connection_was_refused_is_retried_because_it_was_never_sent() {
    // Bind then drop a listener to get a loopback port with nothing listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sleeper = Arc::new(RecordingSleeper::default());
    let client = Client::builder(KEY)
        .base_url(format!("http://127.0.0.1:{port}"))
        .max_requests_per_second(0.0)
        .retry(RetryPolicy::with_max_attempts(3))
        .sleeper(sleeper.clone())
        .build()
        .unwrap();
    let err = client
        .post_json("/portalapi/Some/SomethingInsert", json!({}))
        .await
        .unwrap_err();
    match &err {
        Error::RetriesExhausted { attempts, last } => {
            assert_eq!(*attempts, 3);
            assert!(matches!(
                **last,
                Error::Transport {
                    kind: TransportKind::Connect,
                    ..
                }
            ));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(sleeper.delays().len(), 2);
}

#[tokio::test]
async fn read_timeout_is_retried_then_reported() {
    let server = MockServer::start().await;
    let sleeper = Arc::new(RecordingSleeper::default());
    let client = builder(&server, sleeper.clone())
        .timeout(Duration::from_millis(150))
        .retry(RetryPolicy::with_max_attempts(2))
        .build()
        .unwrap();
    Mock::given(method("GET"))
        .and(path(COUNT))
        .respond_with(json(json!(1)).set_delay(Duration::from_secs(2)))
        .expect(2)
        .mount(&server)
        .await;
    let err = client.approvals().count(true).await.unwrap_err();
    match &err {
        Error::RetriesExhausted { attempts: 2, last } => assert!(matches!(
            **last,
            Error::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        )),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn wrong_instance_440_and_token_revoked_403_are_one_clear_error_not_retried() {
    let (server, client, _) = setup().await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .and(query_param("includeChildOrganizations", "true"))
        .respond_with(ResponseTemplate::new(440))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .and(query_param("includeChildOrganizations", "false"))
        .respond_with(ResponseTemplate::new(403).set_body_string(r#"{"error":"TOKEN_REVOKED"}"#))
        .expect(1)
        .mount(&server)
        .await;
    let e440 = client.approvals().count(true).await.unwrap_err();
    let e403 = client.approvals().count(false).await.unwrap_err();
    assert!(matches!(
        e440,
        Error::WrongInstanceOrRevokedKey { status: 440 }
    ));
    assert!(matches!(
        e403,
        Error::WrongInstanceOrRevokedKey { status: 403 }
    ));
    assert!(e440.to_string().contains("wrong instance"));
}

#[tokio::test]
async fn plain_403_is_an_api_error() {
    let (server, client, _) = setup().await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .respond_with(ResponseTemplate::new(403).set_body_string("Forbidden"))
        .expect(1)
        .mount(&server)
        .await;
    let err = client.approvals().count(true).await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 403, .. }), "{err:?}");
}

#[tokio::test]
async fn api_key_appears_in_no_debug_display_or_error_text() {
    let (server, client, _) = setup().await;
    // A (hostile or buggy) server echoing the key in its error body.
    Mock::given(method("GET"))
        .and(path(COUNT))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_string(format!(r#"{{"Message":"bad key {KEY}","echo":"{KEY}"}}"#)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/portalapi/x/Storm"))
        .respond_with(ResponseTemplate::new(503).set_body_string(format!("down; key={KEY}")))
        .expect(4)
        .mount(&server)
        .await;
    let err = client.approvals().count(true).await.unwrap_err();
    let exhausted = client
        .get_json("/portalapi/x/Storm", &[])
        .await
        .unwrap_err();
    let mut texts = vec![
        format!("{client:?}"),
        format!("{:?}", Client::builder(KEY).base_url(server.uri())),
        format!("{err}"),
        format!("{err:?}"),
        format!("{exhausted}"),
        format!("{exhausted:?}"),
        client
            .audit()
            .search(utc("2026-05-14T00:00:00Z"), utc("2026-05-14T01:00:00Z"))
            .prepare()
            .to_string(),
        format!(
            "{:?}",
            client
                .audit()
                .search(utc("2026-05-14T00:00:00Z"), utc("2026-05-14T01:00:00Z"))
        ),
    ];
    let mut source = std::error::Error::source(&exhausted);
    while let Some(s) = source {
        texts.push(format!("{s} {s:?}"));
        source = s.source();
    }
    for t in &texts {
        assert!(!t.contains(KEY), "key leaked in: {t}");
    }
    // The scrubbed body is still useful.
    assert!(format!("{err:?}").contains("[redacted]"));
    // Transport errors (no server) carry no key either.
    let dead = Client::builder(KEY)
        .base_url("http://127.0.0.1:9")
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let e = dead.approvals().count(true).await.unwrap_err();
    assert!(!format!("{e} {e:?}").contains(KEY));
}

#[tokio::test]
async fn redirect_to_another_host_is_not_followed() {
    let (server, client, _) = setup().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("Location", format!("{}/steal", elsewhere.uri()).as_str()),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&elsewhere)
        .await;
    let err = client.approvals().count(true).await.unwrap_err();
    assert_eq!(err.status(), Some(302));
}

#[test]
fn plain_http_refused_except_loopback() {
    let err = Client::builder(KEY)
        .base_url("http://portalapi.g.threatlocker.com")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)));
    assert!(Client::builder(KEY)
        .base_url("http://127.0.0.1:1")
        .build()
        .is_ok());
    assert!(matches!(
        Client::builder("Bearer ")
            .instance("g")
            .build()
            .unwrap_err(),
        Error::Config(_)
    ));
    let c = Client::builder(KEY).instance("h").build().unwrap();
    assert_eq!(
        c.base_url().as_str(),
        "https://portalapi.h.threatlocker.com/"
    );
}
