#!/usr/bin/env bash
# The cedargate demo: Envoy + a real OpenID provider + cedargate + an echo upstream, on loopback.
#
#   ./scripts/demo.sh          install what is missing, build, start everything, walk through a
#                              short tour (tokens, then a browser login: single sign-on through
#                              Envoy, headless Chromium when it can be installed), then stay up
#                              with copy-paste curl lines and a URL to open (Ctrl-C stops)
#   ./scripts/demo.sh --down   the same tour, then tear everything down (used by CI-style runs)
#
# Ports: Envoy 10000 (admin 9901), cedargate 9191 (admin 9192), IdP 9400, upstream 8081/8082.
# Logs and decision records: .demo/ (git-ignored).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
DOWN=0
[ "${1:-}" = "--down" ] && DOWN=1

DEMO="$ROOT/.demo"
ENVOY="$ROOT/.tools/envoy/envoy/_bin/envoy"
ISSUER="http://127.0.0.1:9400"
PIDS=()

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for port in 10000 9901 9191 9192 9400 8081 8082; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: port $port is already in use (another demo running?)" >&2
    exit 1
  fi
done

bold "1/5 installing Envoy and oidc-provider (skipped when present), building cedargate"
bash scripts/install-envoy.sh
bash scripts/install-idp.sh
cargo build --quiet
rm -rf "$DEMO" && mkdir -p "$DEMO"

# Browser single sign-on (docs/identity-browser-sso.md): the example config plus an `sso` section
# with a fresh cookie key, logging people in at the demo IdP's `cedargate-sso` client.
python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())' >"$DEMO/sso-cookie.key"
printf 'cedargate-sso-secret\n' >"$DEMO/sso-client-secret"
sed "s#^policy_dir: policies#policy_dir: $ROOT/policies#" cedargate.yaml >"$DEMO/cedargate.yaml"
cat >>"$DEMO/cedargate.yaml" <<EOF

sso:
  issuer: demo-idp
  client_id: cedargate-sso
  client_secret_file: $DEMO/sso-client-secret
  refresh: true
  browser_paths: [/orders, /reports, /payments]
  allowed_return_hosts: [127.0.0.1]
  post_logout_url: /orders/status
  cookie_keys:
    - { id: demo, file: $DEMO/sso-cookie.key }
EOF

