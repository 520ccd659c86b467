//! The three sink traits.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Note, Notification, Result, SiemRecord, Ticket, TicketOutcome, TicketRef};

/// Somewhere tickets live (a PSA).
///
/// Implement the three required methods; [`open_or_update`](TicketSink::open_or_update) gives
/// the dedupe behaviour for free. Object safe: `Arc<dyn TicketSink>` works.
#[async_trait]
pub trait TicketSink: Send + Sync {
    /// The open ticket carrying `external_ref`, if any.
    async fn find_open(&self, external_ref: &str) -> Result<Option<TicketRef>>;

    /// Opens a new ticket carrying `ticket.external_ref`.
    ///
    /// Implementations must not blindly repeat a create whose outcome is unknown; they look
    /// the reference up first.
    async fn create(&self, ticket: &Ticket) -> Result<TicketRef>;

    /// Adds a note to an existing ticket.
    async fn add_note(&self, ticket: &TicketRef, note: &Note) -> Result<()>;

    /// Searches for an open ticket with the same reference: when found, adds `note` to it;
    /// otherwise creates `ticket`. This is what keeps one ticket per incident.
    ///
    /// When the note is refused permanently (the ticket was closed or deleted between the search
    /// and the note, or the API member lost access to it), a new ticket is created so the
    /// alert is not lost. A transient failure (throttling, network, 5xx) is returned instead,
    /// for the caller to retry the whole call later.
    async fn open_or_update(&self, ticket: &Ticket, note: &Note) -> Result<TicketOutcome> {
        match self.find_open(&ticket.external_ref).await? {
            Some(existing) => match self.add_note(&existing, note).await {
                Ok(()) => Ok(TicketOutcome::Updated(existing)),
                Err(e) if !e.is_retryable() && matches!(e.status(), Some(400..=499)) => {
                    tracing::warn!(
                        backend = self.name(),
                        ticket = %existing.id,
                        error = %e,
                        "note refused on the open ticket; opening a new one"
                    );
                    Ok(TicketOutcome::Created(self.create(ticket).await?))
                }
                Err(e) => Err(e),
            },
            None => Ok(TicketOutcome::Created(self.create(ticket).await?)),
        }
    }

    /// Cheap connectivity and credential check (for a `doctor` command).
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Short backend name for logs.
    fn name(&self) -> &str {
        "ticket-sink"
    }
}

/// Somewhere people are told (email, chat).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one notification.
    async fn send(&self, notification: &Notification) -> Result<()>;

    /// Cheap connectivity check (for a `doctor` command). Webhook backends cannot check
    /// without posting a message, so the default does nothing.
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Short backend name for logs.
    fn name(&self) -> &str {
        "notifier"
    }
}

/// Somewhere security events are forwarded (a SIEM).
#[async_trait]
pub trait SiemSink: Send + Sync {
    /// Sends the records in order. Returns only once every byte has been handed to the
    /// transport (written and flushed), so a caller may checkpoint after it.
    async fn send_batch(&self, records: &[SiemRecord]) -> Result<()>;

    /// Cheap connectivity check (for a `doctor` command).
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Records shortened so far to fit the transport's size limit (a UDP datagram); sinks
    /// that never shorten report 0. A caller measures one batch by the difference around
    /// [`SiemSink::send_batch`].
    fn shortened(&self) -> u64 {
        0
    }

    /// Short backend name for logs.
    fn name(&self) -> &str {
        "siem-sink"
    }
}

macro_rules! forward_ticket_sink {
    ($ty:ty) => {
        #[async_trait]
        impl<T: TicketSink + ?Sized> TicketSink for $ty {
            async fn find_open(&self, external_ref: &str) -> Result<Option<TicketRef>> {
                (**self).find_open(external_ref).await
            }
            async fn create(&self, ticket: &Ticket) -> Result<TicketRef> {
                (**self).create(ticket).await
            }
            async fn add_note(&self, ticket: &TicketRef, note: &Note) -> Result<()> {
                (**self).add_note(ticket, note).await
            }
            async fn open_or_update(&self, ticket: &Ticket, note: &Note) -> Result<TicketOutcome> {
                (**self).open_or_update(ticket, note).await
            }
            async fn check(&self) -> Result<()> {
                (**self).check().await
            }
            fn name(&self) -> &str {
                (**self).name()
            }
        }
    };
}

macro_rules! forward_notifier {
    ($ty:ty) => {
        #[async_trait]
        impl<T: Notifier + ?Sized> Notifier for $ty {
            async fn send(&self, notification: &Notification) -> Result<()> {
                (**self).send(notification).await
            }
            async fn check(&self) -> Result<()> {
                (**self).check().await
            }
            fn name(&self) -> &str {
                (**self).name()
            }
        }
    };
}

macro_rules! forward_siem_sink {
    ($ty:ty) => {
        #[async_trait]
        impl<T: SiemSink + ?Sized> SiemSink for $ty {
            async fn send_batch(&self, records: &[SiemRecord]) -> Result<()> {
                (**self).send_batch(records).await
            }
            async fn check(&self) -> Result<()> {
                (**self).check().await
            }
            fn shortened(&self) -> u64 {
                (**self).shortened()
            }
            fn name(&self) -> &str {
                (**self).name()
            }
        }
    };
}

forward_ticket_sink!(Arc<T>);
forward_ticket_sink!(Box<T>);
forward_notifier!(Arc<T>);
forward_notifier!(Box<T>);
forward_siem_sink!(Arc<T>);
forward_siem_sink!(Box<T>);
