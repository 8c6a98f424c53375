//! Convolutions and pools: gradient checks, determinism, checkpoints, transfer, learning.

use crate::{idx, random_data, train_cfg};
use ndarray::Array2;
use whet_train::gradcheck::{gradient_check, gradient_check_piecewise};
use whet_train::*;

fn layers(yaml_json: serde_json::Value) -> Vec<LayerConfig> {
    serde_json::from_value(yaml_json).unwrap()
}

fn cnn(task: Task, l: serde_json::Value) -> ModelConfig {
    ModelConfig::new(task).with_layers(layers(l))
}

/// The piecewise gradient check (max pools and ReLUs have kinks, where no derivative exists):
/// at most a third of the parameters may sit within `ε` of a kink (a fifth is seen with ReLU
/// before an overlapping max pool on these tiny images), every other one must agree.
fn check(net: &Mlp, x: &Array2<f32>, y: &Array2<f32>, key: Option<NoiseKey>) -> (f64, String) {
    let g = gradient_check_piecewise(net, x.view(), y.view(), key, 1e-3);
    assert!(
        g.checked > 0 && g.skipped * 3 <= g.checked + g.skipped,
        "{} of {} parameters near a kink",
        g.skipped,
        g.checked + g.skipped
    );
    (g.max_error, g.worst)
}

/// Every kind of image layer (convolution with valid and same padding, odd and even kernels,
/// strides 1 and 2, max and average pooling, overlapping windows), every task, with and without
/// the training regularisers after the image layers, and with frozen layers below and above.
/// The smooth stack (sigmoid, identity, average pooling) is also checked with every parameter,
/// no kink allowance.
#[test]
fn gradient_check_convolutions_and_pools() {
    let stacks = [
        serde_json::json!([
            {"conv": {"filters": 3, "kernel": 3, "padding": "same", "activation": "tanh"}},
            {"max_pool": 2},
            {"conv": {"filters": 4, "kernel": 2, "activation": "leaky_relu"}},
            {"flatten": {}},
            {"dense": {"units": 5, "activation": "tanh"}}
        ]),
        serde_json::json!([
            {"conv": {"filters": 2, "kernel": 3, "stride": 2, "activation": "sigmoid",
                      "noise": 0.2, "dropout": 0.3}},
            {"avg_pool": {"size": 2, "stride": 1, "dropout": 0.2}},
            {"conv": {"filters": 3, "kernel": 2, "padding": "same", "stride": 2,
                      "activation": "identity"}}
        ]),
        serde_json::json!([
            {"conv": {"filters": 3, "kernel": 4, "padding": "same", "activation": "relu"}},
            {"max_pool": {"size": 3, "stride": 2}},
            {"dense": 4}
        ]),
        serde_json::json!([
            {"batch_norm": {}},
            {"conv": {"filters": 3, "kernel": 3, "activation": "identity"}},
            {"batch_norm": {"activation": "tanh", "noise": 0.1}},
            {"avg_pool": 2},
            {"batch_norm": {"activation": "sigmoid", "dropout": 0.2, "epsilon": 0.001}},
            {"dense": {"units": 4, "activation": "tanh"}}
        ]),
    ];
    let mut case = 0u64;
    for task in crate::TASKS {
        for (s, stack) in stacks.iter().enumerate() {
            for train in [false, true] {
                case += 1;
                let k = crate::outputs(task);
                let cfg = cnn(task, stack.clone());
                let net = Mlp::for_images(&cfg, [7, 6, 2], k, case).unwrap();
                let (x, y) = random_data(task, 3, 7 * 6 * 2, k, case);
                let key = train.then_some(NoiseKey {
                    seed: case,
                    epoch: 1,
                    batch: 2,
                });
                let (err, worst) = check(&net, &x, &y, key);
                assert!(
                    err < 2e-2,
                    "{task:?} stack {s} train {train}: max error {err}, {worst}"
                );
                if s == 1 || s == 3 {
                    let g = gradient_check(&net, x.view(), y.view(), key, 1e-3);
                    assert!(
                        g.max_error < 2e-2,
                        "smooth stack: {}, {}",
                        g.max_error,
                        g.worst
                    );
                }
                // Frozen: the first convolution alone, then every dense layer (the gradient
                // still flows through them to the convolutions).
                let mut frozen = net.clone();
                frozen.freeze(&[0]).unwrap();
                let (err, worst) = check(&frozen, &x, &y, key);
                assert!(err < 2e-2, "frozen conv 0: {err}, {worst}");
                let convs = net.spatial().iter().filter(|l| l.has_weights()).count();
                let dense: Vec<usize> = (convs..net.weighted_layers()).collect();
                frozen.freeze(&dense).unwrap();
                let g = gradient_check(&frozen, x.view(), y.view(), key, 1e-3);
                assert_eq!(
                    g.checked,
                    net.spatial()
                        .iter()
                        .map(|l| l.weight().len() + l.bias().len())
                        .sum::<usize>(),
                    "only the convolutions are checked"
                );
                let (err, worst) = check(&frozen, &x, &y, key);
                assert!(err < 2e-2, "frozen dense: {err}, {worst}");
            }
        }
    }
}

