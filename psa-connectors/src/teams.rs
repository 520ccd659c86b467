//! teams backend (in progress).
