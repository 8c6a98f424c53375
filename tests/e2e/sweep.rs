//! `whet ablate --sweep` (a grid from the command line), `--dry-run`, and reports that say
//! what ran: the run file's description, every `--set` and `--sweep`, and `--only` runs that
//! add to the report in their folder instead of replacing it.

use crate::util::{tiny_mnist, whet};
use std::path::Path;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&read(p)).unwrap()
}

const LR: &str = "train.optimizer.adam.lr=0.01,0.003";
const BS: &str = "train.batch_size=32,64";

#[test]
fn a_sweep_is_a_grid_the_dry_run_lists_and_the_report_records() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    std::fs::write(d.join("run.yaml"), tiny_mnist("ablation: { seeds: 1 }\n")).unwrap();
    let sweep = [
        "ablate", "run.yaml", "--out", "ab", "--sweep", LR, "--sweep", BS,
    ];

    let r = whet(d, &[&sweep[..], &["--dry-run"]].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Compared with runs of spaces collapsed: the columns are padded to the longest name.
    let squeezed = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let lines: Vec<String> = r.stdout.lines().map(squeezed).collect();
    for line in [
        "baseline 1 the run file as written",
        "lr=0.01,batch_size=32 1 train.optimizer.adam.lr = 0.01; train.batch_size = 32",
        "lr=0.003,batch_size=32 1 train.optimizer.adam.lr = 0.003; train.batch_size = 32 (the baseline's value)",
        "lr=0.003,batch_size=64 1 train.optimizer.adam.lr = 0.003; train.batch_size = 64",
        "5 variants × 1 seeds = 5 runs; metric: accuracy (higher is better)",
    ] {
        assert!(
            lines.iter().any(|l| l == line),
            "missing `{line}` in:\n{}",
            r.stdout
        );
    }
    assert!(!d.join("ab").exists(), "a dry run writes nothing");
    let r = whet(d, &[&sweep[..], &["--dry-run", "--json"]].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let l: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(l["runs"], 5);
    let names: Vec<&str> = l["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "baseline",
            "lr=0.01,batch_size=32",
            "lr=0.01,batch_size=64",
            "lr=0.003,batch_size=32",
            "lr=0.003,batch_size=64"
        ]
    );

    // The sweep runs, and the report says what ran beyond the run file.
    let r = whet(d, &[&sweep[..], &["--set", "train.epochs=1"]].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = read(&d.join("ab/report.md"));
    assert!(
        report.contains(
            "Command-line changes: `--set train.epochs=1`, `--sweep train.optimizer.adam.lr=0.01,0.003`, `--sweep train.batch_size=32,64`."
        ),
        "{report}"
    );
    assert!(
        report.contains("the run file with --set train.epochs=1"),
        "{report}"
    );
    let ab = json(&d.join("ab/ablation.json"));
    assert_eq!(ab["overrides"].as_array().unwrap().len(), 3, "{ab}");
    assert_eq!(ab["summaries"].as_array().unwrap().len(), 5);
    // A sweep chooses: ranked on the validation split, the test set quoted for the chosen one.
    assert!(
        report.contains("## Chosen on validation")
            && report.contains("## accuracy by variant (validation split)"),
        "{report}"
    );
    let chosen = ab["chosen"]["variant"].as_str().unwrap();
    let runs = ab["runs"].as_array().unwrap();
    let best_val = runs
        .iter()
        .map(|r| r["validation"]["accuracy"].as_f64().unwrap())
        .fold(f64::NEG_INFINITY, f64::max);
    let of_chosen = runs.iter().find(|r| r["variant"] == chosen).unwrap();
    assert_eq!(
        of_chosen["validation"]["accuracy"].as_f64().unwrap(),
        best_val,
        "the best validation accuracy is chosen (1 seed each): {ab}"
    );
    assert_eq!(
        ab["chosen"]["test"]["mean"], of_chosen["metrics"]["accuracy"],
        "its test accuracy is quoted"
    );
    assert_eq!(
        ab["summaries"][0]["metrics"]["accuracy"]["value"]["mean"],
        runs.iter().find(|r| r["variant"] == "baseline").unwrap()["validation"]["accuracy"],
        "the table is on the validation split"
    );
    let rec = json(&d.join("ab/runs/lr=0.01,batch_size=64/seed-3/record.json"));
    assert_eq!(rec["record"]["status"], "ok", "{rec}");
    // One epoch, as the --set said (a variant keeps the baseline's overrides).
    assert_eq!(
        rec["record"]["curves"].as_array().unwrap().len(),
        1,
        "{rec}"
    );
    // --only takes a grid variant's whole name, commas and all.
    let r = whet(
        d,
        &[
            &sweep[..],
            &[
                "--set",
                "train.epochs=1",
                "--only",
                "lr=0.01,batch_size=64",
                "--dry-run",
            ],
        ]
        .concat(),
    )
    .stdout;
    assert!(
        r.contains("2 variants × 1 seeds = 2 runs")
            && r.contains("2 of them are already in ab and would be reused (0 to run)"),
        "{r}"
    );
}

#[test]
fn bad_sweeps_are_refused_with_the_reason() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    std::fs::write(d.join("run.yaml"), tiny_mnist("")).unwrap();
    for (sweep, want) in [
        ("train.epochs", "expected KEY.PATH=A,B,C"),
        ("train.epochs=", "no values after `=`"),
        ("train.lrr=1,2", "unknown field `lrr`"),
        ("train.epochs=1,[2", "not a comma-separated YAML list"),
    ] {
        let r = whet(d, &["ablate", "run.yaml", "--sweep", sweep, "--dry-run"]);
        assert_eq!(r.code, 2, "--sweep {sweep}: {}", r.stderr);
        assert!(r.stderr.contains(want), "--sweep {sweep}: {}", r.stderr);
    }
    let r = whet(
        d,
        &[
            "ablate",
            "run.yaml",
            "--sweep",
            "seed=1,2",
            "--sweep",
            "seed=3",
            "--dry-run",
        ],
    );
    assert!(
        r.code == 2 && r.stderr.contains("given twice"),
        "{}",
        r.stderr
    );
}

