#!/usr/bin/env bash
# The project's test command: README "Running the tests"; CI runs exactly this (.ci/run).
#
# It installs what the tests need that a Rust toolchain does not bring (scripts/setup-test-deps.sh:
# rsyslog for the real-receiver tests, aiosmtpd for the SMTP tests), then checks formatting,
# lints, documentation and the tests of every crate, and ends with the publish dry run.
# PostgreSQL tests need a server on 127.0.0.1:5432 (user postgres); without one they are
# skipped (outside CI) and the summary says how to start it. Under CI=true they are required.
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n==> %s\n' "$*"; }

section "test dependencies"
deps_note=""
if ! bash scripts/setup-test-deps.sh; then
    if [ "${CI:-}" = "true" ]; then
        echo "error: the test dependencies could not be installed" >&2
        exit 1
    fi
    deps_note="rsyslog or aiosmtpd could not be installed: the real-receiver tests were SKIPPED (run scripts/setup-test-deps.sh as root)"
    echo "$deps_note"
fi

section "PostgreSQL"
pg_note=""
if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
    fi
fi
if [ -n "${TLM_TEST_PG_URL:-}" ]; then
    echo "PostgreSQL tests use TLM_TEST_PG_URL"
elif (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    echo "PostgreSQL reachable on 127.0.0.1:5432"
else
    pg_note="PostgreSQL tests were SKIPPED: no server on 127.0.0.1:5432. Start one with: sudo pg_ctlcluster 15 main start"
    echo "$pg_note"
fi

section "format"
cargo fmt --all -- --check
section "lints"
cargo clippy --workspace --all-targets -- -D warnings
section "documentation"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
section "tests"
cargo test --workspace
section "publish dry run"
bash scripts/publish-dry-run.sh

section "summary"
echo "format, lints, documentation, tests and the publish dry run passed"
if [ -n "$pg_note" ]; then echo "$pg_note"; fi
if [ -n "$deps_note" ]; then echo "$deps_note"; fi
