//! `whet-bench train`: training throughput of whet-train on the peers' workloads.
//!
//! Two networks (`--model`), both with softmax cross-entropy, SGD with momentum 0.9 and learning
//! rate 0.01, batches of 128 reshuffled every epoch, on the 60,000 centred synthetic samples of
//! 784 features of [`crate::inputs::training_set`] (the same ones `bench/py/train.py` builds):
//!
//! - `mlp` (the default): a 784-256-128-10 ReLU network on flat features;
//! - `lenet`: a LeNet-5-like convolutional network on the same rows read as 28x28x1 images:
//!   conv 6 filters 5x5 same padding → max pool 2 → conv 16 filters 5x5 valid → max pool 2
//!   (5x5x16 = 400) → dense 120 → dense 84 → output 10, ReLU everywhere (PyTorch peer:
//!   `train.py --model lenet`).
//!
//! Both go through the public API the CLI uses: [`whet_train::build_model`],
//! [`whet_train::ArraySource`], [`whet_train::fit`].
//!
//! One `fit` call runs `1 + epochs + retries` epochs; an [`Observer`] times each one. The first
//! is reported on its own (allocation and first touch); the figure is the median of the first
//! `epochs` later epochs during which other processes stayed under `max_other` cores (busy epochs
//! fill in, in order, when there are not enough quiet ones).
//!
//! With `--paired-peak`, whet's 2048² matrix product ([`crate::matmul::Probe`]) is timed for
//! 0.3 s after each epoch, outside the epoch's window: each epoch's GFLOP/s over the matmul's
//! right after it is its share of the machine's peak in the same state (the machine's speed
//! drifts by a tenth or more over minutes, so a peak measured apart says little at that scale).
//!
//! With 2 threads or more, [`measure::placement_ns`] is taken after each epoch, outside
//! its window (`core_round_trip_ns`, one per timed epoch): where the host placed the virtual
//! CPUs decides how fast a multi-threaded epoch can be.
//!
//! GFLOP/s come from an exact count of one training step per sample ([`flops_of`]), 2 FLOP per
//! multiply-add: the forward pass of every convolution (`out_h·out_w·k²·c_in·filters`
//! multiply-adds) and dense layer (`inputs·outputs`), the same again for the gradients of the
//! weights, and the same again for the gradients of the inputs of every layer with weights but
//! the first. Pooling, activations, biases, the loss and the optimizer are not counted. The
//! MLP's count is 2·2·234,752 + 2·(32,768 + 1,280) = 1,007,104; the CNN's 2,263,920
//! (forward: conv1 235,200 + conv2 480,000 + dense 96,000 + 20,160 + 1,680 = 833,040).

use crate::inputs::training_set;
use crate::measure::{self, Measured, RetryPolicy, Window, round3};
use serde_json::{Value, json};
use whet_train::{
    ArraySource, ConvConfig, DenseConfig, EpochRecord, HiddenConfig, LayerConfig, Mlp, ModelConfig,
    Observer, Padding, PoolConfig, TrainConfig, build_model, fit,
};

/// Layer sizes of the MLP, input first.
pub const LAYERS: [usize; 4] = [784, 256, 128, 10];
/// The CNN's input images, `[height, width, channels]` (channels last): the same 784 features.
pub const IMAGE: [usize; 3] = [28, 28, 1];
/// Training samples per epoch.
pub const SAMPLES: usize = 60_000;
/// Mini-batch size.
pub const BATCH: usize = 128;

/// The network `whet-bench train` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Model {
    /// 784-256-128-10 ReLU on flat features.
    Mlp,
    /// LeNet-5-like CNN on 28x28x1 images: conv 6@5x5 same, max pool 2, conv 16@5x5, max pool 2,
    /// dense 120, dense 84, output 10.
    Lenet,
}

