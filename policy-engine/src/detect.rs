//! Per-row classification: application keys, PowerShell obfuscation markers, LOLBins,
//! user-writable paths and Office/browser parents. Pure and allocation-light: this runs on
//! every row.

use std::borrow::Cow;

use threatlocker_api::{ActionLogRow, ActionOutcome};

use crate::config::{BinaryLists, Compiled};
use crate::text::{contains_ci, lower, with_lower_name};

/// `extra` keys that may carry a command line on some rows or tenants.
pub(crate) const COMMAND_LINE_KEYS: &[&str] = &[
    "commandLine",
    "commandline",
    "processCommandLine",
    "parentCommandLine",
    "cmdLine",
    "arguments",
    "scriptBlockText",
];

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim_ascii).filter(|s| !s.is_empty())
}

/// The design's application key: `sha256Hash`, else `hash`, else the lower-cased `fullPath`.
/// Hashes are lower-cased too (hex in either case is the same file). The flag says whether the
/// key is a hash.
pub(crate) fn application_key(row: &ActionLogRow) -> (Cow<'_, str>, bool) {
    if let Some(h) = non_empty(row.sha256_hash.as_deref()) {
        return (lower(h), true);
    }
    if let Some(h) = non_empty(row.hash.as_deref()) {
        return (lower(h), true);
    }
    match non_empty(row.full_path.as_deref()) {
        Some(p) => (lower(p), false),
        None => (Cow::Borrowed(""), false),
    }
}

/// A display name: `applicationName`, else the file name of `fullPath`, else `processName`.
pub(crate) fn application_name(row: &ActionLogRow) -> Option<&str> {
    non_empty(row.application_name.as_deref())
        .or_else(|| non_empty(row.full_path.as_deref()).map(crate::text::file_name))
        .or_else(|| non_empty(row.process_name.as_deref()))
}

/// How a row ended.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub(crate) enum Outcome {
    Block,
    AuditOnly,
    Permit,
    Ringfenced,
    Other,
}

impl Outcome {
    /// Whether the row ran (permitted, or only audited): rules that escalate when the action
    /// was not stopped raise their risk one level.
    pub(crate) fn not_stopped(self) -> bool {
        matches!(self, Outcome::Permit | Outcome::AuditOnly)
    }

    /// A detection's `action_taken`: the least stopped of its rows' outcomes (permitted, then
    /// audit only, ringfenced, blocked), or "Observed".
    pub(crate) fn least_stopped_label(outcomes: impl Fn(Outcome) -> bool) -> &'static str {
        [
            Outcome::Permit,
            Outcome::AuditOnly,
            Outcome::Ringfenced,
            Outcome::Block,
        ]
        .into_iter()
        .find(|o| outcomes(*o))
        .map_or("Observed", Outcome::label)
    }

    /// How reports and tickets name the outcome.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Block => "Blocked",
            Outcome::AuditOnly => "Audit only",
            Outcome::Permit => "Permitted",
            Outcome::Ringfenced => "Ringfenced",
            Outcome::Other => "Other",
        }
    }
}

pub(crate) fn outcome(row: &ActionLogRow) -> Outcome {
    if row.is_audit_only() {
        Outcome::AuditOnly
    } else if row.is_block() {
        Outcome::Block
    } else {
        match row.action_id {
            Some(ActionOutcome::Permit | ActionOutcome::InstallMode) => Outcome::Permit,
            Some(ActionOutcome::Ringfenced) => Outcome::Ringfenced,
            _ => Outcome::Other,
        }
    }
}

/// Command-line texts proper: `data` and the command-line `extra` fields.
fn command_lines(row: &ActionLogRow) -> impl Iterator<Item = &str> {
    row.data
        .as_deref()
        .into_iter()
        .chain(extra_command_lines(row))
}

fn extra_command_lines(row: &ActionLogRow) -> impl Iterator<Item = &str> {
    let extra = (!row.extra.is_empty()).then_some(&row.extra);
    extra.into_iter().flat_map(|e| {
        COMMAND_LINE_KEYS
            .iter()
            .filter_map(|k| e.get(*k).and_then(|v| v.as_str()))
    })
}

/// Texts that may hold a command line: the command lines plus the paths.
fn command_texts(row: &ActionLogRow) -> impl Iterator<Item = &str> {
    [row.full_path.as_deref(), row.process_path.as_deref()]
        .into_iter()
        .flatten()
        .chain(command_lines(row))
}

const POWERSHELL_NAMES: &[&str] = &["powershell.exe", "pwsh.exe", "powershell_ise.exe", "pwsh"];

