#!/usr/bin/env bash
# One command for every side-by-side benchmark of whet against its Python peers.
#
#   bash bench/run.sh                      # setup, release build, all comparisons, RESULTS.md
#   bash bench/run.sh --only augment,train # a subset (harness options pass through)
#   WHET_BENCH_APPEND=1 bash bench/run.sh --only cnn   # re-measure one section, keep the rest
#   bash bench/run.sh --rows 1000000 --repeats 3 --tabular-repeats 1   # a quicker, smaller run
#
# Environment:
#   CARGO_TARGET_DIR        where the release build goes (default $HOME/.cache/whet-target-bench)
#   WHET_BENCH_SKIP_BUILD=1 reuse the binaries already built there
#   WHET_BENCH_FEATURES     cargo features of whet-bench (default "tabular"; "" builds without
#                           polars, and the whet tabular figures are then missing)
#   WHET_BENCH_NOTES        a Markdown file appended to RESULTS.md under "Notes"
#   WHET_BENCH_APPEND=1     merge this run into the committed bench/RESULTS.jsonl instead of
#                           replacing it: the sections it measured replace the old ones, the
#                           others are kept (report.py says which run measured what, and when),
#                           and so are the Notes of the old RESULTS.md (WHET_BENCH_NOTES is
#                           added after them)
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
raws=("$out/raw.jsonl")
notes="${WHET_BENCH_NOTES:-}"
if [[ "${WHET_BENCH_APPEND:-0}" == 1 && -f "$here/RESULTS.jsonl" ]]; then
    cp "$here/RESULTS.jsonl" "$out/previous.jsonl"
    raws=("$out/previous.jsonl" "$out/raw.jsonl")
    # Keep the old report's Notes (everything after its "## Notes" heading), then the new ones.
    awk '/^## Notes$/ { f = 1; next } f' "$here/RESULTS.md" > "$out/notes.md" 2>/dev/null || true
    if [[ -n "$notes" && -f "$notes" ]]; then
        printf '\n' >> "$out/notes.md"
        cat "$notes" >> "$out/notes.md"
    fi
    [[ -s "$out/notes.md" ]] && notes="$out/notes.md"
fi
"$py" "$here/py/report.py" "${raws[@]}" --out "$here/RESULTS.md" \
    --notes "$notes" --jsonl "$here/RESULTS.jsonl"
echo "run: wrote bench/RESULTS.md (raw records: bench/RESULTS.jsonl, $out)"
