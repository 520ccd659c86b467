//! # examples — the application layer
//!
//! The monitoring workflow an MSP runs every 30–60 minutes, built from the three library
//! crates: the `threatlocker-api` client reads the action log and approval requests across every
//! child organization, the `policy-engine` decides, and `psa-connectors` opens tickets and sends
//! notifications. This crate maps between them, keeps the state that makes side effects
//! exactly-once (an embedded SQLite file), and hosts the simulators `demo`, the tests and the
//! benchmark run against.
//!
//! What it is not: a library for other programs to build on (use the three crates directly), or
//! a place for decisions (they live in the pure engine, so they can be tested by table).
//!
//! Shape:
//!
//! - [`config`] parses the TOML file shared by every binary (keys named in every error, secrets
//!   only from the environment) and builds the ThreatLocker client from it;
//! - [`state`] is the SQLite store: intents recorded before and after every side effect, runs,
//!   processed windows, and generic checkpoints for feeds;
//! - [`workflow`] runs the nine steps; [`mapping`] turns the engine's plans into connector
//!   tickets and notifications; [`connect`] builds the PSA and notifiers from the configuration;
//! - [`cli`], `demo` and [`doctor`] are `threatlocker-monitor`'s commands;
//! - `sim` holds the loopback simulators of the ThreatLocker Portal API and ConnectWise PSA,
//!   and `demo` runs the workflow against them; both (and `wiremock`) only with the `demo`
//!   feature, on by default for the shipped binary and off for embedders
//!   (`default-features = false`);
//! - [`cli_common`] holds what every binary's command line shares (`--color`, `completions`,
//!   `man`, configuration discovery).
//!
//! The binaries in `src/bin/` only parse arguments and call into this library.

pub mod cli;
pub mod cli_common;
pub mod config;
pub mod connect;
#[cfg(feature = "demo")]
pub mod demo;
pub mod doctor;
pub mod investigate;
pub mod mapping;
pub mod siem;
#[cfg(feature = "demo")]
pub mod sim;
pub mod state;
pub mod workflow;

// The daily report and event-driven runs (issue 8).
pub mod cli_report;
pub mod report;
pub mod triggers;
