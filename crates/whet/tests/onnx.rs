//! ONNX export checked with a pure-Rust ONNX runtime (tract): every activation of the trainer,
//! every task's head (threshold, target scale), and every shipped pipeline (shortened, trained
//! weights) against whet's own outputs on its test split: probabilities and values to 1e-5,
//! labels exactly.

mod common;

use common::repo;
use ndarray::{Array2, ArrayView2};
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;
use whet::core::NoProgress;
use whet::train::{Activation, HiddenConfig, Mlp, ModelConfig, Readout, Task};
use whet::{Cache, ModelExportOptions, ModelFormat, Override, PreparedData, Run};

/// The largest absolute difference allowed between whet's outputs and the graph's.
const TOLERANCE: f64 = 1e-5;

/// A model's outputs: the main one (probabilities or values, as f64) and the labels (binary and
/// classification).
#[derive(Debug)]
struct Outputs {
    main: Array2<f64>,
    labels: Option<Vec<i64>>,
}

/// Runs the ONNX file at `path` on `input` (its one input), returns its outputs.
fn run_onnx(path: &Path, input: Tensor) -> Outputs {
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let out = model.run(tvec!(input.into())).unwrap();
    assert!(out.len() <= 2, "{} outputs", out.len());
    let main = match out[0].datum_type() {
        DatumType::F32 => out[0].to_plain_array_view::<f32>().unwrap().mapv(f64::from),
        DatumType::F64 => out[0].to_plain_array_view::<f64>().unwrap().to_owned(),
        t => panic!("main output of type {t:?}"),
    };
    let shape = main.shape().to_vec();
    assert_eq!(shape.len(), 2, "output shape {shape:?}");
    let main =
        Array2::from_shape_vec((shape[0], shape[1]), main.iter().copied().collect()).unwrap();
    let labels = out.get(1).map(|l| {
        // tract keeps int64 values that reach a Reshape as dimensions (TDim); as i64 again.
        let l = l.cast_to::<i64>().unwrap();
        let v = l.to_plain_array_view::<i64>().unwrap();
        assert_eq!(v.shape(), [shape[0]], "label shape");
        v.iter().copied().collect()
    });
    Outputs { main, labels }
}

/// whet's own outputs for `x` read through `readout`: the network's outputs
/// ([`Mlp::predict`]; regression values through [`Readout::values`]) and labels
/// ([`Readout::label`] of each row's logits).
fn whet_outputs(net: &Mlp, readout: &Readout, x: ArrayView2<f32>) -> Outputs {
    let predicted = net.predict(x);
    let main = match net.task() {
        Task::Regression => readout.values(predicted.view()),
        _ => predicted.mapv(f64::from),
    };
    let labels = (net.task() != Task::Regression).then(|| {
        let mut ws = net.workspace(x.nrows(), 0);
        ws.batch_mut(x.nrows()).0.assign(&x);
        net.forward(&mut ws, x.nrows(), None);
        ws.logits()
            .rows()
            .into_iter()
            .map(|z| readout.label(z.as_slice().unwrap()) as i64)
            .collect()
    });
    Outputs { main, labels }
}

/// The largest |whet - onnx| over the main outputs; panics when a label differs.
fn compare(what: &str, want: &Outputs, got: &Outputs) -> f64 {
    assert_eq!(want.main.dim(), got.main.dim(), "{what}");
    assert_eq!(want.labels, got.labels, "{what}: labels");
    want.main
        .iter()
        .zip(got.main.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn tensor_f32(x: ArrayView2<f32>) -> Tensor {
    let v: Vec<f32> = x.iter().copied().collect();
    tract_ndarray::Array2::from_shape_vec((x.nrows(), x.ncols()), v)
        .unwrap()
        .into()
}

/// A network alone (input `x`, float) with `readout`'s head as an ONNX file.
fn network_file(net: &Mlp, readout: &Readout, path: &Path) {
    use whet::train::onnx::{DataType, Graph, Model, ValueInfo};
    let mut g = Graph::new("net");
    g.inputs
        .push(ValueInfo::batch("x", DataType::Float, &[net.input_dim()]));
    whet::train::onnx::append_network(&mut g, net, readout, "x");
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
            let readout = Readout::of(&net);
            let path = dir.path().join(format!("{act:?}-{task:?}.onnx"));
            network_file(&net, &readout, &path);
            let want = whet_outputs(&net, &readout, x.view());
            let got = run_onnx(&path, tensor_f32(x.view()));
            let d = compare(&format!("{act:?} {task:?}"), &want, &got);
            assert!(d <= TOLERANCE, "{act:?} {task:?}: max |diff| {d}");
        }
    }
}

