//! The multilayer perceptron: dense layers, forward and backward passes over preallocated
//! buffers.

use crate::activation::Activation;
use crate::config::{Init, ModelConfig, Task};
use crate::decision::{Decision, ThresholdConfig};
use crate::error::{Error, Result};
use crate::kernel::{Kernel, matmul};
use crate::loss::{ClassWeights, LossKind};
use ndarray::parallel::prelude::*;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, s};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use whet_core::rng::stream;

/// A fully connected layer `a = act(x W + b)`, with its training-time regularisers.
///
/// The fields are read through accessors: the weight and bias shapes must agree with each other
/// and with the neighbouring layers of the [`Mlp`], the output layer's activation must be the
/// loss's, and the regularisers must match the buffers of a [`Workspace`]; only the network (and
/// the checkpoint, transfer and training code in this crate) changes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// Weights, `[inputs, outputs]` (so the forward pass is `x · W`).
    pub(crate) weight: Array2<f32>,
    /// Biases, `[outputs]`.
    pub(crate) bias: Array1<f32>,
    /// Activation. For the output layer this is the loss's activation (applied by the loss).
    pub(crate) activation: Activation,
    /// Std of the Gaussian noise added to the output during training.
    pub(crate) noise: f32,
    /// Inverted-dropout probability of the output during training.
    pub(crate) dropout: f32,
    /// A frozen layer receives no updates.
    pub(crate) frozen: bool,
}

impl Dense {
    /// A layer initialised with `init` from the stream `[3, index]` of `seed`.
    pub fn new(
        inputs: usize,
        outputs: usize,
        activation: Activation,
        init: Init,
        seed: u64,
        index: usize,
    ) -> Self {
        let mut rng = stream(seed, &[3, index as u64]);
        let he = match init {
            Init::He => true,
            Init::Xavier => false,
            Init::Auto => activation.is_relu_family(),
        };
        let weight = if he {
            let std = (2.0 / inputs.max(1) as f64).sqrt() as f32;
            Array2::from_shape_simple_fn((inputs, outputs), || {
                let z: f32 = StandardNormal.sample(&mut rng);
                z * std
            })
        } else {
            let limit = (6.0 / (inputs + outputs).max(1) as f64).sqrt() as f32;
            Array2::from_shape_simple_fn((inputs, outputs), || {
                (rng.random::<f32>() * 2.0 - 1.0) * limit
            })
        };
        Self {
            weight,
            bias: Array1::zeros(outputs),
            activation,
            noise: 0.0,
            dropout: 0.0,
            frozen: false,
        }
    }

    /// Weights, `[inputs, outputs]` (so the forward pass is `x · W`).
    pub fn weight(&self) -> &Array2<f32> {
        &self.weight
    }

    /// Biases, `[outputs]`.
    pub fn bias(&self) -> &Array1<f32> {
        &self.bias
    }

    /// Activation. For the output layer this is the loss's activation (applied by the loss).
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Std of the Gaussian noise added to the output during training (0 for none).
    pub fn noise(&self) -> f32 {
        self.noise
    }

    /// Inverted-dropout probability of the output during training (0 for none).
    pub fn dropout(&self) -> f32 {
        self.dropout
    }

    /// True when the layer receives no updates ([`Mlp::freeze`]).
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Number of inputs.
    pub fn inputs(&self) -> usize {
        self.weight.nrows()
    }

    /// Number of outputs (units).
    pub fn outputs(&self) -> usize {
        self.weight.ncols()
    }

    fn perturbed(&self) -> bool {
        self.noise > 0.0 || self.dropout > 0.0
    }
}

/// The architecture stored in checkpoints (and enough to rebuild the network).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// Format tag, `whet-mlp/1`.
    pub format: String,
    /// The task.
    pub task: Task,
    /// The loss (fused with the output activation).
    pub loss: LossKind,
    /// Number of inputs.
    pub input_dim: usize,
    /// Layers, input side first; the last is the output layer.
    pub layers: Vec<LayerSpec>,
    /// Binary tasks: the positive-class probability threshold set by `model.threshold` (given,
    /// or chosen by `auto`); absent means the default 0.5. See [`crate::Decision`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// One layer in an [`Architecture`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// Inputs.
    pub inputs: usize,
    /// Outputs.
    pub outputs: usize,
    /// Activation.
    pub activation: Activation,
    /// Training noise std.
    pub noise: f32,
    /// Training dropout probability.
    pub dropout: f32,
}

