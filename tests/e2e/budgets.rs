//! Issue 14, classes 5 and 7: work too big for the memory budget is refused before it
//! allocates (exit 2, a message with the estimate, the budget and the key to change, never an
//! allocation abort), every count is bounded at `validate` with the key's line, and column-wise
//! stages stay linear in the number of columns. `--max-memory` keeps each case independent of
//! the machine.

use crate::catalogue::{good_csv, idx_bytes, img_run, tab_run};
use crate::util::{Run, tiny_mnist, whet};
use std::fmt::Write as _;
use std::path::Path;

/// Writes `files` (name, bytes) into a fresh folder.
fn case(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

/// Exit 2 (not a signal: `code` is -1 then), no panic or internal error, and every fragment.
pub(crate) fn refused(r: &Run, fragments: &[&str]) {
    assert_eq!(r.code, 2, "exit code (stderr: {})", r.stderr);
    for bad in ["panicked", "internal error", "memory allocation of"] {
        assert!(!r.stderr.contains(bad), "{bad}: {}", r.stderr);
    }
    for f in fragments {
        assert!(r.stderr.contains(f), "`{f}` missing from: {}", r.stderr);
    }
}

/// A budget refusal: the estimate, the budget, where it came from and the key.
fn over_budget(r: &Run, key: &str) {
    refused(
        r,
        &[
            "needs about",
            "more than the budget of",
            key,
            "--max-memory",
        ],
    );
}

fn run_in(dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["run", "run.yaml", "--out", "out", "--no-cache"];
    args.extend_from_slice(extra);
    whet(dir, &args)
}

// ---- bounds at validate ----

#[test]
fn epochs_of_u64_max_are_refused_at_validate_with_the_line() {
    let d = case(&[(
        "run.yaml",
        tiny_mnist("")
            .replace("epochs: 3", "epochs: 18446744073709551615")
            .as_bytes(),
    )]);
    let r = whet(d.path(), &["validate", "run.yaml"]);
    refused(&r, &["train.epochs", "1 to 1000000 epochs", "run.yaml:"]);
}

#[test]
fn units_of_u64_max_and_a_billion_are_refused_at_validate() {
    for units in ["18446744073709551615", "1000000000"] {
        let d = case(&[(
            "run.yaml",
            tiny_mnist("")
                .replace("dense: 32", &format!("dense: {units}"))
                .as_bytes(),
        )]);
        let r = whet(d.path(), &["validate", "run.yaml"]);
        refused(&r, &["model.hidden[0].dense", "1 to 1000000 units"]);
    }
}

#[test]
fn a_huge_batch_size_is_refused_at_validate() {
    let d = case(&[("run.yaml", tiny_mnist("").as_bytes())]);
    let r = whet(
        d.path(),
        &[
            "validate",
            "run.yaml",
            "--set",
            "train.batch_size=1000000000000",
        ],
    );
    refused(&r, &["train.batch_size", "at most 10000000"]);
}

#[test]
fn shifts_of_1e30_pixels_are_refused_at_validate() {
    for (op, key) in [
        ("elastic: { alpha: 1e30, sigma: 4 }", "elastic.alpha"),
        ("translate: { pixels: 1e30 }", "translate.pixels"),
        (
            "affine: { translate_pixels: 1e30 }",
            "affine.translate_pixels",
        ),
        ("translate: { fraction: 1e30 }", "translate.fraction"),
    ] {
        let text = tiny_mnist("").replace("rotate: { degrees: 10, p: 0.5 }", op);
        let d = case(&[("run.yaml", text.as_bytes())]);
        let r = whet(d.path(), &["validate", "run.yaml"]);
        refused(&r, &[key, "expected"]);
    }
}

#[test]
fn huge_folder_image_sizes_are_refused_at_validate_without_overflow() {
    for (w, h) in [("100000", "100000"), ("18446744073709551615", "2")] {
        let src = format!("{{ folder: {{ path: imgs, width: {w}, height: {h} }} }}");
        let d = case(&[("run.yaml", img_run(&src).as_bytes())]);
        std::fs::create_dir_all(d.path().join("imgs/a")).unwrap();
        let r = whet(d.path(), &["validate", "run.yaml"]);
        refused(&r, &["data.images.train.folder", "out of range"]);
    }
}

#[test]
fn infer_rows_of_1e12_is_refused_at_validate() {
    let tables = "    main: { path: main.csv, infer_rows: 1000000000000 }";
    let d = case(&[
        ("main.csv", good_csv(50).as_bytes()),
        (
            "run.yaml",
            tab_run(
                tables,
                "{ column: y, threshold: 0.5 }",
                "  - normalize: { method: zscore }",
            )
            .as_bytes(),
        ),
    ]);
    let r = whet(d.path(), &["validate", "run.yaml"]);
    refused(&r, &["data.tables.main.infer_rows", "1 to 1000000 rows"]);
}

#[test]
fn a_grid_of_a_million_variants_is_refused_at_validate_before_expanding() {
    let ten = "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]";
    let grid: Vec<String> = ["epochs", "batch_size", "a", "b", "c", "d"]
        .iter()
        .map(|k| format!("        train.{k}: {ten}"))
        .collect();
    let extra = format!(
        "ablation:\n  variants:\n    - name: big\n      grid:\n{}\n",
        grid.join("\n")
    );
    let d = case(&[("run.yaml", tiny_mnist(&extra).as_bytes())]);
    let r = whet(d.path(), &["validate", "run.yaml"]);
    refused(
        &r,
        &["1000000", "limit of 10000", "10 x 10 x 10 x 10 x 10 x 10"],
    );
}

#[test]
fn huge_offline_copies_in_a_grid_are_refused_at_validate() {
    let extra = "ablation:\n  variants:\n    - name: copies\n      grid:\n        augment.copies: [2, 100000000]\n";
    let text = tiny_mnist(extra).replace("mode: online", "mode: offline");
    let d = case(&[("run.yaml", text.as_bytes())]);
    let r = whet(d.path(), &["validate", "run.yaml"]);
    refused(
        &r,
        &["augment.copies", "copies <= 1000", "copies-100000000"],
    );
}

// ---- estimates against the budget ----

#[test]
fn three_30000_unit_layers_are_refused_before_the_data_are_loaded() {
    let text = tiny_mnist("").replace(
        "    - { dense: 32, activation: relu }",
        "    - { dense: 30000 }\n    - { dense: 30000 }\n    - { dense: 30000 }",
    );
    let d = case(&[("run.yaml", text.as_bytes())]);
    let r = run_in(d.path(), &["--max-memory", "8GiB"]);
    over_budget(&r, "`model.hidden`");
    refused(&r, &["GiB", "8.0 GiB", "set with --max-memory"]);
    assert!(!d.path().join("out/model.safetensors").exists());
}

#[test]
fn a_tight_ulimit_gives_a_budget_error_not_an_abort() {
    let text = tiny_mnist("").replace(
        "    - { dense: 32, activation: relu }",
        "    - { dense: 30000 }\n    - { dense: 30000 }\n    - { dense: 30000 }",
    );
    let d = case(&[("run.yaml", text.as_bytes())]);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 4000000; exec '{}' run run.yaml --out out --no-cache --quiet",
            env!("CARGO_BIN_EXE_whet")
        ))
        .current_dir(d.path())
        .env("WHET_CACHE_DIR", d.path().join(".cache"))
        .output()
        .unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    over_budget(&r, "`model.hidden`");
    refused(&r, &["ulimit -v"]);
}

