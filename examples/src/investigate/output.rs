//! Rendering: a readable table for a terminal, JSON for machines, CSV for spreadsheets.
//!
//! Every text value here is untrusted (file names, user names, paths and command lines come
//! from endpoints). The terminal table replaces control characters (so an escape sequence in a
//! file name cannot repaint the screen) and shortens long cells; CSV quotes per RFC 4180 and
//! neutralises spreadsheet formulas (a text cell starting with `=`, `+`, `-`, `@`, tab or CR gets
//! a leading `'`, the OWASP advice), so opening the file never runs anything.

use std::fmt::Write as _;

use serde::Serialize;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned columns with a summary, for people.
    #[default]
    Table,
    /// One pretty-printed JSON document.
    Json,
    /// RFC 4180 CSV with a header row.
    Csv,
}

/// One cell of a tabular rendering.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Untrusted text.
    Text(String),
    /// A number (never formula-escaped).
    Num(i64),
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_owned())
    }
}
impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}
impl From<Option<&str>> for Cell {
    fn from(s: Option<&str>) -> Self {
        Cell::Text(s.unwrap_or_default().to_owned())
    }
}
impl From<&Option<String>> for Cell {
    fn from(s: &Option<String>) -> Self {
        Cell::Text(s.clone().unwrap_or_default())
    }
}
impl From<u64> for Cell {
    fn from(n: u64) -> Self {
        Cell::Num(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
impl From<bool> for Cell {
    fn from(b: bool) -> Self {
        Cell::Text(if b { "yes" } else { "no" }.to_owned())
    }
}

/// Rows with a header: the CSV body and the terminal table of a report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// Column names (snake_case, stable: scripts key on them).
    pub header: Vec<&'static str>,
    /// The rows, each as long as the header.
    pub rows: Vec<Vec<Cell>>,
}

/// A report that renders in the three formats.
pub trait Render: Serialize {
    /// Summary lines printed above the terminal table (plain text, untrusted parts cleaned).
    fn summary(&self) -> Vec<String>;
    /// The report as rows (CSV, and the terminal table).
    fn rows(&self) -> Rows;
    /// Longest cell shown in the terminal table, in characters (longer ones end in `…`).
    fn max_cell_width(&self) -> usize {
        60
    }
}

/// Renders `report` in `format`, ending with a newline.
pub fn render<R: Render>(report: &R, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report)
                .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize: {e}\"}}"));
            s.push('\n');
            s
        }
        Format::Csv => to_csv(&report.rows()),
        Format::Table => {
            let mut out = String::new();
            for line in report.summary() {
                out.push_str(&clean(&line, usize::MAX));
                out.push('\n');
            }
            let rows = report.rows();
            if rows.rows.is_empty() {
                out.push_str("(no rows)\n");
            } else {
                out.push('\n');
                out.push_str(&to_table(&rows, report.max_cell_width()));
            }
            out
        }
    }
}

/// CSV per RFC 4180 (CRLF line ends, fields quoted when they hold `,` `"` CR LF or edge
/// spaces, quotes doubled) with formula neutralisation of text cells.
pub fn to_csv(rows: &Rows) -> String {
    let mut out = String::new();
    let header: Vec<Cell> = rows.header.iter().map(|h| Cell::from(*h)).collect();
    for row in std::iter::once(&header).chain(rows.rows.iter()) {
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&csv_field(cell));
        }
        out.push_str("\r\n");
    }
    out
}

/// One CSV field: numbers as they are, text by the shared policy of
/// [`psa_connectors::escape::csv_field`] (RFC 4180 quoting, formula prefixes neutralised,
/// control and bidirectional characters made visible as `[U+XXXX]`).
pub fn csv_field(cell: &Cell) -> String {
    match cell {
        Cell::Num(n) => n.to_string(),
        Cell::Text(t) => psa_connectors::escape::csv_field(t),
    }
}

