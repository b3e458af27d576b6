#!/usr/bin/env bash
# What the Python backend adds per request: wrk posts binary-tensor requests over HTTP to
# a Python model returning its input (model.py -> one stub process, shared memory) and to
# the identity backend (which aliases the input, no copy), in the same server and run, at
# 1 and 8 connections: a small tensor (16 FP32) and a 4 MiB one (1 Mi FP32). Prints each
# pair, the latency the Python backend adds at the median, the throughput ratio and the
# Python model's requests per execute() call (how well batches form); at 8 connections also
# the CPU per request of the server, the Python process and wrk, and the ratio those allow.
# Usage: bench/python_vs_identity.sh [seconds per run, default 2]
#   env: FLOWSERVE_BIN; FLOWSERVE_ARGS (extra server flags, e.g.
#   --backend-config=python,spin-microseconds=0); SIZES (default "small 4mb"); ROUNDS
#   (alternating runs per row, default 5)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FLOWSERVE_BIN:-$ROOT/build/flowserve}
DURATION=${1:-2}
PY=/usr/bin/python3
. "$ROOT/bench/lib.sh"
bench_start wrk curl bc

# --- models and request bodies ----------------------------------------------------------------
# The same config for both but the backend; the dynamic batcher lets concurrent requests
# share one execute() call (what a Triton user configures for a Python model too).
for m in identity:identity pyidentity:python; do
  mkdir -p "$TMP/repo/${m%%:*}/1"
  cat >"$TMP/repo/${m%%:*}/config.pbtxt" <<PBTXT
name: "${m%%:*}"
backend: "${m##*:}"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
dynamic_batching { }
PBTXT
done
cat >"$TMP/repo/pyidentity/1/model.py" <<'MODEL'
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests]
MODEL
$PY - "$TMP" <<'PY'
import json, sys
import numpy as np
tmp = sys.argv[1]
for name, n in (("small", 16), ("4mb", 1 << 20)):
    header = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1, n], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 4 * n}}],
                         "parameters": {"binary_data_output": True}}).encode()
    open(f"{tmp}/{name}.body", "wb").write(header + np.arange(n, dtype=np.float32).tobytes())
    open(f"{tmp}/{name}.hlen", "w").write(str(len(header)))
PY

PORT=$(free_port)
"$BIN" --model-repository="$TMP/repo" --http-address=127.0.0.1 --http-port="$PORT" \
  --allow-grpc=false --allow-metrics=false --log-info=false ${FLOWSERVE_ARGS:-} \
  >"$TMP/flowserve.log" 2>&1 &
PIDS+=($!)
wait_ready "$PORT" "${PIDS[-1]}" "$TMP/flowserve.log"
url() { echo "http://127.0.0.1:$PORT/v2/models/$1/infer"; }

# Both models must answer with the input before anything is timed.
for m in identity pyidentity; do
  curl -sf -o "$TMP/$m.reply" -H "Inference-Header-Content-Length: $(cat "$TMP/small.hlen")" \
    --data-binary @"$TMP/small.body" "$(url $m)" || { echo "$m failed:"; cat "$TMP/flowserve.log"; exit 1; }
done
# (the JSON headers differ in the model name; the 64 tensor bytes at the end must not)
cmp -s <(tail -c 64 "$TMP/identity.reply") <(tail -c 64 "$TMP/pyidentity.reply") ||
  { echo "the replies' tensors differ"; exit 1; }

SERVER=${PIDS[-1]}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # user + system CPU of a process
stub_ticks() {  # the Python processes (the server's children)
  local t=0 c
  for c in $(pgrep -P "$SERVER"); do t=$((t + $(ticks "$c" 2>/dev/null || echo 0))); done
  echo $t
}
# model body connections -> "rps p50 p99 non2xx sockerr server_ticks process_ticks wrk_ticks"
# (CPU ticks over the run: the server, its Python processes, and wrk, read from the shell
# that waited for it)
run() {
  local s0 p0 s1 p1 out
  s0=$(ticks "$SERVER") p0=$(stub_ticks)
  out=$(WRK_BODY_FILE=$TMP/$2.body WRK_HEADER_LENGTH=$(cat "$TMP/$2.hlen") bash -c \
    'wrk -t1 -c"$1" -d"$2" -s "$3" "$4"; read -ra s </proc/$$/stat; echo "CHILDCPU $((s[15] + s[16]))"' \
    _ "$3" "${DURATION}s" "$ROOT/bench/wrk_post.lua" "$(url "$1")")
  s1=$(ticks "$SERVER") p1=$(stub_ticks)
  echo "$(awk '/^RESULT/ {print $2, $3, $4, $5, $6}' <<<"$out") $((s1 - s0)) $((p1 - p0))" \
    "$(awk '/^CHILDCPU/ {print $2}' <<<"$out")"
}
HZ=$(getconf CLK_TCK)
# "<label> <runs file>" -> CPU us per request of the server, the processes and wrk
cpu_per_request() {
  awk -v hz="$HZ" -v d="$DURATION" '{n += $1 * d; s += $6; p += $7; w += $8}
    END {f = 1e6 / hz / n; printf "%.1f %.1f %.1f", s * f, p * f, w * f}' "$1"
}
run identity small 8 >/dev/null  # warm-up
run pyidentity small 8 >/dev/null

