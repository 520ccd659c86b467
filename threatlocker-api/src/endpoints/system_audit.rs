//! The portal's own (administrator) audit log (reference §3.7).

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{paged, Paging, ZERO_GUID};
use crate::client::Client;
use crate::decode::decode_list;
use crate::handles::SystemAudit;
use crate::models::SystemAuditEntry;
use crate::request::PreparedRequest;
use crate::time::format_request_date;

const SEARCH_PATH: &str = "/portalapi/SystemAudit/SystemAuditGetByParameters";

impl SystemAudit {
    /// Searches the system audit between `start` and `end` (both required in practice).
    pub fn search(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> SystemAuditSearch {
        SystemAuditSearch {
            client: self.client.clone(),
            start,
            end,
            email_address: String::new(),
            action: String::new(),
            effective_action: String::new(),
            ip_address: String::new(),
            details: String::new(),
            child_organizations: false,
            paging: Paging::new(),
        }
    }
}

/// Builder for `POST SystemAudit/SystemAuditGetByParameters`. Made by [`SystemAudit::search`].
#[derive(Debug, Clone)]
#[must_use = "a request builder does nothing until `.send()` or `.stream()`"]
pub struct SystemAuditSearch {
    client: Client,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    email_address: String,
    action: String,
    effective_action: String,
    ip_address: String,
    details: String,
    child_organizations: bool,
    paging: Paging,
}

impl SystemAuditSearch {
    setters! {
        /// The administrator (`emailAddress`; a `username` filter is silently ignored by the API).
        email_address(email: impl Into<String>) = email.into();

        /// `Create`, `Delete`, `Logon`, `Logoff`, `Modify` or `Read`.
        action(action: impl Into<String>) = action.into();

        /// `Denied` or `Permitted`.
        effective_action(action: impl Into<String>) = action.into();

        /// Client IP (`*` wildcards allowed).
        ip_address(ip: impl Into<String>) = ip.into();

        /// Details text (`*` wildcards; without one, a contains-match).
        details(text: impl Into<String>) = text.into();

        /// Include child organizations (`viewChildOrganizations`).
        child_organizations(yes: bool) = yes;
    }

    fn prepare_page(&self, page: u32, page_size: u32) -> PreparedRequest {
        PreparedRequest::search(
            SEARCH_PATH,
            json!({
                "startDate": format_request_date(self.start),
                "endDate": format_request_date(self.end),
                "action": self.action,
                "effectiveAction": self.effective_action,
                "emailAddress": self.email_address,
                "ipAddress": self.ip_address,
                "details": self.details,
                "viewChildOrganizations": self.child_organizations,
                "objectId": ZERO_GUID,
                "pageNumber": page,
                "pageSize": page_size,
            }),
        )
    }
}

paged! {
    SystemAuditSearch => SystemAuditEntry, decode: decode_list;
    /// Streams every entry across pages (entries with a `systemAuditId` de-duplicated).
}
