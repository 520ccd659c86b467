//! # threatlocker-api
//!
//! A typed async client for the ThreatLocker Portal API, written against the API as it really
//! behaves (required headers, bare-array bodies, empty/`null` results, base64 request reasons,
//! zone-less timestamps) rather than against its incomplete Swagger.
//!
//! What it is for: reading the action log, approval requests, computers, organizations,
//! applications, policies, the system audit and maintenance windows, and acting on approval
//! requests and policies, from Rust tools of an MSP. What it is not: a policy engine (see the
//! `policy-engine` crate) or a PSA connector.
//!
//! Shape: [`Client`] holds configuration and shared limits; each resource has a small handle
//! (`client.audit()`, `client.approvals()`, ...) whose calls build a [`PreparedRequest`] with a
//! pure function and send it. Calls with optional parameters return a builder ending in
//! `.send()` (one page) or `.stream()` (every page).
//!
//! Transport: every call goes through [`Client::execute`], which waits for the client-side rate
//! and concurrency limits (shared by clones), and retries per the pure
//! [`RetryPolicy::decide`]: reads on transient failures with full-jitter backoff or the
//! server's `Retry-After`, writes only when the connection was refused (never sent). Lists
//! stream every page lazily (reference §2.3: pagination header, short/empty/`null` pages,
//! de-duplication by id, a page cap), fetching the next page while the current one is used.
//!
//! Read endpoints live in [`endpoints`], one module per resource; each adds methods to its
//! handle. Anything not modelled yet is reachable with [`Client::get_json`],
//! [`Client::search_json`] and [`Client::post_json`].
//!
//! Without the default `client` feature the crate is only the models, typed IDs, code tables,
//! timestamp parsing and the pagination header type, with no HTTP or async runtime dependency.
//!
//! Everything the public API exposes is re-exported ([`chrono`], [`serde_json`], and with the
//! client [`futures_util`], [`url`] and the [`Stream`]/[`StreamExt`]/[`TryStreamExt`] traits),
//! and [`prelude`] brings the common names into scope, so an embedder needs only this crate and
//! `tokio` in `Cargo.toml`:
//!
//! ```no_run
//! use threatlocker_api::prelude::*;
//!
//! # async fn f() -> threatlocker_api::Result<()> {
//! let client = Client::builder("api key").instance("g").build()?;
//! let mut pending = client.approvals().search(ApprovalStatus::Pending).stream();
//! while let Some(request) = pending.try_next().await? {
//!     println!("{:?} asks for {:?}", request.username, request.path);
//! }
//! # Ok(()) }
//! ```
//!
//! Untrusted answers: broken strings (a lone UTF-16 surrogate escape, raw control characters,
//! invalid UTF-8) are decoded with U+FFFD in their place ([`repair`]); a body that is not JSON,
//! larger than [`ClientBuilder::max_response_bytes`], or a page that contradicts the pagination
//! header is an error ([`Error::NotJson`], [`Error::ResponseTooLarge`], [`Error::PageMismatch`]),
//! never rows silently lost. Every call runs in a `threatlocker_request` `tracing` span
//! (endpoint, attempt, status, wait); the key is never recorded.
#![cfg_attr(docsrs, feature(doc_cfg))]
// The crate docs link to the client; without it those items do not exist.
#![cfg_attr(not(feature = "client"), allow(rustdoc::broken_intra_doc_links))]

/// Builder setters that consume and return `self`, one line each:
/// `/// doc` `name(arg: Type) = value;` becomes
/// `pub fn name(mut self, arg: Type) -> Self { self.name = value; self }`.
/// Defined before the modules so that every one of them can use it.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident($arg:ident: $ty:ty) = $value:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $arg: $ty) -> Self {
                self.$name = $value;
                self
            }
        )*
    };
}

pub mod codes;
pub mod de;
pub mod error;
pub mod ids;
pub mod models;
pub mod repair;
pub mod request;
pub mod retry;
pub mod time;
mod write;

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
mod decode;
#[cfg(feature = "client")]
pub mod endpoints;
#[cfg(feature = "client")]
mod handles;
#[cfg(feature = "client")]
mod limits;
#[cfg(feature = "client")]
mod stream;

#[cfg(feature = "client")]
pub use client::{
    Client, ClientBuilder, RawResponse, Sleeper, TokioSleeper, DEFAULT_DEDUPE_WINDOW,
    DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_PAGES, DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_PAGE_SIZE, DEFAULT_TIMEOUT,
};
pub use codes::*;
#[cfg(feature = "client")]
pub use endpoints::{
    applications::{ApplicationSearch, SearchBy},
    approvals::ApprovalSearch,
    audit::{AuditGet, AuditSearch, Enforcement, FileHistory},
    computers::{ComputerList, ComputerSearchBy},
    maintenance::MaintenanceHistory,
    organizations::ChildOrganizations,
    policies::PolicyList,
    system_audit::SystemAuditSearch,
    tags::TagDropdown,
};
pub use error::{Error, Result, TransportKind};
#[cfg(feature = "client")]
pub use handles::{
    Applications, Approvals, Audit, Computers, Maintenance, Organizations, Policies, SystemAudit,
    Tags,
};
pub use ids::*;
pub use models::*;

pub use chrono;
#[cfg(feature = "client")]
pub use futures_util;
#[cfg(feature = "client")]
pub use futures_util::{Stream, StreamExt, TryStreamExt};
pub use serde_json;
#[cfg(feature = "client")]
pub use url;

/// The names most programs need: `use threatlocker_api::prelude::*;`.
///
/// The client and its errors, the common models, IDs and codes, `chrono`'s `DateTime`, `Utc`
/// and `TimeDelta`, and (with the client) the stream traits whose methods (`try_next`,
/// `try_collect`, `next`, ...) consume `.stream()`.
pub mod prelude {
    pub use crate::codes::{ActionOutcome, ApprovalStatus, ComputerMode, OsType, SourceTable};
    pub use crate::error::{Error, Result};
    pub use crate::ids::{
        ActionLogId, ApplicationId, ApprovalRequestId, ComputerId, EActionLogId, OrganizationId,
        PolicyId,
    };
    pub use crate::models::{
        ActionLogRow, Application, ApprovalRequest, Computer, MaintenanceWindow, Organization,
        Page, Policy, SystemAuditEntry,
    };
    pub use chrono::{DateTime, TimeDelta, Utc};

    #[cfg(feature = "client")]
    pub use crate::client::Client;
    #[cfg(feature = "client")]
    pub use crate::endpoints::audit::Enforcement;
    #[cfg(feature = "client")]
    pub use crate::retry::RetryPolicy;
    #[cfg(feature = "client")]
    pub use futures_util::{Stream, StreamExt, TryStreamExt};
}
pub use request::{Method, PreparedRequest, Safety};
pub use retry::{RetryDecision, RetryPolicy};
pub use write::{
    build_permit_body, prepare_application_insert, prepare_hash_rule_insert, prepare_ignore,
    prepare_maintenance_end, prepare_maintenance_insert, prepare_permit, prepare_policy_delete,
    prepare_policy_deploy, prepare_policy_insert, prepare_policy_update, prepare_reject,
    prepare_take_ownership, AdminNotes, ApplicationChoice, ApplicationOptionsQuery, IgnoreOptions,
    MaintenanceApplication, MaintenanceEnd, MaintenanceRequest, NewApplication, NewPolicy,
    PermitOptions, PermitOutcome, PermitPlan, PermitResponse, PermitRule, PermitScope, PolicyRef,
    RejectOptions,
};
