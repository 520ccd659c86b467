//! Mapping between the three crates: the engine's plans become connector tickets and
//! notifications, ThreatLocker organizations become PSA companies, risk levels become ticket
//! priorities. Pure functions, so the mapping is tested without any server.

use policy_engine::{PlannedNotification, PlannedTicket, RiskLevel};
use psa_connectors::{Note, Notification, Priority, Severity, Ticket};

use crate::config::CompanyMap;

/// The connector priority for an engine risk level.
pub fn priority(risk: RiskLevel) -> Priority {
    match risk {
        RiskLevel::Low => Priority::Low,
        RiskLevel::Medium => Priority::Medium,
        RiskLevel::High => Priority::High,
        RiskLevel::Critical => Priority::Critical,
    }
}

/// The notification severity for an engine risk level (`None` = informational summary).
pub fn severity(risk: Option<RiskLevel>) -> Severity {
    match risk {
        None | Some(RiskLevel::Low) => Severity::Low,
        Some(RiskLevel::Medium) => Severity::Medium,
        Some(RiskLevel::High) => Severity::High,
        Some(RiskLevel::Critical) => Severity::Critical,
    }
}

/// The PSA ticket for a planned ticket: the dedupe key as the external reference, the board
/// from the organization variables, the company from `[companies]` (the organization's entry,
/// else the catch-all, else the backend's default).
pub fn ticket(planned: &PlannedTicket, companies: &CompanyMap) -> Ticket {
    let mut t = Ticket::new(
        planned.dedupe_key.clone(),
        planned.summary.clone(),
        planned.description.clone(),
    )
    .board(planned.board.clone())
    .priority(priority(planned.risk_level));
    if let Some(company) = planned
        .organization_id
        .as_ref()
        .and_then(|o| companies.company_for(o.as_str()))
    {
        t = t.company(company);
    }
    t
}

/// The internal note added to the incident's ticket when a later run sees it again with newer
/// evidence.
pub fn update_note(planned: &PlannedTicket) -> Note {
    Note::internal(format!(
        "ThreatLocker monitor: this incident was seen again. Current evidence:\n\n{}",
        planned.description
    ))
}

/// The connector notification for a planned one.
pub fn notification(planned: &PlannedNotification) -> Notification {
    let mut n = Notification::new(planned.subject.clone(), planned.body.clone())
        .severity(severity(planned.risk_level));
    if let Some(org) = &planned.organization_name {
        n = n.fact("Organization", org.clone());
    }
    if let Some(risk) = planned.risk_level {
        n = n.fact("Highest risk", risk.as_str());
    }
    if !planned.detection_keys.is_empty() {
        n = n.fact("Detections", planned.detection_keys.len().to_string());
    }
    for r in &planned.recipients {
        n = n.recipient(r.clone());
    }
    n
}

/// A short stable digest (FNV-1a 64, hex) of strings, used in idempotency keys.
pub fn digest<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0x1f)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_risk() {
        assert_eq!(priority(RiskLevel::Low), Priority::Low);
        assert_eq!(priority(RiskLevel::Critical), Priority::Critical);
        assert_eq!(severity(None), Severity::Low);
        assert_eq!(severity(Some(RiskLevel::High)), Severity::High);
    }

    #[test]
    fn digest_is_stable_and_order_sensitive() {
        assert_eq!(digest(["a", "b"]), digest(["a", "b"]));
        assert_ne!(digest(["a", "b"]), digest(["b", "a"]));
        assert_ne!(digest(["ab"]), digest(["a", "b"]));
    }
}
