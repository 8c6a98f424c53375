//! Data options end to end: a `;`-delimited Latin-1 CSV with custom missing markers, image
//! folders in WebP/TIFF/BMP/GIF with a stray file, and named IDX classes.

use crate::util::{dataset, tiny_mnist, whet};
use std::path::Path;

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// 160 rows of `x1;x2;city;species` in Latin-1: `species` follows `x1 + x2`, `city` holds
/// accented names (bytes 0xE9, 0xFC), and `-` / `n/a` mark missing numbers.
fn latin1_table() -> Vec<u8> {
    let mut out = b"x1;x2;city;species\n".to_vec();
    for i in 0..160u32 {
        let x1 = (i * 37 % 101) as f64 / 10.0;
        let x2 = (i * 53 % 97) as f64 / 10.0;
        let city: &[u8] = if i % 3 == 0 { b"Z\xfcrich" } else { b"S\xe9te" };
        let species = if x1 + x2 > 9.5 { "big" } else { "small" };
        let x1 = if i % 17 == 5 {
            "-".to_string()
        } else {
            x1.to_string()
        };
        let x2 = if i % 19 == 7 {
            "n/a".to_string()
        } else {
            x2.to_string()
        };
        out.extend_from_slice(format!("{x1};{x2};").as_bytes());
        out.extend_from_slice(city);
        out.extend_from_slice(format!(";{species}\n").as_bytes());
    }
    out
}

fn table_run(options: &str) -> String {
    format!(
        r#"name: latin
seed: 1
data:
  tables:
    t: {{ path: t.csv{options} }}
  target: {{ column: species }}
steps:
  - impute: {{ numeric: median }}
  - encode: {{ one_hot: [city] }}
  - normalize: {{ method: zscore }}
split: {{ method: random, test: 0.25, validation: 0.1 }}
model: {{ task: binary, hidden: [] }}
train:
  optimizer: {{ adam: {{ lr: 0.05 }} }}
  batch_size: 16
  epochs: 30
"#
    )
}

