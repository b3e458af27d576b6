#!/usr/bin/env bash
# The response cache at concurrency 1: wrk posts the same binary-tensor request over HTTP
# to a model without response_cache and to the same model with it, in one server
# (--cache-config=local,size=64 MiB) and one run. With the cache every request after the
# first is a hit, so the pair shows what a hit costs against running the model: the
# identity backend (the cheapest possible execution: a hit saves only the scheduler
# hand-off, and costs a hash, a lookup and a shared answer) and a TorchScript MLP that
# takes a few milliseconds on one thread. Prints req/s and p50 for each and the ratios.
# Usage: bench/response_cache.sh [seconds per run, default 3]
#   env: FLOWSERVE_BIN
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FLOWSERVE_BIN:-$ROOT/build/flowserve}
SECS=${1:-3}
PY=/usr/bin/python3
. "$ROOT/bench/lib.sh"
bench_start wrk curl

# --- models -----------------------------------------------------------------------------
for m in identity identity_cached; do
  mkdir -p "$TMP/repo/$m/1"
  cat >"$TMP/repo/$m/config.pbtxt" <<PBTXT
name: "$m"
backend: "identity"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1, -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1, -1 ] } ]
$([[ $m == *_cached ]] && echo 'response_cache { enable: true }')
PBTXT
done
# A [1, 512] input widened to 16 rows through four 512x512 layers: a few ms of compute.
$PY - "$TMP/mlp.pt" <<'PYEOF'
import sys, torch
class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.ModuleList([torch.nn.Linear(512, 512) for _ in range(4)])
    def forward(self, x):
        y = x.repeat(16, 1)
        for layer in self.layers:
            y = torch.tanh(layer(y))
        return y.mean(0, keepdim=True)
torch.jit.trace(Mlp().eval(), torch.zeros(1, 512)).save(sys.argv[1])  # trace: no source on stdin
PYEOF
for m in mlp mlp_cached; do
  mkdir -p "$TMP/repo/$m/1"
  cp "$TMP/mlp.pt" "$TMP/repo/$m/1/model.pt"
  cat >"$TMP/repo/$m/config.pbtxt" <<PBTXT
name: "$m"
backend: "pytorch"
max_batch_size: 0
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 1, 512 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 1, 512 ] } ]
parameters { key: "INTRA_OP_THREAD_COUNT" value: { string_value: "1" } }
parameters { key: "INTER_OP_THREAD_COUNT" value: { string_value: "1" } }
$([[ $m == *_cached ]] && echo 'response_cache { enable: true }')
PBTXT
done

# --- server and bodies --------------------------------------------------------------------
PORT=$(free_port)
"$BIN" --model-repository="$TMP/repo" --http-port="$PORT" --http-address=127.0.0.1 \
  --allow-grpc=false --allow-metrics=false --log-info=false \
  --cache-config=local,size=67108864 >"$TMP/server.log" 2>&1 &
PIDS+=($!)
wait_ready "$PORT" "${PIDS[0]}" "$TMP/server.log"
# make_body shapes are [1, dims...]: identity gets FP32 [1, 16], the MLP FP32 [1, 512].
ID_HL=$(make_body "$TMP/identity.body" INPUT0 OUTPUT0 16)
MLP_HL=$(make_body "$TMP/mlp.body" INPUT__0 OUTPUT__0 512)

# --- runs ---------------------------------------------------------------------------------
printf "%-16s %10s %9s %9s\n" model "req/s" p50_ms p99_ms
declare -A THR P50
row() {  # model header_len body
  run_wrk "$1" 1 "$2" "$3" >/dev/null  # warm-up (and, cached, the one miss)
  read -r thr p50 p99 errs <<<"$(run_wrk "$1" 1 "$2" "$3")"
  [[ $errs == 0 ]] || echo "WARNING: $errs errors for $1" >&2
  THR[$1]=$thr
  P50[$1]=$p50
  printf "%-16s %10.1f %9.3f %9.3f\n" "$1" "$thr" "$p50" "$p99"
}
row identity "$ID_HL" "$TMP/identity.body"
row identity_cached "$ID_HL" "$TMP/identity.body"
row mlp "$MLP_HL" "$TMP/mlp.body"
row mlp_cached "$MLP_HL" "$TMP/mlp.body"

stats() {  # model: "executions cache_hits"
  curl -sf "http://127.0.0.1:$PORT/v2/models/$1/stats" | $PY -c 'import json,sys
s = json.load(sys.stdin)["model_stats"][0]
print(s["execution_count"], s["inference_stats"]["cache_hit"]["count"])'
}
echo
for m in identity mlp; do
  printf "%-9s cache on/off: throughput %.2fx, p50 %.2fx   (cached model: executions, hits = %s)\n" \
    "$m" "$($PY -c "print(${THR[${m}_cached]} / ${THR[$m]})")" \
    "$($PY -c "print(${P50[${m}_cached]} / max(${P50[$m]}, 1e-9))")" "$(stats "${m}_cached" | tr ' ' ,)"
done
