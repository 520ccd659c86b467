//! Escaping and truncation: table tests plus property tests with hostile input.

use proptest::prelude::*;
use psa_connectors::escape::*;

use super::common::HOSTILE;

/// (name, function, input, expected output)
type Case = (&'static str, fn(&str) -> String, &'static str, &'static str);

#[test]
fn table() {
    let cases: &[Case] = &[
        (
            "html",
            |s| html(s).into_owned(),
            r#"<a href="x">'&'</a>"#,
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;",
        ),
        (
            "slack",
            |s| slack(s).into_owned(),
            "<!channel> & <http://x|y>",
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;",
        ),
        (
            "markdown",
            |s| markdown(s).into_owned(),
            "[x](y) *b* _i_ a\\b",
            r"\[x\]\(y\) \*b\* \_i\_ a\\b",
        ),
        ("cef header", cef_header, "a|b\\c\r\nd=e", "a\\|b\\\\c d=e"),
        (
            "cef header, hazards",
            cef_header,
            "a\0b\x1b[31mc\td\u{202E}e\u{7f}\u{85}",
            "a[U+0000]b[U+001B][31mc[U+0009]d[U+202E]e[U+007F][U+0085]",
        ),
        (
            "cef extension, hazards",
            cef_extension,
            "x\0=\u{202E}\n",
            "x[U+0000]\\=[U+202E]\\n",
        ),
        (
            "sd param, hazards",
            syslog_sd_param,
            "a\u{202E}\r\nb",
            "a[U+202E\\] b",
        ),
        (
            "csv",
            |s| csv_field(s),
            "=HYPERLINK(\"x\")\u{202E}",
            "\"'=HYPERLINK(\"\"x\"\")[U+202E]\"",
        ),
        ("csv, line break", |s| csv_field(s), "a\nb", "\"a\nb\""),
        (
            "single line",
            |s| single_line(s).into_owned(),
            "a\r\nb\rc\nd\u{2066}",
            "a b c d[U+2066]",
        ),
        (
            "persian joiner kept",
            |s| single_line(s).into_owned(),
            "می\u{200C}خواهم",
            "می\u{200C}خواهم",
        ),
        (
            "cef extension",
            cef_extension,
            "a=b\\c\nd\re|f",
            "a\\=b\\\\c\\nd\\re|f",
        ),
        (
            "sd param",
            syslog_sd_param,
            "a\"b\\c]d[e",
            "a\\\"b\\\\c\\]d[e",
        ),
        (
            "connectwise",
            connectwise_string,
            "a\"b\\c[d",
            "\"a\\\"b\\\\c[[]d\"",
        ),
        (
            "percent",
            percent_encode_query_value,
            "a b&\"'*%+é",
            "a%20b%26%22%27%2A%25%2B%C3%A9",
        ),
    ];
    for (name, f, input, expected) in cases {
        assert_eq!(f(input), *expected, "{name}");
    }
}

#[test]
fn truncation_table() {
    assert_eq!(truncate_chars("héllo", 2), "hé");
    assert_eq!(truncate_chars("héllo", 10), "héllo");
    assert_eq!(truncate_chars("", 0), "");
    assert_eq!(truncate_bytes("héllo", 2), "h");
    assert_eq!(truncate_bytes("😀x", 3), "");
    assert_eq!(ellipsize("abcdef", 4), "abc…");
    assert_eq!(ellipsize("abc", 4), "abc");
    assert_eq!(ellipsize("abc", 0), "");
    assert_eq!(single_line("a\r\nb\tc"), "a b[U+0009]c");
    // Slack limits count the escaped text; an entity is never split.
    assert_eq!(slack_ellipsized("a<b", 6), "a&lt;b");
    assert_eq!(slack_ellipsized("a<b", 5), "a…");
    assert_eq!(slack_ellipsized("&&&", 12), "&amp;&amp;…");
    assert_eq!(slack_ellipsized("abc", 0), "");
    let mut out = String::new();
    syslog_header_into("héllo wörld", 5, &mut out);
    assert_eq!(out, "h_llo");
    out.clear();
    syslog_header_into("", 5, &mut out);
    assert_eq!(out, "-");
}

#[test]
fn hostile_constant_is_neutralised_everywhere() {
    assert!(!html(HOSTILE).contains('<'));
    assert!(!slack(HOSTILE).contains('<'));
    assert!(!cef_header(HOSTILE).contains('\n'));
    assert!(!cef_extension(HOSTILE).contains('\n'));
}

/// True when every occurrence of a char in `specials` is preceded by an odd run of `\`.
fn all_escaped(s: &str, specials: &[char]) -> bool {
    let chars: Vec<char> = s.chars().collect();
    chars.iter().enumerate().all(|(i, c)| {
        if !specials.contains(c) {
            return true;
        }
        let run = chars[..i].iter().rev().take_while(|c| **c == '\\').count();
        run % 2 == 1
    })
}

/// Removes one level of backslash escaping.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just('\\'),
                Just('"'),
                Just(']'),
                Just('['),
                Just('|'),
                Just('='),
                Just('\n'),
                Just('\r'),
                Just('<'),
                Just('>'),
                Just('&'),
                Just('*'),
                Just('é'),
                Just('😀'),
                Just(' '),
                Just('a'),
                Just('%'),
                Just('+'),
                Just('\''),
            ],
            0..64
        )
        .prop_map(|v| v.into_iter().collect()),
    ]
}

