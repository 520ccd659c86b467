//! slack backend (in progress).
