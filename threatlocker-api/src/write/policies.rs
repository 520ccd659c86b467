//! Policy writes: insert, update (full replace), delete by ids, deploy.
//!
//! **Ownership rule** (reference §1.3): a policy can only be read, updated or deleted with
//! `managedOrganizationId` naming the organization that *owns* it. With another organization's
//! header the API answers "Unable to retrieve application policy" (400-ish), or "Insufficient
//! permission to update policies in the selected destination" when a child's header is used on
//! a parent's policy. So every write here is scoped to the owning organization: taken from the
//! policy's `organizationId`, and deletes are grouped per owning organization, one call each.
//! Policy changes reach computers only after [`Policies::deploy`] for that organization.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::codes::{OsType, PolicyAction};
use crate::error::{Error, Result};
use crate::ids::{ApplicationId, ComputerGroupId, OrganizationId, PolicyId};
use crate::request::{Method, PreparedRequest};
use crate::time::format_request_date;

#[cfg(feature = "client")]
use crate::{decode::decode_optional, handles::Policies};

/// Path of `PolicyGetById`.
#[cfg(feature = "client")]
const POLICY_GET_PATH: &str = "/portalapi/Policy/PolicyGetById";

/// Path of `PolicyInsert`.
pub const POLICY_INSERT_PATH: &str = "/portalapi/Policy/PolicyInsert";
/// Path of `PolicyUpdateById`.
pub const POLICY_UPDATE_PATH: &str = "/portalapi/Policy/PolicyUpdateById";
/// Path of `PolicyUpdateForDeleteByIds`.
pub const POLICY_DELETE_PATH: &str = "/portalapi/Policy/PolicyUpdateForDeleteByIds";
/// Path of `DeployPolicyQueue/DeployPolicies`.
pub const DEPLOY_PATH: &str = "/portalapi/DeployPolicyQueue/DeployPolicies";

/// A policy to create (`PolicyInsert`).
///
/// ```
/// use threatlocker_api::{NewPolicy, OsType, PolicyAction};
/// let p = NewPolicy::new("Permit AnyDesk - Front Desk", OsType::Windows, "5e4d3c2b-4444")
///     .application("7c6b5a49-5555")
///     .action(PolicyAction::Permit);
/// # let _ = p;
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NewPolicy {
    /// Name.
    pub name: String,
    /// Applications the policy covers (`applicationIdList`, at least one).
    pub application_ids: Vec<ApplicationId>,
    /// Where it applies (`computerGroupId`: a group, computer or organization id).
    pub applies_to: ComputerGroupId,
    /// Operating system (never 0).
    pub os_type: OsType,
    /// What the policy does (`policyActionId`: Permit, Deny, PermitWithRingfence).
    pub action: PolicyAction,
    /// Enabled (default true).
    pub is_enabled: bool,
    /// Write matches to the Unified Audit (default true).
    pub log_action: bool,
    /// Elevation (`elevationStatus`: 0 none, 1 elevate, 2 silently, 3 force standard user).
    pub elevation_status: i32,
    /// Expiry: sets `endDate` and `policyScheduleStatus: 1`.
    pub end_date: Option<DateTime<Utc>>,
    /// Ringfencing options (`AdvRFPolicy`), as JSON.
    pub ringfencing_options: Option<Value>,
    /// The organization that will own the policy (`managedOrganizationId`); `None` uses the
    /// client's.
    pub organization: Option<OrganizationId>,
    /// Further body fields (`description`, `orderBefore`, `monitorMode`, ...), added as given.
    pub extra: Map<String, Value>,
}

