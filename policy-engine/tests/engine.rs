//! Integration tests of the policy engine: one table per concern, one case per rule.

#[path = "engine/support.rs"]
mod support;

#[path = "engine/accumulator.rs"]
mod accumulator;
#[path = "engine/approvals.rs"]
mod approvals;
#[path = "engine/blocks.rs"]
mod blocks;
#[path = "engine/config.rs"]
mod config;
#[path = "engine/custom.rs"]
mod custom;
#[path = "engine/definitions.rs"]
mod definitions;
#[path = "engine/detections.rs"]
mod detections;
#[path = "engine/investigate.rs"]
mod investigate;
#[path = "engine/notify.rs"]
mod notify;
#[path = "engine/properties.rs"]
mod properties;
#[path = "engine/report.rs"]
mod report;
#[path = "engine/rules.rs"]
mod rules;
#[path = "engine/shared_hash.rs"]
mod shared_hash;
#[path = "engine/tickets.rs"]
mod tickets;
