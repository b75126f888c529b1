#!/usr/bin/env bash
# The system benchmark (see bench/run.py): Envoy alone, Envoy jwt_authn+rbac, the ext_authz floor
# and cedargate, interleaved; writes the table into BENCHMARKS.md.
#   ./scripts/bench-system.sh [--rounds N] [--seconds S] [--rate RPS] [--configs A,B,F,C,D] [--no-write]
# Needs wrk (apt-get install wrk) and oha (cargo install oha --locked).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-envoy.sh
cargo build --release --quiet --bin cedargate --example noop_authz
exec python3 bench/run.py "$@"
