#!/usr/bin/env bash
# Installs s3rver, a real S3-compatible server the object-storage tests start on loopback,
# into the git-ignored .deps/s3rver. Idempotent: does nothing when the pinned version is
# already there. Only tests use it; the product never depends on it.
set -euo pipefail
version=3.7.1
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.deps/s3rver"
if [ -f "$dest/node_modules/s3rver/package.json" ] &&
   grep -q "\"version\": \"$version\"" "$dest/node_modules/s3rver/package.json"; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "install-s3rver: npm not found; the s3 tests will be skipped" >&2
  exit 0
fi
echo "install-s3rver: installing s3rver@$version into $dest"
mkdir -p "$dest"
cd "$dest"
[ -f package.json ] || echo '{"name": "flowserve-test-deps", "private": true}' > package.json
npm install --no-audit --no-fund --save-exact "s3rver@$version"
