//! Repairing broken strings in a JSON body before it is parsed.
//!
//! The API serializes with .NET, which writes a damaged file name (a lone UTF-16 surrogate) as
//! the escape `"\ud800"`; servers and proxies also let raw control characters and invalid UTF-8
//! through. `serde_json` rightly rejects all three, and a whole page of rows would be lost for
//! one damaged string. [`repair_json`] replaces just the broken part with U+FFFD, inside string
//! literals only, so the row is decoded and processed with the damage visible.
//!
//! The client calls it only after a strict parse failed, so a clean body costs nothing extra.

use std::borrow::Cow;

/// The escape written in place of a lone surrogate escape: the same length, so offsets in
/// the rest of the body do not move.
const REPLACEMENT_ESCAPE: &[u8; 6] = br"\uFFFD";
/// U+FFFD as UTF-8, written in place of a raw control character or invalid UTF-8.
const REPLACEMENT_UTF8: &[u8] = "\u{FFFD}".as_bytes();

/// What [`repair_json`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Repairs {
    /// Lone UTF-16 surrogate escapes (`\ud800` without its pair, or a stray `\udc00`).
    pub lone_surrogates: usize,
    /// Raw control characters (U+0000 to U+001F) inside strings.
    pub control_chars: usize,
    /// Invalid UTF-8 sequences inside strings.
    pub invalid_utf8: usize,
}

impl Repairs {
    /// Whether anything was replaced.
    pub fn any(&self) -> bool {
        self.total() > 0
    }

    /// How many broken parts were replaced.
    pub fn total(&self) -> usize {
        self.lone_surrogates + self.control_chars + self.invalid_utf8
    }
}

/// Replaces every broken part of every JSON string literal in `body` with U+FFFD: lone
/// surrogate escapes become `\uFFFD`, raw control characters and invalid UTF-8 sequences
/// become the character itself. Anything outside string literals is left alone (a body that is
/// not JSON stays not JSON). Returns the body unchanged, without copying, when nothing needed
/// repair.
pub fn repair_json(body: &[u8]) -> (Cow<'_, [u8]>, Repairs) {
    let mut repairs = Repairs::default();
    // Allocated at the first repair; until then `copied` marks how much of `body` is clean.
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    let mut in_string = false;

    // Writes `body[copied..upto]` then `with` into the output, starting it if needed.
    let replace = |out: &mut Option<Vec<u8>>, copied: &mut usize, upto: usize, with: &[u8]| {
        let buf = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 16));
        buf.extend_from_slice(&body[*copied..upto]);
        buf.extend_from_slice(with);
    };

    while i < body.len() {
        let b = body[i];
        if !in_string {
            in_string = b == b'"';
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = false;
                i += 1;
            }
            b'\\' => match body.get(i + 1) {
                Some(b'u') => match hex4(body, i + 2) {
                    Some(0xD800..=0xDBFF) => {
                        let paired = body.get(i + 6) == Some(&b'\\')
                            && body.get(i + 7) == Some(&b'u')
                            && matches!(hex4(body, i + 8), Some(0xDC00..=0xDFFF));
                        if paired {
                            i += 12;
                        } else {
                            replace(&mut out, &mut copied, i, REPLACEMENT_ESCAPE);
                            repairs.lone_surrogates += 1;
                            i += 6;
                            copied = i;
                        }
                    }
                    Some(0xDC00..=0xDFFF) => {
                        replace(&mut out, &mut copied, i, REPLACEMENT_ESCAPE);
                        repairs.lone_surrogates += 1;
                        i += 6;
                        copied = i;
                    }
                    Some(_) => i += 6,
                    // A malformed escape is not a broken string but broken JSON: leave it
                    // for the parser to report.
                    None => i += 2,
                },
                Some(_) => i += 2,
                None => i += 1,
            },
            0x00..=0x1F => {
                replace(&mut out, &mut copied, i, REPLACEMENT_UTF8);
                repairs.control_chars += 1;
                i += 1;
                copied = i;
            }
            0x20..=0x7F => i += 1,
            _ => {
                let end = (i + 4).min(body.len());
                let width = match std::str::from_utf8(&body[i..end]) {
                    Ok(s) => s.chars().next().map_or(1, char::len_utf8),
                    Err(e) if e.valid_up_to() > 0 => {
                        // A valid character first; the invalid bytes come later.
                        std::str::from_utf8(&body[i..i + e.valid_up_to()])
                            .ok()
                            .and_then(|s| s.chars().next())
                            .map_or(1, char::len_utf8)
                    }
                    Err(e) => {
                        let bad = e.error_len().unwrap_or(end - i).max(1);
                        replace(&mut out, &mut copied, i, REPLACEMENT_UTF8);
                        repairs.invalid_utf8 += 1;
                        i += bad;
                        copied = i;
                        continue;
                    }
                };
                i += width;
            }
        }
    }
    match out {
        None => (Cow::Borrowed(body), repairs),
        Some(mut buf) => {
            buf.extend_from_slice(&body[copied.min(body.len())..]);
            (Cow::Owned(buf), repairs)
        }
    }
}

