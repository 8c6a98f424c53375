"""Turns a harness run (raw.jsonl) into bench/RESULTS.md.

    bench/.venv/bin/python bench/py/report.py bench/out/RUN/raw.jsonl --out bench/RESULTS.md

Several raw files can be given, oldest first: a later file's sections (matmul, train, cnn, augment,
tabular, e2e) replace the same sections of the earlier ones, and the others are kept, so a partial
run (`harness.py --only cnn`) can be merged into the committed results:

    bench/.venv/bin/python bench/py/report.py bench/RESULTS.jsonl bench/out/RUN/raw.jsonl \
        --out bench/RESULTS.md --jsonl bench/RESULTS.jsonl

(`WHET_BENCH_APPEND=1 bash bench/run.sh --only cnn` does this.) Every record remembers the run it
came from, and the report says which sections a later run measured, when, and under what load.

Ratios are always "whet / peer" on a speed (images/s, samples/s, GFLOP/s, 1/seconds), so a ratio
above 1 means whet is faster; memory ratios are whet's peak RSS / the peer's (below 1 = less).
Every figure is a median (of timed repeats inside one process, or of processes for tabular) and
shows the CPU that other processes used while it was measured (max over its repeats, in cores).
"""

import argparse
import json
import os
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402

OPS = ["hflip", "rotate", "resized_crop", "brightness_contrast", "gaussian_noise", "blur", "chain"]
PEERS_AUG = ["albumentations", "torchvision", "opencv"]


def fmt(v, digits=None):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if digits is not None:
        return f"{v:.{digits}f}"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def rfmt(r):
    return "—" if r is None else f"**{r:.2f}**"


def maxo(rec):
    o = rec.get("other_cores")
    if isinstance(o, list):
        return max(o) if o else None
    return o


def load(path):
    recs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                recs.append(json.loads(line))
    return recs


def section_of(rec):
    """The harness section a record belongs to (None for the per-run machine/config records)."""
    b = rec.get("bench")
    if b in ("machine", "config"):
        return None
    if rec.get("curve"):
        return "scaling"
    if b == "images":
        return "load"
    if b == "train":
        return "cnn" if rec.get("model") == "lenet" else "train"
    if b == "make_table":
        return "tabular"
    if b == "make-shards":
        return "stream"
    if b == "make-events":
        return "stream-table"
    if b == "e2e-peer":
        return "e2e"
    if b == "error":
        return (rec.get("label") or "").split(" ")[0] or "error"
    return b


def merge(paths):
    """Records of `paths` (oldest first), each tagged `_run`; a later file's sections replace
    the same sections of the earlier files. A run starts at each `machine` record (and at each
    file)."""
    out, run = [], -1
    for path in paths:
        new = load(path)
        if not new:
            continue
        if new[0].get("bench") != "machine":
            run += 1
        for r in new:
            if r.get("bench") == "machine":
                run += 1
            r["_run"] = run
        replaced = {section_of(r) for r in new} - {None}
        out = [r for r in out if section_of(r) not in replaced] + new
    # Drop the machine/config records of runs none of whose measurements are left.
    live = {r["_run"] for r in out if section_of(r) is not None}
    return [r for r in out if section_of(r) is not None or r["_run"] in live]


def runs_of(recs):
    return sorted({r.get("_run", 0) for r in recs})


def first_run(recs):
    runs = runs_of(recs)
    return [r for r in recs if r.get("_run", 0) == runs[0]] if runs else []


def window_loads(recs):
    others = []
    for r in recs:
        o = r.get("other_cores")
        if isinstance(o, list):
            others += [v for v in o if isinstance(v, (int, float))]
        elif isinstance(o, (int, float)):
            others.append(o)
    return others


