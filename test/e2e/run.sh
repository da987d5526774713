#!/usr/bin/env bash
# run.sh — the end-to-end suite in one command (what `make e2e` and CI run):
# install what is missing, start Kafka and nats-server (brokers.sh), run the
# e2e tests against them, stop the brokers whatever happens, and end with
# the line "N passed, M failed" (top-level tests and subtests). Exits
# non-zero on any failure.
#
# Extra arguments go to `go test` (e.g. -run 'TestSamples').
# E2E_CACHE, E2E_STATE and the port variables are brokers.sh's.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT" || exit 1

export E2E_CACHE="${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mistbridge-e2e}"
# A fixed place by default, so a run killed outright leaves pid files that
# the next `brokers.sh start` finds and reaps.
export E2E_STATE="${E2E_STATE:-${TMPDIR:-/tmp}/mistbridge-e2e}"
BROKERS=(bash "$HERE/brokers.sh")
LOG="$E2E_STATE/go-test.log"
t0=$SECONDS

summary() { # summary PASSED FAILED
	echo "e2e: finished in $((SECONDS - t0))s"
	echo "$1 passed, $2 failed"
}

harness_failure() {
	echo "e2e: $*" >&2
	for f in "$E2E_STATE"/kafka.log "$E2E_STATE"/nats.log; do
		[ -f "$f" ] && { echo "--- last lines of $f" >&2; tail -n 30 "$f" >&2; }
	done
	summary 0 1
	exit 1
}

stop_brokers() { "${BROKERS[@]}" stop || true; }
trap stop_brokers EXIT
trap 'stop_brokers; trap - EXIT; exit 130' INT TERM

mkdir -p "$E2E_STATE"
"${BROKERS[@]}" install || harness_failure "installing the brokers failed"
bash "$HERE/browser.sh" install || harness_failure "installing Chromium and the HTML checker (browser.sh) failed"
"${BROKERS[@]}" start || harness_failure "starting the brokers failed"
eval "$("${BROKERS[@]}" env | sed 's/^/export /')"
echo "e2e: brokers up after $((SECONDS - t0))s: kafka $E2E_KAFKA, nats $E2E_NATS, state $E2E_STATE"

go test -tags e2e -count=1 -v ./test/e2e/ -timeout 15m "$@" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}

passed=$(grep -cE '^[[:space:]]*--- PASS' "$LOG")
failed=$(grep -cE '^[[:space:]]*--- FAIL' "$LOG")
skipped=$(grep -cE '^[[:space:]]*--- SKIP' "$LOG")
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
	# A build error, a panic or a timeout: no --- FAIL line says so.
	echo "e2e: go test exited $rc without a --- FAIL line (build error, panic or timeout?)"
	failed=1
fi
[ "$skipped" -gt 0 ] && echo "e2e: $skipped skipped"
stop_brokers 2>&1 # before the summary, which stays the last line
trap - EXIT
summary "$passed" "$failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
