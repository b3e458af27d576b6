#!/usr/bin/env bash
# ResNet-50 on the onnxruntime backend through the server (HTTP, binary tensors, one item
# per request, dynamic batching) at concurrency 1 and 16, next to raw ONNX Runtime
# (tools/onnx_raw_bench) and raw LibTorch (tools/torch_raw_bench, when built) on the same
# network, at the batch size the batcher formed and the server's intra-op threads; one run.
#   bench/onnx_vs_raw.sh         builds resnet50 and resnet50_onnx first (~100 MB each)
# Env: BUILD_DIR (default build), FLOWSERVE_BIN, ONNX_RAW_BENCH, TORCH_RAW_BENCH,
#      REPO (default model_repository), SECS (5 per measurement), ROUNDS (3), DELAY_US
#      (max_queue_delay_microseconds of the batcher, default 0), MODELS (default
#      "resnet50"; "digits" works).
# Each figure is the best of ROUNDS measurements, server and raw taken in turn, so that a
# neighbour's burst of CPU on a shared machine does not decide a ratio.
# Goal (issue 12): server >= 0.95x raw ONNX Runtime at c=1, >= 0.9x at c=16.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BIN=${FLOWSERVE_BIN:-$BUILD_DIR/flowserve}
TOOLS=$(dirname "$BIN")/tools
ORT_RAW=${ONNX_RAW_BENCH:-$TOOLS/onnx_raw_bench/onnx_raw_bench}
TORCH_RAW=${TORCH_RAW_BENCH:-$TOOLS/torch_raw_bench/torch_raw_bench}
REPO=${REPO:-$ROOT/model_repository}
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
DELAY_US=${DELAY_US:-0}
MODELS=${MODELS:-resnet50}
PY=/usr/bin/python3
. "$ROOT/bench/lib.sh"
for f in "$BIN" "$ORT_RAW"; do [[ -x $f ]] || { echo "missing $f (build first)"; exit 1; }; done
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)"; exit 1; }
[[ -x $TORCH_RAW ]] || echo "note: $TORCH_RAW missing (FLOWSERVE_WITH_PYTORCH=OFF): no LibTorch column" >&2

$PY "$ROOT/examples/build_repository.py" --out "$REPO" --resnet50 >&2
WORK=$(mktemp -d)
SERVER=
trap '[[ -n $SERVER ]] && kill $SERVER 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

# <m>_onnx from the repository, with the batcher's delay set here.
for m in $MODELS; do
  d="$WORK/repo/${m}_onnx"
  mkdir -p "$d/1"
  ln -s "$REPO/${m}_onnx/1/model.onnx" "$d/1/model.onnx"
  [[ -f $REPO/${m}_onnx/labels.txt ]] && ln -s "$REPO/${m}_onnx/labels.txt" "$d/labels.txt"
  sed -e '/^dynamic_batching/d' "$REPO/${m}_onnx/config.pbtxt" >"$d/config.pbtxt"
  echo "dynamic_batching { max_queue_delay_microseconds: $DELAY_US }" >>"$d/config.pbtxt"
done

PORT=$(free_port)
"$BIN" --model-repository="$WORK/repo" --http-port="$PORT" --http-address=127.0.0.1 \
  --allow-grpc=false --allow-metrics=false --log-info=false >"$WORK/server.log" 2>&1 &
SERVER=$!
wait_ready "$PORT" "$SERVER" "$WORK/server.log"


# The intra-op threads the server gives the model's one instance: the config's
# intra_op_thread_count, else every usable core.
threads_of() {
  grep -A1 '"intra_op_thread_count"' "$REPO/$1/config.pbtxt" |
    grep -o 'string_value: *"[0-9]*"' | grep -o '[0-9]\+' || nproc
}

raw_ort() {  # model batch threads shape...
  "$ORT_RAW" --model "$REPO/${1}_onnx/1/model.onnx" --shape "$(IFS=,; echo "${*:4}")" \
    --batch "$2" --threads "$3" --seconds "$SECS" | sed -E 's/.*throughput=([0-9.]+).*/\1/'
}

raw_torch() {  # model batch threads shape...
  [[ -x $TORCH_RAW && -f $REPO/$1/1/model.pt ]] || { echo "-"; return; }
  "$TORCH_RAW" --model "$REPO/$1/1/model.pt" --shape "$(IFS=,; echo "${*:4}")" \
    --batch "$2" --threads "$3" --seconds "$SECS" | sed -E 's/.*throughput=([0-9.]+).*/\1/'
}

ratio() { [[ $1 == - || $2 == - ]] && echo "-" || printf "%.2f" "$(echo "$1 / $2" | bc -l)"; }
best() {  # the larger of two figures, "-" meaning none
  if [[ $1 == - ]]; then
    echo "$2"
  elif [[ $2 == - ]] || (($(echo "$1 >= $2" | bc -l))); then
    echo "$1"
  else
    echo "$2"
  fi
}

printf "%-9s %3s %9s %10s %9s %9s %11s %8s %13s %9s\n" model c avg_batch "srv inf/s" p50_ms \
  p99_ms "ort inf/s" "srv/ort" "torch inf/s" "ort/torch"
for m in $MODELS; do
  case $m in
    digits) shape=(1 8 8) ;;
    resnet50) shape=(3 224 224) ;;
    *) echo "unknown model $m" >&2; continue ;;
  esac
  model=${m}_onnx
  threads=$(threads_of "$model")
  hlen=$(make_body "$WORK/$m.body" INPUT__0 OUTPUT__0 "${shape[@]}")
  run_wrk "$model" 1 "$hlen" "$WORK/$m.body" >/dev/null  # warm-up: arena, memory patterns
  for c in 1 16; do
    thr=- p50=- p99=- ort=- torch=- i_sum=0 e_sum=0
    for ((r = 0; r < ROUNDS; r++)); do
      read -r i0 e0 <<<"$(counts "$model")"
      read -r t q50 q99 errs <<<"$(run_wrk "$model" "$c" "$hlen" "$WORK/$m.body")"
      read -r i1 e1 <<<"$(counts "$model")"
      [[ $errs == 0 ]] || echo "WARNING: $errs errors for $model c=$c" >&2
      if [[ $thr == - ]] || (($(echo "$t > $thr" | bc -l))); then thr=$t p50=$q50 p99=$q99; fi
      i_sum=$((i_sum + i1 - i0)) e_sum=$((e_sum + e1 - e0))
      avg=$(echo "scale=2; $i_sum / $e_sum" | bc -l)
      b=$(printf "%.0f" "$avg")
      ((b < 1)) && b=1
      ort=$(best "$ort" "$(raw_ort "$m" "$b" "$threads" "${shape[@]}")")
      torch=$(best "$torch" "$(raw_torch "$m" "$b" "$threads" "${shape[@]}")")
    done
    printf "%-9s %3d %9s %10.1f %9.3f %9.3f %11s %8s %13s %9s\n" "$m" "$c" "$avg" "$thr" "$p50" \
      "$p99" "$ort@$b" "$(ratio "$thr" "$ort")" "$torch@$b" "$(ratio "$ort" "$torch")"
  done
done
echo "(best of $ROUNDS x ${SECS}s each; srv: wrk -t1, one item per request, HTTP binary tensors, dynamic_batching with" \
  "max_queue_delay_microseconds=$DELAY_US, one instance; ort/torch: tools/onnx_raw_bench and" \
  "tools/torch_raw_bench, one thread calling Run/forward at the average batch size the batcher" \
  "formed (after @) with the server's intra-op threads; $(nproc) cores)"
