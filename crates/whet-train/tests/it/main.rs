//! Integration tests of whet-train: gradient checks, small problems learnt, determinism,
//! checkpoints, transfer, divergence, early stopping.

mod conv;
mod idx;

use ndarray::Array2;
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use whet_core::rng::stream;
use whet_train::NoiseKey;
use whet_train::gradcheck::gradient_check;
use whet_train::*;

fn model_cfg(task: Task, hidden: &[(usize, Activation, f64, f64)]) -> ModelConfig {
    let hidden = hidden
        .iter()
        .map(|&(dense, activation, noise, dropout)| {
            serde_json::from_value(serde_json::json!({
                "dense": dense, "activation": activation, "noise": noise, "dropout": dropout
            }))
            .unwrap()
        })
        .collect();
    ModelConfig {
        task,
        hidden,
        layers: Vec::new(),
        output: None,
        init: Init::Auto,
        threshold: None,
        threshold_criterion: None,
    }
}

fn train_cfg(json: &str) -> TrainConfig {
    serde_json::from_str(json).unwrap()
}

fn random_data(task: Task, n: usize, d: usize, k: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = stream(seed, &[99]);
    let x = Array2::from_shape_simple_fn((n, d), || StandardNormal.sample(&mut rng));
    let y = match task {
        Task::Classification => {
            let labels: Vec<usize> = (0..n).map(|_| rng.random_range(0..k)).collect();
            ArraySource::one_hot(&labels, k).unwrap()
        }
        Task::Binary => {
            Array2::from_shape_simple_fn((n, 1), || f32::from(u8::from(rng.random::<bool>())))
        }
        Task::Regression => {
            Array2::from_shape_simple_fn((n, k), || StandardNormal.sample(&mut rng))
        }
    };
    (x, y)
}

fn outputs(task: Task) -> usize {
    match task {
        Task::Classification => 3,
        Task::Binary => 1,
        Task::Regression => 2,
    }
}

const ACTIVATIONS: [Activation; 6] = [
    Activation::Relu,
    Activation::LeakyRelu,
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Identity,
    Activation::Softmax,
];
const TASKS: [Task; 3] = [Task::Classification, Task::Binary, Task::Regression];

/// Every hidden activation × every task/loss, with noise and dropout off (evaluation path and
/// zero rates) and on (training path with fixed draws).
#[test]
fn gradient_check_every_activation_and_loss() {
    let mut case = 0u64;
    for task in TASKS {
        for act in ACTIVATIONS {
            for (noise, dropout, train) in [
                (0.0, 0.0, false),
                (0.0, 0.0, true),
                (0.3, 0.0, true),
                (0.0, 0.4, true),
                (0.2, 0.3, true),
            ] {
                case += 1;
                let k = outputs(task);
                // Random small shapes.
                let mut r = stream(case, &[7]);
                let (d, h1, h2, n) = (
                    r.random_range(2..6),
                    r.random_range(3..7),
                    r.random_range(2..5),
                    r.random_range(2..6),
                );
                let cfg = model_cfg(
                    task,
                    &[
                        (h1, act, noise, dropout),
                        (h2, Activation::Tanh, noise, dropout),
                    ],
                );
                let net = Mlp::new(&cfg, d, k, case).unwrap();
                let (x, y) = random_data(task, n, d, k, case);
                let key = train.then_some(NoiseKey {
                    seed: case,
                    epoch: 1,
                    batch: 2,
                });
                let g = gradient_check(&net, x.view(), y.view(), key, 1e-3);
                assert!(g.checked > 0);
                assert!(
                    g.max_error < 2e-2,
                    "{task:?} {act:?} noise {noise} dropout {dropout} train {train} shapes d{d} h{h1} h{h2} n{n}: {}",
                    g.worst
                );
            }
        }
    }
}