impl NewPolicy {
    /// A permit policy with no applications yet.
    pub fn new(
        name: impl Into<String>,
        os_type: OsType,
        applies_to: impl Into<ComputerGroupId>,
    ) -> Self {
        Self {
            name: name.into(),
            application_ids: Vec::new(),
            applies_to: applies_to.into(),
            os_type,
            action: PolicyAction::Permit,
            is_enabled: true,
            log_action: true,
            elevation_status: 0,
            end_date: None,
            ringfencing_options: None,
            organization: None,
            extra: Map::new(),
        }
    }
    /// Adds an application.
    pub fn application(mut self, id: impl Into<ApplicationId>) -> Self {
        self.application_ids.push(id.into());
        self
    }
    setters! {
        /// Sets the action.
        action(action: PolicyAction) = action;

        /// Sets the expiry.
        end_date(at: DateTime<Utc>) = Some(at);
    }
    /// Sets the ringfencing options.
    pub fn ringfencing(mut self, options: Value) -> Self {
        self.ringfencing_options = Some(options);
        self
    }
    setters! {
        /// Sets the owning organization.
        organization(org: impl Into<OrganizationId>) = Some(org.into());
    }
    /// Sets any further body field.
    pub fn field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// The request body.
    pub fn to_body(&self) -> Result<Value> {
        if self.name.trim().is_empty() {
            return Err(Error::InvalidRequest("NewPolicy.name is empty".into()));
        }
        if self.application_ids.is_empty() {
            return Err(Error::InvalidRequest(
                "NewPolicy.application_ids (applicationIdList) needs at least one application"
                    .into(),
            ));
        }
        if self.applies_to.as_str().trim().is_empty() {
            return Err(Error::InvalidRequest(
                "NewPolicy.applies_to (computerGroupId) is empty".into(),
            ));
        }
        if self.os_type.code() == 0 {
            return Err(Error::InvalidRequest(
                "NewPolicy.os_type must not be 0 (the API refuses it)".into(),
            ));
        }
        let mut m = self.extra.clone();
        m.insert("name".into(), json!(self.name));
        m.insert("applicationIdList".into(), json!(self.application_ids));
        m.insert("computerGroupId".into(), json!(self.applies_to));
        m.insert("osType".into(), json!(self.os_type));
        m.insert("policyActionId".into(), json!(self.action));
        m.insert("isEnabled".into(), json!(self.is_enabled));
        m.insert("logAction".into(), json!(self.log_action));
        m.insert("elevationStatus".into(), json!(self.elevation_status));
        match self.end_date {
            Some(d) => {
                m.insert("policyScheduleStatus".into(), json!(1));
                m.insert("endDate".into(), json!(format_request_date(d)));
            }
            None => {
                m.entry("policyScheduleStatus").or_insert(json!(0));
            }
        }
        if let Some(rf) = &self.ringfencing_options {
            m.insert("ringfencingOptions".into(), rf.clone());
        }
        Ok(Value::Object(m))
    }
}

/// A policy to delete: its id, its owning organization, and (optionally) its name.
///
/// Ownership rule (reference §1.3): policy reads, updates and deletes only succeed when
/// `managedOrganizationId` names the organization that owns the policy — otherwise the API
/// answers "Unable to retrieve application policy" or "Insufficient permission to update
/// policies in the selected destination". That is why the owner is required here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PolicyRef {
    /// Policy id.
    pub policy_id: PolicyId,
    /// Owning organization.
    pub organization_id: OrganizationId,
    /// Name (sent when known).
    pub name: Option<String>,
}

impl PolicyRef {
    /// A reference to a policy owned by `organization_id`.
    pub fn new(policy_id: impl Into<PolicyId>, organization_id: impl Into<OrganizationId>) -> Self {
        Self {
            policy_id: policy_id.into(),
            organization_id: organization_id.into(),
            name: None,
        }
    }
    setters! {
        /// Sets the name.
        name(name: impl Into<String>) = Some(name.into());
    }
}

/// The insert write, scoped to `policy.organization` when set.
pub fn prepare_policy_insert(policy: &NewPolicy) -> Result<PreparedRequest> {
    let req = PreparedRequest::write(Method::Post, POLICY_INSERT_PATH, Some(policy.to_body()?));
    Ok(match &policy.organization {
        Some(o) => req.with_organization(o.clone()),
        None => req,
    })
}

