//! What the caller hands the engine.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use threatlocker_api::{
    ActionLogRow, Application, ApprovalRequest, Computer, Organization, ResearchDetails,
};

/// Everything one evaluation looks at. The engine never reads the clock: `now` is the caller's.
///
/// Only events with `window_start <= dateTime < window_end` count (half-open, so consecutive
/// windows never count a row twice); rows without a `dateTime` are ignored and counted in
/// [`Ignored::undated_rows`](crate::Ignored::undated_rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Input {
    /// The run's "now" (used for report times and nothing else).
    pub now: DateTime<Utc>,
    /// Window start (inclusive).
    pub window_start: DateTime<Utc>,
    /// Window end (exclusive).
    pub window_end: DateTime<Utc>,
    /// Action-log rows, across every organization in scope, in any order, duplicates allowed.
    pub events: Vec<ActionLogRow>,
    /// Pending approval requests with what is known about their applications.
    pub approvals: Vec<PendingApproval>,
    /// Computers (for their mode).
    pub computers: Vec<Computer>,
    /// Organizations (for their names); children are looked at too.
    pub organizations: Vec<Organization>,
}

impl Input {
    /// An input with no data for the window `[window_start, window_end)`.
    pub fn new(now: DateTime<Utc>, window_start: DateTime<Utc>, window_end: DateTime<Utc>) -> Self {
        Self {
            now,
            window_start,
            window_end,
            events: Vec::new(),
            approvals: Vec::new(),
            computers: Vec::new(),
            organizations: Vec::new(),
        }
    }

    /// Sets the action-log rows.
    pub fn with_events(mut self, events: Vec<ActionLogRow>) -> Self {
        self.events = events;
        self
    }

    /// Sets the pending approvals.
    pub fn with_approvals(mut self, approvals: Vec<PendingApproval>) -> Self {
        self.approvals = approvals;
        self
    }

    /// Sets the computers.
    pub fn with_computers(mut self, computers: Vec<Computer>) -> Self {
        self.computers = computers;
        self
    }

    /// Sets the organizations.
    pub fn with_organizations(mut self, organizations: Vec<Organization>) -> Self {
        self.organizations = organizations;
        self
    }
}

/// A pending approval request with its matching application and that application's research
/// details, when the caller could look them up. Without research the categories are unknown and
/// the request goes to manual review.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingApproval {
    /// The request.
    pub request: ApprovalRequest,
    /// The matching application, if any.
    pub application: Option<Application>,
    /// The application's research details (categories), if known.
    pub research: Option<ResearchDetails>,
}

impl PendingApproval {
    /// A request with nothing known about its application.
    pub fn new(request: ApprovalRequest) -> Self {
        Self {
            request,
            application: None,
            research: None,
        }
    }

    /// Sets the matching application.
    pub fn with_application(mut self, application: Application) -> Self {
        self.application = Some(application);
        self
    }

    /// Sets the research details.
    pub fn with_research(mut self, research: ResearchDetails) -> Self {
        self.research = Some(research);
        self
    }
}
