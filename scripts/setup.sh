#!/usr/bin/env bash
# Installs every Debian package the build, tests and demo need (quick when all are
# present), then configures and builds with CMake.
#
#   scripts/setup.sh [--build-dir DIR] [--sanitize] [--build-type TYPE]
#
# Runs as root on a fresh Debian 12 machine; as another user it only checks.
set -euo pipefail

cd "$(dirname "$0")/.."
build_dir=build
sanitize=OFF
build_type=RelWithDebInfo
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=$2; shift 2 ;;
    --sanitize) sanitize=ON; shift ;;
    --build-type) build_type=$2; shift 2 ;;
    *) echo "setup.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

packages=(
  build-essential cmake pkg-config ccache git clang
  librdkafka-dev librocksdb-dev libprotobuf-dev protobuf-compiler libabsl-dev
  catch2 libgrpc++-dev protobuf-compiler-grpc libssl-dev libcpp-httplib-dev
  libcli11-dev libjemalloc-dev kcat curl
  python3 openjdk-17-jdk-headless maven
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: missing packages (run as root to install): ${missing[*]}" >&2
    exit 1
  fi
  echo "setup.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  # Paths relative to the checkout, so clones in other folders (CI's) share the cache.
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
fi
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE="$build_type" \
  -DLOYALTY_SANITIZE="$sanitize" "${launcher[@]}" >/dev/null
cmake --build "$build_dir" -j2
