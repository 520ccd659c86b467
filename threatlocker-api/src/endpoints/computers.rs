//! Computers: list with every documented filter, get one (reference §3.3).

use serde_json::{json, Value};

use super::{paged, require_id, Paging, ZERO_GUID};
use crate::client::Client;
use crate::codes::ComputerMode;
use crate::decode::decode_list;
use crate::error::{Error, Result};
use crate::handles::Computers;
use crate::ids::{ComputerGroupId, ComputerId};
use crate::models::Computer;
use crate::request::PreparedRequest;
use crate::stream::fetch_page;

const LIST_PATH: &str = "/portalapi/Computer/ComputerGetByAllParameters";

/// What [`ComputerList::search_text`] matches (`searchBy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ComputerSearchBy {
    /// Computer / asset name (1).
    Name,
    /// User name (2).
    Username,
    /// Computer group name (3).
    GroupName,
    /// Last check-in IP (4).
    LastCheckinIp,
    /// Organization name (5).
    OrganizationName,
}

impl ComputerSearchBy {
    /// The wire code.
    pub fn code(self) -> i32 {
        match self {
            Self::Name => 1,
            Self::Username => 2,
            Self::GroupName => 3,
            Self::LastCheckinIp => 4,
            Self::OrganizationName => 5,
        }
    }
}

impl Computers {
    /// Lists computers. Defaults: every mode, every group, sorted by name, with last check-in.
    pub fn list(&self) -> ComputerList {
        ComputerList {
            client: self.client.clone(),
            search_text: String::new(),
            search_by: ComputerSearchBy::Name,
            action: String::new(),
            kind_of_action: None,
            computer_group: None,
            computer_id: None,
            child_organizations: false,
            order_by: "computername".into(),
            ascending: true,
            show_last_checkin: true,
            show_deleted: false,
            threatlocker_version: None,
            paging: Paging::new(),
        }
    }

    /// One computer by id.
    ///
    /// Implemented as the list call filtered by `computerId` (with child organizations), not
    /// `ComputerGetForEditById`: the list returns the same [`Computer`] shape as every other
    /// read (mode, last check-in, maintenance), while the edit record has a different, sparser
    /// shape. A missing computer is an [`Error::Api`] with status 404 ([`Error::is_not_found`]).
    pub async fn get(&self, id: &ComputerId) -> Result<Computer> {
        require_id("computerId", id.as_str())?;
        let req = self
            .list()
            .computer_id(id.clone())
            .child_organizations(true)
            .page_size(25)
            .prepare();
        let page = fetch_page(&self.client, &req, decode_list::<Computer>).await?;
        page.items
            .into_iter()
            .find(|c| {
                c.computer_id
                    .as_ref()
                    .is_some_and(|c| c.as_str().eq_ignore_ascii_case(id.as_str()))
            })
            .ok_or_else(|| Error::Api {
                status: 404,
                endpoint: req.endpoint(),
                message: Some(format!("no computer with id {id}")),
                logger_id: None,
                body: String::new(),
                hint: Some("the list filtered by computerId returned no such row"),
            })
    }
}

/// Builder for `POST Computer/ComputerGetByAllParameters`. Made by [`Computers::list`].
#[derive(Debug, Clone)]
#[must_use = "a request builder does nothing until `.send()` or `.stream()`"]
pub struct ComputerList {
    client: Client,
    search_text: String,
    search_by: ComputerSearchBy,
    action: String,
    kind_of_action: Option<String>,
    computer_group: Option<ComputerGroupId>,
    computer_id: Option<ComputerId>,
    child_organizations: bool,
    order_by: String,
    ascending: bool,
    show_last_checkin: bool,
    show_deleted: bool,
    threatlocker_version: Option<String>,
    paging: Paging,
}

impl ComputerList {
    setters! {
        /// Free text, matched per [`ComputerList::search_by`].
        search_text(text: impl Into<String>) = text.into();

        /// What the search text matches (default computer name).
        search_by(by: ComputerSearchBy) = by;
    }

    /// Only computers in this mode (`action` with `kindOfAction: "Computer Mode"`).
    pub fn mode(mut self, mode: ComputerMode) -> Self {
        self.action = mode.as_str().to_owned();
        self.kind_of_action = Some("Computer Mode".into());
        self
    }

    setters! {
        /// The raw `action` filter (a mode, or an update channel with
        /// `kind_of_action("Update Channel")`).
        action(action: impl Into<String>) = action.into();

        /// The raw `kindOfAction`: `Computer Mode`, `TamperProtectionDisabled`, `NeedsReview`,
        /// `ReadyToSecure`, `BaselineNotUploaded`, `Update Channel`.
        kind_of_action(kind: impl Into<String>) = Some(kind.into());

        /// Only this computer group (default all groups: the zero GUID).
        computer_group(group: impl Into<ComputerGroupId>) = Some(group.into());

        /// Only this computer.
        computer_id(id: impl Into<ComputerId>) = Some(id.into());

        /// Include child and grandchild organizations.
        child_organizations(yes: bool) = yes;

        /// Sort field: `computername` (default), `group`, `action`, `lastcheckin`,
        /// `computerinstalldate`, `deniedcountthreedays`, `updatechannel`, `threatlockerversion`.
        order_by(field: impl Into<String>) = field.into();

        /// Ascending (default true).
        ascending(yes: bool) = yes;

        /// Include the last check-in (default true).
        show_last_checkin(yes: bool) = yes;

        /// Include deleted computers (default false).
        show_deleted(yes: bool) = yes;

        /// Only computers on this agent version.
        threatlocker_version(version: impl Into<String>) = Some(version.into());
    }

    fn prepare_page(&self, page: u32, page_size: u32) -> PreparedRequest {
        let mut body = json!({
            "pageNumber": page,
            "pageSize": page_size,
            "orderBy": self.order_by,
            "isAscending": self.ascending,
            "searchText": self.search_text,
            "searchBy": self.search_by.code(),
            "action": self.action,
            "computerGroup": self.computer_group.as_ref().map_or(ZERO_GUID, |g| g.as_str()),
            "childOrganizations": self.child_organizations,
            "showLastCheckIn": self.show_last_checkin,
            "showDeleted": self.show_deleted,
            "isExport": false,
        });
        if let Value::Object(map) = &mut body {
            if let Some(k) = &self.kind_of_action {
                map.insert("kindOfAction".into(), json!(k));
            }
            if let Some(c) = &self.computer_id {
                map.insert("computerId".into(), json!(c));
            }
            if let Some(v) = &self.threatlocker_version {
                map.insert("threatlockerVersion".into(), json!(v));
            }
        }
        PreparedRequest::search(LIST_PATH, body)
    }
}

paged! {
    ComputerList => Computer, decode: decode_list;
    /// Streams every computer across pages, de-duplicated by `computerId`.
}
