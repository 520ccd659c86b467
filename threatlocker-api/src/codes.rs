//! Numeric and string code tables of the Portal API, each with a catch-all for values this crate
//! does not know yet (the API adds codes without notice; an unknown code must not fail a decode).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! int_code {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $label:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A code this crate does not know; the raw value is kept.
            Other(i32),
        }

        impl $name {
            /// The numeric code sent on the wire.
            pub fn code(self) -> i32 {
                match self {
                    $( Self::$variant => $code, )+
                    Self::Other(c) => c,
                }
            }

            /// A human-readable name (ThreatLocker's own wording where known).
            pub fn label(self) -> &'static str {
                match self {
                    $( Self::$variant => $label, )+
                    Self::Other(_) => "Unknown",
                }
            }
        }

        impl From<i32> for $name {
            fn from(code: i32) -> Self {
                match code {
                    $( $code => Self::$variant, )+
                    other => Self::Other(other),
                }
            }
        }

        impl From<$name> for i32 {
            fn from(v: $name) -> i32 {
                v.code()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    Self::Other(c) => write!(f, "Unknown ({c})"),
                    v => f.write_str(v.label()),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_i32(self.code())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                i32::deserialize(d).map(Self::from)
            }
        }
    };
}

int_code!(
    /// The outcome of an action-log row (`actionId`, ThreatLocker's ActionLogType).
    ActionOutcome {
        /// Allowed by a permit policy; the action ran.
        Permit = 1 => "Permit",
        /// Blocked by a deny (or default-deny) policy.
        Deny = 2 => "Deny",
        /// Blocked, and the user was offered the request-access prompt.
        DenyWithRequest = 3 => "Deny (Option to Request)",
        /// Allowed because the computer was in Installation mode.
        InstallMode = 4 => "Install Mode",
        /// Core or baseline files missing.
        MissingCoreFiles = 5 => "Missing Core Files",
        /// A ringfenced application's access was constrained by its ringfence.
        Ringfenced = 6 => "Ringfenced",
        /// Filter-only pseudo-code: any deny (2 or 3). Not expected on rows.
        AnyDeny = 99 => "Any Deny",
    }
);

impl ActionOutcome {
    /// Whether the code is a deny (2 or 3). Whether it was enforced depends on `isMonitorMode`.
    pub fn is_deny(self) -> bool {
        matches!(self, Self::Deny | Self::DenyWithRequest)
    }
}

int_code!(
    /// The status of an approval request (`statusId`).
    ApprovalStatus {
        /// Waiting for a technician.
        Pending = 1 => "Pending",
        /// Approved (permitted).
        Approved = 4 => "Approved",
        /// Not learned.
        NotLearned = 6 => "Not Learned",
        /// Ignored (also used for rejections on some tenants).
        Ignored = 10 => "Ignored",
        /// Denied (rejected).
        Denied = 11 => "Denied",
        /// Added to an application.
        AddedToApplication = 12 => "Added to Application",
        /// Escalated to the MSP (Cyber Heroes).
        Escalated = 13 => "Escalated",
        /// Escalation pending.
        PendingEscalation = 14 => "Pending Escalation",
        /// Escalation approved.
        ApprovedEscalation = 15 => "Approved Escalation",
        /// Self-approved by the user.
        SelfApproved = 16 => "Self-Approved",
        /// Escalated by the customer.
        EscalatedByCustomer = 17 => "Escalated by Customer",
    }
);

impl ApprovalStatus {
    /// Whether a technician (or the API) already acted on the request: anything but pending or
    /// an escalation still waiting.
    pub fn is_actioned(self) -> bool {
        !matches!(
            self,
            Self::Pending | Self::PendingEscalation | Self::Escalated
        )
    }
}

int_code!(
    /// Operating system family (`osType`).
    OsType {
        /// Windows.
        Windows = 1 => "Windows",
        /// macOS.
        MacOs = 2 => "macOS",
        /// Linux.
        Linux = 3 => "Linux",
        /// Windows XP.
        WindowsXp = 5 => "Windows XP",
        /// Red Hat Enterprise Linux 6.
        Rhel6 = 7 => "RHEL 6",
    }
);

