//! Building the connectors (`psa-connectors` backends) from `[psa]` and `[notify]`, reading
//! every secret from the environment.

use std::sync::Arc;

use psa_connectors::{Notifier, PriorityMap, Reference, TicketSink};

use crate::config::{secret, Config, ConfigError, Env, PsaConfig, SmtpTls};

/// Why a connector could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A key of the configuration is unusable (a secret variable missing, say).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The backend refused its settings.
    #[error("{what}: {message}")]
    Connector {
        /// Which connector (`psa`, `notify.email`, ...).
        what: String,
        /// Why.
        message: String,
    },
}

fn connector_error(what: &str, e: impl std::error::Error + 'static) -> ConnectError {
    ConnectError::Connector {
        what: what.to_owned(),
        message: crate::errors::chain(&e),
    }
}

/// The ticket sink `[psa]` names (`None` for `kind = "none"`).
pub fn ticket_sink(
    config: &Config,
    env: &dyn Env,
) -> Result<Option<Arc<dyn TicketSink>>, ConnectError> {
    match config.psa() {
        PsaConfig::None => Ok(None),
        PsaConfig::ConnectWise(c) => {
            let private_key = secret(env, "psa.private_key_env", &c.private_key_env)?;
            let client_id = secret(env, "psa.client_id_env", &c.client_id_env)?;
            let mut cw = psa_connectors::connectwise::Config::new(
                c.base_url.clone(),
                c.company_id.clone(),
                c.public_key.clone(),
                private_key,
                client_id,
            );
            cw.codebase = c.codebase.clone();
            cw.default_status = c.status.as_deref().map(Reference::parse);
            // Priority names only when the configuration spells them out: a name the board does
            // not know makes ConnectWise refuse the ticket, while no priority takes the
            // board's default.
            if let Some(p) = config
                .rules()
                .and_then(|r| r.get("ticket_priority"))
                .and_then(|p| p.as_table())
            {
                let name = |k: &str| p.get(k).and_then(|v| v.as_str()).map(Reference::parse);
                if let (Some(low), Some(medium), Some(high), Some(critical)) =
                    (name("low"), name("medium"), name("high"), name("critical"))
                {
                    cw.priorities = Some(PriorityMap {
                        low,
                        medium,
                        high,
                        critical,
                    });
                }
            }
            let sink = psa_connectors::connectwise::ConnectWise::new(cw)
                .map_err(|e| connector_error("psa", e))?;
            Ok(Some(Arc::new(sink)))
        }
        PsaConfig::Autotask(c) => {
            let secret_value = secret(env, "psa.secret_env", &c.secret_env)?;
            let code = secret(env, "psa.integration_code_env", &c.integration_code_env)?;
            let mut at =
                psa_connectors::autotask::Config::new(c.username.clone(), secret_value, code);
            at.zone_url = c.base_url.clone();
            at.default_queue_id = c.queue_id;
            let sink = psa_connectors::autotask::Autotask::new(at)
                .map_err(|e| connector_error("psa", e))?;
            Ok(Some(Arc::new(sink)))
        }
        PsaConfig::Halo(c) => {
            let client_secret = secret(env, "psa.client_secret_env", &c.client_secret_env)?;
            let base = c.base_url.trim_end_matches('/');
            let api_url = if base.ends_with("/api") {
                base.to_owned()
            } else {
                format!("{base}/api")
            };
            let root = base.strip_suffix("/api").unwrap_or(base);
            let auth_url = c.auth_url.clone().unwrap_or_else(|| format!("{root}/auth"));
            let mut halo = psa_connectors::halo::Config::new(
                api_url,
                auth_url,
                c.client_id.clone(),
                client_secret,
            );
            halo.tenant = c.tenant.clone();
            let sink =
                psa_connectors::halo::Halo::new(halo).map_err(|e| connector_error("psa", e))?;
            Ok(Some(Arc::new(sink)))
        }
    }
}

/// E-mail without a fixed `to` list: a notification with no recipients (planned for the chat
/// channels of an organization without `threatlocker_notification_recipients`) has no one to
/// go to by e-mail, so it is skipped rather than failed.
struct EmailToRecipients(psa_connectors::email::SmtpNotifier);

#[async_trait::async_trait]
impl Notifier for EmailToRecipients {
    async fn send(&self, n: &psa_connectors::Notification) -> psa_connectors::Result<()> {
        if n.recipients.is_empty() {
            tracing::debug!(subject = %n.subject, "no e-mail recipients; sent by chat only");
            return Ok(());
        }
        self.0.send(n).await
    }

    async fn check(&self) -> psa_connectors::Result<()> {
        self.0.check().await
    }

    fn name(&self) -> &str {
        self.0.name()
    }
}

