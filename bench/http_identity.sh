#!/usr/bin/env bash
# HTTP frontend throughput/latency: wrk posts a small JSON infer request (16 FP32) and a
# binary one (4 KiB FP32 in, 4 KiB out) to an identity model at 1, 8 and 32 connections,
# then the same against nginx answering every POST with a canned reply of the same size
# (the physical limit of this machine), and prints flowserve/nginx per row, with the CPU
# each server spent per request (utime+stime over the run / requests answered; the
# client shares the cores, so this figure does not depend on it).
# Usage: bench/http_identity.sh [seconds per run, default 5]
#   env: FLOWSERVE_BIN; THREADS; ROUNDS (alternating runs of each server per row, default 3)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FLOWSERVE_BIN:-$ROOT/build/flowserve}
DURATION=${1:-5}
THREADS=${THREADS:-2}   # flowserve --http-thread-count and nginx worker_processes
ROUNDS=${ROUNDS:-3}
PY=/usr/bin/python3
. "$ROOT/bench/lib.sh"
bench_start wrk nginx curl

# --- model and request bodies -----------------------------------------------------------
write_identity_model "$TMP/repo"
BIN_HLEN=$($PY - "$TMP" <<'PY'
import json, struct, sys
tmp = sys.argv[1]
vals = [round(0.1 * i, 3) for i in range(16)]
open(f"{tmp}/json.body", "w").write(json.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [16], "datatype": "FP32", "data": vals}]}))
n = 1024
header = json.dumps({"inputs": [{"name": "INPUT0", "shape": [n], "datatype": "FP32",
                                 "parameters": {"binary_data_size": 4 * n}}],
                     "parameters": {"binary_data_output": True}}).encode()
open(f"{tmp}/binary.body", "wb").write(header + struct.pack(f"<{n}f", *range(n)))
print(len(header))
PY
)

# --- flowserve ------------------------------------------------------------------------------
FS_PORT=$(free_port)
start_http_only "$TMP/repo" "$FS_PORT" "$THREADS"
URL="http://127.0.0.1:$FS_PORT/v2/models/identity/infer"

# Record flowserve's real replies: nginx sends bodies (and the framing header) of the same size.
curl -s -o "$TMP/json.reply" -H 'Content-Type: application/json' \
  --data-binary @"$TMP/json.body" "$URL"
curl -s -o "$TMP/binary.reply" -D "$TMP/binary.head" -H "Inference-Header-Content-Length: $BIN_HLEN" \
  --data-binary @"$TMP/binary.body" "$URL"
REPLY_HLEN=$(grep -i '^Inference-Header-Content-Length' "$TMP/binary.head" | tr -dc 0-9)
JSON_REPLY=$(cat "$TMP/json.reply")
# nginx caps one config parameter near 4 KiB: build the binary-sized reply from variables.
BIN_SIZE=$(stat -c %s "$TMP/binary.reply")
BIN_SETS="" BIN_VARS=""
for ((i = 0; i * 2048 < BIN_SIZE; i++)); do
  n=$((BIN_SIZE - i * 2048 < 2048 ? BIN_SIZE - i * 2048 : 2048))
  BIN_SETS+="set \$p$i '$(head -c "$n" /dev/zero | tr '\0' x)'; "
  BIN_VARS+="\$p$i"
done

# --- nginx ----------------------------------------------------------------------------------
NG_PORT=$(free_port)
mkdir -p "$TMP/nginx/logs"
cat > "$TMP/nginx/nginx.conf" <<NG
worker_processes $THREADS;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  client_body_buffer_size 64k;
  server {
    listen 127.0.0.1:$NG_PORT;
    location = /json { default_type application/json; return 200 '$JSON_REPLY'; }
    location = /binary {
      default_type application/octet-stream;
      add_header Inference-Header-Content-Length $REPLY_HLEN;
      $BIN_SETS
      return 200 "$BIN_VARS";
    }
  }
}
NG
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
PIDS+=($!)
NG_PID=$!
FS_PID=${PIDS[0]}
for _ in $(seq 50); do
  curl -s -o /dev/null -X POST "http://127.0.0.1:$NG_PORT/json" && break
  sleep 0.1
