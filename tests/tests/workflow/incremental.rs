//! Reading the window at MSP scale: a run after another reads only what is new (the previous
//! run's high-water mark minus `[workflow] overlap`) and takes the older hours from the
//! aggregates the state store kept, with the report of a full read of the same window — also
//! when a row arrives late inside the overlap; a row later than the overlap is documented to be
//! missed until a full re-read.

use chrono::{DateTime, Duration, Utc};
use examples::monitor::workflow::{RunOptions, RunOutput};
use examples::sim::SimConfig;
use examples::state::remove_sqlite_files;

use super::common::*;

/// Six organizations, 20 000 generated events over the day, plus the story.
async fn harness() -> Harness {
    let mut sim = SimConfig::scale(6, 20_000, now());
    sim.story = true;
    Harness::start(sim).await
}

/// Copies the state file (and its WAL) so a second run can start from the same state.
fn copy_state(h: &Harness) -> std::path::PathBuf {
    let to = examples::state::scratch_path("workflow-test-copy");
    for suffix in ["", "-wal", "-shm"] {
        let from = format!("{}{suffix}", h.state_path.display());
        if std::path::Path::new(&from).exists() {
            std::fs::copy(&from, format!("{}{suffix}", to.display())).unwrap();
        }
    }
    to
}

async fn run_at(h: &Harness, state: &std::path::Path, at: DateTime<Utc>, full: bool) -> RunOutput {
    let text = h.config_text("").replace(
        &h.state_path.display().to_string(),
        &state.display().to_string(),
    );
    h.workflow_from_text(&text)
        .run(RunOptions::new().now(at).full(full))
        .await
        .expect("the run returns a report")
}

fn report_json(out: &RunOutput) -> String {
    serde_json::to_string_pretty(&out.report).unwrap()
}

/// A generated event of organization 0 with its time in `[from, to)`.
fn event_between(h: &Harness, from: DateTime<Utc>, to: DateTime<Utc>) -> (i64, DateTime<Utc>) {
    let ev = h.portal.dataset().events_in(0, from, to);
    let e = ev.get(ev.len() / 2).expect("an event in the range");
    (e.action_log_id, e.time)
}

#[tokio::test]
async fn a_second_run_reads_what_is_new_and_reports_what_a_full_read_reports() {
    let h = harness().await;
    let t1 = now();
    let first = run_at(&h, &h.state_path, t1, false).await;
    assert!(first.report.success, "{:?}", first.report.errors);
    let bytes_1 = h.portal.stats().action_log_bytes;

    let t2 = t1 + Duration::minutes(30);
    let copy = copy_state(&h);
    let second = run_at(&h, &h.state_path, t2, false).await;
    let bytes_2 = h.portal.stats().action_log_bytes - bytes_1;
    let full = run_at(&h, &copy, t2, true).await;
    remove_sqlite_files(&copy);

    assert!(second.report.success, "{:?}", second.report.errors);
    assert!(second.report.monitoring_summary.total_events > 10_000);
    assert_eq!(report_json(&second), report_json(&full));
    // The overlap (2 h) and the half hour since, plus the window's first half hour: about an
    // eighth of the day.
    assert!(
        bytes_2 * 5 < bytes_1,
        "the second run read {bytes_2} bytes, the first {bytes_1}"
    );
    // What each run received is told apart from the window it reports.
    assert_eq!(
        first.rows_received,
        first.report.monitoring_summary.total_events
    );
    assert_eq!(
        full.rows_received,
        full.report.monitoring_summary.total_events
    );
    assert!(
        second.rows_received * 5 < second.report.monitoring_summary.total_events,
        "{} rows received for a window of {}",
        second.rows_received,
        second.report.monitoring_summary.total_events
    );
}

#[tokio::test]
async fn a_row_arriving_late_inside_the_overlap_is_counted_once() {
    let h = harness().await;
    let t1 = now();
    // Dated an hour before the first run, uploaded after it: inside the 2 h overlap.
    let (late, at) = event_between(&h, t1 - Duration::minutes(70), t1 - Duration::minutes(50));
    assert!(at < t1);
    h.portal.hold_back([late]);
    let first = run_at(&h, &h.state_path, t1, false).await;
    h.portal.release_held_back();

    let t2 = t1 + Duration::minutes(30);
    let copy = copy_state(&h);
    let second = run_at(&h, &h.state_path, t2, false).await;
    let full = run_at(&h, &copy, t2, true).await;
    remove_sqlite_files(&copy);
    assert_eq!(report_json(&second), report_json(&full));
    // A third run right after counts it once still (its hour is re-read, not added to).
    let third = run_at(&h, &h.state_path, t2 + Duration::minutes(1), false).await;
    let full3 = {
        let copy = copy_state(&h);
        let out = run_at(&h, &copy, t2 + Duration::minutes(1), true).await;
        remove_sqlite_files(&copy);
        out
    };
    assert_eq!(
        third.report.monitoring_summary.total_events,
        full3.report.monitoring_summary.total_events
    );
    assert!(first.report.success && second.report.success);
}

#[tokio::test]
async fn a_row_later_than_the_overlap_is_missed_until_a_full_read() {
    let h = harness().await;
    let t1 = now();
    // Dated five hours before the first run: its hour is kept after the first run and, with the
    // 2 h overlap, never re-read by the next.
    let (late, _) = event_between(&h, t1 - Duration::minutes(310), t1 - Duration::minutes(290));
    h.portal.hold_back([late]);
    run_at(&h, &h.state_path, t1, false).await;
    h.portal.release_held_back();

    let t2 = t1 + Duration::minutes(30);
    let copy = copy_state(&h);
    let second = run_at(&h, &h.state_path, t2, false).await;
    let full = run_at(&h, &copy, t2, true).await;
    remove_sqlite_files(&copy);
    assert_eq!(
        second.report.monitoring_summary.total_events + 1,
        full.report.monitoring_summary.total_events,
        "the incremental run misses exactly the row later than the overlap"
    );
    // `run --full` re-reads and keeps the hours again: the next incremental run counts it.
    let after_full = run_at(&h, &h.state_path, t2, true).await;
    let next = run_at(&h, &h.state_path, t2 + Duration::minutes(1), false).await;
    assert_eq!(
        after_full.report.monitoring_summary.total_events,
        full.report.monitoring_summary.total_events
    );
    let copy = copy_state(&h);
    let full_next = run_at(&h, &copy, t2 + Duration::minutes(1), true).await;
    remove_sqlite_files(&copy);
    assert_eq!(report_json(&next), report_json(&full_next));
}
