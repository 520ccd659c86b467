//! Pagination streams (reference §2.3; quirks 8 and 9).

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use threatlocker_api::{ActionLogRow, Client, Error, Result};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

const SEARCH: &str = "/portalapi/ActionLog/ActionLogGetByParametersV2";

fn row(id: i64) -> Value {
    json!({"actionLogId": id, "eActionLogId": format!("e-{id}"), "hostname": "WS-1", "actionId": 2})
}

fn rows(ids: &[i64]) -> Value {
    Value::Array(ids.iter().map(|&i| row(i)).collect())
}

async fn page(server: &MockServer, n: u32, response: ResponseTemplate, times: u64) {
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .and(body_partial_json(json!({"pageNumber": n, "pageSize": 2})))
        .respond_with(response)
        .expect(times)
        .mount(server)
        .await;
}

async fn collect(client: &Client) -> Vec<Result<ActionLogRow>> {
    let t = utc("2026-05-14T00:00:00Z");
    client
        .audit()
        .search(t, t)
        .page_size(2)
        .stream()
        .collect()
        .await
}

fn ids(items: &[Result<ActionLogRow>]) -> Vec<i64> {
    items
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.action_log_id.unwrap().get())
        .collect()
}

#[tokio::test]
async fn pagination_header_says_when_to_stop() {
    let (server, client, _) = setup().await;
    let header =
        |n: u32| format!(r#"{{"currentPage":{n},"itemsPerPage":2,"totalItems":6,"totalPages":3}}"#);
    for n in 1..=3 {
        page(
            &server,
            n,
            json(rows(&[i64::from(n) * 10, i64::from(n) * 10 + 1]))
                .insert_header("pagination", header(n).as_str()),
            1,
        )
        .await;
    }
    // Full page 3 but the header says it is the last: page 4 is never asked for.
    page(&server, 4, json(rows(&[99, 98])), 0).await;
    let got = collect(&client).await;
    assert_eq!(ids(&got), vec![10, 11, 20, 21, 30, 31]);
}

#[tokio::test]
async fn separate_total_headers_are_read_too() {
    let (server, client, _) = setup().await;
    page(
        &server,
        1,
        json(rows(&[1, 2]))
            .insert_header("totalItems", "3")
            .insert_header("totalPages", "2"),
        // Fetched twice: once by `send`, once by the stream.
        2,
    )
    .await;
    page(
        &server,
        2,
        json(rows(&[3, 4])).insert_header("pagination", r#"{"currentPage":2,"totalPages":2}"#),
        1,
    )
    .await;
    page(&server, 3, json(rows(&[5, 6])), 0).await;
    let t = utc("2026-05-14T00:00:00Z");
    let first = client
        .audit()
        .search(t, t)
        .page_size(2)
        .send()
        .await
        .unwrap();
    assert_eq!(first.meta.as_ref().unwrap().total_items, Some(3));
    assert_eq!(first.meta.as_ref().unwrap().total_pages, Some(2));
    assert_eq!(ids(&collect(&client).await), vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn short_page_ends_the_stream() {
    let (server, client, _) = setup().await;
    page(&server, 1, json(rows(&[1, 2])), 1).await;
    page(&server, 2, json(rows(&[3])), 1).await;
    page(&server, 3, json(rows(&[4, 5])), 0).await;
    assert_eq!(ids(&collect(&client).await), vec![1, 2, 3]);
}

#[tokio::test]
async fn empty_body_null_and_empty_array_end_the_stream() {
    for last in [
        ResponseTemplate::new(200),
        ResponseTemplate::new(200).set_body_string("null"),
        ResponseTemplate::new(200).set_body_string(" [] "),
    ] {
        let (server, client, _) = setup().await;
        page(&server, 1, json(rows(&[1, 2])), 1).await;
        page(&server, 2, last, 1).await;
        page(&server, 3, json(rows(&[4, 5])), 0).await;
        let got = collect(&client).await;
        assert!(got.iter().all(Result::is_ok));
        assert_eq!(ids(&got), vec![1, 2]);
    }
}

#[tokio::test]
async fn rows_repeated_across_pages_are_dropped() {
    let (server, client, _) = setup().await;
    // Row 2 shifted from page 1 to page 2 (a row was added meanwhile).
    page(&server, 1, json(rows(&[1, 2])), 1).await;
    page(&server, 2, json(rows(&[2, 3])), 1).await;
    page(&server, 3, json(rows(&[4])), 1).await;
    assert_eq!(ids(&collect(&client).await), vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn a_page_of_only_repeats_stops_a_server_that_ignores_page_numbers() {
    let (server, client, _) = setup().await;
    page(&server, 1, json(rows(&[1, 2])), 1).await;
    page(&server, 2, json(rows(&[1, 2])), 1).await;
    page(&server, 3, json(rows(&[1, 2])), 0).await;
    assert_eq!(ids(&collect(&client).await), vec![1, 2]);
}

#[tokio::test]
async fn page_cap_bounds_the_stream() {
    let server = MockServer::start().await;
    let client = builder(&server, Arc::new(RecordingSleeper::default()))
        .max_pages(2)
        .build()
        .unwrap();
    page(&server, 1, json(rows(&[1, 2])), 1).await;
    page(&server, 2, json(rows(&[3, 4])), 1).await;
    page(&server, 3, json(rows(&[5, 6])), 0).await;
    assert_eq!(ids(&collect(&client).await), vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn stream_ends_after_the_first_error() {
    let (server, client, _) = setup().await;
    page(&server, 1, json(rows(&[1, 2])), 1).await;
    page(
        &server,
        2,
        ResponseTemplate::new(417).set_body_json(json!({"Message": "Invalid Date Range"})),
        1,
    )
    .await;
    page(&server, 3, json(rows(&[5, 6])), 0).await;
    let got = collect(&client).await;
    assert_eq!(got.len(), 3);
    assert_eq!(ids(&got), vec![1, 2]);
    assert!(matches!(got[2], Err(Error::Api { status: 417, .. })));
}

#[tokio::test]
async fn a_malformed_row_is_a_decode_error_naming_its_path() {
    let (server, client, _) = setup().await;
    page(
        &server,
        1,
        json(json!([row(1), {"actionLogId": 2, "dateTime": "not a date"}])),
        1,
    )
    .await;
    let err = client
        .audit()
        .search(utc("2026-05-14T00:00:00Z"), utc("2026-05-14T00:00:00Z"))
        .page_size(2)
        .stream()
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    match err {
        Error::Decode { path, .. } => assert_eq!(path, "[1].dateTime"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn approvals_dedupe_by_request_id_and_stream_is_lazy() {
    let (server, client, _) = setup().await;
    let a = |id: &str| json!({"approvalRequestId": id, "statusId": 1});
    Mock::given(method("POST"))
        .and(path(
            "/portalapi/ApprovalRequest/ApprovalRequestGetByParameters",
        ))
        .and(body_partial_json(json!({"pageNumber": 1})))
        .respond_with(json(json!([a("r1"), a("r2")])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/portalapi/ApprovalRequest/ApprovalRequestGetByParameters",
        ))
        .and(body_partial_json(json!({"pageNumber": 2})))
        .respond_with(json(json!([a("r2"), a("r3")])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/portalapi/ApprovalRequest/ApprovalRequestGetByParameters",
        ))
        .and(body_partial_json(json!({"pageNumber": 3})))
        .respond_with(json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let stream = client
        .approvals()
        .search(threatlocker_api::ApprovalStatus::Pending)
        .page_size(2)
        .stream();
    // Nothing is fetched before the stream is polled.
    assert!(server.received_requests().await.unwrap().is_empty());
    let got: Vec<_> = stream.try_collect().await.unwrap();
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.approval_request_id.as_ref().unwrap().as_str().to_owned())
        .collect();
    assert_eq!(ids, vec!["r1", "r2", "r3"]);
}

/// A `null` page in the middle while the header promises more rows: fetched again per the
/// retry policy, then the stream fails (it must never end as if complete, or a checkpoint
/// would move past the missing rows).
#[tokio::test]
async fn a_null_page_the_header_contradicts_is_retried_then_fails_the_stream() {
    let (server, client, sleeper) = setup().await;
    let header = r#"{"currentPage":1,"itemsPerPage":2,"totalItems":6,"totalPages":3}"#;
    page(
        &server,
        1,
        json(rows(&[1, 2])).insert_header("pagination", header),
        1,
    )
    .await;
    // No header on the broken page: the promise of page 1 stands.
    page(
        &server,
        2,
        ResponseTemplate::new(200).set_body_string("null"),
        4,
    )
    .await;
    page(&server, 3, json(rows(&[5, 6])), 0).await;
    let got = collect(&client).await;
    assert_eq!(ids(&got), vec![1, 2]);
    assert_eq!(got.len(), 3, "the rows, then one error");
    let err = got[2].as_ref().unwrap_err();
    match err {
        Error::PageMismatch {
            page,
            rows,
            attempts,
            ..
        } => assert_eq!((*page, *rows, *attempts), (2, 0, 4)),
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("page 2") && text.contains("totalItems 6"),
        "{text}"
    );
    assert!(err.is_retryable());
    assert_eq!(sleeper.delays().len(), 3, "backoff between the fetches");
}

/// The same contradiction, once: the page is fetched again and the stream completes.
#[tokio::test]
async fn a_short_page_that_heals_on_refetch_completes_the_stream() {
    let (server, client, _) = setup().await;
    let header =
        |n: u32| format!(r#"{{"currentPage":{n},"itemsPerPage":2,"totalItems":6,"totalPages":3}}"#);
    page(
        &server,
        1,
        json(rows(&[1, 2])).insert_header("pagination", header(1).as_str()),
        1,
    )
    .await;
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .and(body_partial_json(json!({"pageNumber": 2, "pageSize": 2})))
        .respond_with(json(rows(&[3])).insert_header("pagination", header(2).as_str()))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    page(
        &server,
        2,
        json(rows(&[3, 4])).insert_header("pagination", header(2).as_str()),
        1,
    )
    .await;
    page(
        &server,
        3,
        json(rows(&[5, 6])).insert_header("pagination", header(3).as_str()),
        1,
    )
    .await;
    let got = collect(&client).await;
    assert!(got.iter().all(Result::is_ok), "{got:?}");
    assert_eq!(ids(&got), vec![1, 2, 3, 4, 5, 6]);
}

/// An empty page where only `totalPages` is known and promises more pages.
#[tokio::test]
async fn an_empty_page_before_the_last_page_fails_the_stream() {
    let (server, client, _) = setup().await;
    let header = |n: u32| format!(r#"{{"currentPage":{n},"totalPages":3}}"#);
    page(
        &server,
        1,
        json(rows(&[1, 2])).insert_header("pagination", header(1).as_str()),
        1,
    )
    .await;
    page(
        &server,
        2,
        json(json!([])).insert_header("pagination", header(2).as_str()),
        4,
    )
    .await;
    let got = collect(&client).await;
    assert_eq!(ids(&got), vec![1, 2]);
    assert!(
        matches!(got.last(), Some(Err(Error::PageMismatch { page: 2, .. }))),
        "{got:?}"
    );
}
