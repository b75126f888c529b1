#!/usr/bin/env bash
# Install grpcio-tools (PyPI), pinned, into the git-ignored $ROOT/.tools/grpc: the Python side of
# the Authorizer API example (examples/authorizer-python/), whose stubs tests/it/authorizer_api.rs
# generates from proto/ with `python -m grpc_tools.protoc` and runs against the real binary.
# grpcio-tools brings grpcio and protobuf, which the generated stubs import.
# Idempotent: does nothing when the pinned version is already there.
#
# Afterwards: PYTHONPATH=.tools/grpc python3 -m grpc_tools.protoc …
set -euo pipefail

GRPCIO_TOOLS_VERSION="1.85.1"
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
TARGET="$ROOT/.tools/grpc"
PY="${PYTHON:-$(command -v python3 || command -v python)}"

installed_version() {
  PYTHONPATH="$TARGET" "$PY" -c \
    'import importlib.metadata as m; print(m.version("grpcio-tools"))' 2>/dev/null
}

if [ "$(installed_version || true)" = "$GRPCIO_TOOLS_VERSION" ]; then
  exit 0
fi

rm -rf "$TARGET"
mkdir -p "$TARGET"
if ! out="$("$PY" -m pip install --quiet --disable-pip-version-check --no-input \
      --target "$TARGET" "grpcio-tools==$GRPCIO_TOOLS_VERSION" 2>&1)"; then
  echo "$out" >&2
  echo "install-grpcio-tools: pip install grpcio-tools==$GRPCIO_TOOLS_VERSION failed" >&2
  exit 1
fi
echo "install-grpcio-tools: grpcio-tools $(installed_version) in $TARGET"
