//! The training loop: batching, optimisation, schedules, divergence guard, early stopping.

use crate::config::{BatchSize, TrainConfig};
use crate::error::{Diverged, Error, Result};
use crate::metrics::{Evaluation, evaluate_with};
use crate::mlp::{Mlp, NoiseKey, Workspace};
use crate::optim::{Optimizer, dense_weight_id};
use crate::readout::Readout;
use ndarray::s;
use rand::RngExt;
use serde::Serialize;
use std::time::{Duration, Instant};
use whet_core::BatchSource;
use whet_core::rng::stream;

/// Metrics of one epoch (one point of the learning curves).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochRecord {
    /// Epoch, 1-based.
    pub epoch: usize,
    /// Learning rate used in this epoch.
    pub lr: f64,
    /// Mean training loss over the epoch's batches, measured in training mode (with noise and
    /// dropout, before each batch's update).
    pub train_loss: f64,
    /// Training accuracy over the epoch's batches (None for regression).
    pub train_accuracy: Option<f64>,
    /// Validation loss in evaluation mode after the epoch (None without a validation set).
    pub valid_loss: Option<f64>,
    /// Validation accuracy (None for regression or without a validation set).
    pub valid_accuracy: Option<f64>,
    /// Wall time of the epoch's training part, seconds.
    pub seconds: f64,
    /// Training samples per second in this epoch.
    pub samples_per_second: f64,
}

/// What a finished run returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainReport {
    /// Per-epoch curves.
    pub curves: Vec<EpochRecord>,
    /// With early stopping: the 1-based epoch whose weights were restored.
    pub best_epoch: Option<usize>,
    /// True when early stopping ended the run before the last epoch.
    pub stopped_early: bool,
    /// Total training wall time (excluding validation), seconds.
    pub seconds: f64,
    /// Training samples per second over the whole run.
    pub samples_per_second: f64,
}

/// Receives progress during training (the CLI draws progress bars from it).
pub trait Observer {
    /// An epoch (1-based) of `epochs` starts, with `batches` batches.
    fn epoch_start(&mut self, epoch: usize, epochs: usize, batches: usize) {
        let _ = (epoch, epochs, batches);
    }
    /// Batch `batch` (1-based) of `epoch` is done; `loss` is its mean loss. Batches run in
    /// groups of at most about 50 ms, and this is called for each batch of a group, in order,
    /// when the group ends.
    fn batch_end(&mut self, epoch: usize, batch: usize, loss: f64) {
        let _ = (epoch, batch, loss);
    }
    /// An epoch ended with these metrics.
    fn epoch_end(&mut self, record: &EpochRecord) {
        let _ = record;
    }
}

/// An [`Observer`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// The longest a group of batches runs before the observer hears of them (progress bars redraw
/// at about this rate anyway).
pub(crate) const OBSERVER_EVERY: Duration = Duration::from_millis(50);

