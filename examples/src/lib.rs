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
//! Shape: one folder per binary over a shared floor that imports none of them.
//!
//! - The floor: [`config`] parses the TOML file shared by every binary (keys named in every
//!   error, secrets only from the environment) and builds the ThreatLocker client and the
//!   engine from it; [`state`] is the store that makes side effects exactly-once (intents
//!   recorded before and after every side effect, runs, processed windows, checkpoints for
//!   feeds); [`connect`] builds the PSA and notifiers; [`mapping`] turns the engine's plans into
//!   connector tickets and notifications; [`process`] holds the exit codes, logging and runtime
//!   start-up; [`cli_common`] what every binary's command line shares (`--color`,
//!   `completions`, `man`, configuration discovery); [`time`] parses times of day; [`errors`]
//!   renders every error with its whole cause chain; [`shutdown`] turns SIGTERM and SIGINT into
//!   one cancellation the runs check between steps.
//! - The rooms: [`monitor`] is `threatlocker-monitor` (the workflow, `run`, `watch`, the daily
//!   report, `doctor`, `demo`); [`investigate`] is `tl-investigate`; [`siem`] is
//!   `siem-forward`.
//! - `sim` holds the loopback simulators of the ThreatLocker Portal API and ConnectWise PSA
//!   that `demo`, the tests and the benchmarks run against; it and `demo` (and `wiremock`)
//!   come only with the `demo` feature, on by default for the shipped binaries and off for
//!   embedders (`default-features = false`).
//!
//! The binaries in `src/bin/` only parse arguments and call into this library.

pub mod cli_common;
pub mod config;
pub mod connect;
pub mod errors;
pub mod investigate;
pub mod mapping;
pub mod monitor;
pub mod output;
pub mod process;
pub mod shutdown;
pub mod siem;
#[cfg(feature = "demo")]
pub mod sim;
pub mod state;
pub mod time;
