//! SIEM forwarding: RFC 5424 syslog over UDP (RFC 5426), TCP (RFC 6587) or TLS (RFC 5425),
//! carrying a CEF or JSON payload.
//!
//! * Framing: one message per datagram over UDP; over TCP and TLS either octet counting
//!   (`MSG-LEN SP SYSLOG-MSG`, MSG-LEN in bytes; the default, and what RFC 5425 requires) or
//!   newline framing (`SYSLOG-MSG LF`, for inputs that only split on line ends), see
//!   [`Framing`]. No message ever holds a raw LF, so both framings are safe.
//! * Header: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID`, PRI = facility × 8 + the
//!   syslog severity derived from the record's CEF severity; HOSTNAME names the forwarder.
//! * Structured data: `-`, or with [`Config::sd_id`] set (for example `threatlocker@32473`),
//!   one element holding the host and the record's identity fields
//!   ([`Config::identity_fields`]) with `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
//! * MSG: the CEF line or the JSON object, with no byte-order mark by default: RFC 5424 allows
//!   one, but the receivers' payload parsers (rsyslog `mmjsonparse`, liblognorm's CEF parser)
//!   fail on it ([`Config::utf8_bom`] puts it back).
//! * Text: every value passes the shared policy of [`crate::escape`]: control and invisible
//!   characters (NUL, ESC, TAB, U+202E, …) become `[U+XXXX]`, then the format's own escaping.
//!   CEF extension keys appear once each (`rt` and `dvchost` come from the record itself).
//! * Size: a message longer than the limit (default 2,048 bytes over UDP) keeps its header,
//!   severity and identity fields; JSON `raw` goes first, then the longest free-text fields are
//!   shortened (ending with `…`) or dropped, longest first, and the record names what was cut
//!   (`truncated=filePath,raw` in CEF, `"truncated":["filePath","raw"]` in JSON). Values are cut
//!   before escaping, on character boundaries, so no escape or UTF-8 sequence is split and the
//!   payload stays valid CEF or JSON; identity fields are shortened only when nothing else is
//!   left, and only a header that alone exceeds the limit is cut mid-message (at a character
//!   boundary, never after a lone `\`). [`SyslogSink::shortened`] counts shortened records.
//! * Delivery: [`SiemSink::send_batch`] encodes into a reused buffer, writes in 64 KiB chunks and
//!   flushes once per chunk, so it returns only after every byte is written. A broken TCP or
//!   TLS connection is detected before use and on write, and re-established once; the failed
//!   chunk is re-sent, so a receiver may see a record twice (at-least-once) but never a lost one
//!   that was reported sent.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{Datelike, Timelike};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::escape;
use crate::{Error, Result, SiemRecord, SiemSink};

const BACKEND: &str = "syslog";
const CHUNK: usize = 64 * 1024;
const BOM: &str = "\u{FEFF}";

/// How messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// RFC 5426, one message per datagram, no delivery guarantee.
    Udp,
    /// RFC 6587, framed as [`Config::framing`] says.
    Tcp,
    /// RFC 5425 (octet counting inside TLS unless [`Config::framing`] says otherwise).
    Tls,
}

/// How messages are delimited on a TCP or TLS stream (RFC 6587 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// `MSG-LEN SP SYSLOG-MSG`: the default, required by RFC 5425 for TLS, and understood by
    /// rsyslog `imtcp`/`imptcp`, syslog-ng `syslog()` and most commercial collectors.
    #[default]
    OctetCounting,
    /// `SYSLOG-MSG LF` (non-transparent framing): for inputs that split on line ends only,
    /// such as syslog-ng `network()`, Splunk TCP inputs or a Sentinel/AMA rsyslog relay
    /// configured that way. Safe because no encoded message holds a raw LF.
    Newline,
}

/// What MSG carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// An ArcSight CEF line.
    #[default]
    Cef,
    /// One JSON object.
    Json,
}

/// TLS settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) to trust instead of the built-in web PKI roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file with the receiver's own certificate(s): the server is accepted when it presents
    /// exactly one of them and proves it holds the key; no CA, name or date check. For a
    /// receiver with a self-signed certificate (`openssl req -x509` makes a CA:TRUE certificate,
    /// which `ca_file` cannot accept as a server's). Excludes `ca_file`.
    #[serde(default)]
    pub pinned_cert: Option<PathBuf>,
    /// Name to verify the server certificate against; default: the host part of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
}

