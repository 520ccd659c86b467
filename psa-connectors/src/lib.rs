//! # psa-connectors
//!
//! Pluggable sinks through which an automation reaches people and systems: tickets in a PSA
//! (ConnectWise PSA, Autotask, HaloPSA), notifications (SMTP email, Microsoft Teams Workflows
//! webhooks, Slack incoming webhooks) and security events for a SIEM (RFC 5424 syslog over
//! UDP, TCP or TLS, carrying CEF or JSON).
//!
//! What it is for: turning vendor-neutral values — [`Ticket`], [`Note`], [`Notification`],
//! [`SiemRecord`] — into each system's real wire protocol, with dedupe (one ticket per
//! incident), rate-limit handling, escaping of untrusted text and size limits done right.
//! What it is not: it knows nothing of the products that produce the events, keeps no state
//! of its own (the caller persists intents and outcomes) and renders no business wording.
//!
//! Shape: three small object-safe traits — [`TicketSink`], [`Notifier`], [`SiemSink`] — with
//! few required methods, so adding a backend is a day's work; blanket impls for `Arc<T>` and
//! `Box<T>`; recording doubles in [`recording`] for users' own tests. Each built-in backend
//! lives in its own module behind its own cargo feature (all on by default) and is built from
//! a `Config` struct that deserializes with `deny_unknown_fields`, holds secrets as
//! [`secrecy::SecretString`] (see [`secret`]) and prints `[redacted]` for them in `Debug`.
//!
//! Untrusted text (file names, paths, user names, command lines) goes through [`escape`]
//! before it reaches any wire format. Retry decisions are a pure function ([`RetryPolicy`]);
//! reads are retried, creates never blindly — an unknown outcome is reconciled by searching for
//! the ticket's external reference first.
//!
//! ```
//! use std::sync::Arc;
//! use psa_connectors::{recording::RecordingTicketSink, Note, Ticket, TicketSink};
//!
//! # tokio_test_block_on(async {
//! let psa: Arc<dyn TicketSink> = Arc::new(RecordingTicketSink::new());
//! let ticket = Ticket::new("app:req:42", "AnyDesk.exe blocked on WS07", "details");
//! let first = psa.open_or_update(&ticket, &Note::internal("seen again")).await?;
//! let second = psa.open_or_update(&ticket, &Note::internal("seen again")).await?;
//! assert!(first.is_created() && !second.is_created());
//! assert_eq!(first.ticket(), second.ticket());
//! # Ok::<(), psa_connectors::Error>(()) });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod error;
pub mod escape;
pub mod recording;
pub mod retry;
pub mod secret;
mod traits;
mod types;

#[cfg(feature = "http")]
mod http;

#[cfg(feature = "autotask")]
pub mod autotask;
#[cfg(feature = "connectwise")]
pub mod connectwise;
#[cfg(feature = "email")]
pub mod email;
#[cfg(feature = "halo")]
pub mod halo;
#[cfg(feature = "slack")]
pub mod slack;
#[cfg(feature = "syslog")]
pub mod syslog;
#[cfg(feature = "teams")]
pub mod teams;

pub use error::{Error, Result};
pub use retry::{RetryDecision, RetryPolicy, Safety};
pub use secrecy::SecretString;
pub use traits::{Notifier, SiemSink, TicketSink};
pub use types::{
    Note, Notification, Priority, PriorityMap, Reference, Severity, SiemRecord, Ticket,
    TicketOutcome, TicketRef,
};
