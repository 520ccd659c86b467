//! Applications: search, get, matching list, research details (reference §3.5).

use serde_json::json;

use super::{not_found, paged, require_id, Paging};
use crate::client::Client;
use crate::codes::OsType;
use crate::decode::{decode_list, decode_optional, decode_unwrapped};
use crate::error::{Error, Result};
use crate::handles::Applications;
use crate::ids::ApplicationId;
use crate::models::{Application, MatchQuery, MatchingList, ResearchDetails};
use crate::request::PreparedRequest;

const SEARCH_PATH: &str = "/portalapi/Application/ApplicationGetByParameters";
const GET_PATH: &str = "/portalapi/Application/ApplicationGetById";
const MATCHING_PATH: &str = "/portalapi/Application/ApplicationGetMatchingList";
const RESEARCH_PATH: &str = "/portalapi/Application/ApplicationGetResearchDetailsById";

/// What an application search text matches (`searchBy`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SearchBy {
    /// Application name (`app`).
    Name,
    /// Full path (`full`).
    FullPath,
    /// Process path (`process`).
    Process,
    /// Hash (`hash`).
    Hash,
    /// Certificate (`cert`).
    Cert,
    /// Created-by process (`created`).
    CreatedBy,
    /// Research categories (`categories`).
    Categories,
    /// Countries (`countries`).
    Countries,
    /// Another value, sent verbatim.
    Other(String),
}

impl SearchBy {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Name => "app",
            Self::FullPath => "full",
            Self::Process => "process",
            Self::Hash => "hash",
            Self::Cert => "cert",
            Self::CreatedBy => "created",
            Self::Categories => "categories",
            Self::Countries => "countries",
            Self::Other(s) => s,
        }
    }
}

impl Applications {
    /// Searches applications. A blank text is sent as `" "` (the API refuses an empty one).
    pub fn search(&self, text: impl Into<String>, by: SearchBy) -> ApplicationSearch {
        ApplicationSearch {
            client: self.client.clone(),
            text: text.into(),
            by,
            order_by: "name".into(),
            ascending: true,
            category: 0,
            os_type: None,
            include_child_organizations: false,
            include_hidden: false,
            permitted_only: false,
            paging: Paging::new(),
        }
    }

    /// One application by id. Tolerates the record nested under `application` or `data`.
    pub async fn get(&self, id: &ApplicationId) -> Result<Application> {
        require_id("applicationId", id.as_str())?;
        let req = PreparedRequest::get(GET_PATH).with_query("applicationId", id);
        let raw = self.client.execute(&req).await?;
        decode_unwrapped(&req.endpoint(), &raw.body, &["application", "data"])?
            .ok_or_else(|| not_found(&req.endpoint(), format!("no application {id}")))
    }

    /// The applications a file matches (`ApplicationGetMatchingList`, the "match by hash"
    /// call). A read: it is retried like a search.
    pub async fn matching_list(&self, query: MatchQuery) -> Result<MatchingList> {
        let req = Self::prepare_matching_list(&query)?;
        let raw = self.client.execute(&req).await?;
        let endpoint = req.endpoint();
        let list: Option<MatchingList> = decode_optional(&endpoint, &raw.body)?;
        Ok(list.unwrap_or_default())
    }

    /// The request [`Applications::matching_list`] sends.
    pub fn prepare_matching_list(query: &MatchQuery) -> Result<PreparedRequest> {
        let body = serde_json::to_value(query)
            .map_err(|e| Error::InvalidRequest(format!("match query: {e}")))?;
        Ok(PreparedRequest::search(MATCHING_PATH, body))
    }

    /// ThreatLocker's research on an application, with its `categories`.
    pub async fn research_details(&self, id: &ApplicationId) -> Result<ResearchDetails> {
        require_id("applicationId", id.as_str())?;
        let req = PreparedRequest::get(RESEARCH_PATH).with_query("applicationId", id);
        let raw = self.client.execute(&req).await?;
        decode_optional(&req.endpoint(), &raw.body)?.ok_or_else(|| {
            not_found(
                &req.endpoint(),
                format!("no research details for application {id}"),
            )
        })
    }
}

/// Builder for `POST Application/ApplicationGetByParameters`. Made by
/// [`Applications::search`].
#[derive(Debug, Clone)]
#[must_use = "a request builder does nothing until `.send()` or `.stream()`"]
pub struct ApplicationSearch {
    client: Client,
    text: String,
    by: SearchBy,
    order_by: String,
    ascending: bool,
    category: i32,
    os_type: Option<OsType>,
    include_child_organizations: bool,
    include_hidden: bool,
    permitted_only: bool,
    paging: Paging,
}

impl ApplicationSearch {
    setters! {
        /// Sort field: `name` (default), `date-created`, `review-rating`, `computer-count`,
        /// `policy`.
        order_by(field: impl Into<String>) = field.into();

        /// Ascending (default true).
        ascending(yes: bool) = yes;

        /// Application category: 0 all (default), 1 custom ("My Applications"), 2 built-in.
        category(category: i32) = category;

        /// Only this operating system (default all: `osType` 0).
        os_type(os: OsType) = Some(os);

        /// Include child organizations' applications.
        include_child_organizations(yes: bool) = yes;

        /// Include hidden applications (`isHidden`).
        include_hidden(yes: bool) = yes;

        /// Only applications with an active permit (`permittedApplications`).
        permitted_only(yes: bool) = yes;
    }

    fn prepare_page(&self, page: u32, page_size: u32) -> PreparedRequest {
        let text = if self.text.trim().is_empty() {
            " ".to_owned()
        } else {
            self.text.clone()
        };
        PreparedRequest::search(
            SEARCH_PATH,
            json!({
                "searchText": text,
                "searchBy": self.by.as_str(),
                "orderBy": self.order_by,
                "isAscending": self.ascending,
                "category": self.category,
                "osType": self.os_type.map_or(0, OsType::code),
                "includeChildOrganizations": self.include_child_organizations,
                "isHidden": self.include_hidden,
                "permittedApplications": self.permitted_only,
                "countries": [],
                "categories": [],
                "pageNumber": page,
                "pageSize": page_size,
            }),
        )
    }
}

paged! {
    ApplicationSearch => Application, decode: decode_list;
    /// Streams every match across pages, de-duplicated by `applicationId`.
}