fn lenet() -> ModelConfig {
    cnn(
        Task::Classification,
        serde_json::json!([
            {"conv": {"filters": 6, "kernel": 5, "padding": "same", "activation": "identity"}},
            {"batch_norm": {"activation": "relu"}},
            {"max_pool": 2},
            {"conv": {"filters": 16, "kernel": 5, "dropout": 0.1}},
            {"max_pool": 2},
            {"dense": 64}
        ]),
    )
}

fn train_lenet(seed: u64) -> (Mlp, f64) {
    let (x, y) = idx::load("train", 2000, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let (tx, ty) = idx::load("t10k", 500, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let mut net = Mlp::for_images(&lenet(), [28, 28, 1], 10, seed).unwrap();
    let tc = train_cfg(
        r#"{"optimizer": {"adam": {"lr": 0.002}}, "batch_size": 32, "epochs": 6, "schedule": {"cosine": {}}}"#,
    );
    let mut train = ArraySource::new(x, y).unwrap();
    fit(&mut net, &tc, seed, &mut train, None, &mut NoObserver).unwrap();
    let acc = evaluate(&net, &mut ArraySource::new(tx, ty).unwrap())
        .unwrap()
        .accuracy()
        .unwrap();
    (net, acc)
}

/// A LeNet-like network learns MNIST from 2,000 images, gives the same weights bit for bit
/// with 1 and 2 threads, and survives a checkpoint round trip (the loaded network predicts
/// the same outputs).
#[test]
fn a_convolutional_network_learns_deterministically_and_round_trips() {
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let (one, acc) = pool(1).install(|| train_lenet(3));
    let (two, _) = pool(2).install(|| train_lenet(3));
    let bits = |m: &Mlp| -> Vec<u32> {
        m.spatial()
            .iter()
            .flat_map(|l| l.weight().iter().chain(l.bias().iter()))
            .chain(m.layers().iter().flat_map(|l| l.weight().iter()))
            .map(|v| v.to_bits())
            .collect()
    };
    assert_eq!(bits(&one), bits(&two), "1 and 2 threads differ");
    assert!(acc >= 0.85, "test accuracy {acc}");
    eprintln!("lenet on 2000 MNIST images, 6 epochs: test accuracy {acc:.4}");

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cnn.safetensors");
    checkpoint::save(&one, &p).unwrap();
    let back = checkpoint::load(&p).unwrap();
    assert_eq!(back, one);
    let bytes = std::fs::read(&p).unwrap();
    let h = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + h]).unwrap();
    assert_eq!(header["conv.0.weight"]["shape"], serde_json::json!([25, 6]));
    assert_eq!(
        header["conv.1.weight"]["shape"],
        serde_json::json!([150, 16])
    );
    assert_eq!(header["conv.1.bias"]["shape"], serde_json::json!([16]));
    assert_eq!(
        header["batch_norm.0.running_var"]["shape"],
        serde_json::json!([6])
    );
    // Training moved the running statistics away from their start (mean 0, variance 1), and
    // the loaded network evaluates with them.
    let (mean, var) = one.spatial()[1].running();
    assert!(mean.iter().all(|m| *m != 0.0) && var.iter().all(|v| *v != 1.0 && *v > 0.0));
    assert_eq!(back.spatial()[1].running(), one.spatial()[1].running());
    // Every parameter, plus the running mean and variance of the 6 normalised channels.
    assert_eq!(bytes.len() - 8 - h, 4 * (one.parameter_count() + 2 * 6));
    let (x, _) = idx::load("t10k", 50, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(back.predict(x.view()), one.predict(x.view()));
    // The PyTorch layout is for dense stacks.
    let err = checkpoint::save_with_layout(&one, &p, checkpoint::WeightLayout::Torch)
        .unwrap_err()
        .to_string();
    assert!(err.contains("dense (nn.Linear) layers only"), "{err}");
}

/// Transfer from a convolutional checkpoint: the convolutions come along, a frozen one stays
/// put while the next one and the new output layer train; another image shape is refused.
#[test]
fn transfer_keeps_the_convolutions() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("base.safetensors");
    let cfg = cnn(
        Task::Classification,
        serde_json::json!([
            {"conv": {"filters": 4, "kernel": 5, "stride": 2}},
            {"conv": {"filters": 8, "kernel": 3, "stride": 2}},
            {"dense": 16}
        ]),
    );
    let (x, y) = idx::load("train", 300, &[0, 1, 2, 3, 4]);
    let mut base = Mlp::for_images(&cfg, [28, 28, 1], 5, 1).unwrap();
    let tc = train_cfg(r#"{"optimizer": {"adam": {}}, "batch_size": 32, "epochs": 1}"#);
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

    let (x2, y2) = idx::load("train", 300, &[5, 6, 7]);
    let mut t = train_cfg(
        r#"{"optimizer": {"adam": {}}, "batch_size": 32, "epochs": 1,
        "transfer": {"checkpoint": "base.safetensors", "freeze": [0]}}"#,
    );
    t.resolve_paths(dir.path());
    let plain = ModelConfig::classification();
    let mut net = build_model(&plain, &t, Some([28, 28, 1]), 784, 3, 2).unwrap();
    assert_eq!(net.spatial().len(), 2);
    fit(
        &mut net,
        &t,
        2,
        &mut ArraySource::new(x2, y2).unwrap(),
        None,
        &mut NoObserver,
    )
    .unwrap();
    assert_eq!(
        net.spatial()[0].weight(),
        base.spatial()[0].weight(),
        "frozen conv 0 moved"
    );
    assert_eq!(net.spatial()[0].bias(), base.spatial()[0].bias());
    assert!(net.spatial()[0].is_frozen() && !net.spatial()[1].is_frozen());
    assert_ne!(net.spatial()[1].weight(), base.spatial()[1].weight());
    assert_ne!(net.layers()[0].weight(), base.layers()[0].weight());
    // The same layers listed in the run file are accepted; others are refused.
    assert!(build_model(&cfg, &t, Some([28, 28, 1]), 784, 3, 2).is_ok());
    let other = cnn(
        Task::Classification,
        serde_json::json!([{"conv": {"filters": 4, "kernel": 3}}, {"dense": 16}]),
    );
    let err = build_model(&other, &t, Some([28, 28, 1]), 784, 3, 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("image layers of model.layers differ"), "{err}");
    let err = build_model(&plain, &t, Some([784, 1, 1]), 784, 3, 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("for images of [28, 28, 1]"), "{err}");
    // Freeze numbers the convolutions first: 0 and 1 are convolutions, 2 and 3 dense layers.
    t.transfer.as_mut().unwrap().freeze = vec![4];
    let err = build_model(&plain, &t, Some([28, 28, 1]), 784, 3, 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("convolutions 0..=1"), "{err}");
}

