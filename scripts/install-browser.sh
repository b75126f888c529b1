#!/usr/bin/env bash
# Install what the browser single sign-on test (tests/browser/sso_login.py, run by
# tests/it/browser_sso.rs) needs: headless Chromium and its driver from Debian's packages, and
# Selenium from PyPI (pinned) into $ROOT/.tools/browser. Idempotent.
#
# Selenium is given both paths (/usr/bin/chromium, /usr/bin/chromedriver), so it never tries to
# download a driver or a browser (which would fail on a machine that reaches only the registries).
set -euo pipefail

SELENIUM_VERSION="4.51.0"
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
TARGET="$ROOT/.tools/browser"

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-browser: chromium and chromium-driver are missing; as root: apt-get install chromium chromium-driver" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

PY="${PYTHON:-$(command -v python3 || command -v python)}"
installed() {
  PYTHONPATH="$TARGET" "$PY" -c "import selenium, sys; sys.exit(selenium.__version__ != '$SELENIUM_VERSION')" 2>/dev/null
}
if ! installed; then
  rm -rf "$TARGET"
  mkdir -p "$TARGET"
  if ! out="$("$PY" -m pip install --quiet --disable-pip-version-check --no-input \
        --target "$TARGET" "selenium==$SELENIUM_VERSION" 2>&1)"; then
    echo "$out" >&2
    echo "install-browser: pip install selenium==$SELENIUM_VERSION failed" >&2
    exit 1
  fi
  installed || { echo "install-browser: selenium $SELENIUM_VERSION is not importable from $TARGET" >&2; exit 1; }
fi
