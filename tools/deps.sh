#!/usr/bin/env bash
# Installs the Debian 12 packages ueq needs to build, test and benchmark,
# skipping those already installed. Safe to run again. Needs root (or sudo)
# only when something is missing.
#   tools/deps.sh              build, tests, benchmarks
#   tools/deps.sh --programs   also the real programs the epoll suite runs
#                              under ueq-run (nginx, memcached, redis,
#                              curl, wrk)
#   tools/deps.sh --fuzz       also clang and libFuzzer, for the fuzz targets
set -euo pipefail

packages=(
  gcc g++              # compilers (libgcc-12-dev brings ASan, UBSan, TSan)
  meson ninja-build pkg-config
  libboost-context-dev # uthread switches (its fcontext layer)
  libboost-dev         # boost::lockfree (a benchmark baseline)
  libboost-fiber-dev   # Boost.Fiber (a benchmark baseline)
  libevent-dev         # libevent (a benchmark baseline of the taps)
  libabsl-dev          # abseil: containers, synchronisation, time
  catch2               # Catch2 v2 test framework
  liburing-dev         # the io_uring backend of taps/
  clang-format         # formatting check in CI
  spin                 # model checking of the CEQ and wakeup protocols
  gnuplot-nox          # ueq-lab renders its charts (SVG, PNG through pngcairo)
)

for opt in "$@"; do
  case "$opt" in
    --programs) packages+=(nginx-light memcached curl wrk redis-server) ;;
    --fuzz) packages+=(clang libclang-rt-14-dev) ;;
    *) echo "ueq: unknown option $opt" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "ueq: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "ueq: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# Installing a server package must not start its service: the tests start
# their own instances on free ports.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  remove_policy=1
fi
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
if [ "${remove_policy:-0}" = 1 ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi
