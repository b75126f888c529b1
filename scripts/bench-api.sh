#!/usr/bin/env bash
# The Authorizer API's load run over gRPC (BENCHMARKS.md, "Authorizer API"): the real oidc-provider
# and the release `cedargate serve` with the example policies, on loopback; then the example
# client's load mode, batch and single calls interleaved, each printing one JSON line.
#   ./scripts/bench-api.sh [--seconds S] [--rounds N] [--concurrency C] [--log off|file]
# Needs node with idp/node_modules (scripts/install-idp.sh). Builds the release binary and client.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=5 rounds=2 concurrency=4 log=off
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

cargo build --release --quiet --bin cedargate --example authorizer-filter
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Ports of their own, so that a demo on the default ones can keep running.
idp_port=19400 grpc=127.0.0.1:19391 admin=127.0.0.1:19392
issuer=http://127.0.0.1:$idp_port
node idp/idp.mjs --port "$idp_port" --keys idp/keys/demo-keys.json >"$work/idp.log" 2>&1 &
pids+=($!)

case "$log" in
  off) output="output: off" ;;
  file) output="output: file
  path: $work/decisions.jsonl" ;;
  *) echo "--log is off or file" >&2; exit 2 ;;
esac
# The example config with this run's ports, issuer and decision log.
sed -e "s#http://127.0.0.1:9400#$issuer#" \
    -e "s#grpc: 127.0.0.1:9191#grpc: $grpc#" \
    -e "s#admin: 127.0.0.1:9192#admin: $admin#" \
    -e "s#policy_dir: authorizer-policies#policy_dir: $PWD/examples/authorizer-policies#" \
    examples/authorizer-cedargate.yaml >"$work/cedargate.yaml"
python3 - "$work/cedargate.yaml" "$output" <<'EOF'
import re, sys
path, output = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r"\n  output: stdout", "\n  " + output, text)
open(path, "w").write(text)
EOF

wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 300); do
    if eval "$check" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$what did not come up" >&2
  exit 1
}
wait_for "the IdP" "curl -sf $issuer/.well-known/openid-configuration"
target/release/cedargate serve -c "$work/cedargate.yaml" >"$work/cedargate.log" 2>&1 &
pids+=($!)
wait_for "cedargate" "curl -sf http://$admin/readyz"

CEDARGATE_TOKEN=$(node idp/get-token.mjs --issuer "$issuer" --client-credentials \
  --client orders-service --scope orders:read)
export CEDARGATE_TOKEN
for round in $(seq 1 "$rounds"); do
  for mode in batch single; do
    echo "round $round: $(target/release/examples/authorizer-filter --addr "http://$grpc" \
      --load "$seconds" --mode "$mode" --concurrency "$concurrency")"
  done
done
if [ "$log" = file ]; then
  echo "records: $(wc -l <"$work/decisions.jsonl")"
  curl -s "http://$admin/metrics" | grep '^cedargate_decision_log_records_dropped_total' || true
fi