fn default_facility() -> u8 {
    20
}
fn default_app_name() -> String {
    "psa-connectors".to_owned()
}
fn default_vendor() -> String {
    "psa-connectors".to_owned()
}
fn default_product() -> String {
    "forwarder".to_owned()
}
fn default_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_write_timeout() -> u64 {
    30
}
/// The CEF keys (and JSON `fields` members) that identify a record; see
/// [`Config::identity_fields`].
pub const DEFAULT_IDENTITY_FIELDS: &[&str] = &[
    "externalId",
    "deviceExternalId",
    "cs3Label",
    "cs3",
    "fileHash",
    "act",
    "outcome",
    "cat",
];
fn default_identity() -> Vec<String> {
    DEFAULT_IDENTITY_FIELDS
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}
/// The smallest message limit: RFC 5426 says every receiver must accept 480 bytes.
pub const MIN_MESSAGE_BYTES: usize = 480;
/// The largest message limit over UDP (an IPv4 datagram carries at most 65,507 bytes).
pub const MAX_DATAGRAM_BYTES: usize = 65_000;
/// The default message limit over UDP: what RFC 5426 says every receiver should accept.
pub const DEFAULT_DATAGRAM_BYTES: usize = 2048;

/// Syslog sink configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `host:port` of the collector (514 for UDP/TCP, 6514 for TLS by convention).
    pub address: String,
    /// Transport.
    pub transport: Transport,
    /// Framing over TCP and TLS (default octet counting; ignored over UDP).
    #[serde(default)]
    pub framing: Framing,
    /// Payload format (default CEF).
    #[serde(default)]
    pub format: Format,
    /// Syslog facility 0-23 (default 20, local4).
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// HOSTNAME: the forwarder's name (default `-`).
    #[serde(default)]
    pub hostname: Option<String>,
    /// APP-NAME (default `psa-connectors`).
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// CEF Device Vendor.
    #[serde(default = "default_vendor")]
    pub cef_vendor: String,
    /// CEF Device Product.
    #[serde(default = "default_product")]
    pub cef_product: String,
    /// CEF Device Version.
    #[serde(default = "default_version")]
    pub cef_version: String,
    /// When set (for example `threatlocker@32473`: a private SD-ID is `name@<enterprise
    /// number>`, 32473 being the one reserved for documentation), the host and the record's
    /// identity fields are also sent as RFC 5424 structured data under this SD-ID.
    #[serde(default)]
    pub sd_id: Option<String>,
    /// Keys of the fields that identify a record: kept whole when a message must be shortened,
    /// and carried in the structured data. Default [`DEFAULT_IDENTITY_FIELDS`]; `*Label` keys
    /// are always kept too.
    #[serde(default = "default_identity")]
    pub identity_fields: Vec<String>,
    /// Largest message in bytes (UDP default 2,048, the size RFC 5426 says every receiver
    /// should accept, at most 65,000; TCP/TLS default unlimited; never below 480). A longer
    /// message is shortened as the module documentation describes.
    #[serde(default)]
    pub max_message_bytes: Option<usize>,
    /// Prefix a non-ASCII MSG with the UTF-8 BOM (default false: payload parsers reject it).
    #[serde(default)]
    pub utf8_bom: bool,
    /// TLS settings (used with `transport = "tls"`).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Connect (and TLS handshake) timeout in seconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Timeout for writing one chunk, in seconds.
    #[serde(default = "default_write_timeout")]
    pub write_timeout_secs: u64,
}

impl Config {
    /// A configuration with defaults for everything but the address and transport.
    pub fn new(address: impl Into<String>, transport: Transport) -> Self {
        Config {
            address: address.into(),
            transport,
            framing: Framing::OctetCounting,
            format: Format::Cef,
            facility: default_facility(),
            hostname: None,
            app_name: default_app_name(),
            cef_vendor: default_vendor(),
            cef_product: default_product(),
            cef_version: default_version(),
            sd_id: None,
            identity_fields: default_identity(),
            max_message_bytes: None,
            utf8_bom: false,
            tls: TlsConfig::default(),
            connect_timeout_secs: default_connect_timeout(),
            write_timeout_secs: default_write_timeout(),
        }
    }
}

/// Turns records into RFC 5424 messages (pure; no I/O).
#[derive(Debug, Clone)]
pub struct Encoder {
    format: Format,
    framing: Framing,
    facility: u8,
    hostname: String,
    app_name: String,
    procid: String,
    cef_prefix: String,
    sd_id: Option<String>,
    identity: Vec<String>,
    max_bytes: Option<usize>,
    bom: bool,
}

