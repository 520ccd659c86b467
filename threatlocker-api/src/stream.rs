//! Pagination as a stream (reference §2.3).
//!
//! A stream owns a client clone and fetches pages lazily, one at a time, as rows are consumed.
//! It stops when:
//! - the server says this is the last page (`currentPage >= totalPages` in the `pagination`
//!   header or the separate `totalPages` header);
//! - a page is shorter than the page size, empty, `null` or an empty body, and the pagination
//!   header (this page's, else the last one seen) does not contradict it;
//! - a full page brings no row not already seen (a server ignoring `pageNumber`);
//! - the client's page cap (`ClientBuilder::max_pages`) is reached (logged as a warning);
//! - after yielding the first error.
//!
//! A page that contradicts the header (empty, `null` or short while the header promises more
//! rows or pages) is fetched again per the client's retry policy; if it stays so the stream
//! fails with [`Error::PageMismatch`] rather than end as if complete, so a caller that keeps a
//! checkpoint never moves it past rows it did not get.
//!
//! Rows repeated across pages (the API pages by offset over a live list, so rows shift) are
//! dropped by id, within the client's de-duplication window.

use std::collections::HashSet;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::client::{Client, RawResponse};
use crate::error::{Error, Result, TransportKind};
use crate::models::{
    ActionLogRow, Application, ApprovalRequest, Computer, MaintenanceWindow, Organization, Page,
    PageMeta, Policy, SystemAuditEntry,
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

/// Hasher for keys that are already 64-bit hashes: passes them through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in case that ever changes.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Remembers recent row ids: at least the last `window` and at most `2 * window`, in two
/// generations. A full current generation becomes the previous one (the older one is
/// dropped), so memory stays bounded without per-row eviction work.
struct Seen {
    window: usize,
    current: IdSet,
    previous: IdSet,
}

type IdSet = HashSet<u64, BuildHasherDefault<PassThrough>>;

impl Seen {
    fn new(window: usize) -> Self {
        Self {
            window,
            current: IdSet::default(),
            previous: IdSet::default(),
        }
    }

    fn contains(&self, key: u64) -> bool {
        self.current.contains(&key) || self.previous.contains(&key)
    }

    /// Whether the row is new (and remembers it).
    fn insert(&mut self, key: Option<u64>) -> bool {
        let Some(key) = key else { return true };
        if self.window == 0 {
            return true;
        }
        if self.contains(key) {
            return false;
        }
        if self.current.len() >= self.window {
            // Reuse the old generation's allocation for the new one.
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
        }
        self.current.insert(key);
        true
    }
}

/// Decodes one response body into rows.
pub(crate) type DecodeRows<T> = fn(&str, &[u8]) -> Result<Vec<T>>;

/// A page being fetched: a spawned task (aborted when dropped) or, outside a tokio runtime,
/// a plain future awaited in place.
type Inflight = Pin<Box<dyn Future<Output = Result<(String, RawResponse)>> + Send>>;

/// A spawned page fetch that is aborted if the stream is dropped first.
struct Prefetch(tokio::task::JoinHandle<Result<(String, RawResponse)>>);

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Future for Prefetch {
    type Output = Result<(String, RawResponse)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined.unwrap_or_else(|e| {
                Err(Error::Transport {
                    kind: TransportKind::Other,
                    endpoint: "page fetch".into(),
                    timed_out_after: None,
                    source: Box::new(e),
                })
            })
        })
    }
}

struct State<T, F> {
    client: Client,
    make: F,
    decode: DecodeRows<T>,
    /// Next page number to request.
    page: u32,
    page_size: u32,
    /// Pages requested so far.
    requested: u32,
    max_pages: u32,
    buffer: std::vec::IntoIter<T>,
    inflight: Option<Inflight>,
    done: bool,
    pending_error: Option<Error>,
    seen: Seen,
    /// The latest pagination header that carried totals.
    promise: Option<PageMeta>,
    /// Fetches of the page being read (more than one after a contradicting page).
    page_attempts: u32,
    /// Keeps only rows the caller asked for (a filter the API cannot apply itself); applied
    /// after pagination decisions, which look at whole pages.
    keep: Option<RowFilter<T>>,
}

/// A client-side row filter.
pub(crate) type RowFilter<T> = Box<dyn Fn(&T) -> bool + Send>;

