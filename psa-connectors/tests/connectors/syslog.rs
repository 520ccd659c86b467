//! Syslog frames captured by listeners in the test and parsed by `syslog_loose`.

use std::time::Duration;

use chrono::TimeZone;
use psa_connectors::syslog::{Config, Encoder, Format, SyslogSink, Transport};
use psa_connectors::{SiemRecord, SiemSink};
use syslog_loose::{parse_message, Variant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::common::{test_ca, TestCa, HOSTILE};

const BOM: &str = "\u{FEFF}";

fn record(i: u32) -> SiemRecord {
    SiemRecord::new(
        chrono::Utc
            .with_ymd_and_hms(2025, 3, 14, 9, 26, 53)
            .unwrap()
            + chrono::Duration::milliseconds(412),
        5,
        "app:execute:deny",
        "Execution blocked (not allowlisted)",
    )
    .hostname("CONTOSO-WS07")
    .msg_id("EXEC_DENY")
    .field("duser", "CONTOSO\\jdoe")
    .field("fname", format!("AnyDesk{i}.exe"))
    .field("act", "deny")
}

fn hostile_record() -> SiemRecord {
    SiemRecord::new(chrono::Utc::now(), 9, "sig|with\\pipe", "name|x\r\ny")
        .hostname("höst=1")
        .field("filePath", HOSTILE)
        .field("cs1", "a=b c=d\\")
        .field("bad key!", "kept under a sanitized key")
}

/// Splits an octet-counted stream into messages, checking every MSG-LEN against the bytes.
fn split_frames(mut data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let space = data.iter().position(|b| *b == b' ').expect("MSG-LEN SP");
        let len_text = std::str::from_utf8(&data[..space]).unwrap();
        assert!(
            !len_text.starts_with('0'),
            "MSG-LEN starts with a non-zero digit"
        );
        let len: usize = len_text.parse().unwrap();
        let msg = &data[space + 1..space + 1 + len];
        out.push(String::from_utf8(msg.to_vec()).expect("UTF-8 message"));
        data = &data[space + 1 + len..];
    }
    out
}

/// Parses a CEF extension into (key, unescaped value) pairs, the way a SIEM does: a value ends
/// where the next unescaped ` key=` begins.
fn parse_cef_extension(ext: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = ext.chars().collect();
    // Positions of unescaped '=' (an '=' preceded by an odd number of backslashes is escaped).
    let mut eqs = Vec::new();
    for (i, c) in chars.iter().enumerate() {
        if *c == '=' {
            let backslashes = chars[..i].iter().rev().take_while(|c| **c == '\\').count();
            if backslashes % 2 == 0 {
                eqs.push(i);
            }
        }
    }
    let mut pairs = Vec::new();
    let mut key_starts = Vec::new();
    for &eq in &eqs {
        let start = chars[..eq]
            .iter()
            .rposition(|c| *c == ' ')
            .map_or(0, |p| p + 1);
        key_starts.push((start, eq));
    }
    for (n, &(start, eq)) in key_starts.iter().enumerate() {
        let end = key_starts.get(n + 1).map_or(chars.len(), |(s, _)| s - 1);
        let key: String = chars[start..eq].iter().collect();
        let raw: String = chars[eq + 1..end].iter().collect();
        let mut value = String::new();
        let mut it = raw.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some(other) => value.push(other),
                    None => panic!("dangling escape in {raw:?}"),
                }
            } else {
                value.push(c);
            }
        }
        pairs.push((key, value));
    }
    pairs
}

