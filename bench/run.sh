#!/usr/bin/env bash
# One command for every side-by-side benchmark of whet against its Python peers.
#
#   bash bench/run.sh                      # setup, release build, all comparisons, RESULTS.md
#   bash bench/run.sh --only augment,train # a subset (harness options pass through)
#   bash bench/run.sh --rows 1000000 --repeats 3 --tabular-repeats 1   # a quicker, smaller run
#
# Environment:
#   CARGO_TARGET_DIR        where the release build goes (default $HOME/.cache/whet-target-bench)
#   WHET_BENCH_SKIP_BUILD=1 reuse the binaries already built there
#   WHET_BENCH_FEATURES     cargo features of whet-bench (default "tabular"; "" builds without
#                           polars, and the whet tabular figures are then missing)
#   WHET_BENCH_NOTES        a Markdown file appended to RESULTS.md under "Notes"
#
# Writes bench/RESULTS.md and bench/RESULTS.jsonl (committed) and bench/out/<run>/ (ignored).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cd "$repo"

bash "$here/setup.sh"
py="$here/.venv/bin/python"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/whet-target-bench}"
features="${WHET_BENCH_FEATURES-tabular}"
whet_bench="$CARGO_TARGET_DIR/release/whet-bench"
whet="$CARGO_TARGET_DIR/release/whet"

if [[ "${WHET_BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    echo "run: cargo build --release -p whet-bench --features '$features'"
    if ! cargo build --release -p whet-bench --features "$features"; then
        echo "run: whet-bench did not build; measuring the peers only" >&2
        whet_bench=""
    fi
    # The CLI shares every dependency with whet-bench, so this second build is short.
    echo "run: cargo build --release -p whet-cli --bin whet"
    if ! cargo build --release -p whet-cli --bin whet; then
        echo "run: whet-cli did not build; skipping the end-to-end job" >&2
        whet=""
    fi
fi
[[ -n "$whet_bench" && -x "$whet_bench" ]] || whet_bench=""
[[ -n "$whet" && -x "$whet" ]] || whet=""

run_id="$(date -u +%Y%m%dT%H%M%SZ)"
out="$here/out/$run_id"
mkdir -p "$out"
"$py" "$here/py/harness.py" --out "$out" --whet-bench "$whet_bench" --whet "$whet" "$@"
"$py" "$here/py/report.py" "$out/raw.jsonl" --out "$here/RESULTS.md" \
    --notes "${WHET_BENCH_NOTES:-}"
cp "$out/raw.jsonl" "$here/RESULTS.jsonl"
echo "run: wrote bench/RESULTS.md (raw records: bench/RESULTS.jsonl, $out)"
