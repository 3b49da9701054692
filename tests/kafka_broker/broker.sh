#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, broker+controller in one JVM) on
# loopback, for the real-kafka integration tests. See docs/kafka-broker.md.
#
#   broker.sh fetch               fetch the broker's classpath into the cache (once)
#   broker.sh start   DIR         format DIR/data once, start, wait until it answers;
#                                 writes DIR/bootstrap, DIR/pid, DIR/ports
#   broker.sh start-fresh DIR     stop a broker left running from DIR, forget its
#                                 data and ports, then start (the CTest setup)
#   broker.sh stop    DIR         TERM, then KILL after 30 s
#   broker.sh kill9   DIR         SIGKILL (no clean shutdown), wait until it is gone
#   broker.sh restart DIR         start again on the same ports and log directory
#   broker.sh status  DIR         exit 0 if the broker answers
#   broker.sh topics  DIR ARGS..  TopicCommand --bootstrap-server <DIR's broker> ARGS..
#   broker.sh classpath           print the classpath (a java -cp argument)
#
# Environment: LOYALTY_KAFKA_VERSION (default 4.1.1), LOYALTY_KAFKA_CACHE (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/loyalty/kafka-<version>), LOYALTY_KAFKA_HEAP
# (default 512m), LOYALTY_KAFKA_JVM_OPTS (extra flags for the broker's JVM).
set -euo pipefail

VERSION="${LOYALTY_KAFKA_VERSION:-4.1.1}"
CACHE="${LOYALTY_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loyalty/kafka-$VERSION}"
HEAP="${LOYALTY_KAFKA_HEAP:-512m}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
START_TIMEOUT_S=120
STOP_TIMEOUT_S=30

log() { echo "broker.sh: $*" >&2; }
die() { log "$*"; exit 1; }