/// Splits a CEF line into its 7 header fields and the extension, honouring `\|` and `\\`.
fn split_cef(line: &str) -> (Vec<String>, String) {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if fields.len() == 7 {
            cur.push(c);
            cur.extend(chars.by_ref());
            break;
        }
        match c {
            '\\' => cur.push(chars.next().expect("escape")),
            '|' => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    (fields, cur)
}

#[tokio::test]
async fn tcp_frames_are_octet_counted_rfc5424_with_cef() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut data = Vec::new();
        sock.read_to_end(&mut data).await.unwrap();
        data
    });
    let mut config = Config::new(addr.to_string(), Transport::Tcp);
    config.hostname = Some("fwd.msp.example".into());
    config.app_name = "tl-bridge".into();
    config.cef_vendor = "Acme|Vendor".into();
    let sink = SyslogSink::new(config).unwrap();
    let records = vec![record(1), hostile_record(), record(2)];
    sink.send_batch(&records).await.unwrap();
    sink.close().await.unwrap();
    let data = reader.await.unwrap();
    let messages = split_frames(&data);
    assert_eq!(messages.len(), 3);

    let m = parse_message(&messages[0], Variant::RFC5424);
    assert_eq!(m.protocol, syslog_loose::Protocol::RFC5424(1));
    assert_eq!(m.facility, Some(syslog_loose::SyslogFacility::LOG_LOCAL4));
    assert_eq!(m.severity, Some(syslog_loose::SyslogSeverity::SEV_WARNING));
    assert_eq!(m.hostname, Some("fwd.msp.example"));
    assert_eq!(m.appname, Some("tl-bridge"));
    assert_eq!(m.msgid, Some("EXEC_DENY"));
    assert_eq!(
        m.timestamp.unwrap().to_rfc3339(),
        "2025-03-14T09:26:53.412+00:00"
    );
    assert!(messages[0].starts_with("<164>1 2025-03-14T09:26:53.412Z fwd.msp.example tl-bridge "));
    let (header, ext) = split_cef(m.msg);
    assert_eq!(
        header,
        vec![
            "CEF:0",
            "Acme|Vendor",
            "forwarder",
            env!("CARGO_PKG_VERSION"),
            "app:execute:deny",
            "Execution blocked (not allowlisted)",
            "5"
        ]
    );
    assert_eq!(
        parse_cef_extension(&ext),
        vec![
            ("rt".to_owned(), "1741944413412".to_owned()),
            ("dvchost".into(), "CONTOSO-WS07".into()),
            ("duser".into(), "CONTOSO\\jdoe".into()),
            ("fname".into(), "AnyDesk1.exe".into()),
            ("act".into(), "deny".into()),
        ]
    );

    // The hostile record: critical severity, no BOM before the non-ASCII MSG (payload
    // parsers reject it), escapes round-trip.
    let m = parse_message(&messages[1], Variant::RFC5424);
    assert_eq!(m.severity, Some(syslog_loose::SyslogSeverity::SEV_CRIT));
    assert!(!messages[1].contains(BOM), "no byte-order mark by default");
    let (header, ext) = split_cef(m.msg);
    assert_eq!(header[4], "sig|with\\pipe");
    assert_eq!(header[5], "name|x y", "CR/LF are not allowed in the header");
    assert_eq!(header[6], "9");
    let ext = parse_cef_extension(&ext);
    assert_eq!(ext[1], ("dvchost".into(), "höst=1".into()));
    assert_eq!(ext[2], ("filePath".into(), HOSTILE.to_owned()));
    assert_eq!(ext[3], ("cs1".into(), "a=b c=d\\".into()));
    assert_eq!(
        ext[4],
        ("badkey".into(), "kept under a sanitized key".into())
    );
    assert_eq!(ext.len(), 5);
}

#[tokio::test]
async fn structured_data_carries_the_identity_fields_escaped() {
    let mut config = Config::new("127.0.0.1:1", Transport::Tcp);
    config.sd_id = Some("threatlocker@32473".into());
    config.identity_fields.push("bad key=\"]".into());
    let encoder = Encoder::new(&config).unwrap();
    let rec = SiemRecord::new(chrono::Utc::now(), 3, "s", "n")
        .hostname("WS\"07]")
        .field("filePath", "C:\\Users\\x\\a\"b]c.exe")
        .field("externalId", "81234567890")
        .field("cs3Label", "eActionLogId")
        .field("cs3", "e]\"\\\u{202E}\nx")
        .field("bad key=\"]", "v");
    let msg = encoder.message(&rec);
    let m = parse_message(&msg, Variant::RFC5424);
    assert_eq!(m.severity, Some(syslog_loose::SyslogSeverity::SEV_INFO));
    assert_eq!(m.structured_data.len(), 1);
    let sd = &m.structured_data[0];
    assert_eq!(sd.id, "threatlocker@32473");
    let params: Vec<(String, String)> = sd.params().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(
        params,
        vec![
            ("host".to_owned(), "WS\"07]".to_owned()),
            ("externalId".into(), "81234567890".into()),
            ("cs3".into(), "e]\"\\[U+202E] x".into()),
            ("badkey".into(), "v".into()),
        ],
        "identity only (no free text, no labels), hazards visible, one line: {msg}"
    );
    assert!(!msg.contains('\n'));
    assert!(m.msg.starts_with("CEF:0|"));
}

