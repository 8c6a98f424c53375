//! The `whet` crate used as a library, on the shipped data.

mod common;

use common::repo;
use whet::prelude::*;
use whet::{Error, PreparedData};

/// A small image run file: 300 training images, online augmentation, 2 epochs.
fn tiny(extra: &str) -> String {
    format!(
        r#"name: tiny
seed: 3
data:
  images:
    train: {{ idx: {{ images: datasets/mnist/train-images-idx3-ubyte.gz, labels: datasets/mnist/train-labels-idx1-ubyte.gz }}, limit: 300 }}
    test: {{ idx: {{ images: datasets/mnist/t10k-images-idx3-ubyte.gz, labels: datasets/mnist/t10k-labels-idx1-ubyte.gz }}, limit: 200 }}
    validation: 0.1
    normalize: standardize
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
{extra}"#
    )
}

#[test]
fn a_run_file_from_text_resolves_paths_against_the_base_folder() {
    let run = RunFile::from_yaml(&tiny(""), repo()).unwrap();
    assert_eq!(run.name(), "tiny");
    assert!(run.is_images());
    let whet::RunData::Images { images, augment } = run.data() else {
        panic!("image data")
    };
    assert!(images.train.idx.as_ref().unwrap().images.is_file());
    assert_eq!(augment.as_ref().unwrap().ops.len(), 1);
}

#[test]
fn errors_are_located_and_typed() {
    let text = tiny("").replace("epochs: 2", "epochs: 2\n  epoch: 3");
    match RunFile::from_yaml(&text, repo()) {
        Err(Error::Config(errors)) => {
            let e = &errors.0[0];
            assert!(e.position.is_some(), "{e}");
            assert!(e.to_string().contains("epoch"), "{e}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn prepare_fits_on_the_training_originals_and_is_deterministic() {
    let run = RunFile::from_yaml(&tiny(""), repo()).unwrap();
    let a = run.prepare(3, &Cache::off(), &NoProgress).unwrap();
    let b = run.prepare(3, &Cache::off(), &NoProgress).unwrap();
    let (PreparedData::Images(a), PreparedData::Images(b)) = (&a.data, &b.data) else {
        panic!("image data")
    };
    assert_eq!(a.normalizer, b.normalizer);
    assert_eq!(a.train, b.train);
    // 300 images, 10 % held out for validation; online mode keeps the originals.
    assert_eq!(a.train.len() + a.validation.as_ref().unwrap().len(), 300);
    assert_eq!(a.train_originals, a.train.len());
    assert!(a.online.is_some());
    let fitted = whet::image::Normalizer::fit(whet::image::NormalizeKind::Standardize, &a.train);
    assert_eq!(a.normalizer, fitted);
}

#[test]
fn execute_writes_metrics_and_manifest_and_an_ablation_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "ablation:\n  seeds: 1\n  variants:\n    - { name: no-augment, drop: augment }\n";
    let run = RunFile::from_yaml(&tiny(extra), repo()).unwrap();
    let out = dir.path().join("run");
    let outcome = run
        .execute(&out, run.seed(), &Cache::off(), &NoProgress)
        .unwrap();
    assert_eq!(outcome.status, whet::RunStatus::Ok);
    let acc = outcome.metrics.test["accuracy"];
    assert!(acc > 0.3, "{acc}");
    let written: Metrics =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(written.test, outcome.metrics.test);
    let m = whet::Manifest::load(&out.join("manifest.json")).unwrap();
    assert_eq!(m.kind, whet::ManifestKind::Run);
    assert!(m.architecture.is_some());

    let plan = Ablation::plan(&run, &PlanOptions::default()).unwrap();
    assert_eq!(plan.cells.len(), 2);
    assert_ne!(plan.cells[0].hash, plan.cells[1].hash);
    // The same plan twice has the same hashes (a requeued cell is recognised).
    let again = Ablation::plan(&run, &PlanOptions::default()).unwrap();
    assert_eq!(plan.cells, again.cells);
    let ab = dir.path().join("ab");
    let first = plan.run_cell(0, &ab, &Cache::off(), false).unwrap();
    assert!(!first.kept);
    // The baseline cell is the run above with the same seed: the same numbers.
    assert_eq!(first.record.metrics, outcome.metrics.test);
    let second = plan.run_cell(0, &ab, &Cache::off(), false).unwrap();
    assert!(second.kept);
    let report = plan.collect(&ab, vec![]).unwrap();
    assert_eq!(report.missing, vec![1]);
    assert!(ab.join("report.md").is_file());
}

#[test]
fn fitting_the_normaliser_on_augmented_copies_is_an_explicit_option() {
    let offline = |extra: &str| {
        tiny("").replace(
            "  mode: online\n",
            &format!("  mode: offline\n  copies: 2\n{extra}"),
        )
    };
    let fitted = |text: String| {
        let run = RunFile::from_yaml(&text, repo()).unwrap();
        let p = run.prepare(3, &Cache::off(), &NoProgress).unwrap();
        let PreparedData::Images(p) = p.data else {
            panic!("image data")
        };
        (p.normalizer, p.train, p.train_originals)
    };
    let (plain, train, originals) = fitted(offline(""));
    assert_eq!(train.len(), 3 * originals);
    let originals_set = train.select(&(0..originals).collect::<Vec<_>>());
    let kind = whet::image::NormalizeKind::Standardize;
    assert_eq!(plain, whet::image::Normalizer::fit(kind, &originals_set));
    let (on_copies, train2, _) = fitted(offline("  fit_normalizer_on_copies: true\n"));
    assert_eq!(train2, train);
    assert_eq!(on_copies, whet::image::Normalizer::fit(kind, &train));
    assert_ne!(on_copies, plain);
    // Online copies change every epoch: there is nothing fixed to fit on.
    let online = tiny("").replace(
        "  mode: online\n",
        "  mode: online\n  fit_normalizer_on_copies: true\n",
    );
    assert!(matches!(
        RunFile::from_yaml(&online, repo()),
        Err(Error::Config(_))
    ));
}
