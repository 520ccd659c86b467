//! Tags: the dropdown list (reference §3.9).

use crate::client::Client;
use crate::decode::decode_list;
use crate::error::Result;
use crate::handles::Tags;
use crate::models::TagOption;
use crate::request::PreparedRequest;

/// The path, with the API's own typo ("Downdown") kept verbatim.
const DROPDOWN_PATH: &str = "/portalapi/Tag/TagGetDowndownOptionsByOrganizationId";

impl Tags {
    /// The tags of the organization as dropdown options (`value` is the tag id; parent-org
    /// tags are labelled `parentOrg\tagName`).
    pub fn dropdown(&self) -> TagDropdown {
        TagDropdown {
            client: self.client.clone(),
            include_built_ins: false,
            tag_type: 1,
            include_network_tag_in_master: true,
        }
    }
}

/// Builder for `GET Tag/TagGetDowndownOptionsByOrganizationId`. Made by [`Tags::dropdown`].
/// All three query parameters are always sent.
#[derive(Debug, Clone)]
#[must_use = "a request builder does nothing until `.send()`"]
pub struct TagDropdown {
    client: Client,
    include_built_ins: bool,
    tag_type: i32,
    include_network_tag_in_master: bool,
}

impl TagDropdown {
    setters! {
        /// Include ThreatLocker's built-in tags (default false).
        include_built_ins(yes: bool) = yes;

        /// Tag type (default 1, network tags; other values are undocumented).
        tag_type(tag_type: i32) = tag_type;

        /// Include network tags of the master organization (default true).
        include_network_tag_in_master(yes: bool) = yes;
    }

    /// The request, without sending it.
    pub fn prepare(&self) -> PreparedRequest {
        PreparedRequest::get(DROPDOWN_PATH)
            .with_query("includeBuiltIns", self.include_built_ins)
            .with_query("tagType", self.tag_type)
            .with_query(
                "includeNetworkTagInMaster",
                self.include_network_tag_in_master,
            )
    }

    /// Fetches the options.
    pub async fn send(self) -> Result<Vec<TagOption>> {
        let req = self.prepare();
        let raw = self.client.execute(&req).await?;
        decode_list(&req.endpoint(), &raw.body)
    }
}
