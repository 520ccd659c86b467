//! Investigations: timeline, file spread, repeated denials, audit-only on Secure computers.

use chrono::Duration;
use policy_engine::investigate::{
    audit_only_on_secure, file_spread, repeated_denials, timeline, timeline_with_rules, Anomaly,
    FileQuery, SubjectKind,
};
use policy_engine::Rules;
use threatlocker_api::ComputerMode;

use crate::support::*;

#[test]
fn timeline_is_oldest_first_on_the_host_and_marks_the_first_anomaly() {
    let rows = vec![
        R::new(5)
            .at(50)
            .path("c:\\users\\bob\\appdata\\x.exe")
            .sha("x")
            .build(),
        R::new(1)
            .at(10)
            .path("c:\\windows\\explorer.exe")
            .sha("ex")
            .build(),
        R::new(2)
            .at(20)
            .path("c:\\program files\\app\\app.exe")
            .sha("app")
            .build(),
        R::new(9)
            .at(30)
            .host("c9", "OTHER")
            .path("c:\\users\\x\\evil.exe")
            .build(),
        R::new(3).at(200).path("c:\\users\\bob\\late.exe").build(),
        R::new(2)
            .at(20)
            .path("c:\\program files\\app\\app.exe")
            .sha("app")
            .build(),
    ];
    let tl = timeline(&rows, "ws-1", t(40), Duration::minutes(30));
    let ids: Vec<&str> = tl
        .entries
        .iter()
        .map(|e| e.action_log_id.as_str())
        .collect();
    assert_eq!(
        ids,
        vec!["1", "2", "5"],
        "host filter, window, de-dup, order"
    );
    assert_eq!(tl.first_anomaly, Some(2));
    assert!(
        matches!(&tl.entries[2].anomalies[0], Anomaly::UnusualBinary(s) if s.contains("user-writable"))
    );
}

#[test]
fn timeline_marks_lolbin_children_and_network_activity() {
    let mut net = R::new(3).at(12).sha("n").build();
    net.action_type = Some("network".into());
    net.full_path = None;
    net.process_path = Some("c:\\program files\\app\\app.exe".into());
    net.destination_ip_address = Some("203.0.113.9".into());
    let rows = vec![
        R::new(1)
            .at(10)
            .path("c:\\program files\\app\\app.exe")
            .sha("app")
            .build(),
        R::new(2)
            .at(11)
            .path("c:\\program files\\app\\helper.exe")
            .sha("h")
            .process("c:\\windows\\system32\\cmd.exe")
            .build(),
        net,
    ];
    let tl = timeline(&rows, "WS-1", t(10), Duration::minutes(30));
    assert_eq!(tl.first_anomaly, Some(1));
    assert!(
        matches!(&tl.entries[1].anomalies[0], Anomaly::LolbinChild(s) if s.contains("cmd.exe"))
    );
    assert!(
        matches!(&tl.entries[2].anomalies[0], Anomaly::NetworkActive(s) if s.contains("203.0.113.9"))
    );
}

#[test]
fn file_spread_lists_patient_zero_first_and_splits_permits_from_blocks() {
    let rows = vec![
        R::new(1)
            .at(30)
            .host("c1", "WS-1")
            .sha("IOC")
            .block()
            .build(),
        R::new(2).at(10).host("c2", "WS-2").sha("ioc").build(),
        R::new(3)
            .at(40)
            .host("c2", "WS-2")
            .sha("ioc")
            .block()
            .build(),
        R::new(4).at(5).host("c3", "WS-3").sha("other").build(),
    ];
    let s = file_spread(&rows, FileQuery::Hash("ioc".into()));
    assert_eq!(s.computers_affected, 2);
    let pz = s.patient_zero().unwrap();
    assert_eq!(pz.hostname.as_deref(), Some("WS-2"));
    assert!(pz.possibly_impacted);
    assert_eq!(pz.action_log_ids, vec!["2", "3"]);
    assert!(!s.computers[1].possibly_impacted, "WS-1 only blocked");
    assert_eq!((s.permits, s.blocks), (1, 2));

    let by_path = file_spread(
        &rows,
        FileQuery::Path("C:\\PROGRAM FILES\\*\\app.exe".into()),
    );
    assert_eq!(by_path.computers_affected, 3);
}

