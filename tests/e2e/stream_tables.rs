//! Issue 17, tables: a main table larger than the memory budget streams (read in chunks by
//! polars' streaming engine, its prepared training rows spilled to Parquet shards on disk) to the
//! same weights as in memory, and exports to the same files; what cannot stream is refused by
//! name.

use crate::budgets::refused;
use crate::util::{dataset, whet};
use std::path::Path;

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The shipped flights table as Parquet (read by whet's own loader, written by polars).
fn flights_parquet(dir: &Path) {
    let spec = whet::tabular::TableSpec::new(dataset("nycflights13/flights.csv.gz"));
    let (mut df, _) = whet::tabular::load_table(&spec).unwrap();
    let f = std::fs::File::create(dir.join("flights.parquet")).unwrap();
    polars::prelude::ParquetWriter::new(f)
        .finish(&mut df)
        .unwrap();
}

/// Flights joined with the weather at the origin and the plane, the fitted steps that gather
/// their statistics batch by batch, a hash split.
fn run_file(split: &str, extra_step: &str) -> String {
    format!(
        r#"name: flights-stream
seed: 5
data:
  tables:
    flights: flights.parquet
    weather: {weather}
    planes: {planes}
  main: flights
  target: {{ column: arr_delay, threshold: 15 }}
  shuffle_buffer: 20000
steps:
  - join: {{ with: weather, on: [origin, time_hour], how: left, cardinality: many_to_one }}
  - join: {{ with: planes, on: [tailnum], how: left, suffix: _plane, cardinality: many_to_one }}
  - exclude: [arr_time, sched_arr_time, dep_delay, dep_time, air_time, year, flight, minute]
{extra_step}  - drop_columns: {{ max_missing: 0.5 }}
  - impute: {{ numeric: mean, categorical: mode, indicator: true }}
  - encode: {{ one_hot: [carrier, origin], max_levels: 8 }}
  - normalize: {{ method: zscore }}
split: {split}
model:
  task: binary
  hidden: [{{ dense: 16, activation: relu }}]
train:
  optimizer: {{ adam: {{ lr: 0.002 }} }}
  batch_size: 512
  epochs: 2
"#,
        weather = dataset("nycflights13/weather.csv.gz"),
        planes = dataset("nycflights13/planes.csv.gz"),
    )
}

/// A folder with the flights as Parquet and `run.yaml` (the run file with a hash split).
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    flights_parquet(dir.path());
    std::fs::write(dir.path().join("run.yaml"), run_file(HASH, "")).unwrap();
    dir
}

/// Where two JSON values first differ (a key path and both values).
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .keys()
            .chain(y.keys())
            .find_map(|k| first_difference(&x[k], &y[k], &format!("{at}.{k}")))
            .or_else(|| (x.len() != y.len()).then(|| format!("{at}: keys differ"))),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{at}[{i}]"))),
        _ => (a != b).then(|| format!("{at}: {a} vs {b}")),
    }
}

/// Two exports' manifests, in memory and streamed: the same rows and preprocessing.
fn same_preparation(memory: &serde_json::Value, streamed: &serde_json::Value) {
    assert_eq!(memory["data"]["rows"], streamed["data"]["rows"]);
    let diff = first_difference(
        &memory["preprocessing"],
        &streamed["preprocessing"],
        "preprocessing",
    );
    assert!(diff.is_none(), "in memory vs streamed: {diff:?}");
}

/// Two exports' CSV split files, byte for byte.
fn same_csv_splits(a: &Path, b: &Path) {
    for split in ["train", "validation", "test"] {
        let file = format!("{split}.csv");
        assert!(
            std::fs::read(a.join(&file)).unwrap() == std::fs::read(b.join(&file)).unwrap(),
            "{file} differs"
        );
    }
}

const HASH: &str = "{ method: hash, test: 0.1, validation: 0.05 }";

