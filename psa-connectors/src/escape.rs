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

/// How the shared policy treats a character that must never reach a sink as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hazard {
    /// CR or LF: each target either escapes it (CEF extension `\n`, JSON `\n`, HTML `<br>`) or,
    /// where the field is single-line, replaces a line break (CRLF counting as one) by a space.
    LineBreak,
    /// Any other control character (C0 including NUL, TAB and ESC, DEL, C1) or an invisible
    /// formatting character that can disguise text: bidirectional marks, embeddings,
    /// overrides and isolates (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069),
    /// invisible characters (U+200B, U+2060, U+FEFF; not the joiners U+200C/U+200D, which
    /// Persian, Indic and emoji text needs) and the Unicode line and
    /// paragraph separators (U+2028, U+2029). Made visible everywhere as `[U+XXXX]`.
    Hidden,
}

/// The single classification every text sink applies (see [`Hazard`]).
pub fn hazard(c: char) -> Option<Hazard> {
    match c {
        '\n' | '\r' => Some(Hazard::LineBreak),
        c if c.is_control() => Some(Hazard::Hidden),
        '\u{061C}'
        | '\u{200B}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}' => Some(Hazard::Hidden),
        _ => None,
    }
}

/// Whether `s` holds any [`Hazard`].
pub fn has_hazard(s: &str) -> bool {
    s.chars().any(|c| hazard(c).is_some())
}

/// What a target does with line breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// The target has its own representation (an escape, `<br>`, a quoted CSV cell): CR and LF
    /// are handed to the target's escaper.
    Keep,
    /// Single-line field: each line break (CRLF, CR or LF) becomes one space.
    Space,
}

/// The shared policy: walks `s`, hands every ordinary character to `put` (the target's own
/// escaping), replaces [`Hazard::Hidden`] characters by the visible marker `[U+XXXX]` (whose
/// characters also go through `put`, so `]` is escaped where the target needs it) and treats
/// line breaks as `lines` says.
pub fn neutralize_into(
    s: &str,
    lines: Lines,
    out: &mut String,
    mut put: impl FnMut(char, &mut String),
) {
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match hazard(c) {
            None => put(c, out),
            Some(Hazard::LineBreak) => match lines {
                Lines::Keep => put(c, out),
                Lines::Space => {
                    if c == '\r' && chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    put(' ', out);
                }
            },
            Some(Hazard::Hidden) => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                let code = c as u32;
                for ch in "[U+".chars() {
                    put(ch, out);
                }
                let digits = if code > 0xFFFF { 6 } else { 4 };
                for i in (0..digits).rev() {
                    put(HEX[((code >> (4 * i)) & 0xF) as usize] as char, out);
                }
                put(']', out);
            }
        }
    }
}

/// [`neutralize_into`] with no further escaping (plain text).
pub fn neutralize(s: &str, lines: Lines) -> Cow<'_, str> {
    let needs = match lines {
        Lines::Keep => s.chars().any(|c| hazard(c) == Some(Hazard::Hidden)),
        Lines::Space => has_hazard(s),
    };
    if !needs {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    neutralize_into(s, lines, &mut out, |c, o| o.push(c));
    Cow::Owned(out)
}

/// Single-line plain text (subjects, fact labels and values, header-like fields): line breaks
/// become a space and other hazards `[U+XXXX]` (see [`Hazard`]).
pub fn single_line(s: &str) -> Cow<'_, str> {
    neutralize(s, Lines::Space)
}

/// Multi-line plain text (an e-mail's text part): line breaks stay, other hazards become
/// `[U+XXXX]`.
pub fn text(s: &str) -> Cow<'_, str> {
    neutralize(s, Lines::Keep)
}

fn replace_with<'a>(
    s: &'a str,
    lines: Lines,
    needs: impl Fn(char) -> bool,
    f: impl Fn(char, &mut String),
) -> Cow<'a, str> {
    let hazardous: fn(char) -> bool = match lines {
        Lines::Keep => |c| hazard(c) == Some(Hazard::Hidden),
        Lines::Space => |c| hazard(c).is_some(),
    };
    if !s.chars().any(|c| needs(c) || hazardous(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    neutralize_into(s, lines, &mut out, f);
    Cow::Owned(out)
}

/// HTML text and attribute escaping: `&`, `<`, `>`, `"` and `'`, after the shared policy
/// (line breaks kept: HTML shows them as spaces; hazards made visible).
pub fn html(s: &str) -> Cow<'_, str> {
    replace_with(
        s,
        Lines::Keep,
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

/// Text for an Adaptive Card `TextBlock` or `FactSet` value (a markdown subset), after the
/// shared policy: markdown punctuation is backslash-escaped so a file name cannot become a
/// link, emphasis or list, `<`/`>` are escaped, line breaks are kept.
pub fn markdown(s: &str) -> Cow<'_, str> {
    replace_with(
        s,
        Lines::Keep,
        |c| MARKDOWN_SPECIAL.contains(&c),
        |c, out| {
            if MARKDOWN_SPECIAL.contains(&c) {
                out.push('\\');
            }
            out.push(c);
        },
    )
}

/// [`markdown`] for a single-line value (a fact, a title): line breaks become a space.
pub fn markdown_line(s: &str) -> Cow<'_, str> {
    replace_with(
        s,
        Lines::Space,
        |c| MARKDOWN_SPECIAL.contains(&c),
        |c, out| {
            if MARKDOWN_SPECIAL.contains(&c) {
                out.push('\\');
            }
            out.push(c);
        },
    )
}

