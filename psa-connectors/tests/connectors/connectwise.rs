//! ConnectWise PSA against wiremock: exact requests, dedupe, throttling, reconciliation.

use psa_connectors::connectwise::{dedupe_conditions, Config, ConnectWise};
use psa_connectors::{Error, Note, Priority, PriorityMap, Reference, Ticket, TicketSink};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::common::{fast_retry, HOSTILE};

const BASE: &str = "/v4_6_release/apis/3.0";
// base64("acme+pubkey:s3cr3t-private")
fn basic() -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("acme+pubkey:s3cr3t-private")
    )
}

fn config(server: &MockServer) -> Config {
    let mut c = Config::new(
        server.uri(),
        "acme",
        "pubkey",
        "s3cr3t-private".to_owned().into(),
        "client-guid-1234".to_owned().into(),
    );
    c.retry = fast_retry();
    c.default_company = Some(Reference::Id(250));
    c.default_board = Some(Reference::Name("Help Desk".into()));
    c.priorities = Some(PriorityMap {
        low: Reference::Id(4),
        medium: Reference::Id(3),
        high: Reference::Id(2),
        critical: Reference::Name("Priority 1 - Emergency".into()),
    });
    c
}

/// A mock for `verb {BASE}/rel`.
fn api(verb: &str, rel: &str) -> wiremock::MockBuilder {
    Mock::given(method(verb)).and(path(format!("{BASE}/{rel}")))
}

fn search(external_ref: &str) -> wiremock::MockBuilder {
    api("GET", "service/tickets")
        .and(query_param("conditions", dedupe_conditions(external_ref)))
        .and(query_param("pageSize", "1"))
        .and(header("authorization", basic().as_str()))
        .and(header("clientId", "client-guid-1234"))
        .and(header(
            "accept",
            "application/vnd.connectwise.com+json; version=2019.1",
        ))
}

#[test]
fn dedupe_conditions_escape_quotes_backslashes_and_brackets() {
    assert_eq!(
        dedupe_conditions("tl:req:1"),
        r#"externalXRef="tl:req:1" and closedFlag=false"#
    );
    assert_eq!(
        dedupe_conditions(r#"a" or summary contains "x\[y"#),
        r#"externalXRef="a\" or summary contains \"x\\[[]y" and closedFlag=false"#
    );
}

#[tokio::test]
async fn open_ticket_found_adds_internal_note_and_never_creates() {
    let server = MockServer::start().await;
    search("tl:req:42")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([{"id": 7001, "summary": "x", "closedFlag": false}])),
        )
        .expect(1)
        .mount(&server)
        .await;
    api("POST", "service/tickets/7001/notes")
        .and(header("authorization", basic().as_str()))
        .and(header("clientId", "client-guid-1234"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "text": "Blocked again at 10:02",
            "detailDescriptionFlag": false,
            "internalAnalysisFlag": true,
            "resolutionFlag": false,
            "internalFlag": true,
            "externalFlag": false,
            "processNotifications": false
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .expect(1)
        .mount(&server)
        .await;
    api("POST", "service/tickets")
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;

    let cw = ConnectWise::new(config(&server)).unwrap();
    let ticket = Ticket::new("tl:req:42", "AnyDesk blocked", "details");
    let outcome = cw
        .open_or_update(&ticket, &Note::internal("Blocked again at 10:02"))
        .await
        .unwrap();
    assert!(!outcome.is_created());
    assert_eq!(outcome.ticket().id, "7001");
}

#[tokio::test]
async fn no_open_ticket_creates_one_with_exact_body() {
    let server = MockServer::start().await;
    search("tl:req:43")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let long_summary = "é".repeat(150);
    api("POST", "service/tickets")
        .and(header("authorization", basic().as_str()))
        .and(header("clientId", "client-guid-1234"))
        .and(body_json(json!({
            "summary": "é".repeat(100),
            "initialDescription": "User CONTOSO\\jdoe requested AnyDesk.exe",
            "initialInternalAnalysis": "Approval link: https://portal.example/a/1",
            "externalXRef": "tl:req:43",
            "processNotifications": false,
            "board": {"id": 12},
            "company": {"identifier": "CONTOSO"},
            "type": {"name": "Security"},
            "priority": {"name": "Priority 1 - Emergency"}
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 9001, "summary": "x"})))
        .expect(1)
        .mount(&server)
        .await;

    let cw = ConnectWise::new(config(&server)).unwrap();
    let ticket = Ticket::new(
        "tl:req:43",
        long_summary,
        "User CONTOSO\\jdoe requested AnyDesk.exe",
    )
    .board("12")
    .company("CONTOSO")
    .ticket_type("Security")
    .priority(Priority::Critical)
    .internal_note("Approval link: https://portal.example/a/1");
    let outcome = cw
        .open_or_update(&ticket, &Note::internal("unused"))
        .await
        .unwrap();
    assert!(outcome.is_created());
    assert_eq!(outcome.ticket().id, "9001");
}

#[tokio::test]
async fn defaults_apply_when_ticket_names_no_board_or_company() {
    let server = MockServer::start().await;
    let cw = ConnectWise::new(config(&server)).unwrap();
    let body = cw
        .ticket_body(&Ticket::new("k", "s\r\nInjected: header", "d").priority(Priority::Low))
        .unwrap();
    assert_eq!(body["board"], json!({"name": "Help Desk"}));
    assert_eq!(body["company"], json!({"id": 250}));
    assert_eq!(body["priority"], json!({"id": 4}));
    assert_eq!(body["summary"], json!("s Injected: header"));
}

#[tokio::test]
async fn hostile_external_ref_cannot_inject_into_conditions() {
    let server = MockServer::start().await;
    let hostile = r#"x" or closedFlag=true or id>"0"#;
    api("GET", "service/tickets")
        .and(query_param(
            "conditions",
            r#"externalXRef="x\" or closedFlag=true or id>\"0" and closedFlag=false"#,
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let cw = ConnectWise::new(config(&server)).unwrap();
    assert_eq!(cw.find_open(hostile).await.unwrap(), None);
    // The raw query string carries no unescaped delimiter either.
    let requests = server.received_requests().await.unwrap();
    let query = requests[0].url.query().unwrap().to_owned();
    assert!(!query.contains('"') && !query.contains(' ') && !query.contains('*'));
    assert!(
        query.contains("%5C%22"),
        "quote must arrive escaped: {query}"
    );
}

#[tokio::test]
async fn throttled_search_waits_for_retry_after_then_succeeds() {
    let server = MockServer::start().await;
    search("tl:req:44")
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_json(json!({"error": "ConnectWiseAPI", "message": "Too many requests."})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    search("tl:req:44")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 5}])))
        .expect(1)
        .mount(&server)
        .await;
    let cw = ConnectWise::new(config(&server)).unwrap();
    let started = std::time::Instant::now();
    let found = cw.find_open("tl:req:44").await.unwrap();
    assert_eq!(found.unwrap().id, "5");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
}