#[tokio::test]
async fn udp_sends_one_datagram_per_message_and_json_payloads() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let mut config = Config::new(addr.to_string(), Transport::Udp);
    config.format = Format::Json;
    let sink = SyslogSink::new(config).unwrap();
    let records = vec![
        record(1).raw_json(serde_json::json!({"actionLogId": "a1", "nested": {"x": [1, 2]}})),
        hostile_record(),
    ];
    sink.send_batch(&records).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    for _ in 0..2 {
        let n = tokio::time::timeout(Duration::from_secs(5), server.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    assert!(
        !got[0].chars().next().unwrap().is_ascii_digit(),
        "no octet count over UDP"
    );
    let m = parse_message(&got[0], Variant::RFC5424);
    assert_eq!(m.msgid, Some("EXEC_DENY"));
    let json: serde_json::Value = serde_json::from_str(m.msg).unwrap();
    assert_eq!(json["signature"], "app:execute:deny");
    assert_eq!(json["severity"], 5);
    assert_eq!(json["timestamp"], "2025-03-14T09:26:53.412Z");
    assert_eq!(json["hostname"], "CONTOSO-WS07");
    assert_eq!(json["fields"]["duser"], "CONTOSO\\jdoe");
    assert_eq!(json["raw"]["nested"]["x"][1], 2);
    // Field order is kept.
    let keys: Vec<&str> = json["fields"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys.len(), 3);

    let m = parse_message(&got[1], Variant::RFC5424);
    assert!(!got[1].contains(BOM));
    let json: serde_json::Value = serde_json::from_str(m.msg).unwrap();
    assert_eq!(json["fields"]["filePath"], HOSTILE);
    assert_eq!(json["name"], "name|x\r\ny");
    assert!(!got[1].contains('\n'), "a JSON message stays on one line");
}

/// An action-log record as a hostile tenant produces it: a 2.8 KB non-ASCII path full of
/// characters that need escaping, identity fields at the end.
fn oversized_record(i: u32) -> SiemRecord {
    let path = format!(
        "C:\\Users\\Jürgen\\{}\\payload{i}.exe",
        "Ünïcödé=\\]|\u{202E}😀".repeat(180)
    );
    assert!(path.len() > 2800);
    SiemRecord::new(
        chrono::Utc::now(),
        9,
        "tl:execute:deny",
        format!("execute of payload{i}.exe blocked on WS"),
    )
    .hostname("WS-07")
    .msg_id("TL_EXECUTE_DENY")
    .field("rt", "1741944413412")
    .field("duser", "CONTOSO\\jürgen")
    .field("fname", format!("payload{i}.exe"))
    .field("filePath", path)
    .field(
        "fileHash",
        "4f7c0a3e9d1b2c5a6e8f90123456789abcdef0123456789abcdef0123456789a",
    )
    .field("sproc", "C:\\Windows\\explorer.exe ".repeat(30))
    .field("act", "Deny")
    .field("outcome", "blocked")
    .field("cat", "ApplicationControl")
    .field("externalId", format!("8123456{i}"))
    .field("cs3Label", "eActionLogId")
    .field("cs3", format!("9b2e6c1d-0000-4000-8000-{i:012}"))
    .raw_json(serde_json::json!({"fullPath": "x".repeat(3000), "actionLogId": i}))
}

#[test]
fn udp_shortening_keeps_identity_and_severity_and_says_what_was_cut() {
    for format in [Format::Cef, Format::Json] {
        for max in [1024usize, 2048, 3072] {
            let mut config = Config::new("127.0.0.1:1", Transport::Udp);
            config.format = format;
            config.sd_id = Some("threatlocker@32473".into());
            config.max_message_bytes = Some(max);
            let encoder = Encoder::new(&config).unwrap();
            let rec = oversized_record(7);
            let mut msg = String::new();
            assert!(
                encoder.message_into(&rec, &mut msg),
                "reported as shortened"
            );
            assert!(msg.len() <= max, "{format:?} {max}: {} bytes", msg.len());
            let m = parse_message(&msg, Variant::RFC5424);
            assert_eq!(m.severity, Some(syslog_loose::SyslogSeverity::SEV_CRIT));
            assert_eq!(m.structured_data.len(), 1, "{msg}");
            let sd: Vec<(String, String)> = m.structured_data[0]
                .params()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            let want = |k: &str| rec.fields.iter().find(|(f, _)| f == k).unwrap().1.clone();
            for key in ["externalId", "cs3", "fileHash", "act", "outcome"] {
                assert!(
                    sd.contains(&(key.to_owned(), want(key))),
                    "SD {key}: {sd:?}"
                );
            }
            let fields: Vec<(String, String)> = match format {
                Format::Cef => {
                    let (header, ext) = split_cef(m.msg);
                    assert_eq!(header[6], "9");
                    parse_cef_extension(&ext)
                }
                Format::Json => {
                    let json: serde_json::Value = serde_json::from_str(m.msg).expect("valid JSON");
                    assert_eq!(json["severity"], 9);
                    let mut f: Vec<(String, String)> = json["fields"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                        .collect();
                    let cut: Vec<&str> = json["truncated"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap())
                        .collect();
                    assert!(cut.contains(&"raw"), "raw's omission is stated: {cut:?}");
                    f.push(("truncated".into(), cut.join(",")));
                    f
                }
            };
            for key in [
                "externalId",
                "cs3",
                "cs3Label",
                "fileHash",
                "act",
                "outcome",
            ] {
                assert!(
                    fields.contains(&(key.to_owned(), want(key))),
                    "{format:?} {max} {key}: {fields:?}"
                );
            }
            let cut = &fields
                .iter()
                .find(|(k, _)| k == "truncated")
                .expect("marker")
                .1;
            assert!(cut.split(',').any(|k| k == "filePath"), "{cut}");
            // A kept but shortened free-text value is a prefix of the original plus `…`.
            for (k, v) in &fields {
                if let Some(stem) = v.strip_suffix('…') {
                    let original = escape_free(&want(k));
                    assert!(original.starts_with(stem), "{k}: {v}");
                }
            }
        }
    }
}

#[test]
fn at_the_480_byte_minimum_a_record_still_parses_with_its_ids() {
    for format in [Format::Cef, Format::Json] {
        let mut config = Config::new("127.0.0.1:1", Transport::Udp);
        config.format = format;
        config.max_message_bytes = Some(480);
        let msg = Encoder::new(&config).unwrap().message(&oversized_record(3));
        assert!(msg.len() <= 480, "{}", msg.len());
        let m = parse_message(&msg, Variant::RFC5424);
        assert_eq!(m.severity, Some(syslog_loose::SyslogSeverity::SEV_CRIT));
        match format {
            Format::Cef => {
                let (header, ext) = split_cef(m.msg);
                assert_eq!(header[6], "9");
                let ext = parse_cef_extension(&ext);
                assert!(
                    ext.contains(&("externalId".into(), "81234563".into())),
                    "{ext:?}"
                );
                assert!(ext.iter().any(|(k, _)| k == "truncated"));
            }
            Format::Json => {
                let json: serde_json::Value = serde_json::from_str(m.msg).expect("valid JSON");
                assert_eq!(json["fields"]["externalId"], "81234563");
                assert!(json["truncated"].is_array());
            }
        }
    }
}

/// The text a receiver sees for a value: hazards made visible, as the encoder does.
fn escape_free(v: &str) -> String {
    psa_connectors::escape::text(v).into_owned()
}

#[test]
fn a_record_that_fits_is_sent_whole() {
    let encoder = Encoder::new(&Config::new("127.0.0.1:1", Transport::Udp)).unwrap();
    let mut msg = String::new();
    assert!(!encoder.message_into(&record(1), &mut msg));
    assert!(!msg.contains("truncated"));
    // TCP and TLS carry any size unless a limit is set.
    let encoder = Encoder::new(&Config::new("127.0.0.1:1", Transport::Tcp)).unwrap();
    let mut msg = String::new();
    assert!(!encoder.message_into(&oversized_record(1), &mut msg));
    assert!(msg.len() > 3000, "{}", msg.len());
}

#[test]
fn limits_outside_480_to_65000_are_refused() {
    for (transport, max, ok) in [
        (Transport::Udp, 479, false),
        (Transport::Udp, 480, true),
        (Transport::Udp, 65_000, true),
        (Transport::Udp, 65_001, false),
        (Transport::Tcp, 200_000, true),
        (Transport::Tcp, 100, false),
    ] {
        let mut config = Config::new("127.0.0.1:1", transport);
        config.max_message_bytes = Some(max);
        let result = Encoder::new(&config);
        assert_eq!(result.is_ok(), ok, "{transport:?} {max}");
        if let Err(e) = result {
            assert!(e.to_string().contains("syslog.max_message_bytes"), "{e}");
        }
    }
}

#[test]
fn cef_extension_keys_appear_once() {
    let encoder = Encoder::new(&Config::new("127.0.0.1:1", Transport::Tcp)).unwrap();
    let rec = record(1)
        .field("rt", "1741944413412")
        .field("dvchost", "other")
        .field("act", "again");
    let msg = encoder.message(&rec);
    let m = parse_message(&msg, Variant::RFC5424);
    let (_, ext) = split_cef(m.msg);
    let keys: Vec<String> = parse_cef_extension(&ext)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["rt", "dvchost", "duser", "fname", "act"]);
    assert_eq!(msg.matches("act=").count(), 1, "the first value wins");
    assert!(msg.contains("act=deny"));
}

#[tokio::test]
async fn newline_framing_ends_each_message_with_lf_and_nothing_else_breaks_a_line() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut data = Vec::new();
        sock.read_to_end(&mut data).await.unwrap();
        data
    });
    let mut config = Config::new(addr.to_string(), Transport::Tcp);
    config.framing = psa_connectors::syslog::Framing::Newline;
    config.sd_id = Some("threatlocker@32473".into());
    let sink = SyslogSink::new(config).unwrap();
    let records = vec![record(1), hostile_record(), oversized_record(2), record(3)];
    sink.send_batch(&records).await.unwrap();
    sink.close().await.unwrap();
    let data = String::from_utf8(reader.await.unwrap()).unwrap();
    let lines: Vec<&str> = data.strip_suffix('\n').unwrap().split('\n').collect();
    assert_eq!(lines.len(), 4, "{data}");
    for line in &lines {
        assert!(line.starts_with('<'), "no octet count: {line}");
        let m = parse_message(line, Variant::RFC5424);
        assert_eq!(m.structured_data.len(), 1);
    }
    assert_eq!(sink.shortened(), 0, "TCP does not shorten");
    // The byte-order mark only when asked for.
    let mut config = Config::new("127.0.0.1:1", Transport::Tcp);
    config.utf8_bom = true;
    let msg = Encoder::new(&config).unwrap().message(&hostile_record());
    assert!(msg.contains(&format!(" {BOM}CEF:0|")), "{msg}");
}

