//! The known data set (synthetic values, real field names) and the wiremock Portal API.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const H1: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
pub const ORG: &str = "3b0f5f7e-1111-4a2b-9c3d-5e6f7a8b9c0d";
pub const POLICY: &str = "0d9e8f7a-3333-4b1c-8d2e-6f7a8b9c0d1e";
pub const API_KEY_ENV: &str = "TL_INVESTIGATE_TEST_KEY";

fn comp(host: &str) -> String {
    let n: u32 = host.bytes().map(u32::from).sum();
    format!("9a8b7c6d-2222-4e5f-8a9b-{n:012}")
}

#[allow(clippy::too_many_arguments)]
fn row(
    id: i64,
    time: &str,
    host: &str,
    user: &str,
    full_path: &str,
    process: &str,
    action_id: i64,
    monitor: bool,
) -> Value {
    json!({
        "actionLogId": id,
        "eActionLogId": format!("e-{id}"),
        "organizationId": ORG,
        "organizationName": "Contoso Dental",
        "computerId": comp(host),
        "hostname": host,
        "username": user,
        "dateTime": time,
        "fullPath": full_path,
        "processPath": process,
        "actionType": "execute",
        "actionId": action_id,
        "action": if action_id == 1 { "Permit" } else { "Deny" },
        "isMonitorMode": monitor,
        "certExists": true,
        "policyId": POLICY,
        "policyName": if monitor { "Monitor - Unknown apps" } else { "Default - Deny" },
    })
}

/// Every action-log row of the data set.
pub fn rows() -> Vec<Value> {
    let fd = "WS-FRONTDESK-02";
    let chrome = "c:\\program files\\google\\chrome\\application\\chrome.exe";
    let invoice = "c:\\users\\jsmith\\downloads\\invoice.exe";
    let mut v = vec![
        row(
            1001,
            "2026-05-14T12:40:00Z",
            fd,
            "CONTOSO\\jsmith",
            chrome,
            "c:\\windows\\explorer.exe",
            1,
            false,
        ),
        row(
            1002,
            "2026-05-14T12:55:00Z",
            fd,
            "CONTOSO\\jsmith",
            invoice,
            chrome,
            1,
            false,
        ),
        row(
            1003,
            "2026-05-14T12:56:00Z",
            fd,
            "CONTOSO\\jsmith",
            "c:\\windows\\system32\\windowspowershell\\v1.0\\powershell.exe",
            invoice,
            1,
            false,
        ),
        row(
            1005,
            "2026-05-14T13:20:00Z",
            fd,
            "CONTOSO\\jsmith",
            chrome,
            "c:\\windows\\explorer.exe",
            1,
            false,
        ),
        // Outside the timeline window.
        row(
            1006,
            "2026-05-14T15:30:00Z",
            fd,
            "CONTOSO\\jsmith",
            chrome,
            "c:\\windows\\explorer.exe",
            1,
            false,
        ),
        // Repeated denials on WS-BILLING-01 (user mlee), the hash under another name.
        row(
            2001,
            "2026-05-14T13:20:00Z",
            "WS-BILLING-01",
            "CONTOSO\\mlee",
            "c:\\users\\mlee\\downloads\\invoice, final.exe",
            "c:\\windows\\explorer.exe",
            2,
            false,
        ),
        row(
            2002,
            "2026-05-14T13:25:00Z",
            "WS-BILLING-01",
            "CONTOSO\\mlee",
            "c:\\users\\mlee\\downloads\\invoice, final.exe",
            "c:\\windows\\explorer.exe",
            3,
            false,
        ),
        row(
            2003,
            "2026-05-14T13:30:00Z",
            "WS-BILLING-01",
            "CONTOSO\\mlee",
            "c:\\tools\\nmap.exe",
            "c:\\windows\\explorer.exe",
            2,
            false,
        ),
        // Audit-only hits: a Secure computer (counted by bypass) and a Learning one (not).
        row(
            3001,
            "2026-05-14T13:40:00Z",
            "WS-RECEPTION-03",
            "=HYPERLINK(\"http://x\")",
            "c:\\users\\public\\invoice.exe",
            "c:\\windows\\explorer.exe",
            2,
            true,
        ),
        row(
            3002,
            "2026-05-14T13:45:00Z",
            "WS-RECEPTION-03",
            "CONTOSO\\front",
            "c:\\tools\\putty.exe",
            "c:\\windows\\explorer.exe",
            2,
            true,
        ),
        row(
            3003,
            "2026-05-14T13:50:00Z",
            "WS-LEARN-04",
            "CONTOSO\\dev",
            "c:\\tools\\putty.exe",
            "c:\\windows\\explorer.exe",
            2,
            true,
        ),
    ];
    let mut net = row(
        1004,
        "2026-05-14T13:05:00Z",
        fd,
        "CONTOSO\\jsmith",
        "c:\\windows\\system32\\windowspowershell\\v1.0\\powershell.exe",
        invoice,
        1,
        false,
    );
    net["actionType"] = json!("network");
    net["destinationIPAddress"] = json!("203.0.113.9");
    net["destinationPort"] = json!(443);
    v.push(net);
    for id in [1002, 2001, 2002, 3001] {
        if let Some(r) = v.iter_mut().find(|r| r["actionLogId"] == json!(id)) {
            r["sha256Hash"] = json!(H1.to_uppercase());
        }
    }
    v
}

