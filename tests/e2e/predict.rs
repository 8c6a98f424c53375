//! Using a trained model: `whet predict`, `whet evaluate`, and the identifiers (`data.id`, the
//! default `row`, `--keep`) that `whet export`, `whet apply` and `whet predict` write, so rows
//! join back to their source.

use crate::util::{dataset, repo, whet};
use serde_json::Value;
use std::path::Path;

fn pipeline(name: &str) -> String {
    repo().join("pipelines").join(name).display().to_string()
}

fn read_json(p: &Path) -> Value {
    let text =
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// The columns of `flights.csv.gz`, in file order.
const FLIGHT_COLUMNS: &str = "year,month,day,dep_time,sched_dep_time,dep_delay,arr_time,sched_arr_time,arr_delay,carrier,flight,tailnum,origin,dest,air_time,distance,hour,minute,time_hour";

/// A simple CSV (no quoted commas): header and rows of fields.
fn read_csv(p: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text =
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    let mut lines = text.lines();
    let split = |l: &str| -> Vec<String> { l.split(',').map(str::to_string).collect() };
    let header = split(lines.next().expect("a header"));
    let rows: Vec<Vec<String>> = lines.map(split).collect();
    for r in &rows {
        assert_eq!(r.len(), header.len(), "{}: {r:?}", p.display());
    }
    (header, rows)
}

fn col(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column `{name}` in {header:?}"))
}

/// Writes `rows` of a CSV read by [`read_csv`], without the columns in `drop`.
fn write_csv(p: &Path, header: &[String], rows: &[Vec<String>], drop: &[&str]) {
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| !drop.contains(&header[i].as_str()))
        .collect();
    let line = |r: &[String]| {
        keep.iter()
            .map(|&i| r[i].as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut text = line(header) + "\n";
    for r in rows {
        text += &(line(r) + "\n");
    }
    std::fs::write(p, text).unwrap();
}

/// Runs `flights-delay` on 20,000 flights for 2 epochs into `run/`, and exports its splits as NPY
/// with every raw column kept: `exp/test_ids.csv` is then the raw test rows (with `row` first).
fn flights_delay_run_and_raw_test(dir: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    run_and_raw_test(dir, "flights-delay.yaml")
}

/// Runs the flights pipeline `name` on 20,000 flights for 2 epochs into `run/`, and exports its
/// splits as NPY with every raw column kept: `exp/test_ids.csv` is then the raw test rows (with
/// `row` first).
fn run_and_raw_test(dir: &Path, name: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let flights = dataset("nycflights13/flights.csv.gz");
    let set_flights = format!("data.tables.flights={{path: {flights}, limit: 20000}}");
    let p = pipeline(name);
    let r = whet(
        dir,
        &[
            "run",
            &p,
            "--out",
            "run",
            "--set",
            &set_flights,
            "--set",
            "train.epochs=2",
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = whet(
        dir,
        &[
            "export",
            &p,
            "--out",
            "exp",
            "--format",
            "npy",
            "--keep",
            FLIGHT_COLUMNS,
            "--set",
            &set_flights,
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (header, rows) = read_csv(&dir.join("exp/test_ids.csv"));
    assert_eq!(header[0], "row");
    assert_eq!(header[1..].join(","), FLIGHT_COLUMNS);
    (header, rows)
}

/// A regression run on a standardised target (`flights-arr-delay`): `whet evaluate` on its raw
/// test rows reproduces its test metrics bit for bit, and `whet predict` writes `prediction`
/// in the target's units (minutes, the manifest's scale inverted): its mean squared error
/// against the rows' `arr_delay` is the run's test MSE.
#[test]
fn regression_predictions_are_in_the_targets_units() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (header, rows) = run_and_raw_test(d, "flights-arr-delay.yaml");
    write_csv(&d.join("test-rows.csv"), &header, &rows, &["row"]);
    let r = whet(d, &["evaluate", "run", "test-rows.csv", "--out", "ev"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let run = read_json(&d.join("run/metrics.json"));
    let ev = read_json(&d.join("ev/metrics.json"));
    assert!(run["test"]["r2"].is_number(), "{run}");
    assert_eq!(ev["test"], run["test"], "the metrics differ");
    assert!(d.join("ev/predicted-vs-actual.png").is_file());
    assert!(d.join("ev/residuals.png").is_file());

    let r = whet(d, &["predict", "run", "test-rows.csv", "--out", "pred.csv"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (ph, pr) = read_csv(&d.join("pred.csv"));
    assert_eq!(ph, ["row", "prediction"]);
    assert_eq!(pr.len(), rows.len());
    let delay = col(&header, "arr_delay");
    let (mut sse, mut n) = (0.0f64, 0usize);
    for (p, raw) in pr.iter().zip(&rows) {
        let truth: f64 = raw[delay].parse().expect("test rows have a target");
        let predicted: f64 = p[1].parse().unwrap();
        sse += (predicted - truth).powi(2);
        n += 1;
    }
    let mse = run["test"]["mse"].as_f64().unwrap();
    assert!(
        (sse / n as f64 - mse).abs() <= 1e-4 * mse,
        "predictions' MSE {} vs the run's {mse}",
        sse / n as f64
    );
}

/// `whet evaluate` on the raw rows of a run's test split (taken with `whet export --keep`)
/// reproduces the run's test metrics bit for bit, and `whet predict` on the same rows gives
/// the predictions behind them: its labels rebuild the run's confusion matrix exactly.
#[test]
fn evaluate_and_predict_on_the_test_rows_reproduce_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (header, rows) = flights_delay_run_and_raw_test(d);
    let raw = d.join("test-rows.csv");
    write_csv(&raw, &header, &rows, &["row"]);
    let r = whet(d, &["evaluate", "run", "test-rows.csv", "--out", "ev"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let run = read_json(&d.join("run/metrics.json"));
    let ev = read_json(&d.join("ev/metrics.json"));
    assert!(run["test"]["accuracy"].is_number(), "{run}");
    assert_eq!(ev["test"], run["test"], "the metrics differ");
    assert_eq!(ev["test_classes"], run["test_classes"]);
    assert_eq!(ev["test_samples"], run["test_samples"]);
    assert!(d.join("ev/confusion.png").is_file());
    // The binary charts of a run, through the same code.
    assert!(d.join("ev/roc.png").is_file() && d.join("ev/precision-recall.png").is_file());

    let r = whet(d, &["predict", "run", "test-rows.csv", "--out", "pred.csv"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (ph, pr) = read_csv(&d.join("pred.csv"));
    assert_eq!(ph, ["row", "label", "p_arr_delay > 15"]);
    // One output row per input row, in order, even those without a target.
    assert_eq!(pr.len(), rows.len());
    let delay = col(&header, "arr_delay");
    // flights-delay tunes its threshold (`threshold: auto`); predict labels with the run's.
    let threshold = run["threshold"].as_f64().expect("the run's threshold");
    assert_ne!(threshold, 0.5, "a tuned threshold tells the rules apart");
    let mut confusion = [[0u64; 2]; 2];
    for (i, (p, raw)) in pr.iter().zip(&rows).enumerate() {
        assert_eq!(p[0], i.to_string());
        let score: f64 = p[2].parse().unwrap();
        let positive = p[1] == "arr_delay > 15";
        assert!(positive || p[1] == "arr_delay <= 15", "{p:?}");
        assert!((0.0..=1.0).contains(&score));
        assert_eq!(positive, score > threshold, "{p:?}");
        if raw[delay] == "NA" || raw[delay].is_empty() {
            continue;
        }
        let truth = raw[delay].parse::<f64>().unwrap() > 15.0;
        confusion[usize::from(truth)][usize::from(positive)] += 1;
    }
    let expected: Vec<Vec<u64>> =
        serde_json::from_value(run["test_classes"]["confusion"].clone()).unwrap();
    assert_eq!(expected, confusion.map(|r| r.to_vec()).to_vec());
}

/// Identifiers pass through `whet apply` and join back to the source: the default `row` is the
/// 0-based row in the applied file, rows whose target is missing are dropped with their
/// identifiers, and a `--keep` column carries the value of that very row.
#[test]
fn ids_pass_through_apply_and_join_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (header, mut rows) = flights_delay_run_and_raw_test(d);
    // A missing target in the second row: apply drops that row, and its identifier with it.
    let delay = col(&header, "arr_delay");
    rows[1][delay] = "NA".into();
    write_csv(&d.join("rows.csv"), &header, &rows, &["row"]);
    let r = whet(
        d,
        &[
            "apply",
            "run/manifest.json",
            "rows.csv",
            "--out",
            "app",
            "--format",
            "csv",
            "--keep",
            "tailnum,time_hour",
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (ah, ar) = read_csv(&d.join("app/applied.csv"));
    assert_eq!(ah[..3], ["row", "tailnum", "time_hour"]);
    let expected_rows: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i][delay] != "NA" && !rows[i][delay].is_empty())
        .collect();
    let got: Vec<usize> = ar.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(got, expected_rows);
    let (tail, hour) = (col(&header, "tailnum"), col(&header, "time_hour"));
    for a in &ar {
        let src = &rows[a[0].parse::<usize>().unwrap()];
        assert_eq!((&a[1], &a[2]), (&src[tail], &src[hour]));
    }
    // A kept column that is also a feature cannot share its name.
    let r = whet(
        d,
        &[
            "apply",
            "run/manifest.json",
            "rows.csv",
            "--out",
            "app2",
            "--keep",
            "distance",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`distance`"), "{}", r.stderr);
}

/// Runs `flights-origin` small, and writes `rows.csv`: raw rows of its test split without the
/// `origin` column (taken with `whet export --keep`).
fn flights_origin_rows(d: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let p = pipeline("flights-origin.yaml");
    let flights = dataset("nycflights13/flights.csv.gz");
    let set_flights = format!("data.tables.flights={{path: {flights}, limit: 5000}}");
    let r = whet(
        d,
        &[
            "run",
            &p,
            "--out",
            "run",
            "--set",
            &set_flights,
            "--set",
            "train.epochs=1",
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let keep = FLIGHT_COLUMNS.replace(",origin", "");
    let r = whet(
        d,
        &[
            "export",
            &p,
            "--out",
            "exp",
            "--format",
            "npy",
            "--keep",
            &keep,
            "--set",
            &set_flights,
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (header, rows) = read_csv(&d.join("exp/test_ids.csv"));
    // The identifiers of `data.id` lead, then the kept columns not among them.
    assert_eq!(header[..5], ["year", "month", "day", "flight", "tailnum"]);
    assert!(!header.contains(&"origin".to_string()) && !header.contains(&"row".to_string()));
    write_csv(&d.join("rows.csv"), &header, &rows, &[]);
    (header, rows)
}

/// The multi-class pipeline on rows without the target column: the label names and one
/// probability column per class, summing to 1, after the `data.id` columns of each row.
#[test]
fn flights_origin_predicts_label_names_and_class_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (header, rows) = flights_origin_rows(d);
    let r = whet(d, &["predict", "run", "rows.csv", "--out", "pred.csv"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (ph, pr) = read_csv(&d.join("pred.csv"));
    assert_eq!(
        ph,
        [
            "year", "month", "day", "flight", "tailnum", "label", "p_EWR", "p_JFK", "p_LGA"
        ]
    );
    assert_eq!(pr.len(), rows.len());
    for (p, raw) in pr.iter().zip(&rows) {
        assert_eq!(p[..5], raw[..5], "identifiers as loaded");
        let probs: Vec<f64> = p[6..].iter().map(|v| v.parse().unwrap()).collect();
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{p:?}");
        let best = ["EWR", "JFK", "LGA"][probs
            .iter()
            .enumerate()
            .fold(0, |b, (i, &v)| if v > probs[b] { i } else { b })];
        assert_eq!(p[5], best, "{p:?}");
    }
    let _ = header;
}

/// A row the fitted steps cannot score (flights-origin has no `impute`, so a missing distance
/// stays missing) stops `whet predict` naming the file, the row and the column; with
/// `--skip-bad` the other rows are scored and the bad one is listed, never dropped silently.
#[test]
fn bad_rows_are_named_or_listed_with_skip_bad() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (header, mut rows) = flights_origin_rows(d);
    let distance = col(&header, "distance");
    rows[2][distance] = String::new();
    write_csv(&d.join("bad.csv"), &header, &rows, &[]);
    let r = whet(d, &["predict", "run", "bad.csv", "--out", "pred.csv"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    for part in ["bad.csv", "row 2 ", "`distance`", "missing", "--skip-bad"] {
        assert!(r.stderr.contains(part), "no {part:?} in: {}", r.stderr);
    }
    assert!(!d.join("pred.csv").exists());
    let r = whet(
        d,
        &[
            "predict",
            "run",
            "bad.csv",
            "--out",
            "pred.csv",
            "--skip-bad",
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("1 rows could not be scored"),
        "{}",
        r.stdout
    );
    let (_, pr) = read_csv(&d.join("pred.csv"));
    assert_eq!(pr.len(), rows.len() - 1);
    let (sh, sr) = read_csv(&d.join("pred.csv.skipped.csv"));
    assert_eq!(sh, ["file", "row", "reason"]);
    assert_eq!(sr.len(), 1);
    assert_eq!(sr[0][1], "2");
    assert!(sr[0][2].contains("distance"), "{:?}", sr[0]);
}

/// `whet predict` on an image folder (the run's own test images, exported as PNG class folders)
/// writes each file's path, its label and one probability per class; the images are
/// normalised as in the run, so the share of files whose label is their class folder is the
/// run's test accuracy exactly.
#[test]
fn image_folder_predicts_paths_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = d.join("tiny.yaml");
    std::fs::write(&f, crate::util::tiny_mnist("")).unwrap();
    let r = whet(d, &["run", f.to_str().unwrap(), "--out", "run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = whet(d, &["export", f.to_str().unwrap(), "--out", "png"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = whet(d, &["predict", "run", "png/test", "--out", "pred.csv"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (h, rows) = read_csv(&d.join("pred.csv"));
    let mut expected = vec!["path".to_string(), "label".into()];
    expected.extend((0..10).map(|i| format!("p_{i}")));
    assert_eq!(h, expected);
    assert_eq!(rows.len(), 300);
    let mut correct = 0;
    for r in &rows {
        let path = Path::new(&r[0]);
        assert!(d.join(path).is_file(), "{path:?}");
        let folder = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        correct += usize::from(folder == r[1]);
        let sum: f64 = r[2..].iter().map(|v| v.parse::<f64>().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-6, "{r:?}");
    }
    let m = read_json(&d.join("run/metrics.json"));
    assert_eq!(
        correct as f64 / rows.len() as f64,
        m["test"]["accuracy"].as_f64().unwrap()
    );
    // One image file works too.
    let one = &rows[0][0];
    let r = whet(d, &["predict", "run", one, "--out", "one.parquet"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("predicted 1 of 1 rows"), "{}", r.stdout);
}

/// `whet evaluate` on images goes through the code that measures a run: the run's own test
/// images as IDX files (IDX export, with `--labels`) give the run's test metrics bit for bit,
/// and as a class-folder tree (PNG export) the same counts and a loss equal up to summation
/// order. `whet predict` on the IDX file writes one row per
/// image (`row`: its index) with the label and probabilities the same images get as PNG files.
#[test]
fn image_evaluate_on_folders_and_idx_and_idx_predict() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = d.join("tiny.yaml");
    std::fs::write(&f, crate::util::tiny_mnist("")).unwrap();
    let f = f.to_str().unwrap();
    for args in [
        &["run", f, "--out", "run"][..],
        &["export", f, "--out", "png"],
        &["export", f, "--out", "idx", "--format", "idx"],
    ] {
        let r = whet(d, args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    let run = read_json(&d.join("run/metrics.json"));
    let images = "idx/test-images-idx3-ubyte.gz";
    let labels = "idx/test-labels-idx1-ubyte.gz";
    for (out, args) in [
        ("ev-png", vec!["png/test"]),
        ("ev-idx", vec![images, "--labels", labels]),
    ] {
        let mut all = vec!["evaluate", "run"];
        all.extend(args);
        all.extend(["--out", out]);
        let r = whet(d, &all);
        assert_eq!(r.code, 0, "{all:?}: {}\n{}", r.stdout, r.stderr);
        let ev = read_json(&d.join(out).join("metrics.json"));
        let (mut got, mut want) = (ev["test"].clone(), run["test"].clone());
        if out == "ev-png" {
            // The folder lists the images class by class, not in the run's order: the mean
            // loss is summed in another order (the last bits differ); the counts do not.
            let (a, b) = (
                got["loss"].as_f64().unwrap(),
                want["loss"].as_f64().unwrap(),
            );
            assert!((a - b).abs() <= 1e-12 * b.abs(), "{out}: loss {a} vs {b}");
            got["loss"] = Value::Null;
            want["loss"] = Value::Null;
        }
        assert_eq!(got, want, "{out}: the metrics differ");
        assert_eq!(ev["test_classes"], run["test_classes"], "{out}");
        assert_eq!(ev["test_samples"], 300, "{out}");
        assert!(d.join(out).join("confusion.png").is_file(), "{out}");
    }
    // IDX images need their labels to be evaluated.
    let r = whet(d, &["evaluate", "run", images, "--out", "ev-nolabels"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--labels"), "{}", r.stderr);

    let r = whet(d, &["predict", "run", images, "--out", "idx.csv"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = whet(d, &["predict", "run", "png/test", "--out", "png.csv"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (ih, ir) = read_csv(&d.join("idx.csv"));
    let mut expected = vec!["row".to_string(), "label".into()];
    expected.extend((0..10).map(|i| format!("p_{i}")));
    assert_eq!(ih, expected);
    assert_eq!(ir.len(), 300);
    for (i, r) in ir.iter().enumerate() {
        assert_eq!(r[0], i.to_string());
    }
    let (_, pr) = read_csv(&d.join("png.csv"));
    assert_eq!(pr.len(), 300);
    for p in &pr {
        // `png/test/<class>/<index:06>.png`: the index is the image's row in the IDX file.
        let index: usize = Path::new(&p[0])
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(ir[index][1..], p[1..], "{p:?}");
    }
}

/// `data.id` names columns of the main table: `whet validate` reads its head and reports a
/// column that is not there at `data.id[i]`, with the table's columns and the closest name.
#[test]
fn data_id_columns_are_checked_at_validate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = std::fs::read_to_string(repo().join("pipelines/flights-origin.yaml")).unwrap();
    let flights = dataset("nycflights13/flights.csv.gz");
    let text = text
        .replace("../datasets/nycflights13/flights.csv.gz", &flights)
        .replace(
            "id: [year, month, day, flight, tailnum]",
            "id: [year, flight, tailnm]",
        );
    assert!(text.contains("tailnm"), "the pipeline's `id` line moved");
    std::fs::write(d.join("run.yaml"), &text).unwrap();
    let r = whet(d, &["validate", "run.yaml"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    for part in [
        "data.id[2]",
        "`tailnm` is not a column of the main table `flights`",
        "`carrier`",
        "did you mean `tailnum`?",
    ] {
        assert!(r.stderr.contains(part), "no {part:?} in: {}", r.stderr);
    }
    assert!(!r.stderr.contains("data.id[1]"), "{}", r.stderr);
    let ok = text.replace("tailnm", "tailnum");
    std::fs::write(d.join("ok.yaml"), ok).unwrap();
    let r = whet(d, &["validate", "ok.yaml"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}