impl Model {
    /// Its name in the JSON record (`model`).
    pub fn name(self) -> &'static str {
        match self {
            Model::Mlp => "mlp",
            Model::Lenet => "lenet",
        }
    }

    /// Image shape of the inputs, `None` for flat features.
    pub fn shape(self) -> Option<[usize; 3]> {
        match self {
            Model::Mlp => None,
            Model::Lenet => Some(IMAGE),
        }
    }

    /// The model configuration; `width` replaces both hidden layers of the MLP (784-W-W-10).
    ///
    /// # Errors
    /// When the MLP's JSON is rejected (it is not: a test checks it).
    pub fn config(self, width: Option<usize>) -> serde_json::Result<ModelConfig> {
        let layers = mlp_layers(width);
        match self {
            Model::Mlp => serde_json::from_value(json!({
                "task": "classification",
                "hidden": [
                    { "dense": layers[1], "activation": "relu" },
                    { "dense": layers[2], "activation": "relu" },
                ],
            })),
            Model::Lenet => Ok(ModelConfig::classification().with_layers([
                // 28x28x6
                LayerConfig::Conv(ConvConfig::new(6, 5).with_padding(Padding::Same)),
                // 14x14x6
                LayerConfig::MaxPool(PoolConfig::new(2)),
                // 10x10x16
                LayerConfig::Conv(ConvConfig::new(16, 5)),
                // 5x5x16 = 400
                LayerConfig::MaxPool(PoolConfig::new(2)),
                LayerConfig::Dense(DenseConfig::from(HiddenConfig::dense(120))),
                LayerConfig::Dense(DenseConfig::from(HiddenConfig::dense(84))),
            ])),
        }
    }
}

/// The MLP's layer sizes: [`LAYERS`], or 784-W-W-10 with a width.
pub fn mlp_layers(width: Option<usize>) -> [usize; 4] {
    width.map_or(LAYERS, |w| [LAYERS[0], w, w, LAYERS[3]])
}

/// Options of `whet-bench train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// The network: `mlp` (784-256-128-10) or `lenet` (the LeNet-5-like CNN on 28x28x1).
    #[arg(long, value_enum, default_value_t = Model::Mlp)]
    pub model: Model,
    /// Timed epochs after the first (warm-up) one.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Seed of the synthetic data and of the network.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Width of both hidden layers of the MLP (784-W-W-10 instead of 784-256-128-10): the
    /// scaling curve of training throughput against width.
    #[arg(long)]
    pub width: Option<usize>,
    /// Training samples per epoch (the first of the 60,000; fewer keep wide networks' epochs
    /// short).
    #[arg(long, default_value_t = SAMPLES)]
    pub samples: usize,
    /// After each epoch, time whet's 2048 x 2048 matrix product (`whet-bench matmul`'s, same
    /// threads) for about 0.3 s: each epoch's GFLOP/s is then also given as a share of the
    /// matmul rate measured right after it, in the same machine state (`pct_of_paired_peak`).
    #[arg(long)]
    pub paired_peak: bool,
}

/// Multiply-adds of the forward pass of each layer with weights of `net`, input side first:
/// convolutions `out_h·out_w·k²·c_in·filters`, dense layers `inputs·outputs` (pools have none).
pub fn layer_macs(net: &Mlp) -> Vec<usize> {
    let convs = net.spatial().iter().filter(|s| s.is_conv()).map(|s| {
        let g = s.geometry();
        g.output[0] * g.output[1] * g.kernel * g.kernel * g.input[2] * g.output[2]
    });
    let dense = net.layers().iter().map(|d| d.inputs() * d.outputs());
    convs.chain(dense).collect()
}

/// Exact FLOPs of one training step per sample of `net` (2 per multiply-add): the forward pass,
/// the gradients of the weights (as many), and the gradients of the inputs of every layer with
/// weights but the first (as many as its forward pass). Pooling, activations, biases, the loss
/// and the optimizer are not counted. `bench/py/train.py` counts the same.
pub fn flops_of(net: &Mlp) -> usize {
    let macs = layer_macs(net);
    let fwd: usize = macs.iter().map(|m| 2 * m).sum();
    let grad_x: usize = macs.iter().skip(1).map(|m| 2 * m).sum();
    2 * fwd + grad_x
}

/// The layers of `net` for the record, e.g. `conv 5x5/1 28x28x1 -> 28x28x6`, `dense 400 -> 120`.
fn describe(net: &Mlp) -> Vec<String> {
    let shape = |s: [usize; 3]| format!("{}x{}x{}", s[0], s[1], s[2]);
    let spatial = net.spatial().iter().map(|s| {
        let g = s.geometry();
        let what = match s.kind() {
            whet_train::SpatialKind::Conv => "conv",
            whet_train::SpatialKind::MaxPool => "max_pool",
            whet_train::SpatialKind::AvgPool => "avg_pool",
            whet_train::SpatialKind::BatchNorm => "batch_norm",
        };
        format!(
            "{what} {k}x{k}/{st} {} -> {}",
            shape(g.input),
            shape(g.output),
            k = g.kernel,
            st = g.stride
        )
    });
    let dense = net
        .layers()
        .iter()
        .map(|d| format!("dense {} -> {}", d.inputs(), d.outputs()));
    spatial.chain(dense).collect()
}

