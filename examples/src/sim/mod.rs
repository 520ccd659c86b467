//! Simulators of the outside systems, on loopback: the ThreatLocker Portal API
//! ([`threatlocker::PortalSim`]) and ConnectWise PSA ([`connectwise::ConnectWiseSim`]).
//!
//! They are used by `threatlocker-monitor demo` (which needs no account), by the end-to-end
//! tests and by the benchmark. Both are stateful (a permit changes the request's status; a
//! created ticket is found by the next search), enforce the real APIs' quirks, and accept
//! injected faults (429 storms, 5xx on given pages) while running.

pub mod connectwise;
pub mod data;
pub mod threatlocker;

pub use connectwise::{ConnectWiseSim, CwCredentials, SimTicket};
pub use data::{Dataset, SimConfig};
pub use threatlocker::{Fault, PermitRecord, PortalSim, PortalStats};

/// The API key the simulated Portal API accepts in `demo` (64 lowercase hex characters, like a
/// real key).
pub const DEMO_API_KEY: &str = "5e1f0c0ffee0d15ea5e5e1f0c0ffee0d15ea5e5e1f0c0ffee0d15ea5e0000001";

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use chrono::{DateTime, Duration, Utc};
    use serde_json::{json, Value};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-14T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    async fn portal() -> (PortalSim, reqwest::Client) {
        let sim = PortalSim::start(Dataset::generate(SimConfig::demo(now())), DEMO_API_KEY).await;
        (sim, reqwest::Client::new())
    }

    fn search_body(page: u64, size: u64) -> Value {
        json!({
            "startDate": (now() - Duration::hours(24)).to_rfc3339(),
            "endDate": now().to_rfc3339(),
            "pageNumber": page, "pageSize": size,
            "paramsFieldsDto": [], "showChildOrganizations": true,
        })
    }

    async fn post(
        http: &reqwest::Client,
        sim: &PortalSim,
        route: &str,
        body: &Value,
        new_search: bool,
    ) -> reqwest::Response {
        let mut r = http
            .post(format!("{}/portalapi/{route}", sim.uri()))
            .header("Authorization", DEMO_API_KEY)
            .json(body);
        if new_search {
            r = r.header("usenewsearch", "true");
        }
        r.send().await.unwrap()
    }

    /// The status of a permit POST.
    async fn permit(http: &reqwest::Client, sim: &PortalSim, body: &Value) -> reqwest::StatusCode {
        post(
            http,
            sim,
            "ApprovalRequest/ApprovalRequestPermitApplication",
            body,
            false,
        )
        .await
        .status()
    }

    /// An action-log search with the `usenewsearch` header.
    async fn search(http: &reqwest::Client, sim: &PortalSim, body: &Value) -> reqwest::Response {
        post(
            http,
            sim,
            "ActionLog/ActionLogGetByParametersV2",
            body,
            true,
        )
        .await
    }

    #[tokio::test]
    async fn action_log_search_enforces_the_real_quirks() {
        let (sim, http) = portal().await;
        let url = format!(
            "{}/portalapi/ActionLog/ActionLogGetByParametersV2",
            sim.uri()
        );
        // Raw key only.
        for auth in [None, Some(format!("Bearer {DEMO_API_KEY}"))] {
            let mut r = http
                .post(&url)
                .header("usenewsearch", "true")
                .json(&search_body(1, 10));
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            assert_eq!(r.send().await.unwrap().status(), 401);
        }
        // No usenewsearch: 200 with an empty body.
        let r = post(
            &http,
            &sim,
            "ActionLog/ActionLogGetByParametersV2",
            &search_body(1, 10),
            false,
        )
        .await;
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap().is_empty());
        // No paramsFieldsDto: 500.
        let mut b = search_body(1, 10);
        b.as_object_mut().unwrap().remove("paramsFieldsDto");
        let r = search(&http, &sim, &b).await;
        assert_eq!(r.status(), 500);
        // No date range: 417.
        let mut b = search_body(1, 10);
        b.as_object_mut().unwrap().remove("startDate");
        let r = search(&http, &sim, &b).await;
        assert_eq!(r.status(), 417);
        assert!(r.text().await.unwrap().contains("Invalid Date Range"));
        // Parent scope without the child flag: the home organization's own rows only.
        let mut b = search_body(1, 1000);
        b["showChildOrganizations"] = json!(false);
        let r = search(&http, &sim, &b).await;
        assert_eq!(r.status(), 200);
        let rows: Vec<Value> = r.json().await.unwrap();
        let home = sim.dataset().parent.id.clone();
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|r| r["organizationId"] == json!(home)));
        // Without a home organization of its own, a parent-scope search without the child
        // flag is a 500 (reference §1.3).
        let mut config = SimConfig::demo(now());
        config.home_computers = 0;
        let bare = PortalSim::start(Dataset::generate(config), DEMO_API_KEY).await;
        let r = search(&http, &bare, &b).await;
        assert_eq!(r.status(), 500);
    }

    #[tokio::test]
    async fn action_log_pages_cover_every_event_once_with_a_pagination_header() {
        let (sim, http) = portal().await;
        let total: u64 = (0..sim.dataset().orgs.len())
            .map(|o| sim.dataset().event_count(o))
            .sum();
        let mut seen = std::collections::HashSet::new();
        let mut page = 1;
        loop {
            let r = search(&http, &sim, &search_body(page, 100)).await;
            assert_eq!(r.status(), 200);
            let meta: Value =
                serde_json::from_str(r.headers()["pagination"].to_str().unwrap()).unwrap();
            assert_eq!(meta["totalItems"], json!(total));
            let rows: Vec<Value> = r.json().await.unwrap();
            for row in &rows {
                assert!(seen.insert(row["actionLogId"].as_i64().unwrap()));
            }
            if rows.len() < 100 {
                break;
            }
            page += 1;
        }
        assert_eq!(seen.len() as u64, total);
        // Scoped to one organization with the header.
        let org = sim.dataset().orgs[1].id.clone();
        let r = http
            .post(format!(
                "{}/portalapi/ActionLog/ActionLogGetByParametersV2",
                sim.uri()
            ))
            .header("Authorization", DEMO_API_KEY)
            .header("usenewsearch", "true")
            .header("managedOrganizationId", &org)
            .json(&search_body(1, 1000))
            .send()
            .await
            .unwrap();
        let rows: Vec<Value> = r.json().await.unwrap();
        assert_eq!(rows.len() as u64, sim.dataset().event_count(1));
        assert!(rows.iter().all(|r| r["organizationId"] == json!(org)));
    }

    #[tokio::test]
    async fn approvals_need_status_and_encode_reasons_and_the_permit_flow_is_strict() {
        let (sim, http) = portal().await;
        let r = post(
            &http,
            &sim,
            "ApprovalRequest/ApprovalRequestGetByParameters",
            &json!({"pageNumber": 1, "pageSize": 50, "showChildOrganizations": true}),
            false,
        )
        .await;
        assert_eq!(r.status(), 500);
        let r = post(&http, &sim, "ApprovalRequest/ApprovalRequestGetByParameters", &json!({"statusId": 1, "pageNumber": 1, "pageSize": 50, "showChildOrganizations": true}), false).await;
        let rows: Vec<Value> = r.json().await.unwrap();
        // Five requests in the client organizations, one in the MSP's own.
        assert_eq!(rows.len(), 6);
        let zoom = rows
            .iter()
            .find(|r| r["path"].as_str().unwrap().ends_with("zoom.exe"))
            .unwrap();
        let reason = base64::engine::general_purpose::STANDARD
            .decode(zoom["requestorReason"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(reason).unwrap(),
            "Need Zoom for the patient call at 3pm"
        );
        let count = http
            .get(format!("{}/portalapi/ApprovalRequest/ApprovalRequestGetCount?includeChildOrganizations=true", sim.uri()))
            .header("Authorization", DEMO_API_KEY)
            .send().await.unwrap().text().await.unwrap();
        assert_eq!(count, "6");

        let id = zoom["approvalRequestId"].as_str().unwrap();
        let dto: Value = http
            .get(format!("{}/portalapi/ApprovalRequest/ApprovalRequestGetPermitApplicationById?approvalRequestId={id}", sim.uri()))
            .header("Authorization", DEMO_API_KEY)
            .send().await.unwrap().json().await.unwrap();
        let m: Value = post(
            &http,
            &sim,
            "Application/ApplicationGetMatchingList",
            &json!({"sha256": dto["fileDetails"]["sha256"], "path": dto["fileDetails"]["fullPath"], "approvalRequestId": id}),
            false,
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(m["hasMatching"], json!(true));
        let mut body = dto.clone();
        body["isFromApproval"] = json!(true);
        body["hasOriginApprovalCenter"] = json!(true);
        body["matchingApplications"]["useMatchingApplication"] = json!(true);
        body["matchingApplications"]["matchingApplication"] = m["matchingApplications"][0].clone();
        // No userInstance → opaque 500.
        assert_eq!(permit(&http, &sim, &body).await, 500);
        body["userInstance"] = json!("g");
        // Stripped null → opaque 500.
        let mut stripped = body.clone();
        stripped
            .as_object_mut()
            .unwrap()
            .remove("policyExpirationDate");
        assert_eq!(permit(&http, &sim, &stripped).await, 500);
        // toComputer → 417.
        let mut to_computer = body.clone();
        to_computer["policyLevel"]["toComputer"] = json!(true);
        assert_eq!(permit(&http, &sim, &to_computer).await, 417);
        // The real thing.
        assert_eq!(permit(&http, &sim, &body).await, 200);
        assert_eq!(sim.approval_status(id), Some(4));
        let again = post(
            &http,
            &sim,
            "ApprovalRequest/ApprovalRequestPermitApplication",
            &body,
            false,
        )
        .await;
        assert_eq!(again.status(), 400);
        assert!(again
            .text()
            .await
            .unwrap()
            .contains("Approval Request already actioned by "));
        assert_eq!(sim.permits().len(), 1);
        assert_eq!(sim.permits()[0].scope, "computer");
    }

    #[tokio::test]
    async fn built_in_matching_apps_need_entire_organization_scope() {
        let (sim, http) = portal().await;
        let chrome = sim
            .dataset()
            .approvals
            .iter()
            .find(|a| a.app == data::app::CHROMESETUP)
            .unwrap()
            .id
            .clone();
        let dto: Value = http
            .get(format!("{}/portalapi/ApprovalRequest/ApprovalRequestGetPermitApplicationById?approvalRequestId={chrome}", sim.uri()))
            .header("Authorization", DEMO_API_KEY)
            .send().await.unwrap().json().await.unwrap();
        let m: Value = post(
            &http,
            &sim,
            "Application/ApplicationGetMatchingList",
            &json!({"sha256": dto["fileDetails"]["sha256"], "path": dto["fileDetails"]["fullPath"]}),
            false,
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(
            m["matchingApplications"][0]["organizationName"],
            json!("master")
        );
        let mut body = dto;
        body["userInstance"] = json!("g");
        body["isFromApproval"] = json!(true);
        body["hasOriginApprovalCenter"] = json!(true);
        body["matchingApplications"]["useMatchingApplication"] = json!(true);
        body["matchingApplications"]["matchingApplication"] = m["matchingApplications"][0].clone();
        assert_eq!(permit(&http, &sim, &body).await, 401);
        body["policyLevel"]["toEntireOrganization"] = json!(true);
        assert_eq!(permit(&http, &sim, &body).await, 200);
        assert_eq!(sim.permits()[0].scope, "organization");
    }

    #[tokio::test]
    async fn faults_hit_the_chosen_page_then_clear() {
        let (sim, http) = portal().await;
        sim.inject(Fault::on_page("ActionLogGetByParametersV2", 2, 503, 1));
        let r = search(&http, &sim, &search_body(1, 50)).await;
        assert_eq!(r.status(), 200);
        let r = search(&http, &sim, &search_body(2, 50)).await;
        assert_eq!(r.status(), 503);
        let r = search(&http, &sim, &search_body(2, 50)).await;
        assert_eq!(r.status(), 200);
        sim.inject(Fault::rate_limit_storm(2));
        for _ in 0..2 {
            let r = search(&http, &sim, &search_body(1, 5)).await;
            assert_eq!(r.status(), 429);
            assert_eq!(r.headers()["retry-after"], "0");
        }
        assert_eq!(
            sim.stats().per_route["ActionLog/ActionLogGetByParametersV2"],
            5
        );
    }

    #[tokio::test]
    async fn connectwise_creates_finds_and_notes_tickets() {
        let sim = ConnectWiseSim::start(CwCredentials::default()).await;
        let c = sim.credentials().clone();
        let http = reqwest::Client::new();
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}+{}:{}",
                c.company_id, c.public_key, c.private_key
            ))
        );
        let base = format!("{}/v4_6_release/apis/3.0", sim.uri());
        let r = http
            .post(format!("{base}/service/tickets"))
            .header("Authorization", &auth)
            .json(&json!({"summary": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "clientId is required");
        let r = http
            .post(format!("{base}/service/tickets"))
            .header("Authorization", &auth)
            .header("clientId", &c.client_id)
            .json(&json!({"summary": "a".repeat(101)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = http.post(format!("{base}/service/tickets")).header("Authorization", &auth).header("clientId", &c.client_id)
            .json(&json!({"summary": "AnyDesk blocked", "externalXRef": "tl:1", "company": {"id": 250}})).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        let found: Vec<Value> = http
            .get(format!("{base}/service/tickets"))
            .query(&[("conditions", r#"externalXRef="tl:1" and closedFlag=false"#)])
            .header("Authorization", &auth)
            .header("clientId", &c.client_id)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["id"], json!(id));
        let r = http
            .post(format!("{base}/service/tickets/{id}/notes"))
            .header("Authorization", &auth)
            .header("clientId", &c.client_id)
            .json(&json!({"text": "again"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "a placement flag is required");
        let r = http
            .post(format!("{base}/service/tickets/{id}/notes"))
            .header("Authorization", &auth)
            .header("clientId", &c.client_id)
            .json(&json!({"text": "again", "internalAnalysisFlag": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        sim.close(id);
        let found: Vec<Value> = http
            .post(format!("{base}/service/tickets/search"))
            .header("Authorization", &auth)
            .header("clientId", &c.client_id)
            .json(&json!({"conditions": r#"externalXRef="tl:1" and closedFlag=false"#}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(found.is_empty());
        assert_eq!(sim.tickets()[0].notes, vec!["again".to_owned()]);
    }
}
