//! Action log (Unified Audit): search, get one event, file history (reference §3.1).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{paged, require_id, Paged, Paging};
use crate::client::Client;
use crate::codes::{ActionOutcome, SourceTable};
use crate::decode::{decode_list, decode_optional};
use crate::error::{Error, Result};
use crate::handles::Audit;
use crate::ids::{ComputerId, EActionLogId, PolicyId};
use crate::models::{ActionLogRow, Page};
use crate::request::PreparedRequest;
use crate::stream::DecodeRows;
use crate::time::format_request_date;

const SEARCH_PATH: &str = "/portalapi/ActionLog/ActionLogGetByParametersV2";
const GET_PATH: &str = "/portalapi/ActionLog/ActionLogGetByIdV2";
const FILE_HISTORY_PATH: &str = "/portalapi/ActionLog/ActionLogGetAllForFileHistoryV2";

/// Whether a deny was enforced or only observed (monitor-only / learning computers).
///
/// Filtering on this needs `actionId: 99` plus the `MonitorOnly` advanced-search entry; the
/// `onlyTrueDenies`/`simulateDeny` flags alone are silently ignored by the API (reference
/// §3.1.1), so the builder sends all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Enforcement {
    /// Enforced denies only (`MonitorOnly = false`).
    Enforced,
    /// Simulated (monitor-only, audit-only) denies only (`MonitorOnly = true`).
    MonitorOnly,
}

impl Enforcement {
    /// The `paramsFieldsDto` entry that filters on it.
    pub fn params_field(self) -> Value {
        json!({
            "fieldAttributeId": 34,
            "fieldType": 1,
            "filterType": 1,
            "name": "MonitorOnly",
            "value": if self == Self::MonitorOnly { "true" } else { "false" },
        })
    }
}

impl Audit {
    /// Searches the action log between `start` and `end` (both required: the API answers 417
    /// "Invalid Date Range" without them).
    ///
    /// ```no_run
    /// # async fn f(client: threatlocker_api::Client) -> threatlocker_api::Result<()> {
    /// use threatlocker_api::prelude::*;
    /// let end = Utc::now();
    /// let rows: Vec<_> = client
    ///     .audit()
    ///     .search(end - TimeDelta::hours(24), end)
    ///     .outcome(ActionOutcome::AnyDeny)
    ///     .enforcement(Enforcement::Enforced)
    ///     .child_organizations(true)
    ///     .stream()
    ///     .try_collect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn search(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> AuditSearch {
        AuditSearch {
            client: self.client.clone(),
            start,
            end,
            outcome: None,
            enforcement: None,
            action_type: None,
            action_types: Vec::new(),
            hostname: None,
            full_path: None,
            policy: None,
            child_organizations: false,
            group_bys: Vec::new(),
            source_table: None,
            show_total_count: true,
            sha256: None,
            paging: Paging::new(),
        }
    }

    /// Gets one event by its string id (`eActionLogId`, not the numeric `actionLogId`).
    pub fn get(&self, id: impl Into<EActionLogId>) -> AuditGet {
        AuditGet {
            client: self.client.clone(),
            id: id.into(),
            source_table: None,
            all_parents: false,
        }
    }

    /// The history of one file path on one computer (set [`FileHistory::hostname`] or
    /// [`FileHistory::computer`]; the API refuses the call without either). Not a fleet-wide
    /// lookup: for that, search with [`AuditSearch::full_path`].
    pub fn file_history(&self, full_path: impl Into<String>) -> FileHistory {
        FileHistory {
            client: self.client.clone(),
            full_path: full_path.into(),
            hostname: None,
            computer: None,
            source_table: None,
            paging: Paging::new(),
        }
    }
}

/// Builder for `POST ActionLog/ActionLogGetByParametersV2`. Made by [`Audit::search`].
#[derive(Debug, Clone)]
#[must_use = "a request builder does nothing until `.send()` or `.stream()`"]
pub struct AuditSearch {
    client: Client,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    outcome: Option<ActionOutcome>,
    enforcement: Option<Enforcement>,
    action_type: Option<String>,
    action_types: Vec<String>,
    hostname: Option<String>,
    full_path: Option<String>,
    policy: Option<PolicyId>,
    child_organizations: bool,
    group_bys: Vec<i32>,
    source_table: Option<SourceTable>,
    show_total_count: bool,
    sha256: Option<String>,
    paging: Paging,
}