def section_machine(recs, lines):
    m = next((r for r in recs if r["bench"] == "machine"), {})
    cfg = next((r for r in recs if r["bench"] == "config"), {})
    lines += [
        f"- Date: {m.get('date', '?')}; whet commit `{m.get('git_commit', '?')}`"
        + (" (with uncommitted changes in tracked files)" if m.get("git_dirty") else ""),
        f"- CPU: {m.get('cpu_model', '?')}, {m.get('cpus', '?')} logical CPUs, "
        f"{m.get('mem_total_kib', 0) / 2**20:.1f} GiB; flags: {', '.join(m.get('cpu_flags', []))}",
        f"- Kernel {m.get('kernel', '?')}; {m.get('rustc', '?')}; Python {m.get('python', '?')}",
        f"- Settings: {cfg.get('repeats', '?')} timed repeats per figure (median), at least "
        f"{cfg.get('min_time', '?')} s each; {cfg.get('tabular_repeats', '?')} processes per "
        f"tabular engine; {cfg.get('epochs', '?')} timed epochs after a warm-up epoch; a repeat "
        f"during which other processes used more than {cfg.get('max_other', '?')} cores was "
        f"retried up to {cfg.get('retries', '?')} times; seed {cfg.get('seed', '?')}.",
    ]
    if m.get("openblas_env_was_set"):
        lines.append(f"- Unset for the peers: {m['openblas_env_was_set']}")
    for run in runs_of(recs)[1:]:
        rr = [r for r in recs if r.get("_run", 0) == run]
        mr = next((r for r in rr if r["bench"] == "machine"), {})
        cr = next((r for r in rr if r["bench"] == "config"), {})
        sections = sorted({section_of(r) for r in rr} - {None, "error"})
        others = window_loads(rr)
        load = (
            f"other processes used a median of {common.median(others):.2f} cores and at most "
            f"{max(others):.2f} during its {len(others)} timed windows"
            if others
            else "no timed windows"
        )
        lines.append(
            f"- Merged from a later run: {', '.join(sections) or 'nothing'} measured "
            f"{mr.get('date', '?')}, whet commit `{mr.get('git_commit', '?')}`"
            + (" (with uncommitted changes in tracked files)" if mr.get("git_dirty") else "")
            + f"; timed epochs after a warm-up epoch: {cr.get('epochs', '?')}; a window above "
            f"{cr.get('max_other', '?')} cores was retried up to {cr.get('retries', '?')} times; "
            f"{load}."
        )
    versions = {}
    for r in recs:
        for k, v in (r.get("versions") or {}).items():
            versions.setdefault(k, v)
    if versions:
        lines.append(
            "- Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        )


def load_summary(recs, lines):
    others = window_loads(recs)
    if not others:
        return
    busy = sum(1 for o in others if o > 0.1)
    lines += [
        "",
        f"**Machine load during the measurements**: other processes used a median of "
        f"{common.median(others):.2f} cores and at most {max(others):.2f} "
        f"(of 2) during the {len(others)} timed windows; {busy} windows were above 0.1 core "
        f"even after retries. "
        + (
            "The machine was shared with other builds during this run, so absolute figures are "
            "low and noisy; the ratios compare runs made minutes apart under similar load, and "
            "are the figures to read."
            if busy > len(others) / 4
            else "The machine was mostly idle."
        ),
    ]


def section_matmul(recs, lines):
    mm = [r for r in recs if r["bench"] == "matmul"]
    if not mm:
        return
    lines += ["", "## Matrix multiply (fp32, 2048 x 2048): the machine's peak", ""]
    lines += ["| engine | threads | GFLOP/s (median) | first call | other cores |", "|---|---|---|---|---|"]
    for r in sorted(mm, key=lambda r: (r["threads"], r["engine"])):
        lines.append(
            f"| {r['engine']} | {r['threads']} | {fmt(r['gflops'])} | {fmt(r.get('first_gflops'))} "
            f"| {fmt(maxo(r))} |"
        )


def peak_gflops(recs, threads, run=None):
    """The best matmul GFLOP/s at `threads` (of run `run` only, when given)."""
    vals = [
        r["gflops"]
        for r in recs
        if r["bench"] == "matmul"
        and r["threads"] == threads
        and (run is None or r.get("_run", 0) == run)
    ]
    return max(vals) if vals else None


PEERS = {"torch": "PyTorch", "numpy": "NumPy"}


def placement_state(ns):
    """The host placement one round trip of `whet-bench placement` shows: "shared" (below
    45 ns: seemingly one core's two hardware threads), "near" (below 200 ns: two cores sharing
    a cache), "far" (below 1 us), or None (microseconds: the probe's two threads took turns on
    one core, which says nothing of the placement)."""
    if ns is None or ns >= 1000:
        return None
    return "shared" if ns < 45 else "near" if ns < 200 else "far"


def placement_states(rec):
    """The placement states seen around and (for whet, after each timed epoch) during a run."""
    xs = list(rec.get("placement_ns") or []) + list(rec.get("core_round_trip_ns") or [])
    return sorted({placement_state(x) for x in xs} - {None})


def placement_mark(by, t, peer):
    """A footnote's text when whet's and `peer`'s runs at `t` threads were not all measured in
    one placement state (their ratio then says where the host put the virtual CPUs as much as
    what the code does), else None."""
    w, p = by.get(("whet", t)), by.get((peer, t))
    if t < 2 or not w or not p:
        return None
    ws, ps = placement_states(w), placement_states(p)
    if not ws or not ps or (len(ws) == 1 and ws == ps):
        return None
    return (f"{t} thr.: whet {', '.join(ws)}, {PEERS.get(peer, peer)} {', '.join(ps)}")


def placement_footnote(marks):
    if not marks:
        return []
    return [
        "",
        "† The two runs of this ratio were not all measured in one placement state (the "
        "states their probes read: " + "; ".join(marks) + "), so it compares where the host "
        "put the virtual CPUs as much as the code; see the placement readings above.",
    ]


def placement_sentence(by, threads, engines):
    """The placement readings of every multi-threaded run of `engines`, as one paragraph."""

    def ns(xs, sep):
        return sep.join("—" if x is None else f"{x:.0f}" for x in xs)

    placed = [
        (t, eng, by[(eng, t)])
        for t in threads
        if t >= 2
        for eng in engines
        if by.get((eng, t)) and by[(eng, t)].get("placement_ns")
    ]
    if not placed:
        return []
    w_rts = {t: r.get("core_round_trip_ns") for t, eng, r in placed if eng == "whet"}
    return [
        "",
        "Where the host put the virtual CPUs: the round trip of a value between two threads "
        "through one cache line (`whet-bench placement`), just before / just after each "
        "multi-threaded run, and for whet after each timed epoch too. About 65 ns means the "
        "two cores share a cache; about 330 ns, far apart, where a multi-threaded epoch that "
        "passes data between the cores slows by 1.7-2.4x; about 29 ns, seemingly one core's "
        "two hardware threads, where it slows by about 1.7x. 1-thread epochs do not change. "
        + "; ".join(
            f"{eng} {t} thr.: {ns(r['placement_ns'], '/')} ns"
            + (f" (epochs: {ns(w_rts[t], ', ')})" if eng == "whet" and w_rts.get(t) else "")
            for t, eng, r in placed
        )
        + ".",
    ]


def section_train(recs, lines):
    tr = [r for r in recs if r["bench"] == "train" and r.get("model", "mlp") == "mlp"]
    if not tr:
        return
    by = {(r["engine"], r["threads"]): r for r in tr}
    threads = sorted({r["threads"] for r in tr})
    lines += [
        "",
        "## Training: 784-256-128-10 ReLU, batch 128, SGD momentum, one epoch of 60,000 samples",
        "",
        "| threads | engine | samples/s | epoch s (median) | first epoch s | GFLOP/s | % of matmul peak | other cores |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in threads:
        peak = peak_gflops(recs, t)
        for eng in ["whet", "torch", "numpy"]:
            r = by.get((eng, t))
            if not r:
                lines.append(f"| {t} | {eng} | — | — | — | — | — | — |")
                continue
            pct = None if not peak else 100 * r["gflops"] / peak
            lines.append(
                f"| {t} | {eng} | {fmt(r['samples_per_s'])} | {fmt(r['median_epoch_s'], 3)} | "
                f"{fmt(r['first_epoch_s'], 3)} | {fmt(r['gflops'])} | {fmt(pct)} | {fmt(maxo(r))} |"
            )
    paired = [
        (t, by[("whet", t)]["paired_peak"])
        for t in threads
        if by.get(("whet", t)) and by[("whet", t)].get("paired_peak")
    ]
    if paired:
        lines += [
            "",
            "The % of matmul peak above divides by the best matmul of the run, measured minutes "
            "apart from the training on a machine whose speed drifts. Paired instead: whet's "
            "2048² matmul timed for 0.3 s right after each timed epoch (`whet-bench train "
            "--paired-peak`), each epoch's GFLOP/s over it, median of the pairs: "
            + "; ".join(
                f"{t} thr. **{fmt(p['pct_of_paired_peak'])} %** (pairs "
                + ", ".join(fmt(x) for x in p["pct_of_paired_peak_runs"])
                + f"; matmul {', '.join(fmt(g) for g in p['matmul_gflops_after_epoch'])} GFLOP/s)"
                for t, p in paired
            )
            + ".",
        ]
    lines += placement_sentence(by, threads, ["whet", "torch", "numpy"])
    lines += ["", "| threads | whet / PyTorch | whet / NumPy |", "|---|---|---|"]
    marked = []
    for t in threads:
        w = by.get(("whet", t))
        ws = w["samples_per_s"] if w else None
        cells = []
        for peer in ["torch", "numpy"]:
            p = by.get((peer, t))
            mark = placement_mark(by, t, peer)
            marked += [mark] if mark else []
            cells.append(rfmt(ratio(ws, p and p["samples_per_s"])) + (" †" if mark else ""))
        lines.append(f"| {t} | {cells[0]} | {cells[1]} |")
    lines += placement_footnote(marked)


def section_cnn(recs, lines):
    """The LeNet-5-like CNN (`--model lenet`): whet against PyTorch, laid out as the MLP's."""
    tr = [r for r in recs if r["bench"] == "train" and r.get("model") == "lenet"]
    if not tr:
        return
    by = {(r["engine"], r["threads"]): r for r in tr}
    threads = sorted({r["threads"] for r in tr})
    flops = next((r.get("flops_per_sample") for r in tr if r.get("flops_per_sample")), None)
    lines += [
        "",
        "## Training: LeNet-5-like CNN (28×28, batch 128)",
        "",
        "The same 60,000 samples read as 28x28x1 images; conv 6@5x5 (same padding) → ReLU → max "
        "pool 2 → conv 16@5x5 (valid) → ReLU → max pool 2 → dense 120 → dense 84 → 10, softmax "
        "cross-entropy, SGD momentum 0.9, lr 0.01, batch 128 (whet: `whet-bench train --model "
        "lenet`, im2col + GEMM; PyTorch: `nn.Conv2d`/`nn.MaxPool2d`/`nn.Linear`, "
        "`train.py --model lenet`). GFLOP/s from the exact count"
        + (f" of {flops:,} FLOP per sample" if flops else "")
        + ": forward, weight gradients and the input gradients of every layer with weights but "
        "the first; pooling not counted.",
    ]
    runs = sorted({r.get("_run", 0) for r in tr})
    if runs != [runs_of(recs)[0]]:
        dates = [
            next((m.get("date", "?") for m in recs
                  if m["bench"] == "machine" and m.get("_run", 0) == run), "?")
            for run in runs
        ]
        lines[-1] += f" Measured in a later run ({', '.join(dates)}) than the sections above."
    others = window_loads(tr)
    busy = sum(1 for o in others if o > 0.1)
    if busy > len(others) / 4:
        lines[-1] += (
            f" **Other processes used more than 0.1 core in {busy} of the {len(others)} timed "
            f"windows (median {common.median(others):.2f} cores)**, so these figures are slowed "
            "by the machine's other work and the ratios are rough."
        )
    if any(peak_gflops(recs, r["threads"], r.get("_run", 0)) is None for r in tr):
        lines[-1] += (" The % of the matmul peak needs a matmul measured in the same run "
                      "(`--only cnn,matmul`); — where there was none.")
    lines += [
        "",
        "| threads | engine | samples/s | epoch s (median) | first epoch s | GFLOP/s | % of matmul peak | other cores |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in threads:
        for eng in ["whet", "torch"]:
            r = by.get((eng, t))
            if not r:
                lines.append(f"| {t} | {eng} | — | — | — | — | — | — |")
                continue
            # The peak only from a matmul measured in the same run (same machine state).
            peak = peak_gflops(recs, t, r.get("_run", 0))
            pct = None if not peak else 100 * r["gflops"] / peak
            lines.append(
                f"| {t} | {eng} | {fmt(r['samples_per_s'])} | {fmt(r['median_epoch_s'], 3)} | "
                f"{fmt(r['first_epoch_s'], 3)} | {fmt(r['gflops'])} | {fmt(pct)} | {fmt(maxo(r))} |"
            )
    lines += placement_sentence(by, threads, ["whet", "torch"])
    lines += [
        "",
        "| threads | whet samples/s | PyTorch samples/s | whet / PyTorch |",
        "|---|---|---|---|",
    ]
    marked = []
    for t in threads:
        w = by.get(("whet", t))
        pt = by.get(("torch", t))
        ws = w and w["samples_per_s"]
        ps = pt and pt["samples_per_s"]
        mark = placement_mark(by, t, "torch")
        marked += [mark] if mark else []
        cell = rfmt(ratio(ws, ps)) + (" †" if mark else "")
        lines.append(f"| {t} | {fmt(ws)} | {fmt(ps)} | {cell} |")
    lines += placement_footnote(marked)


def section_augment(recs, lines, only_passes=None):
    au_all = [r for r in recs if r["bench"] == "augment"]
    if only_passes:
        au_all = [r for r in au_all if r.get("pass", 1) in only_passes]
    passes = sorted({r.get("pass", 1) for r in au_all})
    for p in passes:
        au = [r for r in au_all if r.get("pass", 1) == p]
        section_augment_pass(au, p, len(passes), lines)


def section_augment_pass(au, pass_no, n_passes, lines):
    if not au:
        return
    by = {(r["engine"], r["threads"], r["size"], r["op"]): r for r in au}
    title = "## Augmentation: images/s per op (median), and whet / peer"
    if n_passes > 1:
        title += f" — pass {pass_no}"
    lines += [
        "",
        title,
        "",
        "Same images for every engine (the integer-hash formula in bench/README.md). Peers at two "
        "threads run two worker processes with one library thread each (a two-worker "
        "DataLoader); whet runs its rayon pool with two threads.",
    ]
    for size in ["256x256x3", "28x28x1"]:
        for t in sorted({r["threads"] for r in au}):
            lines += [
                "",
                f"### {size}, {t} thread{'s' if t > 1 else ''}"
                + (f" (pass {pass_no})" if n_passes > 1 else ""),
                "",
                "| op | whet | albumentations | torchvision v2 | OpenCV direct | whet / alb. | whet / tv | whet / OpenCV | other cores: whet / peers (max) |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for op in OPS:
                cells = {e: by.get((e, t, size, op)) for e in ["whet"] + PEERS_AUG}
                if not any(cells.values()):
                    continue
                ips = {e: (c["median_ips"] if c else None) for e, c in cells.items()}
                if cells["whet"] and cells["whet"].get("unavailable"):
                    ips["whet"] = None
                peer_others = [
                    maxo(cells[p]) for p in PEERS_AUG if cells[p] and maxo(cells[p]) is not None
                ]
                whet_other = maxo(cells["whet"]) if cells["whet"] else None
                lines.append(
                    f"| {op} | {fmt(ips['whet'])} | {fmt(ips['albumentations'])} | "
                    f"{fmt(ips['torchvision'])} | {fmt(ips['opencv'])} | "
                    + " | ".join(rfmt(ratio(ips["whet"], ips[p])) for p in PEERS_AUG)
                    + f" | {fmt(whet_other)} / {fmt(max(peer_others) if peer_others else None)} |"
                )
    # Scaling 1 -> 2 threads.
    threads = sorted({r["threads"] for r in au})
    if len(threads) >= 2:
        t1, t2 = threads[0], threads[1]
        lines += [
            "",
            f"### Gain from {t1} to {t2} threads (images/s at {t2} / at {t1})"
            + (f" (pass {pass_no})" if n_passes > 1 else ""),
            "",
            "| size | op | whet | albumentations | torchvision v2 | OpenCV direct |",
            "|---|---|---|---|---|---|",
        ]
        for size in ["256x256x3", "28x28x1"]:
            for op in OPS:
                row = []
                for e in ["whet"] + PEERS_AUG:
                    a, b = by.get((e, t1, size, op)), by.get((e, t2, size, op))
                    row.append(fmt(ratio(b and b["median_ips"], a and a["median_ips"]), 2))
                if any(c != "—" for c in row):
                    lines.append(f"| {size} | {op} | " + " | ".join(row) + " |")


def section_tabular(recs, lines):
    tb = [r for r in recs if r["bench"] == "tabular"]
    mk = next((r for r in recs if r["bench"] == "make_table"), None)
    if not tb:
        return
    groups = defaultdict(list)
    for r in tb:
        groups[(r["engine"], r["threads"])].append(r)
    med = {}
    for k, rs in groups.items():
        med[k] = {
            f: common.median([r[f] for r in rs if r.get(f) is not None])
            for f in ["read_s", "transform_s", "join_s", "total_s", "peak_rss_bytes"]
        }
        med[k]["n"] = len(rs)
        med[k]["other"] = max((maxo(r) or 0) for r in rs)
        med[k]["check"] = rs[0].get("check")
    lines += [
        "",
        "## Tabular: read Parquet, mean imputation + z-score of 20 float columns, left join",
        "",
        (
            f"Input: {mk['rows']:,} rows x 20 float64 columns (10 % missing) + an int64 key with "
            f"{mk['keys']:,} keys; right table {mk['keys']:,} rows x 4 columns; Parquet zstd-1, "
            f"{mk['left_bytes'] / 2**20:.0f} MiB. "
            if mk
            else ""
        )
        + "Each engine in its own process; median over processes; peak RSS = VmHWM.",
        "",
        "| engine | threads | read s | impute + z-score s | join s | total s | peak RSS GiB | runs | other cores (max) | check: rows, Σx0, Σr0 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(med, key=lambda k: (k[0] != "whet", k[0], k[1]))
    for k in order:
        m = med[k]
        c = m["check"] or {}
        lines.append(
            f"| {k[0]} | {k[1]} | {fmt(m['read_s'], 2)} | {fmt(m['transform_s'], 2)} | "
            f"{fmt(m['join_s'], 2)} | {fmt(m['total_s'], 2)} | "
            f"{fmt(m['peak_rss_bytes'] / 2**30, 2)} | {m['n']} | {fmt(m['other'])} | "
            f"{c.get('rows')}, {c.get('sum_x0', 0):.3g}, {c.get('sum_r0', 0):.6g} |"
        )
    whets = [k for k in med if k[0] == "whet"]
    peers = [k for k in med if k[0] != "whet"]
    if whets:
        lines += [
            "",
            "Speed ratio whet / peer = peer seconds / whet seconds (above 1: whet faster); memory "
            "ratio = whet peak RSS / peer peak RSS.",
            "",
            "| whet threads | peer | total speed ratio | impute + z-score speed ratio | join speed ratio | memory ratio |",
            "|---|---|---|---|---|---|",
        ]
        for w in sorted(whets):
            for p in peers:
                if p[0] == "polars" and p[1] != w[1]:
                    continue
                a, b = med[w], med[p]
                lines.append(
                    f"| {w[1]} | {p[0]} ({p[1]} thr.) | {rfmt(ratio(b['total_s'], a['total_s']))} | "
                    f"{rfmt(ratio(b['transform_s'], a['transform_s']))} | "
                    f"{rfmt(ratio(b['join_s'], a['join_s']))} | "
                    f"{fmt(ratio(a['peak_rss_bytes'], b['peak_rss_bytes']), 2)} |"
                )


def pct(v):
    return "—" if v is None else f"{100 * v:.2f}"


def value_cell(a, scale):
    """'97.43 [97.10, 97.76]' from {mean, low, high}, times `scale` (100 for percentages)."""
    if not a or a.get("mean") is None:
        return "—"
    f = (lambda v: f"{scale * v:.2f}") if scale != 1 else (lambda v: f"{v:.3f}")
    if a.get("low") is None:
        return f(a["mean"])
    return f"{f(a['mean'])} [{f(a['low'])}, {f(a['high'])}]"


def delta_cell(row, scale):
    d = row.get("delta")
    if not d or d.get("mean") is None:
        return "—"
    f = (lambda v: f"{scale * v:+.2f}") if scale != 1 else (lambda v: f"{v:+.3f}")
    cell = f(d["mean"])
    if d.get("low") is not None:
        cell += f" [{f(d['low'])}, {f(d['high'])}]"
    ph = row.get("p_holm")
    verdict = (row.get("verdict") or "").replace("_", " ")
    return cell + (f", p_Holm {ph:.3f}" if ph is not None else "") + (f": {verdict}" if verdict else "")


E2E_TEXT = {
    "mnist": (
        "The README's main job",
        "`pipelines/mnist-ablation.yaml` (8 variants, the baseline included, × 3 paired seeds = "
        "24 runs on 2,000 MNIST images, four online augmentation ops, 30 epochs with early "
        "stopping) with whet's release build, and "
        "the same study written with PyTorch + albumentations + a `DataLoader` with 2 workers "
        "(bench/py/e2e.py).",
        "PyTorch + albumentations",
    ),
    "flights": (
        "The flights ablation",
        "`pipelines/flights-ablation.yaml` (7 variants × 3 paired seeds on 336,776 flights: two "
        "joins, imputation, one-hot, z-scores, a time split, 6 epochs) with whet's release build, "
        "and the same study written with pandas + a scikit-learn `ColumnTransformer` + PyTorch "
        "(bench/py/e2e_flights.py).",
        "pandas + scikit-learn + PyTorch",
    ),
}


def section_e2e(recs, lines):
    lines += ["", "## End to end: whole jobs against the Python stack", ""]
    jobs = []
    for r in recs:
        if r["bench"] in ("e2e", "e2e-peer") and r.get("job", "mnist") not in jobs:
            jobs.append(r.get("job", "mnist"))
    if not jobs:
        lines.append("Not run.")
        return
    lines += [
        "Wall time of the whole process tree, start to exit, each with the machine to itself; "
        "the metric tables put each study's answers side by side (mean over the seeds [95 % t "
        "interval]; Δ vs the baseline [paired 95 % interval], Holm-adjusted p and verdict).",
    ]
    for job in jobs:
        title, text, peer_label = E2E_TEXT.get(job, (job, "", "Python peer"))
        mine = [r for r in recs if r["bench"] == "e2e" and r.get("job", "mnist") == job]
        peers = [r for r in recs if r["bench"] == "e2e-peer" and r.get("job", "mnist") == job]
        e = mine[-1] if mine else None
        peer = peers[-1] if peers else None
        lines += ["", f"### {title}", "", text, ""]
        if e and e.get("skipped"):
            lines += [f"whet skipped: {e['skipped']}.", ""]
            e = None
        lines += [
            "| | command | status | wall s | CPU s | peak RSS MiB | other cores |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for label, r in [("whet", e), (peer_label, peer)]:
            if not r:
                continue
            status = "ok" if r.get("returncode") == 0 else f"failed (exit {r.get('returncode')})"
            lines.append(
                f"| {label} | `{r['command']}` | {status} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                f"{r['peak_rss_bytes'] / 2**20:.0f} | {r['other_cores']:.2f} |"
            )
        if e and peer and e.get("returncode") == 0 and peer.get("returncode") == 0:
            lines += ["", f"whet takes **{peer['wall_s'] / e['wall_s']:.1f}×** less wall time."]
        for label, r in [("whet", e), (peer_label, peer)]:
            if r and r.get("stderr_tail"):
                lines += ["", f"{label}:", "", "```", *r["stderr_tail"], "```"]
        metric = (e or {}).get("metric") or (peer or {}).get("metric") or "accuracy"
        scale = 100 if metric in ("accuracy", "balanced_accuracy") else 1
        unit = " (%)" if scale == 100 else ""
        wv = {v["name"]: v for v in (e or {}).get("variants", [])}
        pv = {v["name"]: v for v in (peer or {}).get("variants", [])}
        names = list(wv) + [n for n in pv if n not in wv]
        if names:
            lines += [
                "",
                f"| variant | whet {metric}{unit} | whet Δ | {peer_label} | peer Δ |",
                "|---|---|---|---|---|",
            ]
            for n in names:
                w, p = wv.get(n, {}), pv.get(n, {})
                lines.append(
                    f"| {n} | {value_cell(w.get('value'), scale)} | {delta_cell(w, scale)} | "
                    f"{value_cell(p.get('value'), scale)} | {delta_cell(p, scale)} |"
                )


def section_load(recs, lines):
    ld = [r for r in recs if r["bench"] == "load"]
    info = next((r for r in recs if r["bench"] == "images"), None)
    if not ld:
        return
    by = {(r["format"], r["engine"], r["threads"]): r for r in ld}
    threads = sorted({r["threads"] for r in ld})
    formats = [f for f in ("png", "jpeg") if any(k[0] == f for k in by)]
    lines += [
        "",
        "## Folder loading: read, decode, convert to RGB, resize to 64x64 (images/s, median)",
        "",
        (
            f"{info['n']:,} files per format, {info['size'][0]}x{info['size'][1]} RGB in "
            f"{info['classes']} class folders (bench/py/make_images.py; "
            + ", ".join(f"{f} {v['bytes'] / 2**20:.0f} MiB" for f, v in info["formats"].items())
            + "), read from the page cache. "
            if info
            else ""
        )
        + "whet: `whet_image::load_folder` (what `data.images.*.folder` runs) on rayon's pool; "
        "PIL: `Image.open` → `convert(\"RGB\")` → `resize(BILINEAR)`; OpenCV: `imread` → "
        "`resize(INTER_AREA)` → `cvtColor`; the peers at 2 threads are two worker processes "
        "(bench/py/load.py). Pixel sum: a check that the outputs agree (whet's resize is PIL's "
        "filter in PIL's fixed point; JPEG decoders differ slightly).",
        "",
        "| format | threads | whet | PIL | OpenCV | whet / PIL | whet / OpenCV | pixel sum whet, PIL, OpenCV | other cores (max) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in formats:
        for t in threads:
            w, p, o = (by.get((f, e, t)) for e in ("whet", "pil", "opencv"))
            ips = [r and r["median_ips"] for r in (w, p, o)]
            sums = ", ".join(str(r["pixel_sum"]) if r else "—" for r in (w, p, o))
            other = max((maxo(r) or 0) for r in (w, p, o) if r)
            lines.append(
                f"| {f} | {t} | {fmt(ips[0])} | {fmt(ips[1])} | {fmt(ips[2])} | "
                f"{fmt(ratio(ips[0], ips[1]), 2)} | {fmt(ratio(ips[0], ips[2]), 2)} | {sums} | "
                f"{fmt(other)} |"
            )
    scale = []
    for f in formats:
        for e, label in (("whet", "whet"), ("pil", "PIL"), ("opencv", "OpenCV")):
            a, b = by.get((f, e, 1)), by.get((f, e, 2))
            if a and b:
                scale.append(f"{label} {f} {b['median_ips'] / a['median_ips']:.2f}×")
    if scale:
        lines += ["", "2 threads over 1: " + ", ".join(scale) + "."]


def section_stream(recs, lines):
    st = [r for r in recs if r["bench"] == "stream" and r.get("mode")]
    info = next((r for r in recs if r["bench"] == "make-shards"), None)
    if not st:
        return
    by = {r["mode"]: r for r in st}
    lines += [
        "",
        "## Training from image shards larger than the memory budget",
        "",
        (
            f"{info['images']:,} training and {info['test_images']:,} test images, "
            f"{info['side']}x{info['side']} grey PNG, in {info['train_shards']} WebDataset "
            f"shards of {info['shard_images']:,} ({info['train_bytes'] / 2**30:.2f} GiB; "
            "`whet-bench make-shards`). "
            if info
            else ""
        )
        + "One epoch of a 4096-64-10 MLP (momentum SGD, batch 256) through `whet run`, all "
        "cores: **streamed** under `--max-memory` (the training images do not fit, so a few "
        "decoded shards are held at once, the next one decoded ahead on a worker thread), and "
        "**in memory** on the first images of the same shards (they fit). Images/s is the "
        "training loop's (decoding included when streamed); the run's wall time also holds "
        "the index pass (every image decoded once before training) and the test evaluation. "
        "Peak RSS is the whet process's. The synthetic classes (a disc whose place depends on "
        "the class) are easy: the test accuracy checks that training ran, it is not a result.",
        "",
        "| mode | budget | training images | training images/s | training s | run wall s | peak RSS | test accuracy | shards held at once (of) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("streamed", "in-memory"):
        r = by.get(mode)
        if not r:
            continue
        held = "—"
        if r.get("streamed"):
            held = f"≤ {r['streamed'].get('resident', '?')} ({r['streamed']['shards']})"
        lines.append(
            f"| {mode} | {r.get('budget') or 'default'} | {fmt(r.get('images'))} | "
            f"{fmt(r.get('train_images_per_s'))} | {fmt(r.get('train_seconds'), 1)} | "
            f"{fmt(r.get('wall_s'), 1)} | {r['peak_rss_bytes'] / 2**20:,.0f} MiB | "
            f"{fmt(r.get('test_accuracy'), 4)} | {held} |"
        )
    a, b = by.get("streamed"), by.get("in-memory")
    if a and b and a.get("train_images_per_s") and b.get("train_images_per_s"):
        lines += [
            "",
            f"Streamed / in-memory training rate: "
            f"{a['train_images_per_s'] / b['train_images_per_s']:.2f}× (one run each, same "
            "machine, one after the other).",
        ]


def section_stream_table(recs, lines):
    st = [r for r in recs if r["bench"] == "stream-table" and r.get("engine")]
    info = next((r for r in recs if r["bench"] == "make-events"), None)
    if not st:
        return
    by = {r["engine"]: r for r in st}
    w = by.get("whet", {})
    lines += [
        "",
        "## Exporting a table larger than the memory budget",
        "",
        (
            f"{info['rows']:,} rows × 20 columns (`key`, 18 float32 features with 10 % missing, "
            f"a 0/1 target; {info['left_bytes'] / 2**30:.2f} GiB of Parquet) left-joined on "
            f"`key` with {info['keys']:,} rows × 4 float32 columns (`make_table.py --events`). "
            if info
            else ""
        )
        + "One plan, all cores: a hash split (10 % test, 10 % validation), the join, mean "
        "imputation and z-scores fitted on the training rows, every split written as zstd "
        "Parquet. **whet**: `whet --max-memory "
        + str(w.get("budget", "?"))
        + " export` ("
        + str(w.get("profile", "?"))
        + " build), which streams because the table does not fit the budget (a pass per "
        "fitted step, one to write). **polars**: the same plan as lazy queries on its "
        "streaming engine (`bench/py/stream_table.py`: a pass for the means, one for the "
        "standard deviations, one partitioned sink). Peak RSS is each process's.",
        "",
        "| engine | wall s | rows/s | peak RSS | passes | output |",
        "|---|---|---|---|---|---|",
    ]
    for engine in ("whet", "polars"):
        r = by.get(engine)
        if not r or r.get("returncode") != 0:
            if r:
                lines.append(f"| {engine} | failed: {' '.join(r.get('stderr_tail', []))[-200:]} |||||")
            continue
        if engine == "whet":
            passes = (r.get("streamed") or {}).get("passes") or "in memory"
        else:
            passes = len(r.get("stages_s") or {})
        out = f"{r['out_bytes'] / 2**30:.2f} GiB" if r.get("out_bytes") else "—"
        lines.append(
            f"| {engine} | {fmt(r['wall_s'], 1)} | {fmt(r['rows'] / r['wall_s'])} | "
            f"{r['peak_rss_bytes'] / 2**20:,.0f} MiB | {passes} | {out} |"
        )
    a, b = by.get("whet"), by.get("polars")
    timed = [
        (e, list((r.get("streamed") or {}).get("pass_seconds") or [])
         or [[k, v] for k, v in (r.get("stages_s") or {}).items()])
        for e, r in (("whet", a), ("polars", b)) if r and r.get("returncode") == 0
    ]
    for engine, passes in timed:
        if passes:
            lines += ["", f"{engine} passes: " + ", ".join(f"{n} {v:.1f} s" for n, v in passes) + "."]
    if a and b and a.get("returncode") == 0 and b.get("returncode") == 0:
        lines += [
            "",
            f"whet / polars throughput: {b['wall_s'] / a['wall_s']:.2f}× (one run each, same "
            "machine, one after the other).",
        ]


def chart(path, title, xlabel, ylabel, series, logx=True, logy=False, hlines=()):
    """A line chart of `series` [(label, [(x, y)], style[, colour key])] as a PNG at `path`;
    False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    xs = set()
    colours = {}
    for label, pts, style, *key in series:
        pts = sorted(p for p in pts if p[1] is not None)
        if pts:
            # One colour per engine (the label's first word, or the series' 4th item); threads
            # differ by line style.
            engine = key[0] if key else label.split(" ")[0]
            colour = colours.setdefault(engine, f"C{len(colours)}")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label, markersize=4,
                    color=colour)
            xs.update(p[0] for p in pts)
    for y, label in hlines:
        if y:
            ax.axhline(y, color="grey", linestyle=":", linewidth=1)
            ax.annotate(label, (0.01, y), xycoords=("axes fraction", "data"), fontsize=7,
                        color="grey", va="bottom")
    if logx:
        ax.set_xscale("log", base=2 if max(xs or [1]) < 1e4 else 10)
    if logx and max(xs or [1]) < 1e4:
        ax.set_xticks(sorted(xs))
        ax.set_xticklabels([f"{x:g}" for x in sorted(xs)])
        ax.minorticks_off()
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return True


def linked_chart(lines, chart_dir, name, alt, *args, **kwargs):
    """Draws `chart(chart_dir/name, *args, **kwargs)` and links it from the report (relative to
    the report's folder) when it was drawn."""
    if chart(os.path.join(chart_dir, name), *args, **kwargs):
        lines += ["", f"![{alt}]({os.path.basename(chart_dir)}/{name})"]


STYLES = {("whet", 1): "o-", ("whet", 2): "o--"}


def style(engine, threads):
    return STYLES.get((engine, threads), "s-" if threads == 1 else "s--")


def grid_table(lines, corner, keys, key_label, xs, x_label, cell):
    """A Markdown table with a row per x and a column per key; `cell(key, x)` is the text."""
    lines += ["| " + corner + " | " + " | ".join(key_label(k) for k in keys) + " |",
              "|---|" + "---|" * len(keys)]
    for x in xs:
        lines.append(f"| {x_label(x)} | " + " | ".join(cell(k, x) for k in keys) + " |")


def section_scaling(recs, lines, chart_dir):
    sc = [r for r in recs if r.get("curve")]
    if not sc:
        return
    lines += ["", "## Scaling: how cost grows with the work", ""]
    runs = {r.get("_run", 0) for r in sc}
    ms = [r for r in recs if r["bench"] == "machine" and r.get("_run", 0) in runs]
    if ms:
        lines.append(f"Measured {', '.join(m['date'] for m in ms)}; other processes' cores "
                     f"during the timed windows: max {fmt(max(window_loads(sc) or [0]))}.")

    width = [r for r in sc if r["curve"] == "width" and r.get("samples_per_s")]
    if width:
        threads = sorted({r["threads"] for r in width})
        engines = sorted({r["engine"] for r in width}, key=lambda e: (e != "whet", e))
        by = {(r["engine"], r["threads"], r["width"]): r for r in width}
        widths = sorted({r["width"] for r in width})
        # The matmul peak measured with the curve (`curve: peak`), else the matmul section's.
        peaks = {
            t: max((r["gflops"] for r in sc if r["curve"] == "peak" and r["threads"] == t),
                   default=None) or peak_gflops([r for r in recs if not r.get("curve")], t)
            for t in threads
        }
        series = [
            (f"{e} {t} thr.", [(w, by[(e, t, w)]["gflops"]) for w in widths if (e, t, w) in by],
             style(e, t))
            for t in threads
            for e in engines
        ]
        hl = [(peaks[t], f"matmul peak, {t} thr. ({fmt(peaks[t])} GFLOP/s)") for t in threads]
        linked_chart(lines, chart_dir, "scaling-width.png", "training GFLOP/s against width",
                     "Training 784-W-W-10 (batch 128, SGD momentum): GFLOP/s vs hidden width",
                     "hidden width W", "GFLOP/s", series, hlines=hl)
        lines += [
            "",
            "### Training throughput against hidden width (784-W-W-10)",
            "",
            "Samples per epoch shrink with W (about 2·10¹¹ FLOP per epoch); median of 2 epochs "
            "after a warm-up one. % of peak: of the best fp32 2048² matmul GFLOP/s at the same "
            "threads measured with the curve ("
            + ", ".join(f"{t} thr. {fmt(p)}" for t, p in peaks.items()) + ").",
            "",
            "| W | samples | threads | "
            + " | ".join(f"{e} samples/s (GFLOP/s, % of peak)" for e in engines)
            + " | whet / torch |",
            "|---|---|---|" + "---|" * len(engines) + "---|",
        ]
        for w in widths:
            for t in threads:
                cells, vals = [], {}
                for e in engines:
                    r = by.get((e, t, w))
                    if not r:
                        cells.append("—")
                        continue
                    vals[e] = r["samples_per_s"]
                    pk = peaks.get(t)
                    pc = f", {100 * r['gflops'] / pk:.0f} %" if pk else ""
                    cells.append(f"{fmt(r['samples_per_s'])} ({fmt(r['gflops'])}{pc})")
                n = next((by[(e, t, w)]["samples"] for e in engines if (e, t, w) in by), "—")
                lines.append(f"| {w} | {n} | {t} | " + " | ".join(cells) + " | "
                             f"{fmt(ratio(vals.get('whet'), vals.get('torch')), 2)} |")

    side = [r for r in sc if r["curve"] == "side" and r.get("median_ips")]
    if side:
        threads = sorted({r["threads"] for r in side})
        engines = sorted({r["engine"] for r in side}, key=lambda e: (e != "whet", e))
        side_of = lambda r: int(r["size"].split("x")[0])  # noqa: E731
        by = {(r["engine"], r["threads"], side_of(r)): r for r in side}
        sides = sorted({side_of(r) for r in side})
        series = [
            (f"{e} {t} thr.",
             [(s, by[(e, t, s)]["median_ips"] * s * s / 1e6) for s in sides if (e, t, s) in by],
             style(e, t))
            for t in threads
            for e in engines
        ]
        linked_chart(lines, chart_dir, "scaling-side.png",
                     "augmentation throughput against image side",
                     "Augmentation chain (flip, rotate, resized crop, colour, noise, normalise)",
                     "image side (RGB, square)", "megapixels/s", series)
        lines += [
            "",
            "### The augmentation chain against image side (RGB)",
            "",
            "Images/s (median); the chart shows megapixels/s (images/s × side²), flat where cost "
            "grows with the pixels.",
            "",
            "| side | threads | " + " | ".join(engines)
            + " | " + " | ".join(f"whet / {e}" for e in engines if e != "whet") + " |",
            "|---|---|" + "---|" * (2 * len(engines) - 1),
        ]
        for s_ in sides:
            for t in threads:
                v = {e: (by.get((e, t, s_)) or {}).get("median_ips") for e in engines}
                lines.append(
                    f"| {s_} | {t} | " + " | ".join(fmt(v[e]) for e in engines) + " | "
                    + " | ".join(fmt(ratio(v.get("whet"), v[e]), 2) for e in engines if e != "whet")
                    + " |"
                )

    rows = [r for r in sc if r["curve"] == "rows" and r.get("total_s")]
    if rows:
        keys = sorted({(r["engine"], r["threads"]) for r in rows}, key=lambda k: (k[0] != "whet", k))
        by = {(r["engine"], r["threads"], r["rows"]): r for r in rows}
        ns = sorted({r["rows"] for r in rows})
        series = [(f"{e} {t} thr.", [(n, by[(e, t, n)]["total_s"]) for n in ns if (e, t, n) in by],
                   style(e, t)) for e, t in keys]
        linked_chart(lines, chart_dir, "scaling-rows.png", "table seconds against rows",
                     "Tables: read Parquet + impute + z-score + left join", "rows", "seconds",
                     series, logy=True)
        lines += [
            "",
            "### Tables against rows (read + mean imputation + z-score of 20 columns + left join)",
            "",
            "Total seconds (peak RSS); one process each.",
            "",
        ]

        def rows_cell(key, n):
            r = by.get((*key, n))
            return f"{fmt(r['total_s'], 3)} ({r['peak_rss_bytes'] / 2**20:.0f} MiB)" if r else "—"

        grid_table(lines, "rows", keys, lambda k: f"{k[0]} {k[1]} thr.", ns, lambda n: f"{n:,}",
                   rows_cell)

    cells = [r for r in sc if r["curve"] == "cells" and r.get("returncode") == 0]
    if cells:
        keys = sorted({(r["jobs"], r["threads"]) for r in cells})
        by = {(r["jobs"], r["threads"], r["cells"]): r for r in cells}
        ns = sorted({r["cells"] for r in cells if r["cells"]})
        series = [(f"jobs={j} threads={t}",
                   [(n, by[(j, t, n)]["wall_s"]) for n in ns if (j, t, n) in by],
                   "o-" if j == 1 else "s--", (j, t)) for j, t in keys]
        linked_chart(lines, chart_dir, "scaling-cells.png", "ablation wall time against cells",
                     "The README's main job (whet ablate, release build): wall time vs cells",
                     "cells (variants × seeds)", "wall seconds", series, logx=False)
        lines += [
            "",
            "### The README's main job against its number of cells",
            "",
            "`whet ablate pipelines/mnist-ablation.yaml --seeds S` (release build), wall seconds "
            "(CPU seconds) of the whole process tree; `--jobs 2` runs two worker processes with "
            "one thread each.",
            "",
        ]

        def cells_cell(key, n):
            r = by.get((*key, n))
            return f"{r['wall_s']:.1f} ({r['cpu_s']:.1f})" if r else "—"

        grid_table(lines, "cells", keys, lambda k: f"--jobs {k[0]} --threads {k[1]}", ns, str,
                   cells_cell)


def section_errors(recs, lines):
    errs = [r for r in recs if r["bench"] == "error"]
    unavailable = [r for r in recs if r.get("unavailable")]
    if not errs and not unavailable:
        return
    lines += ["", "## What did not run", ""]
    for r in errs:
        msg = r.get("error") or " / ".join((r.get("stderr") or [])[-2:])
        lines.append(f"- {r.get('label')}: {msg}")
    for r in unavailable:
        lines.append(f"- whet {r['bench']} {r.get('op', '')}: {r['unavailable']}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw", nargs="+", help="raw.jsonl files, oldest first (later sections win)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--jsonl", default="",
                    help="also write the merged records here (e.g. bench/RESULTS.jsonl)")
    ap.add_argument("--notes", default="", help="a Markdown file appended as 'Notes'")
    ap.add_argument("--augment-passes", default="",
                    help="comma-separated augmentation passes to report (default: all)")
    args = ap.parse_args()
    recs = merge(args.raw)
    lines = [
        "# whet benchmark results",
        "",
        "Produced by `bash bench/run.sh` (see bench/README.md); raw records in "
        "`bench/RESULTS.jsonl`. Ratios are whet / peer on speed: above 1 means whet is faster.",
        "",
    ]
    section_machine(recs, lines)
    load_summary(first_run(recs), lines)
    # The scaling curves' records (tagged `curve`) have their own section.
    base = [r for r in recs if not r.get("curve")]
    section_train(base, lines)
    section_cnn(base, lines)
    section_matmul(base, lines)
    only = {int(p) for p in args.augment_passes.split(",") if p}
    section_augment(base, lines, only)
    section_tabular(base, lines)
    section_load(base, lines)
    section_stream(base, lines)
    section_stream_table(base, lines)
    section_e2e(base, lines)
    section_scaling(recs, lines, os.path.join(os.path.dirname(os.path.abspath(args.out)), "charts"))
    section_errors(recs, lines)
    if args.notes and os.path.exists(args.notes):
        lines += ["", "## Notes", "", open(args.notes).read().strip()]
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, args.out)
    if args.jsonl:
        tmp = args.jsonl + ".tmp"
        with open(tmp, "w") as f:
            for r in recs:
                f.write(json.dumps({k: v for k, v in r.items() if k != "_run"}) + "\n")
        os.replace(tmp, args.jsonl)


if __name__ == "__main__":
    main()
