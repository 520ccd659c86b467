//! The `[siem]` section of the shared configuration file, read through
//! [`Config::section`] and validated here.
//!
//! ```toml
//! [siem]
//! transport = "tcp"                  # "udp", "tcp" or "tls"
//! address = "siem.msp.example:6514"  # host:port of the syslog receiver
//! framing = "octet-counting"         # tcp/tls: or "newline" (RFC 6587)
//! format = "cef"                     # "cef" or "json"
//! sd_id = "threatlocker@32473"       # identity fields also as RFC 5424 structured data
//! max_datagram = 2048                # udp: largest datagram, 480-65000
//! sources = ["action_log"]           # also "system_audit", "decisions" (the workflow's own)
//! batch_size = 500                   # records per send; the checkpoint moves after each
//! overlap = "10m"                    # re-read this much before the checkpoint (late rows)
//! initial_lookback = "1h"            # how far back the first run starts
//! max_window = "1h"                  # largest span read in one query when catching up
//! severity = "engine"                # "engine" (detections raise it) or "outcome"
//! retain_ids = "2d"                  # how long sent ids are kept beyond the overlap
//! facility = 20                      # local4
//! hostname = "tl-forwarder"          # HOSTNAME in the syslog header (default: none, "-")
//! app_name = "siem-forward"
//! max_attempts = 5                   # send attempts per batch with --once (loop: unlimited)
//! [siem.tls]
//! ca_file = "/etc/ssl/siem-ca.pem"   # trust this CA instead of the web PKI roots
//! server_name = "siem.msp.example"   # name to verify (default: the address's host)
//! # pinned_cert = "receiver.pem"      # or: accept exactly this (self-signed) certificate
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use psa_connectors::syslog::{Format, Framing, Transport};
use serde::Deserialize;

use crate::config::{Config, ConfigError};

/// A feed the forwarder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// The action log (Unified Audit): every permit, block and audit-only hit.
    ActionLog,
    /// The portal's system audit (logons, policy edits).
    SystemAudit,
    /// The workflow's own completed side effects (tickets, permits, notifications) from the
    /// state file.
    Decisions,
}

impl SourceKind {
    /// The name used in checkpoints and the sent-id table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ActionLog => "action_log",
            Self::SystemAudit => "system_audit",
            Self::Decisions => "decisions",
        }
    }
}

/// How a record's severity is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeverityMode {
    /// The outcome's severity, raised to the risk of any engine detection the row is evidence
    /// for.
    #[default]
    Engine,
    /// The outcome's severity only (block 5, ringfenced 6, audit-only 4, permit 1).
    Outcome,
}

/// `[siem.tls]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiemTls {
    /// `ca_file`: PEM CA certificate(s) to trust instead of the web PKI roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `server_name`: the name to verify (default: the host part of `address`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// `pinned_cert`: PEM file with the receiver's own certificate, accepted exactly (for a
    /// self-signed receiver certificate); excludes `ca_file`.
    #[serde(default)]
    pub pinned_cert: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSiem {
    transport: Transport,
    address: String,
    #[serde(default)]
    format: Format,
    #[serde(default)]
    framing: Option<Framing>,
    #[serde(default)]
    sd_id: Option<String>,
    #[serde(default)]
    max_datagram: Option<usize>,
    #[serde(default)]
    tls: SiemTls,
    #[serde(default = "default_sources")]
    sources: Vec<SourceKind>,
    #[serde(default = "default_batch")]
    batch_size: usize,
    #[serde(default = "default_overlap")]
    overlap: String,
    #[serde(default = "default_lookback")]
    initial_lookback: String,
    #[serde(default = "default_lookback")]
    max_window: String,
    #[serde(default)]
    severity: SeverityMode,
    #[serde(default = "default_retain")]
    retain_ids: String,
    #[serde(default = "default_facility")]
    facility: u8,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default = "default_app")]
    app_name: String,
    #[serde(default = "default_attempts")]
    max_attempts: u32,
}