#[test]
fn a_batch_too_big_for_the_budget_points_at_the_batch_size() {
    let steps = "  - normalize: { method: zscore }";
    let text = tab_run("    main: main.csv", "{ column: y, threshold: 0.5 }", steps)
        .replace("dense: 4", "dense: 3000")
        .replace("batch_size: 16", "batch_size: 5000");
    let d = case(&[
        ("main.csv", good_csv(8000).as_bytes()),
        ("run.yaml", text.as_bytes()),
    ]);
    let r = run_in(d.path(), &["--max-memory", "40MB"]);
    over_budget(&r, "`train.batch_size`");
}

#[test]
fn offline_copies_of_60k_images_are_refused_before_expanding() {
    let text = tiny_mnist("")
        .replace("limit: 400 ", "")
        .replace("mode: online", "mode: offline\n  copies: 1000");
    let d = case(&[("run.yaml", text.as_bytes())]);
    let r = run_in(d.path(), &["--max-memory", "4GiB"]);
    over_budget(&r, "`augment.copies`");
    refused(&r, &["1000 offline copies"]);
}

#[test]
fn an_idx_of_2x32000x32000_is_refused_from_its_header() {
    // The header alone: the body is never read.
    let images = idx_bytes(0x803, &[2, 32000, 32000], &[0; 64]);
    let labels = idx_bytes(0x801, &[2], &[0, 1]);
    let src = "{ idx: { images: images.idx, labels: labels.idx } }";
    let d = case(&[
        ("images.idx", &images),
        ("labels.idx", &labels),
        ("run.yaml", img_run(src).as_bytes()),
    ]);
    let r = run_in(d.path(), &["--max-memory", "1GiB"]);
    over_budget(&r, "data.images.*.limit");
    refused(&r, &["images.idx", "2 of 32000x32000x1"]);
}

