//! A simulated ConnectWise PSA (REST API 3.0) on loopback: tickets, the `conditions` search,
//! notes, Basic authentication and the `clientId` header, with injectable faults.
//!
//! Wire facts follow `psa-notify-siem.md` §1: `POST /service/tickets` → 201 with the record,
//! `GET /service/tickets?conditions=externalXRef="…" and closedFlag=false` (or
//! `POST /service/tickets/search {"conditions": …}`), `POST /service/tickets/{id}/notes` needing a
//! placement flag, `summary` at most 100 characters, 429 with `Retry-After` when throttled.

use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::threatlocker::Fault;

/// Credentials the simulated PSA accepts.
#[derive(Debug, Clone)]
pub struct CwCredentials {
    /// Login company.
    pub company_id: String,
    /// API member public key.
    pub public_key: String,
    /// API member private key.
    pub private_key: String,
    /// Integration client id.
    pub client_id: String,
}

impl Default for CwCredentials {
    fn default() -> Self {
        Self {
            company_id: "msp".into(),
            public_key: "sim-public".into(),
            private_key: "sim-private-key".into(),
            client_id: "00000000-0000-4000-8000-00000000c1d0".into(),
        }
    }
}

/// A ticket held by the simulator.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SimTicket {
    /// Ticket id.
    pub id: i64,
    /// Summary.
    pub summary: String,
    /// External reference (our dedupe key).
    #[serde(rename = "externalXRef")]
    pub external_xref: Option<String>,
    /// The `company` reference as sent.
    pub company: Value,
    /// The `board` reference as sent.
    pub board: Value,
    /// The `priority` reference as sent.
    pub priority: Value,
    /// Initial description.
    pub initial_description: Option<String>,
    /// Closed.
    pub closed_flag: bool,
    /// Notes, oldest first.
    #[serde(skip)]
    pub notes: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    tickets: Vec<SimTicket>,
    faults: Vec<Fault>,
    creates: u64,
    searches: u64,
    latency: std::time::Duration,
}

struct Psa {
    auth: String,
    client_id: String,
    state: Mutex<State>,
}

impl Psa {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running simulated ConnectWise PSA.
pub struct ConnectWiseSim {
    server: MockServer,
    psa: Arc<Psa>,
    creds: CwCredentials,
}

impl std::fmt::Debug for ConnectWiseSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectWiseSim")
            .field("uri", &self.server.uri())
            .finish_non_exhaustive()
    }
}

impl ConnectWiseSim {
    /// Starts the simulator on a loopback port.
    pub async fn start(creds: CwCredentials) -> Self {
        let server = MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        let raw = format!(
            "{}+{}:{}",
            creds.company_id, creds.public_key, creds.private_key
        );
        let psa = Arc::new(Psa {
            auth: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            ),
            client_id: creds.client_id.clone(),
            state: Mutex::new(State::default()),
        });
        Mock::given(wiremock::matchers::any())
            .respond_with(Responder(Arc::clone(&psa)))
            .with_priority(u8::MAX)
            .mount(&server)
            .await;
        Self { server, psa, creds }
    }

    /// The site URL (`http://127.0.0.1:PORT`); the API lives under `/v4_6_release/apis/3.0/`.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// The credentials it accepts.
    pub fn credentials(&self) -> &CwCredentials {
        &self.creds
    }

    /// The underlying mock server, to mount extra expectations (they take precedence).
    pub fn server(&self) -> &MockServer {
        &self.server
    }

    /// Every ticket, in creation order.
    pub fn tickets(&self) -> Vec<SimTicket> {
        self.psa.lock().tickets.clone()
    }

    /// Ticket-create calls received (including failed ones).
    pub fn create_calls(&self) -> u64 {
        self.psa.lock().creates
    }

    /// Search calls received.
    pub fn search_calls(&self) -> u64 {
        self.psa.lock().searches
    }

    /// Closes a ticket (a technician resolving it).
    pub fn close(&self, id: i64) {
        if let Some(t) = self.psa.lock().tickets.iter_mut().find(|t| t.id == id) {
            t.closed_flag = true;
        }
    }

    /// Delays every answer by `latency` (a slow PSA, so a run can be stopped midway).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.psa.lock().latency = latency;
    }

    /// Injects a fault (route fragments: `service/tickets`, `notes`, `search`).
    pub fn inject(&self, fault: Fault) {
        self.psa.lock().faults.push(fault);
    }
}

struct Responder(Arc<Psa>);

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let latency = self.0.lock().latency;
        self.0.handle(req).set_delay(latency)
    }
}

fn cw_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"code": code, "message": message, "errors": null}))
}