impl AuditSearch {
    setters! {
        /// Only rows with this outcome (`actionId`); [`ActionOutcome::AnyDeny`] (99) for any deny.
        outcome(outcome: ActionOutcome) = Some(outcome);

        /// Only enforced, or only monitor-only (simulated), denies. Without an outcome this also
        /// sets `actionId: 99` (any deny), which the API needs for the filter to apply.
        enforcement(enforcement: Enforcement) = Some(enforcement);

        /// One action type (`execute`, `install`, `network`, `registry`, `read`, `write`, `move`,
        /// `delete`, `baseline`, `powershell`, `elevate`, `configuration`, `dns`).
        action_type(action_type: impl Into<String>) = Some(action_type.into());
    }

    /// Several action types.
    pub fn action_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.action_types = types.into_iter().map(Into::into).collect();
        self
    }

    setters! {
        /// Host name filter (`*` wildcards allowed).
        hostname(hostname: impl Into<String>) = Some(hostname.into());

        /// Full path filter (`*` wildcards allowed).
        full_path(path: impl Into<String>) = Some(path.into());

        /// Only rows handled by this policy.
        policy(policy: impl Into<PolicyId>) = Some(policy.into());

        /// Include child and grandchild organizations (`showChildOrganizations`). A parent (MSP)
        /// key without it may get an empty list or HTTP 500.
        child_organizations(yes: bool) = yes;

        /// Aggregate by up to two fields (`groupBys` codes: 1 username, 2 process path, 5 policy id,
        /// 6 policy name, 7 app id, 8 app name, 9 action type, 11 hash, 17 asset name, 65 computer
        /// id, 70 risk score, 71 risk state). Grouped rows fill `groupByCount`.
        group_bys(codes: Vec<i32>) = codes;

        /// Sends `sourceTableId` (not sent by default; its effect on searches is unverified).
        source_table(table: SourceTable) = Some(table);

        /// Whether to ask for totals (`showTotalCount`, default true).
        show_total_count(yes: bool) = yes;

        /// Only rows of the file with this SHA-256 (64 hex digits, any case), matched against
        /// each row's `sha256Hash`, else its `hash`.
        ///
        /// The search body has no documented hash field (reference §6.1: `ActionLogParamsDto`
        /// has none), so the filter is applied by the client to every row of the window: narrow
        /// the window or add server-side filters (outcome, host name, path) on large tenants.
        /// A value that is not 64 hex digits fails the call before anything is sent.
        sha256(hash: impl Into<String>) = Some(hash.into().trim().to_ascii_lowercase());
    }

    fn check(&self) -> Result<()> {
        match &self.sha256 {
            Some(h) if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => Err(
                Error::InvalidRequest(format!("sha256 {h:?} is not a SHA-256 (64 hex digits)")),
            ),
            _ => Ok(()),
        }
    }

    fn row_filter(&self) -> Option<crate::stream::RowFilter<ActionLogRow>> {
        let want = self.sha256.clone()?;
        Some(Box::new(move |row: &ActionLogRow| {
            row.sha256_hash
                .as_deref()
                .or(row.hash.as_deref())
                .is_some_and(|h| h.trim().eq_ignore_ascii_case(&want))
        }))
    }

    /// The request for the builder's page, without sending it.
    pub fn prepare(&self) -> PreparedRequest {
        Paged::first_request(self)
    }

    /// Fetches one page, as the search was given (no per-table fallback; see
    /// [`AuditSearch::stream`]). With [`AuditSearch::sha256`], rows of other files are removed
    /// from the page.
    pub async fn send(self) -> Result<Page<ActionLogRow>> {
        let keep = self.row_filter();
        let mut page = super::send_first(self).await?;
        if let Some(keep) = keep {
            page.items.retain(|r| keep(r));
        }
        Ok(page)
    }

    /// Streams every matching row across pages, de-duplicated, tolerant of both readings of
    /// `sourceTableId` (reference §3.1.1, UNCERTAIN: most clients search without it, one
    /// source reports HTTP 500 unless it is sent).
    ///
    /// The search goes out as given. If no source table was chosen and the first page answers
    /// HTTP 500 (after the usual retries), the search is read once per source table
    /// (1 ActionLog, 2 DenyActionLog, 3 Baseline, 4 EventLog) and the rows merged,
    /// de-duplicated by the pair of row ids (a server that ignores the table answers the same
    /// rows for each; the numeric id alone may repeat across tables). If a per-table read
    /// fails, the original 500 is the stream's error. With a source table chosen, only that
    /// table is read.
    ///
    /// ```no_run
    /// # async fn f(client: threatlocker_api::Client) -> threatlocker_api::Result<()> {
    /// use threatlocker_api::prelude::*;
    /// let end = Utc::now();
    /// let mut rows = client.audit().search(end - TimeDelta::hours(1), end).stream();
    /// while let Some(row) = rows.try_next().await? {
    ///     println!("{:?} {:?}", row.hostname, row.full_path);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<ActionLogRow>> + Send + Unpin + 'static {
        use futures_util::stream::{self, BoxStream, StreamExt};

        let chosen = self.source_table.is_some();
        let first_try: BoxStream<'static, Result<ActionLogRow>> =
            self.clone().stream_as_given().boxed();
        stream::once(async move {
            let (head, rest) = first_try.into_future().await;
            match head {
                Some(Err(e)) if !chosen && e.status() == Some(500) => {
                    tracing::info!(error = %e, "action-log search answered 500; reading per source table");
                    per_table(self, e)
                }
                head => stream::iter(head).chain(rest).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    /// The former name of [`AuditSearch::stream`], which now falls back per source table
    /// itself.
    #[deprecated(
        since = "0.2.0",
        note = "use `stream()`, which now falls back per source table"
    )]
    pub fn stream_any_table(
        self,
    ) -> impl futures_util::Stream<Item = Result<ActionLogRow>> + Send + Unpin + 'static {
        self.stream()
    }

    /// Every page of the search exactly as given, without the per-table fallback.
    fn stream_as_given(
        self,
    ) -> impl futures_util::Stream<Item = Result<ActionLogRow>> + Send + 'static {
        super::stream_all(self)
    }

    fn prepare_page(&self, page: u32, page_size: u32) -> PreparedRequest {
        let action_id = self
            .outcome
            .or(self.enforcement.map(|_| ActionOutcome::AnyDeny));
        let params_fields: Vec<Value> = self
            .enforcement
            .map(Enforcement::params_field)
            .into_iter()
            .collect();
        let mut body = json!({
            "startDate": format_request_date(self.start),
            "endDate": format_request_date(self.end),
            "pageNumber": page,
            "pageSize": page_size,
            "paramsFieldsDto": params_fields,
            "groupBys": self.group_bys,
            "exportMode": false,
            "showTotalCount": self.show_total_count,
            "showChildOrganizations": self.child_organizations,
            "onlyTrueDenies": self.enforcement == Some(Enforcement::Enforced),
            "simulateDeny": self.enforcement == Some(Enforcement::MonitorOnly),
        });
        if let Value::Object(map) = &mut body {
            if let Some(a) = action_id {
                map.insert("actionId".into(), json!(a.code()));
            }
            if let Some(t) = &self.action_type {
                map.insert("actionType".into(), json!(t));
            }
            if !self.action_types.is_empty() {
                map.insert("actionTypes".into(), json!(self.action_types));
            }
            if let Some(h) = &self.hostname {
                map.insert("hostname".into(), json!(h));
            }
            if let Some(p) = &self.full_path {
                map.insert("fullPath".into(), json!(p));
            }
            if let Some(p) = &self.policy {
                map.insert("policyId".into(), json!(p));
            }
            if let Some(t) = self.source_table {
                map.insert("sourceTableId".into(), json!(t.code()));
            }
        }
        PreparedRequest::search(SEARCH_PATH, body).with_header("usenewsearch", "true")
    }
}

