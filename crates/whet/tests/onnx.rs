//! ONNX export checked with a pure-Rust ONNX runtime (tract): every activation of the trainer,
//! and every shipped pipeline (shortened, trained weights) against whet's own outputs on its
//! test split, to 1e-5.

mod common;

use common::repo;
use ndarray::{Array2, ArrayView2};
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;
use whet::core::NoProgress;
use whet::train::{Activation, HiddenConfig, Mlp, ModelConfig, Task};
use whet::{Cache, ModelExportOptions, ModelFormat, Override, PreparedData, Run};

/// The largest absolute difference allowed between whet's outputs and the graph's.
const TOLERANCE: f32 = 1e-5;

/// Runs the ONNX file at `path` on `input` (its one input), returns its one output.
fn run_onnx(path: &Path, input: Tensor) -> Array2<f32> {
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let out = model.run(tvec!(input.into())).unwrap();
    let view = out[0].to_array_view::<f32>().unwrap();
    let shape = view.shape().to_vec();
    assert_eq!(shape.len(), 2, "output shape {shape:?}");
    Array2::from_shape_vec((shape[0], shape[1]), view.iter().copied().collect()).unwrap()
}

fn tensor_f32(x: ArrayView2<f32>) -> Tensor {
    let v: Vec<f32> = x.iter().copied().collect();
    tract_ndarray::Array2::from_shape_vec((x.nrows(), x.ncols()), v)
        .unwrap()
        .into()
}

fn max_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A network alone (input `x`, float) as an ONNX file.
fn network_file(net: &Mlp, path: &Path) {
    use whet::train::onnx::{DataType, Graph, Model, ValueInfo};
    let mut g = Graph::new("net");
    g.inputs
        .push(ValueInfo::batch("x", DataType::Float, &[net.input_dim()]));
    whet::train::onnx::append_network(&mut g, net, "x");
    let model = Model {
        graph: g,
        producer_name: "whet-test".into(),
        producer_version: "0".into(),
        doc: String::new(),
        metadata: vec![],
    };
    std::fs::write(path, model.encode()).unwrap();
}

#[test]
fn every_activation_and_task_maps_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let acts = [
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Identity,
        Activation::Step,
        Activation::Softmax,
    ];
    // Inputs around 0 (ReLU's and the step's kink) and far out (saturation).
    let x = Array2::from_shape_fn((37, 6), |(i, j)| {
        ((i * 7 + j * 13) % 29) as f32 / 3.0 - 4.5 + if i % 5 == 0 { 0.0 } else { 0.01 }
    });
    for (k, act) in acts.into_iter().enumerate() {
        for (task, outputs) in [
            (Task::Binary, 1),
            (Task::Classification, 4),
            (Task::Regression, 2),
        ] {
            let cfg = match task {
                Task::Binary => ModelConfig::binary(),
                Task::Classification => ModelConfig::classification(),
                Task::Regression => ModelConfig::regression(),
            }
            .with_hidden([
                HiddenConfig::dense(9).with_activation(act),
                HiddenConfig::dense(5).with_activation(act),
            ]);
            let net = Mlp::new(&cfg, 6, outputs, 40 + k as u64).unwrap();
            let path = dir.path().join(format!("{act:?}-{task:?}.onnx"));
            network_file(&net, &path);
            let want = net.predict(x.view());
            let got = run_onnx(&path, tensor_f32(x.view()));
            let d = max_diff(&want, &got);
            assert!(d <= TOLERANCE, "{act:?} {task:?}: max |diff| {d}");
        }
    }
}

/// A shipped pipeline copied into `dir/pipelines` (with `dir/datasets` pointing at the shipped
/// data, so its relative paths, and a pretrain run's output folder, stay inside `dir`).
fn shipped(dir: &Path, name: &str) -> PathBuf {
    let pipelines = dir.join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    let datasets = dir.join("datasets");
    if !datasets.exists() {
        std::os::unix::fs::symlink(repo().join("datasets"), &datasets).unwrap();
    }
    for entry in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, pipelines.join(p.file_name().unwrap())).unwrap();
    }
    pipelines.join(name)
}