impl Psa {
    fn handle(&self, req: &Request) -> ResponseTemplate {
        let path = req.url.path().to_owned();
        let Some(idx) = path.find("/apis/3.0/") else {
            return cw_error(404, "NotFound", "Unknown codebase or route");
        };
        let route = path[idx + "/apis/3.0/".len()..]
            .trim_end_matches('/')
            .to_owned();
        {
            let mut s = self.lock();
            if let Some(f) = s
                .faults
                .iter_mut()
                .find(|f| f.times > 0 && route.contains(&f.route))
            {
                f.times -= 1;
                let (status, retry_after) = (f.status, f.retry_after);
                s.faults.retain(|f| f.times > 0);
                if status == 429 {
                    return ResponseTemplate::new(429)
                        .insert_header("Retry-After", retry_after.unwrap_or(1).to_string())
                        .set_body_json(json!({"error": "ConnectWiseAPI", "message": "Too many requests. Please try again in 30 seconds."}));
                }
                return cw_error(status, "Simulated", "Simulated failure");
            }
        }
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if auth != Some(self.auth.as_str()) {
            return cw_error(401, "Unauthorized", "Invalid credentials");
        }
        let client = req.headers.get("clientid").and_then(|v| v.to_str().ok());
        if client != Some(self.client_id.as_str()) {
            return cw_error(401, "Unauthorized", "A valid clientId is required");
        }
        let body: Value = if req.body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(_) => return cw_error(400, "InvalidObject", "Malformed JSON"),
            }
        };
        let parts: Vec<&str> = route.split('/').collect();
        match (req.method.as_str(), parts.as_slice()) {
            ("GET", ["system", "info"]) => ResponseTemplate::new(200).set_body_json(
                json!({"version": "v2025.1.99999", "isCloud": false, "serverTimeZone": "UTC"}),
            ),
            ("POST", ["service", "tickets"]) => self.create(&body),
            ("GET", ["service", "tickets"]) => {
                let conditions = req
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "conditions")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                self.search(&conditions)
            }
            ("POST", ["service", "tickets", "search"]) => {
                let c = body.get("conditions").and_then(Value::as_str).unwrap_or("");
                self.search(c)
            }
            ("GET", ["service", "tickets", id]) => match id.parse::<i64>() {
                Ok(id) => match self.lock().tickets.iter().find(|t| t.id == id) {
                    Some(t) => ResponseTemplate::new(200).set_body_json(ticket_json(t)),
                    None => cw_error(404, "NotFound", "Ticket not found"),
                },
                Err(_) => cw_error(400, "InvalidObject", "Bad ticket id"),
            },
            ("POST", ["service", "tickets", id, "notes"]) => {
                let Ok(id) = id.parse::<i64>() else {
                    return cw_error(400, "InvalidObject", "Bad ticket id");
                };
                self.note(id, &body)
            }
            _ => cw_error(404, "NotFound", "Unknown route"),
        }
    }

    fn create(&self, body: &Value) -> ResponseTemplate {
        self.lock().creates += 1;
        let Some(summary) = body.get("summary").and_then(Value::as_str) else {
            return ResponseTemplate::new(400).set_body_json(json!({"code": "InvalidObject", "message": "ticket object is invalid", "errors": [{"code": "NullValue", "message": "The summary field is required.", "resource": "ticket", "field": "summary"}]}));
        };
        if summary.chars().count() > 100 {
            return ResponseTemplate::new(400).set_body_json(json!({"code": "InvalidObject", "message": "ticket object is invalid", "errors": [{"code": "MaxLengthField", "message": "summary cannot be more than 100 characters.", "resource": "ticket", "field": "summary"}]}));
        }
        let xref = body.get("externalXRef").and_then(Value::as_str);
        if xref.is_some_and(|x| x.chars().count() > 100) {
            return ResponseTemplate::new(400).set_body_json(json!({"code": "InvalidObject", "message": "ticket object is invalid", "errors": [{"code": "MaxLengthField", "message": "externalXRef cannot be more than 100 characters.", "resource": "ticket", "field": "externalXRef"}]}));
        }
        let mut s = self.lock();
        let id = 1000 + s.tickets.len() as i64 + 1;
        let t = SimTicket {
            id,
            summary: summary.to_owned(),
            external_xref: xref.map(str::to_owned),
            company: body.get("company").cloned().unwrap_or(Value::Null),
            board: body.get("board").cloned().unwrap_or(Value::Null),
            priority: body.get("priority").cloned().unwrap_or(Value::Null),
            initial_description: body
                .get("initialDescription")
                .and_then(Value::as_str)
                .map(str::to_owned),
            closed_flag: false,
            notes: Vec::new(),
        };
        let out = ticket_json(&t);
        s.tickets.push(t);
        ResponseTemplate::new(201).set_body_json(out)
    }

    fn search(&self, conditions: &str) -> ResponseTemplate {
        self.lock().searches += 1;
        let clauses = match parse_conditions(conditions) {
            Ok(c) => c,
            Err(m) => return cw_error(400, "InvalidObject", &m),
        };
        let s = self.lock();
        let rows: Vec<Value> = s
            .tickets
            .iter()
            .filter(|t| clauses.iter().all(|c| c.matches(t)))
            .map(ticket_json)
            .collect();
        ResponseTemplate::new(200).set_body_json(Value::Array(rows))
    }

    fn note(&self, id: i64, body: &Value) -> ResponseTemplate {
        let flag = |k: &str| body.get(k).and_then(Value::as_bool).unwrap_or(false);
        if !(flag("detailDescriptionFlag")
            || flag("internalAnalysisFlag")
            || flag("resolutionFlag"))
        {
            return cw_error(400, "InvalidObject", "serviceNote object is invalid: choose where to display the note (detailDescriptionFlag, internalAnalysisFlag or resolutionFlag)");
        }
        let Some(text) = body.get("text").and_then(Value::as_str) else {
            return cw_error(
                400,
                "InvalidObject",
                "serviceNote object is invalid: text is required",
            );
        };
        let mut s = self.lock();
        let Some(t) = s.tickets.iter_mut().find(|t| t.id == id) else {
            return cw_error(404, "NotFound", "Ticket not found");
        };
        t.notes.push(text.to_owned());
        let note_id = t.notes.len() as i64;
        ResponseTemplate::new(201)
            .set_body_json(json!({"id": note_id, "ticketId": id, "text": text}))
    }
}