#[test]
fn cef_extension_values_respect_the_dictionary_limits() {
    let encoder = Encoder::new(&Config::new("127.0.0.1:1", Transport::Tcp)).unwrap();
    let rec = SiemRecord::new(chrono::Utc::now(), 5, "s", "n")
        .field("act", "a".repeat(100))
        .field("outcome", "o".repeat(100))
        .field("externalId", "e".repeat(100))
        .field("fileHash", "f".repeat(300))
        .field("msg", "m=".repeat(1000))
        .field("cs1Label", "l".repeat(2000))
        .field("cs1", "c".repeat(3000));
    let msg = encoder.message(&rec);
    let m = parse_message(&msg, Variant::RFC5424);
    let (_, ext) = split_cef(m.msg);
    let lengths: Vec<(String, usize)> = parse_cef_extension(&ext)
        .into_iter()
        .map(|(k, v)| (k, v.chars().count()))
        .collect();
    let expected = [
        ("rt", 13),
        ("act", 63),
        ("outcome", 63),
        ("externalId", 40),
        ("fileHash", 255),
        ("msg", 1023),
        ("cs1Label", 1023),
        ("cs1", 3000),
    ];
    assert_eq!(
        lengths,
        expected.map(|(k, n)| (k.to_owned(), n)).to_vec(),
        "value lengths after unescaping"
    );
}