/// Key of the random stream for the training-time regularisers of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoiseKey {
    /// The run's seed.
    pub seed: u64,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Batch within the epoch (0-based).
    pub batch: usize,
}

/// A multilayer perceptron with a loss fused to its output layer.
///
/// The layers, task and loss are read through accessors: the layers chain (each one's inputs
/// are the previous one's outputs), there is at least one, and the output layer, task and loss
/// fit together. [`Mlp::new`], [`Mlp::from_parts`] and the checkpoint loaders build networks
/// that keep this; [`Mlp::freeze`] and the training loop change them.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    /// Layers, input side first; the last is the output layer.
    pub(crate) layers: Vec<Dense>,
    /// The task.
    pub(crate) task: Task,
    /// The loss.
    pub(crate) loss: LossKind,
    /// The matrix-multiply kernel.
    pub kernel: Kernel,
    input_dim: usize,
    /// Binary: the threshold (None: the default 0.5).
    pub(crate) threshold: Option<f64>,
    /// Per-class loss weights while training (not part of the architecture).
    class_weights: Option<ClassWeights>,
}

impl Mlp {
    /// Builds a freshly initialised network from `config` for data with `input_dim` features and
    /// `output_dim` targets (classes for classification, 1 for binary).
    ///
    /// # Errors
    /// [`Error::Config`] when the config does not validate or the dimensions do not fit the task.
    pub fn new(
        config: &ModelConfig,
        input_dim: usize,
        output_dim: usize,
        seed: u64,
    ) -> Result<Self> {
        let issues = config.validate();
        if !issues.is_empty() {
            let list: Vec<String> = issues.iter().map(|i| format!("model.{i}")).collect();
            return Err(Error::Config(list.join("; ")));
        }
        let (act, loss) = config.output_pair().map_err(Error::Config)?;
        check_dims(config.task, input_dim, output_dim)?;
        let mut layers = Vec::with_capacity(config.hidden.len() + 1);
        let mut inputs = input_dim;
        for (i, h) in config.hidden.iter().enumerate() {
            let mut d = Dense::new(inputs, h.dense, h.activation, config.init, seed, i);
            d.noise = h.noise.get() as f32;
            d.dropout = h.dropout.get() as f32;
            inputs = h.dense;
            layers.push(d);
        }
        layers.push(Dense::new(
            inputs,
            output_dim,
            act,
            config.init,
            seed,
            layers.len(),
        ));
        let mut net = Self {
            layers,
            task: config.task,
            loss,
            kernel: Kernel::default(),
            input_dim,
            threshold: None,
            class_weights: None,
        };
        if let Some(ThresholdConfig::Fixed(t)) = config.threshold {
            net.set_threshold(t)?;
        }
        Ok(net)
    }

    /// Rebuilds a network from an architecture and its weights (used by checkpoint loading).
    ///
    /// # Errors
    /// [`Error::Config`] when the shapes do not chain or do not match the architecture.
    pub fn from_parts(
        arch: &Architecture,
        weights: Vec<(Array2<f32>, Array1<f32>)>,
    ) -> Result<Self> {
        if arch.layers.is_empty() || weights.len() != arch.layers.len() {
            return Err(Error::Config(format!(
                "architecture has {} layers but {} weight pairs were given",
                arch.layers.len(),
                weights.len()
            )));
        }
        let mut inputs = arch.input_dim;
        let mut layers = Vec::new();
        for (i, (spec, (w, b))) in arch.layers.iter().zip(weights).enumerate() {
            if spec.inputs != inputs
                || w.dim() != (spec.inputs, spec.outputs)
                || b.len() != spec.outputs
            {
                return Err(Error::Config(format!(
                    "layer {i}: expected weight [{inputs}, {}] and bias [{}], found weight {:?} and bias [{}]",
                    spec.outputs,
                    spec.outputs,
                    w.dim(),
                    b.len()
                )));
            }
            inputs = spec.outputs;
            layers.push(Dense {
                weight: w,
                bias: b,
                activation: spec.activation,
                noise: spec.noise,
                dropout: spec.dropout,
                frozen: false,
            });
        }
        let mut net = Self {
            layers,
            task: arch.task,
            loss: arch.loss,
            kernel: Kernel::default(),
            input_dim: arch.input_dim,
            threshold: None,
            class_weights: None,
        };
        if let Some(t) = arch.threshold {
            net.set_threshold(t)?;
        }
        Ok(net)
    }

