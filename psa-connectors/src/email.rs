//! email backend (in progress).