impl Paged for AuditSearch {
    type Row = ActionLogRow;
    const DECODE: DecodeRows<ActionLogRow> = decode_list;

    fn client(&self) -> &Client {
        &self.client
    }
    fn paging(&self) -> Paging {
        self.paging
    }
    fn request_for_page(&self, page: u32, page_size: u32) -> PreparedRequest {
        self.prepare_page(page, page_size)
    }
    fn check(&self) -> Result<()> {
        AuditSearch::check(self)
    }
    fn row_filter(&self) -> Option<crate::stream::RowFilter<ActionLogRow>> {
        AuditSearch::row_filter(self)
    }
}

impl AuditSearch {
    super::paging_setters!();
}

/// Builder for `GET ActionLog/ActionLogGetByIdV2`. Made by [`Audit::get`].
#[derive(Debug, Clone)]
#[must_use = "a request builder does nothing until `.send()`"]
pub struct AuditGet {
    client: Client,
    id: EActionLogId,
    source_table: Option<SourceTable>,
    all_parents: bool,
}

impl AuditGet {
    setters! {
        /// The table the row lives in. Without it the call is tried without a table, then with
        /// tables 1, 2, 3 and 4 in turn (search rows do not say which table they came from).
        source_table(table: SourceTable) = Some(table);

        /// Return the full parent-process chain (`getAllParents`).
        all_parents(yes: bool) = yes;
    }

