//! Teams and Slack webhooks against wiremock.

use psa_connectors::{Error, Notification, Notifier, Severity};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::common::fast_retry;

fn notification() -> Notification {
    Notification::new("AnyDesk.exe blocked on WS07", "Blocked 5 times in 1 hour.")
        .severity(Severity::High)
        .fact("Client", "Contoso Ltd")
        .fact("User", "CONTOSO\\jdoe")
        .link("https://portal.example/approval/1")
}

#[cfg(feature = "teams")]
mod teams {
    use super::super::common::HOSTILE;
    use super::*;
    use psa_connectors::teams::{payload, Config, TeamsWebhook};
    use wiremock::matchers::query_param;

    fn sink(server: &MockServer) -> TeamsWebhook {
        let mut c = Config::new(
            format!(
                "{}/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=SECRETSIG",
                server.uri()
            )
            .into(),
        );
        c.retry = fast_retry();
        TeamsWebhook::new(c).unwrap()
    }

    #[tokio::test]
    async fn posts_an_adaptive_card_in_the_attachments_envelope() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/workflows/abc/triggers/manual/paths/invoke"))
            .and(query_param("sig", "SECRETSIG"))
            .and(header("content-type", "application/json"))
            .and(body_json(json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": [
                            {"type": "TextBlock", "text": "AnyDesk.exe blocked on WS07", "weight": "Bolder", "size": "Medium", "wrap": true, "color": "Attention"},
                            {"type": "TextBlock", "text": "Blocked 5 times in 1 hour.", "wrap": true},
                            {"type": "FactSet", "facts": [
                                {"title": "Client", "value": "Contoso Ltd"},
                                {"title": "User", "value": "CONTOSO\\\\jdoe"}
                            ]}
                        ],
                        "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": "https://portal.example/approval/1"}]
                    }
                }]
            })))
            .respond_with(ResponseTemplate::new(202))
            .expect(1)
            .mount(&server)
            .await;
        sink(&server).send(&notification()).await.unwrap();
    }

    #[test]
    fn hostile_text_is_escaped_and_unsafe_links_dropped() {
        let n = Notification::new(HOSTILE, HOSTILE)
            .fact(HOSTILE, HOSTILE)
            .link("javascript:alert(1)");
        let p = payload(&n, 20_000);
        let content = &p["attachments"][0]["content"];
        assert!(content.get("actions").is_none());
        let text = content["body"][1]["text"].as_str().unwrap();
        for special in ["*", "_", "[", "]", "(", ")", "<", ">", "{", "}"] {
            let raw = text.matches(special).count();
            let escaped = text.matches(&format!("\\{special}")).count();
            assert_eq!(raw, escaped, "every `{special}` is escaped in {text:?}");
        }
        assert!(!content["body"][0]["text"].as_str().unwrap().contains('\n'));
    }

    #[test]
    fn payload_stays_under_the_size_limit() {
        let mut n = Notification::new("s".repeat(500), "ü".repeat(50_000));
        for i in 0..100 {
            n = n.fact(format!("fact {i}"), "😀".repeat(3000));
        }
        for max in [2_000, 10_000, 20_000] {
            let p = payload(&n, max);
            let size = serde_json::to_vec(&p).unwrap().len();
            assert!(size <= max, "{size} > {max}");
            assert_eq!(p["attachments"][0]["content"]["type"], "AdaptiveCard");
        }
        // A small notification is left intact.
        let p = payload(&notification(), 20_000);
        assert_eq!(
            p["attachments"][0]["content"]["body"][2]["facts"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn throttling_reported_inside_a_200_body_is_rate_limited() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429",
            ))
            .expect(1)
            .mount(&server)
            .await;
        let err = sink(&server).send(&notification()).await.unwrap_err();
        assert!(matches!(err, Error::RateLimited { .. }));
    }

    #[tokio::test]
    async fn errors_never_contain_the_signed_url() {
        // Nothing listens on this port: a connect error whose text would normally include the URL.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut c = Config::new(format!("http://127.0.0.1:{port}/hook?sig=SECRETSIG").into());
        c.retry = psa_connectors::RetryPolicy::none();
        let teams = TeamsWebhook::new(c).unwrap();
        let err = teams.send(&notification()).await.unwrap_err();
        let mut text = format!("{err} {err:?} {teams:?}");
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text.push_str(&s.to_string());
            source = s.source();
        }
        assert!(
            matches!(err, Error::Transport { connect: true, .. }),
            "{err:?}"
        );
        assert!(!text.contains("SECRETSIG"), "{text}");
    }

    #[test]
    fn payload_budget_cannot_exceed_the_28_kb_limit() {
        let config = |max| {
            let mut c = Config::new(
                "https://prod-1.example.logic.azure.com/hook"
                    .to_owned()
                    .into(),
            );
            c.max_payload_bytes = max;
            TeamsWebhook::new(c)
        };
        assert!(config(28 * 1024).is_ok());
        for bad in [28 * 1024 + 1, 64 * 1024, 1023] {
            let err = config(bad).unwrap_err();
            assert!(err.to_string().contains("teams.max_payload_bytes"), "{err}");
        }
    }

    #[test]
    fn non_https_urls_are_refused_without_echoing_them() {
        let err = TeamsWebhook::new(Config::new(
            "http://example.com/hook?sig=SECRETSIG".to_owned().into(),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("teams.webhook_url"));
        assert!(!format!("{err:?}").contains("SECRETSIG"));
    }
}

