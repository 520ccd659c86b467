//! Read endpoints, one file per resource. Each adds an `impl` block to its resource handle
//! (see `handles.rs`) plus the request builders its calls return.
//!
//! Every builder has a pure `prepare()` that turns it into a [`crate::PreparedRequest`] (so
//! request shapes are unit-testable and can be shown in a dry run), `send()` for one page and,
//! for lists, `stream()` for every page.

pub mod applications;
pub mod approvals;
pub mod audit;
pub mod computers;
pub mod maintenance;
pub mod organizations;
pub mod policies;
pub mod system_audit;
pub mod tags;

use crate::client::Client;

/// Page number and size shared by list builders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Paging {
    pub(crate) page: u32,
    pub(crate) page_size: Option<u32>,
}

impl Paging {
    pub(crate) fn new() -> Self {
        Self {
            page: 1,
            page_size: None,
        }
    }

    /// The page size to send: the builder's, else the client's default.
    pub(crate) fn size(&self, client: &Client) -> u32 {
        self.page_size.unwrap_or(client.inner.page_size).max(1)
    }
}

/// The all-zero GUID the API reads as "any" in some filters.
pub(crate) const ZERO_GUID: &str = "00000000-0000-0000-0000-000000000000";

/// Refuses a blank identifier before anything is sent.
pub(crate) fn require_id(what: &str, value: &str) -> crate::Result<()> {
    if value.trim().is_empty() {
        return Err(crate::Error::InvalidRequest(format!(
            "{what} must not be blank"
        )));
    }
    Ok(())
}

/// The error for a single-object read answered with an empty body or `null`: reported as not
/// found (status 404, so [`crate::Error::is_not_found`] holds), with a hint that the client
/// synthesized it.
pub(crate) fn not_found(endpoint: &str, what: String) -> crate::Error {
    crate::Error::Api {
        status: 404,
        endpoint: endpoint.to_owned(),
        message: Some(what),
        logger_id: None,
        body: String::new(),
        hint: Some("the API answered with an empty body; the client reports it as not found"),
    }
}

/// Adds `page(n)` and `page_size(n)` setters to a builder with a `paging: Paging` field.
macro_rules! paging_setters {
    () => {
        /// Page size (default: the client's page size).
        pub fn page_size(mut self, n: u32) -> Self {
            self.paging.page_size = Some(n.max(1));
            self
        }

        /// The 1-based page `send()` fetches and `stream()` starts from (default 1).
        pub fn page(mut self, n: u32) -> Self {
            self.paging.page = n.max(1);
            self
        }
    };
}
pub(crate) use paging_setters;
