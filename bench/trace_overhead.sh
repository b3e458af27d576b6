#!/usr/bin/env bash
# Tracing's cost on the request path: one flowserve, an identity model, wrk posting a small
# JSON request (16 FP32) at 1 and 8 connections, with tracing off and with every request
# traced (trace_level TIMESTAMPS, trace_rate 1, log_frequency 10000), switched through the
# trace API between rounds. Rounds alternate off/on (ROUNDS pairs) so drift on this shared
# machine hits both alike; prints the mean of each and traced/off (target >= 0.9).
# Usage: bench/trace_overhead.sh [seconds per run, default 4]   (env: FLOWSERVE_BIN, ROUNDS)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FLOWSERVE_BIN:-$ROOT/build/flowserve}
SECS=${1:-4}
ROUNDS=${ROUNDS:-2}
PY=/usr/bin/python3
. "$ROOT/bench/lib.sh"
need_tools wrk curl bc
[ -x "$BIN" ] || { echo "no flowserve binary at $BIN (make build)"; exit 1; }
start_workdir

write_identity_model "$TMP/repo"
$PY -c 'import json; print(json.dumps({"inputs": [{"name": "INPUT0", "shape": [16],
  "datatype": "FP32", "data": [0.1 * i for i in range(16)]}]}))' >"$TMP/json.body"

PORT=$(free_port)
"$BIN" --model-repository="$TMP/repo" --http-address=127.0.0.1 --http-port="$PORT" \
  --allow-grpc=false --allow-metrics=false --log-info=false \
  --trace-config triton,file="$TMP/trace.json" --trace-config triton,log-frequency=10000 \
  --trace-config rate=1 >"$TMP/flowserve.log" 2>&1 &
PIDS+=($!)
wait_ready "$PORT" "${PIDS[-1]}" "$TMP/flowserve.log"

level() {
  curl -sf -X POST "http://127.0.0.1:$PORT/v2/trace/setting" \
    -d "{\"trace_level\": [\"$1\"]}" >/dev/null
}
rps() {  # connections -> req/s
  local r
  r=$(run_wrk identity "$1" "" "$TMP/json.body")
  set -- $r
  [ "$4" = 0 ] || echo "  $4 errors" >&2
  echo "$1"
}

run_wrk identity 8 "" "$TMP/json.body" >/dev/null  # warm-up
printf "%5s | %12s %12s | %7s\n" conns "off req/s" "traced req/s" "ratio"
for c in 1 8; do
  off=0 on=0
  for _ in $(seq "$ROUNDS"); do
    level OFF
    off=$(echo "$off + $(rps "$c")" | bc -l)
    level TIMESTAMPS
    on=$(echo "$on + $(rps "$c")" | bc -l)
  done
  level OFF
  printf "%5s | %12.0f %12.0f | %7.3f\n" "$c" "$(echo "$off / $ROUNDS" | bc -l)" \
    "$(echo "$on / $ROUNDS" | bc -l)" "$(echo "$on / $off" | bc -l)"
done
# Every traced request must have left a record: count them (each file is one JSON array).
sleep 0.5
$PY - "$TMP" <<'PY'
import glob, json, sys
n = sum(len(json.load(open(f))) for f in glob.glob(sys.argv[1] + "/trace.json*"))
print(f"trace records written: {n}")
PY
echo "ratio = traced/off throughput, same server, alternating rounds (target >= 0.9)"