/// How far a record is shortened: the budget per field, in characters. A record written with a
/// plan names what the plan cut (`truncated`).
#[derive(Debug, Clone)]
struct Plan {
    /// Whether JSON `raw` is included.
    raw: bool,
    /// Character budget of the event name.
    name: usize,
    /// Character budget per field, by position (0: dropped).
    fields: Vec<usize>,
}

/// A value in at most `max` characters: whole, `…`-ended when shortened, empty at 0.
fn budget(v: &str, max: usize) -> std::borrow::Cow<'_, str> {
    escape::ellipsize(v, max)
}

impl Encoder {
    /// Builds an encoder from the configuration.
    pub fn new(config: &Config) -> Result<Self> {
        if config.facility > 23 {
            return Err(Error::config("syslog.facility", "must be 0-23"));
        }
        let mut hostname = String::new();
        escape::syslog_header_into(config.hostname.as_deref().unwrap_or(""), 255, &mut hostname);
        let mut app_name = String::new();
        escape::syslog_header_into(&config.app_name, 48, &mut app_name);
        let mut cef_prefix = String::from("CEF:0|");
        for part in [&config.cef_vendor, &config.cef_product] {
            escape::cef_header_into(escape::truncate_chars(part, 63), &mut cef_prefix);
            cef_prefix.push('|');
        }
        escape::cef_header_into(
            escape::truncate_chars(&config.cef_version, 31),
            &mut cef_prefix,
        );
        cef_prefix.push('|');
        let sd_id = match &config.sd_id {
            Some(id) => Some(private_sd_id(id)?),
            None => None,
        };
        let max_bytes = match (config.transport, config.max_message_bytes) {
            (Transport::Udp, None) => Some(DEFAULT_DATAGRAM_BYTES),
            (_, limit) => limit,
        };
        if let Some(max) = max_bytes {
            let upper = match config.transport {
                Transport::Udp => MAX_DATAGRAM_BYTES,
                Transport::Tcp | Transport::Tls => usize::MAX,
            };
            if !(MIN_MESSAGE_BYTES..=upper).contains(&max) {
                return Err(Error::config(
                    "syslog.max_message_bytes",
                    match config.transport {
                        Transport::Udp => format!(
                            "must be {MIN_MESSAGE_BYTES}-{MAX_DATAGRAM_BYTES} over UDP, got {max}"
                        ),
                        _ => format!("must be at least {MIN_MESSAGE_BYTES}, got {max}"),
                    },
                ));
            }
        }
        Ok(Encoder {
            format: config.format,
            framing: config.framing,
            facility: config.facility,
            hostname,
            app_name,
            procid: std::process::id().to_string(),
            cef_prefix,
            sd_id,
            identity: config.identity_fields.clone(),
            max_bytes,
            bom: config.utf8_bom,
        })
    }

    /// The largest message this encoder writes, if limited.
    pub fn max_message_bytes(&self) -> Option<usize> {
        self.max_bytes
    }

    fn is_identity(&self, key: &str) -> bool {
        key.ends_with("Label") || self.identity.iter().any(|k| k == key)
    }

    /// Appends one complete RFC 5424 message (no framing) to `out`; returns whether the record
    /// had to be shortened to fit the size limit.
    pub fn message_into(&self, record: &SiemRecord, out: &mut String) -> bool {
        let start = out.len();
        self.write_message(record, out, None);
        let Some(max) = self.max_bytes else {
            return false;
        };
        if out.len() - start <= max {
            return false;
        }
        let mut plan = Plan {
            raw: false,
            name: self.whole_name(record),
            fields: (0..record.fields.len())
                .map(|i| self.whole_len(record, i))
                .collect(),
        };
        loop {
            out.truncate(start);
            self.write_message(record, out, Some(&plan));
            let over = (out.len() - start).saturating_sub(max);
            if over == 0 {
                return true;
            }
            // The longest free text goes first; identity fields only when nothing else is left.
            let pick = |identity: bool| {
                record
                    .fields
                    .iter()
                    .enumerate()
                    .filter(|(i, (k, _))| {
                        self.writes_field(record, *i, Some(&plan))
                            && self.is_identity(k) == identity
                    })
                    .map(|(i, _)| (plan.fields[i], Some(i)))
                    .chain((!identity && plan.name > 0).then_some((plan.name, None)))
                    .max_by_key(|(len, _)| *len)
            };
            let Some((len, which)) = pick(false).or_else(|| pick(true)) else {
                // Header and structured data alone are too long: cut on a character boundary,
                // never after a lone escape character.
                let keep = escape::truncate_bytes(&out[start..], max).len();
                out.truncate(start + keep);
                let trailing = out[start..]
                    .bytes()
                    .rev()
                    .take_while(|b| *b == b'\\')
                    .count();
                if trailing % 2 == 1 {
                    out.pop();
                }
                return true;
            };
            // Removing `over + 3` characters removes at least `over + 3` bytes, room for `…`.
            let mut next = len.saturating_sub(over + 3);
            if next < 8 {
                next = 0;
            }
            match which {
                Some(i) => plan.fields[i] = next,
                None => plan.name = next,
            }
        }
    }

