//! Input files and messages (issue 14, classes 6, 8, 9, 10 and 12): special files refused by
//! name, runs without a test set, messages that name the file, the place and the fix (checked
//! at `validate` where they can be), warnings recorded in the manifest, and a closed stdout.
//! Each case runs the real binary and checks the exit code, the message fragments and that
//! nothing panicked.

use crate::catalogue::{
    FOLDER, MAIN, STEPS, TARGET, good_csv, image_folder, img_run, png, run_args, tab_case, tab_run,
    write,
};
use crate::util::{Run, whet};
use std::path::Path;
use std::process::{Command, Stdio};

/// Asserts the exit code, the fragments (in stderr + stdout) and that nothing panicked.
fn check(r: &Run, code: i32, expect: &[&str]) {
    let msg = format!("{}\n{}", r.stderr, r.stdout);
    assert_eq!(r.code, code, "exit code; output:\n{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
    assert!(!msg.contains("internal error"), "{msg}");
    for f in expect {
        assert!(msg.contains(f), "the message lacks `{f}`:\n{msg}");
    }
}

fn run_strs(d: &Path, a: &[String]) -> Run {
    let argv: Vec<&str> = a.iter().map(String::as_str).collect();
    whet(d, &argv)
}

fn validate(d: &Path) -> Run {
    whet(d, &["validate", d.join("run.yaml").to_str().unwrap()])
}

fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo").arg(p).status().unwrap().success();
    assert!(ok, "mkfifo failed");
}

fn manifest_warnings(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["warnings"]
        .as_array()
        .expect("manifest.json has `warnings`")
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

fn metrics(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap()
}

// ---- class 6: special files and endless input ----------------------------------------------

#[test]
fn devices_folders_and_pipes_are_refused_by_name_at_validate() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    // A run file that is a device.
    check(
        &whet(d, &["validate", "/dev/zero"]),
        2,
        &["/dev/zero", "character device"],
    );
    // A table that is a device (through a symlink with a CSV name).
    std::os::unix::fs::symlink("/dev/zero", d.join("main.csv")).unwrap();
    write(d, "run.yaml", tab_run(MAIN, TARGET, STEPS));
    check(
        &validate(d),
        2,
        &["data.tables.main", "main.csv", "character device"],
    );
    // A table that is a folder.
    std::fs::remove_file(d.join("main.csv")).unwrap();
    std::fs::create_dir(d.join("main.csv")).unwrap();
    check(
        &validate(d),
        2,
        &["data.tables.main", "main.csv", "a folder"],
    );
    // A table that is a named pipe: data files are read more than once.
    std::fs::remove_dir(d.join("main.csv")).unwrap();
    mkfifo(&d.join("main.csv"));
    check(
        &validate(d),
        2,
        &["data.tables.main", "main.csv", "named pipe", "regular file"],
    );
    // An image folder source that is a file.
    write(d, "imgs", "not a folder");
    write(d, "run.yaml", img_run(FOLDER));
    check(
        &validate(d),
        2,
        &["data.images.train.folder.path", "imgs", "is not a folder"],
    );
}

#[test]
fn a_transfer_checkpoint_at_dev_urandom_is_refused_at_validate() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    write(d, "main.csv", good_csv(60));
    let text = tab_run(MAIN, TARGET, STEPS).replace(
        "  epochs: 1\n",
        "  epochs: 1\n  transfer: { checkpoint: /dev/urandom }\n",
    );
    write(d, "run.yaml", text);
    let r = validate(d);
    check(
        &r,
        2,
        &[
            "train.transfer.checkpoint",
            "/dev/urandom",
            "character device",
        ],
    );
    // And `run` refuses it the same way, before reading a byte of it.
    let r = run_strs(d, &run_args(d));
    check(&r, 2, &["/dev/urandom", "character device"]);
}

