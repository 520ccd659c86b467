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
        ("cef header", cef_header, "a|b\\c\r\nd=e", "a\\|b\\\\c  d=e"),
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
    assert_eq!(single_line("a\r\nb\tc"), "a  b c");
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
        // `\` only ever appears as part of an escape pair.
        prop_assert_eq!(unescape(&out), s.replace(['\r', '\n'], " "));
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
        prop_assert_eq!(back, s);
    }

    #[test]
    fn sd_param_round_trips(s in hostile_string()) {
        let out = syslog_sd_param(&s);
        prop_assert!(all_escaped(&out, &['"', ']']));
        prop_assert_eq!(unescape(&out), s);
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
