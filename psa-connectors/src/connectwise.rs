//! connectwise backend (in progress).