    /// How this network's outputs become outputs and labels (the task, and the binary
    /// threshold).
    pub fn decision(&self) -> Decision {
        match self.threshold {
            Some(t) => Decision::binary(t).expect("checked by set_threshold"),
            None => Decision::new(self.task),
        }
    }

    /// Sets the binary threshold on the positive-class probability.
    ///
    /// # Errors
    /// [`Error::Config`] when the task is not binary or `t` is not strictly between 0 and 1.
    pub fn set_threshold(&mut self, t: f64) -> Result<()> {
        if self.task != Task::Binary {
            return Err(Error::Config(format!(
                "a threshold applies to binary models, this one is {}",
                crate::config::ser(&self.task)
            )));
        }
        Decision::binary(t).map_err(Error::Config)?;
        self.threshold = Some(t);
        Ok(())
    }

    /// Sets the per-class loss weights used by training and by the loss that evaluation
    /// reports (one per output class; binary: negative then positive).
    ///
    /// # Errors
    /// [`Error::Config`] for a regression model or a weight count that is not the number of
    /// classes.
    pub fn set_class_weights(&mut self, weights: ClassWeights) -> Result<()> {
        let classes = match self.task {
            Task::Regression => {
                return Err(Error::Config(
                    "class weights apply to classification and binary models, this one is \
                     regression"
                        .into(),
                ));
            }
            Task::Binary => 2,
            Task::Classification => self.output_dim(),
        };
        if weights.get().len() != classes {
            return Err(Error::Config(format!(
                "expected {classes} class weights, found {}",
                weights.get().len()
            )));
        }
        self.class_weights = Some(weights);
        Ok(())
    }

    /// The per-class loss weights, when set.
    pub fn class_weights(&self) -> Option<&ClassWeights> {
        self.class_weights.as_ref()
    }

    /// The loss of one row of logits, weighted by its class weight when weights are set.
    pub(crate) fn row_loss(&self, z: &[f32], y: &[f32]) -> f64 {
        self.loss
            .weighted_row_loss(z, y, self.class_weights.as_ref())
    }

    /// The architecture (for checkpoints).
    pub fn architecture(&self) -> Architecture {
        Architecture {
            format: "whet-mlp/1".into(),
            task: self.task,
            loss: self.loss,
            input_dim: self.input_dim,
            threshold: self.threshold,
            layers: self
                .layers
                .iter()
                .map(|l| LayerSpec {
                    inputs: l.inputs(),
                    outputs: l.outputs(),
                    activation: l.activation,
                    noise: l.noise,
                    dropout: l.dropout,
                })
                .collect(),
        }
    }

    /// Layers, input side first; the last is the output layer.
    pub fn layers(&self) -> &[Dense] {
        &self.layers
    }

    /// The task.
    pub fn task(&self) -> Task {
        self.task
    }

    /// The loss (fused with the output layer's activation).
    pub fn loss(&self) -> LossKind {
        self.loss
    }

    /// Number of inputs.
    pub fn input_dim(&self) -> usize {
        self.input_dim
    }

    /// Number of outputs.
    pub fn output_dim(&self) -> usize {
        self.layers.last().map_or(0, Dense::outputs)
    }

