//! Error messages with their causes: one formatter for every place `examples` shows an error
//! (logs, a run report's `errors`, `doctor`, the state file).
//!
//! The library crates follow the usual convention: an error's `Display` says what failed and
//! does not repeat its cause, which is reachable through [`Error::source`]. Printing only the
//! top of the chain loses the part an operator needs — `gave up after 4 attempts` without the
//! `Connection refused` behind it — so every message shown here is the whole chain, joined with
//! `": "`.

use std::error::Error;
use std::fmt;

/// `e` and every cause under it, joined with `": "`.
///
/// A cause whose text the message above it already contains is not repeated (some errors do
/// embed their cause), and the ThreatLocker API's `LoggerId`, which ThreatLocker support asks
/// for, is added when the API sent one and the message does not show it yet.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    ErrorChain(e).to_string()
}

/// [`chain`] as a `Display` value, for format strings and `tracing` fields
/// (`error = %ErrorChain(&e)`).
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = String::new();
        let mut current: Option<&(dyn Error + 'static)> = Some(self.0);
        while let Some(e) = current {
            let mut text = e.to_string();
            if let Some(id) = logger_id(e) {
                if !text.contains(id) && !shown.contains(id) {
                    text.push_str(&format!(" (LoggerId {id})"));
                }
            }
            let text = text.trim();
            if !text.is_empty() && !shown.contains(text) {
                if !shown.is_empty() {
                    shown.push_str(": ");
                }
                shown.push_str(text);
            }
            current = e.source();
        }
        f.write_str(&shown)
    }
}

fn logger_id<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a str> {
    // A boxed cause (`RetriesExhausted { last: Box<Error> }`) is its own type behind `dyn`.
    let api = e.downcast_ref::<threatlocker_api::Error>().or_else(|| {
        e.downcast_ref::<Box<threatlocker_api::Error>>()
            .map(|b| &**b)
    })?;
    match api {
        threatlocker_api::Error::Api { logger_id, .. } => logger_id.as_deref(),
        _ => None,
    }
}

/// The innermost cause of `e` (the one without a source), as text.
pub fn root_cause(e: &(dyn Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Leaf(String);

    #[derive(Debug, thiserror::Error)]
    #[error("{msg}")]
    struct Wrap {
        msg: String,
        #[source]
        source: Box<dyn Error + Send + Sync>,
    }

    fn wrap(msg: &str, source: impl Error + Send + Sync + 'static) -> Wrap {
        Wrap {
            msg: msg.into(),
            source: Box::new(source),
        }
    }

    #[test]
    fn every_cause_is_shown_in_order() {
        let e = wrap(
            "gave up after 4 attempts",
            wrap(
                "transport error (connect) calling POST /x",
                Leaf("Connection refused (os error 111)".into()),
            ),
        );
        assert_eq!(
            chain(&e),
            "gave up after 4 attempts: transport error (connect) calling POST /x: Connection refused (os error 111)"
        );
        assert_eq!(root_cause(&e), "Connection refused (os error 111)");
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let e = wrap("reading: timed out", Leaf("timed out".into()));
        assert_eq!(chain(&e), "reading: timed out");
        let e = Leaf("alone".into());
        assert_eq!(chain(&e), "alone");
    }

    #[test]
    fn the_loggerid_of_an_api_error_is_shown_once() {
        let api = |message: Option<&str>| threatlocker_api::Error::Api {
            status: 500,
            endpoint: "POST /portalapi/ApprovalRequest/ApprovalRequestGetCount".into(),
            message: message.map(str::to_owned),
            logger_id: Some("a1b2-c3".into()),
            body: String::new(),
            hint: None,
        };
        let e = threatlocker_api::Error::RetriesExhausted {
            attempts: 4,
            last: Box::new(api(None)),
        };
        let text = chain(&e);
        assert!(text.starts_with("gave up after 4 attempts: "), "{text}");
        assert!(text.contains("HTTP 500"), "{text}");
        assert_eq!(text.matches("a1b2-c3").count(), 1, "{text}");
        // A message that already names it does not get it twice.
        let text = chain(&api(Some("failed (LoggerId a1b2-c3)")));
        assert_eq!(text.matches("a1b2-c3").count(), 1, "{text}");
    }
}
