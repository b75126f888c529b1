#!/usr/bin/env bash
# Install the test IdP's (and upstream's) Node dependencies from the committed lockfile
# (idp/package-lock.json): oidc-provider (pinned) and ws. Idempotent: skips `npm ci` when
# idp/node_modules already matches the lockfile.
set -euo pipefail

ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
IDP="$ROOT/idp"
STAMP="$IDP/node_modules/.cedargate-lock.sha256"

command -v node >/dev/null || { echo "install-idp: node is required (>= 20)" >&2; exit 1; }
command -v npm >/dev/null || { echo "install-idp: npm is required" >&2; exit 1; }

want="$(sha256sum "$IDP/package-lock.json" | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
   && [ -f "$IDP/node_modules/oidc-provider/package.json" ] \
   && [ -f "$IDP/node_modules/ws/package.json" ]; then
  exit 0
fi

cd "$IDP"
if ! out="$(npm ci --no-audit --no-fund --loglevel=error 2>&1)"; then
  echo "$out" >&2
  echo "install-idp: npm ci failed in $IDP" >&2
  exit 1
fi
echo "$want" > "$STAMP"
