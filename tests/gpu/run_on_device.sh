#!/usr/bin/env bash
# The GPU check, run from the repository root on a bare one-GPU machine (e.g. an NVIDIA H200
# with 16 cores) that has the CUDA toolkit, cmake, ninja, a C++ compiler and a Python 3.12
# with torch (CUDA 13), transformers, peft, safetensors, tokenizers, sentencepiece and h5py,
# but none of our Debian packages and no network:
#   1. unpacks the Debian packages of .gpu-deps/ (made here by tests/gpu/fetch_deps.sh) into
#      a private prefix, with an mpirun that finds its own libraries and plugins there;
#   2. builds tlm against that machine's LibTorch (the targets the gpu tests run), with an
#      RPATH to the prefix, so nothing is installed and the system's libraries are untouched;
#   3. runs the gpu-labelled tests (ctest -L gpu);
#   4. runs the one-GPU benchmark (tests/gpu/bench_gpu.py: TLM steps of a Llama-3.2-1B-shaped
#      random bf16 model, tlm against HF transformers + PEFT on the same GPU);
#   5. prints one summary table. Logs and the benchmark's JSON go to $OUT (or $TLM_GPU_WORK/out).
# Meant to finish in under 8 minutes. Settings (environment): TLM_GPU_PYTHON (python3),
# TLM_GPU_WORK (/tmp/tlm-gpu-check), TLM_GPU_DEPS (.gpu-deps), TLM_GPU_JOBS (nproc),
# TLM_GPU_SHAPE (llama3.2-1b), TLM_GPU_DEVICE (cuda; cpu rehearses every step on a machine
# without a GPU, with TLM_GPU_SHAPE=tiny: the gpu tests then report Skipped), TLM_GPU_BUDGET
# (seconds the whole check may take, 0 = no limit: the benchmark is skipped, and says so, when
# less than 150 s of it are left after the tests).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
python=${TLM_GPU_PYTHON:-python3}
work=${TLM_GPU_WORK:-/tmp/tlm-gpu-check}
deps=${TLM_GPU_DEPS:-$root/.gpu-deps}
jobs=${TLM_GPU_JOBS:-$(nproc)}
shape=${TLM_GPU_SHAPE:-llama3.2-1b}
budget=${TLM_GPU_BUDGET:-0}
device=${TLM_GPU_DEVICE:-cuda}
out=${OUT:-$work/out}
prefix=$work/prefix
build=$work/build
mkdir -p "$work" "$out"
t0=$(date +%s)
declare -a rows=()
row() { rows+=("$(printf '%-34s %s' "$1" "$2")"); printf '\n[gpu check] %s: %s\n' "$1" "$2"; }
since() { echo "$(( $(date +%s) - t0 )) s"; }
fail() { row "stopped" "$1"; finish 1; }
finish() {
  printf '\n==================== tlm GPU check: summary ====================\n'
  printf '%s\n' "${rows[@]}"
  printf '================================================================\n'
  exit "$1"
}

# ---- 0. the machine ------------------------------------------------------------------------
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
row "GPU" "${gpu:-none visible (nvidia-smi: $(command -v nvidia-smi || echo absent))}"
row "python / torch" "$($python -c 'import sys, torch; print(sys.version.split()[0], "/ torch", torch.__version__, "/ CUDA", torch.version.cuda, "/ GPUs", torch.cuda.device_count())' 2>&1 | tail -1)"
row "nvcc / cmake" "$(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'no nvcc') / $(cmake --version | head -1)"
row "peft / transformers" "$($python -c 'import peft, transformers; print(peft.__version__, "/", transformers.__version__)' 2>&1 | tail -1)"

