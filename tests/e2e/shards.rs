//! Sharded image sets (issue 17): `whet export --format webdataset | parquet-shards` and the
//! `data.images.*.shards` source. A run on the exported shards trains on the same images in the
//! same order as the run they were exported from, so it gives the same weights to the bit.

use crate::util::{dataset, whet};
use std::path::Path;

/// A small MNIST run file with a test set and no validation split, so the export's `train/`
/// is every training image the run saw (a validation split would be drawn again on load).
fn run_file(train: &str, test: &str) -> String {
    format!(
        r#"name: shards
seed: 5
data:
  images:
    train: {train}
    test: {test}
augment:
  mode: online
  ops:
    - rotate: {{ degrees: 10, p: 0.5 }}
model:
  task: classification
  hidden:
    - {{ dense: 32, activation: relu }}
train:
  optimizer: {{ adam: {{ lr: 0.003 }} }}
  batch_size: 32
  epochs: 2
"#
    )
}

fn idx_source(which: &str, limit: usize) -> String {
    format!(
        "{{ idx: {{ images: {}, labels: {} }}, limit: {limit} }}",
        dataset(&format!("mnist/{which}-images-idx3-ubyte.gz")),
        dataset(&format!("mnist/{which}-labels-idx1-ubyte.gz"))
    )
}

