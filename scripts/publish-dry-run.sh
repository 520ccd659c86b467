#!/usr/bin/env bash
# Packages and verifies every publishable crate (threatlocker-api, policy-engine, psa-connectors)
# as crates.io would receive them: each .crate is unpacked and built on its own, with the
# unpublished siblings resolved from the packages just made. Needs only crates.io.
#
# Time: about 45 s once the dev build of the workspace is warm (verification reuses its
# dependencies), about 8 min from cold on a 2-core machine.
#
# Usage: scripts/publish-dry-run.sh [extra cargo publish flags, e.g. --allow-dirty]
set -euo pipefail
cd "$(dirname "$0")/.."

# Verification builds each unpacked crate in one shared target directory, so a second run
# reuses the first one's dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# The unpacked crates are built outside the workspace, so its `[profile.dev] debug = false`
# does not reach them; debug info is most of a verification build's time.
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-false}"

start=$(date +%s)
cargo publish --workspace --dry-run --locked "$@"
echo "publish dry run: $(( $(date +%s) - start )) s"
