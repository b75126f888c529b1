#!/usr/bin/env bash
# Bounded fuzzing smoke run: every cargo-fuzz target in fuzz/ for N seconds (default 20), seeded
# from fuzz/seeds/<target> (test fixtures), new inputs kept in a temporary folder (the seeds stay
# as committed). A crash stops the run with libFuzzer's report; the input is in fuzz/artifacts/.
# Not part of scripts/test.sh: the fuzz build alone takes ~6 min on 2 cores.
# Usage: ./scripts/fuzz-smoke.sh [seconds-per-target]
# Needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz --locked); without them it
# says so and exits 0 (the step is skipped, not failed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-20}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz smoke skipped: no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz smoke skipped: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"
  exit 0
fi

# Safe Rust only (unsafe_code is forbidden), so no sanitizer: libFuzzer finds panics, which is
# what these targets assert on. The build shares the repository's target folder.
opts=(--sanitizer none --target-dir target/fuzz)
cargo +nightly fuzz build "${opts[@]}"
for target in routes config record request; do
  corpus="$(mktemp -d)"
  log="$(mktemp)"
  echo "==> fuzz ${target} for ${seconds}s"
  if cargo +nightly fuzz run "${opts[@]}" "${target}" "${corpus}" "fuzz/seeds/${target}" -- \
    -max_total_time="${seconds}" -print_final_stats=1 >"${log}" 2>&1; then
    status=0
  else
    status=$?
  fi
  grep -E "^(INFO: seed corpus)|stat::number_of_executed_units|panicked|SUMMARY|Test unit written" "${log}" || true
  rm -rf "${corpus}" "${log}"
  if [ "${status}" != "0" ]; then
    echo "fuzz ${target}: crash (exit ${status}); the input is in fuzz/artifacts/${target}/"
    exit 1
  fi
done
echo "fuzz smoke: every target ran ${seconds}s without a crash"