/// Class-weighted binary and softmax cross-entropy: backpropagation matches central
/// differences of the weighted loss, with and without noise/dropout, and the weights change the
/// gradients (a check against the unweighted loss would fail).
#[test]
fn gradient_check_weighted_losses() {
    for (task, weights) in [
        (Task::Binary, vec![0.4f32, 3.5]),
        (Task::Classification, vec![0.5, 2.0, 4.0]),
    ] {
        for train in [false, true] {
            let (d, n, k) = (4, 6, outputs(task));
            let cfg = model_cfg(
                task,
                &[
                    (5, Activation::Tanh, 0.1, 0.2),
                    (3, Activation::Relu, 0.0, 0.0),
                ],
            );
            let mut net = Mlp::new(&cfg, d, k, 11).unwrap();
            let (x, y) = random_data(task, n, d, k, 11);
            let key = train.then_some(NoiseKey {
                seed: 11,
                epoch: 0,
                batch: 1,
            });
            let plain = whet_train::gradcheck::loss(&net, x.view(), y.view(), key);
            net.set_class_weights(ClassWeights::new(weights.clone()).unwrap())
                .unwrap();
            let weighted = whet_train::gradcheck::loss(&net, x.view(), y.view(), key);
            assert!(
                (weighted - plain).abs() > 1e-3,
                "{task:?}: weights must matter"
            );
            let g = gradient_check(&net, x.view(), y.view(), key, 1e-3);
            assert!(g.checked > 0);
            assert!(g.max_error < 2e-2, "{task:?} train {train}: {}", g.worst);
        }
    }
    // Regression has no classes to weigh; the count must match the classes.
    let mut reg = Mlp::new(&model_cfg(Task::Regression, &[]), 2, 1, 1).unwrap();
    assert!(
        reg.set_class_weights(ClassWeights::new(vec![1.0, 2.0]).unwrap())
            .is_err()
    );
    let mut bin = Mlp::new(&model_cfg(Task::Binary, &[]), 2, 1, 1).unwrap();
    assert!(
        bin.set_class_weights(ClassWeights::new(vec![1.0]).unwrap())
            .is_err()
    );
}

/// A frozen step layer below trainable layers: gradients above it are still exact.
#[test]
fn gradient_check_through_frozen_step_layer() {
    let cfg = model_cfg(
        Task::Classification,
        &[
            (6, Activation::Step, 0.0, 0.0),
            (4, Activation::Sigmoid, 0.0, 0.0),
        ],
    );
    let mut net = Mlp::new(&cfg, 3, 3, 5).unwrap();
    net.freeze(&[0]).unwrap();
    net.check_trainable().unwrap();
    let (x, y) = random_data(Task::Classification, 5, 3, 3, 5);
    let g = gradient_check(&net, x.view(), y.view(), None, 1e-3);
    assert_eq!(g.checked, 6 * 4 + 4 + 4 * 3 + 3);
    assert!(g.max_error < 2e-2, "{}", g.worst);
}

