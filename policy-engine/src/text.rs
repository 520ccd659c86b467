//! Small allocation-free text helpers used on the hot path, plus the untrusted-text handling
//! for tickets.

use std::borrow::Cow;

/// Trimmed and lower-cased.
pub(crate) fn fold(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Lower-cases only when needed.
pub(crate) fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) || !s.is_ascii() {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// ASCII case-insensitive substring test; `needle` must be lower-case.
pub(crate) fn contains_ci(haystack: &str, needle: &str) -> bool {
    let h = haystack.as_bytes();
    let n = needle.as_bytes();
    if n.is_empty() {
        return true;
    }
    if h.len() < n.len() {
        return false;
    }
    let first = n[0];
    let last = h.len() - n.len();
    let mut i = 0;
    while i <= last {
        if h[i].to_ascii_lowercase() == first
            && h[i + 1..i + n.len()]
                .iter()
                .zip(&n[1..])
                .all(|(a, b)| a.to_ascii_lowercase() == *b)
        {
            return true;
        }
        i += 1;
    }
    false
}

/// The file-name part of a path (either separator).
pub(crate) fn file_name(path: &str) -> &str {
    // Byte scan: both separators are ASCII, so the cut is on a char boundary.
    match path.bytes().rposition(|b| b == b'\\' || b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Calls `f` with the lower-cased file name of `path`, using a stack buffer for short names.
pub(crate) fn with_lower_name<R>(path: &str, f: impl FnOnce(&str) -> R) -> R {
    let name = file_name(path.trim_ascii());
    let bytes = name.as_bytes();
    let mut buf = [0u8; 64];
    if bytes.len() <= buf.len() && name.is_ascii() {
        for (d, s) in buf.iter_mut().zip(bytes) {
            *d = s.to_ascii_lowercase();
        }
        // ASCII in, ASCII out: always valid UTF-8.
        match std::str::from_utf8(&buf[..bytes.len()]) {
            Ok(s) => f(s),
            Err(_) => f(&name.to_lowercase()),
        }
    } else {
        f(&name.to_lowercase())
    }
}

/// Case-insensitive glob match where `*` matches any run of characters; `pattern` lower-case.
pub(crate) fn glob_ci(pattern: &str, text: &str) -> bool {
    let text = text.to_lowercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return text == pattern;
    }
    let mut rest = text.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(pos) = rest.find(part) {
            rest = &rest[pos + part.len()..];
        } else {
            return false;
        }
    }
    true
}

/// Makes untrusted text safe to place in a plain-text line: control characters (newlines,
/// escapes, bidi controls) become visible `\u{..}` escapes so they cannot forge lines.
pub(crate) fn clean(s: &str) -> Cow<'_, str> {
    let bad =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Truncates to at most `max` characters on a char boundary, ending in `...` when cut.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let keep = max.saturating_sub(3);
    let mut out: String = s.chars().take(keep).collect();
    out.push_str("...");
    out
}

/// FNV-1a, 128-bit: a stable (cross-run, cross-platform) fingerprint for dedupe keys.
pub(crate) fn fnv128(parts: &[&str]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0x1f)) {
            h ^= u128::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_ci_ignores_ascii_case() {
        assert!(contains_ci("C:\\Users\\Bob\\AppData\\x.exe", "\\appdata\\"));
        assert!(!contains_ci("c:\\windows", "\\appdata\\"));
        assert!(contains_ci("abc", ""));
    }

    #[test]
    fn glob_matches_wildcards() {
        assert!(glob_ci(
            "c:\\users\\*\\downloads\\*.exe",
            "C:\\Users\\Bob\\Downloads\\x.EXE"
        ));
        assert!(!glob_ci(
            "c:\\users\\*\\downloads\\*.exe",
            "C:\\Users\\Bob\\Desktop\\x.exe"
        ));
        assert!(glob_ci("*anydesk*", "c:\\temp\\AnyDesk.exe"));
        assert!(glob_ci("exact", "EXACT"));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(120);
        let t = truncate_chars(&s, 100);
        assert_eq!(t.chars().count(), 100);
        assert!(t.ends_with("..."));
        assert_eq!(truncate_chars("short", 100), "short");
    }

    #[test]
    fn clean_makes_control_characters_visible() {
        assert_eq!(clean("a\nFAKE: line"), "a\\u{a}FAKE: line");
        assert_eq!(clean("c:\\users\\x"), "c:\\users\\x");
    }

    #[test]
    fn fingerprint_is_pinned() {
        // Pinned (an independent FNV-1a 128 computation): a change here would make every open
        // incident look new and open duplicate tickets.
        assert_eq!(
            format!("{:032x}", fnv128(&["a", "b"])),
            "697190d9e0757277b806e9771f4f56e2"
        );
        assert_ne!(fnv128(&["ab", ""]), fnv128(&["a", "b"]));
    }
}
