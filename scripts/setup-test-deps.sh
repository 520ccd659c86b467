#!/usr/bin/env bash
# Installs what the real-receiver tests need: rsyslog with its TLS drivers (the rsyslog package
# itself carries mmjsonparse, mmnormalize with liblognorm, and mmpstrucdata) and the Python SMTP
# server aiosmtpd. Idempotent and quiet when everything is already there; run as root (CI) or
# through sudo.
set -euo pipefail

need_apt=()
[ -x /usr/sbin/rsyslogd ] || need_apt+=(rsyslog)
[ -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] || [ -e /usr/lib/rsyslog/lmnsd_gtls.so ] \
    || need_apt+=(rsyslog-gnutls)
[ -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so ] || [ -e /usr/lib/rsyslog/lmnsd_ossl.so ] \
    || need_apt+=(rsyslog-openssl)
# aiosmtpd goes into whichever python3 the tests will run, through its own pip.
if ! command -v python3 >/dev/null 2>&1; then
    need_apt+=(python3 python3-pip)
elif ! python3 -c 'import aiosmtpd' >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
    need_apt+=(python3-pip)
fi

if [ "${#need_apt[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup-test-deps: installing ${need_apt[*]}" >&2
    # Installing rsyslog must not start the system daemon: the tests run their own.
    $sudo env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
        apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
    echo "setup-test-deps: installing the Python package aiosmtpd" >&2
    python3 -m pip install --quiet --disable-pip-version-check aiosmtpd 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages aiosmtpd
fi