#[cfg(feature = "slack")]
mod slack {
    use super::*;
    use psa_connectors::slack::{payload, Config, SlackWebhook};

    fn sink(server: &MockServer) -> SlackWebhook {
        let mut c = Config::new(format!("{}/services/T000/B000/XXXXTOKEN", server.uri()).into());
        c.retry = fast_retry();
        SlackWebhook::new(c).unwrap()
    }

    #[tokio::test]
    async fn posts_blocks_with_fallback_text() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/services/T000/B000/XXXXTOKEN"))
            .and(header("content-type", "application/json"))
            .and(body_json(json!({
                "text": "AnyDesk.exe blocked on WS07: Blocked 5 times in 1 hour.",
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": "AnyDesk.exe blocked on WS07", "emoji": false}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": "Blocked 5 times in 1 hour."}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": "*Client*\nContoso Ltd"},
                        {"type": "mrkdwn", "text": "*User*\nCONTOSO\\jdoe"}
                    ]},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": "Severity: high"}]},
                    {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": "https://portal.example/approval/1"}]}
                ]
            })))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .expect(1)
            .mount(&server)
            .await;
        sink(&server).send(&notification()).await.unwrap();
    }

    #[test]
    fn mentions_and_links_in_untrusted_text_are_neutralised() {
        let mut n = Notification::new("x", "<!channel> <https://evil.example|click> & more");
        for i in 0..30 {
            n = n.fact(format!("f{i}"), "v".repeat(5000));
        }
        let p = payload(&n);
        let text = p["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(
            text,
            "&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; more"
        );
        assert!(!p["text"].as_str().unwrap().contains('<'));
        let fields = p["blocks"][2]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), 10);
        assert!(fields
            .iter()
            .all(|f| f["text"].as_str().unwrap().chars().count() <= 2000));
        assert!(serde_json::to_string(&p).unwrap().chars().count() < 40_000);
        assert!(p["blocks"].as_array().unwrap().len() <= 50);
    }

    #[test]
    fn block_limits_hold_after_escaping() {
        // Every `<` is sent as four characters; Slack's limits count what it receives.
        let n = Notification::new("x", "<".repeat(2500)).fact("<&>".repeat(40), "&".repeat(1400));
        let p = payload(&n);
        let text = p["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(text.chars().count() <= 3000, "section text over 3 000");
        assert!(text.starts_with("&lt;&lt;") && text.ends_with("&lt;…"));
        let field = p["blocks"][2]["fields"][0]["text"].as_str().unwrap();
        assert!(field.chars().count() <= 2000, "field over 2 000");
        assert!(field.ends_with("&amp;…"));
        assert!(p["text"].as_str().unwrap().chars().count() <= 3000);
    }

    #[tokio::test]
    async fn plain_text_error_codes_are_reported() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(404).set_body_string("channel_not_found"))
            .expect(1)
            .mount(&server)
            .await;
        let err = sink(&server).send(&notification()).await.unwrap_err();
        assert!(
            matches!(err, Error::Api { status: 404, ref message, .. } if message == "channel_not_found")
        );
        assert!(!err.is_retryable());
        assert!(!format!("{err:?}").contains("XXXXTOKEN"));
    }

    #[tokio::test]
    async fn throttled_post_is_repeated_after_retry_after() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .expect(1)
            .mount(&server)
            .await;
        sink(&server).send(&notification()).await.unwrap();
    }
}