#[test]
fn repeated_denials_finds_users_and_computers_and_related_approvals() {
    let rows = vec![
        R::new(1).sha("aa11").block().build(),
        R::new(2).sha("aa11").block().build(),
        R::new(3).sha("b").block().build(),
        R::new(4).sha("b").build(),
    ];
    let mut unrelated = request("r2");
    unrelated.username = Some("someone".into());
    unrelated.hostname = Some("elsewhere".into());
    unrelated.sha256 = Some("zz".into());
    let out = repeated_denials(&rows, 3, &[request("r1"), unrelated]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].kind, SubjectKind::User);
    assert_eq!(out[1].kind, SubjectKind::Computer);
    assert_eq!(out[0].blocks, 3);
    assert_eq!(out[0].top_applications[0].application_key, "aa11");
    assert_eq!(out[0].top_applications[0].count, 2);
    assert_eq!(
        out[0]
            .related_approvals
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        vec!["r1"]
    );
    assert!(repeated_denials(&rows, 4, &[]).is_empty());
}

#[test]
fn audit_only_on_secure_groups_by_policy_and_suggests_a_block() {
    let rows = vec![
        R::new(1)
            .sha("a")
            .audit()
            .policy("p1", "Watch tools")
            .build(),
        R::new(2)
            .sha("b")
            .audit()
            .policy("p1", "Watch tools")
            .build(),
        R::new(3)
            .sha("c")
            .audit()
            .policy("p2", "Other")
            .host("c2", "WS-2")
            .build(),
        R::new(4)
            .sha("d")
            .block()
            .policy("p1", "Watch tools")
            .build(),
    ];
    let computers = vec![
        computer("comp-1", "WS-1", ComputerMode::Secure),
        computer("c2", "WS-2", ComputerMode::Learning),
    ];
    let out = audit_only_on_secure(&rows, &computers);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].policy_name.as_deref(), Some("Watch tools"));
    assert_eq!(out[0].hits, 2);
    assert_eq!(out[0].action_log_ids, vec!["1", "2"]);
    assert!(out[0].suggestion.contains("deny"));
}

#[test]
fn timeline_with_rules_honours_configured_lolbins_and_folders() {
    let rows = vec![
        R::new(1)
            .at(10)
            .path("c:\\program files\\acme\\AcmeTool.exe")
            .sha("acme")
            .build(),
        R::new(2)
            .at(11)
            .path("c:\\program files\\app\\app.exe")
            .process("c:\\program files\\acme\\acmetool.exe")
            .sha("app")
            .build(),
        R::new(3)
            .at(12)
            .path("d:\\shares\\team\\report.exe")
            .sha("rep")
            .build(),
    ];
    let at = t(11);
    let window = Duration::minutes(5);

    // The built-in lists know neither the tool nor the share.
    let plain = timeline(&rows, "WS-1", at, window);
    assert_eq!(plain.first_anomaly, None);

    let mut rules = Rules {
        extra_lolbins: vec![" AcmeTool.EXE ".into()],
        ..Rules::default()
    };
    rules.user_writable_paths.push("\\Shares\\".into());
    let tl = timeline_with_rules(&rows, "WS-1", at, window, &rules).unwrap();
    assert_eq!(tl.first_anomaly, Some(0));
    assert_eq!(
        tl.entries[0].anomalies,
        vec![Anomaly::UnusualBinary(
            "AcmeTool.exe: living-off-the-land binary".into()
        )]
    );
    assert_eq!(
        tl.entries[1].anomalies,
        vec![Anomaly::LolbinChild(
            "app.exe started by acmetool.exe".into()
        )]
    );
    assert_eq!(
        tl.entries[2].anomalies,
        vec![Anomaly::UnusualBinary(
            "report.exe: runs from a user-writable folder (\\shares\\)".into()
        )]
    );

    // `lolbins` replaces the built-in list: certutil is no longer one.
    let certutil = vec![R::new(4)
        .at(10)
        .path("c:\\windows\\system32\\certutil.exe")
        .build()];
    assert!(timeline(&certutil, "WS-1", at, window)
        .first_anomaly
        .is_some());
    let only_acme = Rules {
        lolbins: vec!["acmetool.exe".into()],
        ..Rules::default()
    };
    let tl = timeline_with_rules(&certutil, "WS-1", at, window, &only_acme).unwrap();
    assert_eq!(tl.first_anomaly, None);
}

#[test]
fn timeline_with_rules_refuses_bad_lists_naming_the_key() {
    let rules = Rules {
        extra_lolbins: vec!["rundll32.exe".into(), "c:\\tools\\x.exe".into()],
        ..Rules::default()
    };
    let err = timeline_with_rules(&[], "WS-1", t(0), Duration::minutes(5), &rules).unwrap_err();
    assert_eq!(err.key, "rules.extra_lolbins[1]");
    assert!(err.problem.contains("file name"), "{err}");
}