    /// The request with the configured source table (none if unset), without sending it.
    pub fn prepare(&self) -> PreparedRequest {
        self.prepare_for(self.source_table)
    }

    /// The request for one source table (or none).
    pub fn prepare_for(&self, table: Option<SourceTable>) -> PreparedRequest {
        let mut req = PreparedRequest::get(GET_PATH).with_query("eActionLogId", &self.id);
        if let Some(t) = table {
            req = req.with_query("sourceTableId", t.code());
        }
        req.with_query("getAllParents", self.all_parents)
    }

    fn validate(&self) -> Result<()> {
        require_id("eActionLogId", self.id.as_str())?;
        if self.id.as_str().trim().bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidRequest(format!(
                "{:?} looks like the numeric actionLogId; ActionLogGetByIdV2 needs the row's \
                 string eActionLogId (the numeric id makes the API answer HTTP 500)",
                self.id.as_str()
            )));
        }
        Ok(())
    }

    /// Fetches the event. A not-found, HTTP 500 or empty answer moves on to the next source
    /// table when none was given; the last such failure is returned when every table fails.
    pub async fn send(self) -> Result<ActionLogRow> {
        self.validate()?;
        let tables: Vec<Option<SourceTable>> = match self.source_table {
            Some(t) => vec![Some(t)],
            None => std::iter::once(None)
                .chain(SourceTable::ALL.into_iter().map(Some))
                .collect(),
        };
        let mut last: Option<Error> = None;
        for table in tables {
            let req = self.prepare_for(table);
            let endpoint = req.endpoint();
            // Without a known table, a 500 means "not in this table": try the next one at once
            // rather than retrying it.
            let final_statuses: &[u16] = if self.source_table.is_none() {
                &[500]
            } else {
                &[]
            };
            match self.client.execute_with(&req, final_statuses).await {
                Ok(raw) => match decode_event(&endpoint, &raw.body, &self.id)? {
                    Some(row) => return Ok(row),
                    None => {
                        last = Some(not_found(&endpoint, &self.id, table));
                    }
                },
                Err(e) if fallback_worthy(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| not_found(GET_PATH, &self.id, None)))
    }
}

/// Decodes a get-by-id answer: the event as one object, or (the parent-chain shape is
/// UNCERTAIN, reference §3.1.2) a list of rows, from which the row with the requested id is
/// taken, else the first. An empty body, `null` or `[]` is `None`.
fn decode_event(endpoint: &str, body: &[u8], id: &EActionLogId) -> Result<Option<ActionLogRow>> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        return decode_optional(endpoint, body);
    }
    let rows: Vec<ActionLogRow> = decode_list(endpoint, body)?;
    let wanted = rows.iter().position(|r| {
        r.e_action_log_id
            .as_ref()
            .is_some_and(|e| e.as_str().eq_ignore_ascii_case(id.as_str()))
    });
    Ok(rows.into_iter().nth(wanted.unwrap_or(0)))
}

