//! Vendor-neutral values handed to the sinks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Ticket priority in vendor-neutral terms; each PSA backend maps it to its own id or name
/// through its configuration.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Informational, no time pressure.
    Low,
    /// Normal work (the default).
    #[default]
    Medium,
    /// Needs attention soon.
    High,
    /// Needs attention now.
    Critical,
}

/// A ticket to open in a PSA.
///
/// `external_ref` is the dedupe key: it is stored in the PSA's own reference field
/// (ConnectWise `externalXRef`, Autotask `externalID`, a summary token in Halo) so that
/// [`crate::TicketSink::find_open`] can find the ticket again after a crash or a retry.
///
/// `board`, `company` and `ticket_type` are strings the backend resolves: a value made only of
/// ASCII digits is used as a numeric id, anything else as a name (where the PSA supports names).
/// When `None`, the backend's configured default applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Ticket {
    /// Stable dedupe key, for example `tl:req:6f1c2a...`.
    pub external_ref: String,
    /// One-line summary (truncated to the PSA's limit on a character boundary).
    pub summary: String,
    /// Plain-text description.
    pub description: String,
    /// Board / queue (id or name).
    pub board: Option<String>,
    /// Customer company (id or identifier/name).
    pub company: Option<String>,
    /// Priority.
    pub priority: Priority,
    /// Ticket type (id or name).
    pub ticket_type: Option<String>,
    /// Text only technicians see (ConnectWise `initialInternalAnalysis`; appended to the
    /// description elsewhere).
    pub internal_note: Option<String>,
}

impl Ticket {
    /// A ticket with the three required values and everything else defaulted.
    pub fn new(
        external_ref: impl Into<String>,
        summary: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Ticket {
            external_ref: external_ref.into(),
            summary: summary.into(),
            description: description.into(),
            board: None,
            company: None,
            priority: Priority::Medium,
            ticket_type: None,
            internal_note: None,
        }
    }

    /// Sets the board / queue.
    pub fn board(mut self, board: impl Into<String>) -> Self {
        self.board = Some(board.into());
        self
    }

    /// Sets the company.
    pub fn company(mut self, company: impl Into<String>) -> Self {
        self.company = Some(company.into());
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the ticket type.
    pub fn ticket_type(mut self, ticket_type: impl Into<String>) -> Self {
        self.ticket_type = Some(ticket_type.into());
        self
    }

    /// Sets the technician-only text.
    pub fn internal_note(mut self, text: impl Into<String>) -> Self {
        self.internal_note = Some(text.into());
        self
    }
}

/// A note to add to an existing ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Plain text.
    pub text: String,
    /// True for a technician-only note (the usual case for automation), false for one the
    /// customer may see.
    pub internal: bool,
}

impl Note {
    /// An internal (technician-only) note.
    pub fn internal(text: impl Into<String>) -> Self {
        Note {
            text: text.into(),
            internal: true,
        }
    }

    /// A note the customer may see.
    pub fn external(text: impl Into<String>) -> Self {
        Note {
            text: text.into(),
            internal: false,
        }
    }
}

/// A reference to a ticket in a PSA.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TicketRef {
    /// The PSA's record id, as text.
    pub id: String,
    /// The human-facing ticket number when it differs from the id (Autotask `ticketNumber`).
    pub number: Option<String>,
    /// A link to the ticket, when the backend can build one.
    pub url: Option<String>,
}

impl TicketRef {
    /// A reference with only an id.
    pub fn new(id: impl Into<String>) -> Self {
        TicketRef {
            id: id.into(),
            number: None,
            url: None,
        }
    }

    /// Sets the ticket number.
    pub fn with_number(mut self, number: impl Into<String>) -> Self {
        self.number = Some(number.into());
        self
    }

    /// Sets the link.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }
}

/// What [`crate::TicketSink::open_or_update`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketOutcome {
    /// No open ticket carried the reference, so one was created.
    Created(TicketRef),
    /// An open ticket carried the reference; a note was added to it.
    Updated(TicketRef),
}

impl TicketOutcome {
    /// The ticket created or updated.
    pub fn ticket(&self) -> &TicketRef {
        match self {
            TicketOutcome::Created(t) | TicketOutcome::Updated(t) => t,
        }
    }

    /// True when a new ticket was opened.
    pub fn is_created(&self) -> bool {
        matches!(self, TicketOutcome::Created(_))
    }
}

/// Severity of a notification.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information only (the default).
    #[default]
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The matching CEF severity (0-10), following the reference's suggested bands.
    pub fn cef(self) -> u8 {
        match self {
            Severity::Info => 1,
            Severity::Low => 3,
            Severity::Medium => 5,
            Severity::High => 7,
            Severity::Critical => 9,
        }
    }

    /// A short label.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A message for people (email, Teams, Slack).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Notification {
    /// Subject / headline (single line).
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// Optional pre-rendered HTML body for email. It is trusted as-is, so build it with
    /// [`crate::escape::html`]; when `None` the email backend renders one from `text` and
    /// `facts`.
    pub html: Option<String>,
    /// Severity.
    pub severity: Severity,
    /// Email recipients; ignored by chat backends. When empty, the backend's configured
    /// recipients are used.
    pub recipients: Vec<String>,
    /// Ordered label/value pairs (rendered as a fact list or table).
    pub facts: Vec<(String, String)>,
    /// A link to act on (approval request, ticket).
    pub link: Option<String>,
}

