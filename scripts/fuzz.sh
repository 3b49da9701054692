#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, docs/fuzzing.md) with clang, ASan and
# UBSan into build-fuzz/, and runs each for N seconds on a copy of its seed corpus.
#
#   scripts/fuzz.sh [--seconds N] [--jobs J]     N defaults to 30, J (build) to 1
#
# Installs clang if it is missing (as root; the other packages come from
# scripts/setup.sh). Exits non-zero if any target crashes, leaks or trips a
# sanitizer, printing the reproducer; the last line is `fuzz: P passed, F failed`.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds=30
jobs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    *) echo "fuzz.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$seconds" in ''|*[!0-9]*|0) echo "fuzz.sh: --seconds takes a whole number > 0" >&2; exit 2 ;; esac

if ! dpkg-query -W -f='${Status}' clang 2>/dev/null | grep -q "install ok installed"; then
  if [ "$(id -u)" != 0 ]; then
    echo "fuzz.sh: clang is missing (run as root to install it)" >&2
    exit 1
  fi
  echo "fuzz.sh: installing clang" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq clang >/dev/null
fi

targets=(event_json event_protobuf check_input http_query)
build_dir=build-fuzz
start=$(date +%s)
launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  # As scripts/setup.sh: paths relative to the checkout, so CI's clones share the cache.
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
fi
CC=clang CXX=clang++ cmake -S . -B "$build_dir" -DLOYALTY_FUZZ=ON -DLOYALTY_BUILD_TESTS=OFF \
  "${launcher[@]}" >/dev/null
cmake --build "$build_dir" -j"$jobs" --target fuzz
echo "fuzz: built in $(( $(date +%s) - start )) s"

# Any sanitizer finding is fatal; leaks are checked after each input (libFuzzer).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_dir=$build_dir/fuzz-run
rm -rf "$run_dir"
passed=0
failed=0
summary=()
for t in "${targets[@]}"; do
  dir=$run_dir/$t
  mkdir -p "$dir/corpus"
  cp tests/fuzz/corpus/"$t"/* "$dir/corpus/"
  echo "fuzz: $t for ${seconds} s" >&2
  rc=0
  "$build_dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$dir/" "$dir/corpus" >"$dir/log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  if [ "$rc" = 0 ]; then
    passed=$((passed + 1))
    summary+=("fuzz: $t: ok, ${execs:-0} executions in ${seconds} s, corpus $(ls "$dir/corpus" | wc -l) inputs")
  else
    failed=$((failed + 1))
    reproducer=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$dir/log" | tail -1)
    tail -n 60 "$dir/log" >&2
    summary+=("fuzz: $t: FAILED (exit $rc) after ${execs:-?} executions; reproducer: ${reproducer:-none}; log: $dir/log")
  fi
done
printf '%s\n' "${summary[@]}"
echo "fuzz: $(( $(date +%s) - start )) s in all"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
