//! `whet validate` checks the data's shape without loading it (issue 18): every column a step,
//! the split or the target names, join key types, IDX headers and image folders; each problem
//! names the run file's line, and an ablation variant's own problems name the variant. A data
//! error only the full data reveal is located too when the run finds it.

use crate::util::{dataset, tiny_mnist, whet};
use std::path::Path;

/// `pipelines/flights-ablation.yaml` with absolute data paths, edited by `edit`, at `d/run.yaml`.
fn flights(d: &Path, edit: impl Fn(String) -> String) {
    let text = std::fs::read_to_string(crate::util::repo().join("pipelines/flights-ablation.yaml"))
        .unwrap()
        .replace("../datasets/", &format!("{}/", dataset("")));
    std::fs::write(d.join("run.yaml"), edit(text)).unwrap();
}

fn validate(d: &Path) -> crate::util::Run {
    whet(d, &["validate", "run.yaml"])
}

/// The 1-based line of the first line of `run.yaml` that contains `fragment`.
fn line_of(d: &Path, fragment: &str) -> usize {
    let text = std::fs::read_to_string(d.join("run.yaml")).unwrap();
    text.lines().position(|l| l.contains(fragment)).unwrap() + 1
}

#[test]
fn the_shipped_ablation_validates() {
    let d = tempfile::tempdir().unwrap();
    flights(d.path(), |t| t);
    let r = validate(d.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_wrong_one_hot_column_and_join_key_fail_at_validate_with_their_lines() {
    let d = tempfile::tempdir().unwrap();
    flights(d.path(), |t| {
        t.replace("one_hot: [carrier, origin]", "one_hot: [carrier, orign]")
            .replace("on: [tailnum]", "left_on: [flight], right_on: [tailnum]")
    });
    let r = validate(d.path());
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let encode = line_of(d.path(), "one_hot:");
    let join = line_of(d.path(), "with: planes");
    for f in [
        format!("run.yaml:{encode}:"),
        "at `steps[4].encode.one_hot[1]`: `orign` is not a column".into(),
        "did you mean `origin`?".into(),
        format!("run.yaml:{join}:"),
        "at `steps[1].join.left_on[0]`: join key `flight` is an integer (i64)".into(),
        "but `tailnum` is text in the table `planes`".into(),
    ] {
        assert!(r.stderr.contains(&f), "lacks `{f}`:\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    // The variants share both problems: each is reported once, at the baseline's line.
    assert!(!r.stderr.contains("in ablation variant"), "{}", r.stderr);
    assert!(
        r.stderr.contains("2 problems in the run file"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_variant_that_removes_a_needed_column_is_named() {
    let d = tempfile::tempdir().unwrap();
    // `temp` comes from the weather join, which the variant `no-weather` drops.
    flights(d.path(), |t| {
        t.replace(
            "- normalize: { method: zscore }",
            "- normalize: { method: zscore }\n  - clip: { columns: [temp] }",
        )
    });
    let r = validate(d.path());
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let variant = line_of(d.path(), "name: no-weather");
    for f in [
        format!("run.yaml:{variant}:"),
        "in ablation variant `no-weather`, at `steps[5].clip.columns[0]`".into(),
        "`temp` is not a column".into(),
    ] {
        assert!(r.stderr.contains(&f), "lacks `{f}`:\n{}", r.stderr);
    }
    // The joins that keep the weather are fine: only the two variants without it fail.
    assert!(r.stderr.contains("`no-joins`"), "{}", r.stderr);
    assert!(!r.stderr.contains("`no-planes`"), "{}", r.stderr);
}

#[test]
fn a_text_column_to_normalize_and_a_missing_target_fail_at_validate() {
    let d = tempfile::tempdir().unwrap();
    flights(d.path(), |t| {
        t.replace(
            "- normalize: { method: zscore }",
            "- normalize: { method: zscore, columns: [distance, tailnum] }",
        )
        .replace("column: arr_delay", "column: arr_dela")
    });
    let r = validate(d.path());
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    for f in [
        "at `steps[5].normalize.columns[1]`: `tailnum` is text",
        "at `data.target.column`: `arr_dela` is not a column",
        "did you mean `arr_delay`?",
    ] {
        assert!(r.stderr.contains(f), "lacks `{f}`:\n{}", r.stderr);
    }
}

#[test]
fn a_data_error_found_by_the_run_names_the_step_and_its_line() {
    let d = tempfile::tempdir().unwrap();
    // `carrier` holds airline codes, not booleans: only the values tell, so validate passes
    // and the run stops at the step, located.
    flights(d.path(), |t| {
        t.replace("flights: ", "flights: { limit: 3000, path: ")
            .replace("flights.csv.gz\n", "flights.csv.gz }\n")
            .replace(
                "one_hot: [carrier, origin]",
                "one_hot: [origin], boolean: [carrier]",
            )
    });
    assert_eq!(validate(d.path()).code, 0, "{}", validate(d.path()).stderr);
    let r = whet(d.path(), &["run", "run.yaml", "--out", "out"]);
    assert_ne!(r.code, 0);
    let encode = line_of(d.path(), "boolean: [carrier]");
    let f = format!("run.yaml:{encode}:5: at `steps[4].encode`");
    assert!(r.stderr.contains(&f), "lacks `{f}`:\n{}", r.stderr);
    assert!(r.stderr.contains("encode boolean"), "{}", r.stderr);
}

#[test]
fn idx_files_that_do_not_match_fail_at_validate() {
    let d = tempfile::tempdir().unwrap();
    // The test set's labels given with the training images: 10,000 labels for 60,000 images.
    let text = tiny_mnist("").replace("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz");
    std::fs::write(d.path().join("run.yaml"), text).unwrap();
    let r = validate(d.path());
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let line = line_of(d.path(), "train: {");
    for f in [
        format!("run.yaml:{line}:"),
        "at `data.images.train.idx.labels`".into(),
        "has 10000 labels but".into(),
        "60000 images".into(),
    ] {
        assert!(r.stderr.contains(&f), "lacks `{f}`:\n{}", r.stderr);
    }
}
