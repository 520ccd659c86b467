//! Streaming evaluation: partial states of disjoint rows, kept (serialized) and merged, give
//! the decisions of one batch evaluation of all the rows — whatever the split, the order, the
//! duplicates, the evidence cap or the repeat window.

use policy_engine::{build_report, Decisions, Engine, EngineConfig, Input, Outcomes, WindowState};
use proptest::prelude::*;
use threatlocker_api::ActionLogRow;

use crate::support::*;

fn arb_row() -> impl Strategy<Value = ActionLogRow> {
    (
        1i64..200,
        0usize..4,
        0usize..3,
        0usize..5,
        0u8..7,
        -30i64..660,
        0u8..4,
        any::<bool>(),
    )
        .prop_map(|(id, host, user, app, kind, minute, extra, no_id)| {
            let hosts = ["WS-1", "WS-2", "WS-3", "ws-1"];
            let users = ["a", "B", "CONTOSO\\d"];
            let apps = [
                "c:\\users\\x\\downloads\\tool.exe",
                "c:\\windows\\system32\\certutil.exe",
                "c:\\windows\\system32\\windowspowershell\\v1.0\\powershell.exe",
                "c:\\program files\\app\\app.exe",
                "c:\\users\\x\\appdata\\mshta.exe",
            ];
            let mut r = R::new(id)
                .at(minute)
                .host(&format!("c{}", host % 3), hosts[host])
                .user(users[user])
                .path(apps[app])
                .org(if host % 2 == 0 { ORG } else { ORG2 });
            if app != 3 {
                r = r.sha(&format!("H{app}"));
            }
            r = match kind {
                0..=2 => r.block(),
                3 => r.audit(),
                4 => r.ringfenced(),
                _ => r,
            };
            match extra {
                1 => {
                    r = r
                        .data("powershell -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoA")
                        .process("c:\\program files\\microsoft office\\winword.exe")
                }
                2 => r = r.cert("CN=Vendor A, O=Vendor A").built_in(),
                3 => r = r.no_user(),
                _ => {}
            }
            if no_id && id % 7 == 0 {
                r.0.action_log_id = None;
            }
            r.build()
        })
}

/// Rows with the same id are the same event: duplicates are exact copies.
fn canonical(rows: Vec<ActionLogRow>) -> Vec<ActionLogRow> {
    let mut first: std::collections::BTreeMap<i64, ActionLogRow> = Default::default();
    for r in &rows {
        if let Some(id) = r.action_log_id {
            first.entry(id.get()).or_insert_with(|| r.clone());
        }
    }
    rows.iter()
        .map(|r| match r.action_log_id {
            Some(id) => first[&id.get()].clone(),
            None => r.clone(),
        })
        .collect()
}

fn configs() -> Vec<EngineConfig> {
    let mut small = config();
    small.rules.max_evidence_ids = 3;
    small.org_variables.threatlocker_block_alert_threshold = 2;
    let mut windowed = config();
    windowed.rules.repeat_window_minutes = Some(45);
    windowed.org_variables.threatlocker_block_alert_threshold = 3;
    // Custom rules see every row (permits too) and keep their own groups in the state.
    let custom: EngineConfig = toml::from_str(concat!(
        "[[rules.custom]]\nid = \"tool\"\npath = \"*\\\\tool.exe\"\n",
        "risk = \"High\"\nreason = \"A downloaded tool.\"\n",
        "[[rules.custom]]\nid = \"user_a\"\nuser = \"a\"\n",
        "risk = \"Medium\"\nreason = \"User a.\"\n",
    ))
    .unwrap();
    small.rules.custom = custom.rules.custom.clone();
    windowed.rules.custom = custom.rules.custom;
    vec![config(), small, windowed]
}

fn meta() -> Input {
    let mut computers = vec![computer(
        "c0",
        "WS-1",
        threatlocker_api::ComputerMode::Secure,
    )];
    computers.push(computer(
        "c1",
        "WS-2",
        threatlocker_api::ComputerMode::Learning,
    ));
    Input::new(t(600), t(0), t(600))
        .with_organizations(orgs())
        .with_computers(computers)
        .with_approvals(vec![
            pending(request("r1"), Some(&["Communication"][..])),
            {
                let mut r = request("r2");
                r.sha256 = Some("h1".into());
                pending(r, Some(&["Communication"][..]))
            },
        ])
}

