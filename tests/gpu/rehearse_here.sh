#!/usr/bin/env bash
# Rehearses the GPU check (tests/gpu/run_on_device.sh) on this Debian machine without a GPU,
# as root, in a private mount namespace in which the system's copies of the carried packages
# are hidden (their files bind-mounted over with /dev/null): the build must then find every
# header, CMake and pkg-config file, library and mpirun in the private prefix, as it must on
# the bare GPU machine. Runtime libraries that this machine's own tools need (cmake links
# ICU, libcurl and OpenSSL; grep links PCRE2) stay visible, so for those only the -dev
# files are hidden. The gpu tests report Skipped here; the benchmark runs on the CPU with
# the tiny shape.
#   tests/gpu/rehearse_here.sh        (after tests/gpu/fetch_deps.sh)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deps=${TLM_GPU_DEPS:-$root/.gpu-deps}
[ "$(id -u)" -eq 0 ] || { echo "rehearse_here: needs root (mount namespace)" >&2; exit 1; }
keep_visible="libicu72 libpcre2-8-0 libcurl4 libssl3 libnghttp2-14 libidn2-0 librtmp1 libssh2-1 libpsl5 \
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libldap-2.5-0 libsasl2-2 \
  libbrotli1 libgnutls30 libhogweed6 libnettle8 libgmp10 libp11-kit0 libtasn1-6 libunistring2 libffi8 libudev1 \
  libnuma1 libmunge2 libltdl7 zlib1g"
hide=$(mktemp)
for f in "$deps"/*.deb; do
  pkg=$(dpkg-deb -f "$f" Package)
  case " $keep_visible " in *" $pkg "*) continue ;; esac
  dpkg -L "$pkg" 2>/dev/null | grep -v '/share/doc\|/share/man\|lintian' || true
done | while IFS= read -r p; do if [ -f "$p" ] && [ ! -L "$p" ]; then echo "$p"; fi; done >"$hide"
echo "rehearse_here: hiding $(wc -l <"$hide") files of the carried packages"
unshare -m bash -c "
  set -e
  mount --make-rprivate /
  while IFS= read -r f; do mount --bind /dev/null \"\$f\"; done <'$hide'
  test ! -s /usr/include/hdf5/serial/hdf5.h
  TLM_GPU_DEVICE=cpu TLM_GPU_SHAPE=tiny TLM_GPU_PYTHON=\${TLM_PYTHON:-python3} bash '$root/tests/gpu/run_on_device.sh'
"
