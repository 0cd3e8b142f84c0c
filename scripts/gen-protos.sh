#!/usr/bin/env bash
# Regenerate the Python modules for src/sandlot/protocol/*.proto: google.protobuf messages
# (grpcio-tools' protoc) and Connect stubs (protoc-gen-connectrpc, protobuf=google flavour).
# Needs protoc-gen-connectrpc 0.12.x, matching the connectrpc 0.12 runtime the e2b SDK pins.
# Usage: scripts/gen-protos.sh [OUT_DIR]   (default: src, i.e. in place)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$(command -v "${PYTHON:-python}")"
[[ "$python" == /* ]] || python="$PWD/$python"  # absolute, but keep the venv symlink
plugin="$(dirname "$python")/protoc-gen-connectrpc"
[[ -x "$plugin" ]] || plugin="$(command -v protoc-gen-connectrpc)"
out="$(realpath "${1:-$root/src}")"
cd "$root/src"
"$python" -m grpc_tools.protoc -I . \
  --plugin=protoc-gen-connectrpc="$plugin" \
  --python_out="$out" --pyi_out="$out" \
  --connectrpc_out="$out" --connectrpc_opt=protobuf=google,io=async \
  sandlot/protocol/process.proto sandlot/protocol/filesystem.proto
