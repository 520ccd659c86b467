//! Configuration: the TOML shape, defaults, and errors that name the key and value.

use policy_engine::{ApprovalScope, Engine, EngineConfig, RiskLevel};

#[test]
fn org_variables_and_rules_parse_from_toml_with_csv_lists() {
    let cfg: EngineConfig = toml::from_str(
        r#"
        [org_variables]
        threatlocker_ticket_board = "Security"
        threatlocker_auto_approve_categories = "Communication, Productivity"
        threatlocker_block_alert_threshold = 5
        threatlocker_notification_recipients = ["soc@msp.example", "noc@msp.example"]

        [org_overrides."3b0f5f7e"]
        threatlocker_ticket_board = "Contoso"
        approval_scope = "group"

        [rules]
        fleet_spread_threshold = 4
        extra_lolbins = ["AnyDesk.exe"]
        ticket_priority = { low = "P4", medium = "P3", high = "P2", critical = "P1" }
        notify_immediately_min_risk = "Critical"
        "#,
    )
    .unwrap();
    assert_eq!(
        cfg.org_variables.threatlocker_auto_approve_categories,
        vec!["Communication", "Productivity"]
    );
    assert_eq!(
        cfg.org_overrides[&threatlocker_api::OrganizationId::new("3b0f5f7e")].approval_scope,
        Some(ApprovalScope::Group)
    );
    assert_eq!(cfg.rules.notify_immediately_min_risk, RiskLevel::Critical);
    assert!(
        cfg.rules.lolbins.iter().any(|l| l == "mshta.exe"),
        "built-in list kept"
    );
    Engine::new(cfg).unwrap();
}

#[test]
fn unknown_keys_are_rejected() {
    let err = toml::from_str::<EngineConfig>("[org_variables]\nthreatlocker_ticket_bord = \"x\"\n")
        .unwrap_err();
    assert!(
        err.to_string().contains("threatlocker_ticket_bord"),
        "{err}"
    );
}

#[test]
fn invalid_values_name_the_key_and_the_value() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[org_variables]\nthreatlocker_block_alert_threshold = 0",
            "org_variables.threatlocker_block_alert_threshold",
            "threatlocker_block_alert_threshold = 0",
        ),
        (
            "[org_variables]\nthreatlocker_ticket_board = \"  \"",
            "org_variables.threatlocker_ticket_board",
            "\"  \"",
        ),
        (
            "[org_overrides.o1]\nthreatlocker_block_alert_threshold = 0",
            "org_overrides.o1.threatlocker_block_alert_threshold",
            "= 0",
        ),
        (
            "[org_variables]\nthreatlocker_notification_recipients = [\"a@b\", \"\"]",
            "org_variables.threatlocker_notification_recipients[1]",
            "\"\"",
        ),
        (
            "[rules]\ntrusted_hashes = [\"not-a-hash\"]",
            "rules.trusted_hashes[0]",
            "\"not-a-hash\"",
        ),
        (
            "[rules]\ntrusted_hashes = [\"ab\"]\nnever_approve_hashes = [\"AB\"]",
            "rules.trusted_hashes[0]",
            "never_approve_hashes",
        ),
        (
            "[rules]\nfleet_spread_threshold = 1",
            "rules.fleet_spread_threshold",
            "= 1",
        ),
        (
            "[rules]\nrepeat_window_minutes = 0",
            "rules.repeat_window_minutes",
            "= 0",
        ),
        (
            "[rules]\nlolbins = [\"c:\\\\x\\\\a.exe\"]",
            "rules.lolbins[0]",
            "not a path",
        ),
        (
            "[rules]\nmax_evidence_ids = 0",
            "rules.max_evidence_ids",
            "= 0",
        ),
    ];
    for (toml_text, key, shown) in cases {
        let cfg: EngineConfig =
            toml::from_str(toml_text).unwrap_or_else(|e| panic!("{toml_text}: {e}"));
        let err = Engine::new(cfg).unwrap_err();
        assert_eq!(err.key, *key, "{toml_text}");
        let text = err.to_string();
        assert!(
            text.contains(key) && text.contains(shown),
            "{toml_text}: {text}"
        );
    }
}

#[test]
fn defaults_are_valid_and_conservative() {
    let cfg = EngineConfig::default();
    assert!(
        cfg.org_variables
            .threatlocker_auto_approve_categories
            .is_empty(),
        "auto-approval off by default"
    );
    assert_eq!(cfg.rules.approval_scope, ApprovalScope::Computer);
    for l in [
        "powershell.exe",
        "pwsh.exe",
        "cmd.exe",
        "mshta.exe",
        "rundll32.exe",
        "regsvr32.exe",
        "certutil.exe",
        "msbuild.exe",
        "wmic.exe",
        "hh.exe",
    ] {
        assert!(cfg.rules.lolbins.iter().any(|x| x == l), "{l}");
    }
    Engine::new(cfg).unwrap();
}