fn fallback_worthy(e: &Error) -> bool {
    let status = match e {
        Error::RetriesExhausted { last, .. } => last.status(),
        other => other.status(),
    };
    matches!(status, Some(404 | 500))
}

fn not_found(endpoint: &str, id: &EActionLogId, table: Option<SourceTable>) -> Error {
    let table = table
        .map(|t| format!(" in source table {}", t.code()))
        .unwrap_or_default();
    super::not_found(endpoint, format!("no action-log event {id}{table}"))
}

/// Builder for `GET ActionLog/ActionLogGetAllForFileHistoryV2`. Made by [`Audit::file_history`].
#[derive(Debug, Clone)]
#[must_use = "a request builder does nothing until `.send()` or `.stream()`"]
pub struct FileHistory {
    client: Client,
    full_path: String,
    hostname: Option<String>,
    computer: Option<ComputerId>,
    source_table: Option<SourceTable>,
    paging: Paging,
}

impl FileHistory {
    setters! {
        /// The computer, by host name.
        hostname(hostname: impl Into<String>) = Some(hostname.into());

        /// The computer, by id.
        computer(computer: impl Into<ComputerId>) = Some(computer.into());

        /// Sends `sourceTableId`.
        source_table(table: SourceTable) = Some(table);
    }

    fn prepare_page(&self, page: u32, page_size: u32) -> PreparedRequest {
        let mut req =
            PreparedRequest::get(FILE_HISTORY_PATH).with_query("fullPath", &self.full_path);
        if let Some(h) = &self.hostname {
            req = req.with_query("hostname", h);
        }
        if let Some(c) = &self.computer {
            req = req.with_query("computerId", c);
        }
        if let Some(t) = self.source_table {
            req = req.with_query("sourceTableId", t.code());
        }
        req.with_query("pageNumber", page)
            .with_query("pageSize", page_size)
    }

    fn validate(&self) -> Result<()> {
        require_id("fullPath", &self.full_path)?;
        let host = self
            .hostname
            .as_deref()
            .is_some_and(|h| !h.trim().is_empty());
        let computer = self
            .computer
            .as_ref()
            .is_some_and(|c| !c.as_str().trim().is_empty());
        if !host && !computer {
            return Err(Error::InvalidRequest(
                "file history needs a hostname or a computer id besides fullPath (the API \
                 answers 417 \"Missing Parameters\" otherwise); for a fleet-wide lookup search \
                 the action log by fullPath"
                    .into(),
            ));
        }
        Ok(())
    }
}

paged! {
    FileHistory => ActionLogRow, decode: decode_list, check: Self::validate;
    /// Streams every row across pages.
}

/// The per-table reads of [`AuditSearch::stream`]: tables in turn, rows de-duplicated
/// by both ids, the original error in place of a per-table failure.
fn per_table(
    search: AuditSearch,
    original: Error,
) -> futures_util::stream::BoxStream<'static, Result<ActionLogRow>> {
    use futures_util::stream::{self, StreamExt};

    let mut seen = std::collections::HashSet::new();
    let mut original = Some(original);
    stream::iter(SourceTable::ALL)
        .flat_map(move |t| search.clone().source_table(t).stream_as_given())
        .filter_map(move |item| {
            let out = match item {
                Ok(row) => {
                    let key = (
                        row.action_log_id.map(|i| i.get()),
                        row.e_action_log_id.as_ref().map(|e| e.as_str().to_owned()),
                    );
                    (key == (None, None) || seen.insert(key)).then_some(Ok(row))
                }
                // Reported once: the per-table fallback failing means the original failure
                // stands.
                Err(_) => original.take().map(Err),
            };
            std::future::ready(out)
        })
        .scan(false, |failed, item| {
            if *failed {
                return std::future::ready(None);
            }
            *failed = item.is_err();
            std::future::ready(Some(item))
        })
        .boxed()
}
