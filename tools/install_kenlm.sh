#!/usr/bin/env bash
# Builds KenLM's lmplz (n-gram estimation with modified Kneser-Ney + pruning) and build_binary into
# .venv/bin, from the kenlm sdist on PyPI: no apt package ships them and the PyPI wheel only has the
# query module. Needs cmake, g++ and Boost (apt-installed when run as root). ~3 min on 2 cores.
# Usage: tools/install_kenlm.sh        (no-op when .venv/bin/lmplz exists)
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.3.0
[ -x .venv/bin/lmplz ] && [ -x .venv/bin/build_binary ] && exit 0

debs=(cmake g++ libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev
      zlib1g-dev libbz2-dev liblzma-dev)
missing=()
for d in "${debs[@]}"; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install_kenlm.sh: please install ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m pip download -q --no-deps --no-binary kenlm "kenlm==$version" -d "$work"
tar xzf "$work/kenlm-$version.tar.gz" -C "$work"
# KENLM_MAX_ORDER 10: character LMs want longer contexts than word LMs.
# The compiler's deprecation warnings about KenLM's C++ are not the user's concern: the build log is shown
# only when the build fails.
build_log=$work/build.log
if ! { cmake -S "$work/kenlm-$version" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=10 \
         -DCOMPILE_TESTS=OFF && cmake --build "$work/build" --target lmplz build_binary -j "$(nproc)"; } \
       >"$build_log" 2>&1; then
  tail -n 40 "$build_log" >&2
  echo "install_kenlm.sh: building KenLM failed (the last 40 lines of its build log are above)" >&2
  exit 1
fi
install -m 755 "$work/build/bin/lmplz" "$work/build/bin/build_binary" .venv/bin/
echo "install_kenlm.sh: lmplz and build_binary installed in $(pwd)/.venv/bin"
