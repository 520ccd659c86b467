//! The trigger decisions (tables), the watch loop with an injected clock, and a triggered
//! approval run against the simulator that permits a new request once.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use examples::config::Config;
use examples::monitor::triggers::{
    new_detections, next_daily_run, should_trigger, ClientProbe, Clock, Probe, RunKind, RunSummary,
    Runner, TriggerSettings, Watcher, WorkflowRunner,
};
use examples::monitor::workflow::{RunOptions, Workflow};
use examples::sim::{Dataset, PortalSim, SimConfig, DEMO_API_KEY};
use examples::state::{scratch_path, IntentKind};
use examples::time::parse_time_of_day;
use policy_engine::{Decisions, RiskLevel};

fn ids(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// (name, previous count, count, seen ids, pending ids read, expected)
type TriggerCase<'a> = (
    &'a str,
    Option<i64>,
    i64,
    &'a [&'a str],
    Option<&'a [&'a str]>,
    bool,
);
/// (name, now, local time, zone, expected next run)
type DailyCase<'a> = (&'a str, DateTime<Utc>, &'a str, Tz, DateTime<Utc>);

#[test]
fn should_trigger_table() {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    #[rustfmt::skip]
    let cases: &[TriggerCase] = &[
        ("first poll only sets the baseline",        None,    3, &[],          None,                    false),
        ("count rose",                               Some(2), 3, &[],          None,                    true),
        ("count unchanged",                          Some(3), 3, &[],          None,                    false),
        ("count fell (requests actioned)",           Some(3), 1, &[],          None,                    false),
        ("rose from zero",                           Some(0), 1, &[],          None,                    true),
        ("ids: one not seen, count unchanged",       Some(2), 2, &["a", "b"],  Some(&["a", "c"]),       true),
        ("ids: all seen although the count rose",    Some(1), 2, &["a", "b"],  Some(&["a", "b"]),       false),
        ("ids: first poll with an unseen id",        None,    1, &[],          Some(&["z"]),            true),
        ("ids: none pending",                        Some(1), 0, &["a"],       Some(&[]),               false),
    ];
    for (name, prev, count, seen, pending, want) in cases {
        let pending = pending.map(owned);
        assert_eq!(
            should_trigger(*prev, *count, &ids(seen), pending.as_deref()),
            *want,
            "{name}"
        );
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

#[test]
fn next_daily_run_table_with_dst_changes() {
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let ny: Tz = "America/New_York".parse().unwrap();
    let kathmandu: Tz = "Asia/Kathmandu".parse().unwrap();
    let at = |s: &str| parse_time_of_day("--daily-report-at", s).unwrap();
    #[rustfmt::skip]
    let cases: &[DailyCase] = &[
        ("later today (CEST)",                     utc(2026, 5, 14, 4, 0),   "07:00", berlin, utc(2026, 5, 14, 5, 0)),
        ("exactly now: tomorrow",                  utc(2026, 5, 14, 5, 0),   "07:00", berlin, utc(2026, 5, 15, 5, 0)),
        ("already past: tomorrow",                 utc(2026, 5, 14, 6, 0),   "07:00", berlin, utc(2026, 5, 15, 5, 0)),
        ("across spring forward (CET -> CEST)",    utc(2026, 3, 28, 7, 0),   "07:00", berlin, utc(2026, 3, 29, 5, 0)),
        ("across fall back (CEST -> CET)",         utc(2026, 10, 24, 6, 0),  "07:00", berlin, utc(2026, 10, 25, 6, 0)),
        ("in the spring gap: end of the gap",      utc(2026, 3, 28, 23, 0),  "02:30", berlin, utc(2026, 3, 29, 1, 0)),
        ("twice on fall back: the first",          utc(2026, 10, 24, 22, 0), "02:30", berlin, utc(2026, 10, 25, 0, 30)),
        ("after the first of the two: next day",   utc(2026, 10, 25, 0, 31), "02:30", berlin, utc(2026, 10, 26, 1, 30)),
        ("New York across spring forward",         utc(2026, 3, 7, 13, 0),   "07:00", ny,     utc(2026, 3, 8, 11, 0)),
        ("local date ahead of UTC date",           utc(2026, 5, 14, 0, 0),   "07:00", kathmandu, utc(2026, 5, 14, 1, 15)),
        ("UTC",                                    utc(2026, 5, 14, 7, 1),   "07:00", Tz::UTC, utc(2026, 5, 15, 7, 0)),
    ];
    for (name, now, time, tz, want) in cases {
        assert_eq!(next_daily_run(*now, at(time), *tz), *want, "{name}");
    }
    assert!(parse_time_of_day("--daily-report-at", "7am").is_err());
    assert!(parse_time_of_day("--daily-report-at", "25:00").is_err());
    let e =
        examples::monitor::report::parse_timezone("report.timezone", "Mars/Olympus").unwrap_err();
    assert!(e.to_string().contains("report.timezone"), "{e}");
}

#[test]
fn new_detections_are_high_or_critical_and_unseen() {
    let k = crate::support::known();
    let all: Vec<String> = k
        .decisions
        .detections
        .iter()
        .map(|d| d.key.clone())
        .collect();
    let high: Vec<String> = k
        .decisions
        .detections
        .iter()
        .filter(|d| d.risk_level >= RiskLevel::High)
        .map(|d| d.key.clone())
        .collect();
    assert!(!high.is_empty() && high.len() < all.len());
    assert_eq!(
        new_detections(&k.decisions, &BTreeSet::new(), RiskLevel::High),
        high
    );
    let seen: BTreeSet<String> = high.iter().cloned().collect();
    assert!(new_detections(&k.decisions, &seen, RiskLevel::High).is_empty());
    assert_eq!(
        new_detections(&k.decisions, &BTreeSet::new(), RiskLevel::Low),
        all
    );
}

/// A clock that jumps to the wake-up time at once.
#[derive(Clone)]
struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    fn new(t: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(t)))
    }
    fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
    async fn sleep_until(&self, t: DateTime<Utc>, _max: StdDuration) {
        let mut now = self.0.lock().unwrap();
        if t > *now {
            *now = t;
        }
    }
}

