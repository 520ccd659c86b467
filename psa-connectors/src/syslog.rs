//! SIEM forwarding: RFC 5424 syslog over UDP (RFC 5426), TCP with octet counting (RFC 6587)
//! or TLS (RFC 5425), carrying a CEF or JSON payload.
//!
//! * Framing: one message per datagram over UDP; `MSG-LEN SP SYSLOG-MSG` over TCP and TLS,
//!   where MSG-LEN counts bytes, not characters.
//! * Header: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID`, PRI = facility × 8 + the
//!   syslog severity derived from the record's CEF severity; HOSTNAME names the forwarder.
//! * Structured data: `-`, or with [`Config::sd_id`] set, one element holding the record's
//!   fields with `"`, `\` and `]` escaped.
//! * MSG: the CEF line or the JSON object, preceded by the UTF-8 BOM when it contains
//!   non-ASCII text (RFC 5424 §6.4; disable with [`Config::utf8_bom`]).
//! * Delivery: [`SiemSink::send_batch`] encodes into a reused buffer, writes in 64 KiB chunks and
//!   flushes once per chunk, so it returns only after every byte is written. A broken TCP or
//!   TLS connection is detected before use and on write, and re-established once; the failed
//!   chunk is re-sent, so a receiver may see a record twice (at-least-once) but never a lost one
//!   that was reported sent.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
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
/// `sd_params` value asking for the NILVALUE instead of the SD element.
const SD_NIL: usize = usize::MAX - 1;

/// How messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// RFC 5426, one message per datagram, no delivery guarantee.
    Udp,
    /// RFC 6587 with octet-counting framing.
    Tcp,
    /// RFC 5425 (octet counting inside TLS).
    Tls,
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
fn default_true() -> bool {
    true
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

/// Syslog sink configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `host:port` of the collector (514 for UDP/TCP, 6514 for TLS by convention).
    pub address: String,
    /// Transport.
    pub transport: Transport,
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
    /// When set (for example `event@32473`), the record's fields are also sent as RFC 5424
    /// structured data under this SD-ID.
    #[serde(default)]
    pub sd_id: Option<String>,
    /// Largest message in bytes (default 2048 for UDP, the size RFC 5426 says every receiver
    /// should accept; unlimited for TCP/TLS). A longer message first drops JSON `raw`, then
    /// structured-data parameters from the end (so the SD element always stays well-formed), and
    /// finally has its MSG truncated on a character boundary.
    #[serde(default)]
    pub max_message_bytes: Option<usize>,
    /// Prefix a non-ASCII MSG with the UTF-8 BOM (default true).
    #[serde(default = "default_true")]
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
            format: Format::Cef,
            facility: default_facility(),
            hostname: None,
            app_name: default_app_name(),
            cef_vendor: default_vendor(),
            cef_product: default_product(),
            cef_version: default_version(),
            sd_id: None,
            max_message_bytes: None,
            utf8_bom: true,
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
    facility: u8,
    hostname: String,
    app_name: String,
    procid: String,
    cef_prefix: String,
    sd_id: Option<String>,
    max_bytes: Option<usize>,
    bom: bool,
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
        let max_bytes = config.max_message_bytes.or(match config.transport {
            Transport::Udp => Some(2048),
            Transport::Tcp | Transport::Tls => None,
        });
        Ok(Encoder {
            format: config.format,
            facility: config.facility,
            hostname,
            app_name,
            procid: std::process::id().to_string(),
            cef_prefix,
            sd_id,
            max_bytes,
            bom: config.utf8_bom,
        })
    }

    /// Appends one complete RFC 5424 message (no framing) to `out`.
    pub fn message_into(&self, record: &SiemRecord, out: &mut String) {
        let start = out.len();
        let mut msg_start = self.write_message(record, out, true, usize::MAX);
        if let Some(max) = self.max_bytes {
            let with_raw = !(out.len() - start > max
                && self.format == Format::Json
                && record.raw_json.is_some());
            if !with_raw {
                out.truncate(start);
                msg_start = self.write_message(record, out, false, usize::MAX);
            }
            // Cutting inside the SD element would leave it unterminated: drop parameters
            // from the end until header and SD fit, and fall back to the NILVALUE.
            let mut sd_params = record.fields.len();
            while msg_start - start > max && self.sd_id.is_some() && sd_params != SD_NIL {
                sd_params = sd_params.checked_sub(1).unwrap_or(SD_NIL);
                out.truncate(start);
                msg_start = self.write_message(record, out, with_raw, sd_params);
            }
            if out.len() - start > max {
                let keep = escape::truncate_bytes(&out[start..], max).len();
                out.truncate(start + keep);
                // Never end on a dangling escape character.
                let trailing = out[start..]
                    .bytes()
                    .rev()
                    .take_while(|b| *b == b'\\')
                    .count();
                if trailing % 2 == 1 {
                    out.pop();
                }
            }
        }
    }

    /// One message as a `String` (convenience for tests and tools).
    pub fn message(&self, record: &SiemRecord) -> String {
        let mut out = String::with_capacity(256);
        self.message_into(record, &mut out);
        out
    }

    /// Appends one octet-counted frame (`LEN SP MSG`) to `buf`, using `scratch` as working space.
    pub fn frame_into(&self, record: &SiemRecord, scratch: &mut String, buf: &mut Vec<u8>) {
        scratch.clear();
        self.message_into(record, scratch);
        let _ = std::io::Write::write_fmt(buf, format_args!("{} ", scratch.len()));
        buf.extend_from_slice(scratch.as_bytes());
    }

    /// Writes one message with at most `sd_params` of the record's fields in the SD element
    /// (`SD_NIL`: the NILVALUE instead); returns where MSG starts.
    fn write_message(
        &self,
        r: &SiemRecord,
        out: &mut String,
        with_raw: bool,
        sd_params: usize,
    ) -> usize {
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
        self.write_sd(r, out, sd_params);
        out.push(' ');
        let msg_start = out.len();
        match self.format {
            Format::Cef => self.write_cef(r, out),
            Format::Json => write_json(r, out, with_raw),
        }
        if self.bom && !out[msg_start..].is_ascii() {
            out.insert_str(msg_start, BOM);
        }
        msg_start
    }

    fn write_sd(&self, r: &SiemRecord, out: &mut String, params: usize) {
        let Some(sd_id) = self.sd_id.as_ref().filter(|_| params != SD_NIL) else {
            out.push('-');
            return;
        };
        out.push('[');
        out.push_str(sd_id);
        if let Some(host) = &r.hostname {
            out.push_str(" host=\"");
            escape::syslog_sd_param_into(host, out);
            out.push('"');
        }
        for (k, v) in r.fields.iter().take(params) {
            let mark = out.len();
            out.push(' ');
            if !escape::syslog_sd_name_into(k, out) {
                out.truncate(mark);
                continue;
            }
            out.push_str("=\"");
            escape::syslog_sd_param_into(v, out);
            out.push('"');
        }
        out.push(']');
    }

    fn write_cef(&self, r: &SiemRecord, out: &mut String) {
        out.push_str(&self.cef_prefix);
        escape::cef_header_into(escape::truncate_chars(&r.signature, 1023), out);
        out.push('|');
        escape::cef_header_into(escape::truncate_chars(&r.name, 512), out);
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
        for (k, v) in &r.fields {
            let mark = out.len();
            out.push(' ');
            if !escape::cef_key_into(k, out) {
                out.truncate(mark);
                continue;
            }
            let max = cef_value_max(&out[mark + 1..]);
            out.push('=');
            escape::cef_extension_into(escape::truncate_chars(v, max), out);
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
    with_raw: bool,
}

struct Fields<'a>(&'a [(String, String)]);