    /// One message as a `String` (convenience for tests and tools).
    pub fn message(&self, record: &SiemRecord) -> String {
        let mut out = String::with_capacity(256);
        self.message_into(record, &mut out);
        out
    }

    /// Appends one stream frame to `buf` (octet counting: `LEN SP MSG`; newline: `MSG LF`),
    /// using `scratch` as working space; returns whether the record was shortened.
    pub fn frame_into(&self, record: &SiemRecord, scratch: &mut String, buf: &mut Vec<u8>) -> bool {
        scratch.clear();
        let shortened = self.message_into(record, scratch);
        match self.framing {
            Framing::OctetCounting => {
                let _ = std::io::Write::write_fmt(buf, format_args!("{} ", scratch.len()));
                buf.extend_from_slice(scratch.as_bytes());
            }
            Framing::Newline => {
                buf.extend_from_slice(scratch.as_bytes());
                buf.push(b'\n');
            }
        }
        shortened
    }

    /// Writes one message, shortened as `plan` says (`None`: whole).
    fn write_message(&self, r: &SiemRecord, out: &mut String, plan: Option<&Plan>) {
        let pri = u16::from(self.facility) * 8 + u16::from(r.syslog_severity());
        let _ = write!(out, "<{pri}>1 ");
        write_timestamp(r.timestamp, out);
        out.push(' ');
        out.push_str(&self.hostname);
        out.push(' ');
        match &r.app_name {
            Some(app) => escape::syslog_header_into(app, 48, out),
            None => out.push_str(&self.app_name),
        }
        out.push(' ');
        out.push_str(&self.procid);
        out.push(' ');
        escape::syslog_header_into(r.msg_id.as_deref().unwrap_or(""), 32, out);
        out.push(' ');
        self.write_sd(r, out, plan);
        out.push(' ');
        let msg_start = out.len();
        match self.format {
            Format::Cef => self.write_cef(r, out, plan),
            Format::Json => self.write_json(r, out, plan),
        }
        if self.bom && !out[msg_start..].is_ascii() {
            out.insert_str(msg_start, BOM);
        }
    }

    /// Whether field `i` is written: a CEF-valid key not seen before in the record, and not
    /// one the encoder writes itself (`rt`, and `dvchost` when the record names a host).
    fn writes_field(&self, r: &SiemRecord, i: usize, plan: Option<&Plan>) -> bool {
        let key = r.fields[i].0.as_str();
        if plan.is_some_and(|p| p.fields[i] == 0) {
            return false;
        }
        if self.format == Format::Cef && (key == "rt" || (key == "dvchost" && r.hostname.is_some()))
        {
            return false;
        }
        !r.fields[..i].iter().any(|(k, _)| k == key)
    }

    /// Characters of the event name a whole message carries (CEF caps it at 512).
    fn whole_name(&self, r: &SiemRecord) -> usize {
        let chars = r.name.chars().count();
        match self.format {
            Format::Cef => chars.min(512),
            Format::Json => chars,
        }
    }

    /// Characters of field `i` a whole message carries (CEF caps values by its dictionary).
    fn whole_len(&self, r: &SiemRecord, i: usize) -> usize {
        let (k, v) = &r.fields[i];
        let chars = v.chars().count();
        if self.format == Format::Cef && k.bytes().all(|b| b.is_ascii_alphanumeric()) {
            chars.min(cef_value_max(k))
        } else {
            chars
        }
    }

