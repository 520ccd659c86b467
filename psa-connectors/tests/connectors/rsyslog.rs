//! The syslog sink against a real receiver: a private `rsyslogd` (Debian's 8.2302) listening on
//! 127.0.0.1 over UDP, TCP (octet counting and newline framing on one `imptcp` input) and TLS
//! (`imtcp` with the `gtls` driver and a private CA), parsing RFC 5424 structured data with
//! `mmpstrucdata`, JSON payloads with `mmjsonparse` and CEF payloads with liblognorm's CEF
//! parser through `mmnormalize`. A hostile tenant's records are sent over each and every one
//! must arrive parsed and identifiable by its `externalId`.
//!
//! Without `/usr/sbin/rsyslogd` the test prints why and passes, except under `CI=true`, where a
//! missing receiver is a failure (`scripts/setup-test-deps.sh` installs it).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use psa_connectors::escape::{neutralize, Lines};
use psa_connectors::syslog::{Config, Format, Framing, SyslogSink, Transport};
use psa_connectors::{SiemRecord, SiemSink};
use serde_json::Value;

use super::common::{skip_or_fail, write_certificates};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const RECORDS: u32 = 120;

/// Returns the daemon's path, or `None` (after saying why) when the test should be skipped.
fn rsyslogd_or_skip() -> Option<PathBuf> {
    let path = PathBuf::from(RSYSLOGD);
    let modules = [
        "mmjsonparse.so",
        "mmnormalize.so",
        "mmpstrucdata.so",
        "lmnsd_gtls.so",
    ];
    // Debian keeps the modules under the multiarch directory; other builds under /usr/lib.
    let module_dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("rsyslog")))
                .chain([PathBuf::from("/usr/lib/rsyslog")])
                .filter(|d| d.is_dir())
                .collect()
        })
        .unwrap_or_default();
    let missing: Vec<&str> = modules
        .iter()
        .copied()
        .filter(|m| !module_dirs.iter().any(|d| d.join(m).exists()))
        .collect();
    let reason = if !path.exists() {
        format!("{RSYSLOGD} is not installed")
    } else if !missing.is_empty() {
        format!("rsyslog modules missing: {}", missing.join(", "))
    } else {
        return Some(path);
    };
    skip_or_fail("the rsyslogd test", &reason);
    None
}

