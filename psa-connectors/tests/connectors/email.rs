//! SMTP: scripted dialogues against a small server run inside the test (to see every command,
//! including failures), and a real SMTP implementation (aiosmtpd, STARTTLS to a private CA)
//! whose received messages Python's `email` parser checks.

use base64::Engine as _;
use psa_connectors::email::{render_html, Config, Security, SmtpNotifier};
use psa_connectors::{Error, Notification, Notifier, Severity};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::common::{skip_or_fail, test_ca, write_certificates, TestCa, HOSTILE};

#[derive(Debug, Default)]
struct Transcript {
    commands: Vec<String>,
    data: String,
}

/// Serves one SMTP session: EHLO (advertising AUTH), AUTH PLAIN, MAIL, RCPT, DATA, QUIT.
async fn serve_one(listener: TcpListener) -> Transcript {
    let (sock, _) = listener.accept().await.unwrap();
    let (read, mut write) = sock.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut t = Transcript::default();
    write
        .write_all(b"220 mx.test ESMTP ready\r\n")
        .await
        .unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        t.commands.push(line.clone());
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-mx.test\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if upper.starts_with("AUTH PLAIN") {
            b"235 2.7.0 Authentication successful\r\n"
        } else if upper.starts_with("MAIL FROM")
            || upper.starts_with("RCPT TO")
            || upper.starts_with("RSET")
            || upper.starts_with("NOOP")
        {
            b"250 OK\r\n"
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await
                .unwrap();
            while let Some(data_line) = lines.next_line().await.unwrap() {
                if data_line == "." {
                    break;
                }
                t.data.push_str(&data_line);
                t.data.push('\n');
            }
            b"250 2.0.0 queued\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await.unwrap();
            break;
        } else {
            b"502 unknown\r\n"
        };
        write.write_all(reply).await.unwrap();
    }
    t
}

fn config(port: u16) -> Config {
    let mut c = Config::new("127.0.0.1", "Alerts <alerts@msp.example>");
    c.port = Some(port);
    c.security = Security::Plain;
    c.username = Some("alerts@msp.example".into());
    c.password = Some("smtp-s3cret".to_owned().into());
    c.to = vec!["Team <team@msp.example>".into()];
    c.hello_name = Some("forwarder.msp.example".into());
    c
}

#[tokio::test]
async fn full_smtp_conversation_with_auth_and_both_parts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve_one(listener));

    let smtp = SmtpNotifier::new(config(port)).unwrap();
    let n = Notification::new(
        "AnyDesk blocked\r\nBcc: victim@example.com",
        "Blocked 5 times.",
    )
    .severity(Severity::High)
    .fact("File", "<img src=x onerror=alert(1)>.exe")
    .recipient("tech@msp.example")
    .link("https://portal.example/approval/1");
    smtp.send(&n).await.unwrap();
    drop(smtp); // the pooled connection is closed with QUIT
    let t = tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();

    assert_eq!(t.commands[0], "EHLO forwarder.msp.example");
    let auth = t
        .commands
        .iter()
        .find(|c| c.starts_with("AUTH PLAIN "))
        .expect("AUTH PLAIN");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim_start_matches("AUTH PLAIN "))
        .unwrap();
    assert_eq!(decoded, b"\0alerts@msp.example\0smtp-s3cret");
    assert!(t
        .commands
        .iter()
        .any(|c| c.starts_with("MAIL FROM:<alerts@msp.example>")));
    let rcpts: Vec<&String> = t
        .commands
        .iter()
        .filter(|c| c.starts_with("RCPT TO"))
        .collect();
    assert_eq!(
        rcpts,
        vec!["RCPT TO:<tech@msp.example>"],
        "explicit recipients replace the defaults"
    );
    assert!(t.commands.contains(&"DATA".to_owned()));
    assert_eq!(t.commands.last().unwrap(), "QUIT");

    let data = &t.data;
    assert!(data.contains("From: Alerts <alerts@msp.example>"));
    assert!(data.contains("To: tech@msp.example"));
    assert!(
        data.contains("Subject: AnyDesk blocked Bcc: victim@example.com"),
        "{data}"
    );
    assert!(
        !data.lines().any(|l| l.starts_with("Bcc:")),
        "no header injection through the subject"
    );
    assert!(data.contains("Message-ID: <"));
    assert!(data.contains("Date: "));
    assert!(data.contains("Content-Type: multipart/alternative"));
    assert!(data.contains("Content-Type: text/plain; charset=utf-8"));
    assert!(data.contains("Content-Type: text/html; charset=utf-8"));
    let plain = decode_qp(part(data, "text/plain"));
    let html = decode_qp(part(data, "text/html"));
    assert!(plain.contains("Blocked 5 times."));
    assert!(
        plain.contains("File: <img src=x onerror=alert(1)>.exe"),
        "{plain}"
    );
    assert!(plain.contains("https://portal.example/approval/1"));
    assert!(
        html.contains("<td>&lt;img src=x onerror=alert(1)&gt;.exe</td>"),
        "{html}"
    );
    assert!(!html.contains("<img"));
    assert!(html.contains("<a href=\"https://portal.example/approval/1\">"));
}

