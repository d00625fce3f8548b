#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECS seconds each (cargo-fuzz, nightly), then prints a
# table: inputs run, their rate, the corpus size, and the crashes found (none, or the run
# fails). Called by `make fuzz`; FUZZ_TARGETS picks some, FUZZ_RSS_MB bounds memory.
#
# The working corpus grows in tests/fuzz/corpus/TARGET (not in git), from the seeds in
# tests/fuzz/seeds/TARGET, captured from real servers by capture-seeds.py. A crash leaves its
# input in tests/fuzz/artifacts/TARGET; `cargo +nightly fuzz run --fuzz-dir tests/fuzz TARGET
# FILE` replays it. Each run's totals are appended to tests/fuzz/executions.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

secs="${FUZZ_SECS:-60}"
rss="${FUZZ_RSS_MB:-1024}"
targets="${FUZZ_TARGETS:-http_request http_response redis memcache smtp ini mix option_values api_bodies}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "make fuzz: skipped, no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "make fuzz: skipped, no cargo-fuzz (cargo install cargo-fuzz)"
    exit 0
fi

cargo +nightly fuzz build --fuzz-dir . -s none -O >/dev/null
rows=()
status=0
for target in $targets; do
    mkdir -p "corpus/$target"
    log="$(mktemp)"
    if cargo +nightly fuzz run --fuzz-dir . -s none -O "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$secs" -rss_limit_mb="$rss" -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1; then
        result="no crash"
    else
        result="FAILED (see tests/fuzz/artifacts/$target)"
        status=1
        tail -40 "$log"
    fi
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    corpus="$(find "corpus/$target" -type f | wc -l)"
    rows+=("$(printf '| %-14s | %12s | %9s | %7s | %s |' "$target" "${runs:-?}" "${rate:-?}" "$corpus" "$result")")
    printf '%s %s %s %s\n' "$(date -u +%FT%TZ)" "$target" "${runs:-0}" "$secs" >>executions.log
    rm -f "$log"
done
echo
echo "| target         |       inputs |  inputs/s |  corpus | result |"
echo "|----------------|--------------|-----------|---------|--------|"
printf '%s\n' "${rows[@]}"
exit "$status"
