#!/bin/sh
# What `loyalty bench` needs beyond scripts/setup.sh (Debian 12, as root): PostgreSQL
# 15 for the `postgres` scenario, gnuplot for the plots of docs/benchmarks.md, and
# perf for profiles. Installs only what is missing; the engine's build never needs it.
set -eu
missing=""
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing="$missing postgresql-15"
command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot-nox"
command -v perf >/dev/null 2>&1 || missing="$missing linux-perf"
if [ -n "$missing" ]; then
  apt-get update
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
fi
# Debian's package starts a cluster of its own; the bench runs its own on a
# temporary directory and a unix socket, so the packaged one is not needed.
echo "bench prerequisites present"
