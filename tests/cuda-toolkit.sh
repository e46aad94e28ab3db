#!/usr/bin/env bash
# The CUDA compiler, headers and libraries for building Warden with `--features cuda`, from
# NVIDIA's PyPI wheels (no GPU, driver or system toolkit needed to build). Idempotent.
#
#   bash tests/cuda-toolkit.sh [--compiler-only] [DIR]   # default DIR: target/cuda-toolkit
#
# --compiler-only leaves out cuBLAS and cuRAND (520 MB of wheels): building needs only the
# compiler and headers (candle's CUDA libraries are loaded when the program starts); running on
# a GPU needs them, from these wheels or a system toolkit, on LD_LIBRARY_PATH.
#
# Prints the environment to build with, e.g.
#   eval "$(bash tests/cuda-toolkit.sh)"
#   cargo build --release -p warden-agent --features warden-models/cuda
# CUDA_COMPUTE_CAP selects the GPU generation the kernels are built for (default 80: A100; 90:
# H100; 89: L4/L40). The CUDA 12 `nvidia-cuda-nvcc-cu12` wheels ship only ptxas, so this takes
# the CUDA 13.0 wheels, where the compiler is split into nvcc, nvvm (cicc) and crt (headers).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
compiler_only=0
if [ "${1:-}" = "--compiler-only" ]; then
    compiler_only=1
    shift
fi
dir="${1:-$root/target/cuda-toolkit}"
version="13.0"
wheels=(
    "nvidia-cuda-nvcc==13.0.88"
    "nvidia-nvvm==13.0.88"
    "nvidia-cuda-crt==13.0.88"
    "nvidia-cuda-runtime==13.0.96"
    "nvidia-cuda-cccl==13.0.85"
)
if [ "$compiler_only" = 0 ]; then
    wheels+=("nvidia-cublas==13.10.0.20" "nvidia-curand==10.4.5.25")
fi
stamp="$dir/.installed-$(printf '%s\n' "${wheels[@]}" | sha256sum | cut -c1-16)"

if [ ! -f "$stamp" ]; then
    echo "cuda-toolkit.sh: fetching the CUDA $version wheels into $dir" >&2
    rm -rf "$dir"
    mkdir -p "$dir/wheels"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir/wheels" "${wheels[@]}" >&2
    python3 - "$dir" <<'PY'
import glob, os, stat, sys, zipfile
dest = sys.argv[1]
for wheel in sorted(glob.glob(os.path.join(dest, "wheels", "*.whl"))):
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest)
for sub in ("nvidia/cu13/bin", "nvidia/cu13/nvvm/bin"):
    for f in glob.glob(os.path.join(dest, sub, "*")):
        if os.path.isfile(f):
            os.chmod(f, os.stat(f).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
PY
    rm -rf "$dir/wheels"
    cuda="$dir/nvidia/cu13"
    # The libraries as a linker expects them (the wheels ship only the versioned names).
    for lib in cudart cublas cublasLt curand; do
        so="$(ls "$cuda/lib/lib$lib.so."* 2>/dev/null | head -n1 || true)"
        if [ -n "$so" ] && [ ! -e "$cuda/lib/lib$lib.so" ]; then
            ln -s "$(basename "$so")" "$cuda/lib/lib$lib.so"
        fi
    done
    touch "$stamp"
fi

cuda="$dir/nvidia/cu13"
"$cuda/bin/nvcc" --version >/dev/null
echo "export CUDA_HOME='$cuda' CUDA_PATH='$cuda' NVCC='$cuda/bin/nvcc' CUDA_COMPUTE_CAP='${CUDA_COMPUTE_CAP:-80}'"
echo "export PATH='$cuda/bin':\"\$PATH\" LIBRARY_PATH='$cuda/lib':\"\${LIBRARY_PATH:-}\" LD_LIBRARY_PATH='$cuda/lib':\"\${LD_LIBRARY_PATH:-}\""
