//! Report numbers for the known data set, in JSON, Markdown and HTML, and equal to
//! `build_report`'s for the same decisions and outcomes.

use examples::monitor::report::{render, Activity, Format};
use policy_engine::build_report;
use psa_connectors::recording::RecordingNotifier;
use scraper::{Html, Selector};
use serde_json::Value;

use crate::support::{known, ORG, ORG2};

#[test]
fn the_known_data_set_gives_the_known_numbers() {
    let k = known();
    let r = &k.report;
    let t = &r.totals;
    // 4 evil.exe blocks + 1 tool.exe block + 1 audit-only + 2 permits; the re-sent row and the
    // row before the period do not count.
    assert_eq!(t.events, 8);
    assert_eq!(t.blocks, 5);
    assert_eq!(t.audit_only, 1);
    assert_eq!(t.permits, 2);
    assert_eq!(t.unique_applications_blocked, 2);
    assert_eq!(t.repeat_blocks, 1);
    assert_eq!(t.auto_approved, 1);
    assert_eq!(t.sent_to_review, 1);
    assert_eq!(t.policy_changes_applied, 1);
    assert_eq!(
        t.computers_not_secure, 2,
        "WS-1 Learning and WS-2 with no mode"
    );
    assert_eq!(t.organizations, 2);
    assert_eq!(t.tickets_opened, k.decisions.tickets.len() as u64);
    assert_eq!(t.tickets_updated, 1);
    assert!(r.errors.is_empty(), "{:?}", r.errors);

    // Blocks per hour: every hour of the period, summing to the blocks.
    assert_eq!(r.blocks_per_hour.len(), 10);
    let per_hour: Vec<u64> = r.blocks_per_hour.iter().map(|b| b.blocks).collect();
    assert_eq!(per_hour, vec![2, 2, 1, 0, 0, 0, 0, 0, 0, 0]);

    // Top applications and users.
    assert_eq!(r.top_applications[0].application, "evil.exe");
    assert_eq!(r.top_applications[0].blocks, 4);
    assert_eq!(r.top_applications[1].application, "tool.exe");
    assert_eq!(r.top_users[0].user, "CONTOSO\\jsmith");
    assert_eq!(r.top_users[0].blocks, 4);
    assert_eq!(r.top_users[1].blocks, 1);

    // Repeat block, detections by risk with the engine's evidence, tickets from the store.
    assert_eq!(r.repeat_blocks[0].count, 4);
    assert_eq!(
        r.repeat_blocks[0].organization.as_deref(),
        Some("Contoso Dental")
    );
    assert_eq!(r.detections.len(), k.decisions.detections.len());
    assert!(
        r.detections_by_risk.high >= 1,
        "the audit-only deny on a Secure computer"
    );
    assert!(r.detections_by_risk.low >= 1, "the repeat block");
    assert_eq!(r.detections_by_risk.total(), r.detections.len() as u64);
    let repeat = r
        .detections
        .iter()
        .find(|d| d.rule == "detect.repeat_block")
        .unwrap();
    assert_eq!(repeat.action_log_ids, vec!["1", "2", "3", "4"]);
    assert!(r.detections.iter().all(|d| d.ticket_id.is_some()));

    // Approvals with their reasons.
    assert_eq!(r.auto_approved[0].request_id.as_deref(), Some("r-1"));
    assert_eq!(r.auto_approved[0].rule, "auto_approve.category");
    assert_eq!(r.sent_to_review[0].request_id.as_deref(), Some("r-2"));
    assert_eq!(r.sent_to_review[0].rule, "manual.category_not_allowed");
    assert!(!r.sent_to_review[0].reason.is_empty());

    // Per organization.
    let contoso = r
        .organizations
        .iter()
        .find(|o| o.organization_id.as_deref() == Some(ORG))
        .unwrap();
    assert_eq!(
        (contoso.events, contoso.blocks, contoso.audit_only),
        (7, 4, 1)
    );
    assert_eq!((contoso.computers, contoso.not_secure), (2, 1));
    let widget = r
        .organizations
        .iter()
        .find(|o| o.organization_id.as_deref() == Some(ORG2))
        .unwrap();
    assert_eq!(
        (widget.events, widget.blocks, widget.pending_review),
        (1, 1, 1)
    );
}

