#!/usr/bin/env bash
# Runs a program natively and under the preload library; the outputs (and
# exit statuses) must be the same.
#   usage: facade.sh PRELOAD_LIBRARY PROGRAM [ARGS...]
set -uo pipefail
lib=$1
shift
native=$("$@" 2>&1; echo "exit=$?")
ueq=$(LD_PRELOAD=$lib "$@" 2>&1; echo "exit=$?")
echo "native:"
echo "$native"
if [ "$native" != "$ueq" ]; then
  echo "under $lib:"
  echo "$ueq"
  echo "FAIL: the outputs differ"
  exit 1
fi
echo "same under the preload library"
