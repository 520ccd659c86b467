//! `build_permit_body` as a pure function, against Appendix A.4 and the scope/rule/choice rules.

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use threatlocker_api::{
    build_permit_body, AdminNotes, ApplicationChoice, ApplicationId, ApprovalRequest,
    ComputerGroupId, Error, MatchingList, PermitOptions, PermitResponse, PermitRule, PermitScope,
};

use super::common::*;

fn request() -> ApprovalRequest {
    serde_json::from_value(fixture("approval_pending.json")).unwrap()
}

/// The matching list as the model holds it (one name key per row).
fn matching(name: &str) -> MatchingList {
    let mut v = fixture(name);
    for app in v["matchingApplications"].as_array_mut().unwrap() {
        app.as_object_mut().unwrap().remove("applicationName");
    }
    serde_json::from_value(v).unwrap()
}

fn build(opts: &PermitOptions, matching_fixture: &str) -> Result<Value, Error> {
    build_permit_body(
        &fixture("permit_dto.json"),
        &request(),
        &matching(matching_fixture),
        opts,
    )
}

#[test]
fn computer_scope_tenant_app_is_exactly_appendix_a4() {
    let body = build(&a4_options(), "matching_tenant_and_master.json").unwrap();
    assert_eq!(body, expected_a4_body());
}

#[test]
fn every_key_of_a4_is_sent_with_a4s_value() {
    let body = build(&a4_options(), "matching_tenant_and_master.json").unwrap();
    let a4 = fixture("permit_a4.json");
    for (k, v) in a4.as_object().unwrap() {
        assert_eq!(body.get(k), Some(v), "key {k}");
    }
}

#[test]
fn every_key_the_server_sent_is_round_tripped_including_nulls() {
    let mut dto = fixture("permit_dto.json");
    dto["someFutureField"] = Value::Null;
    dto["fileDetails"]["certificates"] = json!(null);
    dto["policyLevel"]["canUseEntireOrganization"] = json!(true);
    let body = build_permit_body(
        &dto,
        &request(),
        &matching("matching_tenant_and_master.json"),
        &PermitOptions::default(),
    )
    .unwrap();
    assert_eq!(body.get("someFutureField"), Some(&Value::Null));
    assert_eq!(body["fileDetails"].get("certificates"), Some(&Value::Null));
    assert_eq!(body["policyLevel"]["canUseEntireOrganization"], json!(true));
    for k in dto.as_object().unwrap().keys() {
        assert!(body.get(k).is_some(), "dropped key {k}");
    }
}

#[test]
fn approval_request_json_is_copied_verbatim() {
    let mut dto = fixture("permit_dto.json");
    dto["approvalRequest"] = Value::Null;
    let req = request();
    let body = build_permit_body(
        &dto,
        &req,
        &matching("matching_tenant_and_master.json"),
        &PermitOptions::default(),
    )
    .unwrap();
    assert_eq!(
        body["approvalRequest"]["json"].as_str(),
        req.json.as_deref(),
        "the json string must be byte-identical"
    );
    assert_eq!(
        body["approvalRequest"]["approvalRequestId"],
        json!(REQUEST_ID)
    );
}

#[test]
fn missing_json_everywhere_is_refused() {
    let mut dto = fixture("permit_dto.json");
    dto["approvalRequest"]["json"] = Value::Null;
    let mut req = request();
    req.json = None;
    let err = build_permit_body(
        &dto,
        &req,
        &matching("matching_tenant_and_master.json"),
        &PermitOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("json"), "{err}");
}

#[test]
fn scope_table() {
    let group = ComputerGroupId::from("5e4d3c2b-4444-4a1b-9c8d-7e6f5a4b3c2d");
    let cases = [
        (
            PermitScope::Computer,
            json!({"toEntireOrganization": false, "toComputerGroup": false, "selectedComputerGroup": null, "toComputer": false}),
        ),
        (
            PermitScope::EntireOrganization,
            json!({"toEntireOrganization": true, "toComputerGroup": false, "selectedComputerGroup": null, "toComputer": false}),
        ),
        (
            PermitScope::ComputerGroup(group.clone()),
            json!({"toEntireOrganization": false, "toComputerGroup": true,
                   "selectedComputerGroup": {"computerGroupId": group.as_str(), "organizationId": ORG, "osType": 1},
                   "toComputer": false}),
        ),
    ];
    for (scope, want) in cases {
        let body = build(
            &PermitOptions::default().scope(scope.clone()),
            "matching_tenant_and_master.json",
        )
        .unwrap();
        assert_eq!(body["policyLevel"], want, "{scope:?}");
    }
}

