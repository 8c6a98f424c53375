//! Every shipped pipeline's numbers, pinned to the bit.
//!
//! Each run file in `pipelines/` is run on a small slice of its data (300 training images or
//! 20,000 flights, 2 epochs), and its test and validation metrics, best epoch, parameter count
//! and learning curves (all but the wall-clock seconds) are compared with
//! `tests/e2e/data/pinned-metrics.json`, which was written before the run workflow moved from the
//! CLI into the `whet` library crate, and regenerated when the one-row and one-column products
//! became machine-independent (`whet_train::kernel`: the same bits with AVX2 and AVX-512), and
//! when a large dense layer's forward product began to be summed over two halves of its inputs
//! (`whet_train::kernel::weight_cut`: losses moved by at most 1.4e-7 relative, no accuracy), and
//! when that cut moved from a multiple of 16 inputs to a multiple of 8 (784 inputs: 392 + 392
//! instead of 400 + 384, balanced between two threads; 60 losses moved by at most 9.4e-8
//! relative, no accuracy). A
//! change that moves any of these numbers, by a single bit, fails here: if the change is meant to (a named bug fix), regenerate with
//! `REGENERATE=1 cargo test -p whet-cli --test e2e pinned` and say why in the commit.

use crate::util::{dataset, repo, whet};
use serde_json::{Map, Value, json};
use std::path::Path;

/// Overrides that shrink a pipeline to a few seconds.
fn small(name: &str) -> Vec<String> {
    let mut s = vec!["train.epochs=2".to_string()];
    if name.starts_with("mnist") {
        s.push("data.images.train.limit=300".into());
        s.push("data.images.test.limit=300".into());
    } else if name.starts_with("flights-small") {
        // Already small: the 1,000-row sample.
    } else {
        let flights = dataset("nycflights13/flights.csv.gz");
        s.push(format!(
            "data.tables.flights={{path: {flights}, limit: 20000}}"
        ));
    }
    s
}

/// The numbers of one finished run folder: `metrics.json`'s test and validation metrics,
/// status, best epoch and parameter count, and `curves.csv` without its `seconds` column; for a
/// k-fold run, the means and each fold's test metrics, and the first fold's curves.
fn numbers(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    let m: Value = serde_json::from_str(&text).unwrap();
    let cv = &m["cross_validation"];
    let curves_dir = match cv["folds"].as_array() {
        Some(folds) => out.join(folds[0]["folder"].as_str().unwrap()),
        None => out.to_path_buf(),
    };
    let curves = std::fs::read_to_string(curves_dir.join("curves.csv")).unwrap();
    let mut lines = curves.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Value> = lines
        .map(|l| {
            let mut row = Map::new();
            for (h, v) in header.iter().zip(l.split(',')) {
                if *h != "seconds" {
                    row.insert((*h).to_string(), Value::String(v.to_string()));
                }
            }
            Value::Object(row)
        })
        .collect();
    let mut n = json!({
        "status": m["status"],
        "test": pinned_only(&m["test"]),
        "validation": pinned_only(&flat(&m["validation"])),
        "best_epoch": m["best_epoch"],
        "stopped_early": m["stopped_early"],
        "parameters": m["parameters"],
        "curves": rows,
    });
    if let Some(folds) = cv["folds"].as_array() {
        n["folds"] = folds.iter().map(|f| pinned_only(&f["test"])).collect();
    }
    n
}

/// The metrics pinned here: the ones measured before the pins were written. Metrics added later
/// that derive from the same predictions (`precision_macro`, `f1_macro`, `majority_baseline`)
/// are checked by their own tests, so adding one does not touch every pin.
const PINNED: [&str; 7] = [
    "loss",
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "mse",
    "mae",
    "r2",
];