now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- classpath
fetch() {
  if [[ -f "$CACHE/.complete" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (scripts/setup.sh installs maven)"
  command -v java >/dev/null || die "java not found (scripts/setup.sh installs openjdk-17-jdk-headless)"
  mkdir -p "$(dirname "$CACHE")"
  # One fetch at a time, whoever asks (two test runs on one machine).
  exec 9>"$CACHE.lock"
  flock -w 900 9 || die "timed out waiting for another fetch of $CACHE"
  if [[ -f "$CACHE/.complete" ]]; then
    exec 9>&-
    return 0
  fi
  local tmp="$CACHE.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  log "fetching org.apache.kafka:kafka_2.13:$VERSION and its runtime classpath into $CACHE"
  local t0 t1
  t0=$(now_ms)
  if ! timeout 900 mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies \
      -Dkafka.version="$VERSION" -DoutputDirectory="$tmp/libs" >"$tmp/mvn.log" 2>&1; then
    tail -20 "$tmp/mvn.log" >&2 || true
    rm -rf "$tmp"
    exec 9>&-
    die "mvn could not fetch Kafka $VERSION"
  fi
  t1=$(now_ms)
  ls "$tmp/libs"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "no kafka_2.13 jar fetched"; }
  echo "$(( (t1 - t0) ))" >"$tmp/fetch_ms"
  rm -rf "$CACHE"
  mv "$tmp" "$CACHE"
  touch "$CACHE/.complete"
  exec 9>&-
  log "fetched $(ls "$CACHE/libs" | wc -l) jars ($(du -sh "$CACHE/libs" | cut -f1)) in $(( (t1 - t0) / 1000 )).$(( (t1 - t0) % 1000 / 100 )) s"
}

classpath() { echo "$CACHE/libs/*"; }

# ---------------------------------------------------------------- helpers
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

pid_alive() {
  local pid="$1"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

read_pid() { [[ -f "$1/pid" ]] && cat "$1/pid" || true; }

answers() {
  # kcat lists the broker once it serves metadata.
  local bootstrap="$1"
  timeout 10 kcat -L -b "$bootstrap" -m 3 -J 2>/dev/null | grep -q '"brokers":\[{'
}

write_config() {
  local dir="$1" bport="$2" cport="$3"
  cat >"$dir/server.properties" <<EOF
# Written by tests/kafka_broker/broker.sh: one node, broker and controller, loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$bport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
# Quick tests: no wait for more members before the first rebalance.
group.initial.rebalance.delay.ms=0
# The engine's output topics (loyalty.events.dlq, loyalty.outcomes, loyalty.signals)
# are created on first use; the tests create the input topics themselves.
auto.create.topics.enable=true
num.partitions=1
# A restarted node waits for its previous incarnation's session to expire (9 s by default).
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=500
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.retention.hours=24
log.segment.bytes=67108864
EOF
  cat >"$dir/log4j2.properties" <<EOF
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
EOF
  # The command-line tools (TopicCommand) log warnings to stderr, not to server.log.
  cat >"$dir/tools-log4j2.properties" <<EOF
status = error
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
EOF
}

jvm() {
  # Small heap and serial GC: two cores, shared with the engine under test.
  java -Xmx"$HEAP" -Xms128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$1/tools-log4j2.properties" -cp "$(classpath)" "${@:2}"
}

launch() {
  # Starts the JVM detached (own session, stdio on files), so that a CTest setup test
  # can exit while the broker runs on; waits until kcat sees it.
  local dir="$1"
  local bootstrap
  bootstrap="127.0.0.1:$(cut -d' ' -f1 "$dir/ports")"
  local t0 t1
  t0=$(now_ms)
  # C1 only (TieredStopAtLevel=1): starts in ~6.5 s instead of 10-16 s on a busy
  # 2-core machine, and a test broker needs no peak throughput. Later flags win:
  # LOYALTY_KAFKA_JVM_OPTS=-XX:TieredStopAtLevel=4 brings C2 back.
  # shellcheck disable=SC2086 # LOYALTY_KAFKA_JVM_OPTS: extra JVM flags, split on spaces
  setsid java -Xmx"$HEAP" -Xms128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true ${LOYALTY_KAFKA_JVM_OPTS:-} \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$(classpath)" \
    kafka.Kafka "$dir/server.properties" </dev/null >>"$dir/stdout.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"
  local deadline=$(( $(date +%s) + START_TIMEOUT_S ))
  while ! answers "$bootstrap"; do
    if ! pid_alive "$pid"; then
      tail -30 "$dir/stdout.log" "$dir/server.log" >&2 2>/dev/null || true
      rm -f "$dir/pid"
      die "the broker exited during start-up (logs in $dir)"
    fi
    if (( $(date +%s) >= deadline )); then
      tail -30 "$dir/server.log" >&2 2>/dev/null || true
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$dir/pid"
      die "the broker did not answer within ${START_TIMEOUT_S}s (logs in $dir)"
    fi
    sleep 0.2
  done
  t1=$(now_ms)
  echo "$bootstrap" >"$dir/bootstrap"
  echo "$(( t1 - t0 ))" >"$dir/startup_ms"
  log "broker pid $pid answers on $bootstrap after $(( (t1 - t0) / 1000 )).$(( (t1 - t0) % 1000 / 100 )) s"
}

# ---------------------------------------------------------------- commands
cmd_start() {
  local dir="$1"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if pid_alive "$(read_pid "$dir")"; then
    die "a broker already runs from $dir (pid $(read_pid "$dir"))"
  fi
  # Never more than one broker of ours on this machine: the tests size for one.
  fetch
  if [[ ! -f "$dir/ports" ]]; then
    local bport cport
    bport=$(free_port)
    cport=$(free_port)
    while [[ "$cport" == "$bport" ]]; do cport=$(free_port); done
    echo "$bport $cport" >"$dir/ports"
  fi
  read -r bport cport <"$dir/ports"
  write_config "$dir" "$bport" "$cport"
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    local t0 t1 id
    t0=$(now_ms)
    rm -rf "$dir/data"
    # A cluster id as Kafka's Uuid.randomUuid makes it (16 random bytes, base64url
    # without padding, not starting with '-'), without a second JVM start.
    id=$(python3 -c 'import base64,os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not s.startswith("-"): break
print(s)')
    jvm "$dir" kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" \
      >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "StorageTool format failed"; }
    t1=$(now_ms)
    echo "$(( t1 - t0 ))" >"$dir/format_ms"
    log "formatted $dir/data (cluster $id) in $(( (t1 - t0) / 1000 )).$(( (t1 - t0) % 1000 / 100 )) s"
  fi
  launch "$dir"
}

wait_gone() {
  local pid="$1" seconds="$2"
  local deadline=$(( $(date +%s) + seconds ))
  while pid_alive "$pid"; do
    (( $(date +%s) >= deadline )) && return 1
    sleep 0.2
  done
  return 0
}

cmd_stop() {
  local dir="$1"
  local pid
  pid=$(read_pid "$dir")
  if ! pid_alive "$pid"; then
    rm -f "$dir/pid"
    log "no broker running from $dir"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$STOP_TIMEOUT_S"; then
    log "broker pid $pid ignored TERM for ${STOP_TIMEOUT_S}s: KILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "broker pid $pid survives KILL"
  fi
  rm -f "$dir/pid"
  log "broker pid $pid stopped"
}

cmd_kill9() {
  local dir="$1"
  local pid
  pid=$(read_pid "$dir")
  pid_alive "$pid" || die "no broker running from $dir"
  kill -KILL "$pid"
  wait_gone "$pid" 10 || die "broker pid $pid survives KILL"
  rm -f "$dir/pid"
  log "broker pid $pid killed (SIGKILL)"
}

cmd_restart() {
  local dir="$1"
  [[ -f "$dir/ports" && -f "$dir/data/meta.properties" ]] || die "$dir holds no broker to restart"
  if pid_alive "$(read_pid "$dir")"; then cmd_stop "$dir"; fi
  fetch
  local bport cport
  read -r bport cport <"$dir/ports"
  write_config "$dir" "$bport" "$cport"
  launch "$dir"
}

cmd_start_fresh() {
  local dir="$1"
  if [[ -d "$dir" ]]; then
    if pid_alive "$(read_pid "$dir")"; then cmd_stop "$dir"; fi
    rm -rf "$dir/data" "$dir/ports" "$dir/bootstrap" "$dir/pid" "$dir/server.log" \
      "$dir/stdout.log"
  fi
  cmd_start "$dir"
}

cmd_status() {
  local dir="$1"
  pid_alive "$(read_pid "$dir")" && [[ -f "$dir/bootstrap" ]] && answers "$(cat "$dir/bootstrap")"
}

cmd_topics() {
  local dir="$1"
  shift
  [[ -f "$dir/bootstrap" ]] || die "$dir has no bootstrap file"
  fetch
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$dir/tools-log4j2.properties" -cp "$(classpath)" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$(cat "$dir/bootstrap")" "$@"
}

main() {
  local cmd="${1:-}"
  case "$cmd" in
    fetch) fetch ;;
    classpath) fetch; classpath ;;
    start | start-fresh | stop | kill9 | restart | status)
      [[ $# -eq 2 ]] || die "usage: broker.sh $cmd DIR"
      "cmd_${cmd//-/_}" "$2" ;;
    topics)
      [[ $# -ge 2 ]] || die "usage: broker.sh topics DIR ARGS..."
      shift
      cmd_topics "$@" ;;
    *) die "usage: broker.sh fetch|classpath|start DIR|start-fresh DIR|stop DIR|kill9 DIR|restart DIR|status DIR|topics DIR ARGS..." ;;
  esac
}

main "$@"
