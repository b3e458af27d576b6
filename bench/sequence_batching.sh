#!/usr/bin/env bash
# What the sequence batcher costs: the identity model with sequence_batching (direct,
# START/READY controls, an INT32 state kept per sequence) against the same identity model
# with dynamic_batching, same JSON request (one INT32, with sequence parameters), at 1, 4 and 8 connections (each
# connection one sequence / one client), in one run. Prints req/s, p50/p99 ms, batches
# per request, and sequence/dynamic per row.
# Usage: bench/sequence_batching.sh   (env: FLOWSERVE_BIN, SECS per point, default 5)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FLOWSERVE_BIN:-$ROOT/build/flowserve}
SECS=${SECS:-5}
PY=/usr/bin/python3
. "$ROOT/bench/lib.sh"
bench_start wrk curl

for m in seq dyn; do mkdir -p "$TMP/repo/$m/1"; done
IO='input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]'
cat >"$TMP/repo/seq/config.pbtxt" <<PBTXT
name: "seq"
backend: "identity"
max_batch_size: 8
$IO
sequence_batching {
  max_sequence_idle_microseconds: 60000000
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] }
  ]
  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
}
PBTXT
cat >"$TMP/repo/dyn/config.pbtxt" <<PBTXT
name: "dyn"
backend: "identity"
max_batch_size: 8
$IO
dynamic_batching { }
PBTXT

PORT=$(free_port)
"$BIN" --model-repository="$TMP/repo" --http-address=127.0.0.1 --http-port="$PORT" \
  --allow-grpc=false --allow-metrics=false --log-info=false >"$TMP/flowserve.log" 2>&1 &
PIDS+=($!)
wait_ready "$PORT" "${PIDS[-1]}" "$TMP/flowserve.log"
URL="http://127.0.0.1:$PORT/v2/models"

printf "%-5s %-9s %10s %8s %8s %9s %6s\n" conns model "req/s" "p50 ms" "p99 ms" "exec/req" errors
for c in 1 4 8; do
  declare -A RPS=()
  for m in dyn seq; do
    read -r inf0 exec0 <<<"$(counts $m)"
    # One thread per connection: each wrk thread is its own sequence. The dynamic model
    # gets the same requests (sequence parameters are ignored there) and the same client.
    line=$(wrk -t"$c" -c"$c" -d"${SECS}s" --timeout 60s -s "$ROOT/bench/wrk_sequence.lua" \
      "$URL/$m/infer" | awk '/^RESULT/ { printf "%s %.3f %.3f %d\n", $2, $3/1000, $4/1000, $5+$6 }')
    read -r rps p50 p99 errs <<<"$line"
    read -r inf1 exec1 <<<"$(counts $m)"
    per=$(awk -v e=$((exec1 - exec0)) -v i=$((inf1 - inf0)) 'BEGIN { printf "%.2f", i ? e / i : 0 }')
    printf "%-5s %-9s %10s %8s %8s %9s %6s\n" "$c" "$m" "$rps" "$p50" "$p99" "$per" "$errs"
    RPS[$m]=$rps
  done
  awk -v s="${RPS[seq]}" -v d="${RPS[dyn]}" -v c="$c" \
    'BEGIN { printf "%-5s sequence/dynamic throughput: %.2fx\n", c, s / d }'
  unset RPS
done