#[test]
fn udp_messages_default_to_2048_bytes() {
    // RFC 5426 §3.2: every receiver should accept 2048 octets; larger is only "encouraged".
    let encoder = Encoder::new(&Config::new("127.0.0.1:1", Transport::Udp)).unwrap();
    assert_eq!(encoder.max_message_bytes(), Some(2048));
    let rec = SiemRecord::new(chrono::Utc::now(), 5, "s", "n").field("cs1", "x".repeat(3000));
    let msg = encoder.message(&rec);
    assert!(msg.len() <= 2048 && msg.len() > 2000, "{}", msg.len());
    assert!(msg.ends_with("… truncated=cs1"), "{msg}");
    let encoder = Encoder::new(&Config::new("127.0.0.1:1", Transport::Tcp)).unwrap();
    assert!(encoder.message(&rec).len() > 3000, "TCP/TLS are not capped");
}

#[tokio::test]
async fn tcp_reconnects_after_the_collector_drops_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = SyslogSink::new(Config::new(addr.to_string(), Transport::Tcp)).unwrap();

    let first = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        let n = sock.read(&mut buf).await.unwrap();
        drop(sock); // the collector restarts
        (listener, buf[..n].to_vec())
    });
    sink.send_batch(&[record(1)]).await.unwrap();
    let (listener, data) = first.await.unwrap();
    assert_eq!(split_frames(&data).len(), 1);

    let second = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut data = Vec::new();
        sock.read_to_end(&mut data).await.unwrap();
        data
    });
    // Give the FIN time to arrive so the sink can see the closed connection.
    tokio::time::sleep(Duration::from_millis(50)).await;
    sink.send_batch(&[record(2), record(3)]).await.unwrap();
    sink.close().await.unwrap();
    let data = second.await.unwrap();
    let messages = split_frames(&data);
    assert_eq!(messages.len(), 2);
    assert!(messages[0].contains("AnyDesk2.exe") && messages[1].contains("AnyDesk3.exe"));
}

