#!/usr/bin/env bash
# Installs the Debian packages flowserve needs to build, serve and test. Idempotent:
# asks apt only for what is missing, through sudo when not root.
# `--fuzz` installs only what `make fuzz` adds (clang and libFuzzer), so that `make test`
# on a fresh machine pulls no more than it needs. (g++'s ASan/UBSan/TSan runtimes come
# with build-essential, so `make test-asan` / `test-tsan` need nothing extra.)
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build ccache pkg-config
  libboost-dev libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  rapidjson-dev libcli11-dev libspdlog-dev libfmt-dev libgtest-dev libtorch-dev
  libcurl4-openssl-dev libssl-dev libexpat1-dev  # s3:// repositories
  libxxhash-dev  # response cache: XXH3-128 of request inputs (header-only use)
  libnghttp2-dev  # gRPC's nghttp2 engine (--grpc-engine=nghttp2)
  # example models, tests and benchmarks (Debian's python3, never another interpreter)
  python3 python3-torch python3-numpy python3-requests python3-grpcio python3-protobuf
  python3-grpc-tools python3-sklearn python3-pil python3-pytest python3-packaging
  python3-gevent python3-geventhttpclient python3-rapidjson
  python3-torchvision python3-onnx
  python3-boto3 python3-botocore  # s3 tests: uploads, and the SigV4 reference signer
  wrk nginx-light prometheus openssl curl bc
  chromium  # the web console's browser tests (tests/e2e/test_console.py), driven headless
)
if [ "${1:-}" = "--fuzz" ]; then
  # libFuzzer's runtime is in libclang-rt; llvm-14 brings the symbolizer for stack traces.
  packages=(clang-14 libclang-rt-14-dev llvm-14)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js and npm build the web console (web/console) and install the browser tests'
# driver (tests/browser); npm also fetches onnxruntime-node's tarball. A machine whose
# Node.js already brings npm needs no Debian one.
if [ "${1:-}" != "--fuzz" ]; then
  if ! command -v node >/dev/null; then missing+=(nodejs); fi
  if ! command -v npm >/dev/null; then missing+=(npm); fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ONNX Runtime (headers + library) into the git-ignored .deps/; a no-op once fetched.
if [ "${1:-}" != "--fuzz" ]; then
  "$(dirname "${BASH_SOURCE[0]}")/fetch-onnxruntime.sh"
  # s3rver, the S3-compatible server the s3 tests start (.deps/s3rver); a no-op once there.
  "$(dirname "${BASH_SOURCE[0]}")/install-s3rver.sh"
fi