    /// Number of trainable scalars (weights and biases, frozen or not).
    pub fn parameter_count(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weight.len() + l.bias.len())
            .sum()
    }

    /// Marks the layers in `indices` frozen (and all others trainable).
    ///
    /// # Errors
    /// [`Error::Config`] when an index is out of range or every layer would be frozen.
    pub fn freeze(&mut self, indices: &[usize]) -> Result<()> {
        let n = self.layers.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::Config(format!(
                "transfer.freeze: layer {bad} does not exist (the network has layers 0..={})",
                n - 1
            )));
        }
        if (0..n).all(|i| indices.contains(&i)) {
            return Err(Error::Config(format!(
                "transfer.freeze: all {n} layers are frozen, nothing would be trained"
            )));
        }
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.frozen = indices.contains(&i);
        }
        Ok(())
    }

    /// Checks that no gradient has to pass through a step activation.
    ///
    /// # Errors
    /// [`Error::StepNotDifferentiable`] naming the step layer and a trainable layer below it.
    pub fn check_trainable(&self) -> Result<()> {
        for (l, layer) in self.layers.iter().enumerate() {
            if layer.activation == Activation::Step
                && let Some(j) = (0..=l).find(|&j| !self.layers[j].frozen)
            {
                return Err(Error::StepNotDifferentiable {
                    layer: l,
                    trainable: j,
                });
            }
        }
        Ok(())
    }

    /// Index of the lowest layer that receives updates.
    fn lowest_trainable(&self) -> usize {
        self.layers
            .iter()
            .position(|l| !l.frozen)
            .unwrap_or(self.layers.len())
    }

    /// Buffers for batches of up to `rows` samples.
    pub fn workspace(&self, rows: usize, target_dim: usize) -> Workspace {
        let rows = rows.max(1);
        Workspace {
            rows,
            x: Array2::zeros((rows, self.input_dim)),
            y: Array2::zeros((rows, target_dim)),
            act: self
                .layers
                .iter()
                .map(|l| Array2::zeros((rows, l.outputs())))
                .collect(),
            pert: self
                .layers
                .iter()
                .map(|l| l.perturbed().then(|| Array2::zeros((rows, l.outputs()))))
                .collect(),
            mask: self
                .layers
                .iter()
                .map(|l| (l.dropout > 0.0).then(|| Array2::zeros((rows, l.outputs()))))
                .collect(),
            delta: self
                .layers
                .iter()
                .map(|l| Array2::zeros((rows, l.outputs())))
                .collect(),
            grad_w: self
                .layers
                .iter()
                .map(|l| Array2::zeros(l.weight.dim()))
                .collect(),
            grad_b: self
                .layers
                .iter()
                .map(|l| Array1::zeros(l.outputs()))
                .collect(),
        }
    }

    /// Forward pass over the first `rows` rows of `ws.x`. With `noise = Some(key)` the training
    /// regularisers (Gaussian noise, dropout) are applied, drawn from the stream
    /// `[5, epoch, batch, layer]`; with `None` the network runs in evaluation mode. The output
    /// layer's logits end up in [`Workspace::logits`].
    ///
    /// # Shapes
    /// Reads `ws.x[..rows]: [rows, input_dim]`; writes every layer's `[rows, units]` buffers and
    /// the logits `[rows, output_dim]`.
    ///
    /// # Panics
    /// If `rows` exceeds the workspace capacity or the workspace was built for another network.
    pub fn forward(&self, ws: &mut Workspace, rows: usize, noise: Option<NoiseKey>) {
        assert!(
            rows <= ws.rows,
            "batch of {rows} rows exceeds workspace capacity {}",
            ws.rows
        );
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (before, rest) = ws.act.split_at_mut(l);
            let out = &mut rest[0];
            let input = if l == 0 {
                ws.x.slice(s![..rows, ..])
            } else {
                match (&ws.pert[l - 1], noise) {
                    (Some(p), Some(_)) => p.slice(s![..rows, ..]),
                    _ => before[l - 1].slice(s![..rows, ..]),
                }
            };
            let mut z = out.slice_mut(s![..rows, ..]);
            matmul(self.kernel, input, layer.weight.view(), z.view_mut());
            let bias = layer.bias.as_slice().expect("contiguous bias");
            if l == last {
                // Logits only: the loss applies the output activation.
                Activation::Identity.bias_forward(z, bias);
                continue;
            }
            par_bias_forward(layer.activation, z.view_mut(), bias);
            if let (Some(key), Some(p)) = (noise, ws.pert[l].as_mut()) {
                let mut rng = stream(key.seed, &[5, key.epoch as u64, key.batch as u64, l as u64]);
                let mut p = p.slice_mut(s![..rows, ..]);
                p.assign(&z);
                if layer.noise > 0.0 {
                    let sd = layer.noise;
                    for v in p.iter_mut() {
                        let e: f32 = StandardNormal.sample(&mut rng);
                        *v += sd * e;
                    }
                }
                if let Some(mask) = ws.mask[l].as_mut() {
                    let keep = 1.0 - layer.dropout;
                    let scale = 1.0 / keep;
                    let mut mask = mask.slice_mut(s![..rows, ..]);
                    for (m, v) in mask.iter_mut().zip(p.iter_mut()) {
                        *m = if rng.random::<f32>() < keep {
                            scale
                        } else {
                            0.0
                        };
                        *v *= *m;
                    }
                }
            }
        }
    }

    /// One training step's forward and backward pass over the first `rows` rows of `ws.x` and
    /// `ws.y`: fills `ws.grad_w` / `ws.grad_b` for every trainable layer and returns the summed
    /// loss and the number of correct predictions (0 for regression).
    ///
    /// # Shapes
    /// Reads `ws.x[..rows]: [rows, input_dim]` and `ws.y[..rows]: [rows, output_dim]`; writes
    /// `ws.grad_w[l]: [inputs, outputs]` and `ws.grad_b[l]: [outputs]` of trainable layers.
    ///
    /// # Panics
    /// As [`Mlp::forward`].
    pub fn forward_backward(
        &self,
        ws: &mut Workspace,
        rows: usize,
        key: Option<NoiseKey>,
    ) -> (f64, usize) {
        self.forward(ws, rows, key);
        let last = self.layers.len() - 1;
        let correct = count_correct(
            &self.decision(),
            ws.act[last].slice(s![..rows, ..]),
            ws.y.slice(s![..rows, ..]),
        );
        let loss = self.loss.loss_and_grad(
            ws.act[last].slice_mut(s![..rows, ..]),
            ws.y.slice(s![..rows, ..]),
            1.0 / rows as f32,
            self.class_weights.as_ref(),
        );
        self.backward(ws, rows, key.is_some());
        (loss, correct)
    }

    /// Backward pass; expects `ws.act[last]` to hold `dL/dz` of the output layer.
    fn backward(&self, ws: &mut Workspace, rows: usize, train: bool) {
        let last = self.layers.len() - 1;
        let lo = self.lowest_trainable();
        for l in (lo..=last).rev() {
            let layer = &self.layers[l];
            // The output layer's delta lives in act[last] (overwritten by the loss).
            let (dlo, dhi) = ws.delta.split_at_mut(l);
            let (below, rest) = ws.act.split_at_mut(l);
            let delta_buf = if l == last { &rest[0] } else { &dhi[0] };
            let delta = delta_buf.slice(s![..rows, ..]);
            if !layer.frozen {
                let input = if l == 0 {
                    ws.x.slice(s![..rows, ..])
                } else {
                    match (&ws.pert[l - 1], train) {
                        (Some(p), true) => p.slice(s![..rows, ..]),
                        _ => below[l - 1].slice(s![..rows, ..]),
                    }
                };
                matmul(self.kernel, input.t(), delta, ws.grad_w[l].view_mut());
                let gb = ws.grad_b[l].as_slice_mut().expect("contiguous");
                gb.fill(0.0);
                for row in delta.rows() {
                    for (g, d) in gb.iter_mut().zip(row.as_slice().expect("contiguous rows")) {
                        *g += d;
                    }
                }
            }
            if l > lo {
                let mut g = dlo[l - 1].slice_mut(s![..rows, ..]);
                matmul(self.kernel, delta, layer.weight.t(), g.view_mut());
                if train && let Some(mask) = &ws.mask[l - 1] {
                    g *= &mask.slice(s![..rows, ..]);
                }
                par_backward(
                    self.layers[l - 1].activation,
                    g,
                    below[l - 1].slice(s![..rows, ..]),
                );
            }
        }
    }

    /// Outputs (probabilities for classification and binary, values for regression) for `x`,
    /// computed in evaluation mode in batches of 1024.
    ///
    /// # Shapes
    /// `x: [n, input_dim]` -> `[n, output_dim]`.
    ///
    /// # Panics
    /// If `x` has the wrong number of columns.
    pub fn predict(&self, x: ArrayView2<f32>) -> Array2<f32> {
        assert_eq!(x.ncols(), self.input_dim, "input columns");
        let n = x.nrows();
        let mut out = Array2::zeros((n, self.output_dim()));
        let mut ws = self.workspace(n.min(1024), 0);
        let last = self.layers.len() - 1;
        let decision = self.decision();
        let mut start = 0;
        while start < n {
            let rows = (n - start).min(ws.rows);
            ws.x.slice_mut(s![..rows, ..])
                .assign(&x.slice(s![start..start + rows, ..]));
            self.forward(&mut ws, rows, None);
            let mut o = out.slice_mut(s![start..start + rows, ..]);
            o.assign(&ws.act[last].slice(s![..rows, ..]));
            decision.outputs(o);
            start += rows;
        }
        out
    }

    /// Copies every layer's weights and biases into `dst` (same architecture), without
    /// allocating.
    ///
    /// # Panics
    /// If the architectures differ.
    pub fn copy_weights_to(&self, dst: &mut Mlp) {
        assert_eq!(self.layers.len(), dst.layers.len(), "layer count");
        for (s, d) in self.layers.iter().zip(dst.layers.iter_mut()) {
            d.weight.assign(&s.weight);
            d.bias.assign(&s.bias);
        }
    }
}

