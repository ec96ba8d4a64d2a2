#!/usr/bin/env bash
# Re-vendor ONNX Runtime Web (the drawing panel's in-browser runtime) from npm, pinned.
# Usage: scripts/refresh_onnxruntime_web.sh [VERSION]   (default: the version in VERSION)
#
# Only two files are kept: ort.wasm.bundle.min.mjs (the JS API with the WebAssembly glue inside,
# CPU only: no WebGL/WebGPU code the panel never uses) and ort-wasm-simd-threaded.wasm, stored
# brotli-compressed (.wasm.br, quality 11): 14.2 MB raw, 2.4 MB compressed, and the app serves
# the .br as is to browsers that accept br (kdapp/ui/drawing.py). Takes about a minute (brotli).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=kdapp/ui/static/vendor/onnxruntime-web
version=${1:-$(sed -n 's/^version: //p' "$dest/VERSION")}
py=${PYTHON:-python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "onnxruntime-web@$version" >/dev/null && tar xzf "onnxruntime-web-$version.tgz")
pkg=$work/package
cp "$pkg/dist/ort.wasm.bundle.min.mjs" "$dest/"
$py -c "import brotli, sys; open(sys.argv[2], 'wb').write(brotli.compress(open(sys.argv[1], 'rb').read(), quality=11))" \
  "$pkg/dist/ort-wasm-simd-threaded.wasm" "$dest/ort-wasm-simd-threaded.wasm.br"
# The package ships no LICENSE file; its package.json says MIT, and the licence text is the
# ONNX Runtime repository's (Copyright (c) Microsoft Corporation).
license=$($py -c "import json, sys; print(json.load(open(sys.argv[1]))['license'])" "$pkg/package.json")
{
  echo "package: onnxruntime-web"
  echo "version: $version"
  echo "source: https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-$version.tgz"
  echo "license: $license (see LICENSE)"
  echo "files: dist/ort.wasm.bundle.min.mjs, dist/ort-wasm-simd-threaded.wasm (stored as .wasm.br, brotli q11)"
  echo "sha256:"
  (cd "$pkg/dist" && sha256sum ort.wasm.bundle.min.mjs ort-wasm-simd-threaded.wasm | sed 's/^/  /')
  echo "refreshed by: scripts/refresh_onnxruntime_web.sh $version"
} > "$dest/VERSION"
echo "vendored onnxruntime-web $version into $dest"
ls -l "$dest"