# The machine's load drifts over seconds (2 cores, other work): each row alternates short
# identity and Python runs ROUNDS times and reports the medians, so both see the same load.
ROUNDS=${ROUNDS:-5}
# compute_infer of a model so far: "<count> <ns> <executions>" (the backend's share of each
# request, and how many execute calls the requests took)
infer_stats() {
  curl -s "http://127.0.0.1:$PORT/v2/models/$1/stats" | $PY -c \
    'import json,sys; m=json.load(sys.stdin)["model_stats"][0]; s=m["inference_stats"]["compute_infer"]; print(s["count"], s["ns"], m["execution_count"])'
}
printf "%-6s %5s | %10s %8s %8s | %10s %8s %8s | %9s %9s %9s %8s\n" tensor conns \
  "id req/s" "id p50us" "id p99us" "py req/s" "py p50us" "py p99us" "+p50 us" "rps ratio" \
  "+infer us" "py batch"
for body in ${SIZES:-small 4mb}; do
  for c in 1 8; do
    : >"$TMP/identity.runs"
    : >"$TMP/pyidentity.runs"
    read -r ic0 in0 _ < <(infer_stats identity)
    read -r pc0 pn0 pe0 < <(infer_stats pyidentity)
    for _ in $(seq "$ROUNDS"); do
      run identity "$body" "$c" >>"$TMP/identity.runs"
      run pyidentity "$body" "$c" >>"$TMP/pyidentity.runs"
    done
    col() { awk "{print \$$2}" "$TMP/$1.runs" | median; }
    ir=$(col identity 1) ip50=$(col identity 2) ip99=$(col identity 3)
    pr=$(col pyidentity 1) pp50=$(col pyidentity 2) pp99=$(col pyidentity 3)
    read -r ic1 in1 _ < <(infer_stats identity)
    read -r pc1 pn1 pe1 < <(infer_stats pyidentity)
    added_infer=$(( (pn1 - pn0) / (pc1 - pc0) / 1000 - (in1 - in0) / (ic1 - ic0) / 1000 ))
    printf "%-6s %5s | %10.0f %8s %8s | %10.0f %8s %8s | %9s %9.2f %9s %8.1f\n" "$body" "$c" \
      "$ir" "$ip50" "$ip99" "$pr" "$pp50" "$pp99" "$(printf '%.0f' "$(echo "$pp50 - $ip50" | bc -l)")" \
      "$(echo "$pr / $ir" | bc -l)" "$added_infer" "$(echo "($pc1 - $pc0) / ($pe1 - $pe0)" | bc -l)"
    read -r is _ iw <<<"$(cpu_per_request "$TMP/identity.runs")"
    read -r ps pp pw <<<"$(cpu_per_request "$TMP/pyidentity.runs")"
    # (One connection leaves CPUs idle between requests, and the server polls meanwhile.)
    [ "$c" -gt 1 ] && printf "         CPU us/request: identity server %s + wrk %s | python server %s + process %s + wrk %s | cap %.2f\n" \
      "$is" "$iw" "$ps" "$pp" "$pw" "$(echo "($is + $iw) / ($ps + $pp + $pw)" | bc -l)"
    errors=$(cat "$TMP/identity.runs" "$TMP/pyidentity.runs" | awk '{e += $4 + $5} END {print e + 0}')
    [ "$errors" = 0 ] || echo "  $errors non-2xx replies or socket errors (see $TMP/*.runs)"
  done
done
echo "+p50 us = python p50 - identity p50 over HTTP (goal <= 60 at 1 connection, small); rps ratio ="
echo "python/identity (goal >= 0.5 at 8, small); +infer us = the backends' mean compute_infer per"
echo "request (server statistics) python - identity: the Python backend's own share; py batch ="
echo "requests per execute() call of the Python model (server statistics); CPU us/request = user +"
echo "system CPU per answered request at 8 connections of the server (its poll's yields included),"
echo "the Python processes and the client; cap = identity's sum / python's: the throughput ratio if"
echo "every CPU were busy (where they all share the cores, the ratio cannot go far above it)"
