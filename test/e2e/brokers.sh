#!/usr/bin/env bash
# brokers.sh — real brokers for the end-to-end suite, with no Docker: a
# single-node Apache Kafka 3.9.1 in KRaft mode (jars from Maven Central) and
# a nats-server with JetStream (built with `go install`), both on loopback.
#
#   brokers.sh install               fetch what is missing (idempotent, cached)
#   brokers.sh start                 fresh data, start both, wait until ready
#   brokers.sh stop                  stop both (SIGTERM, then SIGKILL)
#   brokers.sh start-kafka|stop-kafka|start-nats|stop-nats
#                                    one broker, keeping its data (restart tests)
#   brokers.sh kill-kafka|kill-nats  SIGKILL one broker, keeping its data
#   brokers.sh status | env          what runs; the E2E_* variables for the tests
#
# Several subcommands may be given: `brokers.sh install start`.
#
# Environment (all optional):
#   E2E_CACHE        downloads and binaries  (~/.cache/mistbridge-e2e)
#   E2E_STATE        pids, data, logs        (${TMPDIR:-/tmp}/mistbridge-e2e)
#   E2E_KAFKA_PORT   19092, E2E_KAFKA_CONTROLLER_PORT 19093
#   E2E_NATS_PORT    14222, E2E_NATS_MONITOR_PORT     18222
#   E2E_KAFKA_HEAP   -Xmx512m -Xms256m
#   E2E_NATS_CLI=1   also install the nats CLI (not needed by the suite)
#   E2E_READY_TIMEOUT seconds to wait for a broker (90)
set -euo pipefail

KAFKA_VERSION=3.9.1
NATS_SERVER_VERSION=v2.15.2
NATSCLI_VERSION=v0.5.0

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mistbridge-e2e}"
STATE="${E2E_STATE:-${TMPDIR:-/tmp}/mistbridge-e2e}"
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_MARKER="$KAFKA_HOME/.installed"
BIN="$CACHE/bin"
KAFKA_PORT="${E2E_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${E2E_KAFKA_CONTROLLER_PORT:-19093}"
NATS_PORT="${E2E_NATS_PORT:-14222}"
NATS_MONITOR_PORT="${E2E_NATS_MONITOR_PORT:-18222}"
KAFKA_HEAP="${E2E_KAFKA_HEAP:--Xmx512m -Xms256m}"
READY_TIMEOUT="${E2E_READY_TIMEOUT:-90}"
HOST=127.0.0.1

LOG_TAG=brokers
# shellcheck source=lib.sh
. "$HERE/lib.sh"

# ---------------------------------------------------------------- install

install_kafka() {
	if [ -f "$KAFKA_MARKER" ] && [ "$(find "$KAFKA_LIBS" -name '*.jar' | wc -l)" -ge "$(cat "$KAFKA_MARKER")" ]; then
		log "kafka $KAFKA_VERSION: cached in $KAFKA_LIBS"
		return
	fi
	log "kafka $KAFKA_VERSION: copying jars from Maven Central into $KAFKA_LIBS"
	rm -rf "$KAFKA_LIBS"
	mkdir -p "$KAFKA_LIBS"
	maven_copy "$HERE/pom.xml" "kafka $KAFKA_VERSION" -De2e.libs="$KAFKA_LIBS"
	local n
	n="$(find "$KAFKA_LIBS" -name '*.jar' | wc -l)"
	[ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] || die "kafka_2.13-$KAFKA_VERSION.jar was not copied"
	echo "$n" >"$KAFKA_MARKER"
	log "kafka $KAFKA_VERSION: $n jars"
}

install_kcat() {
	if command -v kcat >/dev/null 2>&1; then
		log "kcat: $(command -v kcat)"
		return
	fi
	apt_install kcat
	command -v kcat >/dev/null 2>&1 || die "kcat is still missing after apt-get install kcat"
}

go_install() { # go_install BINARY MODULE@VERSION VERSION
	local bin="$1" pkg="$2" want="$3"
	if [ -x "$BIN/$bin" ] && [ -f "$BIN/.$bin.version" ] && [ "$(cat "$BIN/.$bin.version")" = "$want" ]; then
		log "$bin $want: cached in $BIN"
		return
	fi
	command -v go >/dev/null 2>&1 || die "go is not on PATH"
	log "$bin $want: go install $pkg"
	mkdir -p "$BIN"
	# Outside the repository, so the project's go.mod plays no part.
	(cd / && GOBIN="$BIN" GOFLAGS=-mod=mod go install "$pkg") >&2 || die "go install $pkg failed"
	echo "$want" >"$BIN/.$bin.version"
}

