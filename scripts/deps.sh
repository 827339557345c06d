#!/usr/bin/env bash
# Installs the Debian 12 packages poscache builds and tests with, if any is missing.
#   scripts/deps.sh               the packages below
#   scripts/deps.sh PACKAGE...    and these too (scripts/fuzz.sh: clang and libFuzzer)
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config
          libboost-dev libspdlog-dev libfmt-dev libhiredis-dev libxxhash-dev
          nlohmann-json3-dev libsimdjson-dev libcli11-dev libtomlplusplus-dev libsystemd-dev
          libgtest-dev googletest redis-server redis-tools python3-redis clang-format
          pybind11-dev python3-dev python3-pytest prometheus
          python3-venv python3-setuptools python3-pip  # pip install into a venv, offline
          systemd  # systemd-analyze verify: the shipped units
          universal-ctags  # functions' extents: the function-length check (tests/code/)
          "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