/// The head reads the network as the run's [`Readout`] does: a binary threshold other than 0.5
/// (labels on both sides of it) and a regression target's scale.
#[test]
fn the_head_uses_the_threshold_and_the_target_scale() {
    let dir = tempfile::tempdir().unwrap();
    let x = Array2::from_shape_fn((200, 3), |(i, j)| {
        ((i * 11 + j * 5) % 23) as f32 / 4.0 - 3.0
    });
    let mut net = Mlp::new(
        &ModelConfig::binary().with_hidden([HiddenConfig::dense(4)]),
        3,
        1,
        7,
    )
    .unwrap();
    // A threshold at the median score: half the rows each side.
    let mut scores: Vec<f32> = net.predict(x.view()).iter().copied().collect();
    scores.sort_by(f32::total_cmp);
    let t = f64::from(scores[scores.len() / 2]);
    net.set_threshold(t).unwrap();
    let readout = Readout::of(&net);
    let path = dir.path().join("binary.onnx");
    network_file(&net, &readout, &path);
    let want = whet_outputs(&net, &readout, x.view());
    let got = run_onnx(&path, tensor_f32(x.view()));
    assert!(compare("binary", &want, &got) <= TOLERANCE);
    let positives = want.labels.as_ref().unwrap().iter().sum::<i64>();
    assert!(
        (80..=120).contains(&positives),
        "{positives} positives at {t}"
    );
    // The default threshold would give other labels: the graph follows the network's.
    let default = whet_outputs(&net, &Readout::new(Task::Binary), x.view());
    assert_ne!(default.labels, got.labels);

    let net = Mlp::new(
        &ModelConfig::regression().with_hidden([HiddenConfig::dense(4)]),
        3,
        1,
        8,
    )
    .unwrap();
    let scale = whet::core::TargetScale {
        mean: 42.5,
        std: 13.25,
    };
    let readout = Readout::of(&net).with_target_scale(Some(scale));
    let path = dir.path().join("regression.onnx");
    network_file(&net, &readout, &path);
    let want = whet_outputs(&net, &readout, x.view());
    let got = run_onnx(&path, tensor_f32(x.view()));
    let d = compare("regression", &want, &got);
    assert!(d <= TOLERANCE, "regression: max |diff| {d}");
    // In the target's units, not the network's.
    let raw = net.predict(x.view());
    assert!((got.main[[0, 0]] - f64::from(raw[[0, 0]])).abs() > 1.0);
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
    let run_dir = dir.join("run");
    let outcome = run
        .execute(&run_dir, run.seed(), &cache, &NoProgress)
        .unwrap();
    assert_eq!(outcome.status, whet::RunStatus::Ok, "{name}");
    let onnx = dir.join("model.onnx");
    let options = ModelExportOptions {
        format: ModelFormat::Onnx,
        layout: None,
    };
    // A k-fold run has a model per fold: its own folder is refused, the first fold's exported.
    let (out, fold) = match run.folds() {
        Some((_, repeats)) => {
            let e = whet::export_model(&run_dir, &onnx, &options).unwrap_err();
            assert!(e.to_string().contains("k-fold run"), "{e}");
            let fold = whet::tabular::Fold {
                repeat: 0,
                index: 0,
            };
            (run_dir.join("folds").join(fold.folder(repeats)), Some(fold))
        }
        None => (run_dir, None),
    };
    let report = whet::export_model(&out, &onnx, &options).unwrap();
    let net = whet::train::checkpoint::load(&out.join("model.safetensors")).unwrap();
    let prepared = run
        .prepare_fold(run.seed(), fold, &cache, &NoProgress)
        .unwrap();
    // How the run read its network: its decision (threshold), the target's scale.
    let readout = Readout::of(&net).with_target_scale(prepared.target_scale());
    let (want, input) = match &prepared.data {
        PreparedData::Images(p) => {
            let test =
                whet::image_arrays(&p.test, &p.normalizer, p.train.class_names().len()).unwrap();
            let want = whet_outputs(&net, &readout, test.x().view());
            let (n, h, w, c) = (p.test.len(), p.test.h(), p.test.w(), p.test.c());
            let pixels =
                tract_ndarray::Array4::from_shape_vec((n, h, w, c), p.test.pixels().to_vec())
                    .unwrap();
            (want, Tensor::from(pixels))
        }
        PreparedData::Tables(t) => {
            let want = whet_outputs(&net, &readout, t.test.in_memory().unwrap().x.view());
            let main = t.manifest.data.main_name().unwrap().to_string();
            let path = t.manifest.data.tables[&main].path.clone();
            let all = whet::tabular::graph_input_file(&t.manifest, &path).unwrap();
            let rows = &t.indices.test;
            let d = all.ncols();
            let mut v = Vec::with_capacity(rows.len() * d);
            for &r in rows {
                v.extend(all.row(r as usize).iter().copied());
            }
            (
                want,
                Tensor::from(tract_ndarray::Array2::from_shape_vec((rows.len(), d), v).unwrap()),
            )
        }
    };
    let rows = want.main.nrows();
    assert!(rows > 0, "{name}: empty test split");
    let got = run_onnx(&onnx, input);
    let d = compare(name, &want, &got);
    eprintln!("{name}: max |whet - onnx| = {d:e} over {rows} test rows, labels equal");
    assert!(
        d <= TOLERANCE,
        "{name}: max |whet - onnx| = {d} over {rows} rows ({report:?})"
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
fn flights_arr_delay_agrees_with_whet() {
    check_pipeline(
        "flights-arr-delay.yaml",
        &[&flights_limit(4000), "train.epochs=2"],
    );
}

#[test]
fn flights_origin_agrees_with_whet() {
    check_pipeline(
        "flights-origin.yaml",
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
fn mnist_simard_mlp_agrees_with_whet() {
    check_pipeline("mnist-simard-mlp.yaml", &MNIST);
}

#[test]
fn mnist_simard_cnn_agrees_with_whet() {
    check_pipeline("mnist-simard-cnn.yaml", &MNIST);
}

/// Convolutions with valid and same padding (an odd total: one more row and column at the
/// bottom and right), strides 1 and 2, overlapping max pooling and average pooling, batch
/// normalisation (after an epoch of training, so its running statistics are not the initial
/// ones), two channels in, for every task's head.
#[test]
fn convolutions_and_pools_agree_with_whet() {
    use whet::train::LayerConfig;
    let dir = tempfile::tempdir().unwrap();
    let layers: Vec<LayerConfig> = serde_json::from_value(serde_json::json!([
        {"conv": {"filters": 4, "kernel": 4, "padding": "same", "activation": "tanh"}},
        {"max_pool": {"size": 3, "stride": 2}},
        {"conv": {"filters": 3, "kernel": 3, "stride": 2, "padding": "same", "activation": "identity"}},
        {"batch_norm": {"activation": "relu"}},
        {"avg_pool": 2},
        {"dense": 7}
    ]))
    .unwrap();
    let x = Array2::from_shape_fn((23, 11 * 10 * 2), |(i, j)| {
        ((i * 7 + j * 13) % 29) as f32 / 7.0 - 2.0
    });
    for (task, outputs) in [
        (Task::Binary, 1),
        (Task::Classification, 4),
        (Task::Regression, 2),
    ] {
        let cfg = ModelConfig::new(task).with_layers(layers.clone());
        let mut net = Mlp::for_images(&cfg, [11, 10, 2], outputs, 5).unwrap();
        let y = Array2::from_shape_fn((x.nrows(), outputs), |(i, j)| match task {
            Task::Regression => ((i * 3 + j) % 7) as f32 - 3.0,
            Task::Binary => (i % 2) as f32,
            Task::Classification => f32::from(u8::from(i % outputs == j)),
        });
        let mut data = whet::train::ArraySource::new(x.clone(), y).unwrap();
        let fit = whet::train::TrainConfig::new(whet::train::OptimizerConfig::adam(0.01))
            .with_batch_size(8)
            .with_epochs(1);
        whet::train::fit(
            &mut net,
            &fit,
            5,
            &mut data,
            None,
            &mut whet::train::NoObserver,
        )
        .unwrap();
        assert!(net.spatial()[3].running().1.iter().all(|v| *v != 1.0));
        let readout = Readout::of(&net);
        let path = dir.path().join(format!("conv-{task:?}.onnx"));
        network_file(&net, &readout, &path);
        let want = whet_outputs(&net, &readout, x.view());
        let got = run_onnx(&path, tensor_f32(x.view()));
        let d = compare(&format!("conv {task:?}"), &want, &got);
        assert!(d <= TOLERANCE, "conv {task:?}: max |diff| {d}");
    }
}

#[test]
fn flights_small_delay_agrees_with_whet() {
    check_pipeline("flights-small-delay.yaml", &["train.epochs=2"]);
}

#[test]
fn flights_small_arr_delay_agrees_with_whet() {
    check_pipeline("flights-small-arr-delay.yaml", &["train.epochs=2"]);
}

#[test]
fn every_shipped_pipeline_has_an_agreement_test() {
    let this = include_str!("onnx.rs");
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
