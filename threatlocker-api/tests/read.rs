//! wiremock tests of the read side: every endpoint's exact request and decoded result, the
//! API's quirks (reference §4.4), pagination, retry and secret handling. One test binary with
//! one module per area.

#[path = "read/common.rs"]
mod common;

#[path = "read/applications.rs"]
mod applications;
#[path = "read/approvals.rs"]
mod approvals;
#[path = "read/audit.rs"]
mod audit;
#[path = "read/computers.rs"]
mod computers;
#[path = "read/misc.rs"]
mod misc;
#[path = "read/organizations.rs"]
mod organizations;
#[path = "read/pagination.rs"]
mod pagination;
#[path = "read/policies.rs"]
mod policies;
#[path = "read/transport.rs"]
mod transport;
#[path = "read/untrusted.rs"]
mod untrusted;