#[test]
fn rule_and_expiry_table() {
    let at = Utc.with_ymd_and_hms(2026, 6, 14, 0, 0, 0).unwrap();
    let cases = [
        (PermitOptions::default(), 0, Value::Null),
        (
            PermitOptions::default().rule(PermitRule::InstallationMode),
            1,
            Value::Null,
        ),
        (
            PermitOptions::default().rule(PermitRule::LearningMode),
            2,
            Value::Null,
        ),
        (
            PermitOptions::default().rule(PermitRule::MonitorMode),
            3,
            Value::Null,
        ),
        (
            PermitOptions::default().expires_at(at),
            0,
            json!("2026-06-14T00:00:00Z"),
        ),
    ];
    for (opts, rule, expiry) in cases {
        let body = build(&opts, "matching_tenant_and_master.json").unwrap();
        assert_eq!(body["policyConditions"]["ruleId"], json!(rule));
        assert_eq!(body["policyExpirationDate"], expiry);
        // The rest of policyConditions is kept.
        assert_eq!(body["policyConditions"]["manualOptions"], json!([]));
    }
}

#[test]
fn elevation_flags_follow_the_action() {
    for (action, elevate, execute) in [
        ("execute", false, true),
        ("elevate", true, false),
        ("install", false, true),
    ] {
        let mut req = request();
        req.action_type = Some(action.into());
        let body = build_permit_body(
            &fixture("permit_dto.json"),
            &req,
            &matching("matching_tenant_and_master.json"),
            &PermitOptions::default(),
        )
        .unwrap();
        assert_eq!(body["actionType"], json!(action));
        assert_eq!(body["isElevationRequest"], json!(elevate), "{action}");
        assert_eq!(body["isExecutionRequest"], json!(execute), "{action}");
    }
}

#[test]
fn matching_prefers_the_tenant_application_over_master() {
    let body = build(
        &PermitOptions::default().scope(PermitScope::Computer),
        "matching_tenant_and_master.json",
    )
    .unwrap();
    let app = &body["matchingApplications"]["matchingApplication"];
    assert_eq!(app["organizationName"], json!("Contoso Dental"));
    assert_eq!(
        app["applicationId"],
        json!("7c6b5a49-5555-4d3c-8b2a-1f0e9d8c7b6a")
    );
}

