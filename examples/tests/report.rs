//! The daily report and the event-driven triggers (issue 8): report numbers for a known data set
//! in all three formats and equal to the monitoring report's, the HTML parsed by an HTML parser
//! (structure, no script, all text escaped) with hostile data, the state store's activity, the
//! e-mail, the pure trigger decisions, and a triggered approval run against the simulator that
//! permits a new request once.

#[path = "report/support.rs"]
mod support;

#[path = "report/agree.rs"]
mod agree;
#[path = "report/hostile.rs"]
mod hostile;
#[path = "report/numbers.rs"]
mod numbers;
#[path = "report/triggers.rs"]
mod triggers;
