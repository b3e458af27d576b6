#!/usr/bin/env bash
# Fetches ONNX Runtime for the onnxruntime backend into a build-local folder git ignores
# (.deps/onnxruntime/ by default, or $1). Idempotent: does nothing when both parts are
# already there.
#   include/  the C/C++ API headers, from Debian trixie's libonnxruntime-dev. That package
#             is only downloaded and unpacked, never installed: this machine runs bookworm,
#             and trixie's runtime library would drag trixie's libc along.
#   lib/      libonnxruntime.so.1 from the npm package onnxruntime-node, a self-contained
#             build (no dependency beyond glibc/libstdc++). Its install scripts never run:
#             `npm pack` only downloads the tarball.
# The 1.21 headers drive the newer library through the versioned C API (OrtGetApiBase()->
# GetApi(ORT_API_VERSION) with the headers' version), which every later library serves.
set -euo pipefail

ORT_NPM_VERSION=1.30.0
DEBIAN_SUITE=trixie
DEBIAN_MIRROR=http://deb.debian.org/debian

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/.deps/onnxruntime}"
stamp="$dest/.fetched-$ORT_NPM_VERSION"

if [ -f "$stamp" ] && [ -f "$dest/include/onnxruntime_c_api.h" ] &&
  [ -f "$dest/lib/libonnxruntime.so.1" ]; then
  exit 0
fi

for tool in apt-get dpkg-deb npm tar; do
  if ! command -v "$tool" >/dev/null; then
    echo "fetch-onnxruntime: $tool is missing (scripts/install-deps.sh installs it)" >&2
    exit 1
  fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "fetch-onnxruntime: fetching into $dest"

# --- headers: apt with a private source list and state, so the system's apt is untouched.
# _apt (the sandboxed downloader) must be able to write the private folders; as a normal
# user apt runs unsandboxed anyway.
mkdir -p "$work/apt/lists/partial" "$work/apt/archives/partial" "$work/deb"
echo "deb $DEBIAN_MIRROR $DEBIAN_SUITE main" >"$work/apt/sources.list"
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then
  chown -R _apt "$work/apt" "$work/deb"
  chmod 755 "$work"
fi
apt_opts=(
  -o "Dir::Etc::SourceList=$work/apt/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$work/apt/lists"
  -o "Dir::Cache::Archives=$work/apt/archives"
  -o "Dir::Cache::pkgcache="
  -o "Dir::Cache::srcpkgcache="
  -o "APT::Architecture=amd64"
  -o "Debug::NoLocking=1"
  -q
)
apt-get "${apt_opts[@]}" update >"$work/apt-update.log" 2>&1 || {
  cat "$work/apt-update.log" >&2
  echo "fetch-onnxruntime: apt-get update for $DEBIAN_SUITE failed" >&2
  exit 1
}
(cd "$work/deb" && apt-get "${apt_opts[@]}" download libonnxruntime-dev)
deb="$(ls "$work"/deb/libonnxruntime-dev_*.deb)"
dpkg-deb -x "$deb" "$work/deb/root"
headers="$(dirname "$(find "$work/deb/root" -name onnxruntime_c_api.h | head -n1)")"
if [ ! -f "$headers/onnxruntime_c_api.h" ]; then
  echo "fetch-onnxruntime: $deb holds no onnxruntime_c_api.h" >&2
  exit 1
fi

# --- library: the npm tarball, unpacked by hand (no node_modules, no install scripts).
(cd "$work" && npm pack --silent --ignore-scripts "onnxruntime-node@$ORT_NPM_VERSION" >/dev/null)
tar -xzf "$work/onnxruntime-node-$ORT_NPM_VERSION.tgz" -C "$work" \
  package/bin/napi-v6/linux/x64/libonnxruntime.so.1 package/LICENSE 2>/dev/null ||
  tar -xzf "$work/onnxruntime-node-$ORT_NPM_VERSION.tgz" -C "$work" \
    package/bin/napi-v6/linux/x64/libonnxruntime.so.1
lib="$work/package/bin/napi-v6/linux/x64/libonnxruntime.so.1"

# Swap in the new tree only when both parts are there.
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp/include" "$dest.tmp/lib"
cp -r "$headers"/. "$dest.tmp/include/"
cp "$lib" "$dest.tmp/lib/libonnxruntime.so.1"
ln -s libonnxruntime.so.1 "$dest.tmp/lib/libonnxruntime.so"
[ -f "$work/package/LICENSE" ] && cp "$work/package/LICENSE" "$dest.tmp/LICENSE"
echo "headers: $(basename "$deb"); library: onnxruntime-node $ORT_NPM_VERSION" >"$dest.tmp/SOURCE"
touch "$dest.tmp/.fetched-$ORT_NPM_VERSION"
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$dest.tmp" "$dest"
echo "fetch-onnxruntime: done ($(cat "$dest/SOURCE"))"
