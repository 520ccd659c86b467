//! syslog backend (in progress).