/// Trains `model` on `train` as `config` says, drawing all randomness (shuffling, noise,
/// dropout) from `seed`. Validation (if any) runs after every epoch in evaluation mode. With
/// early stopping the best weights are restored at the end.
///
/// # Errors
/// - [`Error::Config`]: invalid config, mismatched data dimensions, empty data, early stopping
///   without a validation set;
/// - [`Error::StepNotDifferentiable`]: a trainable layer sits below a step activation;
/// - [`Error::Source`]: a batch source failed;
/// - [`Error::Diverged`]: the loss became NaN, infinite, or exploded; it carries the curves of
///   the completed epochs.
pub fn fit(
    model: &mut Mlp,
    config: &TrainConfig,
    seed: u64,
    train: &mut dyn BatchSource,
    mut valid: Option<&mut dyn BatchSource>,
    observer: &mut dyn Observer,
) -> Result<TrainReport> {
    let issues = config.validate();
    if !issues.is_empty() {
        let list: Vec<String> = issues.iter().map(|i| format!("train.{i}")).collect();
        return Err(Error::Config(list.join("; ")));
    }
    check_source("training set", model, train)?;
    if let Some(v) = valid.as_deref() {
        check_source("validation set", model, v)?;
    }
    if let Some(es) = &config.early_stopping {
        if valid.is_none() {
            return Err(Error::Config(
                "train.early_stopping needs a validation set (none was given)".into(),
            ));
        }
        if let Some(i) = es.check_metric(model.task).iter().next() {
            return Err(Error::Config(format!("train.early_stopping.{i}")));
        }
    }
    model.check_trainable()?;

    let n = train.len();
    crate::memory::TrainingMemory::of_network(
        model,
        config,
        n,
        valid.as_deref().map_or(0, |v| v.len()),
    )
    .check(0)?;
    let rows = config.batch_size.rows(n);
    let batches = n.div_ceil(rows);
    let mut ws = model.workspace(rows, model.output_dim());
    let mut eval_ws = valid
        .as_deref()
        .map(|v| model.workspace(model.eval_rows(v.len()), model.output_dim()));
    let mut opt = Optimizer::new(&config.optimizer);
    let mut order: Vec<usize> = (0..n).collect();
    // The mean losses of the batches of one group, for the observer.
    let mut means: Vec<f64> = Vec::new();
    let wd = config.weight_decay.get() as f32;
    let factor = config.divergence.factor.get();
    let classify = model.task != crate::config::Task::Regression;

    // Grown as epochs complete: `epochs` is a user's number and never sizes an allocation.
    let mut curves: Vec<EpochRecord> = Vec::new();
    let mut reference: Option<f64> = None;
    let mut best: Option<(f64, usize, Mlp)> = None;
    let mut since_best = 0usize;
    let mut stopped_early = false;
    let mut total_seconds = 0.0;

    for epoch in 0..config.epochs {
        let lr = config.lr_at(epoch);
        observer.epoch_start(epoch + 1, config.epochs, batches);
        let t0 = Instant::now();
        if config.batch_size != BatchSize::Full && !train.order(seed, epoch, &mut order) {
            shuffle(&mut order, seed, epoch);
        }
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        let mut b = 0;
        while b < batches {
            // A group of batches runs on one pool thread (one hand-off per group instead of one
            // per parallel call, or per batch); the observer hears of them when the group ends.
            let first = b;
            means.clear();
            let group = crate::par::in_pool(|| -> Result<Option<(f64, f64)>> {
                let t = Instant::now();
                while b < batches {
                    let idx = &order[b * rows..((b + 1) * rows).min(n)];
                    let r = idx.len();
                    let key = NoiseKey {
                        seed,
                        epoch,
                        batch: b,
                    };
                    let (x, y) = ws.batch_mut(r);
                    train
                        .fill(epoch, idx, x, y)
                        .map_err(|source| Error::Source {
                            epoch,
                            rows: r,
                            source,
                        })?;
                    let (l, c) = model.forward_backward_with(&mut ws, r, Some(key), Some(&mut opt));
                    let mean = l / r as f64;
                    let refl = *reference.get_or_insert(mean);
                    // A diverged loss ends the run before the step's update.
                    if diverged(mean, refl, factor) {
                        return Ok(Some((mean, refl)));
                    }
                    apply_updates(model, &mut opt, &ws, lr as f32, wd);
                    update_running(model, &ws, r);
                    loss_sum += l;
                    correct += c;
                    means.push(mean);
                    b += 1;
                    if t.elapsed() >= OBSERVER_EVERY {
                        break;
                    }
                }
                Ok(None)
            });
            for (k, &mean) in means.iter().enumerate() {
                observer.batch_end(epoch + 1, first + k + 1, mean);
            }
            if let Some((mean, refl)) = group? {
                return Err(Error::Diverged(Box::new(Diverged {
                    epoch: epoch + 1,
                    batch: b + 1,
                    lr,
                    loss: mean,
                    reference: refl,
                    factor,
                    curves,
                })));
            }
        }
        let seconds = t0.elapsed().as_secs_f64();
        total_seconds += seconds;
        if epoch == 0 {
            reference = Some(loss_sum / n as f64);
        }
        let val: Option<Evaluation> = match (valid.as_deref_mut(), eval_ws.as_mut()) {
            (Some(v), Some(w)) => Some(evaluate_with(model, v, w, &Readout::of(model))?),
            _ => None,
        };
        let record = EpochRecord {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / n as f64,
            train_accuracy: classify.then(|| correct as f64 / n as f64),
            valid_loss: val.as_ref().map(|v| v.loss),
            valid_accuracy: val.as_ref().and_then(|v| v.accuracy()),
            seconds,
            samples_per_second: n as f64 / seconds.max(1e-12),
        };
        observer.epoch_end(&record);
        curves.push(record);
        if let (Some(es), Some(v)) = (&config.early_stopping, &val) {
            let value = stopping_value(es, v, epoch + 1)?;
            // Compared as "lower is better": metrics where higher is better are negated.
            let improved = best
                .as_ref()
                .is_none_or(|(b, _, _)| value < b - es.min_delta.get());
            if improved {
                since_best = 0;
                match &mut best {
                    Some((bl, be, bm)) => {
                        *bl = value;
                        *be = epoch + 1;
                        model.copy_weights_to(bm);
                    }
                    None => best = Some((value, epoch + 1, model.clone())),
                }
            } else {
                since_best += 1;
                if since_best >= es.patience && epoch + 1 >= es.min_epochs {
                    stopped_early = epoch + 1 < config.epochs;
                    break;
                }
            }
        }
    }
    let best_epoch = best.map(|(_, e, bm)| {
        bm.copy_weights_to(model);
        e
    });
    let seen: usize = curves.len() * n;
    Ok(TrainReport {
        curves,
        best_epoch,
        stopped_early,
        seconds: total_seconds,
        samples_per_second: seen as f64 / total_seconds.max(1e-12),
    })
}

