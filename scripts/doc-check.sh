#!/usr/bin/env bash
# Builds the API documentation of every crate with warnings as errors (broken intra-doc links,
# unclosed HTML tags, bare URLs).
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --workspace --no-deps --locked