/// Whether `rows` rows on page `page` (1-based) of `page_size` contradict the pagination header
/// `meta`; if so, what the header promised, in words. Only a shortfall counts: rows added to a
/// live list while paging make pages fuller, never emptier.
pub(crate) fn contradiction(
    meta: &PageMeta,
    page: u32,
    page_size: u32,
    rows: usize,
) -> Option<String> {
    let size = i64::from(page_size);
    let before = i64::from(page.saturating_sub(1)) * size;
    if let Some(total) = meta.total_items {
        let expected = (total - before).clamp(0, size);
        return (i64::try_from(rows).unwrap_or(i64::MAX) < expected)
            .then(|| format!("{expected} rows (totalItems {total}, page size {page_size})"));
    }
    let total_pages = meta.total_pages?;
    let page = i64::from(page);
    if page < total_pages && rows < page_size as usize {
        Some(format!(
            "a full page of {page_size} rows (page {page} of totalPages {total_pages})"
        ))
    } else if page == total_pages && rows == 0 {
        Some(format!(
            "at least one row (page {page} of totalPages {total_pages})"
        ))
    } else {
        None
    }
}

impl<T, F> State<T, F>
where
    T: Keyed + Send + 'static,
    F: Fn(u32, u32) -> PreparedRequest + Send + 'static,
{
    /// Starts fetching the next page, on another task when a runtime is there. The body is
    /// decoded later, on the task that polls the stream: rows are then allocated and freed on
    /// the same thread, which measured faster than decoding on the fetch task.
    fn start(&mut self) -> Inflight {
        let page = self.page;
        self.page = self.page.saturating_add(1);
        self.requested += 1;
        self.page_attempts = 1;
        self.fetch(page, None)
    }

    /// Fetches page `page`, after waiting `delay` when given.
    fn fetch(&self, page: u32, delay: Option<std::time::Duration>) -> Inflight {
        let req = (self.make)(page, self.page_size);
        let client = self.client.clone();
        let fetch = async move {
            if let Some(d) = delay {
                client.inner.sleeper.sleep(d).await;
            }
            let raw = client.execute(&req).await?;
            Ok((req.endpoint(), raw))
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => Box::pin(Prefetch(rt.spawn(fetch))),
            Err(_) => Box::pin(fetch),
        }
    }

    /// Whether a page brings at least one row not seen yet.
    fn has_new_rows(&self, items: &[T]) -> bool {
        self.seen.window == 0
            || items.is_empty()
            || items
                .iter()
                .any(|i| i.key_hash().is_none_or(|k| !self.seen.contains(k)))
    }
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
///
/// Nothing is fetched until the stream is first polled. While the rows of one page are being
/// consumed, the next page (if the current one is not the last) is already being fetched on
/// another task, so the network and decoding overlap; at most two pages are held at once.
pub(crate) fn paginate<T, F>(
    client: Client,
    first_page: u32,
    page_size: u32,
    make: F,
    decode: DecodeRows<T>,
    invalid: Option<Error>,
) -> Paginated<T, F>
where
    T: Keyed + Send + 'static,
    F: Fn(u32, u32) -> PreparedRequest + Send + Unpin + 'static,
{
    let max_pages = client.inner.max_pages;
    let window = client.inner.dedupe_window;
    Paginated(State {
        client,
        make,
        decode,
        page: first_page.max(1),
        page_size: page_size.max(1),
        requested: 0,
        max_pages,
        buffer: Vec::new().into_iter(),
        inflight: None,
        done: false,
        pending_error: invalid,
        seen: Seen::new(window),
        promise: None,
        page_attempts: 0,
        keep: None,
    })
}

/// The stream [`paginate`] returns. A hand-written `poll_next` (rather than `unfold`) hands
/// each row straight from the page buffer to the caller, without moving it through
/// intermediate futures: rows are large and there can be millions.
pub(crate) struct Paginated<T, F>(State<T, F>);

impl<T, F> Paginated<T, F> {
    /// Yields only the rows `keep` accepts (pagination still looks at whole pages).
    pub(crate) fn with_filter(mut self, keep: RowFilter<T>) -> Self {
        self.0.keep = Some(keep);
        self
    }
}

// Rows are never pinned (they sit in a Vec buffer and are handed out by value), so the stream
// is Unpin whatever `T` is.
impl<T, F: Unpin> Unpin for Paginated<T, F> {}

impl<T, F> Stream for Paginated<T, F>
where
    T: Keyed + Send + 'static,
    F: Fn(u32, u32) -> PreparedRequest + Send + Unpin + 'static,
{
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        let st = &mut self.get_mut().0;
        loop {
            if let Some(item) = st.buffer.next() {
                if st.seen.insert(item.key_hash()) && st.keep.as_ref().is_none_or(|k| k(&item)) {
                    return Poll::Ready(Some(Ok(item)));
                }
                continue;
            }
            if let Some(e) = st.pending_error.take() {
                st.done = true;
                return Poll::Ready(Some(Err(e)));
            }
            if st.done {
                return Poll::Ready(None);
            }
            if st.inflight.is_none() {
                if st.requested >= st.max_pages {
                    warn_cap(st.max_pages);
                    st.done = true;
                    return Poll::Ready(None);
                }
                st.inflight = Some(st.start());
            }
            let Some(inflight) = st.inflight.as_mut() else {
                continue;
            };
            let result = match inflight.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r,
            };
            st.inflight = None;
            let result = result.and_then(|(endpoint, raw)| {
                let items = (st.decode)(&endpoint, &raw.body)?;
                Ok((endpoint, Page::new(items, raw.page_meta)))
            });
            match result {
                Err(e) => {
                    st.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Ok((endpoint, page)) => {
                    let number = st.page.saturating_sub(1);
                    if let Some(meta) = page
                        .meta
                        .as_ref()
                        .filter(|m| m.total_items.is_some() || m.total_pages.is_some())
                    {
                        st.promise = Some(meta.clone());
                    }
                    let broken = st
                        .promise
                        .as_ref()
                        .and_then(|m| contradiction(m, number, st.page_size, page.items.len()));
                    if let Some(expected) = broken {
                        let policy = &st.client.inner.retry;
                        if st.page_attempts < policy.max_attempts {
                            let delay = policy.backoff(st.page_attempts, fastrand::f64());
                            tracing::warn!(
                                endpoint = %endpoint,
                                page = number,
                                rows = page.items.len(),
                                expected = %expected,
                                attempt = st.page_attempts,
                                "a page contradicts the pagination header; fetching it again"
                            );
                            st.page_attempts += 1;
                            st.inflight = Some(st.fetch(number, Some(delay)));
                            continue;
                        }
                        st.done = true;
                        return Poll::Ready(Some(Err(Error::PageMismatch {
                            endpoint,
                            page: number,
                            rows: page.items.len(),
                            expected,
                            attempts: st.page_attempts,
                        })));
                    }
                    if !st.has_new_rows(&page.items) {
                        // A whole page of rows already seen: the server is repeating itself.
                        tracing::warn!(
                            page = st.page.saturating_sub(1),
                            "a page brought only rows already seen; stopping"
                        );
                        st.done = true;
                        continue;
                    }
                    if page.is_last(st.page_size) {
                        st.done = true;
                    } else if st.requested < st.max_pages {
                        st.inflight = Some(st.start());
                    } else {
                        warn_cap(st.max_pages);
                        st.done = true;
                    }
                    st.buffer = page.items.into_iter();
                }
            }
        }
    }
}

