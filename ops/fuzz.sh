#!/usr/bin/env bash
# Fuzzes every target in fuzz/ for N seconds each (default 60), one after another with one
# job each, and prints the executions per target. Exits non-zero if any target crashed
# (the input is left in fuzz/artifacts/<target>/).
#
#   ops/fuzz.sh [seconds-per-target]
#   FUZZ_TARGETS="names tasks" ops/fuzz.sh 30   # only some targets
#   FUZZ_SANITIZER=none ops/fuzz.sh             # no AddressSanitizer (faster)
#   FUZZ_CMIN=1 ops/fuzz.sh                     # minimise each corpus afterwards
set -euo pipefail

secs="${1:-60}"
cd "$(dirname "$0")/.."

# cargo-fuzz needs nightly flags; stable rustc accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# AddressSanitizer when its runtime ships with the toolchain, else none (libs/hosting has
# no unsafe code, so a sanitizer adds little but cost).
sysroot_lib="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/lib"
if [[ -z "${FUZZ_SANITIZER:-}" ]]; then
  if compgen -G "$sysroot_lib/*rt.asan*" >/dev/null; then FUZZ_SANITIZER=address; else FUZZ_SANITIZER=none; fi
fi

targets="${FUZZ_TARGETS:-$(cd fuzz && cargo fuzz list)}"
logs=fuzz/artifacts/logs
mkdir -p "$logs"
cargo fuzz build --fuzz-dir fuzz -s "$FUZZ_SANITIZER" >/dev/null

failed=0
rows=()
for t in $targets; do
  echo "== $t: ${secs}s (sanitizer: $FUZZ_SANITIZER)" >&2
  status=ok
  # One job, no fork; -timeout turns a hang into a failure too.
  if ! cargo fuzz run --fuzz-dir fuzz -s "$FUZZ_SANITIZER" "$t" -- \
      -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$logs/$t.log" 2>&1; then
    status=CRASH
    failed=1
    tail -n 30 "$logs/$t.log" >&2
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -n 1)
  if [[ "${FUZZ_CMIN:-0}" == 1 && $status == ok ]]; then
    cargo fuzz cmin --fuzz-dir fuzz -s "$FUZZ_SANITIZER" "$t" >>"$logs/$t.log" 2>&1
  fi
  files=$(find "fuzz/corpus/$t" -type f | wc -l)
  rows+=("$(printf '%-12s %12s %8s %8s  %s' "$t" "${runs:-?}" "$secs" "$files" "$status")")
done

printf '%-12s %12s %8s %8s  %s\n' target executions seconds corpus status
printf '%s\n' "${rows[@]}"
exit "$failed"