fn ticket_json(t: &SimTicket) -> Value {
    json!({
        "id": t.id,
        "summary": t.summary,
        "externalXRef": t.external_xref,
        "company": t.company,
        "board": t.board,
        "priority": t.priority,
        "status": {"name": if t.closed_flag { "Closed" } else { "New" }},
        "closedFlag": t.closed_flag,
        "_info": {"lastUpdated": "2026-05-14T12:00:00Z"},
    })
}

#[derive(Debug, PartialEq)]
enum Literal {
    Str(String),
    Bool(bool),
    Int(i64),
}

#[derive(Debug)]
struct Clause {
    field: String,
    negate: bool,
    value: Literal,
}

impl Clause {
    fn matches(&self, t: &SimTicket) -> bool {
        let hit = match (self.field.to_ascii_lowercase().as_str(), &self.value) {
            ("externalxref", Literal::Str(s)) => t.external_xref.as_deref() == Some(s.as_str()),
            ("closedflag", Literal::Bool(b)) => t.closed_flag == *b,
            ("id", Literal::Int(i)) => t.id == *i,
            ("summary", Literal::Str(s)) => t.summary == *s,
            ("company/id", Literal::Int(i)) => {
                t.company.get("id").and_then(Value::as_i64) == Some(*i)
            }
            ("company/identifier", Literal::Str(s)) => {
                t.company.get("identifier").and_then(Value::as_str) == Some(s.as_str())
            }
            ("board/name", Literal::Str(s)) => {
                t.board.get("name").and_then(Value::as_str) == Some(s.as_str())
            }
            ("board/id", Literal::Int(i)) => t.board.get("id").and_then(Value::as_i64) == Some(*i),
            _ => false,
        };
        hit != self.negate
    }
}

/// Parses `a = "x" and b = false and c != 3` (the subset of the ConnectWise grammar the
/// workflow's connector uses). Strings are double-quoted with `\"` and `\\` escapes.
fn parse_conditions(s: &str) -> Result<Vec<Clause>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    if rest.is_empty() {
        return Ok(out);
    }
    loop {
        let field_end = rest
            .find(|c: char| c.is_whitespace() || c == '=' || c == '!')
            .ok_or_else(|| format!("condition {rest:?} has no operator"))?;
        let field = rest[..field_end].to_owned();
        const FIELDS: &[&str] = &[
            "externalxref",
            "closedflag",
            "id",
            "summary",
            "company/id",
            "company/identifier",
            "board/name",
            "board/id",
        ];
        if !FIELDS.contains(&field.to_ascii_lowercase().as_str()) {
            return Err(format!("Invalid condition: unknown field {field:?}"));
        }
        rest = rest[field_end..].trim_start();
        let negate = if let Some(r) = rest.strip_prefix("!=") {
            rest = r;
            true
        } else if let Some(r) = rest.strip_prefix('=') {
            rest = r;
            false
        } else {
            return Err(format!("unsupported operator near {rest:?}"));
        };
        rest = rest.trim_start();
        let value = if let Some(r) = rest.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = r.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    // `[[]` is the grammar's escape for a literal `[`.
                    '[' if r[i..].starts_with("[[]") => {
                        val.push('[');
                        chars.next();
                        chars.next();
                    }
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => val.push(c),
                }
            }
            let end = end.ok_or("unterminated string literal")?;
            rest = &r[end + 1..];
            Literal::Str(val)
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let tok = &rest[..end];
            rest = &rest[end..];
            match tok {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                n => Literal::Int(n.parse().map_err(|_| {
                    format!("value {n:?} must be a quoted string, true/false or an integer")
                })?),
            }
        };
        out.push(Clause {
            field,
            negate,
            value,
        });
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(out);
        }
        let lower = rest.to_ascii_lowercase();
        if lower.starts_with("and ") {
            rest = rest[4..].trim_start();
        } else {
            return Err(format!("only `and` is supported, near {rest:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_dedupe_condition() {
        let c =
            parse_conditions(r#"externalXRef="tl:block:a\"b[[]1]" and closedFlag=false"#).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].value, Literal::Str("tl:block:a\"b[1]".into()));
        assert_eq!(c[1].value, Literal::Bool(false));
        assert!(parse_conditions("bogus = 1").is_err());
        assert!(parse_conditions(r#"externalXRef = "x" or closedFlag = true"#).is_err());
    }
}
