//! The write side: permitting, rejecting and ignoring approval requests; applications,
//! policies and maintenance mode.
//!
//! Every write is first built by a pure `prepare_*` function into a [`PreparedRequest`]
//! (method, path, organization header, body) whose `Display` is a dry-run view, so a caller can
//! show an operator exactly what would be sent without sending it. The handle methods
//! (`client.approvals().permit(..)`, `client.policies().deploy(..)`, ...) send those same
//! requests.
//!
//! Safety rules, the same for every write:
//! - a write is sent once; the client never retries it (see [`crate::Safety::Write`]);
//! - when its outcome is unknown (timeout, reset connection, 5xx) the approval calls re-read the
//!   request's `statusId` and report what really happened; the other writes return
//!   [`Error::OutcomeUnknown`] so the caller re-reads before doing anything again;
//! - a permit is refused before sending when the request was already actioned
//!   ([`Error::AlreadyActioned`]) or when the options cannot succeed (a built-in application
//!   without entire-organization scope, a new application without a name, ...).

mod applications;
mod approvals;
mod maintenance;
mod permit;
mod policies;

pub use applications::*;
pub use approvals::*;
pub use maintenance::*;
pub use permit::*;
pub use policies::*;

#[cfg(feature = "client")]
use crate::error::Error;

#[cfg(feature = "client")]
/// Wraps an error whose outcome is unknown into [`Error::OutcomeUnknown`] naming the operation;
/// other errors pass through (with a write-specific hint added where the reference documents a
/// likely cause).
pub(crate) fn classify_write_error(operation: impl FnOnce() -> String, err: Error) -> Error {
    if err.is_outcome_unknown() && !matches!(err, Error::OutcomeUnknown { .. }) {
        return Error::OutcomeUnknown {
            operation: operation(),
            source: Box::new(err),
        };
    }
    add_write_hint(err)
}

#[cfg(feature = "client")]
/// Adds a hint for write errors the generic table does not cover.
pub(crate) fn add_write_hint(mut err: Error) -> Error {
    if let Error::Api {
        status,
        endpoint,
        message,
        hint: hint @ None,
        ..
    } = &mut err
    {
        let m = message.as_deref().unwrap_or("").to_ascii_lowercase();
        let status = *status;
        *hint = if m.contains("insufficient permission") && m.contains("destination") {
            Some("policy writes must be scoped to the organization that owns the policy (managedOrganizationId)")
        } else if m.contains("hash only") {
            Some("a hash rule must be hash-only: isHashOnly true and every other condition empty")
        } else if status == 500 && endpoint.contains("ApplicationInsert") {
            Some(
                "keep ApplicationInsert minimal: name, osType, description, applicationFileUpdates",
            )
        } else if status == 500 && endpoint.contains("PermitApplication") {
            Some("the permit body must keep every key of the fetched DTO, with explicit nulls")
        } else if status == 400 && endpoint.contains("PolicyUpdateForDeleteByIds") {
            Some("the delete body must be a bare JSON array of policy rows")
        } else {
            None
        };
    }
    err
}

/// Decodes an application row (`ApplicationOnlineDto` rows carry both `name` and
/// `applicationName`; the model keeps both).
#[cfg(feature = "client")]
pub(crate) fn decode_application(
    v: serde_json::Value,
) -> Result<crate::models::Application, serde_json::Error> {
    serde_json::from_value(v)
}

#[cfg(all(test, feature = "client"))]
mod tests {
    use super::*;

    fn api(status: u16, endpoint: &str, message: &str) -> Error {
        Error::Api {
            status,
            endpoint: endpoint.into(),
            message: Some(message.into()),
            logger_id: None,
            body: String::new(),
            hint: None,
        }
    }

    #[test]
    fn write_error_classification_table() {
        let cases: [(Error, bool, Option<&str>); 5] = [
            (api(503, "POST /x/DeployPolicies", "down"), true, None),
            (
                api(
                    417,
                    "POST /x/ApplicationFileInsert",
                    "Please enter the Hash only, or ...",
                ),
                false,
                Some("hash-only"),
            ),
            (
                api(
                    400,
                    "PUT /x/PolicyUpdateById",
                    "Insufficient permission to update policies in the selected destination",
                ),
                false,
                Some("owns the policy"),
            ),
            (
                api(
                    400,
                    "PUT /x/PolicyUpdateForDeleteByIds",
                    "One or more validation errors occurred.",
                ),
                false,
                Some("bare JSON array"),
            ),
            (api(404, "POST /x/Other", "nope"), false, None),
        ];
        for (err, unknown, hint) in cases {
            let got = classify_write_error(|| "op".into(), err);
            assert_eq!(
                matches!(got, Error::OutcomeUnknown { .. }),
                unknown,
                "{got:?}"
            );
            if let Error::Api { hint: h, .. } = &got {
                match hint {
                    Some(want) => assert!(h.unwrap_or("").contains(want), "{got:?}"),
                    None => assert!(h.is_none(), "{got:?}"),
                }
            }
        }
    }
}