#[test]
fn a_table_larger_than_the_budget_streams_and_spills_to_the_same_weights() {
    let dir = fixture();
    let d = dir.path();

    let a = whet(d, &["run", "run.yaml", "--out", "a"]);
    assert_eq!(a.code, 0, "{}", a.stderr);
    let b = whet(
        d,
        &["--max-memory", "40MB", "run", "run.yaml", "--out", "b"],
    );
    assert_eq!(b.code, 0, "{}", b.stderr);

    // In memory, then streamed: the same rows, fitted steps, weights and metrics to the bit.
    let (fa, fb) = (
        read_json(&d.join("a/manifest.json")),
        read_json(&d.join("b/manifest.json")),
    );
    assert_eq!(fa["data"]["rows"], fb["data"]["rows"]);
    let diff = first_difference(&fa["preprocessing"], &fb["preprocessing"], "preprocessing");
    assert!(diff.is_none(), "in memory vs streamed: {diff:?}");
    let wa = std::fs::read(d.join("a/model.safetensors")).unwrap();
    let wb = std::fs::read(d.join("b/model.safetensors")).unwrap();
    assert!(
        wa == wb,
        "the streamed run's weights differ from the in-memory run's"
    );
    let (ma, mb) = (
        read_json(&d.join("a/metrics.json")),
        read_json(&d.join("b/metrics.json")),
    );
    assert_eq!(ma["test"], mb["test"]);
    assert_eq!(ma["validation"], mb["validation"]);

    let streamed = |run: &str| {
        read_json(&d.join(run).join("manifest.json"))["data"]["tables"]["report"]["streamed"]
            .clone()
    };
    assert!(
        streamed("a").is_null(),
        "the default budget holds flights in memory"
    );
    let s = streamed("b");
    assert!(
        s["table_bytes"].as_u64().unwrap() > s["budget"].as_u64().unwrap(),
        "{s}"
    );
    // Classes are fixed by the threshold: one pass per fitted step, one for the matrices.
    assert_eq!(s["passes"], 5, "{s}");
    assert!(s["batches"].as_u64().unwrap() > 1, "{s}");
    // Each pass timed, by name: a fit per fitted step, then the matrices.
    let names: Vec<&str> = s["pass_seconds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "fit steps[3].drop_columns",
            "fit steps[4].impute",
            "fit steps[5].encode",
            "fit steps[6].normalize",
            "features"
        ],
        "{s}"
    );
    // The table's one row group is read in six equal slices of a batch at most at this budget
    // (bounded read-ahead).
    assert_eq!(s["chunk_rows"], 56_130, "{s}");
    // Spilled: every split's rows went to Parquet shards on disk (one per 16,384 rows
    // written), the validation and test rows evaluated from them.
    assert_eq!(
        s["shards"],
        serde_json::json!([17, 2, 2]),
        "rows on disk: {s}"
    );
    // The joins were reported as in memory (summed over the batches).
    let joins = |m: &serde_json::Value| m["data"]["tables"]["report"]["joins"].clone();
    assert_eq!(joins(&fa), joins(&fb));
    assert_eq!(joins(&fb).as_array().unwrap().len(), 2);
    // The training rows' shards are gone after the run.
    let rows = d.join(".cache/rows");
    assert!(
        !rows.exists() || std::fs::read_dir(&rows).unwrap().next().is_none(),
        "the training rows' shards were left in {}",
        rows.display()
    );
}

