//! Notifications for organizations without recipients: only when asked for (chat channels).

use policy_engine::Engine;

use crate::support::*;

#[test]
fn organizations_without_recipients_are_notified_only_when_asked() {
    // Two blocks of a LOLBin from a user folder: a High detection, notified immediately.
    let rows = vec![R::new(1)
        .path("c:\\users\\bob\\appdata\\local\\temp\\certutil.exe")
        .block()
        .build()];
    let mut cfg = config();
    cfg.org_variables.threatlocker_notification_recipients = Vec::new();
    let quiet = Engine::new(cfg.clone())
        .unwrap()
        .evaluate(&input(rows.clone()));
    assert!(!quiet.detections.is_empty());
    assert!(quiet.notifications.is_empty());

    cfg.rules.notify_without_recipients = Some(true);
    let chat = Engine::new(cfg).unwrap().evaluate(&input(rows));
    assert!(!chat.notifications.is_empty());
    assert!(chat.notifications.iter().all(|n| n.recipients.is_empty()));
    let keys: Vec<&String> = chat
        .notifications
        .iter()
        .flat_map(|n| &n.detection_keys)
        .collect();
    assert!(keys.contains(&&chat.detections[0].key));
}
