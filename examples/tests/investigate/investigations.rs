//! `tl-investigate` end to end: the binary against the wiremock Portal API.

use std::path::Path;

use serde_json::Value;

use crate::data::{config_file, portal, API_KEY_ENV, H1};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn tl(config: Option<&Path>, args: &[&str]) -> Out {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tl-investigate"));
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(args)
        .env(API_KEY_ENV, "test-key-0123456789")
        .env_remove("RUST_LOG");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run tl-investigate");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn json(config: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = tl(Some(config), &a).await;
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| {
            x.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| x.to_string())
        })
        .collect()
}

#[tokio::test]
async fn timeline_orders_marks_the_first_anomaly_and_fetches_parent_chains() {
    let server = portal().await;
    let (_dir, cfg) = config_file(&server.uri(), "");
    let args = [
        "timeline",
        "--host",
        "WS-FRONTDESK-02",
        "--at",
        "2026-05-14T13:00:00Z",
        "--window",
        "1h",
    ];
    let v = json(&cfg, &args).await;
    let entries = v["entries"].as_array().expect("entries");
    let got: Vec<i64> = entries
        .iter()
        .map(|e| e["action_log_id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        got,
        [1001, 1002, 1003, 1004, 1005],
        "oldest first, 15:30 row outside"
    );
    assert_eq!(v["from"], "2026-05-14T12:00:00Z");
    assert_eq!(v["to"], "2026-05-14T14:00:00Z");
    // The first unusual binary: invoice.exe run from Downloads.
    assert_eq!(v["first_anomaly"]["action_log_id"], 1002);
    assert_eq!(v["first_anomaly"]["e_action_log_id"], "e-1002");
    assert_eq!(entries[1]["first_anomaly"], true);
    assert!(
        entries
            .iter()
            .filter(|e| e["first_anomaly"] == true)
            .count()
            == 1
    );
    // powershell started by invoice.exe; its network row.
    let kinds = |i: usize| -> Vec<String> {
        entries[i]["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        kinds(2).contains(&"unusual_binary".to_owned()),
        "{:?}",
        kinds(2)
    );
    assert!(
        kinds(3).contains(&"network_active".to_owned()),
        "{:?}",
        kinds(3)
    );
    // Parent chains from ActionLogGetByIdV2?getAllParents=true, nearest first.
    let chain = ids(&entries[2]["parent_chain"]);
    assert_eq!(chain[0], "c:\\users\\jsmith\\downloads\\invoice.exe");
    assert!(chain.contains(&"c:\\windows\\explorer.exe".to_owned()));
    assert_eq!(v["details_fetched"], 5);
    let detail_calls = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("ActionLogGetByIdV2"))
        .count();
    assert_eq!(detail_calls, 5);

    // A bounded number of detail calls: anomalies first.
    let mut bounded = args.to_vec();
    bounded.extend(["--max-details", "2"]);
    let v = json(&cfg, &bounded).await;
    assert_eq!(v["details_fetched"], 2);
    assert_eq!(v["details_skipped"], 3);
    assert!(
        v["entries"][0]["parent_chain"].is_null(),
        "no anomaly on 1001"
    );
    assert!(v["entries"][1]["parent_chain"].is_array());

    // The table carries the marker, the ids and the anomaly.
    let out = tl(Some(&cfg), &args).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("First anomaly (marked >>)"),
        "{}",
        out.stdout
    );
    let marked = out
        .stdout
        .lines()
        .find(|l| l.starts_with(">>"))
        .expect("marked row");
    assert!(
        marked.contains("1002") && marked.contains("e-1002") && marked.contains("invoice.exe"),
        "{marked}"
    );
    assert!(out.stdout.contains("203.0.113.9:443"));
}

