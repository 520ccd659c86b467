//! One small handle per API resource, returned by `client.audit()`, `client.approvals()`, ...
//!
//! Read operations live in `endpoints/`, write operations in `write/`; both add `impl` blocks
//! to these types so a reader finds any endpoint from its resource in one hop.

use crate::client::Client;

macro_rules! handle {
    ($(#[$meta:meta])* $name:ident, $accessor:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name {
            pub(crate) client: Client,
        }

        impl Client {
            $(#[$meta])*
            pub fn $accessor(&self) -> $name {
                $name { client: self.clone() }
            }
        }
    };
}

handle!(
    /// The action log (Unified Audit): search, get one event, file history.
    Audit,
    audit
);
handle!(
    /// Approval requests: search, count, get, permit, reject, ignore.
    Approvals,
    approvals
);
handle!(
    /// Computers: list, get.
    Computers,
    computers
);
handle!(
    /// Organizations: child organizations, accessible organizations.
    Organizations,
    organizations
);
handle!(
    /// Applications: search, get, matching list, research details, insert, file rules.
    Applications,
    applications
);
handle!(
    /// Policies: list, get, insert, update, delete, deploy.
    Policies,
    policies
);
handle!(
    /// The portal's own (administrator) audit log.
    SystemAudit,
    system_audit
);
handle!(
    /// Maintenance mode: history by computer, insert, end.
    Maintenance,
    maintenance
);
handle!(
    /// Tags: the dropdown list.
    Tags,
    tags
);