/// The body of the MIME part with this content type (headers skipped, up to the next boundary).
fn part<'a>(data: &'a str, content_type: &str) -> &'a str {
    let start = data
        .find(&format!("Content-Type: {content_type}"))
        .expect("part present");
    let rest = &data[start..];
    let body = &rest[rest.find("\n\n").expect("blank line after headers") + 2..];
    &body[..body.find("\n--").unwrap_or(body.len())]
}

/// Decodes quoted-printable (soft line breaks and `=XX`); other transfer encodings pass through.
fn decode_qp(s: &str) -> String {
    let joined = s.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn configured_recipients_are_used_when_the_notification_names_none() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve_one(listener));
    let smtp = SmtpNotifier::new(config(port)).unwrap();
    smtp.send(&Notification::new("s", "t")).await.unwrap();
    drop(smtp);
    let t = server.await.unwrap();
    assert!(t
        .commands
        .contains(&"RCPT TO:<team@msp.example>".to_owned()));
}

#[test]
fn html_rendering_escapes_every_value() {
    let n = Notification::new(HOSTILE, HOSTILE)
        .fact(HOSTILE, HOSTILE)
        .link("javascript:alert(1)");
    let html = render_html(&n);
    let inner = html
        .trim_start_matches("<!DOCTYPE html><html><body>")
        .trim_end_matches("</body></html>");
    let stripped = [
        "<h2>",
        "</h2>",
        "<p>",
        "</p>",
        "<table>",
        "</table>",
        "<tr>",
        "</tr>",
        "<th align=\"left\">",
        "</th>",
        "<td>",
        "</td>",
        "<br>",
    ]
    .iter()
    .fold(inner.to_owned(), |acc, t| acc.replace(t, ""));
    assert!(
        !stripped.contains('<') && !stripped.contains('>'),
        "{stripped}"
    );
    assert!(!html.contains("javascript:"));
}

#[test]
fn plain_smtp_to_a_remote_host_is_refused_and_secrets_stay_hidden() {
    let mut c = config(25);
    c.host = "smtp.example.com".into();
    let err = SmtpNotifier::new(c).unwrap_err();
    assert!(matches!(err, Error::Config { ref key, .. } if key == "email.security"));
    let smtp = SmtpNotifier::new(config(25)).unwrap();
    let text = format!("{smtp:?} {:?}", config(25));
    assert!(!text.contains("smtp-s3cret"), "{text}");
    assert!(text.contains("[redacted]"));
}

#[tokio::test]
async fn rejected_recipient_is_a_permanent_smtp_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let (read, mut write) = sock.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 mx.test\r\n").await.unwrap();
        while let Some(line) = lines.next_line().await.unwrap() {
            let reply: &[u8] = if line.starts_with("EHLO") {
                b"250-mx.test\r\n250 AUTH PLAIN\r\n"
            } else if line.starts_with("AUTH") {
                b"235 ok\r\n"
            } else if line.starts_with("RCPT") {
                b"550 5.1.1 no such user\r\n"
            } else if line == "QUIT" {
                b"221 bye\r\n"
            } else {
                b"250 OK\r\n"
            };
            write.write_all(reply).await.unwrap();
        }
    });
    let smtp = SmtpNotifier::new(config(port)).unwrap();
    let err = smtp.send(&Notification::new("s", "t")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Smtp {
                permanent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("smtp-s3cret"));
}

#[test]
fn invalid_recipient_names_the_field() {
    let smtp = SmtpNotifier::new(config(25)).unwrap();
    let err = smtp
        .message(&Notification::new("s", "t").recipient("not an address"))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidInput {
            field: "notification.recipients",
            ..
        }
    ));
}

