//! Autotask against wiremock: zone discovery, auth headers, query dedupe, notes, budgets.

use psa_connectors::autotask::{Autotask, Config};
use psa_connectors::{Error, Note, Priority, Ticket, TicketSink};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::common::fast_retry;

/// A reference that tries to close the filter object and add its own condition.
const INJECTION: &str = r#"a"},{"op":"exist","field":"id"#;

const ZONE: &str = "/zone3/atservicesrest/v1.0";

fn config(server: &MockServer) -> Config {
    let mut c = Config::new(
        "api@contoso.example",
        "at-s3cret".to_owned().into(),
        "TRACKINGID0123456789ABCDEFG".to_owned().into(),
    );
    c.discovery_url = format!("{}/atservicesrest/", server.uri());
    c.default_company_id = Some(175);
    c.default_queue_id = Some(29682833);
    c.retry = fast_retry();
    c
}

async fn mount_zone(server: &MockServer, times: u64) {
    Mock::given(method("GET"))
        .and(path("/atservicesrest/v1.0/zoneInformation"))
        .and(query_param("user", "api@contoso.example"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "zoneName": "America East 3",
            "url": format!("{}/zone3/atservicesrest/", server.uri()),
            "webUrl": "https://ww3.autotask.net/",
            "ci": 12345
        })))
        .expect(times)
        .mount(server)
        .await;
}

fn authed(m: &str, p: &str) -> wiremock::MockBuilder {
    Mock::given(method(m))
        .and(path(format!("{ZONE}/{p}")))
        .and(header("ApiIntegrationCode", "TRACKINGID0123456789ABCDEFG"))
        .and(header("UserName", "api@contoso.example"))
        .and(header("Secret", "at-s3cret"))
}

fn query(external_ref: &str) -> serde_json::Value {
    json!({
        "filter": [
            {"op": "eq", "field": "externalID", "value": external_ref},
            {"op": "noteq", "field": "status", "value": 5}
        ],
        "IncludeFields": ["id", "ticketNumber", "status", "title"],
        "MaxRecords": 2
    })
}

#[tokio::test]
async fn discovers_the_zone_once_then_searches_and_creates() {
    let server = MockServer::start().await;
    mount_zone(&server, 1).await;
    authed("POST", "Tickets/query")
        .and(body_json(query("tl:req:9")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [], "pageDetails": {"count": 0, "requestCount": 2, "prevPageUrl": null, "nextPageUrl": null}
        })))
        .expect(1)
        .mount(&server)
        .await;
    authed("POST", "Tickets")
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "companyID": 180,
            "title": "AnyDesk.exe blocked on CONTOSO-WS07",
            "description": "User CONTOSO\\jdoe requested …",
            "status": 1,
            "priority": 1,
            "externalID": "tl:req:9",
            "queueID": 29682833
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"itemId": 555})))
        .expect(1)
        .mount(&server)
        .await;
    let at = Autotask::new(config(&server)).unwrap();
    let ticket = Ticket::new(
        "tl:req:9",
        "AnyDesk.exe blocked on CONTOSO-WS07",
        "User CONTOSO\\jdoe requested …",
    )
    .company("180")
    .priority(Priority::High);
    let outcome = at
        .open_or_update(&ticket, &Note::internal("x"))
        .await
        .unwrap();
    assert!(outcome.is_created());
    assert_eq!(outcome.ticket().id, "555");
    assert!(at
        .base_url()
        .await
        .unwrap()
        .as_str()
        .ends_with("/zone3/atservicesrest/v1.0/"));
}

#[tokio::test]
async fn open_ticket_found_gets_a_note_and_no_create() {
    let server = MockServer::start().await;
    mount_zone(&server, 1).await;
    authed("POST", "Tickets/query")
        .and(body_json(query(INJECTION)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [{"id": 8123, "ticketNumber": "T20250314.0042", "status": 1, "title": "t"}],
            "pageDetails": {"count": 1}
        })))
        .expect(1)
        .mount(&server)
        .await;
    authed("POST", "Tickets/8123/Notes")
        .and(body_json(json!({
            "ticketID": 8123,
            "title": "Automation update",
            "description": "Blocked again",
            "noteType": 1,
            "publish": 1
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"itemId": 1})))
        .expect(1)
        .mount(&server)
        .await;
    authed("POST", "Tickets")
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let at = Autotask::new(config(&server)).unwrap();
    // The hostile reference travels as a JSON string value: it cannot alter the filter.
    let outcome = at
        .open_or_update(
            &Ticket::new(INJECTION, "s", "d"),
            &Note::internal("Blocked again"),
        )
        .await
        .unwrap();
    assert!(!outcome.is_created());
    assert_eq!(outcome.ticket().id, "8123");
    assert_eq!(outcome.ticket().number.as_deref(), Some("T20250314.0042"));
}

