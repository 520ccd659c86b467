//! Block counts follow the design's definitions exactly.

use policy_engine::Engine;
use threatlocker_api::{ActionOutcome, EActionLogId};

use crate::support::*;

#[test]
fn counts_follow_the_definitions() {
    let rows = vec![
        R::new(1).sha("a").block().build(),
        {
            // actionId 3 (deny with option to request) is a block too.
            let mut r = R::new(2).sha("a").block().build();
            r.action_id = Some(ActionOutcome::DenyWithRequest);
            r
        },
        // isMonitorMode null is "not true": a block.
        {
            let mut r = R::new(3).sha("b").block().build();
            r.is_monitor_mode = None;
            r
        },
        R::new(4).sha("c").audit().build(),
        R::new(5).sha("d").build(),
        R::new(6).sha("e").ringfenced().build(),
    ];
    let d = engine().evaluate(&input(rows));
    let b = &d.blocks;
    assert_eq!(
        (
            b.total_events,
            b.blocks,
            b.audit_only,
            b.permits,
            b.ringfenced
        ),
        (6, 3, 1, 1, 1)
    );
    assert_eq!(b.unique_applications_blocked, 2);
}

#[test]
fn application_key_falls_back_from_sha256_to_hash_to_lowercased_path() {
    let rows = vec![
        R::new(1).path("C:\\X\\Tool.exe").block().build(),
        R::new(2).path("c:\\x\\tool.EXE").block().build(),
        {
            let mut r = R::new(3).path("c:\\y\\other.exe").block().build();
            r.hash = Some("h1".into());
            r
        },
        {
            let mut r = R::new(4).path("c:\\z\\third.exe").block().build();
            r.hash = Some("h1".into());
            r
        },
    ];
    let d = engine().evaluate(&input(rows));
    assert_eq!(d.blocks.unique_applications_blocked, 2);
}

#[test]
fn duplicates_by_action_log_id_or_e_id_count_once() {
    let mut e1 = R::new(0).sha("a").block().build();
    e1.action_log_id = None;
    e1.e_action_log_id = Some(EActionLogId::new("e-1"));
    let rows = vec![
        R::new(1).sha("a").block().build(),
        R::new(1).sha("a").block().build(),
        e1.clone(),
        e1,
    ];
    let d = engine().evaluate(&input(rows));
    assert_eq!(d.blocks.total_events, 2);
    assert_eq!(d.blocks.blocks, 2);
    assert_eq!(d.ignored.duplicate_rows, 2);
}

#[test]
fn window_is_half_open_and_undated_rows_are_ignored() {
    let mut undated = R::new(9).block().build();
    undated.date_time = None;
    let rows = vec![
        R::new(1).block().at(0).build(),   // at window_start: counted
        R::new(2).block().at(600).build(), // at window_end: not counted
        R::new(3).block().at(-1).build(),
        undated,
    ];
    let d = engine().evaluate(&input(rows));
    assert_eq!(d.blocks.total_events, 1);
    assert_eq!(d.ignored.outside_window, 2);
    assert_eq!(d.ignored.undated_rows, 1);
}

#[test]
fn repeat_block_needs_the_threshold_on_one_computer() {
    let rows = vec![
        R::new(1).sha("a").block().build(),
        R::new(2).sha("a").block().build(),
        R::new(3).sha("a").block().host("c2", "WS-2").build(),
    ];
    let d = engine().evaluate(&input(rows.clone()));
    assert!(
        d.blocks.repeat_blocks.is_empty(),
        "2 on WS-1 and 1 on WS-2 is below 3"
    );

    let mut cfg = config();
    cfg.org_variables.threatlocker_block_alert_threshold = 2;
    let d = Engine::new(cfg).unwrap().evaluate(&input(rows));
    assert_eq!(d.blocks.repeat_blocks.len(), 1);
    let rb = &d.blocks.repeat_blocks[0];
    assert_eq!(
        (rb.count, rb.device.as_deref(), rb.application_key.as_str()),
        (2, Some("WS-1"), "a")
    );
    assert_eq!(rb.action_log_ids, vec!["1", "2"]);
}

#[test]
fn per_organization_threshold_override_applies() {
    let mut cfg = config();
    cfg.org_overrides.insert(
        ORG2.into(),
        toml::from_str("threatlocker_block_alert_threshold = 1").unwrap(),
    );
    let rows = vec![
        R::new(1).sha("a").block().build(),
        R::new(2).sha("a").block().org(ORG2).build(),
    ];
    let d = Engine::new(cfg).unwrap().evaluate(&input(rows));
    assert_eq!(d.blocks.repeat_blocks.len(), 1);
    assert_eq!(
        d.blocks.repeat_blocks[0]
            .organization_id
            .as_ref()
            .map(|o| o.as_str()),
        Some(ORG2)
    );
}

#[test]
fn repeated_denials_count_per_user_and_computer_pair_across_applications() {
    let rows = vec![
        R::new(1).sha("a").block().build(),
        R::new(2).sha("b").block().build(),
        R::new(4).sha("d").block().build(),
        // The same user on another computer is another pair (below the threshold).
        R::new(3).sha("c").block().host("c2", "WS-2").build(),
    ];
    let d = engine().evaluate(&input(rows));
    assert_eq!(d.blocks.denials.len(), 1, "{:#?}", d.blocks.denials);
    let p = &d.blocks.denials[0];
    assert_eq!(p.user.as_deref(), Some("CONTOSO\\jsmith"));
    assert_eq!(p.device.as_deref(), Some("WS-1"));
    assert_eq!((p.count, p.applications), (3, 3));
}

#[test]
fn rows_without_a_user_count_under_the_computer_alone() {
    let no_user = |id: i64, sha: &str| {
        let mut r = R::new(id).sha(sha).block().build();
        r.username = None;
        r
    };
    let rows = vec![
        no_user(1, "a"),
        no_user(2, "b"),
        no_user(3, "c"),
        R::new(4).sha("d").block().build(),
    ];
    let d = engine().evaluate(&input(rows));
    assert_eq!(d.blocks.denials.len(), 1);
    assert_eq!(d.blocks.denials[0].user, None);
    assert_eq!(d.blocks.denials[0].count, 3);
}

#[test]
fn user_names_differing_only_in_case_are_one_user() {
    let rows = vec![
        R::new(1).sha("a").user("CONTOSO\\JSmith").block().build(),
        R::new(2).sha("b").user("contoso\\jsmith").block().build(),
        R::new(3).sha("c").block().build(),
    ];
    let d = engine().evaluate(&input(rows));
    assert_eq!(d.blocks.denials.len(), 1);
    assert_eq!(d.blocks.denials[0].count, 3);
}

#[test]
fn repeat_window_requires_the_blocks_close_together() {
    let mut cfg = config();
    cfg.rules.repeat_window_minutes = Some(30);
    let engine = Engine::new(cfg).unwrap();
    let spread = vec![
        R::new(1).sha("a").block().at(0).build(),
        R::new(2).sha("a").block().at(40).build(),
        R::new(3).sha("a").block().at(80).build(),
    ];
    assert!(engine
        .evaluate(&input(spread))
        .blocks
        .repeat_blocks
        .is_empty());
    let burst = vec![
        R::new(1).sha("a").block().at(0).build(),
        R::new(2).sha("a").block().at(10).build(),
        R::new(3).sha("a").block().at(29).build(),
    ];
    assert_eq!(engine.evaluate(&input(burst)).blocks.repeat_blocks.len(), 1);
}
