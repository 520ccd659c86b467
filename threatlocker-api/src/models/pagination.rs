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
}
