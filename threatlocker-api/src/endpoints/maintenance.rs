//! Maintenance-mode history by computer (reference §3.8).

use super::{paged, require_id, Paging};
use crate::client::Client;
use crate::decode::decode_list;
use crate::error::Result;
use crate::handles::Maintenance;
use crate::ids::ComputerId;
use crate::models::MaintenanceWindow;
use crate::request::PreparedRequest;

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
    fn prepare_page(&self, page: u32, page_size: u32) -> PreparedRequest {
        PreparedRequest::get(BY_COMPUTER_PATH)
            .with_query("computerId", &self.computer)
            .with_query("pageNumber", page)
            .with_query("pageSize", page_size)
    }

    fn validate(&self) -> Result<()> {
        require_id("computerId", self.computer.as_str())
    }
}

paged! {
    MaintenanceHistory => MaintenanceWindow, decode: decode_list, check: Self::validate;
    /// Streams every window across pages, de-duplicated by `maintenanceModeId`.
}
