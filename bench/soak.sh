#!/usr/bin/env bash
# Soak: concurrency 64 (half HTTP, half gRPC) for 10 minutes (--quick: 60 s, or
# --seconds N) against identity models, mixing good requests, bad requests, explicit-mode
# unload/load and in-place reloads, and connection churn. Prints requests answered by
# kind, lost requests (sent, never answered: must be 0) and the server's RSS at start,
# middle and end; then stops the server with SIGTERM, which must exit 0.
# Env: BUILD_DIR (default build), FLOWSERVE_BIN, CONCURRENCY (64).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BIN=${FLOWSERVE_BIN:-$BUILD_DIR/flowserve}
CONCURRENCY=${CONCURRENCY:-64}
SECS=600
PY=/usr/bin/python3
. "$ROOT/bench/lib.sh"
case "${1:-}" in
  --quick) SECS=60 ;;
  --seconds) SECS=$2 ;;
  "") ;;
  *) echo "usage: $0 [--quick | --seconds N]"; exit 2 ;;
esac
[[ -x $BIN ]] || { echo "missing $BIN (make build)"; exit 1; }

WORK=$(mktemp -d)
PID=""
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
for m in good flaky; do
  mkdir -p "$WORK/repo/$m/1"
  cat >"$WORK/repo/$m/config.pbtxt" <<PBTXT
name: "$m"
backend: "identity"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
PBTXT
done
HTTP=$(free_port); GRPC=$(free_port); METRICS=$(free_port)
"$BIN" --model-repository="$WORK/repo" --model-control-mode=explicit --load-model='*' \
  --http-port="$HTTP" --grpc-port="$GRPC" --metrics-port="$METRICS" \
  --http-address=127.0.0.1 --grpc-address=127.0.0.1 --log-info=false >"$WORK/log" 2>&1 &
PID=$!
wait_ready "$HTTP" "$PID" "$WORK/log"
echo "soak: $BIN, ${SECS} s"
rc=0
"$PY" "$ROOT/bench/soak_load.py" --http "127.0.0.1:$HTTP" --grpc "127.0.0.1:$GRPC" \
  --pid "$PID" --seconds "$SECS" --concurrency "$CONCURRENCY" || rc=$?
kill -TERM "$PID"
if wait "$PID"; then echo "server exit code 0"; else echo "server exit code $?"; rc=1; fi
PID=""
exit $rc