/// The update write: `PUT PolicyUpdateById` with the **full** policy object.
///
/// This is a full replace: any optional field left out is reset to its default (false/empty)
/// by the server, and `osType` cannot change. The usual way is GET (`PolicyGetById`) → patch
/// the JSON → PUT it back. The object must carry `policyId`; its `organizationId` (the owner)
/// scopes the call.
pub fn prepare_policy_update(policy_json: Value) -> Result<PreparedRequest> {
    let Value::Object(m) = &policy_json else {
        return Err(Error::InvalidRequest(
            "the policy to update must be a JSON object".into(),
        ));
    };
    if m.get("policyId")
        .and_then(Value::as_str)
        .is_none_or(|s| s.trim().is_empty())
    {
        return Err(Error::InvalidRequest(
            "the policy to update has no `policyId`".into(),
        ));
    }
    let owner = m
        .get("organizationId")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(OrganizationId::from);
    let req = PreparedRequest::write(Method::Put, POLICY_UPDATE_PATH, Some(policy_json));
    Ok(match owner {
        Some(o) => req.with_organization(o),
        None => req,
    })
}

/// The delete writes: one `PUT PolicyUpdateForDeleteByIds` per owning organization, each with a
/// **bare JSON array** body of `{policyId, organizationId, name}` rows (an object body is
/// refused by the API) and scoped with that organization's `managedOrganizationId`.
/// Organizations come in sorted order; duplicates are sent once.
pub fn prepare_policy_delete(policies: &[PolicyRef]) -> Result<Vec<PreparedRequest>> {
    if policies.is_empty() {
        return Err(Error::InvalidRequest("no policies to delete".into()));
    }
    let mut by_org: BTreeMap<&OrganizationId, Vec<&PolicyRef>> = BTreeMap::new();
    for (i, p) in policies.iter().enumerate() {
        if p.policy_id.as_str().trim().is_empty() {
            return Err(Error::InvalidRequest(format!(
                "policy at index {i} has an empty policy_id"
            )));
        }
        if p.organization_id.as_str().trim().is_empty() {
            return Err(Error::InvalidRequest(format!(
                "policy {} has an empty organization_id (deletes must be scoped to the owning organization)",
                p.policy_id
            )));
        }
        let rows = by_org.entry(&p.organization_id).or_default();
        if !rows.iter().any(|r| r.policy_id == p.policy_id) {
            rows.push(p);
        }
    }
    Ok(by_org
        .into_iter()
        .map(|(org, rows)| {
            let body = Value::Array(
                rows.iter()
                    .map(|p| {
                        json!({
                            "policyId": p.policy_id,
                            "organizationId": p.organization_id,
                            "name": p.name,
                        })
                    })
                    .collect(),
            );
            PreparedRequest::write(Method::Put, POLICY_DELETE_PATH, Some(body))
                .with_organization(org.clone())
        })
        .collect())
}

/// The deploy write: `POST DeployPolicyQueue/DeployPolicies` scoped with
/// `managedOrganizationId: org`, body `{organizationId, managedOrganizationId}`. One
/// organization per call.
pub fn prepare_policy_deploy(org: &OrganizationId) -> Result<PreparedRequest> {
    if org.as_str().trim().is_empty() {
        return Err(Error::InvalidRequest(
            "the organization id to deploy is empty".into(),
        ));
    }
    Ok(PreparedRequest::write(
        Method::Post,
        DEPLOY_PATH,
        Some(json!({ "organizationId": org, "managedOrganizationId": org })),
    )
    .with_organization(org.clone()))
}

#[cfg(feature = "client")]
impl Policies {
    /// Creates a policy (`PolicyInsert`). Returns the response body (its shape is
    /// undocumented; `None` when empty). Not retried; an unknown outcome is
    /// [`Error::OutcomeUnknown`] — look the policy up by name before creating it again.
    pub async fn insert(&self, policy: &NewPolicy) -> Result<Option<Value>> {
        let req = prepare_policy_insert(policy)?;
        let raw = self.client.execute(&req).await.map_err(|e| {
            super::classify_write_error(|| format!("insert of policy {:?}", policy.name), e)
        })?;
        Ok(decode_optional::<Value>(&req.endpoint(), &raw.body)
            .ok()
            .flatten())
    }