#[test]
fn the_json_numbers_equal_the_monitoring_reports() {
    let k = known();
    let monitoring = build_report(&k.decisions, &k.activity.outcomes());
    let json: Value = serde_json::from_str(&render(&k.report, Format::Json).unwrap()).unwrap();
    let expected = serde_json::to_value(&monitoring).unwrap();
    for field in [
        "monitoring_summary",
        "blocked_summary",
        "auto_approvals_processed",
        "manual_review_required",
    ] {
        assert_eq!(json[field], expected[field], "{field}");
    }
    // And the values themselves, so a shared mistake cannot hide.
    assert_eq!(json["monitoring_summary"]["total_events"], 8);
    assert_eq!(json["monitoring_summary"]["blocked_applications"], 5);
    assert_eq!(json["monitoring_summary"]["approval_requests"], 2);
    assert_eq!(json["blocked_summary"]["unique_applications_blocked"], 2);
    assert_eq!(json["blocked_summary"]["repeat_blocks"], 1);
    assert_eq!(json["auto_approvals_processed"], 1);
    assert_eq!(json["manual_review_required"], 1);
    assert_eq!(
        json["monitoring_summary"]["security_alerts"],
        json["detections"].as_array().unwrap().len()
    );
    // The JSON reads back into the same report.
    let back: examples::monitor::report::DailyReport =
        serde_json::from_value(json).expect("the JSON is the report");
    assert_eq!(back, k.report);
}

#[test]
fn the_activity_comes_from_the_state_stores_done_intents_in_the_period() {
    let k = known();
    let a = &k.activity;
    assert_eq!(a.permits.len(), 1);
    assert_eq!(a.permits[0].request_id, "r-1");
    assert_eq!(a.deploys[0].requests, vec!["r-1"]);
    let opened = a.tickets.iter().filter(|t| t.action == "opened").count();
    assert_eq!(opened, k.decisions.tickets.len());
    let updated: Vec<_> = a.tickets.iter().filter(|t| t.action == "updated").collect();
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].ticket_id, "T-100");
    assert_eq!(
        updated[0].dedupe_key.as_deref(),
        Some(k.decisions.tickets[0].dedupe_key.as_str()),
        "the note's key names its ticket even though both parts contain ':'"
    );
    assert_eq!(
        updated[0].summary.as_deref(),
        Some(k.decisions.tickets[0].summary.as_str())
    );

    // Outside the period nothing counts, and unfinished intents never do.
    let store = examples::state::StateStore::open_in_memory().unwrap();
    crate::support::record_activity(&store, &k.decisions);
    store
        .begin_intent(
            examples::state::IntentKind::Permit,
            "permit:r-9",
            &serde_json::json!({"request_id": "r-9"}),
            None,
        )
        .unwrap();
    let intents = store.intents(None, None).unwrap();
    let later = k.input.window_end + chrono::Duration::hours(1);
    let none = Activity::from_intents(&intents, k.input.window_end, later);
    assert!(none.permits.is_empty() && none.tickets.is_empty() && none.deploys.is_empty());
    let all = Activity::from_intents(&intents, k.input.window_start, k.input.window_end);
    assert!(all.permits.iter().all(|p| p.request_id != "r-9"));
}

#[test]
fn markdown_shows_the_same_numbers() {
    let k = known();
    let md = render(&k.report, Format::Markdown).unwrap();
    for line in [
        "| Events | 8 |",
        "| Blocks | 5 |",
        "| Applications blocked | 2 |",
        "| Repeat blocks | 1 |",
        "| Pending requests | 2 |",
        "| Auto\\-approved in the period | 1 |",
        "| Sent to review | 1 |",
        "| Computers not in Secure mode | 2 |",
    ] {
        // Labels are template text (not escaped); fix the one with a hyphen.
        let line = line.replace("\\-", "-");
        assert!(md.contains(&line), "missing {line:?} in\n{md}");
    }
    assert!(md.contains("| evil.exe | 4 | 1 |"), "{md}");
    assert!(
        md.contains("| CONTOSO\\\\jsmith | 4 | 1 |"),
        "backslash escaped: {md}"
    );
    assert!(md.contains("| Contoso Dental | 7 | 4 |"), "{md}");
    assert!(
        md.contains("(rule manual.category\\_not\\_allowed)"),
        "{md}"
    );
}

fn select<'a>(doc: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

fn field(doc: &Html, name: &str) -> String {
    let found = select(doc, &format!("[data-field={name}]"));
    assert_eq!(found.len(), 1, "one {name}");
    found[0].text().collect::<String>()
}