/// `whet export` of a table over the budget writes every split batch by batch: the files the
/// in-memory export writes (CSV to the byte, Parquet to the value), the identifier and
/// `--keep` columns read chunk by chunk; NPY, which starts with its row count, is refused.
#[test]
fn a_table_larger_than_the_budget_exports_batch_by_batch_to_the_same_files() {
    let dir = fixture();
    let d = dir.path();
    let export = |budget: Option<&str>, out: &str, format: &str| {
        let mut args = budget.map_or(vec![], |b| vec!["--max-memory", b]);
        args.extend([
            "export", "run.yaml", "--out", out, "--format", format, "--keep", "tailnum",
        ]);
        let r = whet(d, &args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        read_json(&d.join(out).join("manifest.json"))
    };
    for format in ["csv", "parquet"] {
        let (memory, streamed) = (
            export(None, &format!("m-{format}"), format),
            export(Some("40MB"), &format!("s-{format}"), format),
        );
        assert!(memory["data"]["tables"]["report"]["streamed"].is_null());
        let s = &streamed["data"]["tables"]["report"]["streamed"];
        assert_eq!(s["passes"], 5, "{s}");
        assert_eq!(s["pass_seconds"][4][0], "write", "{s}");
        assert!(s["shards"].is_null(), "an export writes no shards: {s}");
        same_preparation(&memory, &streamed);
        for split in ["train", "validation", "test"] {
            let file = format!("{split}.{format}");
            let (a, b) = (
                d.join(format!("m-{format}")).join(&file),
                d.join(format!("s-{format}")).join(&file),
            );
            if format == "csv" {
                assert!(
                    std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
                    "{file} differs"
                );
            } else {
                let read = |p: &Path| {
                    use polars::prelude::SerReader;
                    polars::prelude::ParquetReader::new(std::fs::File::open(p).unwrap())
                        .finish()
                        .unwrap()
                };
                let (a, b) = (read(&a), read(&b));
                assert_eq!(a.get_column_names()[..2], ["row", "tailnum"]);
                assert!(a.height() > 10_000, "{file}: {} rows", a.height());
                assert!(a.equals_missing(&b), "{file} differs");
            }
            // The manifest lists the file with its size and hash.
            let listed = streamed["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == file.as_str())
                .unwrap_or_else(|| panic!("{file} not listed"));
            assert_eq!(
                listed["bytes"].as_u64().unwrap(),
                std::fs::metadata(&b).unwrap().len()
            );
        }
    }
    let e = whet(
        d,
        &[
            "--max-memory",
            "40MB",
            "export",
            "run.yaml",
            "--out",
            "npy",
            "--format",
            "npy",
        ],
    );
    refused(&e, &["--format npy", "Parquet or CSV", "--max-memory"]);
}

/// Medians, quartiles and clip bounds of more training values than the budget lets a fit hold
/// take more passes over the streamed table, to the in-memory export's files (same bytes).
#[test]
fn medians_and_quantiles_over_the_budget_stream_to_the_same_files() {
    let dir = fixture();
    let d = dir.path();
    let yaml = run_file(HASH, "  - clip: { lower: 0.02, upper: 0.98 }\n")
        .replace("numeric: mean", "numeric: median")
        .replace("method: zscore", "method: robust");
    std::fs::write(d.join("quantiles.yaml"), yaml).unwrap();
    let export = |budget: Option<&str>, out: &str| {
        let mut args = budget.map_or(vec![], |b| vec!["--max-memory", b]);
        args.extend(["export", "quantiles.yaml", "--out", out, "--format", "csv"]);
        let r = whet(d, &args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        read_json(&d.join(out).join("manifest.json"))
    };
    let (memory, streamed) = (export(None, "m"), export(Some("40MB"), "s"));
    same_preparation(&memory, &streamed);
    let passes: Vec<String> = streamed["data"]["tables"]["report"]["streamed"]["pass_seconds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap().to_string())
        .collect();
    for step in ["clip", "impute", "normalize"] {
        assert!(
            passes.iter().any(|p| p.starts_with("fit steps[")
                && p.contains(step)
                && p.ends_with("(pass 2)")),
            "{step}: {passes:?}"
        );
    }
    same_csv_splits(&d.join("m"), &d.join("s"));
}

#[test]
fn what_cannot_stream_is_refused_by_name_before_reading() {
    let dir = fixture();
    let d = dir.path();
    let budget = ["--max-memory", "40MB"];
    let run = |yaml: String| {
        std::fs::write(d.join("run.yaml"), yaml).unwrap();
        let mut args = budget.to_vec();
        args.extend(["run", "run.yaml", "--out", "o", "--no-cache"]);
        whet(d, &args)
    };
    // A split that sorts or shuffles every row.
    let r = run(run_file(
        "{ method: time, order: time_hour, test: 0.2 }",
        "",
    ));
    refused(
        &r,
        &["split.method", "method: hash", "more than the budget"],
    );
    // A step that looks at every row at once.
    let r = run(run_file(HASH, "  - audit: { max_missing: 0.9 }\n"));
    refused(&r, &["steps[3].audit", "more than the budget"]);
}

/// A CSV main table over the budget is converted to Parquet a part at a time, then streams:
/// `whet export` writes the in-memory export's CSV files to the byte, the conversion is the
/// first pass, and its Parquet file is gone afterwards. A malformed cell far into the file is
/// named by its line, as in memory.
#[test]
fn a_csv_table_larger_than_the_budget_is_converted_and_streams_to_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = run_file(HASH, "").replace(
        "flights: flights.parquet",
        &format!("flights: {}", dataset("nycflights13/flights.csv.gz")),
    );
    std::fs::write(d.join("run.yaml"), &csv).unwrap();
    let export = |budget: Option<&str>, out: &str| {
        let mut args = budget.map_or(vec![], |b| vec!["--max-memory", b]);
        args.extend([
            "export", "run.yaml", "--out", out, "--format", "csv", "--keep", "tailnum",
        ]);
        let r = whet(d, &args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        read_json(&d.join(out).join("manifest.json"))
    };
    let (memory, streamed) = (export(None, "m"), export(Some("40MB"), "s"));
    assert!(memory["data"]["tables"]["report"]["streamed"].is_null());
    let s = &streamed["data"]["tables"]["report"]["streamed"];
    assert_eq!(s["pass_seconds"][0][0], "csv to parquet", "{s}");
    assert_eq!(s["passes"], 6, "{s}");
    same_preparation(&memory, &streamed);
    same_csv_splits(&d.join("m"), &d.join("s"));
    let rows = d.join(".cache/rows");
    assert!(
        !rows.exists() || std::fs::read_dir(&rows).unwrap().next().is_none(),
        "the converted table was left in {}",
        rows.display()
    );

    // A cell that is not a number on line 300,001 of the file (in a later part than the
    // first): the same error, naming the line, both ways.
    let text = {
        use std::io::Read;
        let mut t = String::new();
        flate2::read::GzDecoder::new(
            std::fs::File::open(dataset("nycflights13/flights.csv.gz")).unwrap(),
        )
        .read_to_string(&mut t)
        .unwrap();
        t
    };
    let mut lines: Vec<&str> = text.lines().collect();
    let bad = lines[300_000].replacen(",", ",x", 1);
    lines[300_000] = &bad;
    std::fs::write(d.join("bad.csv"), lines.join("\n")).unwrap();
    std::fs::write(
        d.join("run.yaml"),
        csv.replace(&dataset("nycflights13/flights.csv.gz"), "bad.csv"),
    )
    .unwrap();
    let errors: Vec<String> = [None, Some("40MB")]
        .into_iter()
        .map(|budget| {
            let mut args = budget.map_or(vec![], |b| vec!["--max-memory", b]);
            args.extend(["export", "run.yaml", "--out", "e", "--format", "csv"]);
            let r = whet(d, &args);
            assert_ne!(r.code, 0);
            assert!(r.stderr.contains("line 300001"), "{}", r.stderr);
            r.stderr
        })
        .collect();
    assert_eq!(errors[0], errors[1]);
}

/// `whet predict`, `whet apply` and `whet evaluate` of a file larger than the budget read it a
/// chunk of rows at a time (a CSV file converted to Parquet first) and write their outputs
/// batch by batch: the same files and numbers as in memory; what cannot be written in batches
/// is refused by name.
#[test]
fn new_data_larger_than_the_budget_is_predicted_applied_and_evaluated_batch_by_batch() {
    let dir = fixture();
    let d = dir.path();
    let r = whet(d, &["run", "run.yaml", "--out", "r", "--no-cache"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let both = |args: &[&str], out: &str| {
        let mut runs = Vec::new();
        for (budget, name) in [(None, "m"), (Some("40MB"), "s")] {
            let mut a: Vec<&str> = budget.map_or(vec![], |b| vec!["--max-memory", b]);
            a.extend(args);
            let out = format!("{name}-{out}");
            a.extend(["--out", &out]);
            let r = whet(d, &a);
            assert_eq!(r.code, 0, "{}", r.stderr);
            // Only the command over the budget reads in batches (and says so).
            assert_eq!(
                r.stdout
                    .contains("over the memory budget: read a chunk of rows at a time"),
                budget.is_some(),
                "{}",
                r.stdout
            );
            runs.push(d.join(out));
        }
        (runs.remove(0), runs.remove(0))
    };
    let same_bytes = |a: &Path, b: &Path| {
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{} and {} differ",
            a.display(),
            b.display()
        );
    };
    // Predictions, every row with its identifier and a kept column.
    let (m, s) = both(
        &["predict", "r", "flights.parquet", "--keep", "tailnum"],
        "p.csv",
    );
    same_bytes(&m, &s);
    let predicted = m.clone();
    let text = std::fs::read_to_string(&m).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        "row,tailnum,label,p_arr_delay > 15"
    );
    assert_eq!(text.lines().count(), 336_776 + 1);
    let (m, s) = both(&["predict", "r", "flights.parquet"], "p.parquet");
    let read = |p: &Path| {
        use polars::prelude::SerReader;
        polars::prelude::ParquetReader::new(std::fs::File::open(p).unwrap())
            .finish()
            .unwrap()
    };
    assert!(
        read(&m).equals_missing(&read(&s)),
        "the Parquet predictions differ"
    );
    // The features, applied.
    for format in ["csv", "parquet"] {
        let (m, s) = both(
            &[
                "apply",
                "r/manifest.json",
                "flights.parquet",
                "--format",
                format,
                "--keep",
                "tailnum",
            ],
            format,
        );
        let file = format!("applied.{format}");
        if format == "csv" {
            same_bytes(&m.join(&file), &s.join(&file));
        } else {
            let (a, b) = (read(&m.join(&file)), read(&s.join(&file)));
            // Every row but those whose target is missing.
            assert_eq!(a.height(), 327_346);
            assert!(a.equals_missing(&b), "{file} differs");
        }
    }
    // Measured on the new rows: the same metrics.
    let (m, s) = both(&["evaluate", "r", "flights.parquet"], "e");
    let (a, b) = (
        read_json(&m.join("metrics.json")),
        read_json(&s.join("metrics.json")),
    );
    assert_eq!(a["test"], b["test"]);
    assert_eq!(a["test_samples"], b["test_samples"]);

    // A CSV file over the budget is converted to Parquet first: the same predictions as the
    // Parquet file's, both ways.
    let csv = dataset("nycflights13/flights.csv.gz");
    let (m, s) = both(&["predict", "r", &csv, "--keep", "tailnum"], "c.csv");
    same_bytes(&m, &s);
    same_bytes(&predicted, &s);

    // NPY starts with its row count.
    let over = ["--max-memory", "40MB"];
    let r = whet(
        d,
        &[
            &over[..],
            &["apply", "r/manifest.json", "flights.parquet", "--out", "n"],
            &["--format", "npy"],
        ]
        .concat(),
    );
    refused(&r, &["--format npy", "Parquet or CSV", "--max-memory"]);
}

/// The run file's `memory:` sets the budget as `--max-memory` does (so the table streams), the
/// option wins over it, and a value that is not a size is refused at its line.
#[test]
fn the_run_files_memory_key_sets_the_budget() {
    let dir = fixture();
    let d = dir.path();
    let yaml = std::fs::read_to_string(d.join("run.yaml")).unwrap();
    let with =
        |memory: &str| yaml.replacen("seed: 5\n", &format!("seed: 5\nmemory: {memory}\n"), 1);
    std::fs::write(d.join("small.yaml"), with("40MB")).unwrap();
    let streamed = |out: &str| {
        read_json(&d.join(out).join("manifest.json"))["data"]["tables"]["report"]["streamed"]
            .clone()
    };
    let r = whet(d, &["export", "small.yaml", "--out", "a"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = streamed("a");
    assert_eq!(s["budget"], 40_000_000, "{s}");
    // `--max-memory` wins: the table fits in its budget, and is read whole.
    let r = whet(
        d,
        &["--max-memory", "4GiB", "export", "small.yaml", "--out", "b"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(streamed("b").is_null());
    // The budget is the run file's in its refusals too.
    std::fs::write(d.join("tiny.yaml"), with("1MB")).unwrap();
    let r = whet(d, &["run", "tiny.yaml", "--out", "c", "--no-cache"]);
    refused(&r, &["set with `memory:` in the run file"]);
    std::fs::write(d.join("bad.yaml"), with("lots")).unwrap();
    let r = whet(d, &["validate", "bad.yaml"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("bad.yaml:3:") && r.stderr.contains("`lots` is not a memory size"),
        "{}",
        r.stderr
    );
}