/// Runs `pipeline` shortened by `overrides`, exports its model as ONNX, and compares the graph's
/// outputs on the test split with whet's.
fn check_pipeline(name: &str, overrides: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let file = shipped(dir.path(), name);
    check_run(dir.path(), &file, name, overrides);
}

/// Every kind of in-graph numeric step (clip before imputation, a constant fill, `log1p`,
/// min-max scaling) and an outside one (one-hot) on a table with missing values.
#[test]
fn numeric_steps_of_every_kind_agree_with_whet() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("x1,x2,cat,y\n");
    for i in 0..300 {
        let x1 = if i % 7 == 3 {
            String::new()
        } else {
            format!("{}", (i * 37 % 101) as f64 * 0.25 - 3.0)
        };
        csv.push_str(&format!(
            "{x1},{},{},{}\n",
            (i * 13 % 17) as f64 * 1.5,
            ["a", "b", "c", "d"][i % 4],
            ["no", "yes", "maybe"][(i * 7 + i / 5) % 3]
        ));
    }
    std::fs::write(dir.path().join("t.csv"), csv).unwrap();
    let yaml = r#"name: steps
seed: 4
data:
  tables: { t: t.csv }
  target: { column: y }
steps:
  - clip: { lower: 0.05, upper: 0.95, columns: [x1] }
  - impute: { numeric: constant, value: -1 }
  - normalize: { method: log1p, columns: [x2] }
  - encode: { one_hot: [cat] }
  - normalize: { method: minmax }
split: { method: random, test: 0.3, validation: 0.1 }
model:
  task: classification
  hidden:
    - { dense: 6, activation: tanh }
train:
  optimizer: { adam: { lr: 0.01 } }
  batch_size: 16
  epochs: 3
"#;
    let file = dir.path().join("steps.yaml");
    std::fs::write(&file, yaml).unwrap();
    let report = check_run(dir.path(), &file, "steps", &[]);
    // Every numeric step is in the graph (the one-hot columns are booleans, not scaled).
    let has = |list: &[String], prefix: &str| list.iter().any(|s| s.starts_with(prefix));
    for step in [
        "fitted step 0 clip: x1",
        "fitted step 1 impute: x1",
        "fitted step 2 normalize(log1p): x2",
        "fitted step 4 normalize(minmax): x1, x2",
    ] {
        assert!(
            has(&report.in_graph, step),
            "{step} not in {:?}",
            report.in_graph
        );
    }
    assert!(
        has(&report.outside, "fitted step 3 encode"),
        "{:?}",
        report.outside
    );
}

