//! Read endpoints, one file per resource. Each adds an `impl` block to its resource handle
//! (see `handles.rs`) plus the request builders its calls return.
//!
//! Every builder has a pure `prepare()` that turns it into a [`crate::PreparedRequest`] (so
//! request shapes are unit-testable and can be shown in a dry run), `send()` for one page and,
//! for lists, `stream()` for every page.
//!
//! A list builder states only what is its own: its filters and `prepare_page(page, size)` (the
//! request for one page). The crate-private `paged!` macro implements the `Paged` trait for
//! it and adds the common public surface (`page`, `page_size`, `prepare`, `send`, `stream`),
//! whose behaviour lives once, in `send_first` and `stream_all`.

pub mod applications;
pub mod approvals;
pub mod audit;
pub mod computers;
pub mod maintenance;
pub mod organizations;
pub mod policies;
pub mod system_audit;
pub mod tags;

use futures_util::Stream;

use crate::client::Client;
use crate::error::Result;
use crate::models::Page;
use crate::request::PreparedRequest;
use crate::stream::{fetch_page, paginate, DecodeRows, Keyed};

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

/// A paged list request: what the shared `send`/`stream` need to know about a builder.
pub(crate) trait Paged: Sized + Send + Sync + Unpin + 'static {
    /// One row of the list.
    type Row: Keyed + Send + 'static;
    /// Decodes one page's body into rows.
    const DECODE: DecodeRows<Self::Row>;

    /// The client the request goes through.
    fn client(&self) -> &Client;
    /// The builder's first page and page size.
    fn paging(&self) -> Paging;
    /// The request for one page.
    fn request_for_page(&self, page: u32, page_size: u32) -> PreparedRequest;
    /// Refuses a request that cannot succeed, before anything is sent.
    fn check(&self) -> Result<()> {
        Ok(())
    }
    /// Keeps only the rows the caller asked for, where the API cannot filter itself.
    fn row_filter(&self) -> Option<crate::stream::RowFilter<Self::Row>> {
        None
    }

    /// The request for the builder's own page.
    fn first_request(&self) -> PreparedRequest {
        let paging = self.paging();
        self.request_for_page(paging.page, paging.size(self.client()))
    }
}

/// Checks the builder, then fetches its page.
pub(crate) async fn send_first<B: Paged>(builder: B) -> Result<Page<B::Row>> {
    builder.check()?;
    fetch_page(builder.client(), &builder.first_request(), B::DECODE).await
}

/// Streams every row from the builder's page on; a failed check is the stream's only item.
pub(crate) fn stream_all<B: Paged>(
    builder: B,
) -> impl Stream<Item = Result<B::Row>> + Send + 'static {
    let client = builder.client().clone();
    let paging = builder.paging();
    let size = paging.size(&client);
    let invalid = builder.check().err();
    let keep = builder.row_filter();
    let stream = paginate(
        client,
        paging.page,
        size,
        move |page, page_size| builder.request_for_page(page, page_size),
        B::DECODE,
        invalid,
    );
    match keep {
        Some(keep) => stream.with_filter(keep),
        None => stream,
    }
}

/// Makes a list builder paged. The builder has `client: Client` and `paging: Paging` fields
/// and an inherent `fn prepare_page(&self, page: u32, page_size: u32) -> PreparedRequest`;
/// `check` names an optional `fn(&Self) -> Result<()>` run before anything is sent. The doc
/// comments given are those of the public `stream()`.
macro_rules! paged {
    (
        $builder:ty => $row:ty, decode: $decode:expr $(, check: $check:path)?;
        $(#[$stream_doc:meta])*
    ) => {
        impl $crate::endpoints::Paged for $builder {
            type Row = $row;
            const DECODE: $crate::stream::DecodeRows<$row> = $decode;

            fn client(&self) -> &$crate::client::Client {
                &self.client
            }
            fn paging(&self) -> $crate::endpoints::Paging {
                self.paging
            }
            fn request_for_page(&self, page: u32, page_size: u32) -> $crate::request::PreparedRequest {
                self.prepare_page(page, page_size)
            }
            $(
                fn check(&self) -> $crate::error::Result<()> {
                    $check(self)
                }
            )?
        }

        impl $builder {
            $crate::endpoints::paging_setters!();

            /// The request for the builder's page, without sending it.
            pub fn prepare(&self) -> $crate::request::PreparedRequest {
                $crate::endpoints::Paged::first_request(self)
            }

            /// Fetches one page.
            pub async fn send(self) -> $crate::error::Result<$crate::models::Page<$row>> {
                $crate::endpoints::send_first(self).await
            }

            $(#[$stream_doc])*
            pub fn stream(
                self,
            ) -> impl ::futures_util::Stream<Item = $crate::error::Result<$row>> + Send + 'static {
                $crate::endpoints::stream_all(self)
            }
        }
    };
}
pub(crate) use paged;

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