/// Rows per parallel chunk of the element-wise passes.
const PAR_ROWS: usize = 32;
/// Element-wise passes over fewer elements than this stay on the calling thread.
const PAR_MIN_ELEMS: usize = 16 * 1024;

/// [`Activation::bias_forward`] over fixed row chunks in parallel (rows are independent, so the
/// result does not depend on the thread count).
fn par_bias_forward(act: Activation, mut z: ArrayViewMut2<f32>, bias: &[f32]) {
    if z.len() < PAR_MIN_ELEMS || crate::par::serial() {
        return act.bias_forward(z, bias);
    }
    z.axis_chunks_iter_mut(Axis(0), PAR_ROWS)
        .into_par_iter()
        .for_each(|c| act.bias_forward(c, bias));
}

/// [`Activation::backward_in_place`] over fixed row chunks in parallel.
fn par_backward(act: Activation, mut g: ArrayViewMut2<f32>, a: ArrayView2<f32>) {
    if g.len() < PAR_MIN_ELEMS || crate::par::serial() {
        return act.backward_in_place(g, a);
    }
    g.axis_chunks_iter_mut(Axis(0), PAR_ROWS)
        .into_par_iter()
        .zip(a.axis_chunks_iter(Axis(0), PAR_ROWS).into_par_iter())
        .for_each(|(g, a)| act.backward_in_place(g, a));
}

