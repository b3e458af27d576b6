#!/usr/bin/env bash
# I/O-thread fairness under run-to-completion: a cheap model (identity, 16 FP32 JSON) may
# run on the HTTP I/O thread that parsed its request; a slow one (identity with
# execute_delay_ms=10, 10 ms per batch) must never, or every connection sharing that
# thread would wait behind it. Prints the cheap model's latency alone, then while
# another client keeps the slow model busy on the same server, and the ratio.
# Usage: bench/io_fairness.sh [seconds per run, default 5]
#   env: FLOWSERVE_BIN, THREADS, CONNS, ROUNDS (default 3: alone / under load alternate, so
#   that load from elsewhere on the machine shows as spread between rounds)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FLOWSERVE_BIN:-$ROOT/build/flowserve}
DURATION=${1:-5}
THREADS=${THREADS:-2}  # --http-thread-count
CONNS=${CONNS:-8}      # connections of each client
ROUNDS=${ROUNDS:-3}
PY=/usr/bin/python3
. "$ROOT/bench/lib.sh"
bench_start wrk curl

write_identity_model "$TMP/repo"
mv "$TMP/repo/identity" "$TMP/repo/cheap"
sed -i 's/^name: "identity"/name: "cheap"/' "$TMP/repo/cheap/config.pbtxt"
write_identity_model "$TMP/repo"
mv "$TMP/repo/identity" "$TMP/repo/slow"
sed -i 's/^name: "identity"/name: "slow"/' "$TMP/repo/slow/config.pbtxt"
cat >>"$TMP/repo/slow/config.pbtxt" <<'PBTXT'
parameters { key: "execute_delay_ms" value { string_value: "10" } }
PBTXT
$PY -c '
import json, sys
vals = [round(0.1 * i, 3) for i in range(16)]
open(sys.argv[1], "w").write(json.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [16], "datatype": "FP32", "data": vals}]}))' \
  "$TMP/json.body"

PORT=$(free_port)
start_http_only "$TMP/repo" "$PORT" "$THREADS"

load() {  # model seconds -> "rps p50us p99us errors"
  WRK_BODY_FILE="$TMP/json.body" wrk -t1 -c"$CONNS" -d"$2s" --timeout 30s \
    -s "$ROOT/bench/wrk_post.lua" "http://127.0.0.1:$PORT/v2/models/$1/infer" |
    awk '/^RESULT/ { print $2, $3, $4, $5 + $6 }'
}
load cheap 2 >/dev/null  # warm-up: the cheap model's execution estimate settles
load slow 2 >/dev/null

printf "%-5s %-22s %10s %9s %9s %7s | %s\n" round "cheap model ($CONNS conns)" "req/s" \
  "p50 us" "p99 us" errors "slow model meanwhile"
ALONE_P99=() LOADED_P99=()
for ((round = 1; round <= ROUNDS; round++)); do
  read -r ar ap50 ap99 aerr < <(load cheap "$DURATION")
  load slow $((DURATION + 2)) >"$TMP/slow.out" &
  SLOW=$!
  sleep 1
  read -r br bp50 bp99 berr < <(load cheap "$DURATION")
  wait "$SLOW"
  read -r sr sp50 sp99 serr <"$TMP/slow.out"
  ALONE_P99+=("$ap99") LOADED_P99+=("$bp99")
  printf "%-5s %-22s %10.0f %9s %9s %7s |\n" "$round" alone "$ar" "$ap50" "$ap99" "$aerr"
  printf "%-5s %-22s %10.0f %9s %9s %7s | %.0f req/s, p50 %s us\n" "$round" \
    "slow model under load" "$br" "$bp50" "$bp99" "$berr" "$sr" "$sp50"
done
ma=$(printf "%s\n" "${ALONE_P99[@]}" | median) ml=$(printf "%s\n" "${LOADED_P99[@]}" | median)
printf "median p99: alone %s us, with the slow model under load %s us, ratio %.2f\n" "$ma" "$ml" \
  "$(echo "$ml / $ma" | bc -l)"
echo "(the slow model takes 10 ms per batch: run on an I/O thread it would add up to 10000 us"
echo " to the latency of every connection on that thread)"