fn is_powershell_context(row: &ActionLogRow) -> bool {
    // No copy: compare the file name in place (this runs on every row).
    let named = |p: Option<&str>| {
        p.is_some_and(|p| {
            let name = crate::text::file_name(p.trim_ascii());
            POWERSHELL_NAMES
                .iter()
                .any(|ps| ps.len() == name.len() && ps.eq_ignore_ascii_case(name))
        })
    };
    named(row.full_path.as_deref())
        || named(row.process_path.as_deref())
        || named(row.process_name.as_deref())
        || named(row.parent_process_name.as_deref())
        || row
            .action_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("powershell"))
        || command_lines(row).any(|t| contains_ci(t, "powershell") || contains_ci(t, "pwsh"))
}

fn is_base64_token(t: &str) -> bool {
    let t = t.trim_matches(|c| c == '"' || c == '\'');
    t.len() >= 16
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

/// Whether `t` (case-insensitive, after a `-` or `/`) is a non-empty prefix of `word` that
/// starts with `first`.
fn is_switch(t: &str, word: &str, min_len: usize) -> bool {
    let Some(body) = t.strip_prefix('-').or_else(|| t.strip_prefix('/')) else {
        return false;
    };
    body.len() >= min_len
        && body.len() <= word.len()
        && word.as_bytes()[..body.len()].eq_ignore_ascii_case(body.as_bytes())
}

/// `-e`, `-en`, `-enc`, ... `-encodedcommand` (also with `/`).
fn is_encoded_switch(t: &str) -> bool {
    is_switch(t, "encodedcommand", 1)
}

/// `-w`, `-win`, ... `-windowstyle`.
fn is_window_switch(t: &str) -> bool {
    is_switch(t, "windowstyle", 1)
}

fn is_iex(t: &str) -> bool {
    let t = t.trim_start_matches(['|', ';', '&', '(']);
    let b = t.as_bytes();
    b.len() >= 3
        && b[..3].eq_ignore_ascii_case(b"iex")
        && (b.len() == 3 || matches!(b[3], b'(' | b'$' | b'\'' | b'"'))
}

/// The obfuscation markers found on a PowerShell row (empty when none, or not PowerShell).
/// A hidden window alone is not enough: it is common in legitimate scheduled scripts.
pub(crate) fn powershell_markers(row: &ActionLogRow) -> Vec<&'static str> {
    if !is_powershell_context(row) {
        return Vec::new();
    }
    let mut found: Vec<&'static str> = Vec::new();
    let push = |m: &'static str, found: &mut Vec<&'static str>| {
        if !found.contains(&m) {
            found.push(m);
        }
    };
    for text in command_texts(row) {
        if contains_ci(text, "-encodedcommand") {
            push("-EncodedCommand", &mut found);
        }
        if contains_ci(text, "frombase64string") {
            push("FromBase64String", &mut found);
        }
        if contains_ci(text, "invoke-expression") {
            push("Invoke-Expression (IEX)", &mut found);
        }
        if contains_ci(text, "[char]") && (contains_ci(text, "-join") || contains_ci(text, "join("))
        {
            push("[char] join obfuscation", &mut found);
        }
        if contains_ci(text, "downloadstring") || contains_ci(text, "net.webclient") {
            push("download cradle", &mut found);
        }
        let mut tokens = text.split_whitespace().peekable();
        while let Some(tok) = tokens.next() {
            let next = tokens.peek().copied().unwrap_or("");
            if is_encoded_switch(tok) && is_base64_token(next) {
                push("-enc with base64 payload", &mut found);
            }
            if is_window_switch(tok) && next.eq_ignore_ascii_case("hidden") {
                push("hidden window", &mut found);
            }
            if is_iex(tok) {
                push("Invoke-Expression (IEX)", &mut found);
            }
        }
    }
    if found.iter().all(|m| *m == "hidden window") {
        return Vec::new();
    }
    found.sort_unstable();
    found
}

/// Whether the row's file is a configured LOLBin.
pub(crate) fn is_lolbin(b: &BinaryLists, path: Option<&str>) -> bool {
    path.is_some_and(|p| {
        !p.trim_ascii().is_empty() && with_lower_name(p, |n| b.lolbins.contains(n))
    })
}

/// The user-writable marker a path contains, if any.
pub(crate) fn user_writable<'c>(b: &'c BinaryLists, path: &str) -> Option<&'c str> {
    b.user_writable
        .iter()
        .map(String::as_str)
        .find(|m| contains_ci(path, m))
}

/// The Office or browser parent of a row, if any (processPath, parentProcessName,
/// createdByProcess).
pub(crate) fn office_or_browser_parent<'r>(c: &Compiled, row: &'r ActionLogRow) -> Option<&'r str> {
    [
        row.process_path.as_deref(),
        row.parent_process_name.as_deref(),
        row.created_by_process.as_deref(),
    ]
    .into_iter()
    .flatten()
    .find(|p| !p.trim_ascii().is_empty() && with_lower_name(p, |n| c.office_browsers.contains(n)))
}
