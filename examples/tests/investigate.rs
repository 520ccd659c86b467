//! End-to-end tests of `tl-investigate` and `siem-forward`: the binaries and the forwarder run
//! against a wiremock Portal API serving a known data set, and syslog listeners in the test.

#[path = "investigate/data.rs"]
mod data;
#[path = "investigate/forward.rs"]
mod forward;
#[path = "investigate/investigations.rs"]
mod investigations;