/// A probe answering a scripted sequence of pending approval ids (the count is their
/// number).
struct ScriptedProbe {
    polls: Mutex<Vec<Vec<&'static str>>>,
    current: Mutex<Vec<String>>,
    decisions: Decisions,
}

#[async_trait]
impl Probe for ScriptedProbe {
    async fn approval_count(&self) -> Result<i64, String> {
        let mut polls = self.polls.lock().unwrap();
        if polls.is_empty() {
            return Err("no more polls".into());
        }
        let ids: Vec<String> = polls.remove(0).into_iter().map(str::to_owned).collect();
        let n = ids.len() as i64;
        *self.current.lock().unwrap() = ids;
        Ok(n)
    }
    async fn pending_ids(&self) -> Result<Vec<String>, String> {
        Ok(self.current.lock().unwrap().clone())
    }
    async fn recent_decisions(&self, _: DateTime<Utc>, _: Duration) -> Result<Decisions, String> {
        Ok(self.decisions.clone())
    }
}

#[derive(Default)]
struct RecordingRunner(Mutex<Vec<(RunKind, DateTime<Utc>)>>);

#[async_trait(?Send)]
impl Runner for RecordingRunner {
    async fn run(&self, kind: RunKind, now: DateTime<Utc>) -> Result<RunSummary, String> {
        self.0.lock().unwrap().push((kind, now));
        Ok(RunSummary::default())
    }
}

