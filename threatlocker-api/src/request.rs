//! Requests as plain values, built apart from sending them.
//!
//! Every endpoint first turns its arguments into a [`PreparedRequest`] (method, path, query,
//! headers, body) with a pure function; the client then sends it. That keeps request shapes
//! unit-testable without a server and lets a caller show an operator exactly what a write would
//! send (a dry run) without sending it.

use std::fmt;

use serde::Serialize;

/// HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl Method {
    /// The method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether repeating the request is harmless. Reads (GETs and `...GetByParameters` searches)
/// may be retried; writes never are retried blindly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Safety {
    /// Safe to repeat.
    Read,
    /// Changes state on the server; repeating may act twice.
    Write,
}

/// A request ready to send: everything but the base URL and the credentials.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PreparedRequest {
    /// HTTP method.
    pub method: Method,
    /// Path below the base URL, e.g. `/portalapi/ActionLog/ActionLogGetByParametersV2`.
    pub path: String,
    /// Query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Extra headers for this request (besides authorization, content type and the
    /// organization header, which the client adds).
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: Option<serde_json::Value>,
    /// Read or write.
    pub safety: Safety,
    /// Organization to scope this call to (`managedOrganizationId`), overriding the client's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<crate::ids::OrganizationId>,
}

impl PreparedRequest {
    /// A new request with no query, headers or body.
    pub fn new(method: Method, path: impl Into<String>, safety: Safety) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            safety,
            organization: None,
        }
    }

    /// A retry-safe GET.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::Get, path, Safety::Read)
    }

    /// A retry-safe POST search (`...GetByParameters` and similar) with a JSON body.
    pub fn search(path: impl Into<String>, body: serde_json::Value) -> Self {
        Self::new(Method::Post, path, Safety::Read).with_body(body)
    }

    /// A write with a method and a JSON body.
    pub fn write(method: Method, path: impl Into<String>, body: Option<serde_json::Value>) -> Self {
        let mut r = Self::new(method, path, Safety::Write);
        r.body = body;
        r
    }

    /// Adds a query parameter.
    pub fn with_query(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.query.push((key.into(), value.to_string()));
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the JSON body.
    pub fn with_body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    /// Scopes the request to an organization.
    pub fn with_organization(mut self, org: crate::ids::OrganizationId) -> Self {
        self.organization = Some(org);
        self
    }

    /// `METHOD path`, as errors and logs name the call.
    pub fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

impl fmt::Display for PreparedRequest {
    /// A readable dry-run view: the request line, headers (never credentials) and the body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        for (i, (k, v)) in self.query.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
        }
        writeln!(f)?;
        if let Some(org) = &self.organization {
            writeln!(f, "managedOrganizationId: {org}")?;
        }
        for (k, v) in &self.headers {
            writeln!(f, "{k}: {v}")?;
        }
        if let Some(body) = &self.body {
            let pretty = serde_json::to_string_pretty(body).map_err(|_| fmt::Error)?;
            writeln!(f)?;
            writeln!(f, "{pretty}")?;
        }
        Ok(())
    }
}
