//! Builders for test inputs (the models are `#[non_exhaustive]`: build from `Default`).
#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use policy_engine::{Engine, EngineConfig, Input, PendingApproval};
use threatlocker_api::{
    ActionLogId, ActionLogRow, ActionOutcome, Application, ApprovalRequest, ApprovalStatus,
    Computer, ComputerMode, Organization, ResearchDetails,
};

pub const ORG: &str = "org-contoso";
pub const ORG2: &str = "org-widget";

pub fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 14, 12, 0, 0).unwrap() + Duration::minutes(minutes)
}

/// A row builder.
#[derive(Clone, Debug)]
pub struct R(pub ActionLogRow);

impl R {
    /// A permit of `c:\program files\app\app.exe` on WS-1 by CONTOSO\jsmith at t(id minutes).
    pub fn new(id: i64) -> Self {
        let mut r = ActionLogRow::default();
        r.action_log_id = Some(ActionLogId(id));
        r.organization_id = Some(ORG.into());
        r.organization_name = Some("Contoso Dental".into());
        r.computer_id = Some("comp-1".into());
        r.hostname = Some("WS-1".into());
        r.username = Some("CONTOSO\\jsmith".into());
        r.date_time = Some(t(id % 500));
        r.full_path = Some("c:\\program files\\app\\app.exe".into());
        r.action_type = Some("execute".into());
        r.action_id = Some(ActionOutcome::Permit);
        r.is_monitor_mode = Some(false);
        Self(r)
    }
    /// [`R::new`] on a computer of its own: `c<id>` / `WS-<id>`.
    pub fn on(id: i64) -> Self {
        Self::new(id).host(&format!("c{id}"), &format!("WS-{id}"))
    }
    pub fn at(mut self, m: i64) -> Self {
        self.0.date_time = Some(t(m));
        self
    }
    pub fn org(mut self, org: &str) -> Self {
        self.0.organization_id = Some(org.into());
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
    pub fn ringfenced(mut self) -> Self {
        self.0.action_id = Some(ActionOutcome::Ringfenced);
        self
    }
    pub fn process(mut self, p: &str) -> Self {
        self.0.process_path = Some(p.into());
        self
    }
    pub fn data(mut self, d: &str) -> Self {
        self.0.data = Some(d.into());
        self
    }
    pub fn policy(mut self, id: &str, name: &str) -> Self {
        self.0.policy_id = Some(id.into());
        self.0.policy_name = Some(name.into());
        self
    }
    pub fn cert(mut self, subject: &str) -> Self {
        self.0.cert = Some(subject.into());
        self.0.cert_exists = Some(true);
        self
    }
    /// The row's application is a ThreatLocker built-in.
    pub fn built_in(mut self) -> Self {
        self.0.application_is_built_in = Some(true);
        self
    }
    pub fn no_user(mut self) -> Self {
        self.0.username = None;
        self
    }
    pub fn build(self) -> ActionLogRow {
        self.0
    }
}

pub fn computer(id: &str, name: &str, mode: ComputerMode) -> Computer {
    let mut c = Computer::default();
    c.computer_id = Some(id.into());
    c.computer_name = Some(name.into());
    c.hostname = Some(name.into());
    c.organization_id = Some(ORG.into());
    c.mode = Some(mode);
    c
}

pub fn orgs() -> Vec<Organization> {
    let mut a = Organization::default();
    a.organization_id = Some(ORG.into());
    a.name = Some("Contoso Dental".into());
    let mut b = Organization::default();
    b.organization_id = Some(ORG2.into());
    b.name = Some("Widget Inc".into());
    vec![a, b]
}

pub fn input(rows: Vec<ActionLogRow>) -> Input {
    Input::new(t(600), t(0), t(600))
        .with_events(rows)
        .with_organizations(orgs())
}

pub fn engine() -> Engine {
    Engine::new(config()).unwrap()
}

/// Default config with auto-approval of Communication/Productivity and recipients set.
pub fn config() -> EngineConfig {
    let mut c = EngineConfig::default();
    c.org_variables.threatlocker_auto_approve_categories =
        vec!["Communication".into(), "Productivity".into()];
    c.org_variables.threatlocker_notification_recipients = vec!["soc@msp.example".into()];
    c
}

pub fn request(id: &str) -> ApprovalRequest {
    let mut r = ApprovalRequest::default();
    r.approval_request_id = Some(id.into());
    r.organization_id = Some(ORG.into());
    r.organization_name = Some("Contoso Dental".into());
    r.computer_id = Some("comp-1".into());
    r.hostname = Some("WS-1".into());
    r.username = Some("CONTOSO\\jsmith".into());
    r.path = Some("c:\\program files\\zoom\\bin\\zoom.exe".into());
    r.sha256 = Some("aa11".into());
    r.status_id = Some(ApprovalStatus::Pending);
    r.json = Some(
        r#"{"certs":[{"subject":"CN=\"Zoom Video Communications, Inc.\", O=Zoom","sha":"ff"}]}"#
            .into(),
    );
    r
}

pub fn research(categories: &[&str]) -> ResearchDetails {
    let mut r = ResearchDetails::default();
    r.categories = categories.iter().map(|s| (*s).to_owned()).collect();
    r
}

pub fn app(name: &str) -> Application {
    let mut a = Application::default();
    a.application_id = Some("app-zoom".into());
    a.name = Some(name.into());
    a
}

pub fn pending(req: ApprovalRequest, categories: Option<&[&str]>) -> PendingApproval {
    let p = PendingApproval::new(req).with_application(app("Zoom Meeting Client"));
    match categories {
        Some(c) => p.with_research(research(c)),
        None => p,
    }
}

/// A request for a signed built-in Web Browsers installer (Chrome), as the API sends it: no
/// `sha256` field of its own, the SHA-256 and certificates inside `json`.
pub fn browser_request(id: &str, sha: &str) -> ApprovalRequest {
    let mut r = request(id);
    r.path = Some("c:\\users\\jsmith\\downloads\\chromesetup.exe".into());
    r.sha256 = None;
    r.hash = None;
    r.json = Some(format!(
        r#"{{"fullPath":"c:\\users\\jsmith\\downloads\\chromesetup.exe","sha256":"{sha}","hash":"tl-{sha}","certs":[{{"sha":"aa","subject":"CN=Google LLC, O=Google LLC","validCert":true}}],"actionType":"execute"}}"#
    ));
    r
}

/// A built-in (master-owned) Web Browsers application with research.
pub fn browser(req: ApprovalRequest) -> PendingApproval {
    let mut a = app("Google Chrome");
    a.application_id = Some("app-chrome".into());
    a.is_built_in = Some(true);
    a.organization_name = Some("master".into());
    PendingApproval::new(req)
        .with_application(a)
        .with_research(research(&["Web Browsers"]))
}