impl Serialize for Fields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
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
        map.serialize_entry("signature", &r.signature)?;
        map.serialize_entry("name", &r.name)?;
        if let Some(host) = &r.hostname {
            map.serialize_entry("hostname", host)?;
        }
        map.serialize_entry("fields", &Fields(&r.fields))?;
        if self.with_raw {
            if let Some(raw) = &r.raw_json {
                map.serialize_entry("raw", raw)?;
            }
        }
        map.end()
    }
}

fn write_json(r: &SiemRecord, out: &mut String, with_raw: bool) {
    // serde_json writes UTF-8 and escapes control characters, so the object stays on one line.
    let record = JsonRecord { r, with_raw };
    if let Ok(text) = serde_json::to_string(&record) {
        out.push_str(&text);
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
        })
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
                                    message: format!("handshake with {target} failed: {e}"),
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

fn tls_connector(
    config: &Config,
) -> Result<(TlsConnector, rustls::pki_types::ServerName<'static>)> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    match &config.tls.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                Error::config(
                    "syslog.tls.ca_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    Error::config(
                        "syslog.tls.ca_file",
                        format!("bad PEM in {}: {e}", path.display()),
                    )
                })?;
                roots.add(cert).map_err(|e| {
                    Error::config("syslog.tls.ca_file", format!("unusable certificate: {e}"))
                })?;
            }
            if roots.is_empty() {
                return Err(Error::config(
                    "syslog.tls.ca_file",
                    "contains no certificate",
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls {
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = match &config.tls.server_name {
        Some(n) => n.clone(),
        None => host_part(&config.address).to_owned(),
    };
    let server_name = ServerName::try_from(name)
        .map_err(|e| Error::config("syslog.tls.server_name", e.to_string()))?;
    Ok((TlsConnector::from(Arc::new(client)), server_name))
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
                    self.encoder.message_into(record, &mut scratch);
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
            self.encoder.frame_into(record, &mut scratch, &mut buf);
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

    fn name(&self) -> &str {
        BACKEND
    }
}