#[test]
fn apply_reads_a_pipe_and_refuses_a_device() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    write(d, "main.csv", good_csv(60));
    write(d, "run.yaml", tab_run(MAIN, TARGET, STEPS));
    let r = whet(
        d,
        &["export", "run.yaml", "--out", "exp", "--format", "csv"],
    );
    check(&r, 0, &[]);
    // The manifest at a device.
    check(
        &whet(d, &["apply", "/dev/zero", "main.csv", "--out", "a1"]),
        2,
        &["/dev/zero", "character device"],
    );
    // The data at a device.
    check(
        &whet(
            d,
            &["apply", "exp/manifest.json", "/dev/zero", "--out", "a2"],
        ),
        2,
        &["/dev/zero", "character device"],
    );
    // The data through a named pipe: read once, within the cap.
    let fifo = d.join("new.csv");
    mkfifo(&fifo);
    let writer = {
        let fifo = fifo.clone();
        let csv = good_csv(30);
        std::thread::spawn(move || std::fs::write(&fifo, csv).unwrap())
    };
    let r = whet(
        d,
        &[
            "apply",
            "exp/manifest.json",
            fifo.to_str().unwrap(),
            "--out",
            "a3",
            "--format",
            "csv",
        ],
    );
    writer.join().unwrap();
    check(&r, 0, &["30 rows"]);
    assert!(d.join("a3/applied.csv").is_file());
}

// ---- class 8: no test set ------------------------------------------------------------------

#[test]
fn an_image_run_without_test_reports_validation_metrics() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    image_folder(d, &[]);
    let text = img_run(FOLDER).replace(&format!("    test: {FOLDER}\n"), "    validation: 0.3\n");
    assert!(!text.contains("test:"), "test bug: {text}");
    write(d, "run.yaml", &text);
    let r = run_strs(d, &run_args(d));
    check(&r, 0, &["no test set", "validation accuracy"]);
    let m = metrics(&d.join("out"));
    assert_eq!(m["evaluated_on"], "validation", "{m}");
    assert!(m["test"].as_object().unwrap().is_empty(), "{m}");
    assert!(m["validation"]["accuracy"].is_number(), "{m}");

    // Neither test nor validation: refused at validate, naming both keys.
    write(d, "run.yaml", text.replace("    validation: 0.3\n", ""));
    check(
        &validate(d),
        2,
        &["data.images.test", "data.images.validation"],
    );
}

#[test]
fn a_table_run_with_test_0_reports_validation_metrics_and_the_ablation_says_so() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    write(d, "main.csv", good_csv(80));
    let text = tab_run(MAIN, TARGET, STEPS).replace(
        "split: { method: random, test: 0.2, validation: 0.2 }",
        "split: { method: random, test: 0, validation: 0.25 }\nablation: { seeds: 1, leave_one_out: [] }",
    );
    write(d, "run.yaml", &text);
    let r = run_strs(d, &run_args(d));
    check(&r, 0, &["no test set", "validation accuracy"]);
    let m = metrics(&d.join("out"));
    assert_eq!(m["evaluated_on"], "validation", "{m}");
    assert!(m["validation"]["accuracy"].is_number(), "{m}");

    let r = whet(d, &["ablate", "run.yaml", "--out", "abl"]);
    check(&r, 0, &[]);
    let report = std::fs::read_to_string(d.join("abl/report.md")).unwrap();
    assert!(
        report.contains("measured on the validation split"),
        "{report}"
    );

    write(
        d,
        "run.yaml",
        text.replace("test: 0, validation: 0.25", "test: 0, validation: 0"),
    );
    check(&validate(d), 2, &["split.test", "split.validation"]);
}

// ---- class 9: errors that confuse ----------------------------------------------------------