fn default_sources() -> Vec<SourceKind> {
    vec![SourceKind::ActionLog]
}
fn default_batch() -> usize {
    500
}
fn default_overlap() -> String {
    "10m".into()
}
fn default_lookback() -> String {
    "1h".into()
}
fn default_retain() -> String {
    "2d".into()
}
fn default_facility() -> u8 {
    20
}
fn default_app() -> String {
    "siem-forward".into()
}
fn default_attempts() -> u32 {
    5
}

/// The validated `[siem]` section.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SiemConfig {
    /// `transport`.
    pub transport: Transport,
    /// `address` (`host:port`).
    pub address: String,
    /// `format`.
    pub format: Format,
    /// `framing` over TCP/TLS (default octet counting).
    pub framing: Framing,
    /// `sd_id`: the SD-ID under which the identity fields also go as structured data.
    pub sd_id: Option<String>,
    /// `max_datagram` over UDP (default 2048, 480..=65000).
    pub max_datagram: usize,
    /// `[siem.tls]`.
    pub tls: SiemTls,
    /// `sources`, de-duplicated.
    pub sources: Vec<SourceKind>,
    /// `batch_size` (1..=100 000).
    pub batch_size: usize,
    /// `overlap`.
    pub overlap: Duration,
    /// `initial_lookback`.
    pub initial_lookback: Duration,
    /// `max_window`.
    pub max_window: Duration,
    /// `severity`.
    pub severity: SeverityMode,
    /// `retain_ids`.
    pub retain_ids: Duration,
    /// `facility` (0..=23).
    pub facility: u8,
    /// `hostname`.
    pub hostname: Option<String>,
    /// `app_name`.
    pub app_name: String,
    /// `max_attempts` (at least 1).
    pub max_attempts: u32,
}

impl SiemConfig {
    /// A configuration with defaults for everything but the receiver.
    pub fn new(transport: Transport, address: impl Into<String>) -> Self {
        Self {
            transport,
            address: address.into(),
            format: Format::Cef,
            framing: Framing::OctetCounting,
            sd_id: None,
            max_datagram: psa_connectors::syslog::DEFAULT_DATAGRAM_BYTES,
            tls: SiemTls::default(),
            sources: default_sources(),
            batch_size: default_batch(),
            overlap: Duration::from_secs(600),
            initial_lookback: Duration::from_secs(3600),
            max_window: Duration::from_secs(3600),
            severity: SeverityMode::Engine,
            retain_ids: Duration::from_secs(2 * 86_400),
            facility: default_facility(),
            hostname: None,
            app_name: default_app(),
            max_attempts: default_attempts(),
        }
    }

    /// Reads and validates the `[siem]` section of `config` (`Ok(None)` when there is none);
    /// errors name the key (`siem.batch_size`). Relative `tls.ca_file` paths are taken
    /// relative to the configuration file's directory.
    pub fn from_config(config: &Config) -> Result<Option<Self>, ConfigError> {
        config
            .section::<RawSiem>("siem")?
            .map(|raw| Self::validate(raw, config.base_dir()))
            .transpose()
    }