pub fn computers() -> Value {
    let c = |host: &str, mode: &str| json!({"computerId": comp(host), "computerName": host, "hostname": host, "organizationId": ORG, "action": mode, "mode": mode});
    json!([
        c("WS-FRONTDESK-02", "Secure"),
        c("WS-BILLING-01", "Secure"),
        c("WS-RECEPTION-03", "Secure"),
        c("WS-LEARN-04", "Learning"),
    ])
}

pub fn approvals() -> Value {
    json!([{
        "approvalRequestId": "a1b2c3d4-0000-4000-8000-000000000001",
        "organizationId": ORG,
        "computerId": comp("WS-BILLING-01"),
        "hostname": "WS-BILLING-01",
        "username": "CONTOSO\\mlee",
        "path": "c:\\users\\mlee\\downloads\\invoice, final.exe",
        "sha256": H1,
        "statusId": 1,
        "requestorReason": "I need this for billing",
        "dateTime": "2026-05-14T13:26:00Z"
    }])
}

/// Answers the action-log search by filtering the data set the way the API does (hostname,
/// fullPath, actionId 99 + MonitorOnly, date range) and paging by pageNumber/pageSize.
pub struct Search(pub Vec<Value>);

impl Respond for Search {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return ResponseTemplate::new(400);
        };
        if body.get("paramsFieldsDto").is_none() || body.get("startDate").is_none() {
            return ResponseTemplate::new(500);
        }
        let start = body["startDate"].as_str().unwrap_or_default().to_owned();
        let end = body["endDate"].as_str().unwrap_or_default().to_owned();
        let norm = |s: &str| {
            s.trim_end_matches('Z')
                .split('.')
                .next()
                .unwrap_or("")
                .to_owned()
        };
        let monitor = body["paramsFieldsDto"]
            .as_array()
            .and_then(|a| a.first())
            .map(|f| f["value"] == json!("true"));
        let rows: Vec<&Value> = self
            .0
            .iter()
            .filter(|r| {
                let t = norm(r["dateTime"].as_str().unwrap_or_default());
                t >= norm(&start) && t <= norm(&end)
            })
            .filter(|r| match body.get("hostname").and_then(Value::as_str) {
                Some(h) => r["hostname"]
                    .as_str()
                    .is_some_and(|x| x.eq_ignore_ascii_case(h)),
                None => true,
            })
            .filter(|r| match body.get("fullPath").and_then(Value::as_str) {
                Some(p) => r["fullPath"]
                    .as_str()
                    .is_some_and(|x| x.eq_ignore_ascii_case(p)),
                None => true,
            })
            .filter(|r| match body.get("actionId").and_then(Value::as_i64) {
                Some(99) => [2, 3].contains(&r["actionId"].as_i64().unwrap_or(0)),
                Some(a) => r["actionId"].as_i64() == Some(a),
                None => true,
            })
            .filter(|r| match monitor {
                Some(m) => r["isMonitorMode"].as_bool() == Some(m),
                None => true,
            })
            .collect();
        let size = body["pageSize"].as_u64().unwrap_or(25).max(1) as usize;
        let page = body["pageNumber"].as_u64().unwrap_or(1).max(1) as usize;
        let items: Vec<&Value> = rows
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .copied()
            .collect();
        ResponseTemplate::new(200).set_body_json(items)
    }
}