#[tokio::test]
async fn large_batches_arrive_complete_and_in_order() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut data = Vec::new();
        sock.read_to_end(&mut data).await.unwrap();
        data
    });
    let sink = SyslogSink::new(Config::new(addr.to_string(), Transport::Tcp)).unwrap();
    let records: Vec<SiemRecord> = (0..5000).map(record).collect();
    sink.send_batch(&records).await.unwrap();
    sink.close().await.unwrap();
    let messages = split_frames(&reader.await.unwrap());
    assert_eq!(messages.len(), 5000);
    for (i, m) in messages.iter().enumerate() {
        assert!(
            m.contains(&format!("fname=AnyDesk{i}.exe ")),
            "record {i} in order"
        );
    }
}

#[tokio::test]
async fn tls_with_a_private_ca_delivers_octet_counted_frames() {
    let TestCa { acceptor, ca_path } = test_ca();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(sock).await.unwrap();
        let mut data = Vec::new();
        tls.read_to_end(&mut data).await.unwrap();
        let _ = tls.shutdown().await;
        data
    });

    let mut config = Config::new(addr.to_string(), Transport::Tls);
    config.tls.ca_file = Some(ca_path.clone());
    config.tls.server_name = Some("localhost".into());
    let sink = SyslogSink::new(config).unwrap();
    sink.send_batch(&[record(1)]).await.unwrap();
    // TLS 1.3 servers send session tickets after the handshake; unread bytes on the socket must
    // not be mistaken for a broken connection (the reader accepts only one connection).
    tokio::time::sleep(Duration::from_millis(50)).await;
    sink.send_batch(&[record(2)]).await.unwrap();
    sink.close().await.unwrap(); // close_notify ends the reader's read_to_end cleanly
    let messages = split_frames(&reader.await.unwrap());
    let _ = std::fs::remove_file(&ca_path);
    assert_eq!(messages.len(), 2);
    let m = parse_message(&messages[1], Variant::RFC5424);
    assert!(m.msg.contains("fname=AnyDesk2.exe"));
}

#[tokio::test]
async fn tls_refuses_a_server_the_ca_does_not_vouch_for() {
    let TestCa { acceptor, ca_path } = test_ca();
    let _ = std::fs::remove_file(&ca_path); // the client is never told about this CA
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if let Ok((sock, _)) = listener.accept().await {
            let _ = acceptor.accept(sock).await;
        }
    });
    // Web PKI roots do not include our self-signed certificate.
    let mut config = Config::new(addr.to_string(), Transport::Tls);
    config.tls.server_name = Some("localhost".into());
    let sink = SyslogSink::new(config).unwrap();
    let err = sink.check().await.unwrap_err();
    assert!(matches!(err, psa_connectors::Error::Tls { .. }), "{err:?}");
}