#[test]
fn training_through_step_is_a_clear_error() {
    let cfg = model_cfg(Task::Classification, &[(4, Activation::Step, 0.0, 0.0)]);
    let mut net = Mlp::new(&cfg, 2, 2, 1).unwrap();
    let (x, y) = random_data(Task::Classification, 8, 2, 2, 1);
    let mut src = ArraySource::new(x, y).unwrap();
    let err = fit(
        &mut net,
        &train_cfg(r#"{"optimizer": {"sgd": {}}}"#),
        1,
        &mut src,
        None,
        &mut NoObserver,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::StepNotDifferentiable {
                layer: 0,
                trainable: 0
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("derivative is zero almost everywhere"),
        "{msg}"
    );
}

fn xor() -> ArraySource {
    let x = ndarray::array![[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    ArraySource::new(x, ArraySource::one_hot(&[0, 1, 1, 0], 2).unwrap()).unwrap()
}

/// XOR is learnt to 100 % accuracy with momentum SGD in online mode and with full-batch Adam.
#[test]
fn xor_is_learnt() {
    for (train, batch) in [
        (
            r#"{"optimizer": {"momentum": {"lr": 0.02}}, "batch_size": 1, "epochs": 300}"#,
            "online",
        ),
        (
            r#"{"optimizer": {"sgd": {"lr": 0.1}}, "batch_size": 1, "epochs": 300}"#,
            "online sgd",
        ),
        (
            r#"{"optimizer": {"adam": {"lr": 0.05}}, "batch_size": "full", "epochs": 300}"#,
            "full",
        ),
        (
            r#"{"optimizer": {"nesterov": {"lr": 0.1}}, "batch_size": 2, "epochs": 300}"#,
            "mini",
        ),
    ] {
        let cfg = model_cfg(Task::Classification, &[(8, Activation::Tanh, 0.0, 0.0)]);
        let mut net = Mlp::new(&cfg, 2, 2, 3).unwrap();
        let mut data = xor();
        let r = fit(
            &mut net,
            &train_cfg(train),
            3,
            &mut data,
            None,
            &mut NoObserver,
        )
        .unwrap();
        let e = evaluate(&net, &mut data).unwrap();
        assert_eq!(e.accuracy(), Some(1.0), "{batch}: {:?}", r.curves.last());
        assert!(e.loss < 0.1, "{batch}: loss {}", e.loss);
    }
}

/// Binary task on XOR (one sigmoid output): 100 % accuracy and ROC AUC 1.
#[test]
fn xor_binary_is_learnt() {
    let cfg = model_cfg(Task::Binary, &[(8, Activation::Tanh, 0.0, 0.0)]);
    let mut net = Mlp::new(&cfg, 2, 1, 3).unwrap();
    let x = ndarray::array![[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    let y = ndarray::array![[0.0f32], [1.0], [1.0], [0.0]];
    let mut data = ArraySource::new(x, y).unwrap();
    fit(
        &mut net,
        &train_cfg(r#"{"optimizer": {"rmsprop": {"lr": 0.01}}, "batch_size": 4, "epochs": 500}"#),
        1,
        &mut data,
        None,
        &mut NoObserver,
    )
    .unwrap();
    let e = evaluate(&net, &mut data).unwrap();
    let Metrics::Classification(m) = &e.metrics else {
        panic!()
    };
    assert_eq!(m.accuracy, 1.0);
    assert_eq!(m.roc_auc, Some(1.0));
}

/// Regression y = x1 - 2 x2 + 0.5 learnt by AdaGrad: R² > 0.99.
#[test]
fn linear_regression_is_learnt() {
    let (x, _) = random_data(Task::Regression, 256, 2, 1, 4);
    let y = Array2::from_shape_fn((256, 1), |(i, _)| x[[i, 0]] - 2.0 * x[[i, 1]] + 0.5);
    let mut data = ArraySource::new(x, y).unwrap();
    let cfg = model_cfg(Task::Regression, &[(16, Activation::Tanh, 0.0, 0.0)]);
    let mut net = Mlp::new(&cfg, 2, 1, 4).unwrap();
    fit(
        &mut net,
        &train_cfg(r#"{"optimizer": {"adagrad": {"lr": 0.1}}, "batch_size": 32, "epochs": 100}"#),
        4,
        &mut data,
        None,
        &mut NoObserver,
    )
    .unwrap();
    let e = evaluate(&net, &mut data).unwrap();
    let Metrics::Regression(m) = &e.metrics else {
        panic!()
    };
    assert!(m.r2.unwrap() > 0.99, "{m:?}");
    assert!(
        (e.loss - m.mse / 2.0).abs() < 1e-6,
        "loss has the 1/2 factor"
    );
}

/// 2,000 MNIST training images, 784-128-10 ReLU with noise 0.05 and dropout 0.1, Adam with a
/// cosine schedule, 15 epochs: 89.9 % on the first 1,000 test images (seed 11); asserted >= 88 %.
#[test]
fn mnist_2000_images_are_learnt() {
    let (x, y) = idx::load("train", 2000, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let (tx, ty) = idx::load("t10k", 1000, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let cfg = model_cfg(Task::Classification, &[(128, Activation::Relu, 0.05, 0.1)]);
    let mut net = Mlp::new(&cfg, 784, 10, 11).unwrap();
    let mut train = ArraySource::new(x, y).unwrap();
    let mut test = ArraySource::new(tx, ty).unwrap();
    let tc = train_cfg(
        r#"{"optimizer": {"adam": {"lr": 0.002}}, "batch_size": 32, "epochs": 15, "schedule": {"cosine": {}}}"#,
    );
    let r = fit(
        &mut net,
        &tc,
        11,
        &mut train,
        Some(&mut test),
        &mut NoObserver,
    )
    .unwrap();
    let e = evaluate(&net, &mut test).unwrap();
    let acc = e.accuracy().unwrap();
    assert!(
        acc >= 0.88,
        "test accuracy {acc}, measured 0.899 when written"
    );
    assert_eq!(r.curves.last().unwrap().valid_accuracy, Some(acc));
    eprintln!("mnist 2000: test accuracy {acc:.4}");
}

fn train_for_determinism(optimizer: &str) -> Vec<f32> {
    let (x, y) = random_data(Task::Classification, 300, 220, 10, 8);
    let mut data = ArraySource::new(x, y).unwrap();
    let cfg = model_cfg(
        Task::Classification,
        &[
            (160, Activation::Relu, 0.1, 0.2),
            (64, Activation::Tanh, 0.0, 0.1),
        ],
    );
    let mut net = Mlp::new(&cfg, 220, 10, 21).unwrap();
    let tc = train_cfg(&format!(
        r#"{{"optimizer": {optimizer}, "batch_size": 128, "epochs": 3, "weight_decay": 0.001}}"#
    ));
    fit(&mut net, &tc, 21, &mut data, None, &mut NoObserver).unwrap();
    net.layers()
        .iter()
        .flat_map(|l| l.weight().iter().chain(l.bias().iter()).copied())
        .collect()
}

/// Same seed, same weights bit for bit, with 1 and 2 rayon threads (the products, the
/// element-wise passes of the 128 x 160 layer, the batch filling and the optimizer updates are
/// all large enough to take their parallel paths), with Adam and with heavy-ball momentum (whose
/// weight gradients are added into the velocity by the products themselves).
#[test]
fn same_seed_same_weights_across_thread_counts() {
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let mut one = Vec::new();
    for optimizer in [r#"{"adam": {}}"#, r#"{"momentum": {"lr": 0.01}}"#] {
        one = pool(1).install(|| {
            assert_eq!(rayon::current_num_threads(), 1);
            train_for_determinism(optimizer)
        });
        let two = pool(2).install(|| {
            assert_eq!(rayon::current_num_threads(), 2);
            train_for_determinism(optimizer)
        });
        assert_eq!(one.len(), two.len());
        assert!(
            one.iter()
                .zip(&two)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{optimizer}"
        );
    }
    // And a different seed gives different weights.
    let cfg = model_cfg(
        Task::Classification,
        &[
            (160, Activation::Relu, 0.1, 0.2),
            (64, Activation::Tanh, 0.0, 0.1),
        ],
    );
    let other = Mlp::new(&cfg, 220, 10, 22).unwrap();
    assert_ne!(
        other.layers()[0].weight().as_slice().unwrap()[..10],
        one[..10]
    );
}

#[test]
fn checkpoint_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    let cfg = model_cfg(
        Task::Binary,
        &[
            (7, Activation::LeakyRelu, 0.1, 0.25),
            (3, Activation::Sigmoid, 0.0, 0.0),
        ],
    );
    let mut net = Mlp::new(&cfg, 5, 1, 2).unwrap();
    // The threshold and the class weights are part of the architecture: a loaded network
    // labels and reports its loss as the saved one did.
    net.set_threshold(0.3).unwrap();
    net.set_class_weights(whet_train::ClassWeights::new(vec![1.0, 3.0]).unwrap())
        .unwrap();
    checkpoint::save(&net, &p).unwrap();
    let back = checkpoint::load(&p).unwrap();
    assert_eq!(back, net);
    assert_eq!(back.class_weights().unwrap().get(), [1.0, 3.0]);
    // The file follows the safetensors layout: u64 header length, JSON header, data.
    let bytes = std::fs::read(&p).unwrap();
    let h = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(h % 8, 0);
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + h]).unwrap();
    assert_eq!(
        header["layers.0.weight"]["shape"],
        serde_json::json!([5, 7])
    );
    assert_eq!(bytes.len() - 8 - h, 4 * net.parameter_count());
    // Corruption is an error, not a panic.
    std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
    let err = checkpoint::load(&p).unwrap_err().to_string();
    assert!(err.contains("data_offsets"), "{err}");
    std::fs::write(&p, b"abc").unwrap();
    assert!(checkpoint::load(&p).is_err());
}

/// `--layout torch`: every weight is stored transposed (`[out, in]`, PyTorch `nn.Linear`), the
/// biases as they are, and `load` transposes back to the same network.
#[test]
fn torch_layout_checkpoint_is_transposed_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("torch.safetensors");
    let cfg = model_cfg(Task::Classification, &[(4, Activation::Tanh, 0.0, 0.0)]);
    let net = Mlp::new(&cfg, 3, 2, 9).unwrap();
    checkpoint::save_with_layout(&net, &p, checkpoint::WeightLayout::Torch).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let h = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + h]).unwrap();
    let data = &bytes[8 + h..];
    for (i, layer) in net.layers().iter().enumerate() {
        let t = &header[format!("layers.{i}.weight")];
        assert_eq!(
            t["shape"],
            serde_json::json!([layer.outputs(), layer.inputs()])
        );
        let [b, e] = [0, 1].map(|k| t["data_offsets"][k].as_u64().unwrap() as usize);
        let stored: Vec<f32> = data[b..e]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        // stored[o, i] == W[i, o]
        for o in 0..layer.outputs() {
            for k in 0..layer.inputs() {
                assert_eq!(stored[o * layer.inputs() + k], layer.weight()[[k, o]]);
            }
        }
        assert_eq!(
            header[format!("layers.{i}.bias")]["shape"],
            serde_json::json!([layer.outputs()])
        );
    }
    assert!(
        header["__metadata__"]["weight_layout"]
            .as_str()
            .unwrap()
            .starts_with("torch")
    );
    assert_eq!(checkpoint::load(&p).unwrap(), net);
}

/// Transfer: digits 0-4 → 5-9 with frozen hidden layers; frozen layers do not move, the new
/// output layer is trained, and a fine-tuned run moves every layer.
#[test]
fn transfer_with_frozen_layers_leaves_them_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("base.safetensors");
    let (x, y) = idx::load("train", 600, &[0, 1, 2, 3, 4]);
    let cfg = model_cfg(
        Task::Classification,
        &[
            (32, Activation::Relu, 0.0, 0.0),
            (16, Activation::Relu, 0.0, 0.0),
        ],
    );
    let mut base = Mlp::new(&cfg, 784, 5, 1).unwrap();
    let tc = train_cfg(r#"{"optimizer": {"adam": {}}, "batch_size": 32, "epochs": 2}"#);
    fit(
        &mut base,
        &tc,
        1,
        &mut ArraySource::new(x, y).unwrap(),
        None,
        &mut NoObserver,
    )
    .unwrap();
    checkpoint::save(&base, &ckpt).unwrap();

    let (x2, y2) = idx::load("train", 600, &[5, 6, 7, 8, 9, 3]);
    let new_cfg = model_cfg(Task::Classification, &[]);
    let mut t = train_cfg(
        r#"{"optimizer": {"adam": {}}, "batch_size": 32, "epochs": 2,
        "transfer": {"checkpoint": "base.safetensors", "freeze": [0, 1]}}"#,
    );
    t.resolve_paths(dir.path());
    let mut net = build_model(&new_cfg, &t, None, 784, 6, 2).unwrap();
    assert_eq!(net.output_dim(), 6);
    let before = net.clone();
    fit(
        &mut net,
        &t,
        2,
        &mut ArraySource::new(x2.clone(), y2.clone()).unwrap(),
        None,
        &mut NoObserver,
    )
    .unwrap();
    for l in 0..2 {
        assert_eq!(
            net.layers()[l].weight(),
            base.layers()[l].weight(),
            "frozen layer {l} moved"
        );
        assert_eq!(net.layers()[l].bias(), base.layers()[l].bias());
    }
    assert_ne!(net.layers()[2].weight(), before.layers()[2].weight());

    let mut t2 = t.clone();
    t2.transfer.as_mut().unwrap().freeze.clear();
    let mut tuned = build_model(&new_cfg, &t2, None, 784, 6, 2).unwrap();
    fit(
        &mut tuned,
        &t2,
        2,
        &mut ArraySource::new(x2, y2).unwrap(),
        None,
        &mut NoObserver,
    )
    .unwrap();
    assert_ne!(tuned.layers()[0].weight(), base.layers()[0].weight());

    // Freezing everything, or a layer that does not exist, is an error.
    t2.transfer.as_mut().unwrap().freeze = vec![0, 1, 2];
    assert!(
        build_model(&new_cfg, &t2, None, 784, 6, 2)
            .unwrap_err()
            .to_string()
            .contains("nothing would be trained")
    );
    t2.transfer.as_mut().unwrap().freeze = vec![5];
    assert!(
        build_model(&new_cfg, &t2, None, 784, 6, 2)
            .unwrap_err()
            .to_string()
            .contains("does not exist")
    );
}

#[test]
fn divergence_is_detected_with_a_huge_learning_rate() {
    let (x, y) = random_data(Task::Classification, 256, 10, 3, 6);
    let mut data = ArraySource::new(x, y).unwrap();
    let cfg = model_cfg(Task::Classification, &[(32, Activation::Relu, 0.0, 0.0)]);
    let mut net = Mlp::new(&cfg, 10, 3, 6).unwrap();
    let tc = train_cfg(r#"{"optimizer": {"sgd": {"lr": 1000.0}}, "batch_size": 16, "epochs": 5}"#);
    let mut heard = Heard::default();
    let err = fit(&mut net, &tc, 6, &mut data, None, &mut heard).unwrap_err();
    let msg = err.to_string();
    let Error::Diverged(d) = err else {
        panic!("expected divergence, got {msg}")
    };
    // The observer heard of every batch before the diverged one, and not of that one.
    let before: Vec<_> = (1..d.epoch)
        .flat_map(|e| (1..=16).map(move |b| (e, b)))
        .chain((1..d.batch).map(|b| (d.epoch, b)))
        .collect();
    let order: Vec<_> = heard.batches.iter().map(|&(e, b, _)| (e, b)).collect();
    assert_eq!(order, before);
    assert!(
        msg.contains("lower the learning rate") && msg.contains("learning rate 1000"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("epoch {}, batch {}", d.epoch, d.batch)),
        "{msg}"
    );
    assert_eq!(d.curves.len(), d.epoch - 1);
}

/// With a tiny validation set and a high learning rate the validation loss soon rises; the
/// run stops early and the restored weights are exactly the best epoch's.
#[test]
fn early_stopping_restores_best_weights() {
    let (x, y) = random_data(Task::Classification, 200, 20, 3, 9);
    let (vx, vy) = random_data(Task::Classification, 50, 20, 3, 10);
    let cfg = model_cfg(Task::Classification, &[(64, Activation::Relu, 0.0, 0.0)]);
    let mut net = Mlp::new(&cfg, 20, 3, 9).unwrap();
    let tc = train_cfg(
        r#"{"optimizer": {"adam": {"lr": 0.01}}, "batch_size": 20, "epochs": 60,
        "early_stopping": {"patience": 3}}"#,
    );
    let mut valid = ArraySource::new(vx, vy).unwrap();
    let r = fit(
        &mut net,
        &tc,
        9,
        &mut ArraySource::new(x, y).unwrap(),
        Some(&mut valid),
        &mut NoObserver,
    )
    .unwrap();
    assert!(
        r.stopped_early,
        "{:?}",
        r.curves.iter().map(|c| c.valid_loss).collect::<Vec<_>>()
    );
    let best = r.best_epoch.unwrap();
    assert_eq!(r.curves.len(), best + 3);
    let best_loss = r.curves[best - 1].valid_loss.unwrap();
    let min = r
        .curves
        .iter()
        .map(|c| c.valid_loss.unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(best_loss, min);
    let now = evaluate(&net, &mut valid).unwrap().loss;
    assert!(
        (now - best_loss).abs() < 1e-12,
        "restored weights give {now}, best was {best_loss}"
    );
}

/// `min_epochs` keeps a run going past an early stop; `metric: accuracy` picks the epoch with
/// the highest validation accuracy (not the lowest loss) and restores its weights; a metric the
/// task does not have is refused before training.
#[test]
fn early_stopping_min_epochs_and_metric() {
    let (x, y) = random_data(Task::Classification, 200, 20, 3, 9);
    let (vx, vy) = random_data(Task::Classification, 50, 20, 3, 10);
    let cfg = model_cfg(Task::Classification, &[(64, Activation::Relu, 0.0, 0.0)]);
    let run = |es: &str| {
        let mut net = Mlp::new(&cfg, 20, 3, 9).unwrap();
        let tc = train_cfg(&format!(
            r#"{{"optimizer": {{"adam": {{"lr": 0.01}}}}, "batch_size": 20, "epochs": 60,
            "early_stopping": {es}}}"#
        ));
        let mut valid = ArraySource::new(vx.clone(), vy.clone()).unwrap();
        let r = fit(
            &mut net,
            &tc,
            9,
            &mut ArraySource::new(x.clone(), y.clone()).unwrap(),
            Some(&mut valid),
            &mut NoObserver,
        );
        (r, net, valid)
    };
    let (plain, ..) = run(r#"{"patience": 3}"#);
    let plain = plain.unwrap();
    assert!(plain.stopped_early && plain.curves.len() < 40);
    // The same run, held to 40 epochs: same first epochs, then it goes on.
    let (held, ..) = run(r#"{"patience": 3, "min_epochs": 40}"#);
    let held = held.unwrap();
    assert!(held.curves.len() >= 40, "{} epochs", held.curves.len());
    assert_eq!(
        held.curves[0].valid_loss, plain.curves[0].valid_loss,
        "min_epochs changes when training stops, not how"
    );

    let (r, net, mut valid) = run(r#"{"patience": 4, "metric": "accuracy"}"#);
    let r = r.unwrap();
    let best = r.best_epoch.unwrap();
    let acc: Vec<f64> = r.curves.iter().map(|c| c.valid_accuracy.unwrap()).collect();
    let max = acc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(acc[best - 1], max, "{acc:?}");
    assert_eq!(
        acc.iter().position(|&a| a == max).unwrap() + 1,
        best,
        "the first epoch reaching the best accuracy is kept (later ties are no improvement)"
    );
    if r.stopped_early {
        assert_eq!(r.curves.len(), best + 4);
    }
    let now = evaluate(&net, &mut valid).unwrap();
    assert_eq!(now.accuracy(), Some(max));

    let (r, ..) = run(r#"{"metric": "r2"}"#);
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("train.early_stopping.metric") && msg.contains("unknown metric `r2`"),
        "{msg}"
    );
    assert!(msg.contains("accuracy, balanced_accuracy"), "{msg}");
}

/// Records what an observer hears: epoch starts, each batch's (epoch, batch, loss), epoch ends.
#[derive(Default)]
struct Heard {
    starts: Vec<usize>,
    batches: Vec<(usize, usize, f64)>,
    ends: Vec<EpochRecord>,
}

impl Observer for Heard {
    fn epoch_start(&mut self, epoch: usize, _: usize, _: usize) {
        self.starts.push(epoch);
    }
    fn batch_end(&mut self, epoch: usize, batch: usize, loss: f64) {
        self.batches.push((epoch, batch, loss));
    }
    fn epoch_end(&mut self, r: &EpochRecord) {
        self.ends.push(r.clone());
    }
}

/// The observer sees every epoch and every batch, in order, with each batch's mean loss (the
/// epoch's loss is their mean over samples), with one thread and with two (where batches run
/// in groups on a pool thread and the observer hears of them after each group).
#[test]
fn observer_sees_epochs_and_batches() {
    let cfg = model_cfg(Task::Classification, &[(4, Activation::Tanh, 0.0, 0.0)]);
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut c = Heard::default();
        let mut net = Mlp::new(&cfg, 2, 2, 1).unwrap();
        pool.install(|| {
            fit(
                &mut net,
                &train_cfg(r#"{"optimizer": {"sgd": {}}, "batch_size": 3, "epochs": 2}"#),
                1,
                &mut xor(),
                None,
                &mut c,
            )
        })
        .unwrap();
        assert_eq!(c.starts, [1, 2]);
        let order: Vec<_> = c.batches.iter().map(|&(e, b, _)| (e, b)).collect();
        assert_eq!(order, [(1, 1), (1, 2), (2, 1), (2, 2)], "{threads} threads");
        for (e, end) in c.ends.iter().enumerate() {
            // 4 samples in batches of 3 and 1.
            let (m1, m2) = (c.batches[2 * e].2, c.batches[2 * e + 1].2);
            let want = (3.0 * m1 + m2) / 4.0;
            assert!(
                (end.train_loss - want).abs() < 1e-12,
                "{} vs {want}",
                end.train_loss
            );
        }
    }
}

#[test]
fn bad_dimensions_are_errors() {
    let cfg = model_cfg(Task::Binary, &[]);
    assert!(
        Mlp::new(&cfg, 2, 2, 1)
            .unwrap_err()
            .to_string()
            .contains("binary")
    );
    let cfg = model_cfg(Task::Classification, &[]);
    let mut net = Mlp::new(&cfg, 3, 2, 1).unwrap();
    let err = fit(
        &mut net,
        &train_cfg(r#"{"optimizer": {"sgd": {}}}"#),
        1,
        &mut xor(),
        None,
        &mut NoObserver,
    )
    .unwrap_err();
    assert!(err.to_string().contains("expected 3, got 2"), "{err}");
}

/// A source that fails at epoch 1 with an I/O error, wrapped as a [`SourceError`].
struct FailingSource(ArraySource);

impl BatchSource for FailingSource {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn input_dim(&self) -> usize {
        self.0.input_dim()
    }
    fn target_dim(&self) -> usize {
        self.0.target_dim()
    }
    fn fill(
        &mut self,
        epoch: usize,
        indices: &[usize],
        x: ndarray::ArrayViewMut2<f32>,
        y: ndarray::ArrayViewMut2<f32>,
    ) -> Result<(), SourceError> {
        if epoch == 1 {
            return Err(SourceError::new(std::io::Error::other("disk gone")));
        }
        self.0.fill(epoch, indices, x, y)
    }
}

/// A source's error reaches the caller of `fit` with its value and chain intact.
#[test]
fn source_error_keeps_its_chain() {
    use std::error::Error as _;
    let cfg = model_cfg(Task::Classification, &[]);
    let mut net = Mlp::new(&cfg, 2, 2, 1).unwrap();
    let err = fit(
        &mut net,
        &train_cfg(r#"{"optimizer": {"sgd": {}}, "epochs": 3}"#),
        1,
        &mut FailingSource(xor()),
        None,
        &mut NoObserver,
    )
    .unwrap_err();
    let Error::Source { epoch, source, .. } = &err else {
        panic!("expected Error::Source, got {err}")
    };
    assert_eq!(*epoch, 1);
    assert!(err.to_string().ends_with(": disk gone"), "{err}");
    let SourceError::Other(inner) = source else {
        panic!("expected SourceError::Other, got {source:?}")
    };
    assert!(inner.downcast_ref::<std::io::Error>().is_some());
    assert_eq!(err.source().unwrap().to_string(), "disk gone");
}

/// The YAML shape the CLI uses parses into the config types, validates, and builds a model.
#[test]
fn documented_yaml_parses() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Run {
        model: ModelConfig,
        train: TrainConfig,
    }
    let yaml = r#"
model:
  task: classification
  hidden:
    - { dense: 256, activation: relu, noise: 0.1 }
    - { dense: 128, activation: relu, dropout: 0.2 }
  output: { activation: softmax, loss: cross_entropy }
  init: auto
train:
  optimizer: { adam: { lr: 0.001 } }
  batch_size: 64
  epochs: 15
  weight_decay: 0
  schedule: { cosine: { min_lr: 0.0 } }
  early_stopping: { patience: 3, min_delta: 0.0 }
  divergence: { factor: 1000.0 }
  transfer: { checkpoint: path.safetensors, freeze: [0], replace_output: true }
"#;
    let run: Run = serde_saphyr::from_str(yaml).unwrap();
    assert!(run.model.validate().is_empty());
    assert!(run.train.validate().is_empty());
    assert_eq!(run.train.batch_size, BatchSize::Samples(64));
    assert_eq!(run.model.hidden[1].dropout.get(), 0.2);
    let full: TrainConfig =
        serde_saphyr::from_str("optimizer: { sgd: { lr: 0.1 } }\nbatch_size: full\n").unwrap();
    assert_eq!(full.batch_size, BatchSize::Full);
    let net = Mlp::new(&run.model, 784, 10, 1).unwrap();
    assert_eq!(
        net.parameter_count(),
        784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    );
    // A mismatched explicit pair, an unknown key and an out-of-range dropout are errors.
    let bad: ModelConfig =
        serde_saphyr::from_str("task: regression\noutput: { loss: cross_entropy }\n").unwrap();
    assert!(bad.validate().iter().any(|i| i.path == "output"));
    assert!(serde_saphyr::from_str::<ModelConfig>("task: binary\nhiden: []\n").is_err());
    assert!(
        serde_saphyr::from_str::<ModelConfig>(
            "task: binary\nhidden: [{ dense: 4, dropout: 1.5 }]\n"
        )
        .is_err()
    );
}