fn warn_cap(max_pages: u32) {
    tracing::warn!(
        max_pages,
        "page cap reached; stopping the stream (raise ClientBuilder::max_pages)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contradiction_table() {
        let meta = |items: Option<i64>, pages: Option<i64>| PageMeta {
            total_items: items,
            total_pages: pages,
            ..PageMeta::default()
        };
        // (header, page, page size, rows, contradicts)
        let cases = [
            (meta(Some(2000), None), 3, 500, 0, true),
            (meta(Some(2000), None), 3, 500, 499, true),
            (meta(Some(2000), None), 3, 500, 500, false),
            (meta(Some(2000), None), 4, 500, 500, false),
            (meta(Some(2000), None), 5, 500, 0, false),
            (meta(Some(241), None), 3, 100, 41, false),
            (meta(Some(241), None), 3, 100, 40, true),
            // A list that grew while paging: fuller pages are fine.
            (meta(Some(241), None), 3, 100, 100, false),
            (meta(Some(0), None), 1, 100, 0, false),
            (meta(None, Some(3)), 2, 100, 0, true),
            (meta(None, Some(3)), 2, 100, 50, true),
            (meta(None, Some(3)), 3, 100, 50, false),
            (meta(None, Some(3)), 3, 100, 0, true),
            (meta(None, Some(3)), 4, 100, 0, false),
            (meta(None, None), 2, 100, 0, false),
        ];
        for (m, page, size, rows, want) in cases {
            assert_eq!(
                contradiction(&m, page, size, rows).is_some(),
                want,
                "{m:?} page {page} size {size} rows {rows}"
            );
        }
    }

    #[test]
    fn seen_remembers_at_least_the_window() {
        let mut s = Seen::new(2);
        assert!(s.insert(Some(1)));
        assert!(!s.insert(Some(1)));
        assert!(s.insert(Some(2)));
        // The current generation is full: {1, 2} becomes the previous one.
        assert!(s.insert(Some(3)));
        assert!(!s.insert(Some(1)), "still within the last two generations");
        assert!(!s.insert(Some(3)));
        assert!(s.insert(Some(4)));
        assert!(s.insert(Some(5)));
        // {1, 2} was dropped when {3, 4} became the previous generation.
        assert!(s.insert(Some(1)));
        assert!(!s.insert(Some(4)));
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