    /// The keys `plan` shortened or dropped, in field order (`name` and `raw` included).
    fn cut_keys<'a>(&self, r: &'a SiemRecord, plan: &Plan) -> Vec<&'a str> {
        let mut keys = Vec::new();
        if plan.name < self.whole_name(r) {
            keys.push("name");
        }
        for (i, (k, _)) in r.fields.iter().enumerate() {
            if plan.fields[i] < self.whole_len(r, i) && !keys.contains(&k.as_str()) {
                keys.push(k.as_str());
            }
        }
        if !plan.raw && r.raw_json.is_some() && self.format == Format::Json {
            keys.push("raw");
        }
        keys
    }

    fn write_sd(&self, r: &SiemRecord, out: &mut String, plan: Option<&Plan>) {
        let Some(sd_id) = self.sd_id.as_ref() else {
            out.push('-');
            return;
        };
        out.push('[');
        out.push_str(sd_id);
        if let Some(host) = &r.hostname {
            out.push_str(" host=\"");
            escape::syslog_sd_param_into(escape::truncate_chars(host, 255), out);
            out.push('"');
        }
        for (i, (k, v)) in r.fields.iter().enumerate() {
            if !self.is_identity(k) || k.ends_with("Label") || !self.writes_field(r, i, plan) {
                continue;
            }
            let mark = out.len();
            out.push(' ');
            if !escape::syslog_sd_name_into(k, out) {
                out.truncate(mark);
                continue;
            }
            out.push_str("=\"");
            let max = plan.map_or(usize::MAX, |p| p.fields[i]);
            escape::syslog_sd_param_into(&budget(v, max), out);
            out.push('"');
        }
        if let Some(plan) = plan {
            out.push_str(" truncated=\"");
            escape::syslog_sd_param_into(&self.cut_keys(r, plan).join(","), out);
            out.push('"');
        }
        out.push(']');
    }

    fn write_cef(&self, r: &SiemRecord, out: &mut String, plan: Option<&Plan>) {
        out.push_str(&self.cef_prefix);
        escape::cef_header_into(escape::truncate_chars(&r.signature, 1023), out);
        out.push('|');
        let name_max = plan.map_or(512, |p| p.name.min(512));
        escape::cef_header_into(&budget(&r.name, name_max), out);
        let _ = write!(
            out,
            "|{}|rt={}",
            r.cef_severity(),
            r.timestamp.timestamp_millis()
        );
        if let Some(host) = &r.hostname {
            out.push_str(" dvchost=");
            escape::cef_extension_into(escape::truncate_chars(host, 100), out);
        }
        for (i, (k, v)) in r.fields.iter().enumerate() {
            if !self.writes_field(r, i, plan) {
                continue;
            }
            let mark = out.len();
            out.push(' ');
            if !escape::cef_key_into(k, out) {
                out.truncate(mark);
                continue;
            }
            let max = cef_value_max(&out[mark + 1..]);
            out.push('=');
            let max = plan.map_or(max, |p| p.fields[i].min(max));
            escape::cef_extension_into(&budget(v, max), out);
        }
        if let Some(plan) = plan {
            out.push_str(" truncated=");
            escape::cef_extension_into(&self.cut_keys(r, plan).join(","), out);
        }
    }

    fn write_json(&self, r: &SiemRecord, out: &mut String, plan: Option<&Plan>) {
        let record = JsonRecord {
            r,
            encoder: self,
            plan,
        };
        let mut bytes = Vec::with_capacity(512);
        let mut ser = serde_json::Serializer::with_formatter(&mut bytes, HazardEscaper);
        if record.serialize(&mut ser).is_ok() {
            // serde_json writes valid UTF-8.
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
}

/// Validates a configured SD-ID as RFC 5424 §6.3.2 requires of a private one: `name@<PEN>`,
/// at most 32 characters of printable US-ASCII other than `=`, space, `]` and `"`, with one `@`
/// followed by the private enterprise number. Names without `@` are reserved for IANA.
/// Nothing is stripped or shortened silently: a changed SD-ID would break the SIEM's parser.
fn private_sd_id(id: &str) -> Result<String> {
    let mut clean = String::new();
    escape::syslog_sd_name_into(id, &mut clean);
    if clean != id {
        return Err(Error::config(
            "syslog.sd_id",
            "must be 1-32 printable US-ASCII characters without `=`, space, `]` or `\"`",
        ));
    }
    let valid_pen = |pen: &str| {
        !pen.is_empty()
            && pen
                .split('.')
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
    };
    match id.split_once('@') {
        Some((name, pen)) if !name.is_empty() && valid_pen(pen) => Ok(clean),
        _ => Err(Error::config(
            "syslog.sd_id",
            "must be `name@<enterprise number>` (for example `event@32473`); \
             SD-IDs without `@` are reserved for IANA",
        )),
    }
}

/// The CEF dictionary's length limit for an extension key's value, in characters (4 000 for
/// keys not listed, the largest limit CEF defines).
fn cef_value_max(key: &str) -> usize {
    match key {
        "act" | "outcome" => 63,
        "externalId" => 40,
        "dvchost" => 100,
        "fileHash" | "deviceExternalId" => 255,
        "duser" | "suser" | "fname" | "filePath" | "sproc" | "dproc" | "cat" | "msg"
        | "request" | "cs1Label" | "cs2Label" | "cs3Label" | "cs4Label" | "cs5Label"
        | "cs6Label" | "cn1Label" | "cn2Label" | "cn3Label" => 1023,
        _ => 4000,
    }
}

fn write_timestamp(ts: chrono::DateTime<chrono::Utc>, out: &mut String) {
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        ts.year(),
        ts.month(),
        ts.day(),
        ts.hour(),
        ts.minute(),
        ts.second(),
        ts.timestamp_subsec_millis().min(999)
    );
}

