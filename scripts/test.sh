#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through CTest.
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cd build
# Each CTest entry is one Catch2 test case; CTest prints its summary last.
ctest --output-on-failure -j2 --timeout 600