#[tokio::test]
async fn long_retry_after_gives_up_with_rate_limited() {
    let server = MockServer::start().await;
    search("tl:req:45")
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .expect(1)
        .mount(&server)
        .await;
    let cw = ConnectWise::new(config(&server)).unwrap();
    let err = cw.find_open("tl:req:45").await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 3600));
    assert!(err.is_retryable());
}

#[tokio::test]
async fn create_with_unknown_outcome_searches_before_retrying() {
    let server = MockServer::start().await;
    // The create fails with a 502 that may hide a created ticket ...
    api("POST", "service/tickets")
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&server)
        .await;
    // ... and the search finds it, so no second POST is sent.
    search("tl:req:46")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 77}])))
        .expect(1)
        .mount(&server)
        .await;
    let cw = ConnectWise::new(config(&server)).unwrap();
    let created = cw
        .create(&Ticket::new("tl:req:46", "s", "d"))
        .await
        .unwrap();
    assert_eq!(created.id, "77");
}

#[tokio::test]
async fn create_with_unknown_outcome_retries_when_search_finds_nothing() {
    let server = MockServer::start().await;
    api("POST", "service/tickets")
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    api("POST", "service/tickets")
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 78})))
        .expect(1)
        .mount(&server)
        .await;
    search("tl:req:47")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let cw = ConnectWise::new(config(&server)).unwrap();
    let created = cw
        .create(&Ticket::new("tl:req:47", "s", "d"))
        .await
        .unwrap();
    assert_eq!(created.id, "78");
}