done
got=$(curl -s -X POST "http://127.0.0.1:$NG_PORT/binary" | wc -c)
[ "$got" = "$BIN_SIZE" ] || { echo "nginx canned reply is $got bytes, want $BIN_SIZE:"; \
  cat "$TMP/nginx/logs/error.log"; exit 1; }

# --- runs -----------------------------------------------------------------------------------
run() {  # url body-file header-length connections -> "rps p50 p99 non2xx sockerr"
  WRK_BODY_FILE=$2 WRK_HEADER_LENGTH=$3 wrk -t1 -c"$4" -d"${DURATION}s" \
    -s "$ROOT/bench/wrk_post.lua" "$1" | awk '/^RESULT/ {print $2, $3, $4, $5, $6}'
}
TICK=$(getconf CLK_TCK)
nginx_cpu_ticks() {  # the master and its workers
  local t=0 p
  for p in $NG_PID $(pgrep -P "$NG_PID"); do t=$((t + $(server_cpu_ticks "$p"))); done
  echo "$t"
}
# measure NAME-OF-TICKS-FUNCTION PID-ARG url body hlen conns -> "rps p50 p99 non2xx sockerr cpu_us"
measure() {
  local before after r
  before=$($1 $2)
  r=$(run "$3" "$4" "$5" "$6")
  after=$($1 $2)
  echo "$r $(echo "$r" | awk -v d=$((after - before)) -v tick="$TICK" -v secs="$DURATION" \
    '{ printf "%.1f", d / tick * 1e6 / ($1 * secs) }')"
}
# Warm both servers up (first connections, allocator pools) before measuring.
run "$URL" "$TMP/json.body" "" 8 >/dev/null
run "http://127.0.0.1:$NG_PORT/json" "$TMP/json.body" "" 8 >/dev/null

printf "%-7s %5s | %10s %8s %8s %7s | %10s %8s %8s %7s | %9s %9s\n" request conns \
  "fs req/s" "fs p50us" "fs p99us" "fs cpu" "ng req/s" "ng p50us" "ng p99us" "ng cpu" \
  "rps ratio" "p50 ratio"
# nginx's throughput at 32 connections swings by half between runs (how its workers happen
# to share the connections), so each row alternates ROUNDS runs of each server and reports
# each column's median: one lucky or unlucky run moves neither side.
col() { awk "{print \$$2}" "$1" | median; }
for kind in json binary; do
  hlen=""
  [ "$kind" = binary ] && hlen=$BIN_HLEN
  for c in 1 8 32; do
    : >"$TMP/fs.runs"
    : >"$TMP/ng.runs"
    for _ in $(seq "$ROUNDS"); do
      measure server_cpu_ticks "$FS_PID" "$URL" "$TMP/$kind.body" "$hlen" "$c" >>"$TMP/fs.runs"
      measure nginx_cpu_ticks "" "http://127.0.0.1:$NG_PORT/$kind" "$TMP/$kind.body" "$hlen" \
        "$c" >>"$TMP/ng.runs"
    done
    fr=$(col "$TMP/fs.runs" 1) fp50=$(col "$TMP/fs.runs" 2) fp99=$(col "$TMP/fs.runs" 3)
    fcpu=$(col "$TMP/fs.runs" 6)
    nr=$(col "$TMP/ng.runs" 1) np50=$(col "$TMP/ng.runs" 2) np99=$(col "$TMP/ng.runs" 3)
    ncpu=$(col "$TMP/ng.runs" 6)
    printf "%-7s %5s | %10.0f %8s %8s %7s | %10.0f %8s %8s %7s | %9.2f %9.2f\n" "$kind" "$c" \
      "$fr" "$fp50" "$fp99" "$fcpu" "$nr" "$np50" "$np99" "$ncpu" \
      "$(echo "$fr / $nr" | bc -l)" "$(echo "$fp50 / $np50" | bc -l)"
    read -r ferr fsock < <(awk '{e += $4; s += $5} END {print e + 0, s + 0}' "$TMP/fs.runs")
    if [ "$ferr" != 0 ] || [ "$fsock" != 0 ]; then
      echo "  flowserve: $ferr non-2xx replies, $fsock socket errors"
    fi
  done
done
echo "cpu = server CPU (utime+stime) per request in us; rps ratio = flowserve/nginx throughput"
echo "(targets: json >= 0.6 at 8, >= 0.8 at 32); p50 ratio = flowserve/nginx median latency (<= 1.3 at 1)"