int_code!(
    /// Maintenance (non-secure) mode types (`maintenanceTypeId`).
    MaintenanceType {
        /// No maintenance window (secured).
        None = 0 => "None",
        /// Monitor Only (Application Control).
        MonitorOnly = 1 => "Monitor Only",
        /// Installation Mode.
        Installation = 2 => "Installation Mode",
        /// Learning Mode.
        Learning = 3 => "Learning Mode",
        /// Elevation Mode.
        Elevation = 4 => "Elevation Mode",
        /// Learning Mode (hash only).
        LearningHashOnly = 5 => "Learning Mode (Hash Only)",
        /// Tamper protection disabled.
        TamperProtectionDisabled = 6 => "Tamper Protection Disabled",
        /// Isolation.
        Isolation = 14 => "Isolation",
        /// Lockdown.
        Lockdown = 15 => "Lockdown",
        /// Ops alerts disabled.
        DisableOpsAlerts = 16 => "Disable Ops Alerts",
        /// Network Control monitor only.
        NetworkControlMonitorOnly = 17 => "Network Control Monitor Only",
        /// Storage Control monitor only.
        StorageControlMonitorOnly = 18 => "Storage Control Monitor Only",
    }
);

int_code!(
    /// The table an action-log row lives in (`sourceTableId`), needed by `ActionLogGetByIdV2`.
    SourceTable {
        /// Permits and general rows.
        ActionLog = 1 => "ActionLog",
        /// Denies.
        DenyActionLog = 2 => "DenyActionLog",
        /// Baseline rows.
        BaselineActionLog = 3 => "BaselineActionLog",
        /// Event-log rows.
        EventLogActionLog = 4 => "EventLogActionLog",
    }
);

impl SourceTable {
    /// The tables in the order a lookup without a known table tries them.
    pub const ALL: [SourceTable; 4] = [
        Self::ActionLog,
        Self::DenyActionLog,
        Self::BaselineActionLog,
        Self::EventLogActionLog,
    ];
}

int_code!(
    /// What a policy does (`policyActionId`).
    PolicyAction {
        /// No action.
        None = 0 => "None",
        /// Permit.
        Permit = 1 => "Permit",
        /// Deny.
        Deny = 2 => "Deny",
        /// Request.
        Request = 3 => "Request",
        /// Installation mode.
        InstallMode = 4 => "Install Mode",
        /// Missing core files.
        MissingCoreFiles = 5 => "Missing Core Files",
        /// Permit with ringfence.
        PermitWithRingfence = 6 => "Permit with Ringfence",
    }
);

int_code!(
    /// The kind of an approval request (`requestTypeId`).
    RequestType {
        /// All kinds (filter only).
        All = 0 => "All",
        /// An application (execute/install) request.
        Application = 1 => "Application",
        /// An elevation request.
        Elevation = 2 => "Elevation",
        /// A storage request.
        Storage = 3 => "Storage",
    }
);

/// A computer's protection mode as the list endpoint reports it (`mode` / `action`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ComputerMode {
    /// Fully enforced, no maintenance window.
    Secure,
    /// Installation mode.
    Installation,
    /// Learning mode.
    Learning,
    /// Monitor-only: would-be denies are logged, not enforced.
    MonitorOnly,
    /// A mode string this crate does not know; kept verbatim.
    Other(String),
}

impl ComputerMode {
    /// The wire string (`Secure`, `Installation`, `Learning`, `MonitorOnly`, or the raw value).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Secure => "Secure",
            Self::Installation => "Installation",
            Self::Learning => "Learning",
            Self::MonitorOnly => "MonitorOnly",
            Self::Other(s) => s,
        }
    }

    /// Parses a mode string case-insensitively, folding the known aliases.
    pub fn parse(s: &str) -> Self {
        let folded: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        match folded.as_str() {
            "secure" | "secured" => Self::Secure,
            "installation" | "installmode" | "installationmode" => Self::Installation,
            "learning" | "learningmode" | "learningmodehashonly" => Self::Learning,
            "monitoronly" | "monitor" | "monitormode" => Self::MonitorOnly,
            _ => Self::Other(s.to_owned()),
        }
    }
}

impl fmt::Display for ComputerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ComputerMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ComputerMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_round_trip() {
        let v: ActionOutcome = serde_json::from_str("42").unwrap();
        assert_eq!(v, ActionOutcome::Other(42));
        assert_eq!(serde_json::to_string(&v).unwrap(), "42");
        let s: ApprovalStatus = serde_json::from_str("1").unwrap();
        assert_eq!(s, ApprovalStatus::Pending);
        assert!(ApprovalStatus::Approved.is_actioned());
    }

    #[test]
    fn computer_modes_fold_aliases_and_keep_unknowns() {
        assert_eq!(ComputerMode::parse("Secure"), ComputerMode::Secure);
        assert_eq!(
            ComputerMode::parse("LearningModeHashOnly"),
            ComputerMode::Learning
        );
        assert_eq!(
            ComputerMode::parse("InstallMode"),
            ComputerMode::Installation
        );
        assert_eq!(
            ComputerMode::parse("monitoronly"),
            ComputerMode::MonitorOnly
        );
        assert_eq!(
            ComputerMode::parse("Isolated"),
            ComputerMode::Other("Isolated".into())
        );
    }
}