/// One epoch as [`EpochTimer`] saw it.
struct TimedEpoch {
    /// The epoch's timing.
    timed: Measured,
    /// Its mean training loss.
    loss: f64,
    /// The matmul GFLOP/s measured right after it (with a `peak` probe).
    peak_gflops: Option<f64>,
    /// [`measure::placement_ns`] right after it (2 threads or more).
    round_trip_ns: Option<f64>,
}

/// Times every epoch of a `fit` run, and the matmul after it when there is a `peak` probe.
#[derive(Default)]
struct EpochTimer {
    open: Option<Window>,
    epochs: Vec<TimedEpoch>,
    peak: Option<crate::matmul::Probe>,
    /// Whether to measure [`measure::placement_ns`] after each epoch (2 threads or more).
    probe_placement: bool,
}

impl Observer for EpochTimer {
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _batches: usize) {
        self.open = Some(Window::open());
    }

    fn epoch_end(&mut self, record: &EpochRecord) {
        if let Some(w) = self.open.take() {
            let timed = w.close();
            // Outside the epoch's window: the next epoch opens a new one.
            let peak_gflops = self.peak.as_mut().map(|p| p.gflops(0.3));
            let round_trip_ns = self.probe_placement.then(measure::placement_ns).flatten();
            self.epochs.push(TimedEpoch {
                timed,
                loss: record.train_loss,
                peak_gflops,
                round_trip_ns,
            });
        }
    }
}

fn train_config(epochs: usize) -> serde_json::Result<TrainConfig> {
    serde_json::from_value(json!({
        "optimizer": { "momentum": { "lr": 0.01, "momentum": 0.9 } },
        "batch_size": BATCH,
        "epochs": epochs,
    }))
}

/// Builds the network of `model` (as `run` does).
///
/// # Errors
/// A message when the configs are rejected or the network cannot be built.
pub fn build(
    model: Model,
    width: Option<usize>,
    epochs: usize,
    seed: u64,
) -> Result<(Mlp, TrainConfig), String> {
    let config = model
        .config(width)
        .map_err(|e| format!("building the model config: {e}"))?;
    let train = train_config(epochs).map_err(|e| format!("building the train config: {e}"))?;
    let net = build_model(&config, &train, model.shape(), LAYERS[0], LAYERS[3], seed)
        .map_err(|e| format!("model: {e}"))?;
    Ok((net, train))
}

/// The `paired_peak` record: each epoch's GFLOP/s (`flops_per_epoch` / its seconds) as a
/// percentage of the matmul GFLOP/s measured right after it, and their median; `None` when an
/// epoch has no matmul figure (the run was not asked for them).
fn paired_peak(epochs: &[&TimedEpoch], flops_per_epoch: f64) -> Option<Value> {
    let pairs: Vec<(f64, f64)> = epochs
        .iter()
        .map(|e| {
            e.peak_gflops
                .map(|p| (p, 100.0 * flops_per_epoch / e.timed.wall / 1e9 / p))
        })
        .collect::<Option<_>>()?;
    let pct: Vec<f64> = pairs.iter().map(|&(_, pct)| pct).collect();
    Some(json!({
        "matmul_gflops_after_epoch": pairs.iter().map(|&(g, _)| g).collect::<Vec<_>>(),
        "pct_of_paired_peak_runs": pct,
        "pct_of_paired_peak": measure::median(&pct),
    }))
}

