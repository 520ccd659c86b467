//! `siem-forward`'s library: a checkpointed feed of ThreatLocker's action log (and optionally
//! the portal's system audit and the workflow's own decisions) to a syslog receiver as CEF or
//! JSON, each record sent once.
//!
//! - [`config`]: the `[siem]` section of the shared configuration file.
//! - [`map`]: rows → `SiemRecord`s and the severity table (pure).
//! - [`store`]: checkpoints and the recently-sent id set in the state file.
//! - [`forward::Forwarder`]: poll, de-duplicate, send in batches, record after acceptance,
//!   retry with backoff.
//! - [`cli`]: the command line; the binary only calls [`cli::main`].

pub mod cli;
pub mod config;
pub mod forward;
pub mod map;
pub mod store;

pub use config::{SeverityMode, SiemConfig, SourceKind};
pub use forward::{Backoff, Forwarder, PassSummary, SiemError};
pub use store::SentStore;