#[tokio::test]
async fn bad_request_on_create_is_not_retried() {
    let server = MockServer::start().await;
    api("POST", "service/tickets")
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": "InvalidObject", "message": "ticket object is invalid",
            "errors": [{"code": "NotFound", "field": "status/id"}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let cw = ConnectWise::new(config(&server)).unwrap();
    let err = cw.create(&Ticket::new("k", "s", "d")).await.unwrap_err();
    assert!(
        matches!(err, Error::Api { status: 400, ref message, .. } if message == "ticket object is invalid")
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn unauthorized_is_an_auth_error_without_secrets() {
    let server = MockServer::start().await;
    api("GET", "system/info")
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"code": "Unauthorized", "message": "bad key"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let cw = ConnectWise::new(config(&server)).unwrap();
    let err = cw.check().await.unwrap_err();
    assert!(matches!(err, Error::Auth { status: 401, .. }));
    let text = format!("{err} {err:?} {cw:?}");
    assert!(!text.contains("s3cr3t-private") && !text.contains("client-guid-1234"));
    assert!(!text.contains(&basic()[6..]));
}

#[tokio::test]
async fn codebase_is_discovered_from_companyinfo() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/login/companyinfo/acme"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "CompanyName": "Acme", "Codebase": "v2024_1/", "VersionCode": "v2024.1",
            "VersionNumber": "v4.6.12345", "CompanyID": "acme", "IsCloud": true
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2024_1/apis/3.0/system/info"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"version": "v2024.1"})))
        .expect(1)
        .mount(&server)
        .await;
    let cw = ConnectWise::discover(config(&server)).await.unwrap();
    assert!(cw.base_url().ends_with("/v2024_1/apis/3.0/"));
    cw.check().await.unwrap();
}

#[tokio::test]
async fn overlong_external_ref_is_rejected_not_truncated() {
    let server = MockServer::start().await;
    let cw = ConnectWise::new(config(&server)).unwrap();
    let err = cw.find_open(&"x".repeat(101)).await.unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidInput {
            field: "ticket.external_ref",
            ..
        }
    ));
    let err = cw
        .create(&Ticket::new(HOSTILE.repeat(3), "s", "d"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }));
}

#[test]
fn plain_http_is_refused_for_remote_hosts() {
    let c = Config::new(
        "http://psa.example.com",
        "acme",
        "pub",
        "k".to_owned().into(),
        "c".to_owned().into(),
    );
    let err = ConnectWise::new(c).unwrap_err();
    assert!(matches!(err, Error::Config { ref key, .. } if key == "connectwise.site"));
}

#[test]
fn config_deserializes_with_unknown_fields_rejected() {
    let ok: Config = serde_json::from_value(json!({
        "site": "api-na.myconnectwise.net", "company_id": "acme", "public_key": "p",
        "private_key": "s3cr3t-private", "client_id": "cid", "default_board": 12,
        "priorities": {"low": 4, "medium": 3, "high": 2, "critical": "Priority 1"}
    }))
    .unwrap();
    assert_eq!(ok.default_board, Some(Reference::Id(12)));
    assert!(!format!("{ok:?}").contains("s3cr3t-private"));
    let err = serde_json::from_value::<Config>(json!({
        "site": "x", "company_id": "a", "public_key": "p", "private_key": "s", "client_id": "c",
        "privat_key": "typo"
    }))
    .unwrap_err();
    assert!(err.to_string().contains("privat_key"));
}

#[tokio::test]
async fn a_refused_note_falls_back_to_a_new_ticket_so_the_alert_is_not_lost() {
    let server = MockServer::start().await;
    search("tl:req:48")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 7002}])))
        .expect(1)
        .mount(&server)
        .await;
    api("POST", "service/tickets/7002/notes")
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": "InvalidObject", "message": "ticket is closed"
        })))
        .expect(1)
        .mount(&server)
        .await;
    api("POST", "service/tickets")
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 7003})))
        .expect(1)
        .mount(&server)
        .await;
    let cw = ConnectWise::new(config(&server)).unwrap();
    let outcome = cw
        .open_or_update(&Ticket::new("tl:req:48", "s", "d"), &Note::internal("n"))
        .await
        .unwrap();
    assert!(outcome.is_created());
    assert_eq!(outcome.ticket().id, "7003");
}

#[tokio::test]
async fn a_transient_note_failure_is_returned_without_creating() {
    let server = MockServer::start().await;
    search("tl:req:49")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 7004}])))
        .mount(&server)
        .await;
    api("POST", "service/tickets/7004/notes")
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    api("POST", "service/tickets")
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    let cw = ConnectWise::new(config(&server)).unwrap();
    let err = cw
        .open_or_update(&Ticket::new("tl:req:49", "s", "d"), &Note::internal("n"))
        .await
        .unwrap_err();
    assert!(err.is_retryable());
}