/// Trains and prints one JSON line.
///
/// # Errors
/// A message when the configs are rejected, training fails (e.g. diverges), or stdout fails.
pub fn run(args: &TrainArgs, threads: usize, policy: RetryPolicy) -> Result<(), String> {
    let total = 1 + args.epochs + policy.retries;
    if args.width.is_some() && args.model != Model::Mlp {
        return Err("--width applies to the MLP only (--model mlp)".into());
    }
    if !(BATCH..=SAMPLES).contains(&args.samples) {
        return Err(format!(
            "--samples must be between {BATCH} and {SAMPLES}, found {}",
            args.samples
        ));
    }
    let (mut net, train) = build(args.model, args.width, total, args.seed)?;
    let samples = args.samples;
    let (x, labels) = training_set(args.seed, SAMPLES, LAYERS[0], LAYERS[3]);
    let x = x.slice(ndarray::s![..samples, ..]).to_owned();
    let labels = labels[..samples].to_vec();
    let y = ArraySource::one_hot(&labels, LAYERS[3]).map_err(|e| format!("targets: {e}"))?;
    let mut data = ArraySource::new(x, y).map_err(|e| format!("data: {e}"))?;
    let flops = flops_of(&net);
    let mut timer = EpochTimer {
        peak: args.paired_peak.then(crate::matmul::Probe::new),
        probe_placement: threads >= 2,
        ..EpochTimer::default()
    };
    fit(&mut net, &train, args.seed, &mut data, None, &mut timer)
        .map_err(|e| format!("training: {e}"))?;
    let Some((first, rest)) = timer.epochs.split_first() else {
        return Err("training ran no epoch".into());
    };

    let quiet = |m: &Measured| m.other_cores.is_none_or(|o| o <= policy.max_other);
    // Quiet epochs first (in order), then busy ones if there are not enough quiet ones.
    let mut idx: Vec<usize> = (0..rest.len()).filter(|&i| quiet(&rest[i].timed)).collect();
    idx.extend((0..rest.len()).filter(|&i| !quiet(&rest[i].timed)));
    idx.truncate(args.epochs);
    idx.sort_unstable();
    let kept: Vec<&TimedEpoch> = idx.iter().map(|&i| &rest[i]).collect();
    let retried = (0..rest.len())
        .filter(|&i| !quiet(&rest[i].timed) && !idx.contains(&i))
        .count();
    let times: Vec<f64> = kept.iter().map(|e| e.timed.wall).collect();
    let med = measure::median(&times);
    let others: Vec<Value> = kept
        .iter()
        .map(|e| {
            e.timed
                .other_cores
                .map_or(Value::Null, |o| json!(round3(o)))
        })
        .collect();
    let round_trips: Vec<Value> = kept.iter().map(|e| json!(e.round_trip_ns)).collect();
    let sps = samples as f64 / med;
    let layers = match args.model {
        Model::Mlp => json!(mlp_layers(args.width)),
        Model::Lenet => json!(describe(&net)),
    };
    measure::emit(&json!({
        "bench": "train",
        "model": args.model.name(),
        "engine": "whet",
        "threads": threads,
        "layers": layers,
        "input_shape": args.model.shape(),
        "batch": BATCH,
        "samples": samples,
        "flops_per_sample": flops,
        "first_epoch_s": first.timed.wall,
        "first_other_cores": first.timed.other_cores.map(round3),
        "epoch_s": times,
        "median_epoch_s": med,
        "samples_per_s": sps,
        "gflops": sps * flops as f64 / 1e9,
        "other_cores": others,
        "core_round_trip_ns": round_trips,
        "retried": retried,
        "peak_rss_bytes": measure::peak_rss_bytes(),
        "epochs_run": timer.epochs.len(),
        "mean_loss_per_epoch": timer.epochs.iter().map(|e| e.loss).collect::<Vec<_>>(),
        "paired_peak": paired_peak(&kept, samples as f64 * flops as f64),
        "library_threads": { "rayon.current_num_threads": rayon::current_num_threads() },
        "versions": { "whet": env!("CARGO_PKG_VERSION") },
        "kernel": format!("{:?}", net.kernel),
    }))
    .map_err(|e| format!("writing the result: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FLOPs of one training step per sample of the MLP from its layer sizes, as `train.py`'s
    /// `flops_per_sample` counts them; [`flops_of`] must agree on the built network.
    fn flops_per_sample() -> usize {
        let pairs: Vec<(usize, usize)> = LAYERS.windows(2).map(|w| (w[0], w[1])).collect();
        let fwd: usize = pairs.iter().map(|(a, b)| 2 * a * b).sum();
        let grad_x: usize = pairs.iter().skip(1).map(|(a, b)| 2 * a * b).sum();
        2 * fwd + grad_x
    }

    #[test]
    fn paired_peak_divides_each_epoch_by_the_matmul_after_it() {
        let e = |wall: f64, peak_gflops: Option<f64>| TimedEpoch {
            timed: Measured {
                wall,
                other_cores: None,
            },
            loss: 0.5,
            peak_gflops,
            round_trip_ns: None,
        };
        // 90 GFLOP per epoch: 1 s at 100 GFLOP/s is 90 %, 2 s at 50 is 90 %, 0.5 s at 200 is 90 %,
        // 1.5 s at 75 is 80 %.
        let runs = [
            e(1.0, Some(100.0)),
            e(2.0, Some(50.0)),
            e(0.5, Some(200.0)),
            e(1.5, Some(75.0)),
        ];
        let kept: Vec<_> = runs.iter().collect();
        let p = paired_peak(&kept, 90e9).unwrap();
        let pct: Vec<f64> = serde_json::from_value(p["pct_of_paired_peak_runs"].clone()).unwrap();
        let want = [90.0, 90.0, 90.0, 80.0];
        assert!(
            pct.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-9),
            "{pct:?}"
        );
        assert!((p["pct_of_paired_peak"].as_f64().unwrap() - 90.0).abs() < 1e-9);
        assert_eq!(
            p["matmul_gflops_after_epoch"],
            json!([100.0, 50.0, 200.0, 75.0])
        );
        // Without a matmul after an epoch there is no paired figure.
        let runs = [e(1.0, Some(100.0)), e(1.0, None)];
        let kept: Vec<_> = runs.iter().collect();
        assert!(paired_peak(&kept, 90e9).is_none());
    }

    #[test]
    fn flop_count_matches_the_python_side() {
        // 2·(784·256 + 256·128 + 128·10) twice, plus the input gradients of layers 2 and 3.
        assert_eq!(flops_per_sample(), 2 * 2 * 234_752 + 2 * (32_768 + 1_280));
        let (mlp, _) = build(Model::Mlp, None, 1, 7).expect("the MLP builds");
        assert_eq!(flops_of(&mlp), flops_per_sample());
    }

    #[test]
    fn width_sets_both_hidden_layers() {
        let (net, _) = build(Model::Mlp, Some(512), 1, 7).expect("the wide MLP builds");
        let sizes: Vec<(usize, usize)> = net
            .layers()
            .iter()
            .map(|d| (d.inputs(), d.outputs()))
            .collect();
        assert_eq!(sizes, [(784, 512), (512, 512), (512, 10)]);
        // 2·(784·512 + 512·512 + 512·10) twice, plus the input gradients of layers 2 and 3.
        let fwd = 2 * (784 * 512 + 512 * 512 + 512 * 10);
        assert_eq!(flops_of(&net), 2 * fwd + 2 * (512 * 512 + 512 * 10));
    }

    #[test]
    fn lenet_has_the_intended_shapes_and_flop_count() {
        let (net, train) = build(Model::Lenet, None, 2, 7).expect("the CNN builds");
        assert!(Model::Lenet.config(None).unwrap().validate().is_empty());
        assert!(train.validate().is_empty());
        assert_eq!(
            describe(&net),
            [
                "conv 5x5/1 28x28x1 -> 28x28x6",
                "max_pool 2x2/2 28x28x6 -> 14x14x6",
                "conv 5x5/1 14x14x6 -> 10x10x16",
                "max_pool 2x2/2 10x10x16 -> 5x5x16",
                "dense 400 -> 120",
                "dense 120 -> 84",
                "dense 84 -> 10",
            ]
        );
        // Forward multiply-adds: 28·28·25·1·6, 10·10·25·6·16, 400·120, 120·84, 84·10.
        assert_eq!(layer_macs(&net), [117_600, 240_000, 48_000, 10_080, 840]);
        // bench/py/train.py's LENET count: 2·833,040 forward + weights, 597,840 input gradients.
        assert_eq!(flops_of(&net), 2 * 833_040 + 597_840);
        assert_eq!(flops_of(&net), 2_263_920);
    }

    #[test]
    fn configs_are_accepted_by_whet_train() {
        let model = Model::Mlp.config(None).expect("config parses");
        let train = train_config(2).expect("config parses");
        assert!(model.validate().is_empty());
        assert!(train.validate().is_empty());
    }
}