/// `whet export idx.yaml --out OUT --format FORMAT --shard-size SIZE` in `d`, which must succeed.
fn export_shards(d: &Path, out: &str, format: &str, size: &str) {
    let r = whet(
        d,
        &[
            "export",
            "idx.yaml",
            "--out",
            out,
            "--format",
            format,
            "--shard-size",
            size,
        ],
    );
    assert_eq!(r.code, 0, "{format}: {}", r.stderr);
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn runs_on_exported_shards_give_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("idx.yaml"),
        run_file(&idx_source("train", 600), &idx_source("t10k", 200)),
    )
    .unwrap();
    let r = whet(d, &["run", "idx.yaml", "--out", "run-idx"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let weights = std::fs::read(d.join("run-idx/model.safetensors")).unwrap();
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("run-idx/metrics.json")).unwrap()).unwrap();
    for (format, ext, size) in [
        ("webdataset", "tar", "400KB"),
        ("parquet-shards", "parquet", "100KB"),
    ] {
        let out = format!("exp-{ext}");
        export_shards(d, &out, format, size);
        let train = files_in(&d.join(&out).join("train"));
        let n = train.len();
        assert!(n > 1, "{format}: one shard only: {train:?}");
        assert_eq!(train[0], format!("train-00000-of-{n:05}.{ext}"), "{format}");
        let test = files_in(&d.join(&out).join("test"));
        assert!(test[0].starts_with("test-00000-of-"), "{format}: {test:?}");
        // Shard sizes hold (a shard has at least one image; MNIST PNGs are < 1 KB).
        let cap: u64 = if ext == "tar" { 400_000 } else { 100_000 };
        for f in &train {
            let len = std::fs::metadata(d.join(&out).join("train").join(f))
                .unwrap()
                .len();
            assert!(len <= cap + 2048, "{format}: {f} is {len} bytes");
        }
        let manifest = std::fs::read_to_string(d.join(&out).join("manifest.json")).unwrap();
        assert!(manifest.contains("\"train/\""), "{format}: {manifest}");

        // Train from the folder of shards and test from a pattern.
        let yaml = format!("{ext}.yaml");
        std::fs::write(
            d.join(&yaml),
            run_file(
                &format!("{{ shards: {{ path: {out}/train, width: 28, height: 28 }} }}"),
                &format!(
                    "{{ shards: {{ path: {out}/test/test-*.{ext}, width: 28, height: 28 }} }}"
                ),
            ),
        )
        .unwrap();
        let run_out = format!("run-{ext}");
        let r = whet(d, &["run", &yaml, "--out", &run_out]);
        assert_eq!(r.code, 0, "{format}: {}", r.stderr);
        let got = std::fs::read(d.join(&run_out).join("model.safetensors")).unwrap();
        assert!(
            got == weights,
            "{format}: the weights differ from the IDX run's"
        );
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join(&run_out).join("metrics.json")).unwrap())
                .unwrap();
        assert_eq!(m["test"], metrics["test"], "{format}");
        assert_eq!(m["test_classes"], metrics["test_classes"], "{format}");
    }
    // `whet predict` scores shards (a folder, a file, a pattern) as it scores the IDX file the
    // test shards came from: the same labels and probabilities, row for row (up to the last
    // bits: batches of other sizes sum in another order).
    let r = whet(
        d,
        &["export", "idx.yaml", "--out", "exp-idx", "--format", "idx"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = whet(
        d,
        &[
            "predict",
            "run-idx",
            "exp-idx/test-images-idx3-ubyte.gz",
            "--out",
            "idx.csv",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let scores = |file: &str| -> Vec<String> {
        std::fs::read_to_string(d.join(file))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split_once(',').unwrap().1.to_string())
            .collect()
    };
    let want = scores("idx.csv");
    assert_eq!(want.len(), 200);
    for (i, input) in ["exp-tar/test", "exp-parquet/test/test-*.parquet"]
        .iter()
        .enumerate()
    {
        let out = format!("shards-{i}.csv");
        let r = whet(d, &["predict", "run-idx", input, "--out", &out]);
        assert_eq!(r.code, 0, "{input}: {}", r.stderr);
        let got = scores(&out);
        assert_eq!(got.len(), want.len(), "{input}");
        for (row, (g, w)) in got.iter().zip(&want).enumerate() {
            let (g, w): (Vec<&str>, Vec<&str>) = (g.split(',').collect(), w.split(',').collect());
            assert_eq!(g[0], w[0], "{input}: row {row}: label");
            for (a, b) in g[1..].iter().zip(&w[1..]) {
                let (a, b): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
                assert!((a - b).abs() <= 1e-5, "{input}: row {row}: {a} vs {b}");
            }
        }
        let text = std::fs::read_to_string(d.join(&out)).unwrap();
        let first = text.lines().nth(1).unwrap();
        assert!(
            first.contains("test-00000-of-") && first.contains("00000000.png"),
            "{first}"
        );
    }
    let r = whet(
        d,
        &[
            "predict",
            "run-idx",
            "exp-tar/test",
            "exp-idx/test-images-idx3-ubyte.gz",
            "--out",
            "mixed.csv",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("names image shards"), "{}", r.stderr);
    // `whet evaluate` on the test shards measures what it measures on the IDX files.
    let r = whet(
        d,
        &[
            "evaluate",
            "run-idx",
            "exp-idx/test-images-idx3-ubyte.gz",
            "--labels",
            "exp-idx/test-labels-idx1-ubyte.gz",
            "--out",
            "ev-idx",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let test_metrics = |dir: &str| -> serde_json::Value {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join(dir).join("metrics.json")).unwrap())
                .unwrap();
        m["test"].clone()
    };
    let want = test_metrics("ev-idx");
    assert!(want["accuracy"].as_f64().is_some(), "{want}");
    for (i, input) in ["exp-tar/test", "exp-parquet/test/test-*.parquet"]
        .iter()
        .enumerate()
    {
        let out = format!("ev-{i}");
        let r = whet(d, &["evaluate", "run-idx", input, "--out", &out]);
        assert_eq!(r.code, 0, "{input}: {}", r.stderr);
        let got = test_metrics(&out);
        assert_eq!(got["accuracy"], want["accuracy"], "{input}");
        let (a, b) = (
            got["loss"].as_f64().unwrap(),
            want["loss"].as_f64().unwrap(),
        );
        assert!((a - b).abs() <= 1e-6, "{input}: loss {a} vs {b}");
    }
    // The same export twice gives the same shards, byte for byte.
    export_shards(d, "again", "webdataset", "400KB");
    for f in files_in(&d.join("again/train")) {
        assert!(
            std::fs::read(d.join("again/train").join(&f)).unwrap()
                == std::fs::read(d.join("exp-tar/train").join(&f)).unwrap(),
            "{f} differs between two exports"
        );
    }
}

#[test]
fn shard_options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("idx.yaml"),
        run_file(&idx_source("train", 100), &idx_source("t10k", 50)),
    )
    .unwrap();
    let r = whet(
        d,
        &[
            "export",
            "idx.yaml",
            "--out",
            "x",
            "--format",
            "png",
            "--shard-size",
            "1MB",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--shard-size"), "{}", r.stderr);
    let r = whet(d, &["export", "idx.yaml", "--out", "x", "--format", "tar"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("webdataset"), "{}", r.stderr);
    // A pattern that matches nothing is found at validation, at its key.
    std::fs::write(
        d.join("none.yaml"),
        run_file(
            "{ shards: { path: nowhere/train-*.tar, width: 28, height: 28 } }",
            &idx_source("t10k", 50),
        ),
    )
    .unwrap();
    let r = whet(d, &["validate", "none.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("data.images.train.shards.path") && r.stderr.contains("no shard"),
        "{}",
        r.stderr
    );
    // Two sources at once.
    std::fs::write(
        d.join("two.yaml"),
        run_file(
            &format!(
                "{{ shards: {{ path: a.tar, width: 28, height: 28 }}, idx: {{ images: {}, labels: {} }} }}",
                dataset("mnist/t10k-images-idx3-ubyte.gz"),
                dataset("mnist/t10k-labels-idx1-ubyte.gz")
            ),
            &idx_source("t10k", 50),
        ),
    )
    .unwrap();
    let r = whet(d, &["validate", "two.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("exactly one of `idx`, `folder` and `shards`"),
        "{}",
        r.stderr
    );
}

/// A run on shards with a `shuffle_buffer`, a validation split and a test set; `augment` adds
/// an online augmentation, otherwise the images are standardised.
fn buffered_run(train: &str, test: &str, augment: bool) -> String {
    let (normalize, augment) = if augment {
        (
            "unit",
            "augment:\n  mode: online\n  ops:\n    - rotate: { degrees: 10, p: 0.5 }\n",
        )
    } else {
        ("standardize", "")
    };
    format!(
        r#"name: streamed
seed: 8
data:
  images:
    train: {{ shards: {{ path: {train}, width: 28, height: 28, shuffle_buffer: 2000 }} }}
    test: {{ shards: {{ path: {test}, width: 28, height: 28 }} }}
    validation: 0.1
    normalize: {normalize}
{augment}model:
  task: classification
  hidden:
    - {{ dense: 32, activation: relu }}
train:
  optimizer: {{ adam: {{ lr: 0.003 }} }}
  batch_size: 64
  epochs: 2
"#
    )
}

#[test]
fn training_streams_shards_larger_than_the_memory_budget_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("idx.yaml"),
        run_file(&idx_source("train", 12_000), &idx_source("t10k", 2_000)),
    )
    .unwrap();
    for (format, ext, augment) in [
        ("webdataset", "tar", true),
        ("parquet-shards", "parquet", false),
    ] {
        let out = format!("exp-{ext}");
        export_shards(d, &out, format, "200KB");
        let shards = files_in(&d.join(&out).join("train")).len();
        assert!(shards > 20, "{format}: {shards} shards");
        let yaml = format!("buffered-{ext}.yaml");
        std::fs::write(
            d.join(&yaml),
            buffered_run(&format!("{out}/train"), &format!("{out}/test"), augment),
        )
        .unwrap();
        // 10,800 training images of 28×28 take 42 MB as bytes and floats: in memory without a
        // budget, streamed under 20 MB (validation and test sets still fit).
        let memory = format!("memory-{ext}");
        let r = whet(d, &["run", &yaml, "--out", &memory]);
        assert_eq!(r.code, 0, "{format}: {}", r.stderr);
        let streamed = format!("streamed-{ext}");
        let r = whet(
            d,
            &["--max-memory", "20MB", "run", &yaml, "--out", &streamed],
        );
        assert_eq!(r.code, 0, "{format}: {}", r.stderr);
        let read = |run: &str, file: &str| std::fs::read(d.join(run).join(file)).unwrap();
        assert!(
            read(&memory, "model.safetensors") == read(&streamed, "model.safetensors"),
            "{format}: streaming changed the weights"
        );
        let json = |run: &str, file: &str| -> serde_json::Value {
            serde_json::from_slice(&read(run, file)).unwrap()
        };
        let (a, b) = (
            json(&memory, "metrics.json"),
            json(&streamed, "metrics.json"),
        );
        assert_eq!(a["test"], b["test"], "{format}");
        assert_eq!(a["validation"], b["validation"], "{format}");
        let (a, b) = (
            json(&memory, "manifest.json"),
            json(&streamed, "manifest.json"),
        );
        let summary = |m: &serde_json::Value| m["data"]["images"].clone();
        assert!(summary(&a)["streamed"].is_null(), "{format}: {a}");
        let s = &summary(&b)["streamed"];
        assert_eq!(s["shards"], shards, "{format}: {b}");
        assert_eq!(s["shuffle_buffer"], 2000, "{format}: {b}");
        let resident = s["resident"].as_u64().unwrap() as usize;
        assert!((3..shards).contains(&resident), "{format}: {b}");
        assert_eq!(summary(&a)["rows"], summary(&b)["rows"], "{format}");
        // `whet export` of a streamed run writes the training shards one source shard at a
        // time: the same files as from memory. Other formats are refused, naming these.
        for (budget, to) in [(None, "again-memory"), (Some("20MB"), "again-streamed")] {
            let mut args = budget.map_or(vec![], |b| vec!["--max-memory", b]);
            args.extend([
                "export",
                &yaml,
                "--out",
                to,
                "--format",
                format,
                "--shard-size",
                "300KB",
            ]);
            let r = whet(d, &args);
            assert_eq!(r.code, 0, "{format} {budget:?}: {}", r.stderr);
        }
        for split in ["train", "validation", "test"] {
            let (a, b) = (
                d.join("again-memory").join(split),
                d.join("again-streamed").join(split),
            );
            let names = files_in(&a);
            assert!(!names.is_empty(), "{format} {split}");
            assert_eq!(names, files_in(&b), "{format} {split}");
            for f in &names {
                assert!(
                    std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
                    "{format}: {split}/{f} differs"
                );
            }
        }
        let r = whet(
            d,
            &[
                "--max-memory",
                "20MB",
                "export",
                &yaml,
                "--out",
                "png",
                "--format",
                "png",
            ],
        );
        assert_eq!(r.code, 2, "{format}: {}", r.stderr);
        assert!(
            r.stderr.contains("stream") && r.stderr.contains("--format webdataset"),
            "{format}: {}",
            r.stderr
        );
        for to in ["again-memory", "again-streamed"] {
            std::fs::remove_dir_all(d.join(to)).unwrap();
        }
    }
    // What cannot stream is refused, naming the key.
    let text = buffered_run("exp-tar/train", "exp-tar/test", true);
    let refused = |name: &str, yaml: String, args: &[&str], expect: &[&str]| {
        std::fs::write(d.join(name), yaml).unwrap();
        let mut all = args.to_vec();
        all.extend(["run", name, "--out", "refused"]);
        let r = whet(d, &all);
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        for e in expect {
            assert!(r.stderr.contains(e), "{name}: {e}: {}", r.stderr);
        }
    };
    refused(
        "zero.yaml",
        text.replace("shuffle_buffer: 2000", "shuffle_buffer: 0"),
        &[],
        &["data.images.train.shards.shuffle_buffer", "at least 1"],
    );
    refused(
        "test-buffer.yaml",
        text.replace(
            "height: 28 } }\n    validation",
            "height: 28, shuffle_buffer: 5 } }\n    validation",
        ),
        &[],
        &["data.images.test.shards.shuffle_buffer"],
    );
    refused(
        "offline.yaml",
        text.replace("mode: online", "mode: offline\n  copies: 1"),
        &[],
        &["mode: offline", "shuffle_buffer"],
    );
    refused(
        "whole.yaml",
        text.replace("shuffle_buffer: 2000", "shuffle_buffer: 100000"),
        &["--max-memory", "20MB"],
        &["shuffle_buffer: 100000", "full shuffle"],
    );
}
