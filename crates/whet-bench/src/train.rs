//! `whet-bench train`: training throughput of whet-train on the peers' workload.
//!
//! A 784-256-128-10 ReLU network (softmax cross-entropy), SGD with momentum 0.9 and learning rate
//! 0.01, batches of 128 reshuffled every epoch, on the 60,000 centred synthetic samples of
//! [`crate::inputs::training_set`] (the same ones `bench/py/train.py` builds), through the public
//! API the CLI uses: [`whet_train::build_model`], [`whet_train::ArraySource`], [`whet_train::fit`].
//!
//! One `fit` call runs `1 + epochs + retries` epochs; an [`Observer`] times each one. The first
//! is reported on its own (allocation and first touch); the figure is the median of the first
//! `epochs` later epochs during which other processes stayed under `max_other` cores (busy epochs
//! fill in, in order, when there are not enough quiet ones).

use crate::inputs::training_set;
use crate::measure::{self, Measured, RetryPolicy, Window, round3};
use serde_json::{Value, json};
use whet_train::{ArraySource, EpochRecord, ModelConfig, Observer, TrainConfig, build_model, fit};

/// Layer sizes, input first.
pub const LAYERS: [usize; 4] = [784, 256, 128, 10];
/// Training samples per epoch.
pub const SAMPLES: usize = 60_000;
/// Mini-batch size.
pub const BATCH: usize = 128;

/// Options of `whet-bench train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Timed epochs after the first (warm-up) one.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Seed of the synthetic data and of the network.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// FLOPs of one training step per sample: forward, gradients of the weights, and gradients of
/// the inputs of every layer but the first (2 FLOP per multiply-add), as `train.py` counts them.
pub fn flops_per_sample() -> usize {
    let pairs: Vec<(usize, usize)> = LAYERS.windows(2).map(|w| (w[0], w[1])).collect();
    let fwd: usize = pairs.iter().map(|(a, b)| 2 * a * b).sum();
    let grad_x: usize = pairs.iter().skip(1).map(|(a, b)| 2 * a * b).sum();
    2 * fwd + grad_x
}

/// Times every epoch of a `fit` run.
#[derive(Default)]
struct EpochTimer {
    open: Option<Window>,
    epochs: Vec<(Measured, f64)>,
}

impl Observer for EpochTimer {
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _batches: usize) {
        self.open = Some(Window::open());
    }

    fn epoch_end(&mut self, record: &EpochRecord) {
        if let Some(w) = self.open.take() {
            self.epochs.push((w.close(), record.train_loss));
        }
    }
}

fn configs(epochs: usize) -> serde_json::Result<(ModelConfig, TrainConfig)> {
    let model = serde_json::from_value(json!({
        "task": "classification",
        "hidden": [
            { "dense": LAYERS[1], "activation": "relu" },
            { "dense": LAYERS[2], "activation": "relu" },
        ],
    }))?;
    let train = serde_json::from_value(json!({
        "optimizer": { "momentum": { "lr": 0.01, "momentum": 0.9 } },
        "batch_size": BATCH,
        "epochs": epochs,
    }))?;
    Ok((model, train))
}

/// Trains and prints one JSON line.
///
/// # Errors
/// A message when the configs are rejected, training fails (e.g. diverges), or stdout fails.
pub fn run(args: &TrainArgs, threads: usize, policy: RetryPolicy) -> Result<(), String> {
    let total = 1 + args.epochs + policy.retries;
    let (model, train) = configs(total).map_err(|e| format!("building the configs: {e}"))?;
    let (x, labels) = training_set(args.seed, SAMPLES, LAYERS[0], LAYERS[3]);
    let y = ArraySource::one_hot(&labels, LAYERS[3]).map_err(|e| format!("targets: {e}"))?;
    let mut data = ArraySource::new(x, y).map_err(|e| format!("data: {e}"))?;
    let mut net = build_model(&model, &train, None, LAYERS[0], LAYERS[3], args.seed)
        .map_err(|e| format!("model: {e}"))?;
    let mut timer = EpochTimer::default();
    fit(&mut net, &train, args.seed, &mut data, None, &mut timer)
        .map_err(|e| format!("training: {e}"))?;
    let Some((first, rest)) = timer.epochs.split_first() else {
        return Err("training ran no epoch".into());
    };

    let quiet = |m: &Measured| m.other_cores.is_none_or(|o| o <= policy.max_other);
    // Quiet epochs first (in order), then busy ones if there are not enough quiet ones.
    let mut idx: Vec<usize> = (0..rest.len()).filter(|&i| quiet(&rest[i].0)).collect();
    idx.extend((0..rest.len()).filter(|&i| !quiet(&rest[i].0)));
    idx.truncate(args.epochs);
    idx.sort_unstable();
    let kept: Vec<&(Measured, f64)> = idx.iter().map(|&i| &rest[i]).collect();
    let retried = (0..rest.len())
        .filter(|&i| !quiet(&rest[i].0) && !idx.contains(&i))
        .count();
    let times: Vec<f64> = kept.iter().map(|(m, _)| m.wall).collect();
    let med = measure::median(&times);
    let others: Vec<Value> = kept
        .iter()
        .map(|(m, _)| m.other_cores.map_or(Value::Null, |o| json!(round3(o))))
        .collect();
    let sps = SAMPLES as f64 / med;
    measure::emit(&json!({
        "bench": "train",
        "engine": "whet",
        "threads": threads,
        "layers": LAYERS,
        "batch": BATCH,
        "samples": SAMPLES,
        "flops_per_sample": flops_per_sample(),
        "first_epoch_s": first.0.wall,
        "first_other_cores": first.0.other_cores.map(round3),
        "epoch_s": times,
        "median_epoch_s": med,
        "samples_per_s": sps,
        "gflops": sps * flops_per_sample() as f64 / 1e9,
        "other_cores": others,
        "retried": retried,
        "peak_rss_bytes": measure::peak_rss_bytes(),
        "epochs_run": timer.epochs.len(),
        "mean_loss_per_epoch": timer.epochs.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
        "library_threads": { "rayon.current_num_threads": rayon::current_num_threads() },
        "versions": { "whet": env!("CARGO_PKG_VERSION") },
        "kernel": format!("{:?}", net.kernel),
    }))
    .map_err(|e| format!("writing the result: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flop_count_matches_the_python_side() {
        // 2·(784·256 + 256·128 + 128·10) twice, plus the input gradients of layers 2 and 3.
        assert_eq!(flops_per_sample(), 2 * 2 * 234_752 + 2 * (32_768 + 1_280));
    }

    #[test]
    fn configs_are_accepted_by_whet_train() {
        let (model, train) = configs(2).expect("configs parse");
        assert!(model.validate().is_empty());
        assert!(train.validate().is_empty());
    }
}