#[test]
fn a_many_to_many_join_of_1e10_rows_is_refused_from_the_key_counts() {
    let mut left = String::from("k,x1,y\n");
    let mut right = String::from("k,z\n");
    for i in 0..100_000 {
        writeln!(left, "1,{i},{}", i % 2).unwrap();
        writeln!(right, "1,{i}").unwrap();
    }
    let tables = "    main: main.csv\n    other: other.csv";
    let steps = "  - join: { with: other, on: [k], allow_many_to_many: true }\n  - normalize: { method: zscore }";
    let d = case(&[
        ("main.csv", left.as_bytes()),
        ("other.csv", right.as_bytes()),
        (
            "run.yaml",
            tab_run(tables, "{ column: y, threshold: 0.5 }", steps).as_bytes(),
        ),
    ]);
    let r = run_in(d.path(), &["--max-memory", "2GiB"]);
    over_budget(&r, "`join.on`");
    refused(&r, &["many-to-many join with `other`", "10000200000 rows"]);
}

#[test]
fn a_wide_one_hot_over_the_budget_points_at_max_levels() {
    let mut csv = String::from("x1,cat,y\n");
    for i in 0..20_000 {
        writeln!(csv, "{i},level{i},{}", i % 2).unwrap();
    }
    let steps = "  - encode: { one_hot: [cat], max_levels: 20000 }";
    let d = case(&[
        ("main.csv", csv.as_bytes()),
        (
            "run.yaml",
            tab_run("    main: main.csv", "{ column: y, threshold: 0.5 }", steps).as_bytes(),
        ),
    ]);
    let r = run_in(d.path(), &["--max-memory", "100MB"]);
    over_budget(&r, "`encode.max_levels`");
    refused(&r, &["one-hot columns"]);
}

// ---- options ----

#[test]
fn threads_and_memory_options_are_checked() {
    let d = case(&[("run.yaml", tiny_mnist("").as_bytes())]);
    for n in ["100000", "0"] {
        let r = whet(d.path(), &["validate", "run.yaml", "--threads", n]);
        refused(&r, &["--threads", "1 to 1024"]);
    }
    for size in ["lots", "0", "1.2.3G"] {
        let r = whet(d.path(), &["validate", "run.yaml", "--max-memory", size]);
        refused(&r, &["--max-memory", "not a memory size", "8GiB"]);
    }
    let r = whet(
        d.path(),
        &[
            "validate",
            "run.yaml",
            "--max-memory",
            "2GiB",
            "--threads",
            "4",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

// ---- class 7: linear in the number of columns ----

/// `rows` rows of `cols` numeric feature columns (some missing) and a 0/1 target.
fn wide_csv(rows: usize, cols: usize) -> String {
    let mut s = String::new();
    for j in 0..cols {
        write!(s, "f{j},").unwrap();
    }
    s.push_str("y\n");
    for i in 0..rows {
        for j in 0..cols {
            if (i + j) % 17 == 0 {
                s.push(',');
            } else {
                write!(s, "{},", (i * 31 + j * 7) % 101).unwrap();
            }
        }
        writeln!(s, "{}", i % 2).unwrap();
    }
    s
}

#[test]
fn impute_and_normalize_on_20000_columns_finish() {
    let steps = "  - impute: { numeric: median }\n  - normalize: { method: zscore }";
    let d = case(&[
        ("main.csv", wide_csv(60, 20_000).as_bytes()),
        (
            "run.yaml",
            tab_run("    main: main.csv", "{ column: y, threshold: 0.5 }", steps).as_bytes(),
        ),
    ]);
    let r = run_in(d.path(), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = std::fs::read_to_string(d.path().join("out/manifest.json")).unwrap();
    assert!(m.contains("f19999"), "the last column reached the manifest");
}
