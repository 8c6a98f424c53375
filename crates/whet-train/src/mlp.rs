//! The multilayer perceptron: dense layers, forward and backward passes over preallocated
//! buffers.

use crate::activation::Activation;
use crate::config::{Init, LayerConfig, ModelConfig, Task};
use crate::conv::{Spatial, SpatialKind, SpatialSpec};
use crate::decision::{Decision, ThresholdConfig};
use crate::error::{Error, Result};
use crate::kernel::{Kernel, matmul, matmul_accumulate, matmul_inner_halves};
use crate::loss::{ClassWeights, LossKind};
use crate::optim::{Optimizer, dense_weight_id};
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
        Self {
            weight: init_weights(
                (inputs, outputs),
                (inputs, outputs),
                activation,
                init,
                stream(seed, &[3, index as u64]),
            ),
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

    /// The input row at which the weights are cut between threads
    /// ([`weight_cut`](crate::kernel::weight_cut)).
    pub(crate) fn weight_cut(&self) -> Option<usize> {
        crate::kernel::weight_cut(self.inputs(), self.outputs())
    }

    fn perturbed(&self) -> bool {
        self.noise > 0.0 || self.dropout > 0.0
    }
}

/// A `shape` weight matrix drawn by `init` from `rng`: He (normal, std `sqrt(2 / fan_in)`) or
/// Xavier (uniform in `±sqrt(6 / (fan_in + fan_out))`), `auto` picking He for the ReLU family;
/// `fans` = (fan_in, fan_out). Values are drawn in row-major order.
pub(crate) fn init_weights(
    shape: (usize, usize),
    (fan_in, fan_out): (usize, usize),
    activation: Activation,
    init: Init,
    mut rng: whet_core::rng::Rng,
) -> Array2<f32> {
    let he = match init {
        Init::He => true,
        Init::Xavier => false,
        Init::Auto => activation.is_relu_family(),
    };
    if he {
        let std = (2.0 / fan_in.max(1) as f64).sqrt() as f32;
        Array2::from_shape_simple_fn(shape, || {
            let z: f32 = StandardNormal.sample(&mut rng);
            z * std
        })
    } else {
        let limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt() as f32;
        Array2::from_shape_simple_fn(shape, || (rng.random::<f32>() * 2.0 - 1.0) * limit)
    }
}

/// One image layer's tensors for [`Mlp::from_parts`]: weights, biases and (batch
/// normalisation) the running mean and variance; empty for what a layer does not have.
pub type ImageLayerWeights = (Array2<f32>, Array1<f32>, [Array1<f32>; 2]);

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
    /// Image inputs: `[height, width, channels]` (channels last), absent for flat features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_shape: Option<[usize; 3]>,
    /// The image layers (convolutions and pools) before `layers`, input side first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spatial: Vec<SpatialSpec>,
    /// Binary tasks: the positive-class probability threshold set by `model.threshold` (given,
    /// or chosen by `auto`); absent means the default 0.5. See [`crate::Decision`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// The per-class loss weights the network was trained with (`train.class_weights`, one per
    /// class; binary: negative then positive), so a loaded network reports the loss its run
    /// reported; absent means unweighted. See [`Mlp::set_class_weights`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<Vec<f32>>,
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

impl NoiseKey {
    /// The stream of one layer's noise and dropout: `[5, epoch, batch, layer]` for dense layer
    /// `layer`, `[7, epoch, batch, layer]` for image layer `layer`.
    fn rng(&self, first: u64, layer: usize) -> whet_core::rng::Rng {
        stream(
            self.seed,
            &[first, self.epoch as u64, self.batch as u64, layer as u64],
        )
    }
}