pub(crate) fn check_dims(task: Task, input_dim: usize, output_dim: usize) -> Result<()> {
    if input_dim == 0 {
        return Err(Error::Config("the data has 0 input features".into()));
    }
    match task {
        Task::Binary if output_dim != 1 => Err(Error::Config(format!(
            "task `binary` needs one 0/1 target column, found {output_dim} columns"
        ))),
        Task::Classification if output_dim < 2 => Err(Error::Config(format!(
            "task `classification` needs one-hot targets with at least 2 classes, found \
             {output_dim} target columns (use task `binary` for one 0/1 column)"
        ))),
        Task::Regression if output_dim == 0 => Err(Error::Config(
            "task `regression` needs at least one target column".into(),
        )),
        _ => Ok(()),
    }
}

/// Correct predictions in `logits` against targets `y` (classification: argmax; binary: the
/// decision's threshold against y > 0.5; regression: 0).
pub(crate) fn count_correct(
    decision: &Decision,
    logits: ArrayView2<f32>,
    y: ArrayView2<f32>,
) -> usize {
    match decision.task() {
        Task::Regression => 0,
        Task::Binary => logits
            .iter()
            .zip(y.iter())
            .filter(|(z, t)| decision.positive(**z) == (**t > 0.5))
            .count(),
        Task::Classification => logits
            .rows()
            .into_iter()
            .zip(y.rows())
            .filter(|(z, t)| argmax(z.iter().copied()) == argmax(t.iter().copied()))
            .count(),
    }
}

/// Index of the largest value (the first on ties).
pub(crate) fn argmax(it: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, v) in it.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Preallocated buffers for one network and a maximum batch size; reused across batches so the
/// hot loop never allocates.
#[derive(Debug, Clone)]
pub struct Workspace {
    rows: usize,
    /// Input batch, `[rows, input_dim]`.
    pub x: Array2<f32>,
    /// Target batch, `[rows, target_dim]`.
    pub y: Array2<f32>,
    act: Vec<Array2<f32>>,
    pert: Vec<Option<Array2<f32>>>,
    mask: Vec<Option<Array2<f32>>>,
    delta: Vec<Array2<f32>>,
    /// Weight gradients per layer, `[inputs, outputs]`.
    pub grad_w: Vec<Array2<f32>>,
    /// Bias gradients per layer, `[outputs]`.
    pub grad_b: Vec<Array1<f32>>,
}

impl Workspace {
    /// The batch capacity.
    pub fn capacity(&self) -> usize {
        self.rows
    }

    /// The output layer's logits after [`Mlp::forward`] (first `rows` rows are valid).
    pub fn logits(&self) -> ArrayView2<'_, f32> {
        self.act.last().expect("at least one layer").view()
    }

    /// Mutable input and target buffers restricted to the first `rows` rows.
    pub fn batch_mut(&mut self, rows: usize) -> (ArrayViewMut2<'_, f32>, ArrayViewMut2<'_, f32>) {
        (
            self.x.slice_mut(s![..rows, ..]),
            self.y.slice_mut(s![..rows, ..]),
        )
    }
}