struct JsonRecord<'a> {
    r: &'a SiemRecord,
    encoder: &'a Encoder,
    plan: Option<&'a Plan>,
}

struct Fields<'a>(&'a JsonRecord<'a>);

impl Serialize for Fields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let JsonRecord { r, encoder, plan } = *self.0;
        let mut map = s.serialize_map(None)?;
        for (i, (k, v)) in r.fields.iter().enumerate() {
            if !encoder.writes_field(r, i, plan) {
                continue;
            }
            let max = plan.map_or(usize::MAX, |p| p.fields[i]);
            map.serialize_entry(&escape::single_line(k), &escape::text(&budget(v, max)))?;
        }
        map.end()
    }
}

impl Serialize for JsonRecord<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let r = self.r;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry(
            "timestamp",
            &r.timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )?;
        map.serialize_entry("severity", &r.cef_severity())?;
        map.serialize_entry("signature", &escape::text(&r.signature))?;
        let name_max = self.plan.map_or(usize::MAX, |p| p.name);
        map.serialize_entry("name", &escape::text(&budget(&r.name, name_max)))?;
        if let Some(host) = &r.hostname {
            map.serialize_entry("hostname", &escape::text(host))?;
        }
        map.serialize_entry("fields", &Fields(self))?;
        match self.plan {
            None => {
                if let Some(raw) = &r.raw_json {
                    map.serialize_entry("raw", raw)?;
                }
            }
            Some(plan) => {
                if let (true, Some(raw)) = (plan.raw, &r.raw_json) {
                    map.serialize_entry("raw", raw)?;
                }
                map.serialize_entry("truncated", &self.encoder.cut_keys(r, plan))?;
            }
        }
        map.end()
    }
}

/// serde_json's compact formatter with the shared policy applied to every string, `raw`
/// included: line breaks stay `\n` / `\r`, other control characters (which serde_json would
/// write as `\u0000`-style escapes that C receivers such as json-c cut strings at) and
/// invisible formatting characters become the visible `[U+XXXX]`.
struct HazardEscaper;

impl serde_json::ser::Formatter for HazardEscaper {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut from = 0;
        for (i, c) in fragment.char_indices() {
            if escape::hazard(c).is_some() {
                writer.write_all(&fragment.as_bytes()[from..i])?;
                write!(writer, "[U+{:04X}]", c as u32)?;
                from = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[from..])
    }

    fn write_char_escape<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: serde_json::ser::CharEscape,
    ) -> std::io::Result<()> {
        use serde_json::ser::CharEscape;
        let control = match char_escape {
            CharEscape::Quote => return writer.write_all(b"\\\""),
            CharEscape::ReverseSolidus => return writer.write_all(b"\\\\"),
            CharEscape::Solidus => return writer.write_all(b"/"),
            CharEscape::LineFeed => return writer.write_all(b"\\n"),
            CharEscape::CarriageReturn => return writer.write_all(b"\\r"),
            CharEscape::Backspace => 0x08,
            CharEscape::FormFeed => 0x0C,
            CharEscape::Tab => 0x09,
            CharEscape::AsciiControl(byte) => byte,
        };
        write!(writer, "[U+{control:04X}]")
    }
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// Whether a stream connection was closed or reset by the peer. Polls one read without
    /// waiting: a syslog receiver sends no application data, so end-of-stream or an error means
    /// the connection is finished, while "nothing to read" means it is alive. For TLS the read
    /// goes through the TLS layer, so post-handshake messages (TLS 1.3 session tickets) are
    /// consumed rather than mistaken for a closed connection.
    async fn is_broken(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut probe = [0u8; 64];
        let read = match self {
            Conn::Udp(_) => return false,
            Conn::Tcp(s) => tokio::time::timeout(Duration::ZERO, s.read(&mut probe)).await,
            Conn::Tls(s) => tokio::time::timeout(Duration::ZERO, s.read(&mut probe)).await,
        };
        match read {
            Err(_elapsed) => false,
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_unexpected_data)) => false,
        }
    }

    async fn write_chunk(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Udp(_) => Ok(()),
            Conn::Tcp(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Conn::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }
}