fn check_run(dir: &Path, file: &Path, name: &str, overrides: &[&str]) -> whet::ModelExportReport {
    let overrides: Vec<Override> = overrides
        .iter()
        .map(|s| Override::parse(s).unwrap())
        .collect();
    let run = Run::load(file, &overrides).unwrap();
    let cache = Cache::new(false);
    run.ensure_pretrained(&cache, &NoProgress).unwrap();
    let out = dir.join("run");
    let outcome = run.execute(&out, run.seed(), &cache, &NoProgress).unwrap();
    assert_eq!(outcome.status, whet::RunStatus::Ok, "{name}");
    let onnx = dir.join("model.onnx");
    let report = whet::export_model(
        &out,
        &onnx,
        &ModelExportOptions {
            format: ModelFormat::Onnx,
            layout: None,
        },
    )
    .unwrap();
    let net = whet::train::checkpoint::load(&out.join("model.safetensors")).unwrap();
    let prepared = run.prepare(run.seed(), &cache, &NoProgress).unwrap();
    let (want, input) = match &prepared.data {
        PreparedData::Images(p) => {
            let test =
                whet::image_arrays(&p.test, &p.normalizer, p.train.class_names().len()).unwrap();
            let want = net.predict(test.x().view());
            let (n, h, w, c) = (p.test.len(), p.test.h(), p.test.w(), p.test.c());
            let pixels =
                tract_ndarray::Array4::from_shape_vec((n, h, w, c), p.test.pixels().to_vec())
                    .unwrap();
            (want, Tensor::from(pixels))
        }
        PreparedData::Tables(t) => {
            let want = net.predict(t.test.x.view());
            let main = t.manifest.data.main_name().unwrap().to_string();
            let path = t.manifest.data.tables[&main].path.clone();
            let all = whet::tabular::graph_input_file(&t.manifest, &path).unwrap();
            let rows = &t.indices.test;
            let d = all.ncols();
            let mut v = Vec::with_capacity(rows.len() * d);
            for &r in rows {
                v.extend(all.row(r).iter().copied());
            }
            (
                want,
                Tensor::from(tract_ndarray::Array2::from_shape_vec((rows.len(), d), v).unwrap()),
            )
        }
    };
    assert!(want.nrows() > 0, "{name}: empty test split");
    let got = run_onnx(&onnx, input);
    let d = max_diff(&want, &got);
    assert!(
        d <= TOLERANCE,
        "{name}: max |whet - onnx| = {d} over {} rows ({report:?})",
        want.nrows()
    );
    report
}

fn flights_limit(rows: usize) -> String {
    format!(
        "data.tables.flights={{path: {}, limit: {rows}}}",
        repo()
            .join("datasets/nycflights13/flights.csv.gz")
            .display()
    )
}

#[test]
fn flights_delay_agrees_with_whet() {
    check_pipeline(
        "flights-delay.yaml",
        &[&flights_limit(4000), "train.epochs=2"],
    );
}

#[test]
fn flights_ablation_agrees_with_whet() {
    check_pipeline(
        "flights-ablation.yaml",
        &[&flights_limit(3000), "train.epochs=1"],
    );
}

#[test]
fn flights_normalization_agrees_with_whet() {
    check_pipeline(
        "flights-normalization.yaml",
        &[&flights_limit(3000), "train.epochs=1"],
    );
}

/// Shortens an MNIST pipeline: few images, one epoch.
const MNIST: [&str; 3] = [
    "data.images.train.limit=300",
    "data.images.test.limit=200",
    "train.epochs=1",
];

#[test]
fn mnist_mlp_agrees_with_whet() {
    check_pipeline("mnist-mlp.yaml", &MNIST);
}

#[test]
fn mnist_ablation_agrees_with_whet() {
    check_pipeline("mnist-ablation.yaml", &MNIST);
}

#[test]
fn mnist_augment_small_agrees_with_whet() {
    check_pipeline("mnist-augment-small.yaml", &MNIST);
}

#[test]
fn mnist_batch_modes_agrees_with_whet() {
    check_pipeline("mnist-batch-modes.yaml", &MNIST);
}

#[test]
fn mnist_lr_sweep_agrees_with_whet() {
    check_pipeline("mnist-lr-sweep.yaml", &MNIST);
}

#[test]
fn mnist_digits_0_4_agrees_with_whet() {
    check_pipeline("mnist-digits-0-4.yaml", &MNIST);
}

#[test]
fn mnist_transfer_agrees_with_whet() {
    check_pipeline("mnist-transfer.yaml", &MNIST);
}

#[test]
fn every_shipped_pipeline_has_an_agreement_test() {
    let this = std::fs::read_to_string(file!()).unwrap();
    for entry in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") {
            assert!(
                this.contains(&format!("check_pipeline(\n        \"{name}\""))
                    || this.contains(&format!("check_pipeline(\"{name}\"")),
                "pipelines/{name} has no ONNX agreement test here"
            );
        }
    }
}
