#!/usr/bin/env bash
# Install the tools that check deploy/kubernetes/ offline (tests/it/manifests.rs):
#   - kubectl with its built-in kustomize (`kubectl kustomize DIR` renders an overlay without a
#     cluster): used from PATH when present, else Debian's `kubernetes-client` package (apt);
#   - kubernetes-validate (PyPI), which checks rendered manifests against the Kubernetes OpenAPI
#     schemas it ships (no network, no cluster), pinned, into the git-ignored $ROOT/.tools/kube.
# Idempotent: does nothing when both are already there at the pinned version.
#
# Afterwards: .tools/kube/bin/kubernetes-validate (call it with PYTHONPATH=.tools/kube, as the
# test does; the wrapper script needs the --target folder on the path).
set -euo pipefail

KUBERNETES_VALIDATE_VERSION="1.37.0"
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
TARGET="$ROOT/.tools/kube"

if ! command -v kubectl >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-kube-tools: kubectl is missing and installing it needs root (apt-get install kubernetes-client)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
  fi
fi
if ! kubectl kustomize --help >/dev/null 2>&1; then
  echo "install-kube-tools: this kubectl has no 'kustomize' subcommand (needs kubectl >= 1.14)" >&2
  exit 1
fi

installed_version() {
  PYTHONPATH="$TARGET" "${PY}" -c \
    'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null
}

PY="${PYTHON:-$(command -v python3 || command -v python)}"
if [ "$(installed_version || true)" = "$KUBERNETES_VALIDATE_VERSION" ] && [ -x "$TARGET/bin/kubernetes-validate" ]; then
  exit 0
fi

rm -rf "$TARGET"
mkdir -p "$TARGET"
if ! out="$("$PY" -m pip install --quiet --disable-pip-version-check --no-input \
      --target "$TARGET" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" 2>&1)"; then
  echo "$out" >&2
  echo "install-kube-tools: pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed" >&2
  exit 1
fi
got="$(installed_version || true)"
if [ "$got" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  echo "install-kube-tools: expected kubernetes-validate $KUBERNETES_VALIDATE_VERSION in $TARGET, got '${got:-nothing}'" >&2
  exit 1
fi
