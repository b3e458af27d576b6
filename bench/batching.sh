#!/usr/bin/env bash
# Dynamic batching on a real model: the digits example (and resnet50 when already built)
# through HTTP with binary tensors, one item per request, at concurrency 1/4/8/16, with
# and without dynamic_batching; then raw LibTorch (tools/torch_raw_bench) at the batch
# size the batcher actually formed, measured in the same run.
#   bench/batching.sh
# Env: BUILD_DIR (default build; needs FLOWSERVE_WITH_PYTORCH=ON), FLOWSERVE_BIN,
#      TORCH_RAW_BENCH, REPO (default model_repository), SECS (5 per point),
#      DELAY_US (max_queue_delay_microseconds of the batching variant, default 0).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BIN=${FLOWSERVE_BIN:-$BUILD_DIR/flowserve}
RAW=${TORCH_RAW_BENCH:-$(dirname "$BIN")/tools/torch_raw_bench/torch_raw_bench}
REPO=${REPO:-$ROOT/model_repository}
SECS=${SECS:-5}
DELAY_US=${DELAY_US:-0}
PY=/usr/bin/python3
. "$ROOT/bench/lib.sh"
for f in "$BIN" "$RAW"; do [[ -x $f ]] || { echo "missing $f (build with FLOWSERVE_WITH_PYTORCH=ON)"; exit 1; }; done
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)"; exit 1; }

$PY "$ROOT/examples/build_repository.py" --out "$REPO" >&2
WORK=$(mktemp -d)
SERVER=
trap '[[ -n $SERVER ]] && kill $SERVER 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

# Two variants of each model sharing its weights: <m>_batch (dynamic_batching with
# DELAY_US) and <m>_single (no dynamic_batching: one request per execution).
MODELS=()
for m in digits resnet50; do
  [[ -f $REPO/$m/1/model.pt ]] || continue
  MODELS+=("$m")
  for variant in batch single; do
    d="$WORK/repo/${m}_$variant"
    mkdir -p "$d/1"
    ln -s "$REPO/$m/1/model.pt" "$d/1/model.pt"
    [[ -f $REPO/$m/labels.txt ]] && ln -s "$REPO/$m/labels.txt" "$d/labels.txt"
    db=""
    [[ $variant == batch ]] && db="dynamic_batching { max_queue_delay_microseconds: $DELAY_US }"
    sed -e "s/^name: .*/name: \"${m}_$variant\"/" -e '/^dynamic_batching/d' \
      "$REPO/$m/config.pbtxt" >"$d/config.pbtxt"
    echo "$db" >>"$d/config.pbtxt"
  done
done
[[ ${#MODELS[@]} -gt 0 ]] || { echo "no model.pt under $REPO"; exit 1; }

PORT=$(free_port)
"$BIN" --model-repository="$WORK/repo" --http-port="$PORT" --http-address=127.0.0.1 \
  --allow-grpc=false --allow-metrics=false --log-info=false >"$WORK/server.log" 2>&1 &
SERVER=$!
wait_ready "$PORT" "$SERVER" "$WORK/server.log"


raw_thr() {  # model batch shape...
  local threads
  threads=$(grep -A1 '"INTRA_OP_THREAD_COUNT"' "$REPO/$1/config.pbtxt" |
    grep -o 'string_value: *"[0-9]*"' | grep -o '[0-9]\+' || nproc)
  "$RAW" --model "$REPO/$1/1/model.pt" --shape "$(IFS=,; echo "${*:3}")" --batch "$2" \
    --seconds "$SECS" --threads "$threads" | sed -E 's/.*throughput=([0-9.]+).*/\1/'
}

printf "%-9s %-7s %3s %10s %8s %8s %9s %10s %9s\n" model batcher c "infer/s" p50_ms p99_ms \
  avg_batch "raw@batch" "srv/raw"
for m in "${MODELS[@]}"; do
  case $m in
    digits) shape=(1 8 8) ;;
    resnet50) shape=(3 224 224) ;;
  esac
  hlen=$(make_body "$WORK/$m.body" INPUT__0 OUTPUT__0 "${shape[@]}")
  for variant in single batch; do
    model=${m}_$variant
    run_wrk "$model" 1 "$hlen" "$WORK/$m.body" >/dev/null  # warm-up: TorchScript profiling
    for c in 1 4 8 16; do
      read -r i0 e0 <<<"$(counts "$model")"
      read -r thr p50 p99 errs <<<"$(run_wrk "$model" "$c" "$hlen" "$WORK/$m.body")"
      read -r i1 e1 <<<"$(counts "$model")"
      [[ $errs == 0 ]] || echo "WARNING: $errs errors for $model c=$c" >&2
      avg=$(echo "scale=2; ($i1 - $i0) / ($e1 - $e0)" | bc -l)
      raw="-" ratio="-"
      if [[ $variant == batch ]]; then
        # Raw LibTorch at the batch size the batcher formed on average (rounded).
        b=$(printf "%.0f" "$avg")
        ((b < 1)) && b=1
        raw=$(raw_thr "$m" "$b" "${shape[@]}")
        ratio=$(printf "%.2f" "$(echo "$thr / $raw" | bc -l)")
        raw="$raw@$b"
      fi
      printf "%-9s %-7s %3d %10.1f %8.3f %8.3f %9s %10s %9s\n" "$m" "$variant" "$c" "$thr" \
        "$p50" "$p99" "$avg" "$raw" "$ratio"
    done
  done
done
echo "(http: wrk -t1, one item per request, binary tensors; batch: dynamic_batching with" \
  "max_queue_delay_microseconds=$DELAY_US; raw: tools/torch_raw_bench with the model's" \
  "intra-op threads at the average formed batch size; srv/raw = server infer/s over raw" \
  "infer/s; $(nproc) cores)"
