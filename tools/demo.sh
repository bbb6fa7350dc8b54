#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the demo that shows
# the runtime delivering events, with figures. Arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh build
exec ./build/examples/ceq_demo "$@"
