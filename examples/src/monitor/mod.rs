//! `threatlocker-monitor`: the scheduled MSP workflow and the commands around it.
//!
//! - [`workflow`] runs the nine steps with every side effect exactly-once;
//! - [`cli`] parses the command line and runs `run` and `watch`; [`triggers`] is `watch`'s
//!   schedule (ticks, event-driven runs, the daily report);
//! - [`report`] computes and renders the daily report, [`report_cli`] is the `report` command;
//! - [`metrics`] records figures through the `metrics` facade (exported by `watch
//!   --metrics-addr`);
//! - [`doctor`] checks a configuration against the live tenant, PSA and notifiers;
//! - `demo` runs the real workflow against the simulators: no account needed (with the `demo`
//!   feature).

pub mod cli;
#[cfg(feature = "demo")]
pub mod demo;
pub mod doctor;
pub mod metrics;
pub mod report;
pub mod report_cli;
pub mod triggers;
pub mod workflow;
