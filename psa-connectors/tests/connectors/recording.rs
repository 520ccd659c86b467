//! The recording doubles and the provided `open_or_update`, through trait objects.

use std::sync::Arc;

use psa_connectors::recording::{RecordingNotifier, RecordingSiemSink, RecordingTicketSink};
use psa_connectors::{Note, Notification, Notifier, SiemRecord, SiemSink, Ticket, TicketSink};

#[tokio::test]
async fn open_or_update_creates_once_then_notes() {
    let sink = Arc::new(RecordingTicketSink::new());
    let dyn_sink: Arc<dyn TicketSink> = sink.clone();
    let boxed: Box<dyn TicketSink> = Box::new(sink.clone());
    let ticket = Ticket::new("k1", "s", "d");
    let first = dyn_sink
        .open_or_update(&ticket, &Note::internal("one"))
        .await
        .unwrap();
    let second = boxed
        .open_or_update(&ticket, &Note::internal("two"))
        .await
        .unwrap();
    assert!(first.is_created());
    assert!(!second.is_created());
    assert_eq!(first.ticket(), second.ticket());
    assert_eq!(sink.create_calls(), 1);
    assert_eq!(sink.find_calls(), 2);
    assert_eq!(sink.notes(&first.ticket().id), vec![Note::internal("two")]);
    assert_eq!(boxed.name(), "recording");

    // A closed ticket is not reused.
    sink.close(&first.ticket().id);
    let third = dyn_sink
        .open_or_update(&ticket, &Note::internal("three"))
        .await
        .unwrap();
    assert!(third.is_created());
    assert_ne!(third.ticket(), first.ticket());
}

#[tokio::test]
async fn seeded_tickets_are_found_and_failures_can_be_injected() {
    let sink = RecordingTicketSink::new().with_open_ticket("k2", "500");
    sink.fail_next(1);
    let err = sink
        .open_or_update(&Ticket::new("k2", "s", "d"), &Note::internal("n"))
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    let outcome = sink
        .open_or_update(&Ticket::new("k2", "s", "d"), &Note::internal("n"))
        .await
        .unwrap();
    assert_eq!(outcome.ticket().id, "500");
    assert_eq!(sink.create_calls(), 0);
    // New ids never collide with seeded ones.
    let sink = RecordingTicketSink::new().with_open_ticket("x", "1");
    let created = sink.create(&Ticket::new("y", "s", "d")).await.unwrap();
    assert_eq!(created.id, "2");
}

#[tokio::test]
async fn notifier_and_siem_doubles_record_in_order() {
    let n = Arc::new(RecordingNotifier::new());
    let as_dyn: Arc<dyn Notifier> = n.clone();
    n.fail_next(1);
    assert!(as_dyn.send(&Notification::new("a", "b")).await.is_err());
    as_dyn.send(&Notification::new("c", "d")).await.unwrap();
    assert_eq!(n.sent().len(), 1);
    assert_eq!(n.sent()[0].subject, "c");
    assert_eq!(n.calls(), 2);

    let s = RecordingSiemSink::new();
    let rec = SiemRecord::new(chrono::Utc::now(), 5, "sig", "name");
    s.fail_next(1);
    assert!(s.send_batch(std::slice::from_ref(&rec)).await.is_err());
    s.send_batch(&[rec.clone(), rec]).await.unwrap();
    assert_eq!(s.records().len(), 2);
    assert_eq!(s.batches(), 1);
    let boxed: Box<dyn SiemSink> = Box::new(s);
    boxed.check().await.unwrap();
}