/// A syslog [`SiemSink`].
pub struct SyslogSink {
    config: Config,
    encoder: Encoder,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    conn: Mutex<Option<Conn>>,
    shortened: AtomicU64,
}

impl fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyslogSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SyslogSink {
    /// Builds the sink (no connection is made until the first send or check).
    pub fn new(config: Config) -> Result<Self> {
        let encoder = Encoder::new(&config)?;
        let tls = match config.transport {
            Transport::Tls => Some(tls_connector(&config)?),
            _ => None,
        };
        Ok(SyslogSink {
            config,
            encoder,
            tls,
            conn: Mutex::new(None),
            shortened: AtomicU64::new(0),
        })
    }

    /// Records shortened to fit the size limit since the sink was built (each encoding
    /// counts, so a batch sent again counts again).
    pub fn shortened(&self) -> u64 {
        self.shortened.load(Ordering::Relaxed)
    }

    /// The encoder this sink uses.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Closes the connection (TLS sends `close_notify`).
    pub async fn close(&self) -> Result<()> {
        if let Some(conn) = self.conn.lock().await.take() {
            let result = match conn {
                Conn::Udp(_) => Ok(()),
                Conn::Tcp(mut s) => s.shutdown().await,
                Conn::Tls(mut s) => s.shutdown().await,
            };
            result.map_err(|e| Error::io(&self.config.address, e))?;
        }
        Ok(())
    }

    async fn resolve(&self) -> Result<SocketAddr> {
        let mut addrs = tokio::net::lookup_host(&self.config.address)
            .await
            .map_err(|e| Error::io(&self.config.address, e))?;
        addrs
            .next()
            .ok_or_else(|| Error::config("syslog.address", "resolved to no address"))
    }

    async fn connect(&self) -> Result<Conn> {
        let addr = self.resolve().await?;
        let timeout = Duration::from_secs(self.config.connect_timeout_secs);
        let target = &self.config.address;
        let timed_out = || {
            Error::io(
                target,
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            )
        };
        match self.config.transport {
            Transport::Udp => {
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(local)
                    .await
                    .map_err(|e| Error::io(target, e))?;
                socket
                    .connect(addr)
                    .await
                    .map_err(|e| Error::io(target, e))?;
                Ok(Conn::Udp(socket))
            }
            Transport::Tcp | Transport::Tls => {
                let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|e| Error::io(target, e))?;
                let _ = tcp.set_nodelay(true);
                match &self.tls {
                    None => Ok(Conn::Tcp(tcp)),
                    Some((connector, name)) => {
                        let stream =
                            tokio::time::timeout(timeout, connector.connect(name.clone(), tcp))
                                .await
                                .map_err(|_| timed_out())?
                                .map_err(|e| Error::Tls {
                                    message: handshake_error(target, &e),
                                })?;
                        Ok(Conn::Tls(Box::new(stream)))
                    }
                }
            }
        }
    }

    async fn write_stream_chunk(&self, slot: &mut Option<Conn>, bytes: &[u8]) -> Result<()> {
        let timeout = Duration::from_secs(self.config.write_timeout_secs);
        let mut last_err = None;
        for _ in 0..2 {
            if slot.is_none() {
                *slot = Some(self.connect().await?);
            }
            let Some(conn) = slot.as_mut() else { continue };
            match tokio::time::timeout(timeout, conn.write_chunk(bytes)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last_err = Some(e),
                Err(_) => {
                    last_err = Some(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "write timed out",
                    ))
                }
            }
            tracing::warn!(address = %self.config.address, "syslog connection broken; reconnecting");
            *slot = None;
        }
        Err(Error::io(
            &self.config.address,
            last_err.unwrap_or_else(|| std::io::Error::other("write failed")),
        ))
    }
}

