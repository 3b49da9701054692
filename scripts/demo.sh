#!/usr/bin/env bash
# The main job on the embedded default: installs what is missing, builds, starts
# the engine on an in-process mock Kafka cluster, produces a realistic stream into
# it (skewed customers, the full event mix, a share of malformed messages and
# duplicates), waits until every message is applied, shows what a user came for
# (balances, tiers, churn, stats, dead letters, the outcomes and signals topics),
# stops the engine cleanly and audits the log.
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
data="$work/data"
echo "== starting the engine on an embedded Kafka cluster (data in $data)"
build/loyalty serve --data-dir "$data" --embedded-kafka --http 127.0.0.1:0 --grpc 127.0.0.1:0 \
  --sweep-interval 5 \
  > "$work/serve.log" 2>&1 &
serve_pid=$!
trap 'kill -TERM "$serve_pid" 2>/dev/null || true' EXIT
port=""
brokers=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*HTTP on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/serve.log")
  brokers=$(sed -n 's/.*embedded Kafka bootstrap \(.*\)/\1/p' "$work/serve.log")
  [ -n "$port" ] && [ -n "$brokers" ] && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$work/serve.log"; exit 1; }
cat "$work/serve.log"

echo
echo "== producing $events events for $customers customers to loyalty.events (protobuf)"
build/loyalty produce --brokers "$brokers" --events "$events" --customers "$customers" \
  --format protobuf --seed 7

echo
echo "== waiting until the engine has applied every message (GET /v1/progress)"
for _ in $(seq 1 600); do
  # Before the first batch there is no partition yet: nothing to sum.
  taken=$(curl -s "localhost:$port/v1/progress" | { grep -o '"offset":"[0-9]*"' || true; } |
          { grep -o '[0-9]*' || true; } | awk '{ s += $1 } END { print s + 0 }')
  [ "${taken:-0}" -ge "$events" ] && break
  sleep 0.2
done
curl -s "localhost:$port/v1/progress"; echo

customer=c-000001
echo
echo "== one customer's balance, tier and churn signals"
for route in balance tier churn; do
  echo "\$ curl localhost:$port/v1/customers/$customer/$route"
  curl -s "localhost:$port/v1/customers/$customer/$route"; echo
done
echo "\$ curl 'localhost:$port/v1/customers?risk_level=AT_RISK&limit=3'"
curl -s "localhost:$port/v1/customers?risk_level=AT_RISK&limit=3"; echo
echo
echo "== program stats"
curl -s "localhost:$port/v1/stats"; echo
echo
echo "== what became of the messages, and the dead letters by reason (GET /metrics)"
curl -s "localhost:$port/metrics" | grep -E '^loyalty_(events_total|dead_letters_total|consumer_lag|log_length)'

echo
echo "== waiting until the outbox has published the whole log (loyalty_outbox_cursor = loyalty_log_length)"
for _ in $(seq 1 300); do
  metrics=$(curl -s "localhost:$port/metrics")
  cursor=$(echo "$metrics" | awk '$1 == "loyalty_outbox_cursor" { print $2 }')
  length=$(echo "$metrics" | awk '$1 == "loyalty_log_length" { print $2 }')
  [ -n "$cursor" ] && [ -n "$length" ] && [ "$cursor" -ge "$length" ] && break
  sleep 0.2
done
echo "outbox cursor ${cursor:-?} of ${length:-?} records"

echo
echo "== what downstream systems receive (kcat on the output topics; the mock keeps ~5 MiB a partition)"
echo "\$ kcat -C -b \$brokers -t loyalty.events.dlq -o -3 -e   # dead letters: original bytes, reason headers"
kcat -C -q -b "$brokers" -t loyalty.events.dlq -o -3 -e -f 'headers: %h\n  value: %s\n' | cut -c1-220
echo "\$ kcat -C -b \$brokers -t loyalty.outcomes -p 0 -o -2 -e   # one per applied event"
kcat -C -q -b "$brokers" -t loyalty.outcomes -p 0 -o -2 -e -f 'key %k  %h\n  %s\n' | cut -c1-400
echo "\$ kcat -C -b \$brokers -t loyalty.signals -p 0 -o -6 -e   # tier, churn risk, expiring points"
kcat -C -q -b "$brokers" -t loyalty.signals -p 0 -o -6 -e -f 'key %k  %s\n'

echo
echo "== stopping the engine (SIGTERM: the batch in progress finishes, exit 0)"
kill -TERM "$serve_pid"
wait "$serve_pid"
trap - EXIT
tail -n 1 "$work/serve.log"

echo
echo "== audit: chain, verdicts, decisions, projections, conservation"
build/loyalty replay verify --data-dir "$data"
echo
echo "data directory kept at $data"