/// `ActionLogGetByIdV2`: the row plus a parent chain and a field the client does not model.
struct Detail(HashMap<String, Value>);

impl Respond for Detail {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        if q.get("getAllParents").map(String::as_str) != Some("true") {
            return ResponseTemplate::new(400);
        }
        match q.get("eActionLogId").and_then(|id| self.0.get(id)) {
            Some(row) => {
                let mut r = row.clone();
                r["parentProcesses"] = json!([
                    {"processPath": row["processPath"]},
                    {"processPath": "c:\\windows\\explorer.exe"}
                ]);
                r["commandLine"] = json!("powershell -nop -w hidden -enc SQBFAFgA");
                ResponseTemplate::new(200).set_body_json(r)
            }
            None => ResponseTemplate::new(500).set_body_json(json!({"Message": "not found"})),
        }
    }
}

/// `ActionLogGetAllForFileHistoryV2`: per computer and path, as the real API (417 without
/// them).
struct History(Vec<Value>);

impl Respond for History {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        let (Some(p), Some(c)) = (q.get("fullPath"), q.get("computerId")) else {
            return ResponseTemplate::new(417)
                .set_body_json(json!({"Message": "Missing Parameters. Unable to load details."}));
        };
        let page = q
            .get("pageNumber")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(1);
        if page > 1 {
            return ResponseTemplate::new(200).set_body_json(json!([]));
        }
        let rows: Vec<&Value> = self
            .0
            .iter()
            .filter(|r| r["fullPath"].as_str() == Some(p) && r["computerId"].as_str() == Some(c))
            .collect();
        ResponseTemplate::new(200).set_body_json(rows)
    }
}

/// A Portal API serving the data set.
pub async fn portal() -> MockServer {
    let server = MockServer::start().await;
    let rows = rows();
    Mock::given(method("POST"))
        .and(path("/portalapi/ActionLog/ActionLogGetByParametersV2"))
        .respond_with(Search(rows.clone()))
        .mount(&server)
        .await;
    let by_e: HashMap<String, Value> = rows
        .iter()
        .map(|r| {
            (
                r["eActionLogId"].as_str().unwrap_or_default().to_owned(),
                r.clone(),
            )
        })
        .collect();
    Mock::given(method("GET"))
        .and(path("/portalapi/ActionLog/ActionLogGetByIdV2"))
        .respond_with(Detail(by_e))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/portalapi/ActionLog/ActionLogGetAllForFileHistoryV2"))
        .respond_with(History(rows))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/portalapi/ApprovalRequest/ApprovalRequestGetByParameters",
        ))
        .and(body_partial_json(json!({"statusId": 1})))
        .respond_with(ResponseTemplate::new(200).set_body_json(approvals()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/portalapi/Computer/ComputerGetByAllParameters"))
        .respond_with(ResponseTemplate::new(200).set_body_json(computers()))
        .mount(&server)
        .await;
    server
}

/// A scratch directory with a configuration file pointing at `base_url`.
pub fn config_file(base_url: &str, extra: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "tl-investigate-test-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        format!(
            "[threatlocker]\nbase_url = \"{base_url}\"\napi_key_env = \"{API_KEY_ENV}\"\nmax_requests_per_second = 1000.0\n\n[org_variables]\nthreatlocker_block_alert_threshold = 3\n{extra}"
        ),
    )
    .expect("config");
    (dir, file)
}
