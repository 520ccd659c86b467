//! A known data set: rows, approvals, computers and organizations, with the runs' activity
//! recorded in a real (in-memory) state store.
#![allow(dead_code)]

use chrono::{DateTime, Duration, DurationRound, Utc};
use examples::monitor::report::{compute, Activity, ComputeOptions, DailyReport};
use examples::state::{IntentKind, StateStore};
use policy_engine::{Decisions, Engine, EngineConfig, Input, PendingApproval};
use serde_json::json;
use threatlocker_api::{
    ActionLogId, ActionLogRow, ActionOutcome, Application, ApprovalRequest, ApprovalStatus,
    Computer, ComputerMode, Organization, ResearchDetails,
};

pub const ORG: &str = "org-contoso";
pub const ORG2: &str = "org-widget";

/// The period's start: eight whole hours before the current hour, so the state store's real
/// timestamps (written now, or in the next hour) fall inside `[start, start + 10h)`.
pub fn base() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::hours(8)
}

pub fn t(minutes: i64) -> DateTime<Utc> {
    base() + Duration::minutes(minutes)
}

#[derive(Clone, Debug)]
pub struct R(pub ActionLogRow);

impl R {
    /// A permit of app.exe on WS-1 (Contoso) by CONTOSO\jsmith at t(minutes).
    pub fn new(id: i64, minutes: i64) -> Self {
        let mut r = ActionLogRow::default();
        r.action_log_id = Some(ActionLogId(id));
        r.organization_id = Some(ORG.into());
        r.organization_name = Some("Contoso Dental".into());
        r.computer_id = Some("comp-1".into());
        r.hostname = Some("WS-1".into());
        r.username = Some("CONTOSO\\jsmith".into());
        r.date_time = Some(t(minutes));
        r.full_path = Some("c:\\program files\\app\\app.exe".into());
        r.action_type = Some("execute".into());
        r.action_id = Some(ActionOutcome::Permit);
        r.is_monitor_mode = Some(false);
        Self(r)
    }
    pub fn org2(mut self) -> Self {
        self.0.organization_id = Some(ORG2.into());
        self.0.organization_name = Some("Widget Inc".into());
        self
    }
    pub fn host(mut self, id: &str, name: &str) -> Self {
        self.0.computer_id = Some(id.into());
        self.0.hostname = Some(name.into());
        self
    }
    pub fn user(mut self, u: &str) -> Self {
        self.0.username = Some(u.into());
        self
    }
    pub fn path(mut self, p: &str) -> Self {
        self.0.full_path = Some(p.into());
        self
    }
    pub fn app_name(mut self, n: &str) -> Self {
        self.0.application_name = Some(n.into());
        self
    }
    pub fn sha(mut self, h: &str) -> Self {
        self.0.sha256_hash = Some(h.into());
        self
    }
    pub fn block(mut self) -> Self {
        self.0.action_id = Some(ActionOutcome::Deny);
        self.0.is_monitor_mode = Some(false);
        self
    }
    pub fn audit(mut self) -> Self {
        self.0.action_id = Some(ActionOutcome::Deny);
        self.0.is_monitor_mode = Some(true);
        self
    }
    pub fn build(self) -> ActionLogRow {
        self.0
    }
}

pub fn computer(id: &str, name: &str, org: &str, mode: Option<ComputerMode>) -> Computer {
    let mut c = Computer::default();
    c.computer_id = Some(id.into());
    c.computer_name = Some(name.into());
    c.hostname = Some(name.into());
    c.organization_id = Some(org.into());
    c.mode = mode;
    c
}

pub fn organization(id: &str, name: &str) -> Organization {
    let mut o = Organization::default();
    o.organization_id = Some(id.into());
    o.name = Some(name.into());
    o
}

pub fn request(id: &str, org: &str, path: &str, sha: &str, user: &str) -> ApprovalRequest {
    let mut r = ApprovalRequest::default();
    r.approval_request_id = Some(id.into());
    r.organization_id = Some(org.into());
    r.computer_id = Some("comp-1".into());
    r.hostname = Some("WS-1".into());
    r.username = Some(user.into());
    r.path = Some(path.into());
    r.sha256 = Some(sha.into());
    r.status_id = Some(ApprovalStatus::Pending);
    r
}

pub fn pending(req: ApprovalRequest, app_name: &str, categories: &[&str]) -> PendingApproval {
    let mut a = Application::default();
    a.application_id = Some(format!("app-{app_name}").into());
    a.name = Some(app_name.into());
    let mut research = ResearchDetails::default();
    research.categories = categories.iter().map(|s| (*s).to_owned()).collect();
    PendingApproval::new(req)
        .with_application(a)
        .with_research(research)
}

pub fn engine() -> Engine {
    let mut c = EngineConfig::default();
    c.org_variables.threatlocker_auto_approve_categories = vec!["Communication".into()];
    c.org_variables.threatlocker_block_alert_threshold = 3;
    c.org_variables.threatlocker_notification_recipients = vec!["soc@msp.example".into()];
    Engine::new(c).unwrap()
}

