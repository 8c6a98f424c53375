#!/usr/bin/env bash
# The README's main job (pipelines/mnist-ablation.yaml: 8 variants x 3 seeds = 24 cells) run three
# ways on this machine, measured whole with farm-bench, and written to bench/CLUSTER.md:
#   1. `whet ablate` with --jobs 1 (one process, the cells on its thread pool),
#   2. with --jobs 2 (two worker processes, one thread each),
#   3. through a local single-node Slurm (tests/slurm/cluster.sh; root): `--launcher slurm
#      --slurm cpus=1`, so two cells at once on 2 cores, like --jobs 2.
# Ratios come from one farm-bench call each (A and B alternate, ratio pair by pair), so a drifting
# machine does not skew them. The Slurm overhead per cell is (Slurm wall - --jobs 2 wall) / cells
# x 2 (two cells run at once): the submission, scheduling and polling cost a cell pays.
#
# Usage: bash bench/cluster.sh [RUNS]   (default 3 runs per command; needs farm-bench on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/whet-target}"
# The same build as the tests (one feature set: no second polars build).
cargo build -q --workspace --tests
WHET="$CARGO_TARGET_DIR/debug/whet"
RUN=pipelines/mnist-ablation.yaml
WORK="$(mktemp -d)"
export WHET_CACHE_DIR="$WORK/cache"
CELLS=24

log="$WORK/bench.log"
echo "bench/cluster.sh: work folder $WORK" >&2

# --jobs 2 against --jobs 1.
farm-bench -n "$RUNS" --timeout 1800 \
    --vs "$WHET --quiet ablate $RUN --out $WORK/j1 --fresh --jobs 1" \
    -- "$WHET" --quiet ablate "$RUN" --out "$WORK/j2" --fresh --jobs 2 | tee "$WORK/jobs.txt"

# Slurm against --jobs 2.
tests/slurm/cluster.sh install >&2
eval "$(tests/slurm/cluster.sh start "$WORK/slurm")"
trap 'tests/slurm/cluster.sh stop "$WORK/slurm" >&2' EXIT
farm-bench -n "$RUNS" --timeout 1800 \
    --vs "$WHET --quiet ablate $RUN --out $WORK/j2b --fresh --jobs 2" \
    -- "$WHET" --quiet ablate "$RUN" --out "$WORK/s" --fresh --launcher slurm --slurm cpus=1 \
    | tee "$WORK/slurm.txt"

# The same numbers every way (timing columns aside).
strip() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "train_seconds") t = i }
             { $t = ""; print }' OFS=, "$1/ablation.csv" | sort
}
same="yes"
for d in j2 s; do
    if ! diff -q <(strip "$WORK/j1") <(strip "$WORK/$d") >/dev/null; then same="NO ($d differs)"; fi
done

# Medians from farm-bench's tables: `NAME min median max`.
median() { awk -v k="$2" '$0 ~ "^"k" " { print $(NF-1) }' "$1" | tail -1; }
jobs_ratio="$(median "$WORK/jobs.txt" 'A/B wall')"
slurm_wall="$(median "$WORK/slurm.txt" 'A wall s')"
local_wall="$(median "$WORK/slurm.txt" 'B wall s')"
slurm_ratio="$(median "$WORK/slurm.txt" 'A/B wall')"
overhead="$(awk -v s="$slurm_wall" -v l="$local_wall" -v c="$CELLS" 'BEGIN { printf "%.2f", (s - l) / c * 2 }')"
{
    echo "# whet ablate: --jobs and Slurm on this machine"
    echo
    echo "Produced by \`bash bench/cluster.sh\` ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD),"
    echo "$(nproc) cores). The main job: \`$RUN\`, $CELLS cells; $RUNS runs per command, paired."
    echo "Results identical to --jobs 1 (ablation.csv without train_seconds): $same."
    echo
    echo "- --jobs 2 / --jobs 1 wall time: **$jobs_ratio** (median of the paired ratios; above 1 = slower)."
    echo "- Slurm array / --jobs 2 wall time: **$slurm_ratio**; overhead per cell (submission to"
    echo "  result, two cells at once): **$overhead s** = (Slurm wall - --jobs 2 wall) / $CELLS x 2."
    echo
    echo "## --jobs 2 (A) vs --jobs 1 (B)"
    echo
    echo '```'
    cat "$WORK/jobs.txt"
    echo '```'
    echo
    echo "## Slurm array, 2 cells at once (A) vs --jobs 2 (B)"
    echo
    echo '```'
    cat "$WORK/slurm.txt"
    echo '```'
} > bench/CLUSTER.md
echo "bench/cluster.sh: wrote bench/CLUSTER.md" >&2
rm -f "$log"
