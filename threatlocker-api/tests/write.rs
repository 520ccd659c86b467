//! The write side of the client against wiremock: exact bodies (reference Appendix A), call
//! order of the permit flow, and one test per safety rule.
#![cfg(feature = "client")]

mod write {
    pub mod common;

    mod applications;
    mod dry_run;
    mod maintenance;
    mod permit_body;
    mod permit_flow;
    mod policies;
    mod reject;
    mod reset;
    mod safety;
}