/// The value of four hex digits at `at`, if there are four.
fn hex4(body: &[u8], at: usize) -> Option<u16> {
    let digits = body.get(at..at + 4)?;
    let mut v: u16 = 0;
    for d in digits {
        v = (v << 4) | u16::from(char::from(*d).to_digit(16)? as u8);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repaired(body: &[u8]) -> (String, Repairs) {
        let (out, r) = repair_json(body);
        (String::from_utf8(out.into_owned()).unwrap(), r)
    }

    #[test]
    fn table() {
        // (input, expected output, lone surrogates, control chars, invalid utf-8)
        let cases: &[(&[u8], &str, usize, usize, usize)] = &[
            (br#"{"a":"x\ud800y"}"#, r#"{"a":"x\uFFFDy"}"#, 1, 0, 0),
            (br#"["\uDBFF"]"#, r#"["\uFFFD"]"#, 1, 0, 0),
            (
                br#"["\udc00 stray low"]"#,
                r#"["\uFFFD stray low"]"#,
                1,
                0,
                0,
            ),
            // A valid pair is kept.
            (br#"["\ud83d\ude00"]"#, r#"["\ud83d\ude00"]"#, 0, 0, 0),
            // High then high: the first is lone, the second pairs with the low.
            (
                br#"["\ud800\ud83d\ude00"]"#,
                r#"["\uFFFD\ud83d\ude00"]"#,
                1,
                0,
                0,
            ),
            // High followed by a non-surrogate escape.
            (br#"["\ud800\u0041"]"#, r#"["\uFFFD\u0041"]"#, 1, 0, 0),
            // At the very end of a string.
            (br#"{"p":"c:\\x\ud800"}"#, r#"{"p":"c:\\x\uFFFD"}"#, 1, 0, 0),
            // An escaped backslash before `ud800` is not an escape.
            (br#"["\\ud800"]"#, r#"["\\ud800"]"#, 0, 0, 0),
            // An escaped quote does not end the string.
            (br#"["a\"\ud800"]"#, r#"["a\"\uFFFD"]"#, 1, 0, 0),
            (b"[\"tab\there\"]", "[\"tab\u{FFFD}here\"]", 0, 1, 0),
            (b"[\"nul\x00\"]", "[\"nul\u{FFFD}\"]", 0, 1, 0),
            (b"[\"bad\xffbyte\"]", "[\"bad\u{FFFD}byte\"]", 0, 0, 1),
            // A truncated multi-byte sequence.
            (b"[\"cut\xe2\x82\"]", "[\"cut\u{FFFD}\"]", 0, 0, 1),
            // Valid multi-byte text is kept.
            (
                "[\"caf\u{e9} \u{1F600}\"]".as_bytes(),
                "[\"caf\u{e9} \u{1F600}\"]",
                0,
                0,
                0,
            ),
            // Outside strings nothing is touched (whitespace, newlines between values).
            (b"[\n\t\"a\"\r\n]", "[\n\t\"a\"\r\n]", 0, 0, 0),
            // Everything at once, twice.
            (
                b"[{\"a\":\"\\ud800\x01\xc3\"},{\"b\":\"\\udfff\"}]",
                "[{\"a\":\"\\uFFFD\u{FFFD}\u{FFFD}\"},{\"b\":\"\\uFFFD\"}]",
                2,
                1,
                1,
            ),
        ];
        for (input, want, s, c, u) in cases {
            let (got, r) = repaired(input);
            assert_eq!(&got, want, "input {:?}", String::from_utf8_lossy(input));
            assert_eq!(
                (r.lone_surrogates, r.control_chars, r.invalid_utf8),
                (*s, *c, *u),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
            let v: serde_json::Value = serde_json::from_str(&got)
                .unwrap_or_else(|e| panic!("{got:?} does not parse: {e}"));
            assert!(v.is_array() || v.is_object());
        }
    }

    #[test]
    fn clean_bodies_are_borrowed() {
        for body in [
            &br#"[{"a":"x","b":[1,2.5,true,null],"c":"\u00e9\ud83d\ude00\n"}]"#[..],
            b"",
            b"null",
            "[\"h\u{e9}llo\"]".as_bytes(),
        ] {
            let (out, r) = repair_json(body);
            assert!(matches!(out, Cow::Borrowed(_)));
            assert!(!r.any());
        }
    }

    #[test]
    fn a_dangling_escape_at_the_end_does_not_panic() {
        for body in [
            &b"[\"\\"[..],
            b"[\"\\u",
            b"[\"\\ud8",
            b"[\"\\ud800\\",
            b"[\"\xe2",
        ] {
            let _ = repair_json(body);
        }
    }

    proptest::proptest! {
        /// Whatever strings hold, serde_json's own output needs no repair.
        #[test]
        fn serialized_json_is_left_alone(s in ".*", n in proptest::num::i64::ANY) {
            let body = serde_json::to_vec(&serde_json::json!([{ "s": s, "n": n }])).unwrap();
            let (out, r) = repair_json(&body);
            proptest::prop_assert!(matches!(out, Cow::Borrowed(_)));
            proptest::prop_assert!(!r.any());
        }

        /// Any bytes inside a string literal come out as a parseable string.
        #[test]
        fn any_string_content_parses_after_repair(
            raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            // Escape quotes and backslashes so the literal stays one string; everything else
            // (control bytes, invalid UTF-8) is left raw for the repair.
            let mut body = b"[\"".to_vec();
            for b in raw {
                if b == b'"' || b == b'\\' {
                    body.push(b'\\');
                }
                body.push(b);
            }
            body.extend_from_slice(b"\"]");
            let (out, _) = repair_json(&body);
            let parsed: Result<Vec<String>, _> = serde_json::from_slice(&out);
            proptest::prop_assert!(parsed.is_ok(), "{:?}", String::from_utf8_lossy(&out));
        }

        /// Random surrogate escapes, paired or not, always parse after repair.
        #[test]
        fn surrogate_escapes_parse_after_repair(
            units in proptest::collection::vec(0xD7F0u16..0xE010, 0..8),
        ) {
            let mut body = String::from("[\"");
            for u in units {
                body.push_str(&format!("\\u{u:04x}"));
            }
            body.push_str("\"]");
            let (out, _) = repair_json(body.as_bytes());
            let parsed: Result<Vec<String>, _> = serde_json::from_slice(&out);
            proptest::prop_assert!(parsed.is_ok(), "{:?}", String::from_utf8_lossy(&out));
        }
    }
}
