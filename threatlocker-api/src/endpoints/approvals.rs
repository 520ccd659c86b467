//! Approval requests: search, count, get, the permit-application DTO (reference §3.2).

use serde_json::{json, Value};

use super::{not_found, paged, require_id, Paging};
use crate::client::Client;
use crate::codes::{ApprovalStatus, RequestType};
use crate::decode::{decode_count, decode_list, decode_optional, decode_value};
use crate::error::Result;
use crate::handles::Approvals;
use crate::ids::ApprovalRequestId;
use crate::models::ApprovalRequest;
use crate::request::PreparedRequest;

const SEARCH_PATH: &str = "/portalapi/ApprovalRequest/ApprovalRequestGetByParameters";
const COUNT_PATH: &str = "/portalapi/ApprovalRequest/ApprovalRequestGetCount";
const GET_PATH: &str = "/portalapi/ApprovalRequest/ApprovalRequestGetById";
const PERMIT_DTO_PATH: &str = "/portalapi/ApprovalRequest/ApprovalRequestGetPermitApplicationById";

/// Decodes approval rows and fills their derived fields (`requestorReason` from base64).
fn decode_requests(endpoint: &str, body: &[u8]) -> Result<Vec<ApprovalRequest>> {
    let mut rows: Vec<ApprovalRequest> = decode_list(endpoint, body)?;
    rows.iter_mut().for_each(ApprovalRequest::decode_fields);
    Ok(rows)
}

impl Approvals {
    /// Searches approval requests with `status` (required: the API answers 500 without a
    /// `statusId`, and has no "all" value). Defaults: newest first, every request type.
    pub fn search(&self, status: ApprovalStatus) -> ApprovalSearch {
        ApprovalSearch {
            client: self.client.clone(),
            status,
            search_text: String::new(),
            order_by: "datetime".into(),
            ascending: false,
            child_organizations: false,
            request_type: RequestType::All,
            paging: Paging::new(),
        }
    }

    /// The number of pending approval requests (`ApprovalRequestGetCount`, a bare integer).
    pub async fn count(&self, include_child_organizations: bool) -> Result<i64> {
        let req = Self::prepare_count(include_child_organizations);
        let raw = self.client.execute(&req).await?;
        decode_count(&req.endpoint(), &raw.body)
    }

    /// The request [`Approvals::count`] sends.
    pub fn prepare_count(include_child_organizations: bool) -> PreparedRequest {
        PreparedRequest::get(COUNT_PATH)
            .with_query("includeChildOrganizations", include_child_organizations)
    }

    /// One approval request by id, with derived fields decoded.
    pub async fn get(&self, id: &ApprovalRequestId) -> Result<ApprovalRequest> {
        require_id("approvalRequestId", id.as_str())?;
        let req = PreparedRequest::get(GET_PATH).with_query("approvalRequestId", id);
        let raw = self.client.execute(&req).await?;
        let mut row: ApprovalRequest = decode_optional(&req.endpoint(), &raw.body)?
            .ok_or_else(|| not_found(&req.endpoint(), format!("no approval request {id}")))?;
        row.decode_fields();
        Ok(row)
    }

    /// The pre-populated permit body for a request (`ApprovalRequestGetPermitApplicationById`),
    /// kept as raw JSON so a permit can send it back with every key (and every explicit
    /// `null`) intact.
    pub async fn permit_application_dto(&self, id: &ApprovalRequestId) -> Result<Value> {
        require_id("approvalRequestId", id.as_str())?;
        let req = PreparedRequest::get(PERMIT_DTO_PATH).with_query("approvalRequestId", id);
        let raw = self.client.execute(&req).await?;
        decode_value(&req.endpoint(), &raw.body)
    }
}

/// Builder for `POST ApprovalRequest/ApprovalRequestGetByParameters`. Made by
/// [`Approvals::search`].
#[derive(Debug, Clone)]
#[must_use = "a request builder does nothing until `.send()` or `.stream()`"]
pub struct ApprovalSearch {
    client: Client,
    status: ApprovalStatus,
    search_text: String,
    order_by: String,
    ascending: bool,
    child_organizations: bool,
    request_type: RequestType,
    paging: Paging,
}

impl ApprovalSearch {
    setters! {
        /// Free text over user name, path and computer (`*` wildcards allowed).
        search_text(text: impl Into<String>) = text.into();

        /// Sort field: `username`, `devicetype`, `actiontype`, `path`, `actiondate`, `datetime`
        /// (default).
        order_by(field: impl Into<String>) = field.into();

        /// Oldest first when true (default false: newest first).
        ascending(yes: bool) = yes;

        /// Include child organizations (`showChildOrganizations`).
        child_organizations(yes: bool) = yes;

        /// Only this kind of request (default all).
        request_type(kind: RequestType) = kind;
    }

    fn prepare_page(&self, page: u32, page_size: u32) -> PreparedRequest {
        PreparedRequest::search(
            SEARCH_PATH,
            json!({
                "statusId": self.status.code(),
                "searchText": self.search_text,
                "orderBy": self.order_by,
                "isAscending": self.ascending,
                "showChildOrganizations": self.child_organizations,
                "showCurrentTierOnly": false,
                "requestTypeId": self.request_type.code(),
                "pageNumber": page,
                "pageSize": page_size,
            }),
        )
    }
}

paged! {
    ApprovalSearch => ApprovalRequest, decode: decode_requests;
    /// Streams every matching request across pages, de-duplicated by `approvalRequestId`.
}