#[test]
fn bad_configuration_names_the_key() {
    let mut config = Config::new("127.0.0.1:514", Transport::Tls);
    config.tls.ca_file = Some("/nonexistent/ca.pem".into());
    let err = SyslogSink::new(config).unwrap_err();
    assert!(err.to_string().contains("syslog.tls.ca_file"), "{err}");
    let mut config = Config::new("127.0.0.1:514", Transport::Udp);
    config.facility = 24;
    assert!(SyslogSink::new(config)
        .unwrap_err()
        .to_string()
        .contains("syslog.facility"));
    // A private SD-ID is `name@<PEN>` (RFC 5424 §6.3.2), used verbatim or refused.
    for bad in [
        "tlEvent",
        "event@",
        "@32473",
        "event@32473x",
        "event@1@2",
        "ev ent@32473",
        "averyveryverylongname@1234567890123",
    ] {
        let mut config = Config::new("127.0.0.1:514", Transport::Udp);
        config.sd_id = Some(bad.into());
        let err = SyslogSink::new(config).unwrap_err();
        assert!(err.to_string().contains("syslog.sd_id"), "{bad}: {err}");
    }
    for good in ["event@32473", "x@1.3.6"] {
        let mut config = Config::new("127.0.0.1:514", Transport::Udp);
        config.sd_id = Some(good.into());
        assert!(SyslogSink::new(config).is_ok(), "{good}");
    }
    let err = serde_json::from_value::<Config>(serde_json::json!({
        "address": "h:514", "transport": "tcp", "fromat": "json"
    }))
    .unwrap_err();
    assert!(err.to_string().contains("fromat"));
}

/// A receiver certificate like the one `openssl req -x509 -newkey … -subj /CN=localhost` makes:
/// self-signed with basicConstraints CA:TRUE. Returns the acceptor and the PEM file.
fn openssl_style_self_signed() -> (tokio_rustls::TlsAcceptor, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = params.self_signed(&key).unwrap();
    let path = std::env::temp_dir().join(format!(
        "psa-connectors-test-pinned-{}-{}.pem",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::write(&path, cert.pem()).unwrap();
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], der)
    .unwrap();
    (
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
        path,
    )
}

/// Accepts TLS connections until the test ends, returning what the last one carried.
fn tls_receiver(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = acceptor.accept(sock).await {
                let mut data = Vec::new();
                let _ = tls.read_to_end(&mut data).await;
                return data;
            }
        }
    })
}

#[tokio::test]
async fn a_ca_true_self_signed_receiver_is_explained_and_can_be_pinned() {
    let (acceptor, pem) = openssl_style_self_signed();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = tls_receiver(listener, acceptor);

    // Trusted as a CA, the certificate cannot also be the server's: the error says what to do.
    let mut config = Config::new(addr.to_string(), Transport::Tls);
    config.tls.ca_file = Some(pem.clone());
    config.tls.server_name = Some("localhost".into());
    let err = SyslogSink::new(config.clone())
        .unwrap()
        .check()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("CaUsedAsEndEntity"), "{text}");
    assert!(text.contains("pinned_cert"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");

    // Pinned, it is accepted (the name and CA flag no longer matter, the exact certificate does).
    config.tls.ca_file = None;
    config.tls.pinned_cert = Some(pem.clone());
    config.tls.server_name = Some("any.name.example".into());
    let sink = SyslogSink::new(config.clone()).unwrap();
    sink.send_batch(&[record(1)]).await.unwrap();
    sink.close().await.unwrap();
    let messages = split_frames(&receiver.await.unwrap());
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("fname=AnyDesk1.exe"));

    // Both at once is a configuration error naming the key.
    config.tls.ca_file = Some(pem.clone());
    let err = SyslogSink::new(config).unwrap_err();
    assert!(err.to_string().contains("syslog.tls.pinned_cert"), "{err}");
    let _ = std::fs::remove_file(&pem);
}

#[tokio::test]
async fn a_pinned_certificate_refuses_any_other_receiver() {
    let (_, pinned) = openssl_style_self_signed();
    let (other, other_pem) = openssl_style_self_signed();
    let _ = std::fs::remove_file(&other_pem);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _receiver = tls_receiver(listener, other);
    let mut config = Config::new(addr.to_string(), Transport::Tls);
    config.tls.pinned_cert = Some(pinned.clone());
    config.tls.server_name = Some("localhost".into());
    let err = SyslogSink::new(config).unwrap().check().await.unwrap_err();
    let _ = std::fs::remove_file(&pinned);
    assert!(matches!(err, psa_connectors::Error::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("pinned_cert"), "{err}");
}