#[tokio::test]
async fn a_401_re_resolves_the_zone_once() {
    let server = MockServer::start().await;
    mount_zone(&server, 2).await;
    authed("POST", "Tickets/query")
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"errors": ["Unauthorized"]})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    authed("POST", "Tickets/query")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": []})))
        .expect(1)
        .mount(&server)
        .await;
    let at = Autotask::new(config(&server)).unwrap();
    assert_eq!(at.find_open("k").await.unwrap(), None);
}

#[tokio::test]
async fn threshold_information_is_reported_and_checked() {
    let server = MockServer::start().await;
    let mut c = config(&server);
    c.zone_url = Some(format!("{}/zone3/atservicesrest/", server.uri()));
    authed("GET", "ThresholdInformation")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "externalRequestThreshold": 10000, "requestThresholdTimeframe": 60,
            "currentTimeframeRequestCount": 2500
        })))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    authed("GET", "ThresholdInformation")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "externalRequestThreshold": 10000, "requestThresholdTimeframe": 60,
            "currentTimeframeRequestCount": 10000
        })))
        .expect(1)
        .mount(&server)
        .await;
    let at = Autotask::new(c).unwrap();
    let info = at.threshold().await.unwrap();
    assert_eq!(info.usage(), Some(0.25));
    at.check().await.unwrap();
    let err = at.check().await.unwrap_err();
    assert!(matches!(err, Error::BudgetExhausted { .. }), "{err:?}");
}

#[tokio::test]
async fn the_local_hourly_budget_stops_requests_before_they_are_sent() {
    let server = MockServer::start().await;
    let mut c = config(&server);
    c.zone_url = Some(format!("{}/zone3/atservicesrest/", server.uri()));
    c.max_requests_per_hour = 2;
    authed("POST", "Tickets/query")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": []})))
        .expect(2)
        .mount(&server)
        .await;
    let at = Autotask::new(c).unwrap();
    at.find_open("a").await.unwrap();
    at.find_open("b").await.unwrap();
    let err = at.find_open("c").await.unwrap_err();
    assert!(matches!(
        err,
        Error::BudgetExhausted {
            retry_after: Some(_),
            ..
        }
    ));
    assert!(err.is_retryable());
}

#[tokio::test]
async fn ids_must_be_numeric_and_refs_within_fifty_characters() {
    let server = MockServer::start().await;
    let at = Autotask::new(config(&server)).unwrap();
    let err = at
        .ticket_body(&Ticket::new("k", "s", "d").company("Contoso Ltd"))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidInput {
            field: "ticket.company",
            ..
        }
    ));
    let err = at.find_open(&"x".repeat(51)).await.unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidInput {
            field: "ticket.external_ref",
            ..
        }
    ));
    let body = at
        .ticket_body(&Ticket::new("k", "t".repeat(300), "d".repeat(9000)))
        .unwrap();
    assert_eq!(body["title"].as_str().unwrap().chars().count(), 255);
    assert_eq!(body["description"].as_str().unwrap().chars().count(), 8000);
    assert!(!format!("{at:?}").contains("at-s3cret"));
    assert!(!format!("{at:?}").contains("TRACKINGID"));
}

#[tokio::test]
async fn redirects_are_not_followed_so_credentials_stay_home() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    let mut c = config(&server);
    c.zone_url = Some(format!("{}/zone3/atservicesrest/", server.uri()));
    authed("POST", "Tickets/query")
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("Location", format!("{}/steal", elsewhere.uri())),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&elsewhere)
        .await;
    let at = Autotask::new(c).unwrap();
    let err = at.find_open("k").await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 307, .. }), "{err:?}");
}
