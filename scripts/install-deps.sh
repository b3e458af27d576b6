#!/usr/bin/env bash
# Installs the Debian packages flowserve needs to build, serve and test. Idempotent:
# asks apt only for what is missing, through sudo when not root.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build ccache pkg-config
  libboost-dev libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  rapidjson-dev libcli11-dev libspdlog-dev libfmt-dev libgtest-dev libtorch-dev
  # example models, tests and benchmarks (Debian's python3, never another interpreter)
  python3 python3-torch python3-numpy python3-requests python3-grpcio python3-protobuf
  python3-grpc-tools python3-sklearn python3-pil python3-pytest python3-packaging
  python3-gevent python3-geventhttpclient python3-rapidjson
  wrk nginx-light prometheus openssl curl
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