/// One receiver (input, ruleset and output file) per transport, framing and format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    Udp(FormatKey),
    TcpOctet(FormatKey),
    TcpNewline(FormatKey),
    Tls(FormatKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FormatKey {
    Cef,
    Json,
}

impl FormatKey {
    fn format(self) -> Format {
        match self {
            FormatKey::Cef => Format::Cef,
            FormatKey::Json => Format::Json,
        }
    }
}

/// A private rsyslogd, killed when dropped.
struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes the configuration, starts the daemon and waits until its stream ports accept.
fn start(bin: &Path, ports: &BTreeMap<Case, u16>) -> Daemon {
    let dir = std::env::temp_dir().join(format!(
        "psa-connectors-rsyslog-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    write_certificates(&dir);
    std::fs::write(dir.join("cef.rb"), "version=2\nrule=:%cef:cef%\n").unwrap();
    let d = dir.display();
    let mut conf = format!(
        r#"global(workDirectory="{d}" maxMessageSize="256k"
       defaultNetstreamDriverCAFile="{d}/ca.pem"
       defaultNetstreamDriverCertFile="{d}/server.pem"
       defaultNetstreamDriverKeyFile="{d}/server.key")
module(load="imudp")
module(load="imptcp")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
module(load="mmjsonparse")
module(load="mmnormalize")
module(load="mmpstrucdata")
template(name="parsed" type="string" string="%$!all-json%\n")
"#
    );
    for (case, port) in ports {
        let (input, format) = match case {
            Case::Udp(f) => ("imudp", f),
            Case::TcpOctet(f) | Case::TcpNewline(f) => ("imptcp", f),
            Case::Tls(f) => ("imtcp", f),
        };
        let name = format!("{case:?}").replace(['(', ')'], "_");
        let parse = match format {
            FormatKey::Cef => format!(r#"action(type="mmnormalize" rulebase="{d}/cef.rb")"#),
            FormatKey::Json => r#"action(type="mmjsonparse" cookie="")"#.to_owned(),
        };
        conf.push_str(&format!(
            r#"ruleset(name="{name}") {{
  action(type="mmpstrucdata")
  {parse}
  action(type="omfile" file="{d}/{name}.out" template="parsed")
}}
input(type="{input}" address="127.0.0.1" port="{port}" ruleset="{name}")
"#
        ));
    }
    std::fs::write(dir.join("rsyslog.conf"), &conf).unwrap();
    let log = std::fs::File::create(dir.join("rsyslogd.log")).unwrap();
    let child = Command::new(bin)
        .arg("-n")
        .arg("-f")
        .arg(dir.join("rsyslog.conf"))
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start rsyslogd");
    let mut daemon = Daemon { child, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    for (case, port) in ports {
        if matches!(case, Case::Udp(_)) {
            continue;
        }
        while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                let log =
                    std::fs::read_to_string(daemon.dir.join("rsyslogd.log")).unwrap_or_default();
                panic!("rsyslogd exited ({status}): {log}");
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // imudp binds while the stream inputs start; give it the same moment.
    std::thread::sleep(Duration::from_millis(300));
    daemon
}

/// A hostile tenant's action-log records: names carrying CR/LF, NUL, ESC, TAB, U+202E, `|`,
/// `=`, `]`, `\`, HTML and Slack mentions; every fourth with a 2.8 KB non-ASCII path.
fn hostile_records() -> Vec<SiemRecord> {
    let hostile = "Contoso\r\nInjected: x\0\x1b[31m\t\u{202E}exe.txt | a=b ] \\ <script>x</script> <!channel>";
    (0..RECORDS)
        .map(|i| {
            let path = if i % 4 == 0 {
                format!(
                    "C:\\Users\\Jürgen\\{}\\payload{i}.exe",
                    "Ünïcödé-Pfad=ä]\\😀".repeat(160)
                )
            } else {
                format!("C:\\Users\\{hostile}\\payload{i}.exe")
            };
            SiemRecord::new(
                chrono::Utc::now(),
                if i % 3 == 0 { 9 } else { 5 },
                "tl:execute:deny",
                format!("execute of payload{i}.exe blocked on {hostile}"),
            )
            .hostname(format!("WS-{i}\u{202E}"))
            .msg_id("TL_EXECUTE_DENY")
            .field("rt", "1741944413412")
            .field("duser", format!("CONTOSO\\{hostile}"))
            .field("fname", format!("payload{i}.exe"))
            .field("filePath", path)
            .field("fileHash", format!("{i:064x}"))
            .field("act", "Deny")
            .field("outcome", "blocked")
            .field("cat", "ApplicationControl")
            .field("externalId", format!("8100{i}"))
            .field("cs1Label", "organization")
            .field("cs1", hostile)
            .field("cs3Label", "eActionLogId")
            .field("cs3", format!("9b2e6c1d-0000-4000-8000-{i:012}"))
            .raw_json(
                serde_json::json!({"actionLogId": i, "fullPath": hostile, "big": "x".repeat(1500)}),
            )
        })
        .collect()
}

fn sink_config(case: Case, port: u16, ca: &Path) -> Config {
    let (transport, framing, format) = match case {
        Case::Udp(f) => (Transport::Udp, Framing::OctetCounting, f),
        Case::TcpOctet(f) => (Transport::Tcp, Framing::OctetCounting, f),
        Case::TcpNewline(f) => (Transport::Tcp, Framing::Newline, f),
        Case::Tls(f) => (Transport::Tls, Framing::OctetCounting, f),
    };
    let mut c = Config::new(
        SocketAddr::from(([127, 0, 0, 1], port)).to_string(),
        transport,
    );
    c.framing = framing;
    c.format = format.format();
    c.sd_id = Some("threatlocker@32473".into());
    c.hostname = Some("fwd.msp.example".into());
    if transport == Transport::Tls {
        c.tls.ca_file = Some(ca.to_path_buf());
        c.tls.server_name = Some("localhost".into());
    }
    c
}

/// Reads the parsed records a case produced, waiting for `want` lines (at most 30 s).
fn parsed(dir: &Path, case: Case, want: usize) -> Vec<Value> {
    let name = format!("{case:?}").replace(['(', ')'], "_");
    let path = dir.join(format!("{name}.out"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() >= want || Instant::now() > deadline {
            return lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{case:?}: {e}: {l}")))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_rsyslogd_parses_every_record_of_a_hostile_tenant() {
    let Some(bin) = rsyslogd_or_skip() else {
        return;
    };
    let mut ports = BTreeMap::new();
    for f in [FormatKey::Cef, FormatKey::Json] {
        ports.insert(Case::Udp(f), free_udp_port());
        ports.insert(Case::TcpOctet(f), free_tcp_port());
        ports.insert(Case::TcpNewline(f), free_tcp_port());
        ports.insert(Case::Tls(f), free_tcp_port());
    }
    let daemon = start(&bin, &ports);
    let records = hostile_records();
    let ca = daemon.dir.join("ca.pem");

    let mut report = Vec::new();
    for (&case, &port) in &ports {
        let sink = SyslogSink::new(sink_config(case, port, &ca)).unwrap();
        if matches!(case, Case::Udp(_)) {
            // Paced so the loopback socket buffer never overflows: loss here would be the
            // kernel's, not the format's.
            for chunk in records.chunks(10) {
                sink.send_batch(chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else {
            sink.send_batch(&records).await.unwrap();
        }
        sink.close().await.unwrap();

        let rows = parsed(&daemon.dir, case, records.len());
        let format = match case {
            Case::Udp(f) | Case::TcpOctet(f) | Case::TcpNewline(f) | Case::Tls(f) => f,
        };
        let mut ids = Vec::new();
        let mut truncated = 0;
        for row in &rows {
            // Structured data parsed by mmpstrucdata (rsyslog lower-cases parameter names).
            let sd = &row["rfc5424-sd"]["threatlocker@32473"];
            let sd_id = sd["externalid"]
                .as_str()
                .unwrap_or_else(|| panic!("{case:?}: no SD: {row}"));
            let (fields, name) = match format {
                FormatKey::Cef => {
                    assert!(
                        row.get("unparsed-data").is_none(),
                        "{case:?}: liblognorm failed: {row}"
                    );
                    let cef = &row["cef"];
                    assert_eq!(cef["DeviceVendor"], "psa-connectors");
                    (cef["Extensions"].clone(), cef["Name"].clone())
                }
                FormatKey::Json => {
                    assert!(
                        row.get("signature").is_some(),
                        "{case:?}: mmjsonparse failed: {row}"
                    );
                    (row["fields"].clone(), row["name"].clone())
                }
            };
            let id = fields["externalId"]
                .as_str()
                .unwrap_or_else(|| panic!("{case:?}: {row}"));
            assert_eq!(id, sd_id, "{case:?}");
            let i: usize = id.strip_prefix("8100").unwrap().parse().unwrap();
            let sent = &records[i];
            let want = |k: &str| sent.fields.iter().find(|(f, _)| f == k).unwrap().1.clone();
            for key in ["fileHash", "act", "outcome", "cs3"] {
                assert_eq!(
                    fields[key].as_str(),
                    Some(want(key).as_str()),
                    "{case:?} {key}: {row}"
                );
            }
            // Hostile text arrives made visible, never raw: exactly what the policy renders.
            assert_eq!(
                fields["cs1"].as_str(),
                Some(&*neutralize(&want("cs1"), Lines::Keep)),
                "{case:?}"
            );
            let name = name.as_str().unwrap();
            assert!(
                !name.contains(['\0', '\u{202E}', '\x1b']),
                "{case:?}: {name:?}"
            );
            if fields.get("truncated").is_some() || row.get("truncated").is_some() {
                truncated += 1;
            } else if format == FormatKey::Json {
                assert_eq!(
                    row["raw"]["actionLogId"], i,
                    "{case:?}: raw kept when it fits"
                );
            }
            ids.push(i);
        }
        ids.sort_unstable();
        let expected: Vec<usize> = (0..records.len()).collect();
        assert_eq!(
            ids, expected,
            "{case:?}: every record once, none lost or split"
        );
        if matches!(case, Case::Udp(_)) {
            assert!(truncated > 0, "{case:?}: the 2.8 KB records were shortened");
            assert_eq!(
                sink.shortened(),
                truncated as u64,
                "{case:?}: the count matches the markers"
            );
        } else {
            assert_eq!(truncated, 0, "{case:?}: streams carry whole records");
        }
        report.push(format!(
            "{case:?}: {} of {} parsed, {truncated} shortened",
            rows.len(),
            records.len()
        ));
    }
    eprintln!("rsyslogd: {}", report.join("; "));
}
