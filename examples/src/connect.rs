//! Building the connectors (`psa-connectors` backends) from `[psa]` and `[notify]`, reading
//! every secret from the environment.

use std::sync::Arc;

use psa_connectors::{Notifier, PriorityMap, Reference, TicketSink};

use crate::config::{secret, Config, Env, PsaConfig, SmtpTls};
use crate::workflow::WorkflowError;

fn connector_error(what: &str, e: impl std::fmt::Display) -> WorkflowError {
    WorkflowError::Connector {
        what: what.to_owned(),
        message: e.to_string(),
    }
}

/// The ticket sink `[psa]` names (`None` for `kind = "none"`).
pub fn ticket_sink(
    config: &Config,
    env: &dyn Env,
) -> Result<Option<Arc<dyn TicketSink>>, WorkflowError> {
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

/// The notifiers `[notify]` configures (possibly none).
pub fn notifiers(config: &Config, env: &dyn Env) -> Result<Vec<Arc<dyn Notifier>>, WorkflowError> {
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
        let smtp = psa_connectors::email::SmtpNotifier::new(c)
            .map_err(|err| connector_error("notify.email", err))?;
        out.push(Arc::new(smtp));
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
