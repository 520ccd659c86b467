//! The rule table is documented in one place and the README shows it verbatim.

use policy_engine::rules::{rules_markdown, RULES};

#[test]
fn readme_renders_the_rule_table() {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let table = rules_markdown();
    if std::env::var_os("PRINT_RULES").is_some() {
        println!("{table}");
    }
    assert!(
        readme.contains(&table),
        "README rule table is stale; run with PRINT_RULES=1 and paste"
    );
}

#[test]
fn rule_ids_are_unique_and_detections_have_a_type_and_risk() {
    let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n);
    for r in RULES
        .iter()
        .filter(|r| r.kind == policy_engine::rules::RuleKind::Detection)
    {
        assert!(
            !r.event_type.is_empty() && r.default_risk.is_some(),
            "{}",
            r.id
        );
    }
}