#[tokio::test]
async fn file_hash_pivot_finds_patient_zero_permits_and_blocks() {
    let server = portal().await;
    let (_dir, cfg) = config_file(&server.uri(), "");
    let v = json(
        &cfg,
        &["file", "--hash", H1, "--since", "2026-05-14T00:00:00Z"],
    )
    .await;
    assert_eq!(v["query"], serde_json::json!({"kind": "hash", "value": H1}));
    assert_eq!(v["computers_affected"], 3);
    assert_eq!(
        v["rows_scanned"], 12,
        "the whole period is scanned: the API has no hash filter"
    );
    assert_eq!(v["rows_matched"], 4);
    assert_eq!(
        (
            v["permits"].as_u64(),
            v["blocks"].as_u64(),
            v["audit_only"].as_u64()
        ),
        (Some(1), Some(2), Some(1))
    );
    assert_eq!(v["patient_zero"], "WS-FRONTDESK-02");
    let c = v["computers"].as_array().unwrap();
    let hosts: Vec<&str> = c.iter().map(|c| c["hostname"].as_str().unwrap()).collect();
    assert_eq!(
        hosts,
        ["WS-FRONTDESK-02", "WS-BILLING-01", "WS-RECEPTION-03"]
    );
    assert_eq!(c[0]["patient_zero"], true);
    assert_eq!(c[0]["possibly_impacted"], true);
    assert_eq!(ids(&c[0]["action_log_ids"]), ["1002"]);
    assert_eq!(ids(&c[0]["e_action_log_ids"]), ["e-1002"]);
    assert_eq!(c[1]["blocks"], 2);
    assert_eq!(c[1]["possibly_impacted"], false);
    assert_eq!(ids(&c[1]["action_log_ids"]), ["2001", "2002"]);
    // Per-computer history, pulled by computer id and the path the hash had there.
    assert_eq!(
        ids(&c[1]["paths"]),
        ["c:\\users\\mlee\\downloads\\invoice, final.exe"]
    );
    let hist: Vec<i64> = c[1]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action_log_id"].as_i64().unwrap())
        .collect();
    assert_eq!(hist, [2001, 2002]);
    assert!(c[1]["history_error"].is_null());
    let history_requests: Vec<_> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("ActionLogGetAllForFileHistoryV2"))
        .collect();
    assert_eq!(history_requests.len(), 3);
    assert!(history_requests
        .iter()
        .all(|r| r.url.query_pairs().any(|(k, _)| k == "computerId")));

    // CSV: fixed header, RFC 4180 quoting of the comma in the path, ids per row.
    let out = tl(
        Some(&cfg),
        &[
            "file",
            "--hash",
            H1,
            "--since",
            "2026-05-14T00:00:00Z",
            "--csv",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut lines = out.stdout.split("\r\n");
    assert_eq!(
        lines.next(),
        Some("patient_zero,hostname,computer_id,organization_id,first_seen,last_seen,permits,blocks,audit_only,status,paths,history_rows,action_log_ids,e_action_log_ids")
    );
    assert!(lines.next().unwrap().starts_with("yes,WS-FRONTDESK-02,"));
    let billing = lines.next().unwrap();
    assert!(billing.contains(",0,2,0,stopped,\"c:\\users\\mlee\\downloads\\invoice, final.exe\",2,2001 2002,e-2001 e-2002"), "{billing}");

    // A path pivot sends fullPath to the API.
    let v = json(
        &cfg,
        &[
            "file",
            "--path",
            "c:\\tools\\nmap.exe",
            "--since",
            "2026-05-14T00:00:00Z",
        ],
    )
    .await;
    assert_eq!(v["computers_affected"], 1);
    assert_eq!(v["rows_scanned"], 1);
}

#[tokio::test]
async fn denials_list_repeat_sources_with_their_approval_requests() {
    let server = portal().await;
    let (_dir, cfg) = config_file(&server.uri(), "");
    let v = json(&cfg, &["denials", "--since", "2026-05-14T00:00:00Z"]).await;
    assert_eq!(v["threshold"], 3, "from org_variables");
    assert_eq!(v["blocks"], 3);
    let s = v["sources"].as_array().unwrap();
    let subjects: Vec<(&str, &str)> = s
        .iter()
        .map(|x| (x["kind"].as_str().unwrap(), x["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(
        subjects,
        [("user", "CONTOSO\\mlee"), ("computer", "WS-BILLING-01")]
    );
    for x in s {
        assert_eq!(x["blocks"], 3);
        assert_eq!(ids(&x["action_log_ids"]), ["2001", "2002", "2003"]);
        assert_eq!(ids(&x["e_action_log_ids"]), ["e-2001", "e-2002", "e-2003"]);
        assert_eq!(
            ids(&x["related_approvals"]),
            ["a1b2c3d4-0000-4000-8000-000000000001"]
        );
        assert_eq!(x["approvals"][0]["username"], "CONTOSO\\mlee");
        assert_eq!(x["top_applications"][0]["count"], 2);
    }
    let v = json(
        &cfg,
        &[
            "denials",
            "--since",
            "2026-05-14T00:00:00Z",
            "--threshold",
            "4",
        ],
    )
    .await;
    assert_eq!(v["sources"].as_array().unwrap().len(), 0);
    let out = tl(
        Some(&cfg),
        &["denials", "--since", "2026-05-14T00:00:00Z", "--csv"],
    )
    .await;
    assert!(out.stdout.starts_with("kind,subject,organization_id,blocks,first_seen,last_seen,top_applications,approval_requests,action_log_ids,e_action_log_ids\r\n"));
    assert!(
        out.stdout
            .contains("\"invoice, final.exe (2); nmap.exe (1)\""),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn bypass_groups_audit_only_hits_on_secure_computers() {
    let server = portal().await;
    let (_dir, cfg) = config_file(&server.uri(), "");
    let v = json(&cfg, &["bypass", "--since", "2026-05-14T00:00:00Z"]).await;
    assert_eq!(v["audit_only_rows"], 3);
    assert_eq!(v["secure_computers"], 3);
    let g = v["groups"].as_array().unwrap();
    assert_eq!(g.len(), 1);
    assert_eq!(g[0]["policy_name"], "Monitor - Unknown apps");
    assert_eq!(
        g[0]["hits"], 2,
        "the Learning computer's hit is not a bypass"
    );
    assert_eq!(ids(&g[0]["computers"]), ["WS-RECEPTION-03"]);
    assert_eq!(ids(&g[0]["action_log_ids"]), ["3001", "3002"]);
    assert_eq!(ids(&g[0]["e_action_log_ids"]), ["e-3001", "e-3002"]);
    assert!(g[0]["suggestion"].as_str().unwrap().contains("deny"));
    // The search asked for simulated denies only.
    let searched = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .any(|r| {
            let b: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            b["actionId"] == 99
                && b["simulateDeny"] == true
                && b["paramsFieldsDto"][0]["value"] == "true"
        });
    assert!(searched);
    let out = tl(Some(&cfg), &["bypass", "--since", "2026-05-14T00:00:00Z"]).await;
    assert!(
        out.stdout.contains("Monitor - Unknown apps") && out.stdout.contains("3001 3002"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn show_prints_full_detail_and_refuses_numeric_ids() {
    let server = portal().await;
    let (_dir, cfg) = config_file(&server.uri(), "");
    let v = json(&cfg, &["show", "e-1003"]).await;
    assert_eq!(v["e_action_log_id"], "e-1003");
    assert_eq!(v["action"]["actionLogId"], 1003);
    assert_eq!(
        v["action"]["commandLine"], "powershell -nop -w hidden -enc SQBFAFgA",
        "unknown fields kept"
    );
    assert_eq!(
        ids(&v["parent_chain"])[0],
        "c:\\users\\jsmith\\downloads\\invoice.exe"
    );
    assert_eq!(v["outcome"], "Permitted");
    let out = tl(Some(&cfg), &["show", "e-1003", "--csv"]).await;
    assert!(out.stdout.starts_with("field,value\r\n"));
    assert!(out
        .stdout
        .contains("commandLine,powershell -nop -w hidden -enc SQBFAFgA\r\n"));

    let before = server.received_requests().await.unwrap().len();
    let out = tl(Some(&cfg), &["show", "81234567890"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("eActionLogId") && out.stderr.contains("numeric"),
        "{}",
        out.stderr
    );
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        before,
        "no call made"
    );
}

#[tokio::test]
async fn csv_neutralises_formulas_and_table_cleans_control_characters() {
    let server = portal().await;
    let (_dir, cfg) = config_file(&server.uri(), "");
    let out = tl(
        Some(&cfg),
        &[
            "timeline",
            "--host",
            "WS-RECEPTION-03",
            "--at",
            "2026-05-14T13:40:00Z",
            "--csv",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(",\"'=HYPERLINK(\"\"http://x\"\")\","),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn usage_and_configuration_errors_exit_2_naming_the_key() {
    let server = portal().await;
    let (dir, _) = config_file(&server.uri(), "");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[threatlocker]\ninstance = \"g\"\nmax_request_per_second = 5\n",
    )
    .unwrap();
    let out = tl(Some(&bad), &["denials"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("threatlocker.max_request_per_second"),
        "{}",
        out.stderr
    );

    std::fs::write(
        &bad,
        format!(
            "[threatlocker]\nbase_url = \"{}\"\napi_key_env = \"TL_UNSET_VARIABLE_FOR_TEST\"\n",
            server.uri()
        ),
    )
    .unwrap();
    let out = tl(Some(&bad), &["denials"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("threatlocker.api_key_env")
            && out.stderr.contains("TL_UNSET_VARIABLE_FOR_TEST"),
        "{}",
        out.stderr
    );

    let (_d, cfg) = config_file(&server.uri(), "");
    for (args, needle) in [
        (vec!["timeline", "--host", "X", "--at", "yesterday"], "--at"),
        (
            vec!["timeline", "--host", "X", "--at", "2h", "--window", "soon"],
            "--window",
        ),
        (vec!["file", "--hash", "xyz"], "hex"),
        (
            vec!["file", "--hash", H1, "--path", "c:\\x"],
            "cannot be used with",
        ),
        (vec!["denials", "--since", "2999-01-01"], "--since"),
        (vec!["bogus"], "unrecognized subcommand"),
    ] {
        let out = tl(Some(&cfg), &args).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
    let out = tl(None, &["denials"]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--config"));
    let out = tl(None, &["--help"]).await;
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("timeline") && out.stdout.contains("Exit codes"));

    // The API failing is exit 1.
    let (_d2, dead) = config_file("http://127.0.0.1:9", "");
    let out = tl(Some(&dead), &["denials"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
}

/// The timeline marks what the monitor's detections flag: a LOLBin added in the configuration's
/// `[rules]` is an unusual binary, and a bad rule is a configuration error naming its key.
#[tokio::test]
async fn timeline_uses_the_configured_rules() {
    let server = portal().await;
    let args = [
        "timeline",
        "--host",
        "WS-FRONTDESK-02",
        "--at",
        "2026-05-14T13:00:00Z",
        "--window",
        "1h",
    ];
    let (_dir, cfg) = config_file(
        &server.uri(),
        "\n[rules]\nextra_lolbins = [\"chrome.exe\"]\n",
    );
    let v = json(&cfg, &args).await;
    // Without the rule the first anomaly is 1002 (see above); chrome.exe (1001) now comes first.
    assert_eq!(v["first_anomaly"]["action_log_id"], 1001);

    let (_dir, bad) = config_file(&server.uri(), "\n[rules]\nextra_lolbins = [\"\"]\n");
    let out = tl(Some(&bad), &args).await;
    assert_eq!(
        out.code, 2,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(out.stderr.contains("extra_lolbins"), "{}", out.stderr);
}
