#!/usr/bin/env bash
# What the Python backend adds per request: wrk posts binary-tensor requests over HTTP to
# a Python model returning its input (model.py -> one stub process, shared memory) and to
# the identity backend (which aliases the input, no copy), in the same server and run, at
# 1 and 8 connections: a small tensor (16 FP32) and a 4 MiB one (1 Mi FP32). Prints each
# pair, the latency the Python backend adds at the median, the throughput ratio and the
# Python model's requests per execute() call (how well batches form).
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

run() {  # model body connections -> "rps p50 p99 non2xx sockerr"
  WRK_BODY_FILE=$TMP/$2.body WRK_HEADER_LENGTH=$(cat "$TMP/$2.hlen") wrk -t1 -c"$3" \
    -d"${DURATION}s" -s "$ROOT/bench/wrk_post.lua" "$(url "$1")" |
    awk '/^RESULT/ {print $2, $3, $4, $5, $6}'
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
      "$ir" "$ip50" "$ip99" "$pr" "$pp50" "$pp99" "$((pp50 - ip50))" \
      "$(echo "$pr / $ir" | bc -l)" "$added_infer" "$(echo "($pc1 - $pc0) / ($pe1 - $pe0)" | bc -l)"
    errors=$(cat "$TMP/identity.runs" "$TMP/pyidentity.runs" | awk '{e += $4 + $5} END {print e + 0}')
    [ "$errors" = 0 ] || echo "  $errors non-2xx replies or socket errors (see $TMP/*.runs)"
  done
done
echo "+p50 us = python p50 - identity p50 over HTTP (goal <= 60 at 1 connection, small); rps ratio ="
echo "python/identity (goal >= 0.5 at 8, small); +infer us = the backends' mean compute_infer per"
echo "request (server statistics) python - identity: the Python backend's own share; py batch ="
echo "requests per execute() call of the Python model (server statistics)"
