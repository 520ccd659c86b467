//! No secret appears in any Debug, Display or error text.

#[allow(unused_imports)]
use serde_json::json;

#[test]
#[cfg(all(
    feature = "connectwise",
    feature = "autotask",
    feature = "halo",
    feature = "teams",
    feature = "slack",
    feature = "email"
))]
fn configs_deserialize_and_never_print_secrets() {
    use psa_connectors::{autotask, connectwise, email, halo, slack, teams};
    let secret = "TOPSECRET-VALUE";
    let texts = vec![
        format!(
            "{:?}",
            serde_json::from_value::<connectwise::Config>(json!({
                "site": "api-na.myconnectwise.net", "company_id": "a", "public_key": "p",
                "private_key": secret, "client_id": secret
            }))
            .unwrap()
        ),
        format!(
            "{:?}",
            connectwise::ConnectWise::new(
                serde_json::from_value(json!({
                    "site": "api-na.myconnectwise.net", "company_id": "a", "public_key": "p",
                    "private_key": secret, "client_id": secret
                }))
                .unwrap()
            )
            .unwrap()
        ),
        format!(
            "{:?}",
            autotask::Autotask::new(
                serde_json::from_value(json!({
                    "username": "u", "secret": secret, "integration_code": secret
                }))
                .unwrap()
            )
            .unwrap()
        ),
        format!("{:?}", halo::Halo::new(serde_json::from_value(json!({
            "api_url": "https://x.halopsa.com/api", "auth_url": "https://x.halopsa.com/auth",
            "client_id": "c", "client_secret": secret
        })).unwrap()).unwrap()),
        format!("{:?}", teams::TeamsWebhook::new(serde_json::from_value(json!({
            "webhook_url": format!("https://prod-1.westus.logic.azure.com/workflows/x?sig={secret}")
        })).unwrap()).unwrap()),
        format!(
            "{:?}",
            slack::SlackWebhook::new(
                serde_json::from_value(json!({
                    "webhook_url": format!("https://hooks.slack.com/services/T/B/{secret}")
                }))
                .unwrap()
            )
            .unwrap()
        ),
        format!("{:?}", serde_json::from_value::<email::Config>(json!({
            "host": "smtp.example.com", "from": "a@example.com", "username": "u", "password": secret
        })).unwrap()),
    ];
    for text in texts {
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
}

#[test]
fn secret_from_env_names_the_key_not_the_value() {
    use psa_connectors::secret::secret_from_env;
    let err = secret_from_env(
        "connectwise.private_key",
        "PSA_CONNECTORS_TEST_UNSET_VARIABLE",
    )
    .unwrap_err();
    assert!(err.to_string().contains("connectwise.private_key"));
    assert!(err
        .to_string()
        .contains("PSA_CONNECTORS_TEST_UNSET_VARIABLE"));
}

#[test]
#[cfg(feature = "slack")]
fn invalid_webhook_url_error_does_not_echo_it() {
    let err = psa_connectors::slack::SlackWebhook::new(psa_connectors::slack::Config::new(
        "not a url TOPSECRET".to_owned().into(),
    ))
    .unwrap_err();
    assert!(!format!("{err} {err:?}").contains("TOPSECRET"));
}