    /// Replaces a policy (`PUT PolicyUpdateById`) with `policy_json`, the **full** policy
    /// object: omitted optional fields reset to defaults. Typical use: GET the policy, patch
    /// the JSON, PUT it back. Scoped to the policy's owning `organizationId`.
    pub async fn update(&self, policy_json: Value) -> Result<()> {
        let req = prepare_policy_update(policy_json)?;
        self.client.execute(&req).await.map(drop).map_err(|e| {
            super::classify_write_error(
                || "update of a policy (re-read it before retrying)".into(),
                e,
            )
        })
    }

    /// The usual update: reads the policy from its owning organization (`PolicyGetById`,
    /// scoped with `managedOrganizationId: owner`), lets `patch` edit the JSON, and PUTs the
    /// whole object back (full replace, same scope). Returns the object that was sent.
    pub async fn update_with(
        &self,
        policy_id: &PolicyId,
        owner: &OrganizationId,
        patch: impl FnOnce(&mut Value),
    ) -> Result<Value> {
        let mut policy = fetch_policy_for_write(&self.client, policy_id, owner).await?;
        patch(&mut policy);
        let mut req = prepare_policy_update(policy)?;
        req.organization = Some(owner.clone());
        self.client.execute(&req).await.map_err(|e| {
            super::classify_write_error(
                || format!("update of policy {policy_id} (re-read it before retrying)"),
                e,
            )
        })?;
        Ok(req.body.unwrap_or(Value::Null))
    }

    /// Deletes policies, one call per owning organization (see [`prepare_policy_delete`]).
    /// Stops at the first failure; the error names the organizations already done.
    pub async fn delete(&self, policies: &[PolicyRef]) -> Result<()> {
        let reqs = prepare_policy_delete(policies)?;
        for (i, req) in reqs.iter().enumerate() {
            if let Err(e) = self.client.execute(req).await {
                let done: Vec<String> = reqs[..i]
                    .iter()
                    .filter_map(|r| r.organization.as_ref().map(ToString::to_string))
                    .collect();
                let org = req.organization.clone().unwrap_or_default();
                return Err(super::classify_write_error(
                    || {
                        format!(
                            "delete of policies in organization {org} (organizations already done: [{}])",
                            done.join(", ")
                        )
                    },
                    e,
                ));
            }
        }
        Ok(())
    }

    /// Pushes an organization's queued policy changes to its computers
    /// (`DeployPolicyQueue/DeployPolicies`). Needed after every insert, update, delete or copy.
    pub async fn deploy(&self, org: &OrganizationId) -> Result<()> {
        let req = prepare_policy_deploy(org)?;
        self.client.execute(&req).await.map(drop).map_err(|e| {
            super::classify_write_error(
                || {
                    format!(
                        "deploy of policies for organization {org} (deploying again is harmless)"
                    )
                },
                e,
            )
        })
    }
}

/// `PolicyGetById` from the owning organization, as raw JSON (tolerating a `policy`/`data`
/// envelope).
#[cfg(feature = "client")]
async fn fetch_policy_for_write(
    client: &crate::Client,
    policy_id: &PolicyId,
    owner: &OrganizationId,
) -> Result<Value> {
    let req = PreparedRequest::get(POLICY_GET_PATH)
        .with_query("policyId", policy_id)
        .with_organization(owner.clone());
    let raw = client.execute(&req).await?;
    let value = decode_optional::<Value>(&req.endpoint(), &raw.body)?.unwrap_or(Value::Null);
    let policy = match value {
        Value::Object(mut m) if !m.contains_key("policyId") => {
            match ["policy", "data"].iter().find_map(|k| m.remove(*k)) {
                Some(inner @ Value::Object(_)) => inner,
                _ => Value::Object(m),
            }
        }
        other => other,
    };
    if !policy.is_object() {
        return Err(Error::Decode {
            endpoint: req.endpoint(),
            path: ".".into(),
            message: format!(
                "expected policy {policy_id} as a JSON object (is {owner} its owning organization?)"
            ),
        });
    }
    Ok(policy)
}
