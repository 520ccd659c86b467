//! Application writes: insert, hash-only file rules; and the application options list (the
//! applications a file can be permitted into).

use serde_json::json;
#[cfg(feature = "client")]
use serde_json::Value;

use crate::codes::OsType;
use crate::error::{Error, Result};
use crate::ids::{ApplicationId, OrganizationId};
use crate::request::{Method, PreparedRequest};

#[cfg(feature = "client")]
use crate::{
    decode::{decode_optional, decode_value},
    handles::Applications,
    models::Application,
};

/// Path of `ApplicationInsert`.
pub const APPLICATION_INSERT_PATH: &str = "/portalapi/Application/ApplicationInsert";
/// Path of `ApplicationFileInsert`.
pub const APPLICATION_FILE_INSERT_PATH: &str = "/portalapi/ApplicationFile/ApplicationFileInsert";
/// Path of `ApplicationGetForApplicationOptions`.
pub const APPLICATION_OPTIONS_PATH: &str =
    "/portalapi/Application/ApplicationGetForApplicationOptions";

/// An application to create (`ApplicationInsert`). The body is kept minimal on purpose
/// (`{name, osType, description, applicationFileUpdates: []}`): richer bodies have been seen to
/// fail with 500 or a dropped connection. Add rules afterwards with
/// [`Applications::insert_hash_rule`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewApplication {
    /// Name.
    pub name: String,
    /// Operating system (cannot be changed later).
    pub os_type: OsType,
    /// Description.
    pub description: Option<String>,
    /// Organization that will own it (`managedOrganizationId`); `None` uses the client's.
    pub organization: Option<OrganizationId>,
}

impl NewApplication {
    /// An application with a name and an operating system.
    pub fn new(name: impl Into<String>, os_type: OsType) -> Self {
        Self {
            name: name.into(),
            os_type,
            description: None,
            organization: None,
        }
    }
    setters! {
        /// Sets the description.
        description(d: impl Into<String>) = Some(d.into());

        /// Sets the owning organization.
        organization(org: impl Into<OrganizationId>) = Some(org.into());
    }
}

/// The insert write: `POST Application/ApplicationInsert`
/// `{name, osType, description, applicationFileUpdates: []}`.
pub fn prepare_application_insert(app: &NewApplication) -> Result<PreparedRequest> {
    if app.name.trim().is_empty() {
        return Err(Error::InvalidRequest("NewApplication.name is empty".into()));
    }
    if app.os_type.code() == 0 {
        return Err(Error::InvalidRequest(
            "NewApplication.os_type must not be 0".into(),
        ));
    }
    let body = json!({
        "name": app.name.trim(),
        "osType": app.os_type,
        "description": app.description.as_deref().unwrap_or(""),
        "applicationFileUpdates": [],
    });
    let req = PreparedRequest::write(Method::Post, APPLICATION_INSERT_PATH, Some(body));
    Ok(match &app.organization {
        Some(o) => req.with_organization(o.clone()),
        None => req,
    })
}

/// The hash-rule write (reference Appendix A.9): `POST ApplicationFile/ApplicationFileInsert`
/// with a **hash-only** rule — `hash` and `isHashOnly: true`, every other condition an empty
/// string (the API refuses a hash mixed with other conditions). `sha256` must be 64 hex digits;
/// it is sent lower-case.
pub fn prepare_hash_rule_insert(
    application_id: &ApplicationId,
    os_type: OsType,
    sha256: &str,
    notes: &str,
) -> Result<PreparedRequest> {
    if application_id.as_str().trim().is_empty() {
        return Err(Error::InvalidRequest("the application id is empty".into()));
    }
    let hash = sha256.trim();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidRequest(format!(
            "sha256 {hash:?} is not a SHA-256 (64 hexadecimal digits)"
        )));
    }
    if os_type.code() == 0 {
        return Err(Error::InvalidRequest("os_type must not be 0".into()));
    }
    let body = json!({
        "applicationFileId": 0,
        "applicationId": application_id,
        "osType": os_type,
        "hash": hash.to_ascii_lowercase(),
        "isHashOnly": true,
        "fullPath": "",
        "processPath": "",
        "cert": "",
        "installedBy": "",
        "keyFile": false,
        "notes": notes,
        "updateStatus": 1,
    });
    Ok(PreparedRequest::write(
        Method::Post,
        APPLICATION_FILE_INSERT_PATH,
        Some(body),
    ))
}

/// Query for `ApplicationGetForApplicationOptions`: the applications a file can be permitted
/// into (for [`crate::ApplicationChoice::Existing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplicationOptionsQuery {
    /// Organization (`organizationId`); `None` sends `null`.
    pub organization_id: Option<OrganizationId>,
    /// Operating system.
    pub os_type: OsType,
    /// Include ThreatLocker built-ins.
    pub include_built_in: bool,
    /// Text filter.
    pub search_text: String,
    /// Host name (`hostName`).
    pub host_name: Option<String>,
    /// Applies-to id (`appliesToId`).
    pub applies_to_id: Option<String>,
    /// Only applications with an active permit.
    pub only_permitted: bool,
}

