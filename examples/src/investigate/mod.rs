//! `tl-investigate`'s library: the audit-log investigations of an incident responder over the
//! whole fleet.
//!
//! - [`reports::Investigator`] runs the fleet queries (action-log search, action detail, file
//!   history, approvals, computers) and hands the rows to the engine's pure analyses
//!   (`policy_engine::investigate`), returning report types.
//! - [`output`] renders any report as a terminal table, JSON or CSV (untrusted text made safe
//!   for each).
//! - [`time`] parses the command line's UTC times and relative forms.
//! - [`progress`] shows long pulls on stderr when it is a terminal.
//! - [`cli`] is the command line; the binary only calls [`cli::main`].
//!
//! The Portal API's real shape drives the queries (reference §3.1, §6): the search has no
//! free-text or hash filter (hash pivots scan the period and filter client-side), file history
//! is per computer and per path, and an action's detail is fetched by its `eActionLogId` string.

pub mod cli;
pub mod output;
pub mod progress;
pub mod reports;
pub mod time;

pub use output::{render, Format, Render};
pub use reports::{
    BypassReport, DenialsReport, FileReport, InvestigateError, Investigator, ShowReport,
    TimelineReport,
};
