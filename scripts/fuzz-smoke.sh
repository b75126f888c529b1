#!/usr/bin/env bash
# Bounded fuzzing run: every cargo-fuzz target in fuzz/ for N seconds (default 20), seeded from
# fuzz/seeds/<target> (test fixtures), new inputs kept in a temporary folder (the seeds stay as
# committed). A crash stops the run with libFuzzer's report; the input is in fuzz/artifacts/.
# Not part of scripts/test.sh (the fuzz build takes minutes); `.ci/run` calls it after the tests.
# Usage: ./scripts/fuzz-smoke.sh [seconds-per-target]
#
# Toolchain: the stable toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes one unstable flag;
# no second toolchain needed), or `cargo +nightly` when FUZZ_TOOLCHAIN=nightly. Needs cargo-fuzz
# (cargo install cargo-fuzz --locked) and a C++ compiler (libFuzzer is built from source).
# Without cargo-fuzz it says so and exits 0 (skipped, not failed) unless FUZZ_REQUIRED=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-20}"
targets=(routes config record request token check_request)

skip() {
  if [ "${FUZZ_REQUIRED:-0}" = "1" ]; then
    echo "fuzz smoke failed: $1" >&2
    exit 1
  fi
  echo "fuzz smoke skipped: $1"
  exit 0
}

if [ "${FUZZ_TOOLCHAIN:-stable}" = "nightly" ]; then
  cargo=(cargo +nightly)
else
  cargo=(cargo)
  export RUSTC_BOOTSTRAP=1
fi
"${cargo[@]}" --version >/dev/null 2>&1 || skip "no ${FUZZ_TOOLCHAIN:-stable} toolchain"
"${cargo[@]}" fuzz --version >/dev/null 2>&1 ||
  skip "cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"

# Safe Rust only (unsafe_code is forbidden), so no sanitizer: libFuzzer finds panics, which is
# what these targets assert on. The build has its own folder under the repository's target/.
opts=(--sanitizer none --target-dir target/fuzz)
started=$(date +%s)
"${cargo[@]}" fuzz build "${opts[@]}"
echo "fuzz build: $(($(date +%s) - started)) s"
for target in "${targets[@]}"; do
  corpus="$(mktemp -d)"
  log="$(mktemp)"
  echo "==> fuzz ${target} for ${seconds}s"
  if "${cargo[@]}" fuzz run "${opts[@]}" "${target}" "${corpus}" "fuzz/seeds/${target}" -- \
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
echo "fuzz smoke: every target ran ${seconds}s without a crash ($(($(date +%s) - started)) s in all)"
