//! Email over SMTP (lettre on tokio, rustls with ring).
//!
//! * Security: [`Security::StartTls`] (submission, port 587, RFC 3207/6409),
//!   [`Security::Tls`] (implicit TLS, port 465, RFC 8314) or [`Security::Plain`], which is
//!   accepted only for a loopback host (local relays and tests).
//! * Authentication: SMTP AUTH (PLAIN/LOGIN) when a username and password are configured.
//!   Note that Exchange Online is retiring Basic auth for SMTP client submission; prefer a relay
//!   or a provider that still accepts it.
//! * Message: RFC 5322 with `Date` and a unique `Message-ID`, `multipart/alternative` with a
//!   plain-text and an HTML part. Without [`Notification::html`] the HTML part is rendered from
//!   the text and facts with every value escaped by [`escape::html`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::escape;
use crate::secret::{de_opt_secret, REDACTED};
use crate::{Error, Notification, Notifier, Result};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS (required); default port 587.
    #[default]
    StartTls,
    /// TLS from the first byte; default port 465.
    Tls,
    /// No TLS; only for loopback hosts. Default port 25.
    Plain,
}

fn default_timeout() -> u64 {
    30
}

/// SMTP configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Server host name (also the TLS server name).
    pub host: String,
    /// Port; default by [`Security`].
    #[serde(default)]
    pub port: Option<u16>,
    /// Connection security (default STARTTLS).
    #[serde(default)]
    pub security: Security,
    /// SMTP AUTH user name.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP AUTH password.
    #[serde(default, deserialize_with = "de_opt_secret")]
    pub password: Option<SecretString>,
    /// The `From` mailbox, for example `Alerts <alerts@msp.example>`.
    pub from: String,
    /// Recipients used when a notification names none.
    #[serde(default)]
    pub to: Vec<String>,
    /// PEM file with a CA to trust instead of the built-in web PKI roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name sent in EHLO and used as the `Message-ID` domain (default: this machine's fully
    /// qualified name when it has one, see [`default_hello_name`]; relays that check EHLO
    /// against DNS want a real FQDN).
    #[serde(default)]
    pub hello_name: Option<String>,
    /// Timeout per SMTP command, in seconds (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("from", &self.from)
            .field("to", &self.to)
            .field("ca_file", &self.ca_file)
            .field("hello_name", &self.hello_name)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl Config {
    /// A configuration with defaults (STARTTLS, no authentication).
    pub fn new(host: impl Into<String>, from: impl Into<String>) -> Self {
        Config {
            host: host.into(),
            port: None,
            security: Security::StartTls,
            username: None,
            password: None,
            from: from.into(),
            to: Vec::new(),
            ca_file: None,
            hello_name: None,
            timeout_secs: default_timeout(),
        }
    }
}

/// An SMTP [`Notifier`].
pub struct SmtpNotifier {
    // The transport is built per send: lettre's connection pool spawns tasks when it is created
    // and dropped, which must happen inside the runtime, and notifications are too infrequent
    // for pooling to matter. Each send therefore ends with QUIT.
    builder: AsyncSmtpTransportBuilder,
    from: Mailbox,
    to: Vec<Mailbox>,
    hello_name: String,
    config: Config,
}

impl fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpNotifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn smtp_error(e: lettre::transport::smtp::Error) -> Error {
    Error::Smtp {
        permanent: e.is_permanent(),
        message: escape::ellipsize(&escape::single_line(&e.to_string()), 300).into_owned(),
    }
}

fn mailbox(field: &'static str, s: &str) -> Result<Mailbox> {
    s.trim()
        .parse::<Mailbox>()
        .map_err(|e| Error::InvalidInput {
            field,
            message: format!(
                "`{}` is not a mailbox: {e}",
                escape::ellipsize(&escape::single_line(s), 100)
            ),
        })
}

