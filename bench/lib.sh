# Shared by the bench scripts: source it after setting PY (Debian's python3).
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
