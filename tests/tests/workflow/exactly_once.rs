//! Exactly-once side effects across reruns and kills, on both state backends (SQLite and
//! PostgreSQL).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::Duration;
use examples::monitor::workflow::{RunOptions, WorkflowError};
use examples::state::{IntentKind, IntentState};
use serde_json::json;

use super::common::{assert_unique, now, Backend, Harness};

/// A hook that "kills" the run right after the `n`-th side effect (1-based) has been performed
/// remotely and before its result is written to the state store.
fn kill_at(
    n: usize,
) -> (
    examples::monitor::workflow::AfterEffectHook,
    Arc<AtomicUsize>,
) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let hook: examples::monitor::workflow::AfterEffectHook =
        Arc::new(move |_kind: IntentKind, _key: &str| {
            counter.fetch_add(1, Ordering::SeqCst) + 1 == n
        });
    (hook, seen)
}

async fn a_rerun_repeats_no_side_effect(b: Backend) {
    let h = Harness::story_on(b).await;
    let wf = h.workflow("");
    let first = wf.run(RunOptions::new().now(now())).await.unwrap();
    assert!(first.report.success);
    let tickets = h.ticket_refs();
    assert_eq!(tickets.len(), 7);
    assert_eq!(first.report.blocked_summary.tickets_created, 7);

    let second = wf
        .run(RunOptions::new().now(now() + Duration::minutes(30)))
        .await
        .unwrap();
    assert!(second.report.success, "{:?}", second.report.errors);
    assert_eq!(h.ticket_refs(), tickets, "no ticket opened twice");
    assert_eq!(second.report.blocked_summary.tickets_created, 0);
    // The same incidents still point at their tickets.
    assert_eq!(
        second
            .report
            .security_events
            .iter()
            .filter(|e| e.ticket_id.is_some())
            .count(),
        second.report.security_events.len()
    );
    // The three permitted requests are no longer pending; nothing is permitted twice.
    assert_eq!(second.report.monitoring_summary.approval_requests, 3);
    assert_eq!(second.report.auto_approvals_processed, 0);
    assert_eq!(h.portal.permits().len(), 3);
    assert_eq!(h.psa.create_calls(), 7);
    let state = h.open_state();
    assert_eq!(state.windows_done().unwrap(), 2);
    assert!(state.unfinished_intents().unwrap().is_empty());
}

async fn killed_between_the_psa_answer_and_the_state_write_the_rerun_opens_no_duplicate(
    b: Backend,
) {
    let h = Harness::story_on(b).await;
    let (hook, _) = kill_at(1);
    // Ticket side effects only: kill right after the first ticket was created in the PSA.
    let wf = h
        .workflow("process_approvals = false")
        .with_after_effect_hook(hook);
    let err = wf.run(RunOptions::new().now(now())).await.unwrap_err();
    let WorkflowError::Killed { kind, key } = err else {
        panic!("expected the test kill, got {err}")
    };
    assert_eq!(kind, IntentKind::Ticket);
    // Tickets are opened a few at a time: the killed one and possibly some in flight with it.
    let before = h.psa.tickets().len();
    assert!(
        (1..7).contains(&before),
        "the PSA answered before the kill ({before})"
    );
    {
        let state = h.open_state();
        let intent = state.intent(&key).unwrap().unwrap();
        assert_eq!(
            intent.state,
            IntentState::Intended,
            "the kill came before the state write"
        );
    }
    drop(wf);

    // The rerun (a new process: a new workflow on the same state file).
    let rerun = h.workflow("process_approvals = false");
    let out = rerun.run(RunOptions::new().now(now())).await.unwrap();
    assert!(out.report.success, "{:?}", out.report.errors);
    let refs = h.ticket_refs();
    assert_unique(&refs);
    assert_eq!(refs.len(), 7);
    assert_eq!(
        h.psa.create_calls(),
        7,
        "the interrupted ticket was found, not created again"
    );
    let state = h.open_state();
    let intent = state.intent(&key).unwrap().unwrap();
    assert_eq!(intent.state, IntentState::Done);
    // The rerun found the interrupted ticket by its external reference.
    let killed_ref = key.strip_prefix("ticket:").unwrap();
    let ticket = h
        .psa
        .tickets()
        .into_iter()
        .find(|t| t.external_xref.as_deref() == Some(killed_ref))
        .unwrap();
    assert_eq!(
        intent.result.as_deref(),
        Some(ticket.id.to_string().as_str())
    );
}

