//! Step 9: notifications are sent once per distinct content, retried after a failure, and not
//! sent by a dry run.

use std::sync::Arc;

use chrono::Duration;
use examples::monitor::workflow::RunOptions;
use examples::state::IntentKind;
use psa_connectors::recording::RecordingNotifier;

use super::common::{now, Harness};

#[tokio::test]
async fn notifications_go_out_once_across_overlapping_runs() {
    let h = Harness::story().await;
    let notifier = Arc::new(RecordingNotifier::new());
    let wf = h.workflow("").with_notifier(notifier.clone());
    let out = wf.run(RunOptions::new().now(now())).await.unwrap();
    assert!(out.report.success, "{:?}", out.report.errors);
    let sent = notifier.sent();
    assert!(!sent.is_empty(), "the story's High detections are notified");
    assert!(sent
        .iter()
        .all(|n| n.recipients.iter().any(|r| r == "soc@msp.example")));
    // The next run sees the same incidents: nothing new to tell.
    wf.run(RunOptions::new().now(now() + Duration::minutes(30)))
        .await
        .unwrap();
    assert_eq!(notifier.sent().len(), sent.len());
}

#[tokio::test]
async fn a_failed_notification_fails_the_run_and_is_sent_by_the_rerun() {
    let h = Harness::story().await;
    let notifier = Arc::new(RecordingNotifier::new());
    notifier.fail_next(1);
    let wf = h.workflow("").with_notifier(notifier.clone());
    let out = wf.run(RunOptions::new().now(now())).await.unwrap();
    assert!(!out.report.success);
    assert!(
        out.report.errors.iter().any(|e| e.contains("notifying")),
        "{:?}",
        out.report.errors
    );
    let delivered = notifier.sent().len();
    let out = wf.run(RunOptions::new().now(now())).await.unwrap();
    assert!(out.report.success, "{:?}", out.report.errors);
    assert_eq!(notifier.sent().len(), delivered + 1, "the failed one, once");
}

#[tokio::test]
async fn a_dry_run_notifies_nobody() {
    let h = Harness::story().await;
    let notifier = Arc::new(RecordingNotifier::new());
    let out = h
        .workflow("dry_run = true")
        .with_notifier(notifier.clone())
        .run(RunOptions::new().now(now()))
        .await
        .unwrap();
    assert_eq!(notifier.calls(), 0);
    assert!(out
        .planned_writes
        .iter()
        .any(|w| w.kind == IntentKind::Notification));
}
