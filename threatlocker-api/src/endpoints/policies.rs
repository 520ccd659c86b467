//! Policies: list, get (reference §3.6).
//!
//! Ownership rule: `PolicyGetById` only answers when `managedOrganizationId` names the
//! organization that **owns** the policy (otherwise a 400-ish "Unable to retrieve application
//! policy"). Scope the call with `client.with_organization(policy_owner).policies().get(..)`;
//! the list rows carry `organizationId` for exactly this.

use serde_json::{json, Value};

use super::{not_found, paged, require_id, Paging};
use crate::client::Client;
use crate::codes::OsType;
use crate::decode::{decode_list, decode_unwrapped};
use crate::error::Result;
use crate::handles::Policies;
use crate::ids::{ComputerGroupId, PolicyId};
use crate::models::Policy;
use crate::request::PreparedRequest;

const LIST_PATH: &str = "/portalapi/Policy/PolicyGetByParameters";
const GET_PATH: &str = "/portalapi/Policy/PolicyGetById";

impl Policies {
    /// Lists policies (`filter` `""` = all by default).
    pub fn list(&self) -> PolicyList {
        PolicyList {
            client: self.client.clone(),
            filter: String::new(),
            applies_to: None,
            os_type: None,
            search_text: String::new(),
            active_only: false,
            show_all: false,
            child_organizations: None,
            paging: Paging::new(),
        }
    }

    /// One policy by id. The client must be scoped to the policy's owning organization
    /// (`client.with_organization(owner)`), see the module docs.
    pub async fn get(&self, id: &PolicyId) -> Result<Policy> {
        require_id("policyId", id.as_str())?;
        let req = PreparedRequest::get(GET_PATH).with_query("policyId", id);
        let raw = self.client.execute(&req).await?;
        decode_unwrapped(&req.endpoint(), &raw.body, &["policy", "data"])?
            .ok_or_else(|| not_found(&req.endpoint(), format!("no policy {id}")))
    }
}

/// Builder for `POST Policy/PolicyGetByParameters`. Made by [`Policies::list`].
#[derive(Debug, Clone)]
#[must_use = "a request builder does nothing until `.send()` or `.stream()`"]
pub struct PolicyList {
    client: Client,
    filter: String,
    applies_to: Option<ComputerGroupId>,
    os_type: Option<OsType>,
    search_text: String,
    active_only: bool,
    show_all: bool,
    child_organizations: Option<bool>,
    paging: Paging,
}

impl PolicyList {
    setters! {
        /// The `filter`: `""` all (default), `nomatch`, `match`, `over6weeks`, `ringfence`,
        /// `noringfence`, `elevation`, `permitonly`.
        filter(filter: impl Into<String>) = filter.into();

        /// Where the policies apply: a computer group, computer or organization id
        /// (`computerGroupId`).
        applies_to(id: impl Into<ComputerGroupId>) = Some(id.into());

        /// Only this operating system.
        os_type(os: OsType) = Some(os);

        /// Free-text filter.
        search_text(text: impl Into<String>) = text.into();

        /// Only active policies.
        active_only(yes: bool) = yes;

        /// Include inherited / higher-level policies (`showAllPolicies`).
        show_all(yes: bool) = yes;

        /// Include child organizations (`childOrganizations`, not sent unless set).
        child_organizations(yes: bool) = Some(yes);
    }

    fn prepare_page(&self, page: u32, page_size: u32) -> PreparedRequest {
        let mut body = json!({
            "filter": self.filter,
            "pageNumber": page,
            "pageSize": page_size,
            "searchText": self.search_text,
            "activeOnly": self.active_only,
            "showAllPolicies": self.show_all,
        });
        if let Value::Object(map) = &mut body {
            if let Some(g) = &self.applies_to {
                map.insert("computerGroupId".into(), json!(g));
            }
            if let Some(os) = self.os_type {
                map.insert("osType".into(), json!(os.code()));
            }
            if let Some(c) = self.child_organizations {
                map.insert("childOrganizations".into(), json!(c));
            }
        }
        PreparedRequest::search(LIST_PATH, body)
    }
}

paged! {
    PolicyList => Policy, decode: decode_list;
    /// Streams every policy across pages, de-duplicated by `policyId`.
}
