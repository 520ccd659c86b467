//! Maintenance-mode history by computer (reference §3.8).

use futures_util::Stream;

use super::{paging_setters, require_id, Paging};
use crate::client::Client;
use crate::decode::decode_list;
use crate::error::Result;
use crate::handles::Maintenance;
use crate::ids::ComputerId;
use crate::models::{MaintenanceWindow, Page};
use crate::request::PreparedRequest;
use crate::stream::{fetch_page, paginate};

const BY_COMPUTER_PATH: &str = "/portalapi/MaintenanceMode/MaintenanceModeGetByComputerIdV2";

impl Maintenance {
    /// The maintenance windows of one computer, newest first as the API orders them.
    pub fn by_computer(&self, computer: &ComputerId) -> MaintenanceHistory {
        MaintenanceHistory {
            client: self.client.clone(),
            computer: computer.clone(),
            paging: Paging::new(),
        }
    }
}

/// Builder for `GET MaintenanceMode/MaintenanceModeGetByComputerIdV2`. Made by
/// [`Maintenance::by_computer`].
#[derive(Debug, Clone)]
#[must_use = "a request builder does nothing until `.send()` or `.stream()`"]
pub struct MaintenanceHistory {
    client: Client,
    computer: ComputerId,
    paging: Paging,
}

impl MaintenanceHistory {
    paging_setters!();

    /// The request for the builder's page, without sending it.
    pub fn prepare(&self) -> PreparedRequest {
        self.prepare_page(self.paging.page, self.paging.size(&self.client))
    }

    fn prepare_page(&self, page: u32, page_size: u32) -> PreparedRequest {
        PreparedRequest::get(BY_COMPUTER_PATH)
            .with_query("computerId", &self.computer)
            .with_query("pageNumber", page)
            .with_query("pageSize", page_size)
    }

    /// Fetches one page.
    pub async fn send(self) -> Result<Page<MaintenanceWindow>> {
        require_id("computerId", self.computer.as_str())?;
        fetch_page(&self.client, &self.prepare(), decode_list).await
    }

    /// Streams every window across pages, de-duplicated by `maintenanceModeId`.
    pub fn stream(self) -> impl Stream<Item = Result<MaintenanceWindow>> + Send + 'static {
        let client = self.client.clone();
        let size = self.paging.size(&client);
        let first = self.paging.page;
        let invalid = require_id("computerId", self.computer.as_str()).err();
        paginate(
            client,
            first,
            size,
            move |page, page_size| self.prepare_page(page, page_size),
            decode_list,
            invalid,
        )
    }
}
