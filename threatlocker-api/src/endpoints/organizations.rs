//! Organizations: child organizations, the accessible-organization list (reference §3.4).

use serde_json::json;

use super::{paged, Paging};
use crate::client::Client;
use crate::decode::decode_list;
use crate::error::Result;
use crate::handles::Organizations;
use crate::models::{DropdownOption, Organization};
use crate::request::PreparedRequest;

const CHILDREN_PATH: &str = "/portalapi/Organization/OrganizationGetChildOrganizationsByParameters";
const ACCESSIBLE_PATH: &str = "/portalapi/Organization/OrganizationGetForMoveComputers";

impl Organizations {
    /// The child organizations of the current (or `with_organization`) organization.
    pub fn children(&self) -> ChildOrganizations {
        ChildOrganizations {
            client: self.client.clone(),
            include_all_children: true,
            search_text: String::new(),
            order_by: "name".into(),
            ascending: true,
            paging: Paging::new(),
        }
    }

    /// The organizations this key can act on (`OrganizationGetForMoveComputers`), as
    /// `{label, value}` entries whose `value` is the organization id.
    pub async fn accessible(&self, search_text: impl Into<String>) -> Result<Vec<DropdownOption>> {
        let req = Self::prepare_accessible(&search_text.into());
        let raw = self.client.execute(&req).await?;
        decode_list(&req.endpoint(), &raw.body)
    }

    /// The request [`Organizations::accessible`] sends.
    pub fn prepare_accessible(search_text: &str) -> PreparedRequest {
        PreparedRequest::get(ACCESSIBLE_PATH).with_query("searchText", search_text)
    }
}

/// Builder for `POST Organization/OrganizationGetChildOrganizationsByParameters`. Made by
/// [`Organizations::children`].
///
/// Its requests send `childOrganizations: true` besides the documented fields: one
/// live-tested client found the list empty without it.
#[derive(Debug, Clone)]
#[must_use = "a request builder does nothing until `.send()` or `.stream()`"]
pub struct ChildOrganizations {
    client: Client,
    include_all_children: bool,
    search_text: String,
    order_by: String,
    ascending: bool,
    paging: Paging,
}

impl ChildOrganizations {
    setters! {
        /// Include nested descendants, not only direct children (default true).
        include_all_children(yes: bool) = yes;

        /// Free-text filter.
        search_text(text: impl Into<String>) = text.into();

        /// Sort field: `name` (default), `dateAdded`, `billingMethod`,
        /// `businessClassificationName`.
        order_by(field: impl Into<String>) = field.into();

        /// Ascending (default true).
        ascending(yes: bool) = yes;
    }

    fn prepare_page(&self, page: u32, page_size: u32) -> PreparedRequest {
        PreparedRequest::search(
            CHILDREN_PATH,
            json!({
                "pageNumber": page,
                "pageSize": page_size,
                "searchText": self.search_text,
                "orderBy": self.order_by,
                "isAscending": self.ascending,
                "includeAllChildren": self.include_all_children,
                "childOrganizations": true,
            }),
        )
    }
}

paged! {
    ChildOrganizations => Organization, decode: decode_list;
    /// Streams every child organization across pages, de-duplicated by `organizationId`.
    /// Nested children stay inside their parent ([`Organization::flatten`] walks them).
}
