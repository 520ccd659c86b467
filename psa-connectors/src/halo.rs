//! halo backend (in progress).