# ---- 1. private prefix ----------------------------------------------------------------------
ls "$deps"/*.deb >/dev/null 2>&1 || fail "no .deb files in $deps: run tests/gpu/fetch_deps.sh on a Debian 12 machine first"
rm -rf "$prefix" && mkdir -p "$prefix"
for f in "$deps"/*.deb; do
  if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$f" "$prefix"
  else (cd "$prefix" && ar p "$f" "$(ar t "$f" | grep '^data.tar')" | tar -x); fi || fail "cannot unpack $f"
done
# Absolute symlinks inside the packages point at /usr/...: repoint them into the prefix.
while IFS= read -r link; do
  target=$(readlink "$link")
  [ -e "$prefix$target" ] && ln -sfn "$prefix$target" "$link"
done < <(find "$prefix" -type l -lname '/*')
arch=x86_64-linux-gnu
libdirs="$prefix/usr/lib/$arch:$prefix/usr/lib/$arch/hdf5/serial:$prefix/usr/lib/$arch/openmpi/lib"
# Debian's libraries look for their dependencies in /usr (libmpi's RUNPATH names
# /usr/lib/x86_64-linux-gnu/openmpi/lib, and a RUNPATH stops the executable's RPATH from
# applying): point every unpacked ELF file's search path at the prefix instead, so that no
# LD_LIBRARY_PATH is needed and nothing outside our binaries sees these libraries.
patchelf=$prefix/usr/bin/patchelf
[ -x "$patchelf" ] || fail "patchelf is not among the unpacked packages (fetch_deps.sh brings it)"
patched=0
while IFS= read -r elf; do
  [ "$(head -c 4 "$elf" | od -An -c | tr -d ' ')" = "177ELF" ] || continue
  [ "$elf" = "$patchelf" ] && continue
  "$patchelf" --set-rpath "$libdirs:$prefix/usr/lib/$arch/openmpi/lib/openmpi3:$prefix/usr/lib/$arch/pmix2/lib" "$elf" 2>/dev/null \
    && patched=$((patched + 1))
done < <(find "$prefix/usr/lib" "$prefix/usr/bin" -type f \( -name '*.so*' -o -perm -u+x \))
mkdir -p "$prefix/bin"
cat >"$prefix/bin/mpirun" <<EOF
#!/bin/sh
# Open MPI unpacked into $prefix: its own libraries, plugins and help files.
export OPAL_PREFIX="$prefix/usr"
export OMPI_MCA_mca_base_component_path="$prefix/usr/lib/$arch/openmpi/lib/openmpi3"
export PMIX_MCA_mca_base_component_path="$prefix/usr/lib/$arch/pmix2/lib/pmix"
export OMPI_MCA_mca_base_component_show_load_errors=0
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_pml=ob1
exec "$prefix/usr/bin/orterun" "\$@"
EOF
cat >"$prefix/bin/pkg-config" <<EOF
#!/bin/sh
# pkgconf unpacked into $prefix, reading the prefix's .pc files with paths under it.
export PKG_CONFIG_PATH="$prefix/usr/lib/$arch/pkgconfig:$prefix/usr/share/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$prefix"
exec "$prefix/usr/bin/pkgconf" "\$@"
EOF
chmod +x "$prefix/bin/mpirun" "$prefix/bin/pkg-config"
row "private prefix" "$(ls "$deps"/*.deb | wc -l) packages unpacked into $prefix, $patched ELF files repointed ($(since))"

# ---- 2. build -------------------------------------------------------------------------------
torch_prefix=$($python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)') || fail "python has no torch"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$prefix/usr" -DCMAKE_LIBRARY_ARCHITECTURE=$arch \
  -DTLM_PYTHON="$(command -v "$python")" -DTLM_WITH_FUZZERS=OFF \
  -DCMAKE_POLICY_VERSION_MINIMUM=3.5 \
  -DPKG_CONFIG_EXECUTABLE="$prefix/bin/pkg-config" \
  -DMPI_C_COMPILER=/nonexistent -DMPI_C_HEADER_DIR="$prefix/usr/lib/$arch/openmpi/include" \
  -DMPI_C_LIB_NAMES=mpi -DMPI_mpi_LIBRARY="$prefix/usr/lib/$arch/openmpi/lib/libmpi.so" \
  -DMPIEXEC_EXECUTABLE="$prefix/bin/mpirun" \
  -DHDF5_C_INCLUDE_DIR="$prefix/usr/include/hdf5/serial" \
  -DHDF5_C_LIBRARY_hdf5="$prefix/usr/lib/$arch/hdf5/serial/libhdf5.so" \
  -DCMAKE_BUILD_RPATH="${libdirs//:/;}" \
  -DCMAKE_EXE_LINKER_FLAGS="-Wl,--disable-new-dtags -Wl,-rpath-link,$libdirs" \
  -DCMAKE_SHARED_LINKER_FLAGS="-Wl,-rpath-link,$libdirs" \
  >"$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; fail "cmake configure failed (configure.log)"; }
# The gpu tests' binaries only (the full build is CI's): tlm, tlm-ckpt, the model probe and the
# gpu-labelled GoogleTest binaries.
targets=(tlm tlm-ckpt model_probe generate.sampler dist.nccl_communicator)
cmake --build "$build" -j "$jobs" --target "${targets[@]}" >"$out/build.log" 2>&1 \
  || { grep -E "error|FAILED" "$out/build.log" | head -30; fail "build failed (build.log)"; }
row "build" "${#targets[@]} targets with $jobs jobs ($(since))"

# ---- 3. gpu-labelled tests ------------------------------------------------------------------
export PATH="$prefix/bin:$PATH"
ctest --test-dir "$build" -L gpu -V -j 3 --timeout 300 >"$out/ctest.log" 2>&1
ctest_rc=$?
while IFS= read -r line; do
  name=$(sed -E 's/.*Test +#[0-9]+: ([^ ]+) .*/\1/' <<<"$line")
  status=$(grep -oE 'Passed|Failed|Skipped|Timeout|Not Run|Exception' <<<"$line" | head -1)
  row "test $name" "$status ($(grep -oE '[0-9.]+ sec' <<<"$line"))"
done < <(grep -E "Test +#[0-9]+: " "$out/ctest.log")
grep -E "^\s*[0-9]+: \[parity\]|\[resume\]" "$out/ctest.log" | sed -E 's/^ *[0-9]+: //' >"$out/parity.txt"
row "gpu tests" "$(grep -E 'tests passed' "$out/ctest.log" || echo 'ctest did not finish') ($(since))"

# ---- 4. benchmark ---------------------------------------------------------------------------
if [ "$budget" -gt 0 ] && [ $(( budget - ($(date +%s) - t0) )) -lt 150 ]; then
  row "benchmark" "skipped: $(( budget - ($(date +%s) - t0) )) s of the ${budget} s budget left"
  bench_ok=0
elif "$python" "$root/tests/gpu/bench_gpu.py" --tlm "$build/launch/tlm" --work "$work/bench" --shape "$shape" \
     --device "$device" --json "$out/bench.json" >"$out/bench.log" 2>&1; then
  row "benchmark" "done ($(since)); table below"
  bench_ok=1
else
  tail -30 "$out/bench.log"
  row "benchmark" "FAILED (bench.log) ($(since))"
  bench_ok=0
fi

printf '\n---- [parity] lines of the gpu tests ----\n'
cat "$out/parity.txt"
printf '\n---- benchmark ----\n'
[ "$bench_ok" = 1 ] && sed -n '/^TLM steps on/,$p' "$out/bench.log"
[ "$ctest_rc" = 0 ] && [ "$bench_ok" = 1 ] && finish 0
finish 1