/// The known data set:
/// - evil.exe (sha e1) blocked 4 times on WS-1 (Contoso, jsmith): a repeat block;
/// - tool.exe (sha t2) blocked once on WS-2 (Widget, mwilson);
/// - one audit-only deny on WS-3 (Secure): a policy bypass;
/// - two permits; one row re-sent (same id); one row before the period;
/// - requests r-1 (Communication: auto-approve) and r-2 (Games: review);
/// - computers WS-1 Learning, WS-2 no mode, WS-3 Secure.
pub fn input() -> Input {
    let rows = vec![
        R::new(1, 10)
            .sha("e1")
            .path("c:\\users\\j\\evil.exe")
            .block()
            .build(),
        R::new(2, 20)
            .sha("e1")
            .path("c:\\users\\j\\evil.exe")
            .block()
            .build(),
        R::new(3, 70)
            .sha("e1")
            .path("c:\\users\\j\\evil.exe")
            .block()
            .build(),
        R::new(4, 130)
            .sha("e1")
            .path("c:\\users\\j\\evil.exe")
            .block()
            .build(),
        // Re-sent row: same actionLogId as row 1.
        R::new(1, 10)
            .sha("e1")
            .path("c:\\users\\j\\evil.exe")
            .block()
            .build(),
        R::new(6, 65)
            .org2()
            .host("comp-2", "WS-2")
            .user("WIDGET\\mwilson")
            .sha("t2")
            .path("c:\\tools\\tool.exe")
            .block()
            .build(),
        R::new(7, 100)
            .host("comp-3", "WS-3")
            .path("c:\\x\\audit.exe")
            .audit()
            .build(),
        R::new(8, 200).build(),
        R::new(9, 300).build(),
        // Before the period.
        R::new(10, -30).sha("e1").block().build(),
    ];
    let approvals = vec![
        pending(
            {
                // Signed (the certificates are in the request's json): a known-good file.
                let mut r = request(
                    "r-1",
                    ORG,
                    "c:\\program files\\zoom\\zoom.exe",
                    "z1",
                    "CONTOSO\\jsmith",
                );
                r.json = Some(
                    r#"{"certs":[{"subject":"CN=Zoom Video Communications, Inc.","validCert":true}]}"#
                        .into(),
                );
                r
            },
            "Zoom",
            &["Communication"],
        ),
        pending(
            request("r-2", ORG2, "c:\\games\\game.exe", "g1", "WIDGET\\mwilson"),
            "Game",
            &["Games"],
        ),
    ];
    let computers = vec![
        computer("comp-1", "WS-1", ORG, Some(ComputerMode::Learning)),
        computer("comp-2", "WS-2", ORG2, None),
        computer("comp-3", "WS-3", ORG, Some(ComputerMode::Secure)),
    ];
    Input::new(t(600), t(0), t(600))
        .with_events(rows)
        .with_approvals(approvals)
        .with_computers(computers)
        .with_organizations(vec![
            organization(ORG, "Contoso Dental"),
            organization(ORG2, "Widget Inc"),
        ])
}

/// The runs' activity: r-1 permitted and deployed, one ticket per detection opened (the first
/// also noted), through the real state store.
pub fn record_activity(store: &StateStore, decisions: &Decisions) {
    let done = |kind, key: &str, payload: serde_json::Value, result: Option<&str>| {
        store.begin_intent(kind, key, &payload, None).unwrap();
        store.complete_intent(key, result).unwrap();
    };
    done(
        IntentKind::Permit,
        "permit:r-1",
        json!({"request_id": "r-1", "organization_id": ORG, "application": "Zoom", "scope": "computer", "rule": "auto_approve.category"}),
        Some("permitted"),
    );
    done(
        IntentKind::PolicyDeploy,
        "deploy:org-contoso:r-1",
        json!({"organization_id": ORG, "requests": ["r-1"]}),
        None,
    );
    for (i, t) in decisions.tickets.iter().enumerate() {
        let id = format!("T-{}", 100 + i);
        done(
            IntentKind::Ticket,
            &format!("ticket:{}", t.dedupe_key),
            json!({"ticket": {"external_ref": t.dedupe_key, "summary": t.summary}, "last_seen": null}),
            Some(&id),
        );
        if i == 0 {
            done(
                IntentKind::Note,
                &format!("note:{}:2026-01-01T00:00:00Z", t.dedupe_key),
                json!({"ticket_id": id, "note": "seen again"}),
                None,
            );
        }
    }
}

/// Everything for one report: input, decisions, activity, report.
pub struct Known {
    pub input: Input,
    pub decisions: Decisions,
    pub activity: Activity,
    pub report: DailyReport,
}

pub fn known() -> Known {
    let input = input();
    let decisions = engine().evaluate(&input);
    let store = StateStore::open_in_memory().unwrap();
    record_activity(&store, &decisions);
    let intents = store.intents(None, None).unwrap();
    let activity = Activity::from_intents(&intents, input.window_start, input.window_end);
    let mut options = ComputeOptions::default();
    options.timezone = "Europe/Berlin".into();
    let report = compute(&input, &decisions, &activity, &options, Vec::new());
    Known {
        input,
        decisions,
        activity,
        report,
    }
}
