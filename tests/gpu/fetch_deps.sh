#!/usr/bin/env bash
# Fetches, on a Debian 12 machine with network, the Debian packages that the GPU check
# (tests/gpu/run_on_device.sh) needs on a bare GPU machine: one that has the CUDA toolkit,
# cmake, ninja, a C++ compiler and a Python with torch, transformers and peft, but none of
# our Debian packages and no network. The .deb files land in .gpu-deps/ (git-ignored; about
# 30 MiB), which travels with the tree; run_on_device.sh unpacks them into a private prefix.
#   tests/gpu/fetch_deps.sh [OUT_DIR]
#
# The list: the -dev packages the build needs (headers, CMake and pkg-config files, .so
# links), and the shared libraries our binaries, mpirun and its plugins load that a CUDA
# machine image does not bring, found with ldd on a build here (glibc, libstdc++, libgcc,
# and zstd are left out: every such machine has them, and carrying them would shadow the ones
# its Python was built against; zlib comes with its -dev package, which such images may lack). Libraries Open MPI loads only for network fabrics
# (UCX, libfabric, verbs, PSM) are left out too: on one machine it uses shared memory and its
# loader skips the plugins whose libraries are missing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$root/.gpu-deps}

build_packages=(
  libopenmpi-dev libhdf5-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libcxxopts-dev libgtest-dev
  nlohmann-json3-dev libpcre2-dev libsentencepiece-dev libicu-dev pkgconf pkgconf-bin libpkgconf3
  zlib1g-dev
  # tlm serve's HTTP library and what its pkg-config file requires (OpenSSL, Brotli headers)
  libcpp-httplib-dev libssl-dev libbrotli-dev
  # rewrites the search paths of the unpacked libraries to the prefix (it needs only libc/libstdc++)
  patchelf
)
runtime_packages=(
  # Open MPI and what mpirun, libmpi and their shared-memory plugins load
  libopenmpi3 openmpi-bin openmpi-common libpmix2 libhwloc15 libevent-core-2.1-7
  libevent-pthreads-2.1-7 libudev1 libnuma1 libmunge2 libltdl7
  # HDF5 and what it links (libcurl for its remote-file driver, with curl's TLS and auth chain)
  libhdf5-103-1 libsz2 libaec0 libcurl4 libnghttp2-14 libidn2-0 librtmp1 libssh2-1 libpsl5
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libldap-2.5-0
  libsasl2-2 libbrotli1 libssl3 libgnutls30 libhogweed6 libnettle8 libgmp10 libp11-kit0
  libtasn1-6 libunistring2 libffi8
  # the rest of our dependencies
  libyaml-cpp0.7 libspdlog1.10 libfmt9 libsentencepiece0 libpcre2-8-0 libicu72 zlib1g libcpp-httplib0.11
)

mkdir -p "$out"
cd "$out"
rm -f ./*.deb
if ! apt-get download "${build_packages[@]}" "${runtime_packages[@]}" >/dev/null 2>"$out/apt.log"; then
  echo "fetch_deps: apt-get download failed (run apt-get update first?):" >&2
  cat "$out/apt.log" >&2
  exit 1
fi
rm -f "$out/apt.log"
count=$(ls ./*.deb | wc -l)
size=$(du -cb ./*.deb | tail -1 | cut -f1)
awk -v n="$count" -v b="$size" -v d="$out" 'BEGIN { printf "fetch_deps: %d packages, %.1f MiB in %s\n", n, b / 1048576, d }'
