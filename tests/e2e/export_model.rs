//! `whet export-model`: ONNX and safetensors files from a run folder, and the run folders it
//! refuses (each with a message naming the files and what to do).

use crate::catalogue::{MAIN, TARGET, good_csv, tab_run, write};
use crate::util::{tiny_mnist, whet};
use std::path::Path;

/// A small table run into `dir/out`: impute, one-hot `cat`, z-score.
fn table_run(dir: &Path) {
    write(dir, "main.csv", good_csv(120));
    let steps = "  - impute: { numeric: median, indicator: true }\n  - encode: { one_hot: [cat] }\n  - normalize: { method: zscore }";
    write(dir, "run.yaml", tab_run(MAIN, TARGET, steps));
    let r = whet(dir, &["run", "run.yaml", "--out", "out"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// A tiny MNIST run into `dir/NAME` with `hidden` units.
fn image_run(dir: &Path, name: &str, hidden: usize) {
    let file = format!("{name}.yaml");
    let text = tiny_mnist("").replace("dense: 32", &format!("dense: {hidden}"));
    write(dir, &file, text.replace("epochs: 3", "epochs: 1"));
    let r = whet(dir, &["run", &file, "--out", name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn onnx_from_a_table_run_names_the_steps_in_and_outside_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    table_run(dir.path());
    let r = whet(
        dir.path(),
        &["export-model", "out", "--format", "onnx", "--out", "m.onnx"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let bytes = std::fs::read(dir.path().join("m.onnx")).unwrap();
    // ModelProto field 1 (ir_version, varint) = 7 comes first.
    assert_eq!(&bytes[..2], &[0x08, 0x07]);
    assert!(
        r.stdout.contains("input:  features double [N, "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("output: probability float [N, 1]"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "output: label int64 [N]: 1 when the probability is above the run's threshold 0.5"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("in the graph: fitted step 2 normalize(zscore)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("not in the graph (run it before): fitted step 1 encode"),
        "{}",
        r.stdout
    );
    // The column list travels in the model's metadata.
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("whet.features"),
        "no feature list in the model"
    );
    assert!(text.contains("cat=a"), "the one-hot columns are not listed");
}

#[test]
fn onnx_from_an_image_run_takes_the_pixels() {
    let dir = tempfile::tempdir().unwrap();
    image_run(dir.path(), "run", 8);
    let r = whet(
        dir.path(),
        &["export-model", "run", "--format", "onnx", "--out", "m.onnx"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("pixels uint8 [N, 28, 28, 1]"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("probabilities float [N, 10]"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("output: label int64 [N]: the index in whet.classes"),
        "{}",
        r.stdout
    );
}

#[test]
fn torch_layout_safetensors_transposes_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    image_run(dir.path(), "run", 8);
    let r = whet(
        dir.path(),
        &[
            "export-model",
            "run",
            "--format",
            "safetensors",
            "--layout",
            "torch",
            "--out",
            "torch.safetensors",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let header = |p: &Path| -> serde_json::Value {
        let b = std::fs::read(p).unwrap();
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        serde_json::from_slice(&b[8..8 + n]).unwrap()
    };
    let torch = header(&dir.path().join("torch.safetensors"));
    let whet_own = header(&dir.path().join("run/model.safetensors"));
    assert_eq!(
        whet_own["layers.0.weight"]["shape"],
        serde_json::json!([784, 8])
    );
    assert_eq!(
        torch["layers.0.weight"]["shape"],
        serde_json::json!([8, 784])
    );
    assert_eq!(
        torch["layers.1.weight"]["shape"],
        serde_json::json!([10, 8])
    );
    assert_eq!(torch["layers.1.bias"]["shape"], serde_json::json!([10]));
}

#[test]
fn a_model_from_another_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    image_run(dir.path(), "a", 8);
    image_run(dir.path(), "b", 16);
    std::fs::copy(
        dir.path().join("b/model.safetensors"),
        dir.path().join("a/model.safetensors"),
    )
    .unwrap();
    let r = whet(
        dir.path(),
        &["export-model", "a", "--format", "onnx", "--out", "m.onnx"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("do not belong together"), "{}", r.stderr);
    assert!(r.stderr.contains("manifest.json"), "{}", r.stderr);
    assert!(r.stderr.contains("model.safetensors"), "{}", r.stderr);
    assert!(!dir.path().join("m.onnx").exists());
}

#[test]
fn folders_that_are_not_finished_runs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    table_run(dir.path());
    // An export's folder has a manifest but no model.
    let r = whet(dir.path(), &["export", "run.yaml", "--out", "exp"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = whet(
        dir.path(),
        &["export-model", "exp", "--format", "onnx", "--out", "m.onnx"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("export's manifest"), "{}", r.stderr);
    // No manifest at all.
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let r = whet(
        dir.path(),
        &[
            "export-model",
            "empty",
            "--format",
            "onnx",
            "--out",
            "m.onnx",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not a run folder"), "{}", r.stderr);
    // A run folder whose model is gone.
    std::fs::remove_file(dir.path().join("out/model.safetensors")).unwrap();
    let r = whet(
        dir.path(),
        &["export-model", "out", "--format", "onnx", "--out", "m.onnx"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no model.safetensors"), "{}", r.stderr);
}

#[test]
fn bad_options_and_outputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    table_run(dir.path());
    let model = std::fs::read(dir.path().join("out/model.safetensors")).unwrap();
    // Writing over the run's own model.
    let r = whet(
        dir.path(),
        &[
            "export-model",
            "out",
            "--format",
            "safetensors",
            "--out",
            "out/model.safetensors",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("model.safetensors"), "{}", r.stderr);
    assert_eq!(
        std::fs::read(dir.path().join("out/model.safetensors")).unwrap(),
        model
    );
    // A layout for ONNX.
    let r = whet(
        dir.path(),
        &[
            "export-model",
            "out",
            "--format",
            "onnx",
            "--layout",
            "torch",
            "--out",
            "m.onnx",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("--layout applies to --format safetensors"),
        "{}",
        r.stderr
    );
    // Unknown format and layout: the valid values are named.
    let r = whet(
        dir.path(),
        &["export-model", "out", "--format", "pt", "--out", "m.pt"],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`onnx` or `safetensors`"), "{}", r.stderr);
    let r = whet(
        dir.path(),
        &[
            "export-model",
            "out",
            "--format",
            "safetensors",
            "--layout",
            "tf",
            "--out",
            "m.st",
        ],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("`whet` ([in, out]) or `torch`"),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("m.onnx").exists() && !dir.path().join("m.st").exists());
}