/// One SMTP dialogue on any stream. With `offer_starttls`, EHLO advertises STARTTLS and the
/// dialogue stops (returning `true`) when the client asks for it, so the caller can upgrade.
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    t: &mut Transcript,
    offer_starttls: bool,
) -> bool {
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap() == 0 {
            return false;
        }
        let line = line.trim_end().to_owned();
        t.commands.push(line.clone());
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") && offer_starttls {
            b"250-mx.test\r\n250 STARTTLS\r\n"
        } else if upper.starts_with("EHLO") {
            b"250-mx.test\r\n250 AUTH PLAIN LOGIN\r\n"
        } else if upper == "STARTTLS" {
            stream
                .get_mut()
                .write_all(b"220 go ahead\r\n")
                .await
                .unwrap();
            return true;
        } else if upper.starts_with("AUTH PLAIN") {
            b"235 ok\r\n"
        } else if upper == "DATA" {
            stream.get_mut().write_all(b"354 go\r\n").await.unwrap();
            loop {
                let mut data_line = String::new();
                stream.read_line(&mut data_line).await.unwrap();
                if data_line.trim_end() == "." {
                    break;
                }
                t.data.push_str(&data_line.replace("\r\n", "\n"));
            }
            b"250 queued\r\n"
        } else if upper == "QUIT" {
            stream.get_mut().write_all(b"221 bye\r\n").await.unwrap();
            let _ = stream.get_mut().shutdown().await;
            return false;
        } else {
            b"250 OK\r\n"
        };
        stream.get_mut().write_all(reply).await.unwrap();
    }
}

fn tls_config(port: u16, security: Security, ca: &TestCa) -> Config {
    let mut c = config(port);
    c.host = "localhost".into();
    c.security = security;
    c.ca_file = Some(ca.ca_path.clone());
    c
}

#[tokio::test]
async fn starttls_upgrades_before_authenticating() {
    let ca = test_ca();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = ca.acceptor.clone();
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let mut plain = BufReader::new(sock);
        plain.get_mut().write_all(b"220 mx.test\r\n").await.unwrap();
        let mut before = Transcript::default();
        assert!(
            dialogue(&mut plain, &mut before, true).await,
            "client asked for STARTTLS"
        );
        let tls = acceptor.accept(plain.into_inner()).await.unwrap();
        let mut after = Transcript::default();
        dialogue(&mut BufReader::new(tls), &mut after, false).await;
        (before, after)
    });
    let smtp = SmtpNotifier::new(tls_config(port, Security::StartTls, &ca)).unwrap();
    smtp.send(&Notification::new("over tls", "body"))
        .await
        .unwrap();
    drop(smtp);
    let (before, after) = tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_file(&ca.ca_path);
    assert!(
        !before.commands.iter().any(|c| c.starts_with("AUTH")),
        "no credentials in clear"
    );
    assert_eq!(before.commands.last().unwrap(), "STARTTLS");
    assert!(
        after.commands[0].starts_with("EHLO"),
        "EHLO again after the upgrade"
    );
    assert!(after.commands.iter().any(|c| c.starts_with("AUTH PLAIN ")));
    assert!(after.data.contains("Subject: over tls"));
}

#[tokio::test]
async fn implicit_tls_trusts_the_configured_ca() {
    let ca = test_ca();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = ca.acceptor.clone();
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(sock).await.unwrap();
        let mut stream = BufReader::new(tls);
        stream
            .get_mut()
            .write_all(b"220 mx.test\r\n")
            .await
            .unwrap();
        let mut t = Transcript::default();
        dialogue(&mut stream, &mut t, false).await;
        t
    });
    let smtp = SmtpNotifier::new(tls_config(port, Security::Tls, &ca)).unwrap();
    smtp.send(&Notification::new("implicit", "body"))
        .await
        .unwrap();
    drop(smtp);
    let t = tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_file(&ca.ca_path);
    assert!(t.commands.iter().any(|c| c.starts_with("AUTH PLAIN ")));
    assert!(t.data.contains("Subject: implicit"));
}

#[tokio::test]
async fn implicit_tls_refuses_an_untrusted_certificate() {
    let ca = test_ca();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = ca.acceptor.clone();
    tokio::spawn(async move {
        if let Ok((sock, _)) = listener.accept().await {
            let _ = acceptor.accept(sock).await;
        }
    });
    let mut c = tls_config(port, Security::Tls, &ca);
    c.ca_file = None; // web PKI roots only
    let _ = std::fs::remove_file(&ca.ca_path);
    let smtp = SmtpNotifier::new(c).unwrap();
    let err = smtp.send(&Notification::new("s", "t")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Smtp {
                permanent: false,
                ..
            }
        ),
        "{err:?}"
    );
}

