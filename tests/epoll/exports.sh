#!/usr/bin/env bash
# The preload library's dynamic symbols are exactly the functions it
# interposes and the ueq_* C API of <ueq/epoll.h>: nothing of ueq's C++
# inside (or of the abseil and standard-library code it instantiates) can
# clash with a program's own. It has a soname.
#   usage: exports.sh LIBRARY HEADER
set -euo pipefail
lib=$1
header=$2
for tool in nm readelf; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIP: $tool not installed (binutils)"
    exit 77
  fi
done

interposed="close close_range dup dup2 dup3 fcntl fcntl64 fork pthread_cancel epoll_create epoll_create1 epoll_ctl epoll_pwait epoll_pwait2 epoll_wait execve execv execvp execvpe execl execle execlp fexecve execveat posix_spawn posix_spawnp system popen"
# vfork's entry is a few lines of x86-64 assembly (epoll/preload.cpp).
[ "$(uname -m)" = x86_64 ] && interposed="$interposed vfork"
api=$(grep -o '\bueq_[a-z0-9_]*(' "$header" | tr -d '(' | sort -u)
exported=$(nm -D --defined-only "$lib" | awk '{print $NF}' | sort -u)
[ -n "$api" ] || { echo "FAIL: no ueq_* function found in $header"; exit 1; }

fail=0
extra=0
for s in $exported; do
  case " $interposed " in *" $s "*) continue ;; esac
  [[ $s =~ ^ueq_[a-z0-9_]+$ ]] && continue
  extra=$((extra + 1))
  [ "$extra" -le 20 ] && echo "FAIL: exported: $s"
  fail=1
done
[ "$extra" -gt 20 ] && echo "FAIL: ... $((extra - 20)) more exported symbols"
for s in $interposed $api; do
  if ! grep -qx "$s" <<<"$exported"; then
    echo "FAIL: not exported: $s"
    fail=1
  fi
done
if ! readelf -d "$lib" | grep -q '(SONAME)'; then
  echo "FAIL: no soname"
  fail=1
fi
[ "$fail" -eq 0 ] && echo "ok: $(wc -w <<<"$exported") exported symbols, all interposed or ueq_*"
exit "$fail"