cmd_install() {
	local t0=$SECONDS
	mkdir -p "$CACHE"
	install_kafka
	install_kcat
	go_install nats-server "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION" "$NATS_SERVER_VERSION"
	if [ "${E2E_NATS_CLI:-0}" = 1 ]; then
		go_install nats "github.com/nats-io/natscli/nats@$NATSCLI_VERSION" "$NATSCLI_VERSION"
	fi
	command -v curl >/dev/null 2>&1 || apt_install curl
	log "install done in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- processes

pidfile() { echo "$STATE/$1.pid"; }

running() { # running NAME: the pid is alive
	local f
	f="$(pidfile "$1")"
	[ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

port_busy() { # port_busy PORT
	if command -v ss >/dev/null 2>&1; then
		ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
	else
		(exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
	fi
}

stop_one() { # stop_one NAME SIGNAL
	local name="$1" sig="${2:-TERM}" f pid i
	f="$(pidfile "$name")"
	[ -f "$f" ] || return 0
	pid="$(cat "$f")"
	if kill -0 "$pid" 2>/dev/null; then
		log "$name: SIG$sig to $pid"
		kill "-$sig" "$pid" 2>/dev/null || true
		for ((i = 0; i < 300; i++)); do # 30 s
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "$name: still there after 30s, SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			for ((i = 0; i < 100; i++)); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
		fi
	fi
	rm -f "$f"
}

wait_for() { # wait_for NAME TIMEOUT COMMAND...
	local name="$1" timeout="$2" t0=$SECONDS
	shift 2
	until "$@" >/dev/null 2>&1; do
		running "$name" || {
			log "$name died while starting; the end of its log:"
			tail -n 40 "$STATE/$name.log" >&2 || true
			return 1
		}
		if ((SECONDS - t0 >= timeout)); then
			log "$name not ready after ${timeout}s; the end of its log:"
			tail -n 40 "$STATE/$name.log" >&2 || true
			return 1
		fi
		sleep 0.25
	done
	log "$name ready in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- kafka

kafka_config() {
	local dir="$STATE/kafka"
	mkdir -p "$dir"
	cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
auto.create.topics.enable=true
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.retention.hours=24
EOF
	cat >"$dir/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
EOF
}

kafka_java() { # kafka_java MAINCLASS ARGS...: the java command line
	# shellcheck disable=SC2206 # KAFKA_HEAP is a list of options
	KAFKA_JAVA=(java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
		-Dlog4j.configuration="file:$STATE/kafka/log4j.properties"
		-Dkafka.logs.dir="$STATE/kafka/logs"
		-cp "$KAFKA_LIBS/*" "$@")
}

kafka_ready() {
	# Metadata answers, then a produce to an auto-created topic is acked:
	# the broker and its controller both work.
	kcat -L -b "$HOST:$KAFKA_PORT" -m 3 -q >/dev/null 2>&1 &&
		echo ready | kcat -P -b "$HOST:$KAFKA_PORT" -t e2e.probe -X message.timeout.ms=5000 -X request.required.acks=-1 -q 2>/dev/null
}

start_kafka() { # start_kafka [fresh]
	[ -f "$KAFKA_MARKER" ] || die "kafka is not installed: run '$0 install' first"
	if running kafka; then
		log "kafka: already running (pid $(cat "$(pidfile kafka)"))"
		return
	fi
	for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
		port_busy "$p" && die "port $p is in use by something else (ss -ltnp 'sport = :$p')"
	done
	if [ "${1:-}" = fresh ]; then rm -rf "$STATE/kafka" && : >"$STATE/kafka.log"; fi
	kafka_config
	local dir="$STATE/kafka"
	if [ ! -f "$dir/data/meta.properties" ]; then
		local id
		# A base64url id may start with '-', which the tool would read as an
		# option (1 run in 64 failed so): draw again until it does not.
		id=-
		while [ "${id#-}" != "$id" ]; do
			id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)"
		done
		log "kafka: formatting KRaft storage (cluster $id)"
		kafka_java kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties"
		"${KAFKA_JAVA[@]}" >"$dir/format.log" 2>&1 || {
			cat "$dir/format.log" >&2
			die "kafka storage format failed"
		}
	fi
	log "kafka: starting on $HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT), log $STATE/kafka.log"
	# Own session, no terminal, output to a file: the broker outlives this
	# script and never holds a caller's pipes open.
	kafka_java kafka.Kafka "$dir/server.properties"
	setsid "${KAFKA_JAVA[@]}" </dev/null >>"$STATE/kafka.log" 2>&1 &
	echo $! >"$(pidfile kafka)"
	wait_for kafka "$READY_TIMEOUT" kafka_ready || die "kafka did not start"
}

# ---------------------------------------------------------------- nats

nats_ready() {
	curl -fsS --max-time 2 "http://$HOST:$NATS_MONITOR_PORT/healthz?js-enabled-only=true" >/dev/null &&
		curl -fsS --max-time 2 "http://$HOST:$NATS_MONITOR_PORT/healthz" >/dev/null
}

start_nats() { # start_nats [fresh]
	[ -x "$BIN/nats-server" ] || die "nats-server is not installed: run '$0 install' first"
	if running nats; then
		log "nats: already running (pid $(cat "$(pidfile nats)"))"
		return
	fi
	for p in "$NATS_PORT" "$NATS_MONITOR_PORT"; do
		port_busy "$p" && die "port $p is in use by something else (ss -ltnp 'sport = :$p')"
	done
	if [ "${1:-}" = fresh ]; then rm -rf "$STATE/nats" && : >"$STATE/nats.log"; fi
	mkdir -p "$STATE/nats"
	log "nats: starting on $HOST:$NATS_PORT (monitor $NATS_MONITOR_PORT), log $STATE/nats.log"
	cat >"$STATE/nats.conf" <<EOF
server_name: mistbridge-e2e
listen: $HOST:$NATS_PORT
http: $HOST:$NATS_MONITOR_PORT
jetstream {
  store_dir: "$STATE/nats"
  max_memory_store: 256MB
  max_file_store: 2GB
}
EOF
	"$BIN/nats-server" -c "$STATE/nats.conf" -t >/dev/null 2>&1 ||
		die "nats-server rejects $STATE/nats.conf: $("$BIN/nats-server" -c "$STATE/nats.conf" -t 2>&1)"
	setsid "$BIN/nats-server" -c "$STATE/nats.conf" </dev/null >>"$STATE/nats.log" 2>&1 &
	echo $! >"$(pidfile nats)"
	wait_for nats "$READY_TIMEOUT" nats_ready || die "nats-server did not start"
}

# ---------------------------------------------------------------- commands

cmd_env() {
	# Shell-quoted: `eval "$(brokers.sh env | sed 's/^/export /')"` works.
	printf 'E2E_KAFKA=%q\n' "$HOST:$KAFKA_PORT"
	printf 'E2E_NATS=%q\n' "nats://$HOST:$NATS_PORT"
	printf 'E2E_STATE=%q\n' "$STATE"
	printf 'E2E_CACHE=%q\n' "$CACHE"
}

cmd_status() {
	local n
	for n in kafka nats; do
		if running "$n"; then echo "$n: running, pid $(cat "$(pidfile "$n")")"; else echo "$n: stopped"; fi
	done
}

[ $# -gt 0 ] || {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 2
}
mkdir -p "$STATE"
for cmd in "$@"; do
	case "$cmd" in
	install) cmd_install ;;
	start)
		t0=$SECONDS
		stop_one kafka TERM
		stop_one nats TERM
		start_nats fresh
		start_kafka fresh
		log "brokers up in $((SECONDS - t0))s"
		;;
	stop)
		stop_one kafka TERM
		stop_one nats TERM
		;;
	start-kafka) start_kafka ;;
	stop-kafka) stop_one kafka TERM ;;
	kill-kafka) stop_one kafka KILL ;;
	start-nats) start_nats ;;
	stop-nats) stop_one nats TERM ;;
	kill-nats) stop_one nats KILL ;;
	status) cmd_status ;;
	env) cmd_env ;;
	*) die "unknown subcommand $cmd (install, start, stop, start-kafka, stop-kafka, kill-kafka, start-nats, stop-nats, kill-nats, status, env)" ;;
	esac
done