wait_for() { # url, name
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo: $2 did not come up; see $DEMO/*.log" >&2
  exit 1
}

bold "2/5 starting the IdP, the upstream, cedargate and Envoy"
node idp/idp.mjs --port 9400 --keys idp/keys/demo-keys.json >"$DEMO/idp.log" 2>&1 &
PIDS+=($!)
node upstream/upstream.mjs --port 8081 --grpc-port 8082 >"$DEMO/upstream.log" 2>&1 &
PIDS+=($!)
wait_for "$ISSUER/.well-known/openid-configuration" "the IdP"
./target/debug/cedargate serve -c "$DEMO/cedargate.yaml" >"$DEMO/decisions.jsonl" 2>"$DEMO/cedargate.log" &
PIDS+=($!)
wait_for "http://127.0.0.1:9192/readyz" "cedargate"
"$ENVOY" -c envoy/envoy.yaml --base-id 7 --concurrency 1 --log-level warn >"$DEMO/envoy.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:9901/ready" "Envoy"
echo "  IdP $ISSUER · cedargate 127.0.0.1:9191 (admin :9192) · Envoy http://127.0.0.1:10000"

bold "3/5 getting tokens from the IdP (authorization code + PKCE for people, client_credentials for services)"
ALICE="$(node idp/get-token.mjs --issuer "$ISSUER" --user alice)"
MALLORY="$(node idp/get-token.mjs --issuer "$ISSUER" --user mallory)"
SERVICE="$(node idp/get-token.mjs --issuer "$ISSUER" --client-credentials --client orders-service --scope 'orders:read orders:write')"
echo "  alice (groups admins, staff), mallory (no groups), orders-service (client_credentials)"

last_record() {
  # The newest decision record, condensed: decision, status, reason, principal, action, policies.
  sleep 0.2
  tail -n 1 "$DEMO/decisions.jsonl" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print("    decision record: %s %s reason=%s principal=%s action=%s policies=%s" % (
    r["decision"], r["status"], r["reason"], r.get("principal"), r.get("action"),
    [p["id"] for p in r["policies"]]))'
}
show() { # description, curl args...
  local what="$1"; shift
  local code
  code="$(curl -s -o "$DEMO/last-body" -w '%{http_code}' "$@")"
  printf '  %-58s -> HTTP %s\n' "$what" "$code"
  last_record
}

bold "4/5 the tour"
show "alice GET /orders/1 (admin: allowed)" -H "Authorization: Bearer $ALICE" http://127.0.0.1:10000/orders/1
echo "    upstream saw: x-cedargate-principal=$(python3 -c 'import json;print(json.load(open("'"$DEMO"'/last-body"))["headers"].get("x-cedargate-principal"))')"
show "mallory GET /orders/1 (no group: denied)" -H "Authorization: Bearer $MALLORY" http://127.0.0.1:10000/orders/1
echo "    body: $(cat "$DEMO/last-body")"
show "no token GET /orders/1 (unauthenticated)" http://127.0.0.1:10000/orders/1
show "no token GET /orders/status (public by policy)" http://127.0.0.1:10000/orders/status
show "garbage token GET /orders/1 (invalid_token)" -H "Authorization: Bearer not.a.jwt" http://127.0.0.1:10000/orders/1
show "orders-service POST /payments (service policy)" -X POST -H "Authorization: Bearer $SERVICE" http://127.0.0.1:10000/payments
show "orders-service DELETE /orders/1 (forbid for services)" -X DELETE -H "Authorization: Bearer $SERVICE" http://127.0.0.1:10000/orders/1

bold "5/5 a browser login: single sign-on through Envoy (headless Chromium, Selenium)"
echo "  GET /orders/1 with Accept: text/html, no credential -> HTTP $(curl -s -o /dev/null -w '%{http_code} to %{redirect_url}' -H 'Accept: text/html' http://127.0.0.1:10000/orders/1 | cut -c1-80)..."
if bash scripts/install-browser.sh >"$DEMO/install-browser.log" 2>&1; then
  PYTHONPATH="$ROOT/.tools/browser" python3 tests/browser/sso_login.py --base http://127.0.0.1:10000 \
    --idp "$ISSUER" --user bob --page /orders/1 --refused /reports/daily \
    --screenshot "$DEMO/logged-in.png" | python3 -c '
import json, sys
say = {"login": "logged in at the IdP as {user}, back on {url}",
       "reload": "reloaded {url}: no new login (the session cookie)",
       "refused": "{url}: 403, the policies say no",
       "logout": "logged out at the IdP, back on {url}",
       "login_again": "the page sends the browser to the IdP login again ({url})",
       "done": "browser tour took {seconds} s"}
for line in sys.stdin:
    step = json.loads(line)
    if "failed" in step:
        print("  FAILED at %s: %s (%s)" % (step["step"], step["failed"], step["url"]))
        sys.exit(1)
    print("  " + say[step["step"]].format(**step))'
  echo "  screenshot of the logged-in page: .demo/logged-in.png"
else
  echo "  (headless login skipped: Chromium/Selenium could not be installed, see .demo/install-browser.log)"
fi

if [ "$DOWN" = 1 ]; then
  bold "done: tearing down"
  exit 0
fi

bold "Everything is up. Try it yourself (tokens are valid for an hour):"
cat <<EOF
  export ALICE='$ALICE'
  curl -i -H "Authorization: Bearer \$ALICE" http://127.0.0.1:10000/orders/1
  curl -i http://127.0.0.1:10000/orders/1
  TOKEN=\$(node idp/get-token.mjs --issuer $ISSUER --user bob)
  curl -i -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:10000/payments/7
  tail -f .demo/decisions.jsonl          # one JSON decision record per request
In a browser: open http://127.0.0.1:10000/orders/1 and log in as alice, bob, carol or mallory
(any password); http://127.0.0.1:10000/_cedargate/logout logs out.
  curl -s http://127.0.0.1:9192/readyz   # readiness, per-issuer key status
Press Ctrl-C to stop everything.
EOF
wait
