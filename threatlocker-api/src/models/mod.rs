//! Response and request models.
//!
//! Every model is forward compatible: nearly every field is an `Option` because the API sends
//! `null` for most fields on some rows, unknown fields are kept in `extra` rather than rejected,
//! and the structs are `#[non_exhaustive]` (build them with `Default` and set fields).

mod action_log;
mod applications;
mod approvals;
mod computers;
mod maintenance;
mod organizations;
mod pagination;
mod policies;
mod system_audit;
mod tags;
mod validate;

pub use action_log::*;
pub use applications::*;
pub use approvals::*;
pub use computers::*;
pub use maintenance::*;
pub use organizations::*;
pub use pagination::*;
pub use policies::*;
pub use system_audit::*;
pub use tags::*;
pub use validate::*;

/// Unknown JSON fields kept from a response, by name.
pub type Extra = serde_json::Map<String, serde_json::Value>;