fn slack_put(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

/// Text for a Slack `mrkdwn` / `plain_text` field after the shared policy: `&`, `<` and `>`
/// become entities (Slack's own rule), which defeats `<!channel>` mentions and `<url|label>`
/// links in untrusted text; line breaks are kept.
pub fn slack(s: &str) -> Cow<'_, str> {
    replace_with(s, Lines::Keep, |c| matches!(c, '&' | '<' | '>'), slack_put)
}

/// [`slack`]-escaped text of at most `max` characters counted *after* escaping (Slack's block
/// limits apply to the text as sent), ending with `…` when something was cut. An entity such
/// as `&amp;` or a `[U+XXXX]` marker is never split.
pub fn slack_ellipsized(s: &str, max: usize) -> Cow<'_, str> {
    slack_ellipsized_lines(s, max, Lines::Keep)
}

/// [`slack_ellipsized`] for a single-line value (a fact): line breaks become a space.
pub fn slack_line_ellipsized(s: &str, max: usize) -> Cow<'_, str> {
    slack_ellipsized_lines(s, max, Lines::Space)
}

fn slack_ellipsized_lines(s: &str, max: usize, lines: Lines) -> Cow<'_, str> {
    let escaped = replace_with(s, lines, |c| matches!(c, '&' | '<' | '>'), slack_put);
    if escaped.chars().count() <= max {
        return escaped;
    }
    let mut out = String::with_capacity(max + 3);
    let mut used = 0;
    let mut piece = String::with_capacity(16);
    let mut previous = None;
    for c in s.chars() {
        // CRLF is one line break, as in the unshortened text.
        let crlf = lines == Lines::Space && previous == Some('\r') && c == '\n';
        previous = Some(c);
        if crlf {
            continue;
        }
        piece.clear();
        neutralize_into(c.encode_utf8(&mut [0u8; 4]), lines, &mut piece, slack_put);
        let width = piece.chars().count();
        // Keep one character for the ellipsis.
        if used + width + 1 > max {
            break;
        }
        out.push_str(&piece);
        used += width;
    }
    if max > 0 {
        out.push('…');
    }
    Cow::Owned(out)
}

/// One CSV field (RFC 4180) after the shared policy: quoted when it holds `,`, `"`, a line
/// break or edge spaces (inner `"` doubled), and prefixed with `'` when it starts like a
/// spreadsheet formula (`=`, `+`, `-`, `@`, CR; a TAB is already `[U+0009]`), so opening the
/// file never runs anything.
pub fn csv_field(s: &str) -> String {
    let clean = neutralize(s, Lines::Keep);
    let neutral: Cow<'_, str> = if clean.starts_with(['=', '+', '-', '@', '\r']) {
        Cow::Owned(format!("'{clean}"))
    } else {
        clean
    };
    let needs_quotes = neutral.contains([',', '"', '\r', '\n'])
        || neutral.starts_with(' ')
        || neutral.ends_with(' ');
    if needs_quotes {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral.into_owned()
    }
}

/// Appends a CEF header field after the shared policy (single-line): `\` → `\\`, `|` → `\|`.
pub fn cef_header_into(s: &str, out: &mut String) {
    neutralize_into(s, Lines::Space, out, |c, out| match c {
        '\\' => out.push_str("\\\\"),
        '|' => out.push_str("\\|"),
        c => out.push(c),
    });
}

/// A CEF header field (see [`cef_header_into`]).
pub fn cef_header(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    cef_header_into(s, &mut out);
    out
}

/// Appends a CEF extension value after the shared policy: `\` → `\\`, `=` → `\=`, LF → `\n`,
/// CR → `\r` (the only escapes CEF defines, and the only ones liblognorm's CEF parser
/// accepts). The pipe is not escaped in extensions.
pub fn cef_extension_into(s: &str, out: &mut String) {
    neutralize_into(s, Lines::Keep, out, |c, out| match c {
        '\\' => out.push_str("\\\\"),
        '=' => out.push_str("\\="),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c => out.push(c),
    });
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

/// Appends an RFC 5424 PARAM-VALUE after the shared policy (single-line, so a newline-framed
/// receiver sees one message): `"`, `\` and `]` are backslash-escaped.
pub fn syslog_sd_param_into(s: &str, out: &mut String) {
    neutralize_into(s, Lines::Space, out, |c, out| {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    });
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