proptest! {
    #[test]
    fn cef_header_leaves_no_unescaped_pipe_or_newline(s in hostile_string()) {
        let out = cef_header(&s);
        prop_assert!(!out.contains('\n') && !out.contains('\r'));
        prop_assert!(all_escaped(&out, &['|']));
        prop_assert!(!has_hazard(&out));
        // `\` only ever appears as part of an escape pair.
        prop_assert_eq!(unescape(&out), neutralize(&s, Lines::Space));
    }

    #[test]
    fn cef_extension_leaves_no_unescaped_equals_or_newline(s in hostile_string()) {
        let out = cef_extension(&s);
        prop_assert!(!out.contains('\n') && !out.contains('\r'));
        prop_assert!(all_escaped(&out, &['=']));
        let mut back = String::new();
        let mut it = out.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('n') => back.push('\n'),
                    Some('r') => back.push('\r'),
                    Some(other @ ('\\' | '=')) => back.push(other),
                    other => prop_assert!(false, "stray escape {:?}", other),
                }
            } else {
                back.push(c);
            }
        }
        prop_assert!(!has_hazard(&out));
        prop_assert_eq!(back, neutralize(&s, Lines::Keep));
    }

    #[test]
    fn sd_param_round_trips(s in hostile_string()) {
        let out = syslog_sd_param(&s);
        prop_assert!(all_escaped(&out, &['"', ']']));
        prop_assert!(!has_hazard(&out));
        prop_assert_eq!(unescape(&out), neutralize(&s, Lines::Space));
    }

    #[test]
    fn connectwise_literal_is_one_closed_string(s in hostile_string()) {
        let out = connectwise_string(&s);
        prop_assert!(out.starts_with('"') && out.ends_with('"') && out.len() >= 2);
        let inner = &out[1..out.len() - 1];
        // No quote inside the literal can terminate it.
        prop_assert!(all_escaped(inner, &['"']));
        prop_assert!(!inner.ends_with('\\') || inner.chars().rev().take_while(|c| *c == '\\').count() % 2 == 0);
    }

    #[test]
    fn html_and_slack_leave_no_markup(s in hostile_string()) {
        let h = html(&s);
        prop_assert!(!h.contains('<') && !h.contains('>') && !h.contains('"') && !h.contains('\''));
        let k = slack(&s);
        prop_assert!(!k.contains('<') && !k.contains('>'));
    }

    #[test]
    fn slack_ellipsized_fits_after_escaping(s in hostile_string(), max in 0usize..60) {
        let out = slack_ellipsized(&s, max);
        prop_assert!(out.chars().count() <= max);
        prop_assert!(!out.contains('<') && !out.contains('>'));
        let body = out.strip_suffix('…').unwrap_or(&out);
        prop_assert!(slack(&s).starts_with(body));
    }

    #[test]
    fn markdown_escapes_every_special(s in hostile_string()) {
        let out = markdown(&s);
        prop_assert!(all_escaped(&out, &['*', '_', '[', ']', '(', ')', '<', '>', '`', '|']));
    }

    #[test]
    fn percent_encoding_leaves_only_unreserved(s in hostile_string()) {
        let out = percent_encode_query_value(&s);
        prop_assert!(out.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
    }

    #[test]
    fn truncation_never_splits_a_character(s in any::<String>(), max in 0usize..80) {
        let c = truncate_chars(&s, max);
        prop_assert!(c.chars().count() <= max);
        prop_assert!(s.starts_with(c));
        let b = truncate_bytes(&s, max);
        prop_assert!(b.len() <= max && s.starts_with(b));
        // Maximal: one more character would not fit.
        if b.len() < s.len() {
            let next = s[b.len()..].chars().next().unwrap();
            prop_assert!(b.len() + next.len_utf8() > max);
        }
        let e = ellipsize(&s, max);
        prop_assert!(e.chars().count() <= max);
    }
}