/// Everything but `ignored` (which counts what each read skipped).
fn comparable(d: &Decisions) -> String {
    let mut v = serde_json::to_value(d).unwrap();
    v.as_object_mut().unwrap().remove("ignored");
    v.to_string()
}

/// The state of `rows`, kept the way the workflow keeps it (serialized and read back).
fn kept(engine: &Engine, meta: &Input, rows: &[ActionLogRow]) -> WindowState {
    let mut acc = engine.accumulator(meta);
    for r in rows {
        acc.push(r);
    }
    let json = serde_json::to_string(&acc.into_state()).unwrap();
    serde_json::from_str(&json).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Split the rows into parts (every copy of a row in the same part), keep each part's state,
    /// merge: the decisions are those of one evaluation of all the rows, in any order.
    #[test]
    fn merged_partial_states_decide_as_one_evaluation(
        rows in prop::collection::vec(arb_row(), 0..120),
        parts in 1u64..5,
        seed in any::<u64>(),
    ) {
        let rows = canonical(rows);
        let meta = meta();
        for cfg in configs() {
            let engine = Engine::new(cfg).unwrap();
            let batch = engine.evaluate(&meta.clone().with_events(rows.clone()));

            let part_of = |r: &ActionLogRow| match r.action_log_id {
                Some(id) => (id.get() as u64).wrapping_mul(seed | 1) % parts,
                None => seed % parts,
            };
            let mut acc = engine.accumulator(&meta);
            for p in 0..parts {
                let mine: Vec<ActionLogRow> = rows.iter().filter(|r| part_of(r) == p).cloned().collect();
                acc.merge_state(kept(&engine, &meta, &mine));
            }
            let merged = acc.finish();
            prop_assert_eq!(comparable(&batch), comparable(&merged));
            let rb = serde_json::to_string(&build_report(&batch, &Outcomes::new(true))).unwrap();
            let rm = serde_json::to_string(&build_report(&merged, &Outcomes::new(true))).unwrap();
            prop_assert_eq!(rb, rm);
        }
    }

    /// Pushing row by row in any order, with re-sent rows, gives the batch decisions, and a
    /// state is canonical: the same rows give the same serialized state.
    #[test]
    fn pushing_in_any_order_decides_alike(
        rows in prop::collection::vec(arb_row(), 0..120),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
        seed in any::<u64>(),
    ) {
        // Id-less rows tied on time keep their arrival order, so only rows with ids shuffle.
        let rows: Vec<ActionLogRow> = canonical(rows).into_iter().filter(|r| r.action_log_id.is_some()).collect();
        let meta = meta();
        for cfg in configs() {
            let engine = Engine::new(cfg).unwrap();
            let batch = engine.evaluate(&meta.clone().with_events(rows.clone()));
            let mut shuffled = rows.clone();
            if !rows.is_empty() {
                for d in &dups {
                    shuffled.push(d.get(&rows).clone());
                }
            }
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut acc = engine.accumulator(&meta);
            for r in &shuffled {
                acc.push(r);
            }
            let streamed = acc.finish();
            prop_assert_eq!(comparable(&batch), comparable(&streamed));
            prop_assert_eq!(
                serde_json::to_string(&kept(&engine, &meta, &rows)).unwrap(),
                serde_json::to_string(&kept(&engine, &meta, &shuffled)).unwrap()
            );
        }
    }
}

/// Memory follows distinct keys: 20 000 rows over a few computers and files keep a few dozen
/// keys, and only the capped evidence.
#[test]
fn state_size_follows_distinct_keys_not_rows() {
    let engine = engine();
    let meta = meta();
    let mut acc = engine.accumulator(&meta);
    for i in 0..20_000i64 {
        let r = R::new(i + 1)
            .at(i % 600)
            .host(&format!("c{}", i % 5), &format!("WS-{}", i % 5))
            .user("a")
            .path(&format!("c:\\apps\\app{}.exe", i % 7))
            .sha(&format!("h{}", i % 7));
        let r = if i % 3 == 0 { r.block() } else { r };
        acc.push(&r.build());
    }
    let state = acc.into_state();
    assert_eq!(state.events(), 20_000);
    assert!(state.keys() <= 5 * 7 + 7, "{} keys", state.keys());
    let bytes = serde_json::to_vec(&state).unwrap().len();
    assert!(bytes < 2_000_000, "{bytes} bytes kept for 20 000 rows");
}
