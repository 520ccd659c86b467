//! A report whose data is full of hostile strings: nothing is interpreted, in any format.

use examples::monitor::report::{compute, render, Activity, ComputeOptions, Format};
use examples::state::StateStore;
use policy_engine::Input;
use scraper::{Html, Selector};

use crate::support::{computer, engine, organization, pending, request, t, ORG, R};

const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = "\"><img src=x onerror=alert(2)>";
const TEMPLATE: &str = "{{ 7*7 }}{% if true %}yes{% endif %}";
const MD_LINK: &str = "[x](javascript:alert(3)) | cell | ![i](http://evil.example/p.png)";
const NEWLINE: &str = "line1\n## forged heading\r\n| forged | row |";
const RTL: &str = "invoice\u{202E}gpj.exe";

fn hostile_report() -> examples::monitor::report::DailyReport {
    let rows: Vec<_> = (1..=4)
        .map(|i| {
            R::new(i, 10 * i)
                .sha("h1")
                .path(&format!("c:\\users\\{SCRIPT}\\{RTL}"))
                .app_name(MD_LINK)
                .user(IMG)
                .host("comp-x", TEMPLATE)
                .block()
                .build()
        })
        .chain(std::iter::once(
            R::new(9, 50)
                .host("comp-y", NEWLINE)
                .user(NEWLINE)
                .path(&format!("c:\\{TEMPLATE}\\x.exe"))
                .block()
                .build(),
        ))
        .collect();
    let mut org = organization(ORG, &format!("{SCRIPT} {MD_LINK}"));
    org.display_name = None;
    let mut comp = computer("comp-x", TEMPLATE, ORG, None);
    comp.computer_name = Some(format!("{IMG}{RTL}"));
    let approvals = vec![pending(
        request(
            "r-<b>1</b>",
            ORG,
            &format!("c:\\{SCRIPT}.exe"),
            "q1",
            NEWLINE,
        ),
        IMG,
        &[MD_LINK],
    )];
    let input = Input::new(t(600), t(0), t(600))
        .with_events(rows)
        .with_approvals(approvals)
        .with_computers(vec![comp])
        .with_organizations(vec![org]);
    let decisions = engine().evaluate(&input);
    assert!(
        !decisions.detections.is_empty(),
        "the hostile data raises detections"
    );
    let store = StateStore::open_in_memory().unwrap();
    crate::support::record_activity(&store, &decisions);
    let activity = Activity::from_intents(
        &store.intents(None, None).unwrap(),
        input.window_start,
        input.window_end,
    );
    compute(
        &input,
        &decisions,
        &activity,
        &ComputeOptions::default(),
        vec![SCRIPT.to_owned()],
    )
}

#[test]
fn html_interprets_nothing_from_the_data() {
    let report = hostile_report();
    let html = render(&report, Format::Html).unwrap();
    let doc = Html::parse_document(&html);
    let sel = |css: &str| Selector::parse(css).unwrap();

    // Structure is intact.
    assert_eq!(doc.select(&sel("h1")).count(), 1);
    assert_eq!(
        doc.select(&sel("section#top-applications table tbody tr"))
            .count(),
        1 + 1
    );
    assert!(doc.select(&sel("section#organizations tbody tr")).count() >= 1);

    // No element or attribute came from the data.
    assert_eq!(doc.select(&sel("script")).count(), 0, "no <script> element");
    assert_eq!(doc.select(&sel("img")).count(), 0, "no <img> element");
    assert_eq!(doc.select(&sel("b")).count(), 0, "no <b> element");
    for el in doc.select(&sel("*")) {
        for (name, _) in el.value().attrs() {
            assert!(
                !name.to_ascii_lowercase().starts_with("on"),
                "event handler {name} on <{}>",
                el.value().name()
            );
        }
    }
    // The hostile strings are there, as text.
    let text: String = doc.root_element().text().collect();
    // `TEMPLATE` shown verbatim proves `{{ 7*7 }}` and `{% if %}` in data were not evaluated.
    for s in [
        SCRIPT,
        IMG,
        TEMPLATE,
        "[x](javascript:alert(3))",
        "r-<b>1</b>",
    ] {
        assert!(text.contains(s), "{s:?} shown as text");
    }
    // Control and bidi characters are made visible, never emitted.
    assert!(!html.contains('\u{202E}'), "no RTL override in the output");
    assert!(text.contains("invoice[U+202E]gpj.exe"));
    assert!(text.contains("line1\\n## forged heading\\r\\n| forged | row |"));
    // Raw markup never appears unescaped.
    assert!(!html.to_ascii_lowercase().contains("<script"));
    assert!(!html.contains("<img"));
}

#[test]
fn markdown_interprets_nothing_from_the_data() {
    let report = hostile_report();
    let md = render(&report, Format::Markdown).unwrap();
    assert!(
        !md.contains("](javascript:"),
        "no link syntax survives:\n{md}"
    );
    assert!(!md.contains("!["), "no image syntax survives");
    assert!(
        !md.contains("<script") && !md.contains("<img"),
        "no raw HTML"
    );
    assert!(!md.contains('\u{202E}'));
    assert!(
        !md.contains("\n## forged"),
        "a newline in the data cannot start a line"
    );
    assert!(md.contains("\\[x\\]\\(javascript:alert\\(3\\)\\)"));
    assert!(
        md.contains("\\{\\{ 7\\*7 \\}\\}"),
        "template syntax escaped, not evaluated"
    );
    // Every table row keeps its column count: data pipes are escaped.
    let mut in_table = None;
    for line in md.lines() {
        if line.starts_with('|') {
            let cells = unescaped_pipes(line);
            match in_table {
                None => in_table = Some(cells),
                Some(n) => assert_eq!(cells, n, "row {line:?}"),
            }
        } else {
            in_table = None;
        }
    }
}

fn unescaped_pipes(line: &str) -> usize {
    let mut n = 0;
    let mut escaped = false;
    for c in line.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            '|' if !escaped => n += 1,
            _ => escaped = false,
        }
    }
    n
}

#[test]
fn json_keeps_the_data_exactly() {
    let report = hostile_report();
    let json = render(&report, Format::Json).unwrap();
    let back: examples::monitor::report::DailyReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    assert!(back.top_users.iter().any(|u| u.user == IMG));
}

#[test]
fn escaping_helpers_cover_markdown_and_controls() {
    use examples::monitor::report::render::{escape_markdown, neutralize};
    let cases = [
        ("plain text.exe", "plain text.exe"),
        ("a|b", "a\\|b"),
        ("*x* _y_ `z`", "\\*x\\* \\_y\\_ \\`z\\`"),
        ("<b>&", "&lt;b&gt;&amp;"),
        ("[l](u)", "\\[l\\]\\(u\\)"),
        ("a\nb", "a\\\\nb"),
        ("C:\\x", "C:\\\\x"),
    ];
    for (input, want) in cases {
        assert_eq!(escape_markdown(input), want, "{input:?}");
    }
    assert_eq!(
        neutralize("a\u{202E}b\u{2066}c\u{0007}"),
        "a[U+202E]b[U+2066]c[U+0007]"
    );
    assert_eq!(neutralize("tab\there"), "tab\\there");
}
