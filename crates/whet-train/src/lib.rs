//! The whet trainer: a backpropagation multilayer perceptron on ndarray.
//!
//! - [`ModelConfig`] (YAML key `model`) builds an [`Mlp`] of [`Dense`] layers for a [`Task`]
//!   (classification: softmax + cross-entropy; binary: sigmoid + binary cross-entropy;
//!   regression: identity + MSE), see [`build_model`]; for images its `layers` may start with
//!   convolutions and pools ([`conv`]: [`ConvConfig`], [`PoolConfig`], im2col on the same GEMM
//!   kernel);
//! - [`TrainConfig`] (YAML key `train`) drives [`fit`], which pulls batches from a
//!   [`BatchSource`], reports through an [`Observer`] and returns a [`TrainReport`] with the
//!   per-epoch curves (or [`Error::Diverged`] carrying them);
//! - [`Decision`] turns logits into outputs and labels (the binary threshold of
//!   `model.threshold`, chosen by [`tune_threshold`] for `auto`); [`ClassWeights`] weight the
//!   loss per class;
//! - [`evaluate`] gives [`Metrics`] (through a [`Readout`]: the network's [`Decision`] for
//!   labels and the target's scale for values in the target's units: [`evaluate_readout`]);
//!   [`checkpoint::save`] / [`checkpoint::load`] write and read
//!   safetensors files, [`checkpoint::transfer`] starts a new model from one;
//! - [`onnx`] writes a network as an ONNX graph ([`onnx::append_network`]).
//!
//! The configs deserialise from the run file and are built in Rust with `new` / `Default` and
//! `with_*` setters ([`TrainConfig::new`], [`ModelConfig::classification`],
//! [`HiddenConfig::dense`], [`OptimizerConfig::adam`], …); both give the same values.
//!
//! Everything random comes from `whet_core::rng::stream(seed, path)`: `[3, layer]` weight
//! init (layers with weights, convolutions first), `[4, epoch]` shuffling,
//! `[5, epoch, batch, layer]` noise and dropout of dense layers, `[7, epoch, batch, layer]` of
//! image layers. Matrix products
//! are split into blocks fixed by their shapes ([`kernel`]), so the same seed gives the same
//! weights bit for bit with any number of rayon threads.
//!
//! ```
//! use whet_train::*;
//! use ndarray::array;
//! // The same as the YAML `model: { task: classification, hidden: [{ dense: 8, activation: tanh }] }`
//! // and `train: { optimizer: { adam: { lr: 0.05 } }, batch_size: 4, epochs: 200 }`.
//! let model = ModelConfig::classification()
//!     .with_hidden([HiddenConfig::dense(8).with_activation(Activation::Tanh)]);
//! let train = TrainConfig::new(OptimizerConfig::adam(0.05))
//!     .with_batch_size(4)
//!     .with_epochs(200);
//! let x = array![[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
//! let y = ArraySource::one_hot(&[0, 1, 1, 0], 2).unwrap();
//! let mut data = ArraySource::new(x, y).unwrap();
//! let mut net = build_model(&model, &train, None, 2, 2, 7).unwrap();
//! let report = fit(&mut net, &train, 7, &mut data, None, &mut NoObserver).unwrap();
//! assert_eq!(report.curves.len(), 200);
//! let eval = evaluate(&net, &mut data).unwrap();
//! assert_eq!(eval.accuracy(), Some(1.0));
//! ```

mod activation;
mod array_source;
pub mod checkpoint;
mod config;
pub mod conv;
mod decision;
mod error;
pub mod gradcheck;
pub mod kernel;
mod loss;
mod memory;
mod metrics;
mod mlp;
pub mod onnx;
mod optim;
mod par;
mod readout;
mod schedule;
mod train;

pub use activation::{Activation, LEAKY_SLOPE, sigmoid, softmax_in_place};
pub use array_source::ArraySource;
pub use config::{
    BatchSize, ClassWeightsConfig, DenseConfig, DivergenceConfig, EarlyStoppingConfig,
    FlattenConfig, HiddenConfig, Init, LayerConfig, MAX_BATCH_SIZE, MAX_EPOCHS, MAX_HIDDEN_LAYERS,
    MAX_UNITS, ModelConfig, OutputConfig, Task, TrainConfig, TransferConfig,
};
pub use conv::{BatchNormConfig, ConvConfig, Padding, PoolConfig, Spatial, SpatialKind};
pub use decision::{
    DEFAULT_THRESHOLD, Decision, ThresholdConfig, ThresholdCriterion, choose_threshold,
};
pub use error::{Diverged, Error, Result};
pub use kernel::Kernel;
pub use loss::{ClassWeights, LossKind};
pub use memory::{TrainingMemory, parameter_count};
pub use metrics::{
    ClassMetrics, Evaluation, Metrics, RegressionMetrics, binary_scores, class_metrics, evaluate,
    evaluate_readout, higher_is_better, metric_names, pr_curve, regression_values, roc_auc,
    roc_curve, tune_threshold,
};
pub use mlp::{Architecture, Dense, ImageLayerWeights, LayerSpec, Mlp, NoiseKey, Workspace};
pub use optim::{
    AdagradConfig, AdamConfig, MomentumConfig, Optimizer, OptimizerConfig, RmspropConfig, SgdConfig,
};
pub use readout::{Predictions, Readout};
pub use schedule::{CosineScheduleConfig, ScheduleConfig, StepScheduleConfig};
pub use train::{EpochRecord, NoObserver, Observer, TrainReport, fit, shuffle};
/// The batch-source contract, defined in `whet-core` so data crates need not depend on the
/// trainer; re-exported so `use whet_train::BatchSource` works.
pub use whet_core::batch::{BatchSource, SourceError};

/// Builds the model a run starts from: a fresh [`Mlp`] from `model`, or, when `train.transfer`
/// is set, the checkpoint's network with its output layer replaced and layers frozen (see
/// [`checkpoint::transfer`]). `input_dim` and `output_dim` come from the data
/// ([`BatchSource::input_dim`] / [`BatchSource::target_dim`]); `shape` is the images'
/// `[height, width, channels]` when the rows are images (channels last), which convolutions
/// and pools need.
///
/// # Errors
/// [`Error::Config`] for an invalid config, dimensions that do not fit the task, image layers
/// without images or a shape that does not hold `input_dim` values;
/// [`Error::Budget`] when the network does not fit in the memory budget; checkpoint errors when
/// transferring.
pub fn build_model(
    model: &ModelConfig,
    train: &TrainConfig,
    shape: Option<[usize; 3]>,
    input_dim: usize,
    output_dim: usize,
    seed: u64,
) -> Result<Mlp> {
    if let Some(s) = shape
        && s.iter().try_fold(1usize, |a, &b| a.checked_mul(b)) != Some(input_dim)
    {
        return Err(Error::Config(format!(
            "images of shape {s:?} (height, width, channels) do not hold {input_dim} inputs"
        )));
    }
    // The weights and the optimizer's state, before any is allocated (the batch buffers are
    // checked by `fit`, which knows the number of rows).
    TrainingMemory::estimate(model, train, shape, input_dim, output_dim, 1, 0).check(0)?;
    match (&train.transfer, shape) {
        (Some(t), _) => checkpoint::transfer(model, t, shape, input_dim, output_dim, seed),
        (None, Some(s)) => Mlp::for_images(model, s, output_dim, seed),
        (None, None) => Mlp::new(model, input_dim, output_dim, seed),
    }
}