/// The hostile inputs every text sink is checked against (one table for all sinks).
#[cfg(all(
    feature = "syslog",
    feature = "email",
    feature = "teams",
    feature = "slack"
))]
fn hostile_inputs() -> Vec<(&'static str, String)> {
    vec![
        ("CR/LF", "line1\r\nInjected: header\rx\ny".to_owned()),
        ("NUL", "a\0b".to_owned()),
        ("ESC", "\x1b[31mred\x1b[0m".to_owned()),
        ("TAB", "a\tb".to_owned()),
        ("U+202E", "invoice\u{202E}fdp.exe".to_owned()),
        ("isolates", "\u{2066}x\u{2069}\u{200F}\u{FEFF}".to_owned()),
        ("C1 and DEL", "a\u{85}b\u{9b}c\u{7f}".to_owned()),
        ("pipe", "a|b".to_owned()),
        ("equals", "k=v a=b".to_owned()),
        ("bracket", "x]\"y".to_owned()),
        ("backslash", "C:\\Users\\".to_owned()),
        ("HTML", "<script>alert('x')</script>&amp;".to_owned()),
        ("Slack", "<!channel> <@U123> <https://evil|ok>".to_owned()),
        ("markdown", "[link](http://x) *b* `c`".to_owned()),
        (
            "long path",
            format!("C:\\Ünïcödé\\{}\\a.exe", "Pfad-ä😀\\".repeat(300)),
        ),
    ]
}

/// Characters that may never reach any sink's output raw.
#[cfg(all(
    feature = "syslog",
    feature = "email",
    feature = "teams",
    feature = "slack"
))]
fn assert_no_hidden(sink: &str, name: &str, out: &str) {
    assert!(
        !out.chars().any(|c| hazard(c) == Some(Hazard::Hidden)),
        "{sink} / {name}: {out:?}"
    );
}

