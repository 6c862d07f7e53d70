#!/usr/bin/env bash
# Installs speechalign into ./.venv (system packages via apt when run as root).
# Usage: tools/install.sh [--test]   (--test adds pytest, hypothesis and MkDocs, and Chromium with a CJK font
#                                     for the headless-browser test of the `report --html` page)
set -euo pipefail
cd "$(dirname "$0")/.."

extra=""
[ "${1:-}" = "--test" ] && extra="[test]"

need=()
for tool in espeak-ng ffmpeg sox; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
if [ -n "$extra" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  fc-list 2>/dev/null | grep -qi "wenquanyi" || need+=(fonts-wqy-zenhei)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: please install ${need[*]} (e.g. sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" libsndfile1 >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# setuptools warns on every editable install that a folder named like the package shadows it: here that
# folder is the package itself, so the notice says nothing a user must act on.
PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install -q -e ".${extra}"
tools/install_kenlm.sh   # KenLM's lmplz for `speechalign train-lm` (no package ships the binary)
echo "install.sh: speechalign installed in $(pwd)/.venv"
