#!/usr/bin/env bash
# The pytorch backend through the server (HTTP, binary tensors, wrk at concurrency 1 and 8)
# against the same TorchScript module in a tight C++ loop (tools/torch_raw_bench), same run.
#   bench/pytorch_vs_raw.sh            digits (and resnet50 when already built)
#   RESNET50=1 bench/pytorch_vs_raw.sh builds resnet50 first (~100 MB)
# Env: BUILD_DIR (default build), FLOWSERVE_BIN, REPO (default model_repository), SECS (5).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BIN=${FLOWSERVE_BIN:-$BUILD_DIR/flowserve}
RAW=${TORCH_RAW_BENCH:-$(dirname "$BIN")/tools/torch_raw_bench/torch_raw_bench}
REPO=${REPO:-$ROOT/model_repository}
SECS=${SECS:-5}
PY=/usr/bin/python3
. "$ROOT/bench/lib.sh"
for f in "$BIN" "$RAW"; do [[ -x $f ]] || { echo "missing $f (build with FLOWSERVE_WITH_PYTORCH=ON)"; exit 1; }; done
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)"; exit 1; }

$PY "$ROOT/examples/build_repository.py" --out "$REPO" ${RESNET50:+--resnet50} >&2
WORK=$(mktemp -d)
PORT=$(free_port)
"$BIN" --model-repository="$REPO" --http-port="$PORT" --http-address=127.0.0.1 \
  --grpc-port=0 --metrics-port=0 --allow-grpc=false --allow-metrics=false \
  --log-info=false >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
wait_ready "$PORT" "$SERVER" "$WORK/server.log"

cat >"$WORK/body.lua" <<'LUA'
local f = io.open(os.getenv("BODY_FILE"), "rb")
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = os.getenv("HEADER_LEN")
LUA

# One request body: JSON header + raw FP32 input of one item (batch 1). Prints header length.
make_body() {  # model shape...
  $PY - "$WORK/$1.body" "${@:2}" <<'PYEOF'
import json, sys, numpy as np
path, shape = sys.argv[1], [1] + [int(d) for d in sys.argv[2:]]
x = np.random.default_rng(0).random(shape, dtype=np.float32)
head = json.dumps({"inputs": [{"name": "INPUT__0", "shape": shape, "datatype": "FP32",
                               "parameters": {"binary_data_size": x.nbytes}}],
                   "outputs": [{"name": "OUTPUT__0", "parameters": {"binary_data": True}}]}).encode()
open(path, "wb").write(head + x.tobytes())
print(len(head))
PYEOF
}

# wrk -> "throughput p50_ms non2xx"
run_wrk() {  # model concurrency header_len
  BODY_FILE="$WORK/$1.body" HEADER_LEN=$3 wrk -t1 -c"$2" -d"${SECS}s" --latency \
    -s "$WORK/body.lua" "http://127.0.0.1:$PORT/v2/models/$1/infer" | awk '
    /^ +50%/ { v=$2; if (v ~ /us$/) p=v/1000; else if (v ~ /ms$/) p=v+0; else p=v*1000 }
    /Requests\/sec/ { r=$2 }
    /Non-2xx/ { e=$5 }
    END { printf "%s %.3f %d\n", r, p, e+0 }'
}

printf "%-9s %-11s %12s %9s %14s %12s\n" model client "infer/s" p50_ms "server/raw thr" "p50 ratio"
bench_model() {  # model shape...
  local model=$1
  [[ -f $REPO/$model/1/model.pt ]] || return 0
  local hlen; hlen=$(make_body "$@")
  # The raw loop uses the intra-op threads the server gives the model's one instance.
  local threads
  threads=$(grep -A1 '"INTRA_OP_THREAD_COUNT"' "$REPO/$model/config.pbtxt" | grep -o 'string_value: *"[0-9]*"' |
    grep -o '[0-9]\+' || nproc)
  local raw; raw=$("$RAW" --model "$REPO/$model/1/model.pt" --shape "$(IFS=,; echo "${*:2}")" \
    --batch 1 --seconds "$SECS" --threads "$threads")
  local raw_thr raw_p50
  raw_thr=$(sed -E 's/.*throughput=([0-9.]+).*/\1/' <<<"$raw")
  raw_p50=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$raw")
  printf "%-9s %-11s %12.1f %9.3f %14s %12s\n" "$model" "raw c=1" "$raw_thr" "$raw_p50" 1.00 1.00
  run_wrk "$model" 1 "$hlen" >/dev/null  # warm-up: TorchScript profiles its first runs
  for c in 1 8; do
    read -r thr p50 errs <<<"$(run_wrk "$model" "$c" "$hlen")"
    [[ $errs == 0 ]] || echo "WARNING: $errs non-2xx responses for $model c=$c" >&2
    printf "%-9s %-11s %12.1f %9.3f %14.2f %12.2f\n" "$model" "http c=$c" "$thr" "$p50" \
      "$(echo "$thr / $raw_thr" | bc -l)" "$(echo "$p50 / $raw_p50" | bc -l)"
  done
}
bench_model digits 1 8 8
bench_model resnet50 3 224 224
echo "(raw: tools/torch_raw_bench, one thread calling forward with the model's intra-op threads, batch 1; http: wrk -t1, one item per request; $(nproc) cores)"