    fn validate(raw: RawSiem, base_dir: &Path) -> Result<Self, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_owned(),
            message,
        };
        let address = raw.address.trim().to_owned();
        let port_ok = address
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok {
            return Err(invalid(
                "siem.address",
                format!("{address:?} is not host:port (e.g. \"siem.msp.example:6514\")"),
            ));
        }
        let dur = |key: &str, s: &str| {
            humantime::parse_duration(s.trim()).map_err(|e| {
                invalid(
                    key,
                    format!("{s:?} is not a duration ({e}); use e.g. 10m, 1h"),
                )
            })
        };
        let overlap = dur("siem.overlap", &raw.overlap)?;
        let initial_lookback = dur("siem.initial_lookback", &raw.initial_lookback)?;
        let max_window = dur("siem.max_window", &raw.max_window)?;
        let retain_ids = dur("siem.retain_ids", &raw.retain_ids)?;
        if max_window < Duration::from_secs(60) {
            return Err(invalid("siem.max_window", "must be at least 1m".into()));
        }
        if !(1..=100_000).contains(&raw.batch_size) {
            return Err(invalid(
                "siem.batch_size",
                format!("must be between 1 and 100000, got {}", raw.batch_size),
            ));
        }
        if raw.facility > 23 {
            return Err(invalid(
                "siem.facility",
                format!("must be 0-23 (20 = local4), got {}", raw.facility),
            ));
        }
        if raw.max_attempts == 0 {
            return Err(invalid("siem.max_attempts", "must be at least 1".into()));
        }
        if raw.sources.is_empty() {
            return Err(invalid(
                "siem.sources",
                "list at least one of \"action_log\", \"system_audit\", \"decisions\"".into(),
            ));
        }
        if raw.transport != Transport::Tls && raw.tls != SiemTls::default() {
            return Err(invalid(
                "siem.tls",
                "TLS settings need transport = \"tls\"".into(),
            ));
        }
        if raw.transport == Transport::Udp && raw.framing.is_some() {
            return Err(invalid(
                "siem.framing",
                "framing applies to transport = \"tcp\" or \"tls\" (UDP sends one message per datagram)".into(),
            ));
        }
        let max_datagram = match (raw.transport, raw.max_datagram) {
            (Transport::Udp, None) => psa_connectors::syslog::DEFAULT_DATAGRAM_BYTES,
            (Transport::Udp, Some(n)) => {
                let range = psa_connectors::syslog::MIN_MESSAGE_BYTES
                    ..=psa_connectors::syslog::MAX_DATAGRAM_BYTES;
                if !range.contains(&n) {
                    return Err(invalid(
                        "siem.max_datagram",
                        format!("must be {}-{} bytes, got {n}", range.start(), range.end()),
                    ));
                }
                n
            }
            (_, Some(_)) => {
                return Err(invalid(
                    "siem.max_datagram",
                    "applies to transport = \"udp\" only (TCP and TLS carry any size)".into(),
                ))
            }
            (_, None) => psa_connectors::syslog::DEFAULT_DATAGRAM_BYTES,
        };
        if raw.tls.ca_file.is_some() && raw.tls.pinned_cert.is_some() {
            return Err(invalid(
                "siem.tls.pinned_cert",
                "set either ca_file (the CA that signed the receiver's certificate) or pinned_cert (the receiver's own certificate), not both".into(),
            ));
        }
        let sd_id = raw.sd_id.map(|id| id.trim().to_owned());
        if let Some(id) = &sd_id {
            // The sink's own validation, so the error names this file's key.
            let mut probe = psa_connectors::syslog::Config::new("127.0.0.1:1", Transport::Tcp);
            probe.sd_id = Some(id.clone());
            if let Err(e) = psa_connectors::syslog::Encoder::new(&probe) {
                return Err(invalid("siem.sd_id", e.to_string()));
            }
        }
        let mut sources = raw.sources;
        sources.sort();
        sources.dedup();
        let mut tls = raw.tls;
        for path in [&mut tls.ca_file, &mut tls.pinned_cert]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        }
        Ok(Self {
            transport: raw.transport,
            address,
            format: raw.format,
            framing: raw.framing.unwrap_or_default(),
            sd_id,
            max_datagram,
            tls,
            sources,
            batch_size: raw.batch_size,
            overlap,
            initial_lookback,
            max_window,
            severity: raw.severity,
            retain_ids,
            facility: raw.facility,
            hostname: raw.hostname,
            app_name: raw.app_name,
            max_attempts: raw.max_attempts,
        })
    }

    /// The syslog sink configuration.
    pub fn sink_config(&self) -> psa_connectors::syslog::Config {
        let mut c = psa_connectors::syslog::Config::new(self.address.clone(), self.transport);
        c.format = self.format;
        c.framing = self.framing;
        c.sd_id = self.sd_id.clone();
        if self.transport == Transport::Udp {
            c.max_message_bytes = Some(self.max_datagram);
        }
        c.facility = self.facility;
        c.hostname = self.hostname.clone();
        c.app_name = self.app_name.clone();
        c.cef_vendor = "ThreatLocker".into();
        c.cef_product = "Application Control".into();
        c.tls.ca_file = self.tls.ca_file.clone();
        c.tls.server_name = self.tls.server_name.clone();
        c.tls.pinned_cert = self.tls.pinned_cert.clone();
        c
    }
}