#[test]
fn semicolon_latin1_csv_with_null_values_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("t.csv"), latin1_table()).unwrap();
    // Without the options the bytes are not UTF-8: the error names the encoding to set.
    std::fs::write(d.join("plain.yaml"), table_run("")).unwrap();
    let r = whet(d, &["run", "plain.yaml", "--out", "plain"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("encoding: windows-1252"), "{}", r.stderr);
    // With the encoding only, the file is one column: the error names the delimiter to set.
    std::fs::write(d.join("enc.yaml"), table_run(", encoding: latin-1")).unwrap();
    let r = whet(d, &["run", "enc.yaml", "--out", "enc"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("delimiter: \";\""), "{}", r.stderr);
    let opts = r#", delimiter: ";", encoding: latin-1, null_values: ["-", "n/a"]"#;
    std::fs::write(d.join("run.yaml"), table_run(opts)).unwrap();
    let r = whet(d, &["validate", "run.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = whet(d, &["run", "run.yaml", "--out", "out"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = read_json(&d.join("out/metrics.json"));
    let acc = m["test"]["accuracy"]
        .as_f64()
        .unwrap_or_else(|| panic!("{m:#}"));
    assert!(acc > 0.8, "a separable target: {acc}");
    // The decoded categories became the one-hot features.
    let manifest = std::fs::read_to_string(d.join("out/manifest.json")).unwrap();
    assert!(
        manifest.contains("Zürich") && manifest.contains("Séte"),
        "{manifest}"
    );
    // New data in the same dialect is read with the run's options.
    let r = whet(d, &["predict", "out", "t.csv", "--out", "pred.csv"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pred = std::fs::read_to_string(d.join("pred.csv")).unwrap();
    assert_eq!(pred.lines().count(), 161, "{pred}");
}

#[test]
fn image_folder_reads_webp_tiff_bmp_gif_and_reports_stray_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (class, colour) in [("dark", [20u8, 30, 40]), ("light", [230u8, 220, 200])] {
        let folder = d.join("imgs").join(class);
        std::fs::create_dir_all(&folder).unwrap();
        for (k, ext) in ["webp", "tiff", "bmp", "gif", "png", "webp", "tif", "bmp"]
            .iter()
            .enumerate()
        {
            let img = image::RgbImage::from_fn(8, 8, |x, y| {
                let v = ((x + y + k as u32) % 5) as u8;
                image::Rgb([colour[0] + v, colour[1] + v, colour[2] + v])
            });
            img.save(folder.join(format!("{k}.{ext}"))).unwrap();
        }
        std::fs::write(folder.join("notes.txt"), "not an image").unwrap();
    }
    let run = r#"name: formats
seed: 2
data:
  images:
    train: { folder: { path: imgs, width: 8, height: 8 } }
    validation: 0.25
model: { task: classification, hidden: [] }
train:
  optimizer: { adam: { lr: 0.05 } }
  batch_size: 4
  epochs: 5
"#;
    std::fs::write(d.join("run.yaml"), run).unwrap();
    let r = whet(d, &["run", "run.yaml", "--out", "out"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = read_json(&d.join("out/manifest.json"));
    let warnings = m["warnings"].to_string();
    assert!(
        warnings.contains("skipped 2 file(s) that are not images") && warnings.contains(".txt"),
        "{warnings}"
    );
    let rows = &m["data"]["images"]["rows"];
    let n: u64 = ["train", "validation"]
        .iter()
        .filter_map(|k| rows[k].as_u64())
        .sum();
    assert_eq!(n, 16, "every image of the 8 per class is read: {m:#}");
    // Only stray files: the error says what was seen and what is read.
    for class in ["dark", "light"] {
        for e in std::fs::read_dir(d.join("imgs").join(class)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x != "txt") {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
    let r = whet(d, &["run", "run.yaml", "--out", "out2"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(".txt") && r.stderr.contains(".webp") && r.stderr.contains(".gif"),
        "{}",
        r.stderr
    );
}

#[test]
fn idx_class_names_reach_metrics_and_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let names = "[zero, one, two, three, four, five, six, seven, eight, nine]";
    let text = tiny_mnist("").replace(
        "train: { idx: { images: ",
        &format!("train: {{ idx: {{ class_names: {names}, images: "),
    );
    assert!(text.contains("class_names"), "{text}");
    std::fs::write(d.join("run.yaml"), &text).unwrap();
    let r = whet(d, &["run", "run.yaml", "--out", "out"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let metrics = std::fs::read_to_string(d.join("out/metrics.json")).unwrap();
    assert!(
        metrics.contains("\"seven\"") && !metrics.contains("\"7\""),
        "{metrics}"
    );
    let test_images = dataset("mnist/t10k-images-idx3-ubyte.gz");
    let r = whet(d, &["predict", "out", &test_images, "--out", "pred.csv"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pred = std::fs::read_to_string(d.join("pred.csv")).unwrap();
    let header = pred.lines().next().unwrap();
    assert!(header.contains("seven"), "{header}");
    // Too few names: the error names the key and the labels found.
    let short = text.replace(names, "[zero, one]");
    std::fs::write(d.join("short.yaml"), short).unwrap();
    let r = whet(d, &["run", "short.yaml", "--out", "short"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("data.images.train.idx.class_names")
            && r.stderr.contains("labels up to 9"),
        "{}",
        r.stderr
    );
}

/// `split: { method: hash }`: a row's split follows from its `data.id` alone, so the same rows
/// reordered and thinned land in the same splits.
#[test]
fn hash_split_keeps_each_row_in_its_split_when_rows_move() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rows: Vec<String> = (0..600)
        .map(|i| {
            format!(
                "r{i},{},{},{}",
                (i * 37 % 101) as f64 / 10.0,
                (i * 13 % 17) as f64,
                (i * 7 % 5 > 2) as u8
            )
        })
        .collect();
    let write = |name: &str, rows: &[&String]| {
        let mut s = String::from("key,x1,x2,y\n");
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        std::fs::write(d.join(name), s).unwrap();
    };
    write("all.csv", &rows.iter().collect::<Vec<_>>());
    // Reversed, every third row left out.
    let thinned: Vec<&String> = rows
        .iter()
        .rev()
        .enumerate()
        .filter(|(k, _)| k % 3 != 0)
        .map(|(_, r)| r)
        .collect();
    write("some.csv", &thinned);
    for (yaml, csv) in [("all.yaml", "all.csv"), ("some.yaml", "some.csv")] {
        std::fs::write(
            d.join(yaml),
            format!(
                r#"name: hashed
seed: 3
data:
  tables:
    main: {csv}
  main: main
  id: [key]
  target: {{ column: y, threshold: 0.5 }}
steps:
  - normalize: {{ method: zscore }}
split: {{ method: hash, test: 0.25, validation: 0.1 }}
model:
  task: binary
  hidden:
    - {{ dense: 4, activation: relu }}
train:
  optimizer: {{ adam: {{ lr: 0.01 }} }}
  epochs: 1
"#
            ),
        )
        .unwrap();
        let out = yaml.replace(".yaml", "");
        let r = whet(d, &["export", yaml, "--out", &out, "--format", "csv"]);
        assert_eq!(r.code, 0, "{yaml}: {}", r.stderr);
    }
    let keys = |run: &str, split: &str| -> std::collections::BTreeSet<String> {
        let text = std::fs::read_to_string(d.join(run).join(format!("{split}.csv"))).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let at = header
            .iter()
            .position(|h| *h == "key")
            .expect("the id column");
        lines
            .map(|l| l.split(',').nth(at).unwrap().to_string())
            .collect()
    };
    let kept: std::collections::BTreeSet<String> = thinned
        .iter()
        .map(|r| r.split(',').next().unwrap().to_string())
        .collect();
    let mut sizes = Vec::new();
    for split in ["train", "validation", "test"] {
        let all = keys("all", split);
        let some = keys("some", split);
        let expect: std::collections::BTreeSet<String> = all.intersection(&kept).cloned().collect();
        assert_eq!(some, expect, "{split}");
        sizes.push(all.len());
    }
    // About 65 / 10 / 25 % of 600 rows.
    assert!((330..450).contains(&sizes[0]), "{sizes:?}");
    assert!((30..95).contains(&sizes[1]), "{sizes:?}");
    assert!((110..190).contains(&sizes[2]), "{sizes:?}");
}
