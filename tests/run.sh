#!/usr/bin/env bash
# Installs what the end-to-end tests need (Prometheus, promtool, Alertmanager,
# aiosmtpd), builds the warden binary, and runs every crate's tests.
# Works from any directory; installing is skipped when everything is there.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "run.sh: need root (or sudo) to run: $*" >&2
        return 1
    fi
}

missing=()
for program in prometheus promtool prometheus-alertmanager; do
    command -v "$program" >/dev/null 2>&1 || missing+=("$program")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "run.sh: installing Prometheus and Alertmanager (missing: ${missing[*]})"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends prometheus prometheus-alertmanager
fi

if ! command -v python3 >/dev/null 2>&1; then
    echo "run.sh: installing python3"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends python3 python3-pip
fi
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
    echo "run.sh: installing aiosmtpd"
    python3 -m pip install aiosmtpd \
        || python3 -m pip install --break-system-packages aiosmtpd \
        || { as_root apt-get update \
             && as_root env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y --no-install-recommends python3-aiosmtpd; }
    python3 -c 'import aiosmtpd' || {
        echo "run.sh: aiosmtpd is still not importable by $(command -v python3)" >&2
        exit 1
    }
fi

cargo build -p warden-agent --bins
cargo test --workspace