#[test]
fn built_in_application_without_org_scope_is_refused() {
    for scope in [
        PermitScope::Computer,
        PermitScope::ComputerGroup(ComputerGroupId::from("5e4d3c2b")),
    ] {
        let err = build(
            &PermitOptions::default().scope(scope),
            "matching_master_only.json",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
        assert!(text.contains("EntireOrganization"), "{text}");
        assert!(text.contains("401"), "names the misleading 401: {text}");
    }
    // The same permit for the entire organization is fine, and keeps the server's extra keys.
    let body = build(
        &PermitOptions::default().scope(PermitScope::EntireOrganization),
        "matching_master_only.json",
    )
    .unwrap();
    assert_eq!(body["policyLevel"]["toEntireOrganization"], json!(true));
    assert_eq!(
        body["matchingApplications"]["matchingApplication"]["isMaintained"],
        json!(true)
    );
    assert_eq!(
        body["matchingApplications"]["matchingApplication"]["suggestedPolicyId"],
        Value::Null
    );
}

#[test]
fn matching_id_picks_that_application_and_built_in_rule_still_applies() {
    let id = ApplicationId::from("0f0e0d0c-9999-4b0a-8c0d-0e0f00000001");
    let err = build(
        &PermitOptions::default().application(ApplicationChoice::MatchingId(id.clone())),
        "matching_tenant_and_master.json",
    )
    .unwrap_err();
    assert!(err.to_string().contains("built-in"), "{err}");
    let missing = build(
        &PermitOptions::default().application(ApplicationChoice::MatchingId("nope".into())),
        "matching_tenant_and_master.json",
    )
    .unwrap_err();
    assert!(
        missing.to_string().contains("not in the matching list"),
        "{missing}"
    );
}

#[test]
fn existing_and_new_application_choices() {
    let id = ApplicationId::from("11111111-2222-4333-8444-555555555555");
    let body = build(
        &PermitOptions::default().application(ApplicationChoice::Existing(id.clone())),
        "matching_tenant_and_master.json",
    )
    .unwrap();
    assert_eq!(
        body["matchingApplications"],
        json!({
            "hasMatchingApplication": true,
            "useMatchingApplication": false, "matchingApplication": null,
            "useExistingApplication": true, "existingApplication": {"applicationId": id.as_str()},
            "useNewApplication": false, "newApplicationName": null
        })
    );
    let body = build(
        &PermitOptions::default().application(ApplicationChoice::New("Zoom Installer".into())),
        "matching_tenant_and_master.json",
    )
    .unwrap();
    assert_eq!(
        body["matchingApplications"]["useNewApplication"],
        json!(true)
    );
    assert_eq!(
        body["matchingApplications"]["newApplicationName"],
        json!("Zoom Installer")
    );
    assert_eq!(
        body["matchingApplications"]["matchingApplication"],
        Value::Null
    );

    let err = build(
        &PermitOptions::default().application(ApplicationChoice::New("  ".into())),
        "matching_tenant_and_master.json",
    )
    .unwrap_err();
    assert!(err.to_string().contains("Must enter a name"), "{err}");
}

#[test]
fn no_match_with_matching_choice_is_a_clear_error() {
    let err = build_permit_body(
        &fixture("permit_dto.json"),
        &request(),
        &MatchingList::default(),
        &PermitOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("ApplicationChoice::New"), "{err}");
}

#[test]
fn response_ringfence_notes_and_overrides() {
    let opts = PermitOptions::default()
        .ringfence(true)
        .response(PermitResponse::new(
            "Approved",
            "Zoom is allowed on this computer",
        ))
        .admin_notes(AdminNotes::default().requestor_email("jsmith@contoso.example"))
        .set_field("/elevationStatus", 1)
        .set_field("/fileDetails/processPath", "c:\\windows\\explorer.exe");
    let body = build(&opts, "matching_tenant_and_master.json").unwrap();
    assert_eq!(body["isRingfenced"], json!(true));
    assert_eq!(body["responseSubject"], json!("Approved"));
    assert_eq!(
        body["responseReason"],
        json!("Zoom is allowed on this computer")
    );
    assert_eq!(body["notifyOnResponse"], json!(true));
    assert_eq!(
        body["adminNotes"]["requestorEmail"],
        json!("jsmith@contoso.example")
    );
    assert_eq!(
        body["approvalRequest"]["requestorEmailAddress"],
        json!("jsmith@contoso.example")
    );
    assert_eq!(body["elevationStatus"], json!(1));
    assert_eq!(
        body["fileDetails"]["processPath"],
        json!("c:\\windows\\explorer.exe")
    );

    let bad = build(
        &PermitOptions::default().set_field("/nope/deeper", 1),
        "matching_tenant_and_master.json",
    );
    assert!(bad.unwrap_err().to_string().contains("/nope/deeper"));
}

#[test]
fn user_instance_comes_from_portal_api_url_or_is_required() {
    let body = build(&PermitOptions::default(), "matching_tenant_and_master.json").unwrap();
    assert_eq!(body["userInstance"], json!("h"));
    let mut req = request();
    req.portal_api_url = None;
    let err = build_permit_body(
        &fixture("permit_dto.json"),
        &req,
        &matching("matching_tenant_and_master.json"),
        &PermitOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("userInstance"), "{err}");
}

#[test]
fn a_dto_that_is_not_an_object_names_the_endpoint() {
    let err = build_permit_body(
        &json!([1, 2]),
        &request(),
        &MatchingList::default(),
        &PermitOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("ApprovalRequestGetPermitApplicationById"),
        "{err}"
    );
}
