//! Typed identifiers.
//!
//! ThreatLocker identifies most objects by GUID strings and action-log rows and application
//! file rules by 64-bit integers. Each kind gets its own newtype so an organization id can never
//! be passed where a computer id is expected. GUID-backed ids are kept as opaque strings: the API
//! is not consistent enough about casing and shape to reject a value it might send back.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Error returned when parsing an empty identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} must not be empty")]
pub struct EmptyIdError {
    kind: &'static str,
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a raw identifier string as received from or sent to the API.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The identifier as it appears on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the inner string.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = EmptyIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let s = s.trim();
                if s.is_empty() {
                    Err(EmptyIdError { kind: stringify!($name) })
                } else {
                    Ok(Self(s.to_owned()))
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

macro_rules! int_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// The numeric value as it appears on the wire.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.trim().parse().map(Self)
            }
        }

        impl From<i64> for $name {
            fn from(v: i64) -> Self {
                Self(v)
            }
        }
    };
}

string_id!(
    /// An organization (tenant) GUID; sent as the `managedOrganizationId` header.
    OrganizationId
);
string_id!(
    /// A computer (endpoint) GUID.
    ComputerId
);
string_id!(
    /// A computer group GUID.
    ComputerGroupId
);
string_id!(
    /// An approval request GUID.
    ApprovalRequestId
);
string_id!(
    /// An application GUID.
    ApplicationId
);
string_id!(
    /// A policy GUID.
    PolicyId
);
string_id!(
    /// A maintenance-mode window GUID.
    MaintenanceModeId
);
string_id!(
    /// A tag GUID.
    TagId
);
string_id!(
    /// A system (portal) audit entry GUID.
    SystemAuditId
);
string_id!(
    /// A portal user GUID.
    UserId
);
string_id!(
    /// The string id of an action-log row (`eActionLogId`), the one `ActionLogGetByIdV2` needs.
    EActionLogId
);
int_id!(
    /// The numeric (V1) id of an action-log row (`actionLogId`); exceeds `i32` in practice.
    ActionLogId
);
int_id!(
    /// The numeric id of a file rule inside an application (`applicationFileId`).
    ApplicationFileId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_ids_are_transparent_on_the_wire() {
        let id: OrganizationId = serde_json::from_str("\"3b0f5f7e-1111\"").unwrap();
        assert_eq!(id.as_str(), "3b0f5f7e-1111");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"3b0f5f7e-1111\"");
        assert_eq!(id.to_string(), "3b0f5f7e-1111");
    }

    #[test]
    fn int_ids_hold_values_beyond_i32() {
        let id: ActionLogId = serde_json::from_str("81234567890").unwrap();
        assert_eq!(id.get(), 81_234_567_890);
    }

    #[test]
    fn empty_string_id_is_rejected_by_from_str() {
        assert!("  ".parse::<ComputerId>().is_err());
        assert_eq!(" abc ".parse::<ComputerId>().unwrap().as_str(), "abc");
    }
}
