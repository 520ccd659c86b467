use serde::{Deserialize, Serialize};

/// The JSON carried by the `pagination` response header of list endpoints, e.g.
/// `{"currentPage":1,"itemsPerPage":25,"totalItems":41,"totalPages":2}`. Every field is optional:
/// the header itself is not always sent, and which keys it carries varies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PageMeta {
    /// 1-based number of the page this response holds.
    pub current_page: Option<i64>,
    /// Page size the server applied.
    pub items_per_page: Option<i64>,
    /// Rows across all pages.
    pub total_items: Option<i64>,
    /// Number of pages.
    pub total_pages: Option<i64>,
    /// Index of the first row on this page.
    pub first_item: Option<i64>,
    /// Index of the last row on this page.
    pub last_item: Option<i64>,
}

impl PageMeta {
    /// Parses the `pagination` header value; `None` when it is not valid JSON of this shape.
    pub fn from_header(value: &str) -> Option<Self> {
        serde_json::from_str(value.trim()).ok()
    }

    /// Whether the server says this page is the last one (`currentPage >= totalPages`).
    /// `None` when the header does not carry both numbers.
    pub fn is_last_page(&self) -> Option<bool> {
        Some(self.current_page? >= self.total_pages?)
    }
}

/// One page of a list endpoint: the rows and the pagination metadata the server sent (the
/// `pagination` header, or the separate `totalItems`/`totalPages` headers), if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows, in the order the server sent them.
    pub items: Vec<T>,
    /// Pagination metadata, when the server sent any.
    pub meta: Option<PageMeta>,
}

impl<T> Page<T> {
    /// A page of rows without metadata.
    pub fn new(items: Vec<T>, meta: Option<PageMeta>) -> Self {
        Self { items, meta }
    }

    /// The rows.
    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// The metadata.
    pub fn meta(&self) -> Option<&PageMeta> {
        self.meta.as_ref()
    }

    /// Total rows across all pages, when the server said.
    pub fn total_items(&self) -> Option<i64> {
        self.meta.as_ref()?.total_items
    }

    /// Whether this is the last page, per reference §2.3: the server says so
    /// (`currentPage >= totalPages`), or the page is empty or shorter than `page_size`.
    pub fn is_last(&self, page_size: u32) -> bool {
        self.items.is_empty()
            || self.items.len() < page_size as usize
            || self
                .meta
                .as_ref()
                .and_then(PageMeta::is_last_page)
                .unwrap_or(false)
    }
}

impl<T> IntoIterator for Page<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_header() {
        let m = PageMeta::from_header(
            r#"{"currentPage":1,"itemsPerPage":100,"totalItems":241,"totalPages":3}"#,
        )
        .unwrap();
        assert_eq!(m.total_items, Some(241));
        assert_eq!(m.is_last_page(), Some(false));
        assert_eq!(PageMeta::from_header("{}").unwrap().is_last_page(), None);
        assert!(PageMeta::from_header("not json").is_none());
    }

    #[test]
    fn last_page_rules() {
        let meta = PageMeta::from_header(r#"{"currentPage":3,"totalPages":3}"#);
        assert!(Page::new(vec![1, 2], meta).is_last(2));
        assert!(Page::new(vec![1], None).is_last(2));
        assert!(Page::<i32>::new(vec![], None).is_last(2));
        assert!(!Page::new(vec![1, 2], None).is_last(2));
        let meta = PageMeta::from_header(r#"{"currentPage":1,"totalPages":3}"#);
        assert!(!Page::new(vec![1, 2], meta).is_last(2));
    }
}
