//! autotask backend (in progress).
