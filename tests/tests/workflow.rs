//! End-to-end tests of the monitoring workflow (`examples::monitor::workflow`) against the simulated
//! ThreatLocker Portal API and ConnectWise PSA: report numbers for a known data set,
//! exactly-once across reruns and kills, dry runs that write nothing, and resilience to 429
//! storms and failing pages. One test binary; each behaviour is a module.

mod workflow {
    pub mod common;
    mod dry_run;
    mod exactly_once;
    mod incidents;
    mod incremental;
    mod notify;
    mod report;
    mod resilience;
    mod switches;
    mod tenant;
}