/// The notifiers `[notify]` configures (possibly none).
pub fn notifiers(config: &Config, env: &dyn Env) -> Result<Vec<Arc<dyn Notifier>>, ConnectError> {
    let n = config.notify();
    let mut out: Vec<Arc<dyn Notifier>> = Vec::new();
    if let Some(e) = &n.email {
        let mut c = psa_connectors::email::Config::new(e.smtp_host.clone(), e.from.clone());
        c.port = e.smtp_port;
        c.security = match e.tls {
            SmtpTls::Starttls => psa_connectors::email::Security::StartTls,
            SmtpTls::Implicit => psa_connectors::email::Security::Tls,
            SmtpTls::None => psa_connectors::email::Security::Plain,
        };
        c.username = e.username.clone();
        if let Some(var) = &e.password_env {
            c.password = Some(secret(env, "notify.email.password_env", var)?);
        }
        c.to = e.to.clone();
        c.ca_file = e.ca_file.clone();
        c.hello_name = e.hello_name.clone();
        let smtp = psa_connectors::email::SmtpNotifier::new(c)
            .map_err(|err| connector_error("notify.email", err))?;
        if e.to.is_empty() {
            out.push(Arc::new(EmailToRecipients(smtp)));
        } else {
            out.push(Arc::new(smtp));
        }
    }
    if let Some(t) = &n.teams {
        let url = secret(env, "notify.teams.webhook_url_env", &t.webhook_url_env)?;
        let teams =
            psa_connectors::teams::TeamsWebhook::new(psa_connectors::teams::Config::new(url))
                .map_err(|err| connector_error("notify.teams", err))?;
        out.push(Arc::new(teams));
    }
    if let Some(s) = &n.slack {
        let url = secret(env, "notify.slack.webhook_url_env", &s.webhook_url_env)?;
        let slack =
            psa_connectors::slack::SlackWebhook::new(psa_connectors::slack::Config::new(url))
                .map_err(|err| connector_error("notify.slack", err))?;
        out.push(Arc::new(slack));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;

    fn config(psa: &str) -> Config {
        Config::from_toml_str(
            &format!("[threatlocker]\ninstance = \"g\"\n[psa]\n{psa}"),
            Path::new("."),
        )
        .unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_psa_kind_builds_from_its_keys_and_environment() {
        let cw = config("kind = \"connectwise\"\nbase_url = \"https://api-na.myconnectwise.net\"\ncompany_id = \"msp\"\npublic_key = \"pk\"\nprivate_key_env = \"CW_PRIV\"\nclient_id_env = \"CW_CLIENT\"\n");
        let sink = ticket_sink(&cw, &env(&[("CW_PRIV", "s1"), ("CW_CLIENT", "c1")]))
            .unwrap()
            .unwrap();
        assert_eq!(sink.name(), "connectwise");
        let at = config("kind = \"autotask\"\nbase_url = \"https://webservices5.autotask.net\"\nusername = \"api@msp.example\"\nsecret_env = \"AT_SECRET\"\nintegration_code_env = \"AT_CODE\"\nqueue_id = 8\n");
        assert!(
            ticket_sink(&at, &env(&[("AT_SECRET", "s"), ("AT_CODE", "c")]))
                .unwrap()
                .is_some()
        );
        let halo = config("kind = \"halo\"\nbase_url = \"https://msp.halopsa.com\"\ntenant = \"msp\"\nclient_id = \"tlm\"\nclient_secret_env = \"HALO_SECRET\"\n");
        assert!(ticket_sink(&halo, &env(&[("HALO_SECRET", "s")]))
            .unwrap()
            .is_some());
        assert!(ticket_sink(&config("kind = \"none\"\n"), &env(&[]))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_missing_psa_secret_names_its_key_and_variable() {
        let at = config("kind = \"autotask\"\nusername = \"api@msp.example\"\nsecret_env = \"AT_SECRET\"\nintegration_code_env = \"AT_CODE\"\n");
        let Err(e) = ticket_sink(&at, &env(&[("AT_SECRET", "s")])) else {
            panic!("the integration code is missing")
        };
        let msg = e.to_string();
        assert!(
            msg.contains("psa.integration_code_env") && msg.contains("AT_CODE"),
            "{msg}"
        );
    }

    #[test]
    fn notifiers_build_from_their_sections() {
        let c = Config::from_toml_str(
            "[threatlocker]\ninstance = \"g\"\n[notify.email]\nsmtp_host = \"smtp.msp.example\"\nusername = \"u\"\npassword_env = \"SMTP_PW\"\nfrom = \"alerts@msp.example\"\n[notify.teams]\nwebhook_url_env = \"TEAMS\"\n[notify.slack]\nwebhook_url_env = \"SLACK\"\n",
            Path::new("."),
        )
        .unwrap();
        let list = notifiers(
            &c,
            &env(&[
                ("SMTP_PW", "pw"),
                ("TEAMS", "https://example.invalid/teams"),
                ("SLACK", "https://hooks.slack.com/services/x"),
            ]),
        )
        .unwrap();
        assert_eq!(list.len(), 3);
        let Err(e) = notifiers(&c, &env(&[("SMTP_PW", "pw")])) else {
            panic!("the Teams URL is missing")
        };
        assert!(
            e.to_string().contains("notify.teams.webhook_url_env"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn chat_only_notifications_need_no_recipients() {
        let chat = Config::from_toml_str(
            "[threatlocker]\ninstance = \"g\"\n[notify.teams]\nwebhook_url_env = \"TEAMS\"\n",
            Path::new("."),
        )
        .unwrap();
        let chat_rule = |c: &Config| c.engine().unwrap().config().rules.notify_without_recipients;
        assert_eq!(chat_rule(&chat), Some(true));
        // An explicit setting wins.
        let off = Config::from_toml_str(
            "[threatlocker]\ninstance = \"g\"\n[notify.teams]\nwebhook_url_env = \"TEAMS\"\n[rules]\nnotify_without_recipients = false\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(chat_rule(&off), Some(false));
        // E-mail alone keeps needing recipients.
        let email = Config::from_toml_str(
            "[threatlocker]\ninstance = \"g\"\n[notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = 9\ntls = \"none\"\nfrom = \"alerts@msp.example\"\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(chat_rule(&email), None);

        // Without a fixed `to`, e-mail skips a notification that has no recipients (planned for
        // chat) instead of failing it; one with recipients is really sent (and fails here: no
        // SMTP server listens on port 9).
        let list = notifiers(&email, &env(&[])).unwrap();
        let n = psa_connectors::Notification::new("subject", "body");
        list[0].send(&n).await.unwrap();
        let addressed = n.recipient("soc@msp.example");
        assert!(list[0].send(&addressed).await.is_err());
    }
}
