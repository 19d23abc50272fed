#!/bin/sh
# System packages the tests use, from Debian, installed only when missing (idempotent):
# prometheus + promtool (tests/test_exporter.py) and a JRE for PySpark (tests/test_dataset.py).
set -eu
need=""
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need="$need prometheus"
command -v java >/dev/null 2>&1 || need="$need default-jre-headless"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-system: missing$need; install them (Debian: apt-get install$need) or the tests that need them skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $need >/dev/null
echo "setup-system: installed$need" >&2
