#!/usr/bin/env bash
# Idle resident memory of the server, all three frontends on, in one run:
#   1. a repository of identity models only (no framework module is mapped),
#   2. the same plus one small TorchScript model (the pytorch module and LibTorch mapped),
# each next to Triton's figure for the identity-only repository (21.6 MB, measured with
# tritonserver on the same 2-core machine class; Triton cannot run here, so the figure is
# a constant). Goal: identity-only <= 1.4x Triton.
#   bench/idle_rss.sh     Env: BUILD_DIR (default build), FLOWSERVE_BIN, SETTLE_SECS (3)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BIN=${FLOWSERVE_BIN:-$BUILD_DIR/flowserve}
SETTLE_SECS=${SETTLE_SECS:-3}
TRITON_MB=21.6
PY=/usr/bin/python3
. "$ROOT/bench/lib.sh"
[[ -x $BIN ]] || { echo "missing $BIN (make build)"; exit 1; }

WORK=$(mktemp -d)
SERVER=
trap '[[ -n $SERVER ]] && kill $SERVER 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

# idle_rss REPO: starts the server on REPO, waits until ready and SETTLE_SECS more, prints
# "<VmRSS kB> <frameworks mapped>".
idle_rss() {
  local port log=$WORK/server.log
  port=$(free_port)
  "$BIN" --model-repository="$1" --http-port="$port" --http-address=127.0.0.1 \
    --grpc-port="$(free_port)" --grpc-address=127.0.0.1 --metrics-port="$(free_port)" \
    --metrics-address=127.0.0.1 --log-info=false >"$log" 2>&1 &
  SERVER=$!
  wait_ready "$port" "$SERVER" "$log"
  sleep "$SETTLE_SECS"
  local rss mapped
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER/status")
  mapped=$({ grep -oE 'lib(torch_cpu|onnxruntime|python3)[^/ ]*\.so' "/proc/$SERVER/maps" || true; } |
    sort -u | tr '\n' ' ')
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
  SERVER=
  echo "$rss ${mapped:-none}"
}

mkdir -p "$WORK/identity_only"
write_identity_model "$WORK/identity_only"
cp -r "$WORK/identity_only" "$WORK/with_torch"
$PY - "$WORK/with_torch" <<'PY'
import pathlib, sys, torch
repo = pathlib.Path(sys.argv[1]) / "affine"
(repo / "1").mkdir(parents=True)
torch.jit.save(torch.jit.trace(torch.nn.Linear(4, 3), torch.rand(1, 4)), str(repo / "1/model.pt"))
(repo / "config.pbtxt").write_text(
    'backend: "pytorch"\nmax_batch_size: 8\n'
    'input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    'output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 3 ] } ]\n')
PY

printf '| repository | idle RSS MB | vs Triton %s MB | frameworks mapped |\n|---|---|---|---|\n' "$TRITON_MB"
for repo in identity_only with_torch; do
  read -r kb mapped < <(idle_rss "$WORK/$repo")
  awk -v r="$repo" -v kb="$kb" -v t="$TRITON_MB" -v m="$mapped" \
    'BEGIN { printf "| %s | %.1f | %.2fx | %s |\n", r, kb / 1024, kb / 1024 / t, m }'
done