/// aiosmtpd, run by `tests/support/smtp_server.py`; killed when dropped.
struct Aiosmtpd {
    child: std::process::Child,
    port: u16,
    out: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Drop for Aiosmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts aiosmtpd, or says why it cannot (python3 or aiosmtpd missing).
fn start_aiosmtpd() -> Result<Aiosmtpd, String> {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    let probe = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .map_err(|e| format!("python3 cannot be run: {e}"))?;
    if !probe.status.success() {
        return Err("the Python package aiosmtpd is not installed".into());
    }
    let dir = std::env::temp_dir().join(format!(
        "psa-connectors-smtp-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    write_certificates(&dir);
    let out = dir.join("received.jsonl");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(dir.join("server.pem"))
        .arg(dir.join("server.key"))
        .arg(&out)
        .args(["alerts@msp.example", "smtp-s3cret"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("python3 cannot be run: {e}"))?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("READY ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("smtp_server.py did not start: {line:?}"));
    Ok(Aiosmtpd {
        child,
        port,
        out,
        dir,
    })
}

#[tokio::test]
async fn a_real_smtp_server_with_starttls_to_a_private_ca_accepts_a_valid_message() {
    let server = match start_aiosmtpd() {
        Ok(s) => s,
        Err(reason) => return skip_or_fail("the aiosmtpd test", &reason),
    };
    let mut c = Config::new("localhost", "Alerts <alerts@msp.example>");
    c.port = Some(server.port);
    c.security = Security::StartTls;
    c.ca_file = Some(server.dir.join("ca.pem"));
    c.username = Some("alerts@msp.example".into());
    c.password = Some("smtp-s3cret".to_owned().into());
    c.to = vec!["Team <team@msp.example>".into()];
    let smtp = SmtpNotifier::new(c.clone()).unwrap();
    // No hello_name configured: this machine's FQDN when it has one.
    let hello = psa_connectors::email::default_hello_name();
    assert_eq!(smtp.hello_name(), hello);
    let org = "Contoso\nBcc: victim@example.com\u{202E}gnp.exe\0";
    let n = Notification::new(
        format!("AnyDesk blocked for {org}"),
        format!("Blocked at {org}.\nSecond line."),
    )
    .severity(Severity::High)
    .fact("Organization", org)
    .fact("File", "<img src=x onerror=alert(1)>.exe")
    .link("https://portal.example/approval/1");
    smtp.check().await.unwrap();
    smtp.send(&n).await.unwrap();
    drop(smtp);

    // A wrong password is refused by the real server (535, after STARTTLS): permanent.
    c.password = Some("wrong".to_owned().into());
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        SmtpNotifier::new(c).unwrap().send(&n),
    )
    .await
    .expect("a refused login is answered at once")
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Smtp {
                permanent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("smtp-s3cret"));

    let text = std::fs::read_to_string(&server.out).unwrap();
    let received: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(received.len(), 1, "{text}");
    let m = &received[0];
    assert_eq!(m["tls"], true, "sent only after STARTTLS");
    assert_eq!(m["auth"], true);
    assert_eq!(m["ehlo"], hello.as_str());
    assert_eq!(
        m["defects"],
        serde_json::json!([]),
        "Python's parser finds no defect"
    );
    let message_id = m["message_id"].as_str().unwrap();
    assert!(message_id.ends_with(&format!("@{hello}>")), "{message_id}");
    assert_eq!(
        m["subject"],
        "AnyDesk blocked for Contoso Bcc: victim@example.com[U+202E]gnp.exe[U+0000]"
    );
    let names: Vec<&str> = m["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap())
        .collect();
    assert!(
        !names.iter().any(|h| h.eq_ignore_ascii_case("bcc")),
        "{names:?}"
    );
    let parts = m["parts"].as_array().unwrap();
    let plain = parts.iter().find(|p| p["type"] == "text/plain").unwrap()["content"]
        .as_str()
        .unwrap();
    let html = parts.iter().find(|p| p["type"] == "text/html").unwrap()["content"]
        .as_str()
        .unwrap();
    assert!(
        plain.lines().any(|l| l.trim_end()
            == "Organization: Contoso Bcc: victim@example.com[U+202E]gnp.exe[U+0000]"),
        "the organization fact on one line, made visible: {plain:?}"
    );
    assert!(plain.contains("Second line."));
    for body in [plain, html] {
        assert!(!body.contains(['\u{202E}', '\0']), "{body}");
    }
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;.exe"));
    assert!(!html.contains("<img"));
}

#[test]
fn the_default_hello_name_is_the_fqdn_when_there_is_one() {
    use psa_connectors::email::fqdn_from;
    let hosts = "127.0.0.1 localhost\n10.0.0.5 vm.msp.example vm # the forwarder\n";
    assert_eq!(fqdn_from("vm", hosts), "vm.msp.example");
    assert_eq!(fqdn_from("VM", hosts), "vm.msp.example");
    assert_eq!(fqdn_from("fwd.msp.example", ""), "fwd.msp.example");
    assert_eq!(
        fqdn_from("vm", "127.0.0.1 localhost\n"),
        "vm",
        "no FQDN: the bare name"
    );
    assert_eq!(fqdn_from("vm", "10.0.0.5 vmx.msp.example vm\n"), "vm");
    let mut c = config(25);
    c.hello_name = Some("bad name\r\n".into());
    let err = SmtpNotifier::new(c).unwrap_err();
    assert!(err.to_string().contains("email.hello_name"), "{err}");
}
