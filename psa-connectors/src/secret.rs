//! Secrets in configuration.
//!
//! Backend configurations hold credentials as [`SecretString`]. Two ways to fill them:
//!
//! * inline in the configuration file (`private_key = "..."`), deserialized straight into a
//!   `SecretString`;
//! * from the environment: the application keeps a `*_env` name in its own configuration and
//!   calls [`secret_from_env`] to resolve it before building the backend configuration, so the
//!   file never holds the secret.
//!
//! Either way the value is only exposed when a request header or body is built, and every
//! configuration type has a hand-written `Debug` that prints `[redacted]`.

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use crate::{Error, Result};

/// Reads a secret from the environment variable `var`; `key` names the configuration entry in
/// the error when the variable is missing or empty.
pub fn secret_from_env(key: &str, var: &str) -> Result<SecretString> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
        Ok(_) => Err(Error::config(
            key,
            format!("environment variable `{var}` is empty"),
        )),
        Err(_) => Err(Error::config(
            key,
            format!("environment variable `{var}` is not set"),
        )),
    }
}

/// `deserialize_with` helper for a required secret.
#[allow(dead_code)] // unused when every backend feature is off
pub(crate) fn de_secret<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

/// `deserialize_with` helper for an optional secret.
#[allow(dead_code)] // unused when every backend feature is off
pub(crate) fn de_opt_secret<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<SecretString>, D::Error> {
    Option::<String>::deserialize(d).map(|o| o.map(SecretString::from))
}

#[allow(dead_code)] // unused when every backend feature is off
pub(crate) const REDACTED: &str = "[redacted]";
