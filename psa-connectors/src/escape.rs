//! Escaping and truncation of untrusted text, one function per target.
//!
//! File names, paths, user names and command lines come from endpoints an attacker may
//! control. Every backend passes such text through the function for its target before it
//! reaches a wire format, and truncates with [`truncate_chars`] / [`truncate_bytes`], which never
//! split a character.
//!
//! The `*_into` variants append to a caller's buffer so that hot paths (the syslog sink)
//! allocate nothing per record.

use std::borrow::Cow;

/// The longest prefix of `s` with at most `max` characters (never splits a character).
pub fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((idx, _)) => &s[..idx],
        None => s,
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Truncates to `max` characters, ending with `…` when something was cut.
pub fn ellipsize(s: &str, max: usize) -> Cow<'_, str> {
    if max == 0 {
        return Cow::Borrowed("");
    }
    let cut = truncate_chars(s, max);
    if cut.len() == s.len() {
        Cow::Borrowed(s)
    } else {
        let mut out = truncate_chars(s, max - 1).to_owned();
        out.push('…');
        Cow::Owned(out)
    }
}

/// Replaces CR, LF and other control characters with a space (for subjects, summaries,
/// header-like fields).
pub fn single_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
    )
}

fn replace_with<'a>(
    s: &'a str,
    needs: impl Fn(char) -> bool,
    f: impl Fn(char, &mut String),
) -> Cow<'a, str> {
    if !s.chars().any(&needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        f(c, &mut out);
    }
    Cow::Owned(out)
}

/// HTML text and attribute escaping: `&`, `<`, `>`, `"` and `'`.
pub fn html(s: &str) -> Cow<'_, str> {
    replace_with(
        s,
        |c| matches!(c, '&' | '<' | '>' | '"' | '\''),
        |c, out| match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        },
    )
}

const MARKDOWN_SPECIAL: &[char] = &[
    '\\', '*', '_', '`', '[', ']', '(', ')', '#', '+', '-', '!', '<', '>', '~', '|', '{', '}',
];

/// Text for an Adaptive Card `TextBlock` or `FactSet` value (a markdown subset): markdown
/// punctuation is backslash-escaped so a file name cannot become a link, emphasis or list,
/// `<`/`>` are escaped, and control characters other than a newline become spaces.
pub fn markdown(s: &str) -> Cow<'_, str> {
    replace_with(
        s,
        |c| MARKDOWN_SPECIAL.contains(&c) || (c.is_control() && c != '\n'),
        |c, out| {
            if MARKDOWN_SPECIAL.contains(&c) {
                out.push('\\');
                out.push(c);
            } else if c.is_control() && c != '\n' {
                out.push(' ');
            } else {
                out.push(c);
            }
        },
    )
}

/// Text for a Slack `mrkdwn` / `plain_text` field: `&`, `<` and `>` become entities (Slack's own
/// rule), which defeats `<!channel>` mentions and `<url|label>` links in untrusted text.
pub fn slack(s: &str) -> Cow<'_, str> {
    replace_with(
        s,
        |c| matches!(c, '&' | '<' | '>'),
        |c, out| match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        },
    )
}

/// [`slack`]-escaped text of at most `max` characters counted *after* escaping (Slack's block
/// limits apply to the text as sent), ending with `…` when something was cut. An entity such
/// as `&amp;` is never split.
pub fn slack_ellipsized(s: &str, max: usize) -> Cow<'_, str> {
    let escaped = slack(s);
    if escaped.chars().count() <= max {
        return escaped;
    }
    let mut out = String::with_capacity(max + 3);
    let mut used = 0;
    for c in s.chars() {
        let piece = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            _ => "",
        };
        let width = if piece.is_empty() { 1 } else { piece.len() };
        // Keep one character for the ellipsis.
        if used + width + 1 > max {
            break;
        }
        if piece.is_empty() {
            out.push(c);
        } else {
            out.push_str(piece);
        }
        used += width;
    }
    if max > 0 {
        out.push('…');
    }
    Cow::Owned(out)
}

/// Appends a CEF header field: `\` → `\\`, `|` → `\|`, CR/LF (not allowed in the header) →
/// space.
pub fn cef_header_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
}

/// A CEF header field (see [`cef_header_into`]).
pub fn cef_header(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    cef_header_into(s, &mut out);
    out
}

/// Appends a CEF extension value: `\` → `\\`, `=` → `\=`, LF → `\n`, CR → `\r`. The pipe is
/// not escaped in extensions.
pub fn cef_extension_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// A CEF extension value (see [`cef_extension_into`]).
pub fn cef_extension(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    cef_extension_into(s, &mut out);
    out
}

/// Appends a CEF extension key: only ASCII letters and digits survive (CEF keys are
/// alphanumeric); returns false when nothing was left.
pub fn cef_key_into(s: &str, out: &mut String) -> bool {
    let before = out.len();
    out.extend(s.chars().filter(char::is_ascii_alphanumeric));
    out.len() > before
}

/// Appends an RFC 5424 PARAM-VALUE: `"`, `\` and `]` are backslash-escaped.
pub fn syslog_sd_param_into(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// An RFC 5424 PARAM-VALUE (see [`syslog_sd_param_into`]).
pub fn syslog_sd_param(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    syslog_sd_param_into(s, &mut out);
    out
}

/// Appends an RFC 5424 SD-NAME (SD-ID or PARAM-NAME): printable US-ASCII except `=`, space,
/// `]` and `"`, at most 32 characters; returns false when nothing was left.
pub fn syslog_sd_name_into(s: &str, out: &mut String) -> bool {
    let before = out.len();
    out.extend(
        s.chars()
            .filter(|c| matches!(*c as u32, 33..=126) && !matches!(c, '=' | ']' | '"'))
            .take(32),
    );
    out.len() > before
}

/// Appends an RFC 5424 header field (HOSTNAME, APP-NAME, PROCID, MSGID): printable US-ASCII
/// (33-126) only, other characters replaced by `_`, at most `max` characters, and the NILVALUE
/// `-` when empty.
pub fn syslog_header_into(s: &str, max: usize, out: &mut String) {
    let before = out.len();
    out.extend(
        s.chars()
            .take(max)
            .map(|c| if matches!(c as u32, 33..=126) { c } else { '_' }),
    );
    if out.len() == before {
        out.push('-');
    }
}

/// A string literal for a ConnectWise `conditions` expression, quotes included:
/// `\` → `\\`, `"` → `\"`, and `[` → `[[]` (the guide's rule for a literal bracket).
///
/// Percent-encoding for the URL is a separate, later step (see
/// [`percent_encode_query_value`]).
pub fn connectwise_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Percent-encodes a query value strictly: everything except ASCII letters, digits and
/// `-._~` (so `&`, `"`, `'`, `*`, `%`, `+` and spaces all become `%XX`).
pub fn percent_encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xF) as usize] as char);
        }
    }
    out
}
