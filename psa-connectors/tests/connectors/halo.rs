//! HaloPSA against wiremock: client-credentials token, array bodies, search, private actions.

use psa_connectors::halo::{Config, Halo};
use psa_connectors::{Error, Note, Priority, PriorityMap, Ticket, TicketSink};
use serde_json::json;
use wiremock::matchers::{body_json, body_string, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::common::fast_retry;

fn config(server: &MockServer) -> Config {
    let mut c = Config::new(
        format!("{}/api", server.uri()),
        format!("{}/auth", server.uri()),
        "app-client-id",
        "halo-s3cret".to_owned().into(),
    );
    c.tenant = Some("contoso".into());
    c.default_customer_id = Some(12);
    c.default_ticket_type_id = Some(31);
    c.priorities = Some(PriorityMap {
        low: 4,
        medium: 3,
        high: 2,
        critical: 1,
    });
    c.retry = fast_retry();
    c
}

fn token_mock(token: &str, expires_in: u64) -> Mock {
    Mock::given(method("POST"))
        .and(path("/auth/token"))
        .and(query_param("tenant", "contoso"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string(
            "grant_type=client_credentials&client_id=app-client-id&client_secret=halo-s3cret&scope=all",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": token, "token_type": "Bearer", "expires_in": expires_in
        })))
}

fn search(external_ref: &str, token: &str) -> wiremock::MockBuilder {
    Mock::given(method("GET"))
        .and(path("/api/Tickets"))
        .and(query_param("search", external_ref))
        .and(query_param("open_only", "true"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
}

#[tokio::test]
async fn creates_with_an_array_body_when_only_decoys_match_the_search() {
    let server = MockServer::start().await;
    token_mock("tok1", 3600).expect(1).mount(&server).await;
    search("tl:req:5", "tok1")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "record_count": 2,
            "tickets": [
                {"id": 1, "summary": "mentions tl:req:5 in passing", "hasbeenclosed": false},
                {"id": 2, "summary": "old one [ref:tl:req:5]", "hasbeenclosed": true}
            ]
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/Tickets"))
        .and(header("authorization", "Bearer tok1"))
        .and(body_json(json!([{
            "summary": "AnyDesk.exe blocked [ref:tl:req:5]",
            "details": "details",
            "client_id": 12,
            "tickettype_id": 31,
            "priority_id": 2
        }])))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 4242, "summary": "x"})))
        .expect(1)
        .mount(&server)
        .await;
    let halo = Halo::new(config(&server)).unwrap();
    let outcome = halo
        .open_or_update(
            &Ticket::new("tl:req:5", "AnyDesk.exe blocked", "details").priority(Priority::High),
            &Note::internal("n"),
        )
        .await
        .unwrap();
    assert!(outcome.is_created());
    assert_eq!(outcome.ticket().id, "4242");
}

#[tokio::test]
async fn open_ticket_gets_a_private_action_and_no_create() {
    let server = MockServer::start().await;
    token_mock("tok1", 3600).expect(1).mount(&server).await;
    search("tl:req:6", "tok1")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "record_count": 1,
            "tickets": [{"id": 77, "summary": "AnyDesk.exe blocked [ref:tl:req:6]", "hasbeenclosed": false}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/Actions"))
        .and(header("authorization", "Bearer tok1"))
        .and(body_json(json!([{
            "ticket_id": 77,
            "note": "Blocked again",
            "outcome_id": 7,
            "hiddenfromuser": true,
            "sendemail": false
        }])))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!([{"id": 1}])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/Tickets"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    let halo = Halo::new(config(&server)).unwrap();
    let outcome = halo
        .open_or_update(
            &Ticket::new("tl:req:6", "s", "d"),
            &Note::internal("Blocked again"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.ticket().id, "77");
    assert!(!outcome.is_created());
}

#[tokio::test]
async fn token_is_cached_between_calls() {
    let server = MockServer::start().await;
    token_mock("tok1", 3600).expect(1).mount(&server).await;
    search("k", "tok1")
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"record_count": 0, "tickets": []})),
        )
        .expect(2)
        .mount(&server)
        .await;
    let halo = Halo::new(config(&server)).unwrap();
    assert_eq!(halo.find_open("k").await.unwrap(), None);
    assert_eq!(halo.find_open("k").await.unwrap(), None);
}

#[tokio::test]
async fn token_near_expiry_is_refreshed_before_use() {
    let server = MockServer::start().await;
    // expires_in below the one-minute margin: every call needs a fresh token.
    token_mock("tok1", 30).expect(2).mount(&server).await;
    search("k", "tok1")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"tickets": []})))
        .expect(2)
        .mount(&server)
        .await;
    let halo = Halo::new(config(&server)).unwrap();
    halo.find_open("k").await.unwrap();
    halo.find_open("k").await.unwrap();
}

#[tokio::test]
async fn a_401_refreshes_the_token_once() {
    let server = MockServer::start().await;
    token_mock("tok1", 3600)
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    token_mock("tok2", 3600).expect(1).mount(&server).await;
    search("k", "tok1")
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    search("k", "tok2")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"tickets": []})))
        .expect(1)
        .mount(&server)
        .await;
    let halo = Halo::new(config(&server)).unwrap();
    assert_eq!(halo.find_open("k").await.unwrap(), None);
}

#[tokio::test]
async fn rejected_credentials_are_an_auth_error_without_the_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"})))
        .expect(1)
        .mount(&server)
        .await;
    let halo = Halo::new(config(&server)).unwrap();
    let err = halo.check().await.unwrap_err();
    assert!(
        matches!(err, Error::Auth { status: 401, ref message, .. } if message == "invalid_client"),
        "{err:?}"
    );
    let text = format!("{err} {err:?} {halo:?}");
    assert!(!text.contains("halo-s3cret"), "{text}");
}