#[cfg(all(
    feature = "syslog",
    feature = "email",
    feature = "teams",
    feature = "slack"
))]
#[test]
fn every_text_sink_neutralizes_the_same_hostile_inputs() {
    use psa_connectors::syslog::{Config, Encoder, Format, Transport};
    use psa_connectors::{Notification, SiemRecord};

    let mut json_config = Config::new("127.0.0.1:1", Transport::Tcp);
    json_config.format = Format::Json;
    json_config.sd_id = Some("threatlocker@32473".into());
    let json_encoder = Encoder::new(&json_config).unwrap();
    let mut cef_config = Config::new("127.0.0.1:1", Transport::Tcp);
    cef_config.sd_id = Some("threatlocker@32473".into());
    let cef_encoder = Encoder::new(&cef_config).unwrap();
    let smtp = psa_connectors::email::SmtpNotifier::new({
        let mut c = psa_connectors::email::Config::new("127.0.0.1", "a@msp.example");
        c.security = psa_connectors::email::Security::Plain;
        c.to = vec!["b@msp.example".into()];
        c.hello_name = Some("fwd.msp.example".into());
        c
    })
    .unwrap();

    for (name, input) in hostile_inputs() {
        let line = neutralize(&input, Lines::Space);
        let text = neutralize(&input, Lines::Keep);

        // CEF header and extension: decode back to the neutralized text, no raw line break.
        let header = cef_header(&input);
        assert_no_hidden("cef header", name, &header);
        assert!(!header.contains(['\r', '\n']), "{name}");
        assert_eq!(unescape(&header), line, "cef header / {name}");
        let ext = cef_extension(&input);
        assert_no_hidden("cef extension", name, &ext);
        assert!(!ext.contains(['\r', '\n']), "{name}");
        assert!(all_escaped(&ext, &['=']), "{name}");

        // RFC 5424 SD: `"`, `\` and `]` escaped, one line.
        let sd = syslog_sd_param(&input);
        assert_no_hidden("sd", name, &sd);
        assert!(all_escaped(&sd, &['"', ']']), "{name}");
        assert_eq!(unescape(&sd), line, "sd / {name}");

        // CSV: one RFC 4180 field that reads back as the neutralized text.
        let csv = csv_field(&input);
        assert_no_hidden("csv", name, &csv);
        let back = match csv.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
            Some(inner) => inner.replace("\"\"", "\""),
            None => csv.clone(),
        };
        assert_eq!(
            back.strip_prefix('\'').unwrap_or(&back),
            text,
            "csv / {name}"
        );

        // Markdown, HTML, Slack: markup neutralized as well.
        for (sink, out) in [
            ("markdown", markdown(&input).into_owned()),
            ("markdown line", markdown_line(&input).into_owned()),
            ("html", html(&input).into_owned()),
            ("slack", slack(&input).into_owned()),
            (
                "slack line",
                slack_line_ellipsized(&input, 2000).into_owned(),
            ),
        ] {
            assert_no_hidden(sink, name, &out);
            if sink.ends_with("line") {
                assert!(!out.contains(['\r', '\n']), "{sink} / {name}");
            }
            if sink.starts_with("slack") || sink == "html" {
                assert!(!out.contains(['<', '>']), "{sink} / {name}");
            }
        }

        // Whole syslog messages, CEF and JSON: parseable, one line, nothing hidden.
        let rec = SiemRecord::new(chrono::Utc::now(), 5, input.clone(), input.clone())
            .hostname(input.clone())
            .field("filePath", input.clone())
            .field("externalId", input.clone())
            .field("cs1", input.clone())
            .raw_json(serde_json::json!({ "fullPath": input }));
        for (sink, encoder) in [("syslog cef", &cef_encoder), ("syslog json", &json_encoder)] {
            let msg = encoder.message(&rec);
            assert_no_hidden(sink, name, &msg);
            assert!(!msg.contains(['\r', '\n', '\u{FEFF}']), "{sink} / {name}");
            let m = syslog_loose::parse_message(&msg, syslog_loose::Variant::RFC5424);
            assert_eq!(m.structured_data.len(), 1, "{sink} / {name}: {msg}");
            if sink == "syslog json" {
                let v: serde_json::Value = serde_json::from_str(m.msg).expect("valid JSON");
                assert_eq!(v["fields"]["filePath"], *text, "{name}");
                // The original event follows the same policy (C parsers cut strings at \u0000).
                assert_eq!(v["raw"]["fullPath"], *text, "{name}");
                assert!(!m.msg.contains("\\u00"), "{name}: {}", m.msg);
            }
        }

        // Notifications: every text field, the organization fact included, on one line with
        // nothing hidden.
        let n = Notification::new(input.clone(), input.clone())
            .fact("Organization", input.clone())
            .fact(input.clone(), "v");
        let teams = serde_json::to_string(&psa_connectors::teams::payload(&n, 20_000)).unwrap();
        let slack_payload = psa_connectors::slack::payload(&n);
        let mail = String::from_utf8(smtp.message(&n).unwrap().formatted()).unwrap();
        for (sink, out) in [("teams", &teams), ("mail", &mail)] {
            assert_no_hidden(sink, name, out);
        }
        let teams: serde_json::Value = serde_json::from_str(&teams).unwrap();
        let card = &teams["attachments"][0]["content"];
        for fact in card["body"][2]["facts"].as_array().unwrap() {
            for part in ["title", "value"] {
                let v = fact[part].as_str().unwrap();
                assert_no_hidden("teams fact", name, v);
                assert!(!v.contains(['\r', '\n']), "teams fact / {name}: {v:?}");
            }
        }
        assert!(!card["body"][0]["text"].as_str().unwrap().contains('\n'));
        for field in slack_payload["blocks"][2]["fields"].as_array().unwrap() {
            let v = field["text"].as_str().unwrap();
            assert_no_hidden("slack field", name, v);
            // `*label*\nvalue`: the only line break is the one between label and value.
            assert_eq!(v.matches('\n').count(), 1, "slack field / {name}: {v:?}");
            assert!(!v.contains(['<', '>', '\r']), "{name}");
        }
        assert_no_hidden("slack", name, &slack_payload.to_string());
        let plain = psa_connectors::email::render_text(&n);
        let facts = plain.split("\n\n").nth(1).unwrap_or("");
        assert_eq!(
            facts.lines().count(),
            2,
            "mail facts one line each / {name}: {facts:?}"
        );
        let subject_line = mail
            .lines()
            .find(|l| l.starts_with("Subject:"))
            .expect("Subject header");
        assert!(!subject_line.contains('\r'), "{name}");
    }
}

#[test]
fn a_shortened_single_line_value_is_a_prefix_of_the_whole_one() {
    let s = "a\r\nb<c\u{202E}d".repeat(20);
    let whole = slack_line_ellipsized(&s, 10_000);
    let cut = slack_line_ellipsized(&s, 40);
    assert!(cut.chars().count() <= 40);
    assert!(
        whole.starts_with(cut.strip_suffix('…').unwrap()),
        "{cut} / {whole}"
    );
}
