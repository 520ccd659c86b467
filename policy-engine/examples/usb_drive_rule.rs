//! A custom detection, two ways: "anything run from a USB drive is High".
//!
//! First as a Rust [`Rule`] registered with `Engine::with_rule`, then as a `[[rules.custom]]`
//! table in the configuration, each evaluated over the same three rows. Run with
//! `cargo run -p policy-engine --example usb_drive_rule`.

use chrono::{Duration, TimeZone, Utc};
use policy_engine::{Engine, EngineConfig, Finding, Input, RiskLevel, Rule};
use threatlocker_api::{ActionLogId, ActionLogRow, ActionOutcome};

/// Drive letters Windows gives removable drives on the MSP's standard builds.
const USB_DRIVES: &[&str] = &["d:\\", "e:\\", "f:\\", "g:\\"];

/// Anything run from a USB drive is High; Critical when it was not stopped.
struct UsbDrive;

impl Rule for UsbDrive {
    fn id(&self) -> &'static str {
        "msp.usb_drive"
    }

    fn check(&self, row: &ActionLogRow) -> Option<Finding> {
        let path = row.full_path.as_deref()?.trim().to_ascii_lowercase();
        USB_DRIVES.iter().any(|d| path.starts_with(d)).then(|| {
            Finding::new(RiskLevel::High, "A program ran from a USB drive.")
                .escalate_when_not_stopped()
        })
    }
}

/// The same rule for MSPs who do not write Rust.
const CONFIG: &str = r#"
[org_variables]
threatlocker_notification_recipients = ["soc@msp.example"]

[[rules.custom]]
id = "usb_drive"
path = ["d:\\*", "e:\\*", "f:\\*", "g:\\*"]
risk = "High"
escalate_when_not_stopped = true
reason = "A program ran from a USB drive."
"#;

fn row(id: i64, host: &str, path: &str, outcome: ActionOutcome) -> ActionLogRow {
    let mut r = ActionLogRow::default();
    r.action_log_id = Some(ActionLogId(id));
    r.organization_id = Some("org-contoso".into());
    r.organization_name = Some("Contoso Dental".into());
    r.computer_id = Some(format!("comp-{host}").as_str().into());
    r.hostname = Some(host.into());
    r.username = Some("CONTOSO\\jsmith".into());
    r.date_time = Some(Utc.with_ymd_and_hms(2026, 5, 14, 9, 0, 0).unwrap() + Duration::minutes(id));
    r.full_path = Some(path.into());
    r.action_id = Some(outcome);
    r.is_monitor_mode = Some(false);
    r
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = Utc.with_ymd_and_hms(2026, 5, 14, 12, 0, 0).unwrap();
    let input = Input::new(now, now - Duration::hours(24), now).with_events(vec![
        row(1, "WS-1", "E:\\Tools\\setup.exe", ActionOutcome::Deny),
        row(2, "WS-2", "F:\\portable\\putty.exe", ActionOutcome::Permit),
        row(
            3,
            "WS-1",
            "C:\\Program Files\\App\\app.exe",
            ActionOutcome::Permit,
        ),
    ]);

    let in_rust = Engine::new(EngineConfig::default())?.with_rule(UsbDrive)?;
    let in_toml = Engine::new(toml::from_str::<EngineConfig>(CONFIG)?)?;

    for (how, engine) in [("Rule in Rust", in_rust), ("[[rules.custom]]", in_toml)] {
        let decisions = engine.evaluate(&input);
        println!("{how}:");
        for d in &decisions.detections {
            println!(
                "  [{}] {} on {}: {} (ticket planned: {})",
                d.risk_level,
                d.rule,
                d.device.as_deref().unwrap_or("?"),
                d.reason,
                decisions
                    .tickets
                    .iter()
                    .any(|t| t.detection_keys.contains(&d.key))
            );
        }
    }
    Ok(())
}
