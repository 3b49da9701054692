#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through CTest.
#   scripts/test.sh              the normal build, in build/
#   scripts/test.sh --sanitize   the ASan+UBSan build of the whole suite, in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--sanitize" ]; then
  scripts/setup.sh --sanitize --build-type Debug --build-dir build-asan
  cd build-asan
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  scripts/setup.sh
  cd build
fi
# Each CTest entry is one Catch2 test case; CTest prints its summary last.
ctest --output-on-failure -j2 --timeout 900
