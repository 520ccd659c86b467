//! Pagination as a stream (reference §2.3).
//!
//! A stream owns a client clone and fetches pages lazily, one at a time, as rows are consumed.
//! It stops when:
//! - the server says this is the last page (`currentPage >= totalPages` in the `pagination`
//!   header or the separate `totalPages` header);
//! - a page is shorter than the page size, empty, `null` or an empty body;
//! - a full page brings no row not already seen (a server ignoring `pageNumber`);
//! - the client's page cap (`ClientBuilder::max_pages`) is reached (logged as a warning);
//! - after yielding the first error.
//!
//! Rows repeated across pages (the API pages by offset over a live list, so rows shift) are
//! dropped by id, within the client's de-duplication window.

use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use futures_util::stream::{self, Stream};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::models::{
    ActionLogRow, Application, ApprovalRequest, Computer, MaintenanceWindow, Organization, Page,
    Policy, SystemAuditEntry,
};
use crate::request::PreparedRequest;

/// A row that has an identity for de-duplication across pages.
pub(crate) trait Keyed {
    /// A 64-bit hash of the row's id, or `None` when the row carries no id (never dropped).
    fn key_hash(&self) -> Option<u64>;
}

fn hash_of(tag: u8, v: &impl Hash) -> u64 {
    // Fixed keys: the same id hashes the same in every stream.
    let mut h = std::hash::DefaultHasher::new();
    tag.hash(&mut h);
    v.hash(&mut h);
    h.finish()
}

impl Keyed for ActionLogRow {
    fn key_hash(&self) -> Option<u64> {
        // Same rule as `ActionLogRow::dedupe_key`, without allocating a string per row.
        if let Some(id) = self.action_log_id {
            return Some(hash_of(0, &id.get()));
        }
        self.e_action_log_id
            .as_ref()
            .map(|e| hash_of(1, &e.as_str()))
    }
}

macro_rules! keyed_by {
    ($ty:ty, $field:ident) => {
        impl Keyed for $ty {
            fn key_hash(&self) -> Option<u64> {
                self.$field.as_ref().map(|id| hash_of(2, &id.as_str()))
            }
        }
    };
}

keyed_by!(ApprovalRequest, approval_request_id);
keyed_by!(Computer, computer_id);
keyed_by!(Organization, organization_id);
keyed_by!(Application, application_id);
keyed_by!(Policy, policy_id);
keyed_by!(SystemAuditEntry, system_audit_id);
keyed_by!(MaintenanceWindow, maintenance_mode_id);

/// Remembers the last `window` row ids.
struct Seen {
    window: usize,
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Seen {
    fn new(window: usize) -> Self {
        Self {
            window,
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether the row is new (and remembers it).
    fn insert(&mut self, key: Option<u64>) -> bool {
        let Some(key) = key else { return true };
        if self.window == 0 {
            return true;
        }
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.window {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Decodes one response body into rows.
pub(crate) type DecodeRows<T> = fn(&str, &[u8]) -> Result<Vec<T>>;

struct State<T, F> {
    client: Client,
    make: F,
    decode: DecodeRows<T>,
    page: u32,
    page_size: u32,
    fetched: u32,
    max_pages: u32,
    buffer: std::vec::IntoIter<T>,
    new_on_page: usize,
    page_len: usize,
    done: bool,
    pending_error: Option<Error>,
    seen: Seen,
}

/// Fetches one page: runs `req` and decodes its rows with the pagination metadata.
pub(crate) async fn fetch_page<T>(
    client: &Client,
    req: &PreparedRequest,
    decode: DecodeRows<T>,
) -> Result<Page<T>> {
    let raw = client.execute(req).await?;
    let items = decode(&req.endpoint(), &raw.body)?;
    Ok(Page::new(items, raw.page_meta))
}

/// Streams every row of a paged endpoint. `make(page, page_size)` builds the request for one
/// page; `invalid` is an error to yield instead of sending anything (a request that failed
/// validation).
pub(crate) fn paginate<T, F>(
    client: Client,
    first_page: u32,
    page_size: u32,
    make: F,
    decode: DecodeRows<T>,
    invalid: Option<Error>,
) -> impl Stream<Item = Result<T>> + Send + 'static
where
    T: Keyed + Send + 'static,
    F: Fn(u32, u32) -> PreparedRequest + Send + 'static,
{
    let max_pages = client.inner.max_pages;
    let window = client.inner.dedupe_window;
    let state = State {
        client,
        make,
        decode,
        page: first_page.max(1),
        page_size: page_size.max(1),
        fetched: 0,
        max_pages,
        buffer: Vec::new().into_iter(),
        new_on_page: 0,
        page_len: 0,
        done: false,
        pending_error: invalid,
        seen: Seen::new(window),
    };
    stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.buffer.next() {
                if st.seen.insert(item.key_hash()) {
                    st.new_on_page += 1;
                    return Some((Ok(item), st));
                }
                continue;
            }
            if st.page_len > 0 && st.new_on_page == 0 && st.seen.window > 0 {
                // A whole page of rows already seen: the server is repeating itself.
                tracing::warn!(
                    page = st.page.saturating_sub(1),
                    "a page brought only rows already seen; stopping"
                );
                st.done = true;
            }
            if let Some(e) = st.pending_error.take() {
                st.done = true;
                return Some((Err(e), st));
            }
            if st.done {
                return None;
            }
            if st.fetched >= st.max_pages {
                tracing::warn!(
                    max_pages = st.max_pages,
                    "page cap reached; stopping the stream (raise ClientBuilder::max_pages)"
                );
                return None;
            }
            let req = (st.make)(st.page, st.page_size);
            match fetch_page(&st.client, &req, st.decode).await {
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                Ok(page) => {
                    st.fetched += 1;
                    st.page = st.page.saturating_add(1);
                    if page.is_last(st.page_size) {
                        st.done = true;
                    }
                    st.page_len = page.items.len();
                    st.new_on_page = 0;
                    st.buffer = page.items.into_iter();
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_window_forgets_oldest() {
        let mut s = Seen::new(2);
        assert!(s.insert(Some(1)));
        assert!(!s.insert(Some(1)));
        assert!(s.insert(Some(2)));
        assert!(s.insert(Some(3)));
        // 1 fell out of the window.
        assert!(s.insert(Some(1)));
        assert!(s.insert(None));
        assert!(s.insert(None));
        let mut off = Seen::new(0);
        assert!(off.insert(Some(1)));
        assert!(off.insert(Some(1)));
    }

    #[test]
    fn action_log_key_prefers_numeric_id() {
        let a = ActionLogRow {
            action_log_id: Some(crate::ids::ActionLogId(5)),
            e_action_log_id: Some("x".into()),
            ..ActionLogRow::default()
        };
        let b = ActionLogRow {
            action_log_id: Some(crate::ids::ActionLogId(5)),
            e_action_log_id: Some("y".into()),
            ..ActionLogRow::default()
        };
        assert_eq!(a.key_hash(), b.key_hash());
        let c = ActionLogRow {
            e_action_log_id: Some("x".into()),
            ..ActionLogRow::default()
        };
        assert_ne!(a.key_hash(), c.key_hash());
        assert_eq!(ActionLogRow::default().key_hash(), None);
    }
}