fn read_pem_certs(
    key: &'static str,
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::config(key, format!("cannot read {}: {e}", path.display())))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::config(key, format!("bad PEM in {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::config(
            key,
            format!("{} contains no certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn tls_connector(
    config: &Config,
) -> Result<(TlsConnector, rustls::pki_types::ServerName<'static>)> {
    use rustls::pki_types::ServerName;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls {
            message: e.to_string(),
        })?;
    let client = match (&config.tls.ca_file, &config.tls.pinned_cert) {
        (Some(_), Some(_)) => {
            return Err(Error::config(
                "syslog.tls.pinned_cert",
                "set either `ca_file` (a CA that signed the receiver's certificate) or \
                 `pinned_cert` (the receiver's own certificate), not both",
            ))
        }
        (None, Some(path)) => {
            let pinned = read_pem_certs("syslog.tls.pinned_cert", path)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCert { pinned, provider }))
                .with_no_client_auth()
        }
        (ca_file, None) => {
            let mut roots = rustls::RootCertStore::empty();
            match ca_file {
                Some(path) => {
                    for cert in read_pem_certs("syslog.tls.ca_file", path)? {
                        roots.add(cert).map_err(|e| {
                            Error::config(
                                "syslog.tls.ca_file",
                                format!("unusable certificate: {e}"),
                            )
                        })?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    let name = match &config.tls.server_name {
        Some(n) => n.clone(),
        None => host_part(&config.address).to_owned(),
    };
    let server_name = ServerName::try_from(name)
        .map_err(|e| Error::config("syslog.tls.server_name", e.to_string()))?;
    Ok((TlsConnector::from(Arc::new(client)), server_name))
}

/// The message for a failed TLS handshake, with what to do for the common certificate
/// mistakes of self-run receivers.
fn handshake_error(target: &str, e: &std::io::Error) -> String {
    let text = e.to_string();
    let advice = if text.contains("CaUsedAsEndEntity") {
        " — the receiver presents a CA certificate (CA:TRUE, as a plain `openssl req -x509` \
         makes) as its own, which certificate validation refuses. Either pin that exact \
         certificate with `tls.pinned_cert = \"<its PEM file>\"` (instead of `ca_file`), or \
         give the receiver a server certificate (CA:FALSE, with its name in subjectAltName) \
         signed by the CA in `ca_file`"
    } else if text.contains("UnknownIssuer") {
        " — the receiver's certificate is not signed by a trusted CA: set `tls.ca_file` to \
         the CA that signed it, or `tls.pinned_cert` to the receiver's own certificate"
    } else if text.contains("NotValidForName") {
        " — the receiver's certificate does not name the host in `address`: set \
         `tls.server_name` to a name it carries in subjectAltName"
    } else {
        ""
    };
    format!("handshake with {target} failed: {text}{advice}")
}

/// Accepts exactly the pinned end-entity certificates (their DER bytes), and checks the
/// handshake signature against the presented key, so the peer must hold the private key.
#[derive(Debug)]
struct PinnedCert {
    pinned: Vec<rustls::pki_types::CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the receiver's certificate is not the one in tls.pinned_cert".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn host_part(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

#[async_trait]
impl SiemSink for SyslogSink {
    async fn send_batch(&self, records: &[SiemRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut slot = self.conn.lock().await;
        let broken = match slot.as_mut() {
            Some(conn) => conn.is_broken().await,
            None => false,
        };
        if broken {
            tracing::debug!(address = %self.config.address, "syslog connection closed by peer; reconnecting");
            *slot = None;
        }
        let mut scratch = String::with_capacity(1024);
        if self.config.transport == Transport::Udp {
            if slot.is_none() {
                *slot = Some(self.connect().await?);
            }
            if let Some(Conn::Udp(socket)) = slot.as_ref() {
                for record in records {
                    scratch.clear();
                    if self.encoder.message_into(record, &mut scratch) {
                        self.shortened.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Err(e) = socket.send(scratch.as_bytes()).await {
                        // A connected UDP socket reports an earlier ICMP "port unreachable" on
                        // a later send; start the next batch on a fresh socket.
                        *slot = None;
                        return Err(Error::io(&self.config.address, e));
                    }
                }
            }
            return Ok(());
        }
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
        for record in records {
            if self.encoder.frame_into(record, &mut scratch, &mut buf) {
                self.shortened.fetch_add(1, Ordering::Relaxed);
            }
            if buf.len() >= CHUNK {
                self.write_stream_chunk(&mut slot, &buf).await?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            self.write_stream_chunk(&mut slot, &buf).await?;
        }
        Ok(())
    }

    /// Connects (TCP/TLS: completes the handshake).
    async fn check(&self) -> Result<()> {
        let conn = self.connect().await?;
        *self.conn.lock().await = Some(conn);
        Ok(())
    }

    fn shortened(&self) -> u64 {
        SyslogSink::shortened(self)
    }

    fn name(&self) -> &str {
        BACKEND
    }
}