/// The value early stopping compares for one epoch's validation evaluation, oriented so that
/// lower is better (metrics where higher is better are negated). A non-finite value never
/// counts as an improvement.
fn stopping_value(
    es: &crate::config::EarlyStoppingConfig,
    v: &Evaluation,
    epoch: usize,
) -> Result<f64> {
    let flat = v.flat();
    let Some(&x) = flat.get(&es.metric) else {
        return Err(Error::Config(format!(
            "train.early_stopping.metric: `{}` is undefined on the validation set at epoch {epoch} \
             (e.g. `r2` when every validation target is equal, `roc_auc` with one class); \
             use `loss` or another of {}",
            es.metric,
            flat.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    };
    let x = if crate::higher_is_better(&es.metric) {
        -x
    } else {
        x
    };
    Ok(if x.is_nan() { f64::INFINITY } else { x })
}

/// True when a batch's mean loss is not finite or exceeds `factor` times the reference.
fn diverged(mean: f64, reference: f64, factor: f64) -> bool {
    !mean.is_finite() || mean > factor * reference.max(1e-6)
}

fn check_source(what: &str, model: &Mlp, src: &dyn BatchSource) -> Result<()> {
    if src.is_empty() {
        return Err(Error::Config(format!("the {what} has no samples")));
    }
    if src.input_dim() != model.input_dim() {
        return Err(Error::Shape {
            what: format!("{what} features (the model's inputs)"),
            expected: model.input_dim(),
            got: src.input_dim(),
        });
    }
    if src.target_dim() != model.output_dim() {
        return Err(Error::Shape {
            what: format!("{what} target columns (the model's outputs)"),
            expected: model.output_dim(),
            got: src.target_dim(),
        });
    }
    Ok(())
}

/// Resets `order` to the identity and shuffles it (Fisher-Yates) from the stream `[4, epoch]`,
/// so each epoch's order depends only on the seed and the epoch.
pub fn shuffle(order: &mut [usize], seed: u64, epoch: usize) {
    for (i, v) in order.iter_mut().enumerate() {
        *v = i;
    }
    let mut rng = stream(seed, &[4, epoch as u64]);
    for i in (1..order.len()).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
}

/// Moves each trainable batch normalisation's running mean and variance toward the last batch's:
/// `running = (1 − momentum) · running + momentum · batch`, the variance unbiased (`· n / (n − 1)`
/// over the `n` = rows · height · width values of a channel, as PyTorch). Frozen layers keep
/// theirs.
fn update_running(model: &mut Mlp, ws: &Workspace, rows: usize) {
    for (j, layer) in model.spatial.iter_mut().enumerate() {
        let (Some([m, _]), false) = (layer.norm, layer.frozen) else {
            continue;
        };
        let n = (rows * layer.geo.out_pixels()) as f32;
        let unbias = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
        let st = &ws.sp[j].stats;
        let [mean, var] = &mut layer.running;
        for c in 0..mean.len() {
            mean[c] = (1.0 - m) * mean[c] + m * st[0][c];
            var[c] = (1.0 - m) * var[c] + m * st[2][c] * unbias;
        }
    }
}

/// Applies the optimizer to every trainable layer (weights with weight decay, biases without).
/// Dense layer `l` uses the optimizer's slots `2l` and `2l + 1`; image layer `j` the slots after
/// the dense ones, `2·dense + 2j` and `2·dense + 2j + 1`.
fn apply_updates(model: &mut Mlp, opt: &mut Optimizer, ws: &Workspace, lr: f32, wd: f32) {
    let dense = model.layers.len();
    for (j, layer) in model.spatial.iter_mut().enumerate() {
        if layer.frozen || !layer.has_weights() {
            continue;
        }
        let w = layer
            .weight
            .as_slice_mut()
            .expect("standard layout weights");
        let gw = ws.sp[j]
            .grad_w
            .as_slice()
            .expect("standard layout gradients");
        opt.update(2 * (dense + j), w, gw, lr, wd);
        let b = layer.bias.as_slice_mut().expect("contiguous bias");
        let gb = ws.sp[j].grad_b.as_slice().expect("contiguous");
        opt.update(2 * (dense + j) + 1, b, gb, lr, 0.0);
    }
    for (l, layer) in model.layers.iter_mut().enumerate() {
        if layer.frozen {
            continue;
        }
        let shape = layer.weight.dim();
        let w = layer
            .weight
            .as_slice_mut()
            .expect("standard layout weights");
        let id = dense_weight_id(l);
        if opt.accumulates() {
            // The backward pass accumulated the gradient into the velocity.
            opt.update_accumulated(id, w, shape, lr, wd);
        } else {
            let gw = ws.grad_w[l].as_slice().expect("standard layout gradients");
            opt.update_weights(id, (w, gw), shape, lr, wd);
        }
        let b = layer.bias.as_slice_mut().expect("contiguous bias");
        let gb = ws.grad_b[l].slice(s![..]);
        opt.update(id + 1, b, gb.as_slice().expect("contiguous"), lr, 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use crate::optim::OptimizerConfig;
    use ndarray::Array2;

    /// Heavy-ball momentum's training step, with each dense weight gradient added into the
    /// velocity by the backward pass, gives the weights of the step that stores the gradients
    /// and updates from them: the same bits without weight decay, within a rounding with it; on
    /// one thread and two. The 300-64-1 network has a cut first layer whose weight-gradient
    /// product is split between threads, and a one-column last product.
    #[test]
    fn accumulated_momentum_steps_are_the_stored_gradient_steps() {
        let cfg: ModelConfig = serde_json::from_value(serde_json::json!({
            "task": "binary",
            "hidden": [{ "dense": 64, "activation": "relu", "dropout": 0.1 }]
        }))
        .unwrap();
        let (inputs, rows, steps) = (300, 128, 4);
        let mut rng = stream(5, &[1]);
        let batches: Vec<(Array2<f32>, Array2<f32>)> = (0..steps)
            .map(|_| {
                let x =
                    Array2::from_shape_simple_fn((rows, inputs), || rng.random_range(-1.0f32..1.0));
                let y = Array2::from_shape_simple_fn((rows, 1), || {
                    f32::from(u8::from(rng.random::<bool>()))
                });
                (x, y)
            })
            .collect();
        let config = OptimizerConfig::momentum(0.05);
        let run = |accumulate: bool, wd: f32| -> Vec<f32> {
            let mut model = Mlp::new(&cfg, inputs, 1, 3).unwrap();
            let mut ws = model.workspace(rows, 1);
            let mut opt = Optimizer::new(&config);
            for (batch, (x, y)) in batches.iter().enumerate() {
                let (mut bx, mut by) = ws.batch_mut(rows);
                bx.assign(x);
                by.assign(y);
                let key = NoiseKey {
                    seed: 3,
                    epoch: 0,
                    batch,
                };
                if accumulate {
                    model.forward_backward_with(&mut ws, rows, Some(key), Some(&mut opt));
                    apply_updates(&mut model, &mut opt, &ws, 0.05, wd);
                } else {
                    model.forward_backward(&mut ws, rows, Some(key));
                    for (l, layer) in model.layers.iter_mut().enumerate() {
                        let shape = layer.weight.dim();
                        let w = layer.weight.as_slice_mut().unwrap();
                        let gw = ws.grad_w[l].as_slice().unwrap();
                        opt.update_weights(dense_weight_id(l), (w, gw), shape, 0.05, wd);
                        let b = layer.bias.as_slice_mut().unwrap();
                        let gb = ws.grad_b[l].as_slice().unwrap();
                        opt.update(dense_weight_id(l) + 1, b, gb, 0.05, 0.0);
                    }
                }
            }
            let weights = model.layers.iter().flat_map(|l| l.weight.iter());
            weights.copied().collect()
        };
        for threads in [1, 2] {
            crate::par::pool(threads).install(|| {
                let stored = run(false, 0.0);
                let accumulated = run(true, 0.0);
                assert!(
                    stored
                        .iter()
                        .zip(&accumulated)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{threads} threads"
                );
                let (stored, accumulated) = (run(false, 0.01), run(true, 0.01));
                let worst = stored
                    .iter()
                    .zip(&accumulated)
                    .map(|(a, b)| (a - b).abs() / a.abs().max(1e-3))
                    .fold(0.0f32, f32::max);
                assert!(worst < 1e-5, "{worst} relative, {threads} threads");
            });
        }
    }
}