/// The run-file shapes: shorthands, maps, and the checks that name the layer.
#[test]
fn layer_configs_parse_and_validate() {
    let yaml = r#"
task: classification
layers:
  - conv: { filters: 8, kernel: 5, padding: same }
  - max_pool: 2
  - avg_pool: { size: 3, stride: 2 }
  - batch_norm: { activation: relu, momentum: 0.05 }
  - flatten: {}
  - dense: 32
  - dense: { units: 16, activation: tanh, dropout: 0.5 }
"#;
    let m: ModelConfig = serde_saphyr::from_str(yaml).unwrap();
    assert!(m.validate().is_empty(), "{:?}", m.validate());
    assert_eq!(
        m.layers[0],
        LayerConfig::Conv(ConvConfig::new(8, 5).with_padding(Padding::Same))
    );
    assert_eq!(m.layers[1], LayerConfig::MaxPool(PoolConfig::new(2)));
    assert_eq!(
        m.layers[2],
        LayerConfig::AvgPool(PoolConfig::new(3).with_stride(2))
    );
    assert_eq!(m.dense_layers().len(), 2);
    assert_eq!(m.dense_layers()[1].dense, 16);
    assert!(m.has_image_layers());
    // Shapes: 28 -> same 28 -> pool 14 -> avg 3/2: 6.
    let net = Mlp::for_images(&m, [28, 28, 1], 10, 1).unwrap();
    assert_eq!(net.spatial()[2].geometry().output, [6, 6, 8]);
    assert_eq!(net.layers()[0].inputs(), 6 * 6 * 8);
    // A flat network refuses image layers; a window too big names its layer.
    assert!(
        Mlp::new(&m, 784, 10, 1)
            .unwrap_err()
            .to_string()
            .contains("flat features")
    );
    let err = Mlp::for_images(&m, [4, 4, 1], 10, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.layers[2].avg_pool"), "{err}");
    let bad = r#"
task: classification
hidden: [{ dense: 8 }]
layers:
  - dense: 4
  - conv: { filters: 0, kernel: 3, stride: 4, activation: softmax }
  - flatten: {}
"#;
    let m: ModelConfig = serde_saphyr::from_str(bad).unwrap();
    let issues: Vec<String> = m.validate().iter().map(|i| i.to_string()).collect();
    let all = issues.join("\n");
    for want in [
        "layers: give the layers either as `hidden`",
        "layers[1]: `conv` comes after `dense`",
        "layers[1].conv.filters",
        "layers[1].conv.stride",
        "layers[1].conv.activation",
        "layers[2]: `flatten` ends the image layers",
    ] {
        assert!(all.contains(want), "missing {want:?} in\n{all}");
    }
    let err = serde_saphyr::from_str::<ModelConfig>(
        "task: binary\nlayers:\n  - max_pool: { size: 2, strid: 1 }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("strid"), "{err}");
}
