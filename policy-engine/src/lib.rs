//! # policy-engine
//!
//! The pure decision engine of the ThreatLocker MSP toolkit: ThreatLocker action-log rows,
//! pending approval requests, computers and organizations, plus an MSP's organization variables
//! and rules, in; decisions out — which requests to auto-approve (and which go to a technician,
//! with the reason), block counts and repeat blocks, detections with risk levels, one planned
//! ticket per incident with a stable dedupe key, planned policy changes and notifications — and
//! the monitoring report in the original workflow's shape.
//!
//! What it is for: the "brain" of the monitoring workflow, and a library MSP engineers embed in
//! their own automations. What it is not for: talking to anything. It does no I/O, never reads
//! the clock (the caller passes `now`), never spawns; the workflow (the `examples` crate) fetches
//! the inputs, applies the decisions, and reports back [`Outcomes`] for [`build_report`].
//!
//! Why it is shaped so: decisions must be explainable and reproducible. Every decision names the
//! rule that produced it (see the [rule table](rules::RULES)) and its evidence (action-log ids,
//! request ids, hashes); the same [`Input`] always gives byte-identical serialized
//! [`Decisions`] (every list has a total order); and the definitions behind every number are the
//! design's:
//!
//! - **event**: an action-log row de-duplicated by `actionLogId` (else `eActionLogId`), with a
//!   `dateTime` in `[window_start, window_end)`;
//! - **block**: `actionId` 2 or 3 and `isMonitorMode` not true; **audit-only**: `isMonitorMode`
//!   true;
//! - **application key**: `sha256Hash`, else `hash`, else the lower-cased `fullPath`;
//! - **repeat block**: an (application key, computer) pair with at least
//!   `threatlocker_block_alert_threshold` blocks in the window; **repeated denials**: a (user,
//!   computer) pair with at least that many blocks across applications;
//! - **known-good file**: trusted, or signed and a built-in (or researched) application; a
//!   request's SHA-256 and certificates are read from its `json` field too;
//! - **detection**: the same rows never yield two detections (the strongest rule owns them, the
//!   others are `also_matched`); **incident**: the detections on one (organization, computer),
//!   or (organization, file) for fleet spread, and the unit of a ticket;
//! - **auto-approval**: only detections implicating the file hold a known-good request whose
//!   categories fit; never-approve lists always win.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use policy_engine::{build_report, Engine, EngineConfig, Input, Outcomes};
//!
//! let engine = Engine::new(EngineConfig::default())?;
//! let now = Utc.with_ymd_and_hms(2026, 5, 14, 14, 0, 0).unwrap();
//! let input = Input::new(now, now - chrono::Duration::hours(24), now);
//! let decisions = engine.evaluate(&input);
//! let report = build_report(&decisions, &Outcomes::new(true));
//! assert!(report.success);
//! # Ok::<(), policy_engine::ConfigError>(())
//! ```
//!
//! Custom detections, in Rust ([`Rule`], [`Engine::with_rule`]) or in the configuration
//! (`[[rules.custom]]`, [`CustomRuleConfig`]), are described in [`custom`].
//!
//! The investigations (timeline, file spread, repeated denials, audit-only hits on Secure
//! computers) are pure functions in [`investigate`].

/// Sorts a slice by a key that may borrow from its items (which `sort_by_key` cannot express),
/// writing the key once: `sort_by_borrowed_key!(list, |x| (Reverse(x.count), &x.name))`.
macro_rules! sort_by_borrowed_key {
    ($v:expr, |$x:ident| $key:expr) => {
        $v.sort_by(|a, b| {
            let ka = {
                let $x = a;
                $key
            };
            let kb = {
                let $x = b;
                $key
            };
            ka.cmp(&kb)
        })
    };
}

mod accumulate;
mod config;
pub mod custom;
mod decisions;
mod detect;
mod engine;
mod fx;
mod input;
pub mod investigate;
mod report;
pub mod rules;
mod text;

pub use accumulate::{Accumulator, WindowState};
pub use config::{
    ApprovalScope, ConfigError, EngineConfig, OrgOverride, OrgVariables, RiskPriorities, Rules,
    DEFAULT_LOLBINS, DEFAULT_OFFICE_AND_BROWSERS, DEFAULT_USER_WRITABLE_PATHS,
};
pub use custom::{CustomAction, CustomRuleConfig, Finding, Rule, SecurityEventBuilder};
pub use decisions::{
    ApprovalDecision, BlockAnalysis, Decisions, DenialCount, Ignored, PlannedNotification,
    PlannedPolicyChange, PlannedTicket, RepeatBlock, SecurityEvent, Sighting, Urgency,
};
pub use engine::Engine;
pub use input::{Input, PendingApproval};
pub use report::{
    build_report, ApprovalOutcome, BlockedSummary, MonitoringReport, MonitoringSummary, Outcomes,
    ReportApproval, ReportSecurityEvent, ReportWindow, TicketOutcome,
};
pub use rules::RiskLevel;
