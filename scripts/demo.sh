#!/usr/bin/env bash
# The main job on the embedded default: installs what is missing, builds, generates
# a realistic sample stream (with a share of malformed lines), ingests it into a
# fresh data directory, and verifies the log.
#   scripts/demo.sh [--events N] [--customers N]
set -euo pipefail
cd "$(dirname "$0")/.."
events=100000
customers=10000
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events=$2; shift 2 ;;
    --customers) customers=$2; shift 2 ;;
    *) echo "demo.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
scripts/setup.sh

work=$(mktemp -d /tmp/loyalty-demo-XXXXXX)
echo "== generating $events events for $customers customers into $work/events.jsonl"
build/loyalty produce --file "$work/events.jsonl" --events "$events" --customers "$customers" --seed 7
echo
echo "== a few lines of the stream"
head -n 3 "$work/events.jsonl"
echo
echo "== ingesting into $work/data"
build/loyalty ingest --data-dir "$work/data" "$work/events.jsonl"
echo
echo "== ingesting the same file again (exactly once: nothing new is appended)"
build/loyalty ingest --data-dir "$work/data" "$work/events.jsonl" | tail -n 1
echo
echo "== a customer's balance, tier and churn signals, and the program's stats, over HTTP"
build/loyalty serve --data-dir "$work/data" --http 127.0.0.1:0 --grpc 127.0.0.1:0 \
  > "$work/serve.log" 2>&1 &
serve_pid=$!
trap 'kill -TERM "$serve_pid" 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1 50); do
  port=$(sed -n 's/.*HTTP on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/serve.log")
  [ -n "$port" ] && break
  sleep 0.1
done
customer=$(grep -m 1 -o '"customerId":"[^"]*"' "$work/events.jsonl" | cut -d'"' -f4)
for route in balance tier churn; do
  echo "\$ curl localhost:$port/v1/customers/$customer/$route"
  curl -s "localhost:$port/v1/customers/$customer/$route"
done
echo "\$ curl localhost:$port/v1/stats"
curl -s "localhost:$port/v1/stats"
kill -TERM "$serve_pid"
wait "$serve_pid"
trap - EXIT
echo
echo "== audit: chain, verdicts, decisions, projections, conservation"
build/loyalty replay verify --data-dir "$work/data"
echo
echo "data directory kept at $work/data"