/// A multilayer perceptron with a loss fused to its output layer.
///
/// The layers, task and loss are read through accessors: the layers chain (each one's inputs
/// are the previous one's outputs), there is at least one, and the output layer, task and loss
/// fit together. [`Mlp::new`], [`Mlp::from_parts`] and the checkpoint loaders build networks
/// that keep this; [`Mlp::freeze`] and the training loop change them.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    /// The image layers (convolutions and pools), input side first; empty for flat inputs.
    pub(crate) spatial: Vec<Spatial>,
    /// Image inputs: `[height, width, channels]`.
    input_shape: Option<[usize; 3]>,
    /// Dense layers, input side first; the last is the output layer.
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
    /// Per-class loss weights of training and of the reported loss (in the architecture, so
    /// checkpoints keep them).
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
        if config.has_image_layers() {
            return Err(Error::Config(
                "model.layers: convolutions and pools read images, and this network gets \
                 flat features; use dense layers only (or image data)"
                    .into(),
            ));
        }
        Self::build(config, None, input_dim, output_dim, seed)
    }

    /// Builds a freshly initialised network for images of `shape` (`[height, width,
    /// channels]`, channels last, as rows of `h·w·c` values) and `output_dim` targets: the
    /// image layers of `config.layers`, then its dense layers (or `config.hidden`). Weight
    /// streams are `[3, i]` for the `i`-th layer with weights, convolutions first.
    ///
    /// # Errors
    /// As [`Mlp::new`], and when a kernel or window does not fit its input (the message names
    /// `model.layers[i]` and the shapes).
    pub fn for_images(
        config: &ModelConfig,
        shape: [usize; 3],
        output_dim: usize,
        seed: u64,
    ) -> Result<Self> {
        let dim = shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        let Some(dim) = dim.filter(|&d| d > 0) else {
            return Err(Error::Config(format!(
                "the images have shape {shape:?} (height, width, channels): no pixels"
            )));
        };
        Self::build(config, Some(shape), dim, output_dim, seed)
    }

    fn build(
        config: &ModelConfig,
        shape: Option<[usize; 3]>,
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
        let mut spatial: Vec<Spatial> = Vec::new();
        if let Some(shape) = shape {
            let mut geometries = crate::conv::geometries(config, shape)
                .map_err(Error::Config)?
                .into_iter();
            for layer in &config.layers {
                let built = match (layer, geometries.next()) {
                    (LayerConfig::Conv(c), Some(geo)) => {
                        let n = spatial.iter().filter(|s| s.has_weights()).count();
                        Spatial::conv(c, geo, config.init, seed, n)
                    }
                    (LayerConfig::BatchNorm(b), Some(geo)) => Spatial::batch_norm(b, geo),
                    (LayerConfig::MaxPool(p), Some(geo)) => {
                        Spatial::pool(p, SpatialKind::MaxPool, geo)
                    }
                    (LayerConfig::AvgPool(p), Some(geo)) => {
                        Spatial::pool(p, SpatialKind::AvgPool, geo)
                    }
                    _ => break,
                };
                spatial.push(built);
            }
        }
        let convs = spatial.iter().filter(|s| s.has_weights()).count();
        let hidden = config.dense_layers();
        let mut layers = Vec::with_capacity(hidden.len() + 1);
        let mut inputs = spatial.last().map_or(input_dim, |s| s.geo.out_len());
        for (i, h) in hidden.iter().enumerate() {
            let mut d = Dense::new(inputs, h.dense, h.activation, config.init, seed, convs + i);
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
            convs + layers.len(),
        ));
        let mut net = Self {
            spatial,
            input_shape: shape,
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
        spatial_weights: Vec<ImageLayerWeights>,
        weights: Vec<(Array2<f32>, Array1<f32>)>,
    ) -> Result<Self> {
        if spatial_weights.len() != arch.spatial.len() {
            return Err(Error::Config(format!(
                "architecture has {} image layers but {} weight pairs were given",
                arch.spatial.len(),
                spatial_weights.len()
            )));
        }
        let mut spatial = Vec::with_capacity(arch.spatial.len());
        let mut shape = arch.input_shape;
        for (j, (spec, (w, b, running))) in arch.spatial.iter().zip(spatial_weights).enumerate() {
            if shape != Some(spec.geometry.input) {
                return Err(Error::Config(format!(
                    "image layer {j}: expected input {shape:?}, the layer reads {:?}",
                    spec.geometry.input
                )));
            }
            let layer = Spatial::from_spec(spec, w, b, running)
                .map_err(|m| Error::Config(format!("image layer {j}: {m}")))?;
            shape = Some(layer.geo.output);
            spatial.push(layer);
        }
        if let Some(s) = arch.input_shape
            && s.iter().product::<usize>() != arch.input_dim
        {
            return Err(Error::Config(format!(
                "input shape {s:?} does not hold {} inputs",
                arch.input_dim
            )));
        }
        if arch.layers.is_empty() || weights.len() != arch.layers.len() {
            return Err(Error::Config(format!(
                "architecture has {} layers but {} weight pairs were given",
                arch.layers.len(),
                weights.len()
            )));
        }
        let mut inputs = spatial.last().map_or(arch.input_dim, |s| s.geo.out_len());
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
            spatial,
            input_shape: arch.input_shape,
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
        if let Some(w) = &arch.class_weights {
            net.set_class_weights(ClassWeights::new(w.clone()).map_err(Error::Config)?)?;
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
            class_weights: self.class_weights.as_ref().map(|w| w.get().to_vec()),
            input_shape: self.input_shape,
            spatial: self.spatial.iter().map(Spatial::spec).collect(),
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

    /// Dense layers, input side first; the last is the output layer.
    pub fn layers(&self) -> &[Dense] {
        &self.layers
    }

    /// The image layers (convolutions and pools) before the dense ones, input side first.
    pub fn spatial(&self) -> &[Spatial] {
        &self.spatial
    }

    /// Image inputs: `[height, width, channels]` (channels last); `None` for flat features.
    pub fn input_shape(&self) -> Option<[usize; 3]> {
        self.input_shape
    }

    /// Number of layers with weights: convolutions, then dense layers (the numbering of
    /// [`Mlp::freeze`]).
    pub fn weighted_layers(&self) -> usize {
        self.convs() + self.layers.len()
    }

    /// Image layers with weights (convolutions and batch normalisations).
    fn convs(&self) -> usize {
        self.spatial.iter().filter(|s| s.has_weights()).count()
    }

    /// Rows per batch of evaluation for `n` samples: up to 1024, fewer when the image layers'
    /// outputs and deltas would pass 64 MiB.
    pub fn eval_rows(&self, n: usize) -> usize {
        let per_row = self
            .spatial
            .iter()
            .map(|s| 2 * s.geo.out_len())
            .sum::<usize>()
            .max(1);
        let cap = ((64usize << 20) / (4 * per_row)).clamp(1, crate::memory::EVAL_ROWS);
        n.clamp(1, cap)
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
        let dense: usize = self
            .layers
            .iter()
            .map(|l| l.weight.len() + l.bias.len())
            .sum();
        dense
            + self
                .spatial
                .iter()
                .map(|s| s.weight.len() + s.bias.len())
                .sum::<usize>()
    }

    /// Marks the layers in `indices` frozen (and all others trainable).
    ///
    /// # Errors
    /// [`Error::Config`] when an index is out of range or every layer would be frozen.
    ///
    /// Layers are numbered over the layers with weights: the image layers with weights first
    /// (convolutions and batch normalisations, 0, 1, …), then the dense layers; pools have no
    /// weights and no number.
    pub fn freeze(&mut self, indices: &[usize]) -> Result<()> {
        let convs = self.convs();
        let n = self.weighted_layers();
        let naming = if convs > 0 {
            let what = if self.spatial.iter().any(|s| s.norm.is_some()) {
                "convolutions and batch normalisations"
            } else {
                "convolutions"
            };
            format!(
                "layers 0..={} ({what} 0..={}, then dense layers)",
                n - 1,
                convs - 1
            )
        } else {
            format!("layers 0..={}", n - 1)
        };
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::Config(format!(
                "transfer.freeze: layer {bad} does not exist (the network has {naming})"
            )));
        }
        if (0..n).all(|i| indices.contains(&i)) {
            return Err(Error::Config(format!(
                "transfer.freeze: all {n} layers are frozen, nothing would be trained"
            )));
        }
        for (i, s) in self
            .spatial
            .iter_mut()
            .filter(|s| s.has_weights())
            .enumerate()
        {
            s.frozen = indices.contains(&i);
        }
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.frozen = indices.contains(&(convs + i));
        }
        Ok(())
    }

    /// Checks that no gradient has to pass through a step activation.
    ///
    /// # Errors
    /// [`Error::StepNotDifferentiable`] naming the step layer and a trainable layer below it
    /// (numbered as [`Mlp::freeze`] numbers them).
    pub fn check_trainable(&self) -> Result<()> {
        let convs = self.convs();
        let conv = self
            .spatial
            .iter()
            .filter(|s| s.has_weights())
            .position(|s| !s.frozen);
        for (l, layer) in self.layers.iter().enumerate() {
            if layer.activation == Activation::Step {
                let dense = (0..=l).find(|&j| !self.layers[j].frozen).map(|j| convs + j);
                if let Some(j) = conv.or(dense) {
                    return Err(Error::StepNotDifferentiable {
                        layer: convs + l,
                        trainable: j,
                    });
                }
            }
        }
        Ok(())
    }

    /// Index of the lowest dense layer that receives updates.
    fn lowest_trainable(&self) -> usize {
        self.layers
            .iter()
            .position(|l| !l.frozen)
            .unwrap_or(self.layers.len())
    }

    /// Index of the lowest image layer that receives updates (a trainable convolution).
    fn lowest_trainable_image_layer(&self) -> Option<usize> {
        self.spatial
            .iter()
            .position(|s| s.has_weights() && !s.frozen)
    }

    /// Buffers for batches of up to `rows` samples.
    pub fn workspace(&self, rows: usize, target_dim: usize) -> Workspace {
        let rows = rows.max(1);
        let buf = |on: bool, cols: usize| on.then(|| Array2::zeros((rows, cols)));
        Workspace {
            rows,
            x: Array2::zeros((rows, self.input_dim)),
            y: Array2::zeros((rows, target_dim)),
            sp: self
                .spatial
                .iter()
                .map(|s| {
                    let g = s.geo;
                    let conv = s.is_conv();
                    SpatialWs {
                        act: Array2::zeros((rows, g.out_len())),
                        pert: buf(s.perturbed(), g.out_len()),
                        mask: buf(s.dropout > 0.0, g.out_len()),
                        delta: Array2::zeros((rows, g.out_len())),
                        partials: if conv {
                            Array2::zeros((g.groups(rows), s.weight.len()))
                        } else {
                            Array2::zeros((0, 0))
                        },
                        argmax: if s.has_weights() {
                            Vec::new()
                        } else {
                            vec![0; rows * g.out_len()]
                        },
                        xhat: if s.kind == SpatialKind::BatchNorm {
                            Array2::zeros((rows, g.out_len()))
                        } else {
                            Array2::zeros((0, 0))
                        },
                        stats: std::array::from_fn(|_| vec![0.0; s.bias.len()]),
                        grad_w: Array2::zeros(s.weight.dim()),
                        grad_b: Array1::zeros(s.bias.len()),
                    }
                })
                .collect(),
            act: self
                .layers
                .iter()
                .map(|l| Array2::zeros((rows, l.outputs())))
                .collect(),
            pert: self
                .layers
                .iter()
                .map(|l| buf(l.perturbed(), l.outputs()))
                .collect(),
            mask: self
                .layers
                .iter()
                .map(|l| buf(l.dropout > 0.0, l.outputs()))
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
            part: self
                .layers
                .iter()
                .map(|l| buf(l.weight_cut().is_some(), l.outputs()))
                .collect(),
        }
    }

    /// Forward pass over the first `rows` rows of `ws.x`. With `noise = Some(key)` the training
    /// regularisers (Gaussian noise, dropout) are applied, drawn from the streams
    /// `[7, epoch, batch, layer]` (image layers) and `[5, epoch, batch, layer]` (dense layers);
    /// with `None` the network runs in evaluation mode. The output layer's logits end up in
    /// [`Workspace::logits`].
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
        for (j, layer) in self.spatial.iter().enumerate() {
            let (before, rest) = ws.sp.split_at_mut(j);
            let cur = &mut rest[0];
            let input = match before.last() {
                None => ws.x.slice(s![..rows, ..]),
                Some(prev) => prev.output(rows, noise.is_some()),
            };
            let g = &layer.geo;
            match layer.kind {
                SpatialKind::Conv => crate::conv::conv_forward(
                    self.kernel,
                    g,
                    input,
                    layer.weight.view(),
                    layer.bias.as_slice().expect("contiguous bias"),
                    layer.activation,
                    cur.act.view_mut(),
                    rows,
                ),
                SpatialKind::BatchNorm => {
                    let c = g.output[2];
                    let x = input
                        .into_shape_with_order((rows * g.out_pixels(), c))
                        .expect("contiguous rows");
                    let mut y = pixels(cur.act.view_mut(), rows, c);
                    let [_, eps] = layer.norm.expect("a batch normalisation");
                    crate::conv::norm_forward(
                        x,
                        y.view_mut(),
                        pixels(cur.xhat.view_mut(), rows, c),
                        layer.weight.as_slice().expect("contiguous"),
                        eps,
                        &mut cur.stats,
                        noise.is_none().then_some(&layer.running),
                    );
                    let beta = layer.bias.as_slice().expect("contiguous bias");
                    par_bias_forward(layer.activation, y, None, beta);
                }
                kind => crate::conv::pool_forward(
                    kind,
                    g,
                    input,
                    cur.act.view_mut(),
                    &mut cur.argmax,
                    rows,
                ),
            }
            if let (Some(key), Some(p)) = (noise, cur.pert.as_mut()) {
                perturb(
                    (layer.noise, layer.dropout),
                    key.rng(7, j),
                    cur.act.slice(s![..rows, ..]),
                    p.slice_mut(s![..rows, ..]),
                    cur.mask.as_mut().map(|m| m.slice_mut(s![..rows, ..])),
                );
            }
        }
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (before, rest) = ws.act.split_at_mut(l);
            let out = &mut rest[0];
            let input = if l == 0 {
                match ws.sp.last() {
                    None => ws.x.slice(s![..rows, ..]),
                    Some(sp) => sp.output(rows, noise.is_some()),
                }
            } else {
                match (&ws.pert[l - 1], noise) {
                    (Some(p), Some(_)) => p.slice(s![..rows, ..]),
                    _ => before[l - 1].slice(s![..rows, ..]),
                }
            };
            let mut z = out.slice_mut(s![..rows, ..]);
            let part = match (layer.weight_cut(), ws.part[l].as_mut()) {
                (Some(mid), Some(part)) => {
                    let halves = (z.view_mut(), part.slice_mut(s![..rows, ..]));
                    matmul_inner_halves(self.kernel, input, layer.weight.view(), halves, mid);
                    Some(part.slice(s![..rows, ..]))
                }
                _ => {
                    matmul(self.kernel, input, layer.weight.view(), z.view_mut());
                    None
                }
            };
            let bias = layer.bias.as_slice().expect("contiguous bias");
            if l == last {
                // Logits only: the loss applies the output activation.
                par_bias_forward(Activation::Identity, z, part, bias);
                continue;
            }
            par_bias_forward(layer.activation, z.view_mut(), part, bias);
            if let (Some(key), Some(p)) = (noise, ws.pert[l].as_mut()) {
                perturb(
                    (layer.noise, layer.dropout),
                    key.rng(5, l),
                    z.view(),
                    p.slice_mut(s![..rows, ..]),
                    ws.mask[l].as_mut().map(|m| m.slice_mut(s![..rows, ..])),
                );
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
        self.forward_backward_with(ws, rows, key, None)
    }

    /// [`Mlp::forward_backward`] for a training step with optimizer `opt`: when `opt`
    /// [accumulates](Optimizer::accumulates) (heavy-ball momentum), each trainable dense layer's
    /// weight gradient is added into its velocity ([`Optimizer::velocity`]) instead of stored
    /// in `ws.grad_w`, and [`Optimizer::update_accumulated`] finishes the step.
    pub(crate) fn forward_backward_with(
        &self,
        ws: &mut Workspace,
        rows: usize,
        key: Option<NoiseKey>,
        opt: Option<&mut Optimizer>,
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
        self.backward(ws, rows, key.is_some(), opt);
        (loss, correct)
    }

    /// Backward pass; expects `ws.act[last]` to hold `dL/dz` of the output layer. With `opt`,
    /// dense weight gradients go where [`Mlp::forward_backward_with`] says.
    fn backward(
        &self,
        ws: &mut Workspace,
        rows: usize,
        train: bool,
        mut opt: Option<&mut Optimizer>,
    ) {
        let last = self.layers.len() - 1;
        let image_lo = self.lowest_trainable_image_layer();
        // With a trainable convolution the gradient flows through every dense layer.
        let lo = if image_lo.is_some() {
            0
        } else {
            self.lowest_trainable()
        };
        for l in (lo..=last).rev() {
            let layer = &self.layers[l];
            // The output layer's delta lives in act[last] (overwritten by the loss).
            let (dlo, dhi) = ws.delta.split_at_mut(l);
            let (below, rest) = ws.act.split_at_mut(l);
            let delta_buf = if l == last { &rest[0] } else { &dhi[0] };
            let delta = delta_buf.slice(s![..rows, ..]);
            if !layer.frozen {
                let input = if l == 0 {
                    match ws.sp.last() {
                        None => ws.x.slice(s![..rows, ..]),
                        Some(sp) => sp.output(rows, train),
                    }
                } else {
                    match (&ws.pert[l - 1], train) {
                        (Some(p), true) => p.slice(s![..rows, ..]),
                        _ => below[l - 1].slice(s![..rows, ..]),
                    }
                };
                let velocity = opt
                    .as_deref_mut()
                    .and_then(|o| o.velocity(dense_weight_id(l), layer.weight.len()));
                match velocity {
                    Some((keep, v)) => {
                        let v = ArrayViewMut2::from_shape(layer.weight.dim(), v)
                            .expect("velocity of the weights' length");
                        matmul_accumulate(self.kernel, input.t(), delta, v, keep);
                    }
                    None => matmul(self.kernel, input.t(), delta, ws.grad_w[l].view_mut()),
                }
                let gb = ws.grad_b[l].as_slice_mut().expect("contiguous");
                crate::conv::column_sums(delta, gb);
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
            } else if l == 0
                && image_lo.is_some()
                && let Some(sp) = ws.sp.last_mut()
            {
                let mut g = sp.delta.slice_mut(s![..rows, ..]);
                matmul(self.kernel, delta, layer.weight.t(), g.view_mut());
                sp.back_through_activation(self.spatial.last().expect("image layers"), rows, train);
            }
        }
        let Some(j0) = image_lo else {
            return;
        };
        for j in (j0..self.spatial.len()).rev() {
            let layer = &self.spatial[j];
            let g = &layer.geo;
            let (lower, rest) = ws.sp.split_at_mut(j);
            let cur = &mut rest[0];
            match layer.kind {
                SpatialKind::Conv => {
                    let d = cur.delta.slice(s![..rows, ..]);
                    if !layer.frozen {
                        let input = match lower.last() {
                            None => ws.x.slice(s![..rows, ..]),
                            Some(prev) => prev.output(rows, train),
                        };
                        crate::conv::conv_weight_gradient(
                            self.kernel,
                            g,
                            input,
                            d,
                            &mut cur.partials,
                            cur.grad_w.view_mut(),
                            rows,
                        );
                        let d = d
                            .into_shape_with_order((rows * g.out_pixels(), g.output[2]))
                            .expect("contiguous rows");
                        crate::conv::column_sums(d, cur.grad_b.as_slice_mut().expect("contiguous"));
                    }
                    if j > j0 {
                        crate::conv::conv_input_gradient(
                            self.kernel,
                            g,
                            d,
                            layer.weight.view(),
                            lower[j - 1].delta.view_mut(),
                            rows,
                        );
                    }
                }
                SpatialKind::BatchNorm => {
                    let c = g.output[2];
                    let d = pixels(cur.delta.view_mut(), rows, c);
                    let m = rows * g.out_pixels();
                    let dx = (j > j0).then(|| pixels(lower[j - 1].delta.view_mut(), rows, c));
                    let xhat = &cur.xhat.as_slice().expect("standard layout")[..m * c];
                    crate::conv::norm_backward(
                        d.view(),
                        ArrayView2::from_shape((m, c), xhat).expect("whole pixels"),
                        layer.weight.as_slice().expect("contiguous"),
                        &cur.stats[1],
                        (
                            cur.grad_w.as_slice_mut().expect("contiguous"),
                            cur.grad_b.as_slice_mut().expect("contiguous"),
                        ),
                        dx,
                        train,
                    );
                }
                kind => {
                    if j > j0 {
                        crate::conv::pool_backward(
                            kind,
                            g,
                            cur.delta.slice(s![..rows, ..]),
                            &cur.argmax,
                            lower[j - 1].delta.view_mut(),
                            rows,
                        );
                    }
                }
            }
            if j > j0 {
                lower[j - 1].back_through_activation(&self.spatial[j - 1], rows, train);
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
        let mut ws = self.workspace(self.eval_rows(n), 0);
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
        assert_eq!(self.spatial.len(), dst.spatial.len(), "image layer count");
        for (s, d) in self.spatial.iter().zip(dst.spatial.iter_mut()) {
            d.weight.assign(&s.weight);
            d.bias.assign(&s.bias);
            d.running[0].assign(&s.running[0]);
            d.running[1].assign(&s.running[1]);
        }
        for (s, d) in self.layers.iter().zip(dst.layers.iter_mut()) {
            d.weight.assign(&s.weight);
            d.bias.assign(&s.bias);
        }
    }
}

/// Rows per parallel chunk of the element-wise passes: at least 32, and at least 8,192
/// values (an image layer's rows are pixels of a few channels).
fn par_rows(cols: usize) -> usize {
    (8192 / cols.max(1)).max(32)
}
/// Element-wise passes over fewer elements than this stay on the calling thread.
const PAR_MIN_ELEMS: usize = 16 * 1024;

/// The first `rows` images of a `[capacity, h·w·c]` buffer as one pixel per row,
/// `[rows·h·w, c]`.
fn pixels(buf: ArrayViewMut2<'_, f32>, rows: usize, channels: usize) -> ArrayViewMut2<'_, f32> {
    let n = rows * buf.ncols();
    let flat = buf.into_slice().expect("standard layout");
    ArrayViewMut2::from_shape((n / channels, channels), &mut flat[..n]).expect("whole pixels")
}

/// The training-time regularisers of one layer's output `a` into `p`: Gaussian noise of std
/// `sd`, then inverted dropout with probability `dropout` (its mask into `mask`), both drawn
/// from `rng` in that order.
fn perturb(
    (sd, dropout): (f32, f32),
    mut rng: whet_core::rng::Rng,
    a: ArrayView2<f32>,
    mut p: ArrayViewMut2<f32>,
    mask: Option<ArrayViewMut2<f32>>,
) {
    p.assign(&a);
    if sd > 0.0 {
        for v in p.iter_mut() {
            let e: f32 = StandardNormal.sample(&mut rng);
            *v += sd * e;
        }
    }
    if let Some(mut mask) = mask {
        let keep = 1.0 - dropout;
        let scale = 1.0 / keep;
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

/// [`Activation::bias_forward`] over fixed row chunks in parallel (rows are independent, so the
/// result does not depend on the thread count), after adding `part` (the second half of a cut
/// product, [`matmul_inner_halves`]) to `z` when there is one.
fn par_bias_forward(
    act: Activation,
    mut z: ArrayViewMut2<f32>,
    part: Option<ArrayView2<f32>>,
    bias: &[f32],
) {
    let chunk = |mut z: ArrayViewMut2<f32>, part: Option<ArrayView2<f32>>| {
        if let Some(part) = part {
            z += &part;
        }
        act.bias_forward(z, bias);
    };
    if z.len() < PAR_MIN_ELEMS || crate::par::serial() {
        return chunk(z, part);
    }
    let rows = par_rows(z.ncols());
    z.axis_chunks_iter_mut(Axis(0), rows)
        .into_par_iter()
        .enumerate()
        .for_each(|(i, z)| {
            let span = i * rows..i * rows + z.nrows();
            chunk(z, part.map(|p| p.slice_move(s![span, ..])));
        });
}

/// [`Activation::backward_in_place`] over fixed row chunks in parallel.
fn par_backward(act: Activation, mut g: ArrayViewMut2<f32>, a: ArrayView2<f32>) {
    if g.len() < PAR_MIN_ELEMS || crate::par::serial() {
        return act.backward_in_place(g, a);
    }
    let rows = par_rows(g.ncols());
    g.axis_chunks_iter_mut(Axis(0), rows)
        .into_par_iter()
        .zip(a.axis_chunks_iter(Axis(0), rows).into_par_iter())
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

/// Correct predictions in `logits` against targets `y`: [`Decision::label`] of each row against
/// the target row's label (regression: 0).
pub(crate) fn count_correct(
    decision: &Decision,
    logits: ArrayView2<f32>,
    y: ArrayView2<f32>,
) -> usize {
    let task = decision.task();
    if task == Task::Regression {
        return 0;
    }
    logits
        .rows()
        .into_iter()
        .zip(y.rows())
        .filter(|(z, t)| {
            // The true label, decoded from the target row (a 0/1 value or a one-hot row).
            let truth = match task {
                Task::Binary => usize::from(t[0] > 0.5),
                _ => argmax(t.iter().copied()),
            };
            // The predicted label: the one label rule (rows of a standard-layout batch are
            // contiguous; a copy only for a strided view).
            let label = match z.as_slice() {
                Some(row) => decision.label(row),
                None => decision.label(&z.to_vec()),
            };
            label == truth
        })
        .count()
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
    pub(crate) sp: Vec<SpatialWs>,
    act: Vec<Array2<f32>>,
    pert: Vec<Option<Array2<f32>>>,
    mask: Vec<Option<Array2<f32>>>,
    delta: Vec<Array2<f32>>,
    /// Weight gradients per layer, `[inputs, outputs]`.
    pub grad_w: Vec<Array2<f32>>,
    /// Bias gradients per layer, `[outputs]`.
    pub grad_b: Vec<Array1<f32>>,
    /// Layers whose weights are cut ([`Dense::weight_cut`]): the forward product over the
    /// second half of the inputs, `[rows, outputs]`, added to the first half's by the bias pass.
    part: Vec<Option<Array2<f32>>>,
}

/// The buffers of one image layer.
#[derive(Debug, Clone)]
pub(crate) struct SpatialWs {
    /// Outputs `[rows, h·w·c]` (after the activation).
    act: Array2<f32>,
    /// Outputs with noise and dropout (training).
    pert: Option<Array2<f32>>,
    /// The dropout mask.
    mask: Option<Array2<f32>>,
    /// `dL/dz` (before the activation), `[rows, h·w·c]`.
    delta: Array2<f32>,
    /// Convolutions: each group of images' weight gradient, `[groups, k·k·c_in·filters]`.
    partials: Array2<f32>,
    /// Pools: each output's input index within its image (the maximum's; unused by average
    /// pools, which share the code path).
    argmax: Vec<u32>,
    /// Convolutions: weight gradients.
    pub(crate) grad_w: Array2<f32>,
    /// Convolutions: bias gradients.
    pub(crate) grad_b: Array1<f32>,
    /// Batch normalisation: the normalised inputs `[rows, h·w·c]`.
    xhat: Array2<f32>,
    /// Batch normalisation: per channel the mean, `1 / sqrt(var + eps)` and the biased variance
    /// of the last forward pass (training: the batch's; evaluation: the running ones).
    pub(crate) stats: [Vec<f32>; 3],
}

impl SpatialWs {
    /// What the next layer reads: the perturbed outputs when training with noise or dropout.
    fn output(&self, rows: usize, train: bool) -> ArrayView2<'_, f32> {
        match (&self.pert, train) {
            (Some(p), true) => p.slice(s![..rows, ..]),
            _ => self.act.slice(s![..rows, ..]),
        }
    }

    /// Turns `delta` from the gradient of what the next layer read into the gradient before
    /// this layer's activation (through the dropout mask, then the activation).
    fn back_through_activation(&mut self, layer: &Spatial, rows: usize, train: bool) {
        let mut g = self.delta.slice_mut(s![..rows, ..]);
        if train && let Some(mask) = &self.mask {
            g *= &mask.slice(s![..rows, ..]);
        }
        if layer.has_weights() {
            let c = layer.geo.output[2];
            let n = rows * layer.geo.out_len();
            let a = &self.act.as_slice().expect("standard layout")[..n];
            let a = ArrayView2::from_shape((n / c, c), a).expect("whole pixels");
            par_backward(layer.activation, pixels(self.delta.view_mut(), rows, c), a);
        }
    }
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