#[test]
fn only_adds_to_the_report_in_its_folder() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let file = tiny_mnist(
        "description: Does rotation help a small MLP on 400 digits?\n\
         ablation:\n  seeds: 1\n  variants:\n    - { name: no-rotate, drop: augment.ops.rotate }\n    - { name: wide, set: { model.hidden.0.dense: 64 } }\n",
    );
    std::fs::write(d.join("run.yaml"), file).unwrap();
    let r = whet(
        d,
        &["ablate", "run.yaml", "--out", "ab", "--only", "no-rotate"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = read(&d.join("ab/report.md"));
    assert!(
        report.contains("Does rotation help a small MLP on 400 digits?"),
        "the description is shown: {report}"
    );
    assert!(
        report.contains("Not in this report: `wide`"),
        "the left-out variant is named: {report}"
    );
    assert!(report.contains("`no-rotate`"), "{report}");
    assert_eq!(
        json(&d.join("ab/ablation.json"))["description"],
        "Does rotation help a small MLP on 400 digits?"
    );

    let r = whet(d, &["ablate", "run.yaml", "--out", "ab", "--only", "wide"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = read(&d.join("ab/report.md"));
    for v in ["`baseline`", "`no-rotate`", "`wide`"] {
        assert!(report.contains(v), "{v} is in the merged report: {report}");
    }
    assert!(!report.contains("Not in this report"), "{report}");
    assert!(
        report.contains("1 of 2 runs were reused from an earlier ablation"),
        "{report}"
    );
    let ab = json(&d.join("ab/ablation.json"));
    assert_eq!(ab["summaries"].as_array().unwrap().len(), 3, "{ab}");
    // The terminal table shows every variant too.
    for v in ["baseline", "no-rotate", "wide"] {
        assert!(r.stdout.contains(v), "{}", r.stdout);
    }
    let r = whet(d, &["ablate", "run.yaml", "--out", "ab", "--dry-run"]);
    assert!(
        r.stdout
            .contains("3 of them are already in ab and would be reused (0 to run)"),
        "{}",
        r.stdout
    );
}
