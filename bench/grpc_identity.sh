#!/usr/bin/env bash
# gRPC ModelInfer against HTTP binary for the same identity request (ELEMENTS x FP32, in
# and out) on one server, at concurrency 1, 8 and 32: unary ModelInfer and
# ModelStreamInfer with tools/grpc_load keeping N calls in flight, HTTP with wrk -t1 and
# N connections (binary tensor extension). Per row: throughput, latency, and the server's
# CPU per request (utime+stime of the server process over the requests it answered,
# counted by the model's statistics), with gRPC's CPU and throughput as ratios of HTTP
# binary's at the same concurrency. The client shares the cores, so CPU per request is the
# figure that does not depend on the client.
# Each gRPC kind runs twice: on the grpc++ engine (the server HTTP binary is measured on)
# and on a second server started with --grpc-engine=nghttp2 ("h2 unary", "h2 stream").
# grpc_load drives unary calls with --h2 (plain HTTP/2 by nghttp2, one thread) and streams
# with grpc++'s client.
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
need_tools wrk curl
for f in "$BIN" "$LOAD"; do
  [[ -x $f ]] || { echo "missing $f (FLOWSERVE_WITH_GRPC=ON; ninja flowserve grpc_load)"; exit 1; }
done
start_workdir

write_identity_model "$TMP/repo"
HLEN=$($PY - "$TMP/binary.body" "$ELEMENTS" <<'PYEOF'
import json, struct, sys
path, n = sys.argv[1], int(sys.argv[2])
head = json.dumps({"inputs": [{"name": "INPUT0", "shape": [n], "datatype": "FP32",
                               "parameters": {"binary_data_size": 4 * n}}],
                   "parameters": {"binary_data_output": True}}).encode()
open(path, "wb").write(head + struct.pack(f"<{n}f", *range(n)))
print(len(head))
PYEOF
)
# start ENGINE: a server on new ports; sets SERVER_<engine>, PORT_<engine>, GRPC_<engine>.
start() {
  local port grpc_port pid
  port=$(free_port)
  grpc_port=$(free_port)
  "$BIN" --model-repository="$TMP/repo" --http-port="$port" --http-address=127.0.0.1 \
    --grpc-port="$grpc_port" --grpc-address=127.0.0.1 --allow-metrics=false \
    --grpc-engine="$1" --log-info=false >"$TMP/server-$1.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_ready "$port" "$pid" "$TMP/server-$1.log"
  printf -v "SERVER_$1" %s "$pid"
  printf -v "PORT_$1" %s "$port"
  printf -v "GRPC_$1" %s "$grpc_port"
}
start grpcpp
start nghttp2
HZ=$(getconf CLK_TCK)

# measure KIND C: "req/s p50_us p99_us errors client_cpu_us cpu_us_per_request" for one
# point (client CPU: grpc_load's own, "-" for wrk). KIND:
# http, unary, stream (grpc++ engine) or h2unary, h2stream (nghttp2 engine).
measure() {
  local kind=$1 c=$2 t0 n0 t1 n1 out engine=grpcpp
  [[ $kind == h2* ]] && engine=nghttp2
  local SERVER=SERVER_$engine GRPC=GRPC_$engine PORT_VAR=PORT_$engine
  SERVER=${!SERVER}
  GRPC_PORT=${!GRPC}
  PORT=${!PORT_VAR}
  t0=$(server_cpu_ticks "$SERVER")
  n0=$(counts identity | cut -d' ' -f1)
  if [[ $kind == http ]]; then
    out=$(run_wrk identity "$c" "$HLEN" "$TMP/binary.body" |
      awk '{ printf "%s %.0f %.0f %s -", $1, $2 * 1000, $3 * 1000, $4 }')
  else
    # Unary calls over one HTTP/2 connection driven by nghttp2 (--h2): about 2.5 us of
    # client CPU per call, against 11-13 for grpc++'s client on a completion queue, which
    # on 2 shared cores capped the throughput the server was measured at (as wrk, a lean
    # client, does not for HTTP). Streams still use grpc++'s client.
    local flag=--h2
    [[ $kind == *stream ]] && flag=--stream
    out=$("$LOAD" --url="127.0.0.1:$GRPC_PORT" --model=identity --concurrency="$c" \
      --elements="$ELEMENTS" --warmup=1 --duration="$SECS" $flag |
      sed 's/.*throughput=\([^ ]*\) p50_us=\([^ ]*\) p90_us=[^ ]* p99_us=\([^ ]*\) errors=\([^ ]*\) client_cpu_us=\([^ ]*\).*/\1 \2 \3 \4 \5/')
  fi
  t1=$(server_cpu_ticks "$SERVER")
  n1=$(counts identity | cut -d' ' -f1)
  echo "$out $(awk -v t=$((t1 - t0)) -v n=$((n1 - n0)) -v hz="$HZ" \
    'BEGIN { printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0) }')"
}

# Warm-up: first connections, allocator pools, grpc's threads.
measure http 8 >/dev/null
measure unary 8 >/dev/null
measure h2unary 8 >/dev/null

echo "identity model, $ELEMENTS x FP32 in and out, ${SECS}s per point ($(nproc) cores," \
  "clients on the same machine)"
printf '%-12s %5s %10s %8s %8s %7s %10s %8s %8s %11s\n' protocol conc "req/s" p50_us p99_us \
  errors "cpu_us/req" "cpu/http" "rps/http" "client_us/req"
for c in 1 8 32; do
  read -r hr hp50 hp99 herr hclient hcpu < <(measure http "$c")
  printf '%-12s %5s %10.0f %8s %8s %7s %10s %8s %8s %11s\n' "http binary" "$c" "$hr" "$hp50" "$hp99" \
    "$herr" "$hcpu" 1.00 1.00 "$hclient"
  for kind in unary stream h2unary h2stream; do
    read -r r p50 p99 err client cpu < <(measure "$kind" "$c")
    label="grpc $kind"
    [[ $kind == h2* ]] && label="h2 ${kind#h2}"
    printf '%-12s %5s %10.0f %8s %8s %7s %10s %8.2f %8.2f %11s\n' "$label" "$c" "$r" "$p50" "$p99" \
      "$err" "$cpu" "$(awk -v a="$cpu" -v b="$hcpu" 'BEGIN { print (b > 0 ? a / b : 0) }')" \
      "$(awk -v a="$r" -v b="$hr" 'BEGIN { print (b > 0 ? a / b : 0) }')" "$client"
  done
done
echo "grpc: grpc++ engine; h2: --grpc-engine=nghttp2 (another server, same run)"
echo "cpu/http: server CPU per request over HTTP binary's (issue 17 target <= 1.3 at 32);" \
  "rps/http: throughput over HTTP binary's (target >= 1 at 32);" \
  "client_us/req: grpc_load's own CPU per request (it shares the 2 cores with the server)"
