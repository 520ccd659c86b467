//! The three renderings of a [`DailyReport`]: one self-contained HTML file, Markdown for a PSA
//! or a chat, and JSON.
//!
//! HTML and Markdown come from `minijinja` templates (`examples/templates/`, compiled in) with
//! escaping on by default for *every* value printed: HTML-escaping for `report.html`, Markdown
//! escaping for `report.md`. Before either, control characters (newlines included) and Unicode
//! bidirectional overrides in the data are made visible (`\n`, `[U+202E]`), so a file name can
//! neither forge a line nor display reversed. Values are data, never template source: a `{{` in
//! a file name prints as `{{`.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, Value};

use super::chart;
use super::model::DailyReport;

const HTML_TEMPLATE: &str = include_str!("../../../templates/report.html");
const MARKDOWN_TEMPLATE: &str = include_str!("../../../templates/report.md");
const MARKDOWN_ESCAPE: &str = "markdown";

/// An output format of the daily report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// One self-contained HTML file (inline CSS and SVG, no script, no external assets).
    #[default]
    Html,
    /// Markdown, for pasting into a PSA ticket or a chat.
    Markdown,
    /// JSON with the same numbers.
    Json,
}

impl Format {
    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Markdown => "md",
            Format::Json => "json",
        }
    }
}

/// A rendering failure (a template bug; never caused by the data).
#[derive(Debug, thiserror::Error)]
#[error("rendering the report: {0}")]
pub struct RenderError(String);

/// Makes control characters and bidirectional-text controls visible: `\n`, `\r`, `\t`, and
/// `[U+XXXX]` for the others. Everything else is kept.
pub fn neutralize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_bidi_control(c) => {
                let _ = write!(out, "[U+{:04X}]", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Escapes text for Markdown (CommonMark and GitHub tables), for values placed inline (after a
/// list marker or in a table cell, never at the start of a line): every character that can
/// open emphasis, code, a link, an image, a heading or a table cell gets a backslash, `<` and `>` become entities (no raw HTML, no
/// autolinks), and the result is a single line (see [`neutralize`]).
pub fn escape_markdown(s: &str) -> String {
    let s = neutralize(s);
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '{' | '}' | '[' | ']' | '(' | ')' | '#' | '!' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    if value.is_none() || value.is_undefined() {
        return Ok(());
    }
    let io = |_| Error::new(ErrorKind::WriteFailure, "cannot write the output");
    if value.is_safe() {
        return write!(out, "{value}").map_err(io);
    }
    let text = match value.as_str() {
        Some(s) => neutralize(s),
        None => value.to_string(),
    };
    match state.auto_escape() {
        AutoEscape::Custom(MARKDOWN_ESCAPE) => out.write_str(&escape_markdown(&text)).map_err(io),
        _ => minijinja::escape_formatter(out, state, &Value::from(text)),
    }
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn environment(tz: Tz) -> Result<Environment<'static>, RenderError> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".md") {
            AutoEscape::Custom(MARKDOWN_ESCAPE)
        } else {
            minijinja::default_auto_escape_callback(name)
        }
    });
    env.set_formatter(formatter);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // A time in the report's zone: `2026-05-14 07:00 CEST`.
    env.add_filter("local", move |v: Value| -> String {
        parse_time(&v)
            .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string())
            .unwrap_or_default()
    });
    env.add_filter("hm", move |v: Value| -> String {
        parse_time(&v)
            .map(|t| t.with_timezone(&tz).format("%H:%M").to_string())
            .unwrap_or_default()
    });
    env.add_template("report.html", HTML_TEMPLATE)
        .map_err(|e| RenderError(e.to_string()))?;
    env.add_template("report.md", MARKDOWN_TEMPLATE)
        .map_err(|e| RenderError(e.to_string()))?;
    Ok(env)
}

fn zone(report: &DailyReport) -> Tz {
    report.period.timezone.parse().unwrap_or(Tz::UTC)
}

fn render_template(report: &DailyReport, name: &str, charts: bool) -> Result<String, RenderError> {
    let tz = zone(report);
    let env = environment(tz)?;
    let template = env
        .get_template(name)
        .map_err(|e| RenderError(e.to_string()))?;
    let (hourly, risk) = if charts {
        (
            chart::blocks_per_hour_svg(&report.blocks_per_hour, tz),
            chart::detections_by_risk_svg(&report.detections_by_risk),
        )
    } else {
        (None, None)
    };
    let ctx = minijinja::context! {
        r => Value::from_serialize(report),
        // Charts are drawn by plotters from times and counts only (no tenant text).
        hourly_chart => hourly.map(Value::from_safe_string),
        risk_chart => risk.map(Value::from_safe_string),
        version => env!("CARGO_PKG_VERSION"),
    };
    template
        .render(ctx)
        .map_err(|e| RenderError(format!("{e:#}")))
}

/// The report as one self-contained HTML document.
pub fn to_html(report: &DailyReport) -> Result<String, RenderError> {
    render_template(report, "report.html", true)
}

/// The report as Markdown.
pub fn to_markdown(report: &DailyReport) -> Result<String, RenderError> {
    render_template(report, "report.md", false)
}

/// The report as pretty-printed JSON.
pub fn to_json(report: &DailyReport) -> Result<String, RenderError> {
    serde_json::to_string_pretty(report).map_err(|e| RenderError(e.to_string()))
}

/// The report in `format`.
pub fn render(report: &DailyReport, format: Format) -> Result<String, RenderError> {
    match format {
        Format::Html => to_html(report),
        Format::Markdown => to_markdown(report),
        Format::Json => to_json(report),
    }
}
