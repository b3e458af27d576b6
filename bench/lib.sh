# Shared by the bench scripts: source it after setting PY (Debian's python3).
# median: the median of the numbers on stdin (separated by spaces or newlines; the mean of
# the middle two for an even count).
median() {
  tr ' ' '\n' | awk NF | sort -g | awk '{ v[NR] = $1 } END {
    print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# free_port: prints a free loopback TCP port.
free_port() {
  "${PY:-/usr/bin/python3}" -c \
    'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# write_identity_model DIR: an identity model named "identity" taking FP32 [-1].
write_identity_model() {
  mkdir -p "$1/identity/1"
  cat >"$1/identity/config.pbtxt" <<'PBTXT'
name: "identity"
backend: "identity"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
PBTXT
}

# wait_ready PORT PID LOG: waits up to 60 s for /v2/health/ready; prints LOG and fails
# when the server exits or never gets ready.
wait_ready() {
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$1/v2/health/ready" >/dev/null && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "flowserve did not get ready:" >&2
  cat "$3" >&2
  return 1
}

# make_body FILE INPUT OUTPUT DIMS...: a binary-extension request of one random FP32 item
# (JSON header + raw bytes) into FILE; prints the header length. Needs PY.
make_body() {  # file input output shape...
  $PY - "$@" <<'PYEOF'
import json, sys, numpy as np
path, inp, out, shape = sys.argv[1], sys.argv[2], sys.argv[3], [1] + [int(d) for d in sys.argv[4:]]
x = np.random.default_rng(0).random(shape, dtype=np.float32)
head = json.dumps({"inputs": [{"name": inp, "shape": shape, "datatype": "FP32",
                               "parameters": {"binary_data_size": x.nbytes}}],
                   "outputs": [{"name": out, "parameters": {"binary_data": True}}]}).encode()
open(path, "wb").write(head + x.tobytes())
print(len(head))
PYEOF
}

# counts MODEL (needs PORT): "inference_count execution_count" from the statistics extension.
counts() {
  curl -sf "http://127.0.0.1:$PORT/v2/models/$1/stats" |
    $PY -c 'import json,sys; s=json.load(sys.stdin)["model_stats"][0]; print(s["inference_count"], s["execution_count"])'
}

# run_wrk MODEL CONNS HEADER_LEN BODY (needs PORT, SECS, ROOT): "req/s p50_ms p99_ms errors".
# A long timeout: at c=16 a ResNet-50 request waits for the batches ahead of it.
run_wrk() {  # model concurrency header_len body
  WRK_BODY_FILE=$4 WRK_HEADER_LENGTH=$3 wrk -t1 -c"$2" -d"${SECS}s" --timeout 60s \
    -s "$ROOT/bench/wrk_post.lua" "http://127.0.0.1:$PORT/v2/models/$1/infer" |
    awk '/^RESULT/ { printf "%s %.3f %.3f %d\n", $2, $3 / 1000, $4 / 1000, $5 + $6 }'
}

# need_tools TOOL...: stops with a hint when one is missing (install-deps.sh installs them).
need_tools() {
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "missing $t (scripts/install-deps.sh)"; exit 1; }
  done
}

# bench_start TOOLS...: the set-up every flowserve bench shares: the tools it runs, the
# binary in BIN, and the work folder (start_workdir).
bench_start() {
  need_tools "$@"
  [ -x "$BIN" ] || { echo "no flowserve binary at $BIN (make build)"; exit 1; }
  start_workdir
}

# start_workdir: TMP, a temporary folder, and PIDS, processes to stop; both go at exit.
start_workdir() {
  TMP=$(mktemp -d /tmp/flowserve-bench.XXXXXX)
  PIDS=()
  trap cleanup_workdir EXIT
}
cleanup_workdir() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}

# server_cpu_ticks PID: utime+stime of the process so far, in clock ticks (getconf CLK_TCK).
server_cpu_ticks() {
  # Fields after the command name, which is in parentheses and may hold spaces.
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# start_http_only REPO PORT THREADS: flowserve with HTTP only (no gRPC, no metrics) on PORT,
# its pid added to PIDS; returns once it is ready. Needs BIN and TMP (start_workdir).
start_http_only() {
  "$BIN" --model-repository="$1" --http-address=127.0.0.1 --http-port="$2" \
    --http-thread-count="$3" --allow-grpc=false --allow-metrics=false \
    --log-info=false >"$TMP/flowserve.log" 2>&1 &
  PIDS+=($!)
  wait_ready "$2" "${PIDS[-1]}" "$TMP/flowserve.log"
}
