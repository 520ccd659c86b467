//! Integration tests for psa-connectors: one binary, one module per backend.

mod connectors {
    pub mod common;

    mod escape;
    mod recording;
    mod retry;
    mod secrets;

    #[cfg(feature = "autotask")]
    mod autotask;
    #[cfg(feature = "connectwise")]
    mod connectwise;
    #[cfg(feature = "email")]
    mod email;
    #[cfg(feature = "halo")]
    mod halo;
    #[cfg(feature = "syslog")]
    mod rsyslog;
    #[cfg(feature = "syslog")]
    mod syslog;
    #[cfg(any(feature = "teams", feature = "slack"))]
    mod webhooks;
}
