#!/usr/bin/env bash
# The thread-safety analysis catches a missing lock: unguarded.cpp compiles
# with its locks and fails without them, under the flags the thread_safety
# build uses. Args: the C++ compiler, the source root.
set -u
cxx=$1 root=$2
flags=(-std=c++20 -fsyntax-only -Wthread-safety -Werror -I "$root/runtime/include")
src="$root/tests/layout/unguarded.cpp"
if ! "$cxx" "${flags[@]}" "$src"; then
  echo "FAIL: the guarded version does not compile"
  exit 1
fi
if out=$("$cxx" "${flags[@]}" -DUNGUARDED "$src" 2>&1); then
  echo "FAIL: a guarded member written without its lock compiled"
  exit 1
fi
n=$(grep -c "requires holding" <<<"$out")
if [ "$n" -ne 2 ]; then
  echo "FAIL: expected 2 'requires holding' errors (os_mutex, spin_lock), got $n:"
  echo "$out"
  exit 1
fi
echo "ok: both unguarded writes rejected"