impl ApplicationOptionsQuery {
    /// All applications for an operating system, built-ins included.
    pub fn new(os_type: OsType) -> Self {
        Self {
            organization_id: None,
            os_type,
            include_built_in: true,
            search_text: String::new(),
            host_name: None,
            applies_to_id: None,
            only_permitted: false,
        }
    }
    setters! {
        /// Sets the organization.
        organization_id(org: impl Into<OrganizationId>) = Some(org.into());

        /// Sets whether built-ins are included.
        include_built_in(on: bool) = on;

        /// Sets the text filter.
        search_text(text: impl Into<String>) = text.into();

        /// Sets the host name.
        host_name(host: impl Into<String>) = Some(host.into());

        /// Sets the applies-to id.
        applies_to_id(id: impl Into<String>) = Some(id.into());

        /// Only permitted applications.
        only_permitted(on: bool) = on;
    }

    /// The (read-only, retry-safe) request.
    pub fn prepare(&self) -> PreparedRequest {
        PreparedRequest::search(
            APPLICATION_OPTIONS_PATH,
            json!({
                "organizationId": self.organization_id,
                "osType": self.os_type,
                "includeBuiltIn": self.include_built_in,
                "searchText": self.search_text,
                "hostName": self.host_name,
                "appliesToId": self.applies_to_id,
                "onlyPermitted": self.only_permitted,
            }),
        )
    }
}

#[cfg(feature = "client")]
impl Applications {
    /// Creates an application (`ApplicationInsert`, minimal body). Returns what the response
    /// says about the new application (its shape is undocumented: an object, a bare id, or
    /// nothing). Not retried; an unknown outcome is [`Error::OutcomeUnknown`] — search for the
    /// name before creating it again.
    pub async fn insert(&self, app: &NewApplication) -> Result<Option<Application>> {
        let req = prepare_application_insert(app)?;
        let raw = self.client.execute(&req).await.map_err(|e| {
            super::classify_write_error(|| format!("insert of application {:?}", app.name), e)
        })?;
        Ok(
            match decode_optional::<Value>(&req.endpoint(), &raw.body)
                .ok()
                .flatten()
            {
                Some(Value::String(id)) if !id.trim().is_empty() => Some(Application {
                    application_id: Some(ApplicationId::from(id)),
                    name: Some(app.name.clone()),
                    ..Application::default()
                }),
                Some(v @ Value::Object(_)) => super::decode_application(v).ok(),
                _ => None,
            },
        )
    }

    /// Adds a hash-only file rule to an application (`ApplicationFileInsert`, reference A.9).
    /// Returns the response body, if any. Not retried.
    pub async fn insert_hash_rule(
        &self,
        application_id: &ApplicationId,
        os_type: OsType,
        sha256: &str,
        notes: &str,
    ) -> Result<Option<Value>> {
        let req = prepare_hash_rule_insert(application_id, os_type, sha256, notes)?;
        let raw = self.client.execute(&req).await.map_err(|e| {
            super::classify_write_error(
                || format!("insert of hash rule {sha256} into application {application_id}"),
                e,
            )
        })?;
        Ok(decode_optional::<Value>(&req.endpoint(), &raw.body)
            .ok()
            .flatten())
    }

    /// The applications a file can be permitted into (`ApplicationGetForApplicationOptions`).
    pub async fn options_list(&self, query: &ApplicationOptionsQuery) -> Result<Vec<Application>> {
        let req = query.prepare();
        let raw = self.client.execute(&req).await?;
        if raw.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        let value = decode_value(&req.endpoint(), &raw.body)?;
        let rows = match value {
            Value::Null => return Ok(Vec::new()),
            Value::Array(rows) => rows,
            Value::Object(mut m) => match ["data", "items", "applications", "matchingApplications"]
                .iter()
                .find_map(|k| m.remove(*k))
            {
                Some(Value::Array(rows)) => rows,
                Some(Value::Null) | None => Vec::new(),
                Some(_) => {
                    return Err(Error::Decode {
                        endpoint: req.endpoint(),
                        path: ".".into(),
                        message: "expected a list of applications".into(),
                    })
                }
            },
            _ => {
                return Err(Error::Decode {
                    endpoint: req.endpoint(),
                    path: ".".into(),
                    message: "expected a list of applications".into(),
                })
            }
        };
        rows.into_iter()
            .enumerate()
            .map(|(i, row)| {
                super::decode_application(row).map_err(|e| Error::Decode {
                    endpoint: req.endpoint(),
                    path: format!("[{i}]"),
                    message: e.to_string(),
                })
            })
            .collect()
    }
}