#[tokio::test]
async fn the_loop_runs_on_the_interval_on_new_requests_on_new_detections_and_daily() {
    let start = utc(2026, 5, 14, 4, 30); // 06:30 in Berlin
    let clock = ManualClock::new(start);
    let k = crate::support::known();
    let probe = ScriptedProbe {
        // One poll a minute: nothing pending; `a` appears; unchanged; `a` actioned and `b`
        // new (the count stays 1); `b` actioned; `b` listed again by a lagging read.
        polls: Mutex::new(vec![
            vec![],
            vec!["a"],
            vec!["a"],
            vec!["b"],
            vec![],
            vec!["b"],
        ]),
        current: Mutex::new(Vec::new()),
        decisions: k.decisions.clone(),
    };
    let mut settings = TriggerSettings::new(StdDuration::from_secs(30 * 60));
    settings.detection_poll = Some(StdDuration::from_secs(5 * 60));
    settings.daily_report_at = Some((
        NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
        "Europe/Berlin".parse().unwrap(),
    ));
    let mut w = Watcher::new(settings, probe, RecordingRunner::default(), clock.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    // Run until 07:02 Berlin time (05:02 UTC).
    while clock.now() < utc(2026, 5, 14, 5, 2) {
        w.run_until(&stop, StdDuration::from_secs(1), Some(1)).await;
        if w.next_wake() > clock.now() {
            clock.sleep_until(w.next_wake(), StdDuration::MAX).await;
        }
    }
    let runs = w.runner().0.lock().unwrap().clone();
    let at = |m: i64| start + Duration::minutes(m);
    let high = k
        .decisions
        .detections
        .iter()
        .filter(|d| d.risk_level >= RiskLevel::High)
        .count();
    assert!(high > 0);
    assert_eq!(
        runs,
        vec![
            (RunKind::Scheduled, at(0)),
            // First detection poll: the High incidents are new.
            (RunKind::Detections, at(0)),
            // A new id is noticed at the poll that first lists it, even when the count
            // did not change.
            (RunKind::Approvals, at(1)),
            (RunKind::Approvals, at(3)),
            // A request listed again after it was gone is looked at again (its intent stops
            // a second permit).
            (RunKind::Approvals, at(5)),
            (RunKind::Scheduled, at(30)),
            (RunKind::DailyReport, at(30)),
        ],
        "the same detections are not ticketed twice; known ids and a falling count trigger nothing"
    );
}

fn env() -> HashMap<String, String> {
    HashMap::from([("THREATLOCKER_API_KEY".to_owned(), DEMO_API_KEY.to_owned())])
}

#[tokio::test]
async fn a_new_approval_request_is_permitted_at_once_and_only_once() {
    let now = Utc::now();
    let portal =
        PortalSim::start(Dataset::generate(SimConfig::story_only(now)), DEMO_API_KEY).await;
    let dir = scratch_path("report-trigger").with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        r#"[threatlocker]
base_url = "{}"
max_requests_per_second = 500

[org_variables]
threatlocker_auto_approve_categories = ["Web Browsers", "Video Conferencing"]

[psa]
kind = "none"

[state]
path = "{}"
"#,
        portal.uri(),
        dir.join("state.db").display()
    );
    let config = Config::from_toml_str(&text, &dir).unwrap();

    // Which request would be auto-approved? Ask a dry run, then hide that one (a technician
    // has it open) so the first scheduled run does not see it.
    let dry = Workflow::from_config_read_only(&config, &env())
        .unwrap()
        .run(RunOptions::new().now(now).dry_run(true))
        .await
        .unwrap();
    let victim = dry
        .planned_writes
        .iter()
        .find(|w| w.kind == IntentKind::Permit)
        .and_then(|w| w.key.strip_prefix("permit:"))
        .expect("the story has an auto-approvable request")
        .to_owned();
    portal.action_elsewhere(&victim, 4, "tech");

    let runner = WorkflowRunner::from_config(&config, &env()).unwrap();
    let client = config.threatlocker_client(&env()).unwrap();
    let probe = ClientProbe::new(client, Arc::new(config.engine().unwrap()), true);
    let clock = ManualClock::new(now);
    let mut w = Watcher::new(
        TriggerSettings::new(StdDuration::from_secs(3600)),
        probe,
        runner,
        clock.clone(),
    );
    let permits_of = |id: &str| {
        portal
            .permits()
            .iter()
            .filter(|p| p.approval_request_id == id)
            .count()
    };

    // The scheduled run, and the approval poll's baseline.
    w.tick().await;
    let after_full = portal.permits().len();
    assert!(
        after_full > 0,
        "the scheduled run permitted the visible requests"
    );
    assert_eq!(permits_of(&victim), 0);

    // The request appears: the count rises, the approval steps run at once.
    portal.action_elsewhere(&victim, 1, "");
    clock.advance(Duration::seconds(60));
    w.tick().await;
    assert_eq!(permits_of(&victim), 1, "permitted at the next poll");
    assert_eq!(
        portal.permits().len(),
        after_full + 1,
        "nothing else permitted again"
    );

    // The next poll sees the count fall (the request was permitted): nothing runs.
    clock.advance(Duration::seconds(60));
    w.tick().await;
    assert_eq!(w.history.len(), 2);

    // ThreatLocker lists it as pending again (a lagging read): the count rises, a second
    // approval run starts, and the state store's intent stops a second permit.
    portal.action_elsewhere(&victim, 1, "");
    clock.advance(Duration::seconds(60));
    w.tick().await;
    let kinds: Vec<RunKind> = w.history.iter().map(|h| h.0).collect();
    assert_eq!(
        kinds,
        vec![RunKind::Scheduled, RunKind::Approvals, RunKind::Approvals]
    );
    assert_eq!(
        permits_of(&victim),
        1,
        "the second trigger does not permit again"
    );
    assert_eq!(portal.permits().len(), after_full + 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_settings_name_the_key_of_a_bad_value() {
    use examples::config::Config;
    use examples::monitor::report::ReportSettings;
    let config = |section: &str| {
        Config::from_toml_str(
            &format!("[threatlocker]\ninstance = \"g\"\n[report]\n{section}\n"),
            std::path::Path::new("/etc/tl"),
        )
        .unwrap()
    };
    let s = ReportSettings::from_config(&config(
        "timezone = \"Europe/Berlin\"\ndaily_report_at = \"07:00\"\ndirectory = \"reports\"\ntop = 5",
    ))
    .unwrap();
    assert_eq!(s.timezone.unwrap().name(), "Europe/Berlin");
    assert_eq!(s.daily_report_at.unwrap().to_string(), "07:00:00");
    assert_eq!(s.top, Some(5));
    assert_eq!(
        s.directory.as_deref(),
        Some(std::path::Path::new("/etc/tl/reports")),
        "relative to the configuration file"
    );
    for (text, key) in [
        ("timezone = \"Nowhere/Land\"", "report.timezone"),
        ("timezone = 3", "report.timezone"),
        ("daily_report_at = \"7 o'clock\"", "report.daily_report_at"),
        ("top = 0", "report.top"),
        ("colour = \"red\"", "report.colour"),
    ] {
        let e = ReportSettings::from_config(&config(text))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
}

/// The detection poll with `detection_denies_only` asks the API for denies only (`actionId` 99):
/// the simulator answers no permit, every block and audit-only deny is still there, and the deny
/// detections are found.
#[tokio::test]
async fn the_deny_only_detection_poll_reads_denies_only() {
    let now = Utc.with_ymd_and_hms(2026, 5, 14, 12, 0, 0).unwrap();
    let portal = PortalSim::start(Dataset::generate(SimConfig::demo(now)), DEMO_API_KEY).await;
    let dir = std::env::temp_dir();
    let text = format!(
        "[threatlocker]\nbase_url = \"{}\"\nmax_requests_per_second = 500\n[psa]\nkind = \"none\"\n",
        portal.uri()
    );
    let config = Config::from_toml_str(&text, &dir).unwrap();
    let engine = Arc::new(config.engine().unwrap());
    let client = config.threatlocker_client(&env()).unwrap();
    let all = ClientProbe::new(client.clone(), Arc::clone(&engine), true)
        .recent_decisions(now, Duration::hours(24))
        .await
        .unwrap();
    let bytes_all = portal.stats().action_log_bytes;
    let denies = ClientProbe::new(client, engine, true)
        .denies_only(true)
        .recent_decisions(now, Duration::hours(24))
        .await
        .unwrap();
    let bytes_denies = portal.stats().action_log_bytes - bytes_all;
    assert!(all.blocks.permits > 0, "the demo data has permits");
    assert_eq!(
        denies.blocks.permits, 0,
        "the server filtered the permits out"
    );
    assert_eq!(denies.blocks.blocks, all.blocks.blocks);
    assert_eq!(denies.blocks.audit_only, all.blocks.audit_only);
    assert_eq!(denies.blocks.repeat_blocks, all.blocks.repeat_blocks);
    assert!(
        bytes_denies < bytes_all / 2,
        "{bytes_denies} of {bytes_all} bytes"
    );
}