impl SmtpNotifier {
    /// Builds the notifier (no connection is made until the first send or check).
    pub fn new(config: Config) -> Result<Self> {
        let host = config.host.trim().to_owned();
        if host.is_empty() {
            return Err(Error::config("email.host", "must not be empty"));
        }
        let tls_params = || -> Result<TlsParameters> {
            let mut builder = TlsParameters::builder(host.clone());
            if let Some(path) = &config.ca_file {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::config(
                        "email.ca_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    Error::config(
                        "email.ca_file",
                        format!("bad PEM in {}: {e}", path.display()),
                    )
                })?;
                builder = builder
                    .certificate_store(lettre::transport::smtp::client::CertificateStore::None)
                    .add_root_certificate(cert);
            }
            builder.build_rustls().map_err(|e| Error::Tls {
                message: e.to_string(),
            })
        };
        let (tls, default_port) = match config.security {
            Security::StartTls => (Tls::Required(tls_params()?), 587),
            Security::Tls => (Tls::Wrapper(tls_params()?), 465),
            Security::Plain => {
                if !is_loopback_host(&host) {
                    return Err(Error::config(
                        "email.security",
                        "plain SMTP is allowed only for loopback hosts; use starttls or tls",
                    ));
                }
                (Tls::None, 25)
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(config.port.unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(Duration::from_secs(config.timeout_secs)));
        let hello_name = match &config.hello_name {
            Some(name) => {
                let name = name.trim();
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
                {
                    return Err(Error::config(
                        "email.hello_name",
                        "must be a host name (letters, digits, `.` and `-`)",
                    ));
                }
                name.to_owned()
            }
            None => default_hello_name(),
        };
        builder = builder.hello_name(ClientId::Domain(hello_name.clone()));
        match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                builder = builder.credentials(Credentials::new(
                    user.clone(),
                    password.expose_secret().to_owned(),
                ));
            }
            (None, None) => {}
            _ => {
                return Err(Error::config(
                    "email.password",
                    "username and password must be given together",
                ))
            }
        }
        let from = mailbox("email.from", &config.from)
            .map_err(|_| Error::config("email.from", "not a valid mailbox"))?;
        let to = config
            .to
            .iter()
            .map(|t| {
                mailbox("email.to", t).map_err(|_| Error::config("email.to", "not a valid mailbox"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SmtpNotifier {
            builder,
            from,
            to,
            hello_name,
            config,
        })
    }

    fn transport(&self) -> AsyncSmtpTransport<Tokio1Executor> {
        self.builder
            .clone()
            .pool_config(
                lettre::transport::smtp::PoolConfig::new()
                    .max_size(1)
                    .min_idle(0),
            )
            .build()
    }

    /// The name sent in EHLO and used as the `Message-ID` domain.
    pub fn hello_name(&self) -> &str {
        &self.hello_name
    }

    /// The message sent for `n` (pure apart from `Date` and `Message-ID`).
    pub fn message(&self, n: &Notification) -> Result<Message> {
        let id = format!(
            "<{}.{:016x}@{}>",
            chrono::Utc::now().timestamp_millis(),
            fastrand::u64(..),
            self.hello_name
        );
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(escape::ellipsize(&escape::single_line(&n.subject), 250).into_owned())
            .message_id(Some(id));
        if n.recipients.is_empty() {
            if self.to.is_empty() {
                return Err(Error::InvalidInput {
                    field: "notification.recipients",
                    message: "no recipients given and none configured".to_owned(),
                });
            }
            for to in &self.to {
                builder = builder.to(to.clone());
            }
        } else {
            for r in &n.recipients {
                builder = builder.to(mailbox("notification.recipients", r)?);
            }
        }
        let html = match &n.html {
            Some(html) => html.clone(),
            None => render_html(n),
        };
        builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(render_text(n)),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(html),
                    ),
            )
            .map_err(|e| Error::InvalidInput {
                field: "notification",
                message: e.to_string(),
            })
    }
}

/// This machine's name for EHLO: its fully qualified name when it has one (the host name
/// itself when it holds a dot, else the first dotted alias of it in `/etc/hosts`, as
/// `hostname -f` finds it), otherwise the bare host name.
pub fn default_hello_name() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned());
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    fqdn_from(&host, &hosts)
}

/// [`default_hello_name`]'s rule on given inputs (pure): `host` if it holds a dot, else the
/// first name `host.<domain>` on an `/etc/hosts` line that lists `host`, else `host`.
pub fn fqdn_from(host: &str, etc_hosts: &str) -> String {
    let host = host.trim();
    if host.contains('.') || host.is_empty() {
        return host.to_owned();
    }
    for line in etc_hosts.lines() {
        let line = line.split('#').next().unwrap_or("");
        let names: Vec<&str> = line.split_whitespace().skip(1).collect();
        if !names.iter().any(|n| n.eq_ignore_ascii_case(host)) {
            continue;
        }
        if let Some(fqdn) = names.iter().find(|n| {
            n.len() > host.len() + 1
                && n[..host.len()].eq_ignore_ascii_case(host)
                && n.as_bytes()[host.len()] == b'.'
        }) {
            return (*fqdn).to_owned();
        }
    }
    host.to_owned()
}

/// The plain-text body: text, facts as `label: value` lines, and the link; every value made
/// safe by the shared policy (facts and the link on one line each).
pub fn render_text(n: &Notification) -> String {
    let mut out = escape::text(&n.text).into_owned();
    if !n.facts.is_empty() {
        out.push_str("\n\n");
        for (k, v) in &n.facts {
            out.push_str(&escape::single_line(k));
            out.push_str(": ");
            out.push_str(&escape::single_line(v));
            out.push('\n');
        }
    }
    if let Some(link) = &n.link {
        out.push('\n');
        out.push_str(&escape::single_line(link));
        out.push('\n');
    }
    out
}

/// The HTML body rendered from the text and facts, every value escaped.
pub fn render_html(n: &Notification) -> String {
    let mut out = String::from("<!DOCTYPE html><html><body>");
    out.push_str("<h2>");
    out.push_str(&escape::html(&escape::single_line(&n.subject)));
    out.push_str("</h2><p>");
    out.push_str(&escape::html(&n.text).replace('\n', "<br>"));
    out.push_str("</p>");
    if !n.facts.is_empty() {
        out.push_str("<table>");
        for (k, v) in &n.facts {
            out.push_str("<tr><th align=\"left\">");
            out.push_str(&escape::html(&escape::single_line(k)));
            out.push_str("</th><td>");
            out.push_str(&escape::html(&escape::single_line(v)));
            out.push_str("</td></tr>");
        }
        out.push_str("</table>");
    }
    if let Some(link) = n.link.as_deref().filter(|l| {
        let l = l.trim_start().to_ascii_lowercase();
        l.starts_with("https://") || l.starts_with("http://")
    }) {
        out.push_str("<p><a href=\"");
        out.push_str(&escape::html(link));
        out.push_str("\">Open</a></p>");
    }
    out.push_str("</body></html>");
    out
}

#[async_trait]
impl Notifier for SmtpNotifier {
    async fn send(&self, notification: &Notification) -> Result<()> {
        let message = self.message(notification)?;
        self.transport().send(message).await.map_err(smtp_error)?;
        Ok(())
    }

    /// Connects, negotiates TLS and authenticates (`EHLO`, `STARTTLS`, `AUTH`), then quits.
    async fn check(&self) -> Result<()> {
        match self.transport().test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Smtp {
                permanent: false,
                message: "server did not answer NOOP".to_owned(),
            }),
            Err(e) => Err(smtp_error(e)),
        }
    }

    fn name(&self) -> &str {
        "email"
    }
}