/// Loads the shared configuration file and its `[siem]` section (if any). Errors name the file
/// and key, as [`Config::load`]'s do.
pub fn load(path: &Path) -> Result<(Config, Option<SiemConfig>), ConfigError> {
    let config = Config::load(path)?;
    let siem = SiemConfig::from_config(&config).map_err(|e| e.with_file(path))?;
    Ok((config, siem))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[threatlocker]\ninstance = \"g\"\n";

    fn parse(siem: &str) -> Result<SiemConfig, ConfigError> {
        let text = format!("{BASE}[siem]\n{siem}");
        let config = Config::from_toml_str(&text, Path::new("/etc/tl"))?;
        Ok(SiemConfig::from_config(&config)?.expect("a [siem] section"))
    }

    #[test]
    fn defaults_and_full_section() {
        let c = parse("transport = \"tcp\"\naddress = \"127.0.0.1:514\"\n").unwrap();
        assert_eq!(c.format, Format::Cef);
        assert_eq!(c.sources, vec![SourceKind::ActionLog]);
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.overlap, Duration::from_secs(600));
        let c = parse("transport = \"tls\"\naddress = \"siem:6514\"\nformat = \"json\"\nsources = [\"decisions\", \"action_log\", \"system_audit\"]\nbatch_size = 50\noverlap = \"5m\"\nseverity = \"outcome\"\n[siem.tls]\nca_file = \"ca.pem\"\nserver_name = \"siem.local\"\n").unwrap();
        assert_eq!(c.transport, Transport::Tls);
        assert_eq!(c.format, Format::Json);
        assert_eq!(c.sources.len(), 3);
        assert_eq!(c.tls.ca_file.as_deref(), Some(Path::new("/etc/tl/ca.pem")));
        assert_eq!(c.severity, SeverityMode::Outcome);
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, &str)] = &[
            ("address = \"x:1\"\n", "siem.transport"),
            (
                "transport = \"carrier-pigeon\"\naddress = \"x:1\"\n",
                "siem.transport",
            ),
            (
                "transport = \"tcp\"\naddress = \"nohost\"\n",
                "siem.address",
            ),
            (
                "transport = \"tcp\"\naddress = \"x:1\"\nbatch_size = 0\n",
                "siem.batch_size",
            ),
            (
                "transport = \"tcp\"\naddress = \"x:1\"\nbatchsize = 3\n",
                "siem.batchsize",
            ),
            (
                "transport = \"tcp\"\naddress = \"x:1\"\noverlap = \"soon\"\n",
                "siem.overlap",
            ),
            (
                "transport = \"tcp\"\naddress = \"x:1\"\nsources = [\"tickets\"]\n",
                "siem.sources[0]",
            ),
            (
                "transport = \"tcp\"\naddress = \"x:1\"\nfacility = 30\n",
                "siem.facility",
            ),
            (
                "transport = \"tcp\"\naddress = \"x:1\"\n[siem.tls]\nca_file = \"a\"\n",
                "siem.tls",
            ),
            (
                "transport = \"tls\"\naddress = \"x:1\"\n[siem.tls]\ncafile = \"a\"\n",
                "siem.tls.cafile",
            ),
        ];
        for (text, key) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.key(), Some(*key), "{text}: {e}");
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn receiver_settings_reach_the_sink_and_are_checked() {
        let c = parse("transport = \"tcp\"\naddress = \"x:1\"\nframing = \"newline\"\nsd_id = \"threatlocker@32473\"\n").unwrap();
        let s = c.sink_config();
        assert_eq!(s.framing, Framing::Newline);
        assert_eq!(s.sd_id.as_deref(), Some("threatlocker@32473"));
        assert_eq!(s.max_message_bytes, None, "TCP carries any size");
        let c = parse("transport = \"udp\"\naddress = \"x:1\"\nmax_datagram = 65000\n").unwrap();
        assert_eq!(c.sink_config().max_message_bytes, Some(65_000));
        let c = parse("transport = \"udp\"\naddress = \"x:1\"\n").unwrap();
        assert_eq!(c.sink_config().max_message_bytes, Some(2048));
        assert_eq!(c.sink_config().framing, Framing::OctetCounting);
        let c = parse(
            "transport = \"tls\"\naddress = \"x:1\"\n[siem.tls]\npinned_cert = \"receiver.pem\"\n",
        )
        .unwrap();
        assert_eq!(
            c.sink_config().tls.pinned_cert.as_deref(),
            Some(Path::new("/etc/tl/receiver.pem"))
        );
        let cases: &[(&str, &str)] = &[
            ("transport = \"udp\"\naddress = \"x:1\"\nframing = \"newline\"\n", "siem.framing"),
            ("transport = \"tcp\"\naddress = \"x:1\"\nframing = \"lf\"\n", "siem.framing"),
            ("transport = \"udp\"\naddress = \"x:1\"\nmax_datagram = 65001\n", "siem.max_datagram"),
            ("transport = \"udp\"\naddress = \"x:1\"\nmax_datagram = 100\n", "siem.max_datagram"),
            ("transport = \"tcp\"\naddress = \"x:1\"\nmax_datagram = 4096\n", "siem.max_datagram"),
            ("transport = \"tcp\"\naddress = \"x:1\"\nsd_id = \"threatlocker\"\n", "siem.sd_id"),
            ("transport = \"tls\"\naddress = \"x:1\"\n[siem.tls]\nca_file = \"a\"\npinned_cert = \"b\"\n", "siem.tls.pinned_cert"),
        ];
        for (text, key) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.key(), Some(*key), "{text}: {e}");
        }
    }

    #[test]
    fn no_section_is_none_and_other_sections_are_still_checked() {
        let c = Config::from_toml_str(BASE, Path::new("/")).unwrap();
        assert_eq!(SiemConfig::from_config(&c).unwrap(), None);
        let text = format!(
            "{BASE}[siem]\ntransport = \"udp\"\n[siem.tls]\n\n[workflow]\nmonitor_blocks = 3\n"
        );
        let e = Config::from_toml_str(&text, Path::new("/")).unwrap_err();
        assert_eq!(e.key(), Some("workflow.monitor_blocks"));
        assert!(e.to_string().contains("(line 8)"), "{e}");
    }

    #[test]
    fn the_sink_gets_transport_format_header_and_tls_settings() {
        let c = parse("transport = \"tls\"\naddress = \"siem:6514\"\nformat = \"json\"\nfacility = 13\nhostname = \"fwd01\"\n[siem.tls]\nca_file = \"/etc/ca.pem\"\nserver_name = \"siem.local\"\n").unwrap();
        let s = c.sink_config();
        assert_eq!(
            (s.transport, s.format, s.facility),
            (Transport::Tls, Format::Json, 13)
        );
        assert_eq!(s.address, "siem:6514");
        assert_eq!(s.hostname.as_deref(), Some("fwd01"));
        assert_eq!(s.app_name, "siem-forward");
        assert_eq!(s.tls.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(s.tls.server_name.as_deref(), Some("siem.local"));
        assert_eq!(
            (s.cef_vendor.as_str(), s.cef_product.as_str()),
            ("ThreatLocker", "Application Control")
        );
    }
}
