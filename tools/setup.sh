#!/usr/bin/env bash
# seqmix set-up: installs the missing distribution packages (apt-get), configures, builds, then
#   tools/setup.sh run    runs the main job on its built-in default: trains configs/quickstart.yaml
#                         (a small attention model learning MQAR; prints the final recall accuracy)
#   tools/setup.sh test   runs the test suite (ctest; GPU tests skip when no GPU is present)
# A CUDA build is made when a CUDA toolkit is found (nvcc on PATH or /usr/local/cuda), otherwise a
# CPU-only build. Environment:
#   SEQMIX_PRESET=cpu|cuda         force a preset
#   SEQMIX_CUDA_ARCHS="80;90a"     CUDA architectures (default: the local GPU's, or 90a when the
#                                  machine has no GPU, which compile-checks the Hopper paths)
#   SEQMIX_JOBS=N                  build parallelism (default: number of cores)
set -euo pipefail

mode="${1:-}"
if [[ "$mode" != "run" && "$mode" != "test" ]]; then
  echo "usage: tools/setup.sh run|test" >&2
  exit 2
fi
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build pkg-config libcli11-dev libspdlog-dev libfmt-dev
          libyaml-cpp-dev libhdf5-dev libgtest-dev libopenblas-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing: ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "[setup] need root or sudo to install packages" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

nvcc=""
if command -v nvcc >/dev/null; then nvcc=$(command -v nvcc)
elif [[ -x /usr/local/cuda/bin/nvcc ]]; then nvcc=/usr/local/cuda/bin/nvcc; fi
preset="${SEQMIX_PRESET:-$([[ -n "$nvcc" ]] && echo cuda || echo cpu)}"

args=(--preset "$preset")
if [[ "$preset" == cuda ]]; then
  [[ -n "$nvcc" ]] && args+=("-DCMAKE_CUDA_COMPILER=$nvcc")
  archs="${SEQMIX_CUDA_ARCHS:-}"
  if [[ -z "$archs" ]]; then
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then archs=native; else archs=90a; fi
  fi
  args+=("-DCMAKE_CUDA_ARCHITECTURES=$archs")
fi
jobs="${SEQMIX_JOBS:-$(nproc)}"

echo "[setup] configuring preset '$preset'"
cmake "${args[@]}" >/dev/null
echo "[setup] building with $jobs jobs"
cmake --build "build/$preset" -j "$jobs"

if [[ "$mode" == run ]]; then
  exec "build/$preset/bin/seqmix" train configs/quickstart.yaml --run-dir "runs/quickstart-$(date +%Y%m%d-%H%M%S)"
else
  exec ctest --test-dir "build/$preset" --output-on-failure -j "$jobs"
fi