impl Notification {
    /// A notification with a subject and plain text.
    pub fn new(subject: impl Into<String>, text: impl Into<String>) -> Self {
        Notification {
            subject: subject.into(),
            text: text.into(),
            html: None,
            severity: Severity::Info,
            recipients: Vec::new(),
            facts: Vec::new(),
            link: None,
        }
    }

    /// Sets the severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Adds a fact.
    pub fn fact(mut self, label: impl Into<String>, value: impl Into<String>) -> Self {
        self.facts.push((label.into(), value.into()));
        self
    }

    /// Adds a recipient.
    pub fn recipient(mut self, address: impl Into<String>) -> Self {
        self.recipients.push(address.into());
        self
    }

    /// Sets the link.
    pub fn link(mut self, url: impl Into<String>) -> Self {
        self.link = Some(url.into());
        self
    }

    /// Sets a pre-rendered HTML body.
    pub fn html(mut self, html: impl Into<String>) -> Self {
        self.html = Some(html.into());
        self
    }
}

/// One event for a SIEM.
///
/// Rendered as CEF (`signature` is the Device Event Class ID, `name` the Name, `severity` the
/// CEF severity, `fields` the extension) or as a JSON object, inside an RFC 5424 message whose
/// syslog severity is derived from `severity` by [`SiemRecord::syslog_severity`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SiemRecord {
    /// When the event happened.
    pub timestamp: DateTime<Utc>,
    /// CEF severity 0-10 (values above 10 are sent as 10).
    pub severity: u8,
    /// Event class id / signature, for example `app:execute:deny`.
    pub signature: String,
    /// Human-readable event name.
    pub name: String,
    /// The machine the event is about (CEF `dvchost`). The syslog HOSTNAME is the forwarder's,
    /// from the sink configuration, as RFC 5424 reserves it for the originator of the message.
    pub hostname: Option<String>,
    /// Overrides the sink's APP-NAME for this record.
    pub app_name: Option<String>,
    /// RFC 5424 MSGID (at most 32 printable ASCII characters).
    pub msg_id: Option<String>,
    /// Ordered key/value pairs: CEF extension keys (`duser`, `fname`, `act`, ...) or JSON
    /// members.
    pub fields: Vec<(String, String)>,
    /// The original event, included in the JSON format under `raw`.
    pub raw_json: Option<serde_json::Value>,
}

impl SiemRecord {
    /// A record with the required values.
    pub fn new(
        timestamp: DateTime<Utc>,
        severity: u8,
        signature: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        SiemRecord {
            timestamp,
            severity,
            signature: signature.into(),
            name: name.into(),
            hostname: None,
            app_name: None,
            msg_id: None,
            fields: Vec::new(),
            raw_json: None,
        }
    }

    /// Adds a field.
    pub fn field(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    /// Sets the host the event is about.
    pub fn hostname(mut self, host: impl Into<String>) -> Self {
        self.hostname = Some(host.into());
        self
    }

    /// Sets the MSGID.
    pub fn msg_id(mut self, msg_id: impl Into<String>) -> Self {
        self.msg_id = Some(msg_id.into());
        self
    }

    /// Sets the original event.
    pub fn raw_json(mut self, raw: serde_json::Value) -> Self {
        self.raw_json = Some(raw);
        self
    }

    /// The CEF severity clamped to 0-10.
    pub fn cef_severity(&self) -> u8 {
        self.severity.min(10)
    }

    /// The syslog severity for the CEF band: 0-3 → 6 (info), 4-6 → 4 (warning),
    /// 7-8 → 3 (err), 9-10 → 2 (crit).
    pub fn syslog_severity(&self) -> u8 {
        match self.cef_severity() {
            0..=3 => 6,
            4..=6 => 4,
            7..=8 => 3,
            _ => 2,
        }
    }
}

/// A PSA record given by numeric id or by name (configuration values and ticket fields).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reference {
    /// A numeric record id.
    Id(i64),
    /// A name (or identifier) the PSA resolves.
    Name(String),
}

impl Reference {
    /// Parses a ticket field: ASCII digits only → [`Reference::Id`], otherwise
    /// [`Reference::Name`] (trimmed).
    pub fn parse(s: &str) -> Reference {
        let t = s.trim();
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(id) = t.parse() {
                return Reference::Id(id);
            }
        }
        Reference::Name(t.to_owned())
    }

    /// The id, when this is one.
    pub fn id(&self) -> Option<i64> {
        match self {
            Reference::Id(id) => Some(*id),
            Reference::Name(_) => None,
        }
    }
}

/// A per-priority mapping, for example to a PSA's priority ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityMap<T> {
    /// Value for [`Priority::Low`].
    pub low: T,
    /// Value for [`Priority::Medium`].
    pub medium: T,
    /// Value for [`Priority::High`].
    pub high: T,
    /// Value for [`Priority::Critical`].
    pub critical: T,
}

impl<T> PriorityMap<T> {
    /// The value for `priority`.
    pub fn get(&self, priority: Priority) -> &T {
        match priority {
            Priority::Low => &self.low,
            Priority::Medium => &self.medium,
            Priority::High => &self.high,
            Priority::Critical => &self.critical,
        }
    }
}
