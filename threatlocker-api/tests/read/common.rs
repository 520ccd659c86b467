//! Shared set-up: a mock server, a client pointed at it, fixtures.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use threatlocker_api::{Client, ClientBuilder, RetryPolicy, Sleeper};
use wiremock::matchers::header;
use wiremock::{MockServer, ResponseTemplate};

/// A synthetic 64-hex API key.
pub const KEY: &str = "5f2b8c0e9a7d4163b8e2f0a1c3d5e7f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// Records the delays the client asked to wait, and returns at once.
#[derive(Debug, Default)]
pub struct RecordingSleeper(pub Mutex<Vec<Duration>>);

impl RecordingSleeper {
    pub fn delays(&self) -> Vec<Duration> {
        self.0.lock().unwrap().clone()
    }
}

impl Sleeper for RecordingSleeper {
    fn sleep(&self, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.0.lock().unwrap().push(delay);
        Box::pin(async {})
    }
}

/// A builder for a client of `server` with an instant sleeper, no rate limit, and the key given
/// with an accidental `Bearer ` prefix (the client must strip it).
pub fn builder(server: &MockServer, sleeper: Arc<RecordingSleeper>) -> ClientBuilder {
    Client::builder(format!("Bearer {KEY}"))
        .base_url(server.uri())
        .max_requests_per_second(0.0)
        .retry(RetryPolicy::default())
        .sleeper(sleeper)
}

pub async fn setup() -> (MockServer, Client, Arc<RecordingSleeper>) {
    let server = MockServer::start().await;
    let sleeper = Arc::new(RecordingSleeper::default());
    let client = builder(&server, sleeper.clone()).build().unwrap();
    (server, client, sleeper)
}

/// The raw key, no `Bearer` prefix.
pub fn auth() -> wiremock::matchers::HeaderExactMatcher {
    header("authorization", KEY)
}

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn json(v: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(v)
}

/// No `managedOrganizationId` header on the request.
pub fn no_org_header(req: &wiremock::Request) -> bool {
    !req.headers.contains_key("managedorganizationid")
}

pub fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
    s.parse().unwrap()
}