fn pinned_only(m: &Value) -> Value {
    match m {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| PINNED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// An evaluation as flat metric names (`loss`, `accuracy`, `balanced_accuracy`, `roc_auc`, `mse`,
/// `mae`, `r2`), whether written flat or as the trainer's nested evaluation.
fn flat(e: &Value) -> Value {
    let Some(metrics) = e.get("metrics") else {
        return e.clone();
    };
    let mut out = Map::new();
    out.insert("loss".into(), e["loss"].clone());
    let inner = metrics
        .get("classification")
        .or_else(|| metrics.get("regression"))
        .unwrap();
    for k in PINNED.iter().skip(1) {
        if let Some(v) = inner.get(k).filter(|v| !v.is_null()) {
            out.insert((*k).into(), v.clone());
        }
    }
    Value::Object(out)
}

fn run_pipeline(dir: &Path, name: &str, extra: &[String]) -> Value {
    let file = repo().join("pipelines").join(name);
    let out = dir.join(name.trim_end_matches(".yaml"));
    let mut args: Vec<String> = vec![
        "run".into(),
        file.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    for s in small(name).iter().chain(extra) {
        args.extend(["--set".to_string(), s.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = whet(dir, &args);
    assert!(
        r.code == 0 || r.code == 1,
        "{name}: {}\n{}",
        r.stdout,
        r.stderr
    );
    numbers(&out)
}

#[test]
fn pinned_metrics_of_every_shipped_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let mut got = Map::new();
    let mut names: Vec<String> = std::fs::read_dir(repo().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    // The transfer pipeline starts from the 0-4 run's checkpoint: run that first (it is also a
    // shipped pipeline), then point the transfer at it instead of its `pretrain` section, whose
    // output folder lies in the repository.
    let pre = dir.path().join("mnist-digits-0-4");
    for name in &names {
        let extra = if name == "mnist-transfer.yaml" {
            assert!(pre.join("model.safetensors").is_file(), "0-4 runs first");
            vec![
                "pretrain=null".to_string(),
                format!(
                    "train.transfer.checkpoint={}",
                    pre.join("model.safetensors").display()
                ),
            ]
        } else {
            vec![]
        };
        got.insert(name.clone(), run_pipeline(dir.path(), name, &extra));
    }
    // One ablation (a grid whose last learning rate diverges), one seed: every run's metrics.
    let ab = dir.path().join("lr-sweep-ablation");
    let mut args = vec![
        "ablate".to_string(),
        repo()
            .join("pipelines/mnist-lr-sweep.yaml")
            .display()
            .to_string(),
        "--out".into(),
        ab.display().to_string(),
        "--seeds".into(),
        "1".into(),
    ];
    for s in small("mnist-lr-sweep.yaml") {
        args.extend(["--set".to_string(), s]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = whet(dir.path(), &args);
    assert!(r.code == 0, "{}\n{}", r.stdout, r.stderr);
    let mut ablation = Map::new();
    let mut variants: Vec<String> = std::fs::read_dir(ab.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    variants.sort();
    for v in variants {
        ablation.insert(v.clone(), numbers(&ab.join("runs").join(&v).join("seed-5")));
    }
    got.insert("ablate mnist-lr-sweep.yaml".into(), Value::Object(ablation));
    let got = Value::Object(got);

    let pinned = repo().join("tests/e2e/data/pinned-metrics.json");
    if std::env::var_os("REGENERATE").is_some() {
        std::fs::create_dir_all(pinned.parent().unwrap()).unwrap();
        std::fs::write(&pinned, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        return;
    }
    let want: Value = serde_json::from_str(&std::fs::read_to_string(&pinned).unwrap()).unwrap();
    let (Value::Object(want), Value::Object(got)) = (&want, &got) else {
        unreachable!()
    };
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "the shipped pipelines changed: regenerate the pins"
    );
    for (k, w) in want {
        assert_eq!(
            &got[k], w,
            "{k}: the numbers moved (REGENERATE=1 only for a change meant to move them)"
        );
    }
}