/// Makes untrusted text safe for a terminal: control characters (including ESC, so no ANSI
/// sequence survives) become `\u{..}`-style escapes, newlines `⏎`, and text longer than `max`
/// characters is cut with `…`.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max.saturating_add(8)));
    for (n, c) in s.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        match c {
            '\n' | '\r' => out.push('⏎'),
            '\t' => out.push(' '),
            c if c.is_control()
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c) =>
            {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn cell_text(c: &Cell, max: usize) -> String {
    match c {
        Cell::Num(n) => n.to_string(),
        Cell::Text(t) => clean(t, max),
    }
}

/// An aligned text table; cells longer than `max_width` characters are shortened.
pub fn to_table(rows: &Rows, max_width: usize) -> String {
    let texts: Vec<Vec<String>> = rows
        .rows
        .iter()
        .map(|r| r.iter().map(|c| cell_text(c, max_width)).collect())
        .collect();
    let mut widths: Vec<usize> = rows.header.iter().map(|h| h.chars().count()).collect();
    for r in &texts {
        for (i, t) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(t.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut first = true;
        let mut buf = String::new();
        for (i, c) in cells.enumerate() {
            if !first {
                buf.push_str("  ");
            }
            first = false;
            buf.push_str(c);
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(c.chars().count());
            buf.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(buf.trim_end());
        out.push('\n');
    };
    let upper: Vec<String> = rows.header.iter().map(|h| h.to_uppercase()).collect();
    line(&mut out, &mut upper.iter().map(String::as_str));
    for r in &texts {
        line(&mut out, &mut r.iter().map(String::as_str));
    }
    out
}

/// Joins ids for one cell (space-separated: no CSV quoting needed, easy to split).
pub fn join_ids<S: AsRef<str>>(ids: &[S]) -> String {
    ids.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        let cases: &[(Cell, &str)] = &[
            (Cell::from("plain"), "plain"),
            (Cell::from("a,b"), "\"a,b\""),
            (Cell::from("say \"hi\""), "\"say \"\"hi\"\"\""),
            (Cell::from("line1\nline2"), "\"line1\nline2\""),
            (Cell::from(" padded"), "\" padded\""),
            (
                Cell::from("=HYPERLINK(\"x\")"),
                "\"'=HYPERLINK(\"\"x\"\")\"",
            ),
            (Cell::from("+1"), "'+1"),
            (Cell::from("@SUM(A1)"), "'@SUM(A1)"),
            (Cell::from("-cmd"), "'-cmd"),
            (Cell::Num(-3), "-3"),
            (Cell::from(r"C:\Users\a b\x.exe"), r"C:\Users\a b\x.exe"),
            (
                Cell::from("a\0b\x1b\tc\u{202E}"),
                "a[U+0000]b[U+001B][U+0009]c[U+202E]",
            ),
            (Cell::from("\tcmd"), "[U+0009]cmd"),
        ];
        for (cell, want) in cases {
            assert_eq!(csv_field(cell), *want, "{cell:?}");
        }
        let rows = Rows {
            header: vec!["a", "b"],
            rows: vec![vec![Cell::from("x,y"), Cell::Num(2)]],
        };
        assert_eq!(to_csv(&rows), "a,b\r\n\"x,y\",2\r\n");
    }

    #[test]
    fn terminal_text_loses_control_characters() {
        assert_eq!(clean("evil\u{1b}[2Jname", 100), "evil\\u{1b}[2Jname");
        assert_eq!(clean("a\nb", 100), "a⏎b");
        assert_eq!(clean("abcdef", 3), "abc…");
        assert_eq!(clean("x\u{202e}y", 10), "x\\u{202e}y");
    }

    #[test]
    fn tables_align_columns() {
        let rows = Rows {
            header: vec!["id", "name"],
            rows: vec![
                vec![Cell::Num(1), Cell::from("short")],
                vec![Cell::Num(22), Cell::from("longer name")],
            ],
        };
        assert_eq!(
            to_table(&rows, 60),
            "ID  NAME\n1   short\n22  longer name\n"
        );
    }
}
