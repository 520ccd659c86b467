//! Properties: determinism (also under shuffling) and no event counted twice.

use policy_engine::{build_report, Outcomes};
use proptest::prelude::*;
use threatlocker_api::ActionLogRow;

use crate::support::*;

fn arb_row() -> impl Strategy<Value = ActionLogRow> {
    (
        1i64..60,
        0usize..4,
        0usize..4,
        0usize..5,
        0u8..6,
        0i64..700,
        any::<bool>(),
    )
        .prop_map(|(id, host, user, app, kind, minute, ps)| {
            let hosts = ["WS-1", "WS-2", "WS-3", "WS-4"];
            let users = ["a", "b", "c", "CONTOSO\\d"];
            let apps = [
                "c:\\users\\x\\downloads\\tool.exe",
                "c:\\windows\\system32\\certutil.exe",
                "c:\\windows\\system32\\windowspowershell\\v1.0\\powershell.exe",
                "c:\\program files\\app\\app.exe",
                "c:\\temp\\mshta.exe",
            ];
            let mut r = R::new(id)
                .at(minute)
                .host(&format!("c{host}"), hosts[host])
                .user(users[user])
                .path(apps[app])
                .sha(&format!("h{app}"))
                .org(if host % 2 == 0 { ORG } else { ORG2 });
            r = match kind {
                0 | 1 => r.block(),
                2 => r.audit(),
                3 => r.ringfenced(),
                _ => r,
            };
            if ps {
                r = r
                    .data("powershell -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoA")
                    .process("c:\\program files\\microsoft office\\winword.exe");
            }
            r.build()
        })
}

fn shuffle<T: Clone>(v: &[T], seed: u64) -> Vec<T> {
    let mut out = v.to_vec();
    let mut s = seed | 1;
    for i in (1..out.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out.swap(i, (s % (i as u64 + 1)) as usize);
    }
    out
}

/// Rows with the same id are the same event: make duplicates exact copies.
fn canonical(rows: Vec<ActionLogRow>) -> Vec<ActionLogRow> {
    let mut first: std::collections::BTreeMap<i64, ActionLogRow> = Default::default();
    for r in &rows {
        first
            .entry(r.action_log_id.unwrap().get())
            .or_insert_with(|| r.clone());
    }
    rows.iter()
        .map(|r| first[&r.action_log_id.unwrap().get()].clone())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn output_is_deterministic_and_order_independent(rows in prop::collection::vec(arb_row(), 0..80), seed in any::<u64>()) {
        let rows = canonical(rows);
        let e = engine();
        let approvals = vec![pending(request("r1"), Some(&["Communication"][..])), pending(request("r2"), None)];
        let a = e.evaluate(&input(rows.clone()).with_approvals(approvals.clone()));
        let b = e.evaluate(&input(rows.clone()).with_approvals(approvals.clone()));
        let c = e.evaluate(&input(shuffle(&rows, seed)).with_approvals(shuffle(&approvals, seed)));
        let ja = serde_json::to_string(&a).unwrap();
        prop_assert_eq!(&ja, &serde_json::to_string(&b).unwrap());
        prop_assert_eq!(&ja, &serde_json::to_string(&c).unwrap());
        let ra = serde_json::to_string(&build_report(&a, &Outcomes::new(true))).unwrap();
        let rc = serde_json::to_string(&build_report(&c, &Outcomes::new(true))).unwrap();
        prop_assert_eq!(ra, rc);
    }

    #[test]
    fn duplicate_rows_never_change_the_numbers(rows in prop::collection::vec(arb_row(), 0..80), dups in prop::collection::vec(any::<prop::sample::Index>(), 0..40)) {
        let rows = canonical(rows);
        let e = engine();
        let once = e.evaluate(&input(rows.clone()));
        let mut doubled = rows.clone();
        if !rows.is_empty() {
            for d in &dups {
                doubled.push(d.get(&rows).clone());
            }
        }
        let twice = e.evaluate(&input(doubled));
        prop_assert_eq!(&once.blocks, &twice.blocks);
        prop_assert_eq!(serde_json::to_string(&once.detections).unwrap(), serde_json::to_string(&twice.detections).unwrap());
        prop_assert_eq!(&once.tickets, &twice.tickets);
        // Each counted event is a distinct id.
        let distinct: std::collections::BTreeSet<i64> = rows
            .iter()
            .filter(|r| r.date_time.is_some_and(|t| t >= input(vec![]).window_start && t < input(vec![]).window_end))
            .map(|r| r.action_log_id.unwrap().get())
            .collect();
        prop_assert_eq!(once.blocks.total_events, distinct.len() as u64);
    }
}

fn arb_sparse_row() -> impl Strategy<Value = ActionLogRow> {
    (
        prop::option::of(1i64..30),
        prop::option::of("[a-c]{0,2}"),
        prop::option::of(0i64..700),
        prop::option::of(0i32..8),
        prop::option::of(any::<bool>()),
        prop::option::of("[ -~\\n\\\\é]{0,40}"),
        prop::option::of("[a-f0-9 ]{0,6}"),
        prop::option::of("[ -~]{0,30}"),
    )
        .prop_map(|(id, e, minute, action, monitor, path, hash, data)| {
            let mut r = ActionLogRow::default();
            r.action_log_id = id.map(threatlocker_api::ActionLogId);
            r.e_action_log_id = e.map(threatlocker_api::EActionLogId::new);
            r.date_time = minute.map(t);
            r.action_id = action.map(threatlocker_api::ActionOutcome::from);
            r.is_monitor_mode = monitor;
            r.full_path = path.clone();
            r.process_path = path;
            r.sha256_hash = hash;
            r.data = data;
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Rows missing any field (the API sends `null` for most) never panic the engine, the report
    /// or the investigations, and every counted event is accounted for.
    #[test]
    fn sparse_rows_never_panic_and_reconcile(rows in prop::collection::vec(arb_sparse_row(), 0..60)) {
        let d = engine().evaluate(&input(rows.clone()));
        let ig = d.ignored;
        prop_assert_eq!(
            d.blocks.total_events + ig.duplicate_rows + ig.outside_window + ig.undated_rows,
            rows.len() as u64
        );
        prop_assert!(d.blocks.blocks + d.blocks.audit_only <= d.blocks.total_events);
        for t in &d.tickets {
            prop_assert!(t.summary.chars().count() <= 100);
            prop_assert!(t.dedupe_key.len() <= 40);
        }
        let _ = build_report(&d, &Outcomes::new(false));
        let _ = policy_engine::investigate::timeline(&rows, "x", t(100), chrono::Duration::minutes(60));
        let _ = policy_engine::investigate::file_spread(&rows, policy_engine::investigate::FileQuery::Hash("a".into()));
        let _ = policy_engine::investigate::repeated_denials(&rows, 1, &[]);
        let _ = policy_engine::investigate::audit_only_on_secure(&rows, &[]);
    }
}
