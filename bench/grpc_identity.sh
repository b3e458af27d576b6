#!/usr/bin/env bash
# gRPC ModelInfer throughput and latency for a small identity request (16 FP32) at
# concurrency 1, 8 and 32, with tools/grpc_load keeping N calls in flight. Ratios are
# against concurrency 1 of the same run. When bench/http_identity.sh exists, its HTTP
# figures are printed alongside.
# Env: BUILD_DIR (default build), FLOWSERVE_BIN, GRPC_LOAD, SECS (default 5), ELEMENTS (16).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BIN=${FLOWSERVE_BIN:-$BUILD_DIR/flowserve}
LOAD=${GRPC_LOAD:-$(dirname "$BIN")/tools/grpc_load/grpc_load}
SECS=${SECS:-5}
ELEMENTS=${ELEMENTS:-16}
PY=/usr/bin/python3
. "$ROOT/bench/lib.sh"
for f in "$BIN" "$LOAD"; do
  [[ -x $f ]] || { echo "missing $f (FLOWSERVE_WITH_GRPC=ON; ninja flowserve grpc_load)"; exit 1; }
done

WORK=$(mktemp -d)
write_identity_model "$WORK/repo"
HTTP_PORT=$(free_port)
GRPC_PORT=$(free_port)
"$BIN" --model-repository="$WORK/repo" --http-port="$HTTP_PORT" --http-address=127.0.0.1 \
  --grpc-port="$GRPC_PORT" --grpc-address=127.0.0.1 --allow-metrics=false \
  --log-info=false >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
wait_ready "$HTTP_PORT" "$SERVER" "$WORK/server.log"

echo "gRPC ModelInfer, identity model, $ELEMENTS x FP32, ${SECS}s per point" \
  "($(nproc) cores, client on the same machine)"
printf '%-12s %12s %10s %10s %10s %8s\n' concurrency "infer/s" p50_us p99_us "x c=1" errors
BASE=""
for c in 1 8 32; do
  line=$("$LOAD" --url="127.0.0.1:$GRPC_PORT" --model=identity --concurrency="$c" \
    --elements="$ELEMENTS" --warmup=1 --duration="$SECS")
  get() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$line"; }
  tput=$(get throughput)
  BASE=${BASE:-$tput}
  ratio=$(awk -v a="$tput" -v b="$BASE" 'BEGIN { printf "%.2f", a / b }')
  printf '%-12s %12s %10s %10s %10s %8s\n' "$c" "$tput" "$(get p50_us)" "$(get p99_us)" \
    "$ratio" "$(get errors)"
done

if [[ -x $ROOT/bench/http_identity.sh ]]; then
  echo
  echo "HTTP, same machine (bench/http_identity.sh):"
  kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true
  BUILD_DIR=$BUILD_DIR FLOWSERVE_BIN=$BIN SECS=$SECS "$ROOT/bench/http_identity.sh"
fi
