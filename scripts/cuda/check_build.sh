#!/usr/bin/env bash
# Build midtrain with `--features cuda` on a machine without the CUDA toolkit or a GPU, and run
# it far enough to see it start and fail cleanly for want of a device:
#
#   - the compiler: NVIDIA's CUDA 13 wheels from PyPI (nvcc, cicc, runtime and CCCL headers),
#     which compile candle's kernels to PTX for the compute capability given (default 90:
#     H100/H200);
#   - the libraries candle links (cudarc's dynamic linking): cuBLAS, cuRAND, NVRTC and the
#     runtime of CUDA 12.2 from PyPI, and the driver's libcuda (Debian non-free `libcuda1`,
#     driver 535 = CUDA 12.2, fetched with a private apt source list) unless the system has one;
#     cudarc's bindings are those of CUDA 12.2 to match that driver.
#
# Everything goes into the ignored folder .cuda-toolkit/; nothing outside it is changed. The
# libcuda download reads Debian's archive with the system's Debian keyring (Debian hosts only). A
# machine with its own toolkit (nvcc on PATH) builds with that instead and downloads nothing; run
# there, the CUDA 13 PTX of the downloaded compiler would need a driver of 580 or newer.
#
#   scripts/cuda/check_build.sh [COMPUTE_CAP]   (default: the GPU's, from nvidia-smi, else 90)
#
# Environment: CARGO_TARGET_DIR (shared with the CPU build: only candle and midtrain's crates
# build again; the CPU binary is rebuilt at the end), PYTHON (default python3, for pip).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLKIT="$ROOT/.cuda-toolkit"
CUDA_HOME="$TOOLKIT/nvidia/cu13"
LIBS="$TOOLKIT/cu12libs/nvidia"
PYTHON="${PYTHON:-python3}"
pip_into() {
  local target=$1
  shift
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps --target "$target" "$@"
}

cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
gpu_cap() { nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d . || true; }
CAP="${1:-$(gpu_cap)}"
export CUDA_COMPUTE_CAP="${CAP:-90}"
# The compiler and libraries from PyPI and Debian (see the top), and where the run finds them.
pypi_toolkit() {
  if [ ! -x "$CUDA_HOME/bin/nvcc" ] || [ ! -d "$CUDA_HOME/nvvm/bin" ]; then
    echo "check_build: the CUDA 13 compiler wheels into $TOOLKIT"
    pip_into "$TOOLKIT" "nvidia-cuda-nvcc==13.*" "nvidia-nvvm==13.*" "nvidia-cuda-runtime==13.*" \
      "nvidia-cuda-cccl==13.*" "nvidia-cuda-crt==13.*"
  fi
  if [ ! -d "$LIBS/cublas" ]; then
    echo "check_build: the CUDA 12.2 libraries into $TOOLKIT/cu12libs"
    pip_into "$TOOLKIT/cu12libs" "nvidia-cublas-cu12==12.2.*" "nvidia-curand-cu12" \
      "nvidia-cuda-nvrtc-cu12==12.2.*" "nvidia-cuda-runtime-cu12==12.2.*"
  fi

  # libcuda: the system's, or the userspace driver library out of Debian's libcuda1 package.
  LDCONFIG=$(command -v ldconfig || echo /sbin/ldconfig)
  SYSTEM_LIBCUDA=$("$LDCONFIG" -p 2>/dev/null | awk '/libcuda\.so\.1 .*x86-64/ {print $NF; exit}' || true)
  if [ -n "$SYSTEM_LIBCUDA" ]; then
    DRIVER_DIR=$(dirname "$SYSTEM_LIBCUDA")
  else
    DRIVER_DIR="$TOOLKIT/libcuda1/usr/lib/x86_64-linux-gnu/nvidia/current"
    if [ ! -e "$DRIVER_DIR/libcuda.so.1" ]; then
      echo "check_build: Debian's libcuda1 (non-free) into $TOOLKIT/libcuda1"
      APT="$TOOLKIT/apt"
      mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial"
      echo "deb http://deb.debian.org/debian bookworm non-free" > "$APT/sources.list"
      apt_private=(-o Dir::Etc::sourcelist="$APT/sources.list" -o Dir::Etc::sourceparts=-
        -o Dir::State::Lists="$APT/lists" -o Dir::Cache="$APT/cache" -o APT::Sandbox::User=root)
      apt-get -qq "${apt_private[@]}" update
      (cd "$APT" && apt-get -qq "${apt_private[@]}" download libcuda1)
      dpkg -x "$APT"/libcuda1_*.deb "$TOOLKIT/libcuda1"
    fi
  fi

  # The unversioned names the linker looks for, in a folder cudarc's build script searches.
  LINK="$CUDA_HOME/lib"
  ln -sfn "$DRIVER_DIR/libcuda.so.1" "$LINK/libcuda.so"
  for lib in cublas/lib/libcublas.so.12 cublas/lib/libcublasLt.so.12 cuda_nvrtc/lib/libnvrtc.so.12 \
    cuda_runtime/lib/libcudart.so.12 curand/lib/libcurand.so.10; do
    name=$(basename "$lib")
    ln -sfn "$LIBS/$lib" "$LINK/${name%%.so*}.so"
  done

  export CUDA_HOME PATH="$CUDA_HOME/bin:$PATH" CUDARC_CUDA_VERSION=12020
  RUN_LIBS="$DRIVER_DIR:$LIBS/cublas/lib:$LIBS/curand/lib:$LIBS/cuda_nvrtc/lib:$LIBS/cuda_runtime/lib"
}

RUN_LIBS="" # a system toolkit's libraries are on the loader's path already
if command -v nvcc >/dev/null; then
  echo "check_build: the system's toolkit: $(command -v nvcc)"
else
  pypi_toolkit
fi
nvcc --version | tail -n 1

cargo build --features cuda --bin midtrain
cargo clippy --features cuda --workspace --all-targets -- -D warnings

# Run it: with a GPU it trains the fixture anneal; without, it must start, say that CUDA runs the
# composed ops, and stop for want of a device.
RUN=$(mktemp -d)
trap 'rm -rf "$RUN"' EXIT
if LD_LIBRARY_PATH="$RUN_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$TARGET_DIR/debug/midtrain" train \
  trainer/configs/fixtures-anneal.toml --out "$RUN/run" --device cuda >"$RUN/log" 2>&1; then
  echo "check_build: trained on a GPU" && tail -n 3 "$RUN/log"
else
  grep "composed ops" "$RUN/log" && grep "no CUDA device" "$RUN/log" || { cat "$RUN/log"; exit 1; }
fi
cargo build --bin midtrain # the CPU binary back in place for make's other targets
echo "check_build: midtrain builds and links with --features cuda (compute capability $CUDA_COMPUTE_CAP)"