#[test]
fn html_is_one_self_contained_document_with_the_same_numbers() {
    let k = known();
    let html = render(&k.report, Format::Html).unwrap();
    let doc = Html::parse_document(&html);
    assert_eq!(field(&doc, "total_events"), "8");
    assert_eq!(field(&doc, "blocked_applications"), "5");
    assert_eq!(field(&doc, "unique_applications_blocked"), "2");
    assert_eq!(field(&doc, "repeat_blocks"), "1");
    assert_eq!(field(&doc, "approval_requests"), "2");
    assert_eq!(field(&doc, "auto_approved"), "1");
    assert_eq!(field(&doc, "computers_not_secure"), "2");
    for id in [
        "summary",
        "trend",
        "top-applications",
        "top-users",
        "repeat-blocks",
        "detections",
        "approvals",
        "tickets",
        "policy-changes",
        "organizations",
        "computers",
    ] {
        assert_eq!(select(&doc, &format!("#{id}")).len(), 1, "section {id}");
    }
    // Charts are inline SVG; styles inline; nothing loaded from elsewhere, no script.
    assert_eq!(select(&doc, "figure.chart svg").len(), 2);
    assert!(
        select(&doc, "svg rect").len() >= 10,
        "one bar per hour at least"
    );
    let labels: Vec<String> = select(&doc, "figure.chart svg text")
        .iter()
        .map(|t| t.text().collect::<String>().trim().to_owned())
        .collect();
    let first_hour = k.report.blocks_per_hour[0]
        .hour
        .with_timezone(&chrono_tz::Europe::Berlin)
        .format("%H:%M")
        .to_string();
    assert!(
        labels.contains(&first_hour),
        "hour axis in local time: {labels:?}"
    );
    assert!(labels.iter().any(|l| l == "Critical") && labels.iter().any(|l| l == "Low"));
    assert_eq!(select(&doc, "style").len(), 1);
    assert!(select(&doc, "script, link, iframe, object, embed, img").is_empty());
    for el in select(&doc, "*") {
        for (name, _) in el.value().attrs() {
            assert!(
                name != "src" && name != "href",
                "external reference {name} on <{}>",
                el.value().name()
            );
        }
    }
    assert!(html.contains("@media print") && html.contains("@media (max-width"));
    assert!(html.contains("name=\"viewport\""));
    // Detections carry their evidence and ticket.
    let cards = select(&doc, "article.detection");
    assert_eq!(cards.len(), k.report.detections.len());
    let text: String = doc.root_element().text().collect();
    assert!(text.contains("1, 2, 3, 4"), "evidence ids");
    assert!(text.contains("T-100"));
    // Times are shown in the configured zone.
    assert!(
        text.contains("CET") || text.contains("CEST"),
        "Europe/Berlin abbreviations"
    );
}

#[tokio::test]
async fn send_mails_the_html_with_a_plain_text_alternative() {
    let k = known();
    let notifier = RecordingNotifier::new();
    examples::monitor::report::send_report(&notifier, &k.report, &["soc@msp.example".to_owned()])
        .await
        .unwrap();
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    let n = &sent[0];
    assert_eq!(n.recipients, vec!["soc@msp.example"]);
    assert!(n.subject.contains("5 blocks"), "{}", n.subject);
    assert!(n.html.as_deref().unwrap().starts_with("<!DOCTYPE html>"));
    assert!(n.text.contains("| Blocks | 5 |"));
    assert_eq!(n.severity, psa_connectors::Severity::High);
}

#[test]
fn markdown_lists_only_the_hours_with_blocks() {
    let k = known();
    let md = render(&k.report, Format::Markdown).unwrap();
    let tz = chrono_tz::Europe::Berlin;
    let row = |i: usize| {
        let b = &k.report.blocks_per_hour[i];
        format!(
            "| {} | {} |",
            b.hour.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
            b.blocks
        )
    };
    for i in 0..3 {
        assert!(md.contains(&row(i)), "missing {:?}:\n{md}", row(i));
    }
    assert!(!md.contains(&row(3)), "an hour without blocks is left out");
}

#[test]
fn a_week_is_drawn_in_at_most_96_bars() {
    let start = crate::support::t(0);
    let hours: Vec<examples::monitor::report::model::HourBucket> = (0..168)
        .map(|h| {
            serde_json::from_value(serde_json::json!({
                "hour": start + chrono::Duration::hours(h),
                "blocks": 1
            }))
            .unwrap()
        })
        .collect();
    let svg =
        examples::monitor::report::chart::blocks_per_hour_svg(&hours, chrono_tz::UTC).unwrap();
    let doc = Html::parse_fragment(&svg);
    let bars = doc
        .select(&Selector::parse("rect[fill='#2B6CB0']").unwrap())
        .count();
    assert_eq!(bars, 84, "two hours per bar");
}
