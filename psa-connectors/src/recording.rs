//! Recording test doubles, for your own tests of code that uses the sink traits.
//!
//! Each double keeps everything it was given in memory, counts calls, and can be told to fail
//! its next `n` calls with a retryable [`Error::Api`] (HTTP 503).

use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::{
    Error, Note, Notification, Notifier, Result, SiemRecord, SiemSink, Ticket, TicketRef,
    TicketSink,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a test thread must not hide the recorded state from the others.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn injected() -> Error {
    Error::Api {
        backend: "recording",
        status: 503,
        message: "injected failure".to_owned(),
    }
}

fn take_failure(fail_next: &mut u32) -> Result<()> {
    if *fail_next > 0 {
        *fail_next -= 1;
        return Err(injected());
    }
    Ok(())
}

/// A ticket held by [`RecordingTicketSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTicket {
    /// Its reference (ids are `"1"`, `"2"`, ... in creation order; seeded ones keep theirs).
    pub ticket_ref: TicketRef,
    /// The ticket as created (seeded tickets have only the reference filled in).
    pub ticket: Ticket,
    /// Whether it is open.
    pub open: bool,
    /// Notes added to it, in order.
    pub notes: Vec<Note>,
}

#[derive(Debug, Default)]
struct TicketState {
    tickets: Vec<RecordedTicket>,
    next_id: u64,
    find_calls: u32,
    create_calls: u32,
    note_calls: u32,
    fail_next: u32,
}

/// An in-memory [`TicketSink`].
#[derive(Debug, Default)]
pub struct RecordingTicketSink {
    state: Mutex<TicketState>,
}

impl RecordingTicketSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Seeds an open ticket carrying `external_ref` with the given id.
    pub fn with_open_ticket(self, external_ref: &str, id: &str) -> Self {
        lock(&self.state).tickets.push(RecordedTicket {
            ticket_ref: TicketRef::new(id),
            ticket: Ticket::new(external_ref, "", ""),
            open: true,
            notes: Vec::new(),
        });
        self
    }

    /// Makes the next `n` calls (of any method) fail with a retryable error.
    pub fn fail_next(&self, n: u32) {
        lock(&self.state).fail_next = n;
    }

    /// Closes the ticket with this id, so `find_open` no longer returns it.
    pub fn close(&self, id: &str) {
        for t in lock(&self.state).tickets.iter_mut() {
            if t.ticket_ref.id == id {
                t.open = false;
            }
        }
    }

    /// Every ticket, seeded and created, in order.
    pub fn tickets(&self) -> Vec<RecordedTicket> {
        lock(&self.state).tickets.clone()
    }

    /// Notes added to the ticket with this id.
    pub fn notes(&self, id: &str) -> Vec<Note> {
        lock(&self.state)
            .tickets
            .iter()
            .filter(|t| t.ticket_ref.id == id)
            .flat_map(|t| t.notes.clone())
            .collect()
    }

    /// Number of `find_open` calls.
    pub fn find_calls(&self) -> u32 {
        lock(&self.state).find_calls
    }

    /// Number of `create` calls (including failed ones).
    pub fn create_calls(&self) -> u32 {
        lock(&self.state).create_calls
    }

    /// Number of `add_note` calls (including failed ones).
    pub fn note_calls(&self) -> u32 {
        lock(&self.state).note_calls
    }
}

#[async_trait]
impl TicketSink for RecordingTicketSink {
    async fn find_open(&self, external_ref: &str) -> Result<Option<TicketRef>> {
        let mut s = lock(&self.state);
        s.find_calls += 1;
        take_failure(&mut s.fail_next)?;
        Ok(s.tickets
            .iter()
            .find(|t| t.open && t.ticket.external_ref == external_ref)
            .map(|t| t.ticket_ref.clone()))
    }

    async fn create(&self, ticket: &Ticket) -> Result<TicketRef> {
        let mut s = lock(&self.state);
        s.create_calls += 1;
        take_failure(&mut s.fail_next)?;
        s.next_id += 1;
        let mut id = s.next_id;
        while s.tickets.iter().any(|t| t.ticket_ref.id == id.to_string()) {
            id += 1;
        }
        s.next_id = id;
        let ticket_ref = TicketRef::new(id.to_string());
        s.tickets.push(RecordedTicket {
            ticket_ref: ticket_ref.clone(),
            ticket: ticket.clone(),
            open: true,
            notes: Vec::new(),
        });
        Ok(ticket_ref)
    }

    async fn add_note(&self, ticket: &TicketRef, note: &Note) -> Result<()> {
        let mut s = lock(&self.state);
        s.note_calls += 1;
        take_failure(&mut s.fail_next)?;
        match s.tickets.iter_mut().find(|t| t.ticket_ref.id == ticket.id) {
            Some(t) => {
                t.notes.push(note.clone());
                Ok(())
            }
            None => Err(Error::Api {
                backend: "recording",
                status: 404,
                message: format!("no ticket {}", ticket.id),
            }),
        }
    }

    fn name(&self) -> &str {
        "recording"
    }
}

#[derive(Debug, Default)]
struct NotifierState {
    sent: Vec<Notification>,
    calls: u32,
    fail_next: u32,
}

/// An in-memory [`Notifier`].
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    state: Mutex<NotifierState>,
}

impl RecordingNotifier {
    /// An empty notifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` sends fail with a retryable error.
    pub fn fail_next(&self, n: u32) {
        lock(&self.state).fail_next = n;
    }

    /// Notifications delivered, in order.
    pub fn sent(&self) -> Vec<Notification> {
        lock(&self.state).sent.clone()
    }

    /// Number of `send` calls (including failed ones).
    pub fn calls(&self) -> u32 {
        lock(&self.state).calls
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn send(&self, notification: &Notification) -> Result<()> {
        let mut s = lock(&self.state);
        s.calls += 1;
        take_failure(&mut s.fail_next)?;
        s.sent.push(notification.clone());
        Ok(())
    }

    fn name(&self) -> &str {
        "recording"
    }
}

#[derive(Debug, Default)]
struct SiemState {
    records: Vec<SiemRecord>,
    batches: u32,
    fail_next: u32,
}

/// An in-memory [`SiemSink`].
#[derive(Debug, Default)]
pub struct RecordingSiemSink {
    state: Mutex<SiemState>,
}

impl RecordingSiemSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` batches fail (nothing of a failed batch is recorded).
    pub fn fail_next(&self, n: u32) {
        lock(&self.state).fail_next = n;
    }

    /// Records delivered, in order.
    pub fn records(&self) -> Vec<SiemRecord> {
        lock(&self.state).records.clone()
    }

    /// Number of successful batches.
    pub fn batches(&self) -> u32 {
        lock(&self.state).batches
    }
}

#[async_trait]
impl SiemSink for RecordingSiemSink {
    async fn send_batch(&self, records: &[SiemRecord]) -> Result<()> {
        let mut s = lock(&self.state);
        take_failure(&mut s.fail_next)?;
        s.batches += 1;
        s.records.extend_from_slice(records);
        Ok(())
    }

    fn name(&self) -> &str {
        "recording"
    }
}