/// A run-file case: name, run file text, fragments of the message.
type RunFileCase = (&'static str, fn() -> String, &'static [&'static str]);

/// Run-file cases checked by `whet validate`.
const RUN_FILE_CASES: &[RunFileCase] = &[
    (
        "two YAML documents",
        || format!("{}---\nname: other\n", tab_run(MAIN, TARGET, STEPS)),
        &["more than one YAML document", "`---`"],
    ),
    (
        "an empty file",
        || "# nothing\n\n".into(),
        &["empty", "`name`", "`data`"],
    ),
    (
        "a bare scalar",
        || "hello\n".into(),
        &["single value, not a mapping", "`train`"],
    ),
    (
        "a self-join",
        || {
            tab_run(
                MAIN,
                TARGET,
                "  - join: { with: main, on: [id] }\n  - normalize: { method: zscore }",
            )
        },
        &["steps[0].join.with", "with itself", "declare it twice"],
    ),
    (
        "a group split on the target",
        || {
            tab_run(MAIN, TARGET, STEPS).replace(
                "method: random, test: 0.2",
                "method: group, group: y, test: 0.2",
            )
        },
        &[
            "split.group",
            "`y` is the target column",
            "choose another column",
        ],
    ),
    (
        "a time split ordered by the target",
        || {
            tab_run(MAIN, TARGET, STEPS).replace(
                "method: random, test: 0.2",
                "method: time, order: y, test: 0.2",
            )
        },
        &["split.order", "`y` is the target column"],
    ),
    (
        "a fraction of 1e300",
        || {
            tab_run(MAIN, TARGET, STEPS)
                .replace("test: 0.2, validation: 0.2", "test: 1e300, validation: 0.2")
        },
        &["split.test", "found 1e300"],
    ),
    (
        "duplicate ablation seeds",
        || {
            format!(
                "{}ablation: {{ seeds: [1, 2, 1] }}\n",
                tab_run(MAIN, TARGET, STEPS)
            )
        },
        &["ablation.seeds", "seed 1 is listed more than once"],
    ),
    (
        "sequential seeds below two",
        || {
            format!(
                "{}ablation: {{ seeds: {{ min: 1, max: 5 }} }}\n",
                tab_run(MAIN, TARGET, STEPS)
            )
        },
        &[
            "ablation.seeds",
            "expected 2 <= min <= max <= 100",
            "found min 1, max 5",
        ],
    ),
    (
        "an unknown ablation metric",
        || {
            format!(
                "{}ablation: {{ metric: acuracy }}\n",
                tab_run(MAIN, TARGET, STEPS)
            )
        },
        &[
            "ablation.metric",
            "unknown metric `acuracy`",
            "did you mean `accuracy`?",
        ],
    ),
    (
        "a regression metric for a binary model",
        || {
            format!(
                "{}ablation: {{ metric: mse }}\n",
                tab_run(MAIN, TARGET, STEPS)
            )
        },
        &["ablation.metric", "for a binary model", "roc_auc"],
    ),
    (
        "a test fraction with k-fold",
        || {
            tab_run(MAIN, TARGET, STEPS).replace(
                "split: { method: random, test: 0.2, validation: 0.2 }",
                "split: { method: kfold, k: 5, test: 0.3 }",
            )
        },
        &[
            "split.test",
            "every fold is the test set once",
            "remove `test`",
        ],
    ),
    (
        "one fold",
        || {
            tab_run(MAIN, TARGET, STEPS).replace(
                "split: { method: random, test: 0.2, validation: 0.2 }",
                "split: { method: kfold, k: 1 }",
            )
        },
        &["split.k", "2 to 100 folds (got 1)"],
    ),
    (
        "k without k-fold",
        || {
            tab_run(MAIN, TARGET, STEPS).replace(
                "split: { method: random, test: 0.2, validation: 0.2 }",
                "split: { method: random, k: 5 }",
            )
        },
        &[
            "split.k",
            "is for `method: kfold`",
            "(this split is `random`)",
        ],
    ),
    (
        "a convolution on a table run",
        || {
            tab_run(MAIN, TARGET, STEPS).replace(
                "  hidden:\n    - { dense: 4, activation: relu }\n",
                "  layers:\n    - conv: { filters: 4, kernel: 3 }\n    - dense: 4\n",
            )
        },
        &[
            "model.layers[0]",
            "`conv` reads images, and this run trains on tables",
            "- dense: 64",
        ],
    ),
    (
        "a pool after a dense layer, with a stride beyond its window",
        || {
            tab_run(MAIN, TARGET, STEPS).replace(
                "  hidden:\n    - { dense: 4, activation: relu }\n",
                "  layers:\n    - dense: 4\n    - max_pool: { size: 2, stride: 3 }\n",
            )
        },
        &[
            "at `model.layers[1]`: `max_pool` comes after `dense`",
            "model.layers[1].max_pool.stride",
            "expected a stride of 1 to the window side 2, found 3",
        ],
    ),
    (
        "an early-stopping metric the task does not have",
        || {
            tab_run(MAIN, TARGET, STEPS).replace(
                "  epochs: 1\n",
                "  epochs: 1\n  early_stopping: { metric: r2, min_epochs: 3 }\n",
            )
        },
        &[
            "train.early_stopping.metric",
            "unknown metric `r2` for a binary model",
            "balanced_accuracy",
        ],
    ),
];

#[test]
fn run_file_mistakes_are_explained_at_validate() {
    let root = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (k, (name, text, expect)) in RUN_FILE_CASES.iter().enumerate() {
        let d = root.path().join(format!("case-{k:02}"));
        std::fs::create_dir_all(&d).unwrap();
        write(&d, "main.csv", good_csv(60));
        write(&d, "run.yaml", text());
        let r = validate(&d);
        let msg = format!("{}\n{}", r.stderr, r.stdout);
        let mut bad = Vec::new();
        if r.code != 2 {
            bad.push(format!("exit {}", r.code));
        }
        if msg.contains("panicked") || msg.contains("internal error") {
            bad.push("panicked".into());
        }
        if !msg.contains("run.yaml") {
            bad.push("the message lacks the file".into());
        }
        // No number is printed with hundreds of digits.
        if msg.contains("0000000000") {
            bad.push("a number printed in full".into());
        }
        for f in *expect {
            if !msg.contains(f) {
                bad.push(format!("lacks `{f}`"));
            }
        }
        if !bad.is_empty() {
            failures.push(format!("{name}: {}\n{msg}", bad.join(", ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

#[test]
fn data_file_mistakes_name_the_file_and_the_place() {
    let root = tempfile::tempdir().unwrap();
    let case = |name: &str| {
        let d = root.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    // Header only.
    let d = case("header");
    let r = run_strs(&d, &tab_case(&d, "id,x1,x2,cat,y\n", TARGET, STEPS));
    check(&r, 2, &["main.csv", "no data rows"]);
    // A target missing in every row.
    let d = case("target");
    let csv: String = good_csv(40)
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l}\n")
            } else {
                format!("{},\n", l.rsplit_once(',').unwrap().0)
            }
        })
        .collect();
    let r = run_strs(&d, &tab_case(&d, &csv, TARGET, STEPS));
    check(&r, 2, &["main.csv", "`y`", "missing in all 40 rows"]);
    // A Windows-1252 cell: the line, the column and the fix.
    let d = case("cp1252");
    let mut bytes = good_csv(40).into_bytes();
    let at = String::from_utf8(bytes.clone())
        .unwrap()
        .find("\n20,")
        .unwrap()
        + 1;
    let end = at + bytes[at..].iter().position(|&b| b == b'\n').unwrap();
    bytes.splice(at..end, b"20,1.0,2.0,caf\xe9,1".iter().copied());
    write(&d, "main.csv", &bytes);
    write(&d, "run.yaml", tab_run(MAIN, TARGET, STEPS));
    let r = run_strs(&d, &run_args(&d));
    check(
        &r,
        2,
        &[
            "main.csv",
            "line 22",
            "`cat`",
            "not UTF-8",
            "encoding: windows-1252",
        ],
    );
}

#[test]
fn a_checkpoint_with_nan_weights_is_refused_as_damaged_not_diverged() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let r = run_strs(d, &tab_case(d, &good_csv(60), TARGET, STEPS));
    check(&r, 0, &[]);
    let ckpt = d.join("out/model.safetensors");
    let mut b = std::fs::read(&ckpt).unwrap();
    let hlen = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    b[8 + hlen..8 + hlen + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(d.join("nan.safetensors"), &b).unwrap();
    let text = tab_run(MAIN, TARGET, "  - normalize: { method: zscore }").replace(
        "  epochs: 1\n",
        "  epochs: 1\n  transfer: { checkpoint: nan.safetensors }\n",
    );
    write(d, "run.yaml", text);
    let r = whet(d, &["run", "run.yaml", "--out", "out2"]);
    check(&r, 2, &["nan.safetensors", "non-finite", "damaged"]);
    assert!(!r.stderr.contains("diverged at epoch"), "{}", r.stderr);
}

#[test]
fn apply_errors_name_the_data_file() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    write(d, "main.csv", good_csv(60));
    write(d, "run.yaml", tab_run(MAIN, TARGET, STEPS));
    check(
        &whet(
            d,
            &["export", "run.yaml", "--out", "exp", "--format", "csv"],
        ),
        0,
        &[],
    );
    write(d, "new.csv", "id,x1,cat\n1,2.0,a\n");
    let r = whet(d, &["apply", "exp/manifest.json", "new.csv", "--out", "a"]);
    check(&r, 2, &["new.csv", "exp/manifest.json"]);
}

#[test]
fn an_out_that_is_a_file_is_refused_before_any_work() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    write(d, "main.csv", good_csv(60));
    write(d, "run.yaml", tab_run(MAIN, TARGET, STEPS));
    write(d, "taken", "a file\n");
    for cmd in ["run", "ablate", "export"] {
        let r = whet(d, &[cmd, "run.yaml", "--out", "taken"]);
        check(&r, 2, &["`taken`", "is an existing file; give a folder"]);
        // Refused before preparing: nothing was cached, no run folder made.
        assert!(!d.join(".cache").exists(), "{cmd}: work was done first");
    }
    let r = whet(d, &["run", "run.yaml", "--out", "taken/sub"]);
    check(&r, 2, &["taken/sub", "part of its path is a file"]);
    assert_eq!(
        std::fs::read_to_string(d.join("taken")).unwrap(),
        "a file\n"
    );
}

#[test]
fn an_os_error_is_printed_once() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    // A table path under a file: the OS says "Not a directory".
    write(d, "file", "x");
    write(
        d,
        "run.yaml",
        tab_run("    main: file/main.csv", TARGET, STEPS),
    );
    let r = validate(d);
    check(&r, 2, &["file/main.csv"]);
    let all = format!("{}{}", r.stderr, r.stdout);
    assert!(all.matches("os error").count() <= 1, "{all}");
}

// ---- class 10: warnings in the output and the manifest -------------------------------------

#[test]
fn duplicate_and_text_columns_are_warned_about_and_recorded() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    // `x2` twice in the header, and one bad cell in `x1`.
    let csv = good_csv(60)
        .replacen("id,x1,x2,cat,y", "id,x1,x2,x2,y", 1)
        .replacen("\n7,3.5,", "\n7,3.5x,", 1);
    let r = run_strs(d, &tab_case(d, &csv, TARGET, STEPS));
    check(
        &r,
        0,
        &[
            "warning:",
            "`x2` appears 2 times",
            "`x2_duplicated_0`",
            "column `x1`",
            "`3.5x`",
            "line 9",
        ],
    );
    let w = manifest_warnings(&d.join("out"));
    assert!(
        w.iter().any(|w| w.contains("`x2` appears 2 times")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("column `x1`") && w.contains("3.5x")),
        "{w:?}"
    );
    // A second run is served from the stage cache and still records them.
    let mut again = run_args(d);
    again[3] = d.join("out2").display().to_string();
    let r = run_strs(d, &again);
    check(&r, 0, &["`x2` appears 2 times"]);
    assert!(r.stderr.contains("warning:"), "{}", r.stderr);
    assert_eq!(manifest_warnings(&d.join("out2")), w);
}

#[test]
fn an_empty_class_folder_is_warned_about_and_recorded() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    image_folder(d, &[]);
    std::fs::create_dir_all(d.join("imgs/c")).unwrap();
    write(&d.join("imgs/c"), "notes.txt", "not an image");
    write(d, "run.yaml", img_run(FOLDER));
    let r = run_strs(d, &run_args(d));
    check(&r, 0, &["warning:", "imgs/c", "holds no image"]);
    let w = manifest_warnings(&d.join("out"));
    assert!(w.iter().any(|w| w.contains("imgs/c")), "{w:?}");
    // The stray file is reported once, though the folder is read as train and as test.
    assert_eq!(r.stderr.matches("notes.txt").count(), 1, "{}", r.stderr);
    // A folder without empty classes (and no stray file) has no warning.
    std::fs::write(d.join("imgs/c/00.png"), png(8, 8, 1)).unwrap();
    std::fs::remove_file(d.join("imgs/c/notes.txt")).unwrap();
    let r = whet(d, &["run", "run.yaml", "--out", "out2"]);
    check(&r, 0, &[]);
    assert!(!r.stderr.contains("warning:"), "{}", r.stderr);
    assert!(manifest_warnings(&d.join("out2")).is_empty());
}

// ---- class 12: a closed stdout -------------------------------------------------------------

/// Runs whet with its stdout a pipe whose reading end is already closed.
fn with_closed_stdout(dir: &Path, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_whet"))
        .args(args)
        .current_dir(dir)
        .env("WHET_CACHE_DIR", dir.join(".cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_whet_quietly() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    write(d, "main.csv", good_csv(60));
    write(d, "run.yaml", tab_run(MAIN, TARGET, STEPS));
    for args in [
        &["schema"][..],
        &["schema", "--markdown"],
        &["validate", "run.yaml"],
        &["validate", "run.yaml", "--json"],
        &["audit", "run.yaml"],
    ] {
        let (code, stderr) = with_closed_stdout(d, args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
    // An error still reaches stderr with its exit code.
    let (code, stderr) = with_closed_stdout(d, &["validate", "no-such.yaml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no-such.yaml"), "{stderr}");
}