async fn killed_after_a_permit_the_rerun_reconciles_by_rereading_the_status(b: Backend) {
    let h = Harness::story_on(b).await;
    let (hook, _) = kill_at(1);
    let wf = h
        .workflow("create_tickets = false")
        .with_after_effect_hook(hook);
    let err = wf.run(RunOptions::new().now(now())).await.unwrap_err();
    assert!(
        matches!(
            err,
            WorkflowError::Killed {
                kind: IntentKind::Permit,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(h.portal.permits().len(), 1);

    let out = h.run("create_tickets = false").await;
    assert!(out.report.success, "{:?}", out.report.errors);
    // The killed permit was not sent again; the other two were sent once.
    let permits = h.portal.permits();
    assert_eq!(permits.len(), 3);
    let ids: std::collections::BTreeSet<&str> = permits
        .iter()
        .map(|p| p.approval_request_id.as_str())
        .collect();
    assert_eq!(ids.len(), 3);
    let state = h.open_state();
    let reconciled = state
        .intents(Some(IntentKind::Permit), Some(IntentState::Done))
        .unwrap()
        .into_iter()
        .filter(|i| i.result.as_deref() == Some("approved (reconciled)"))
        .count();
    assert_eq!(reconciled, 1);
    // Deploys happened for both organizations (the rerun deploys what the killed run could not).
    assert!(!h.portal.deploys().is_empty());
}

async fn killed_at_any_side_effect_the_rerun_ends_with_each_effect_done_once(b: Backend) {
    // A clean run performs: 3 permits, 7 tickets, 3 deploys.
    let total = {
        let h = Harness::story_on(b).await;
        let (hook, seen) = kill_at(usize::MAX);
        h.workflow("")
            .with_after_effect_hook(hook)
            .run(RunOptions::new().now(now()))
            .await
            .unwrap();
        seen.load(Ordering::SeqCst)
    };
    assert_eq!(total, 13);
    for n in 1..=total {
        let h = Harness::story_on(b).await;
        let (hook, _) = kill_at(n);
        let killed = h
            .workflow("")
            .with_after_effect_hook(hook)
            .run(RunOptions::new().now(now()))
            .await;
        assert!(
            matches!(killed, Err(WorkflowError::Killed { .. })),
            "kill at {n}"
        );
        let out = h.run("").await;
        assert!(out.report.success, "kill at {n}: {:?}", out.report.errors);
        let refs = h.ticket_refs();
        assert_unique(&refs);
        assert_eq!(refs.len(), 7, "kill at {n}");
        assert_eq!(h.psa.create_calls(), 7, "kill at {n}: no create repeated");
        let mut permitted: Vec<String> = h
            .portal
            .permits()
            .into_iter()
            .map(|p| p.approval_request_id)
            .collect();
        permitted.sort();
        permitted.dedup();
        assert_eq!(permitted.len(), 3, "kill at {n}");
        assert_eq!(
            h.portal.permits().len(),
            3,
            "kill at {n}: no permit sent twice"
        );
        let state = h.open_state();
        assert!(
            state.unfinished_intents().unwrap().is_empty(),
            "kill at {n}"
        );
    }
}

async fn an_intent_recorded_before_a_crash_is_completed_once(b: Backend) {
    let h = Harness::story_on(b).await;
    // A crash right after the intent was recorded, before the permit was sent.
    let zoom = h
        .portal
        .dataset()
        .approvals
        .iter()
        .find(|a| a.app == examples::sim::data::app::ZOOM)
        .unwrap()
        .id
        .clone();
    {
        let state = h.open_state();
        state
            .begin_intent(
                IntentKind::Permit,
                &format!("permit:{zoom}"),
                &json!({}),
                None,
            )
            .unwrap();
    }
    let out = h.run("").await;
    assert!(out.report.success, "{:?}", out.report.errors);
    assert_eq!(
        h.portal
            .permits()
            .iter()
            .filter(|p| p.approval_request_id == zoom)
            .count(),
        1
    );
    assert_eq!(h.portal.approval_status(&zoom), Some(4));
}

async fn a_request_actioned_by_a_technician_meanwhile_is_left_alone(b: Backend) {
    let h = Harness::story_on(b).await;
    let (hook, _) = kill_at(1);
    let wf = h
        .workflow("create_tickets = false")
        .with_after_effect_hook(hook);
    assert!(wf.run(RunOptions::new().now(now())).await.is_err());
    // Before the rerun, a technician rejects the other auto-approvable request in the portal.
    let permitted = h.portal.permits()[0].approval_request_id.clone();
    let other = h
        .portal
        .dataset()
        .approvals
        .iter()
        .filter(|a| {
            matches!(
                a.app,
                examples::sim::data::app::ZOOM
                    | examples::sim::data::app::CHROMESETUP
                    | examples::sim::data::app::FIREFOXSETUP
            )
        })
        .map(|a| a.id.clone())
        .find(|id| *id != permitted)
        .unwrap();
    h.portal.action_elsewhere(&other, 10, "tech@msp.example");
    let out = h.run("create_tickets = false").await;
    assert!(out.report.success, "{:?}", out.report.errors);
    // The third auto-approvable request was permitted; the rejected one was not.
    assert_eq!(h.portal.permits().len(), 2);
    assert!(
        h.portal
            .permits()
            .iter()
            .all(|p| p.approval_request_id != other),
        "the rejected request was not permitted"
    );
    assert_eq!(h.portal.approval_status(&other), Some(10));
}

async fn a_lost_state_file_does_not_duplicate_tickets(b: Backend) {
    let h = Harness::story_on(b).await;
    h.workflow("")
        .run(RunOptions::new().now(now()))
        .await
        .unwrap();
    assert_eq!(h.ticket_refs().len(), 7);
    h.lose_state();
    let out = h.run("").await;
    assert!(out.report.success, "{:?}", out.report.errors);
    assert_eq!(
        h.ticket_refs().len(),
        7,
        "found in the PSA by external reference"
    );
    assert_eq!(out.report.blocked_summary.tickets_created, 0);
    assert_eq!(h.psa.create_calls(), 7);
}

async fn newer_evidence_adds_one_note_to_the_open_ticket(b: Backend) {
    let h = Harness::story_on(b).await;
    let wf = h.workflow("process_approvals = false");
    // 150 minutes earlier, three of the four AnyDesk blocks had happened: a repeat block (and
    // the uTorrent one on the MSP's own workstation).
    let early = wf
        .run(RunOptions::new().now(now() - Duration::minutes(150)))
        .await
        .unwrap();
    assert_eq!(early.report.blocked_summary.repeat_blocks, 2);
    let before = h.psa.tickets();
    let anydesk = before
        .iter()
        .find(|t| t.summary.contains("Repeat block on CONTOSO-WS02"))
        .expect("repeat-block ticket")
        .clone();
    // Now the fourth block is in the window: the same incident, newer evidence.
    wf.run(RunOptions::new().now(now())).await.unwrap();
    wf.run(RunOptions::new().now(now() + Duration::minutes(5)))
        .await
        .unwrap();
    let after = h.psa.tickets();
    let same = after.iter().find(|t| t.id == anydesk.id).unwrap();
    assert_eq!(
        same.notes.len(),
        1,
        "one note for the newer evidence, none for a repeat"
    );
    assert_eq!(
        after
            .iter()
            .filter(|t| t.external_xref == anydesk.external_xref)
            .count(),
        1
    );
}

crate::on_both_backends!(
    a_rerun_repeats_no_side_effect,
    killed_between_the_psa_answer_and_the_state_write_the_rerun_opens_no_duplicate,
    killed_after_a_permit_the_rerun_reconciles_by_rereading_the_status,
    killed_at_any_side_effect_the_rerun_ends_with_each_effect_done_once,
    an_intent_recorded_before_a_crash_is_completed_once,
    a_request_actioned_by_a_technician_meanwhile_is_left_alone,
    a_lost_state_file_does_not_duplicate_tickets,
    newer_evidence_adds_one_note_to_the_open_ticket,
);
