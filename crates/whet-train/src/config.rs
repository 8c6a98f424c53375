//! Config types: [`ModelConfig`] (YAML key `model`) and [`TrainConfig`] (YAML key `train`).
//! The optimizer configs live with the optimizer ([`crate::optim`]), the learning-rate schedules
//! with [`TrainConfig::lr_at`] ([`crate::schedule`]).
//!
//! ```yaml
//! model:
//!   task: classification
//!   hidden:
//!     - { dense: 256, activation: relu, noise: 0.1 }
//!     - { dense: 128, activation: relu, dropout: 0.2 }
//!   init: auto
//! train:
//!   optimizer: { adam: { lr: 0.001 } }
//!   batch_size: 128
//!   epochs: 15
//!   schedule: { cosine: { min_lr: 0.0 } }
//! ```

use crate::activation::Activation;
use crate::loss::LossKind;
use crate::optim::OptimizerConfig;
use crate::schedule::ScheduleConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use whet_core::{Issues, NonNegative, Positive, Probability};

/// What the network predicts; fixes the output activation and the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// One class out of several: softmax + cross-entropy; targets are one-hot rows.
    Classification,
    /// Two classes: one sigmoid output + binary cross-entropy; targets are one 0/1 column.
    Binary,
    /// Real-valued outputs: identity + mean squared error (with the 1/2 factor).
    Regression,
}

impl Task {
    /// The output activation and loss this task uses.
    pub fn default_output(self) -> (Activation, LossKind) {
        match self {
            Task::Classification => (Activation::Softmax, LossKind::CrossEntropy),
            Task::Binary => (Activation::Sigmoid, LossKind::BinaryCrossEntropy),
            Task::Regression => (Activation::Identity, LossKind::Mse),
        }
    }
}

/// Weight initialisation scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// He for the ReLU family, Xavier otherwise.
    #[default]
    Auto,
    /// He et al. (2015): normal with std `sqrt(2 / fan_in)`.
    He,
    /// Glorot & Bengio (2010): uniform in `±sqrt(6 / (fan_in + fan_out))`.
    Xavier,
}

/// One hidden dense layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HiddenConfig {
    /// Number of units (at least 1).
    pub dense: usize,
    /// Activation after the affine map. Default `relu`.
    #[serde(default = "default_activation")]
    pub activation: Activation,
    /// Standard deviation of Gaussian noise added to this layer's output during training (not at
    /// evaluation). Default 0 (off).
    #[serde(default = "zero")]
    pub noise: NonNegative,
    /// Inverted-dropout probability of this layer's output during training (must be < 1).
    /// Default 0 (off).
    #[serde(default = "zero_p")]
    pub dropout: Probability,
}

fn default_activation() -> Activation {
    Activation::Relu
}
fn zero() -> NonNegative {
    NonNegative::ZERO
}
fn zero_p() -> Probability {
    Probability::new(0.0).expect("0 is a probability")
}

/// Explicit output activation and loss; both must match the task when given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Output activation. Default: the task's (softmax / sigmoid / identity).
    #[serde(default)]
    pub activation: Option<Activation>,
    /// Loss. Default: the task's (cross_entropy / binary_cross_entropy / mse).
    #[serde(default)]
    pub loss: Option<LossKind>,
}

/// The network (YAML key `model`). Input and output sizes come from the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// What is predicted.
    pub task: Task,
    /// Hidden layers, input side first. Default: none (a linear/logistic model).
    #[serde(default)]
    pub hidden: Vec<HiddenConfig>,
    /// Optional explicit output activation/loss; a pair that does not match the task is an error.
    #[serde(default)]
    pub output: Option<OutputConfig>,
    /// Weight initialisation. Default `auto`.
    #[serde(default)]
    pub init: Init,
}

impl ModelConfig {
    /// Checks layer sizes, dropout < 1, and the output activation/loss against the task.
    pub fn validate(&self) -> Issues {
        let mut issues = Issues::new();
        for (i, h) in self.hidden.iter().enumerate() {
            issues.check(h.dense >= 1, format!("hidden[{i}].dense"), || {
                "expected at least 1 unit, found 0".into()
            });
            issues.check(
                h.dropout.get() < 1.0,
                format!("hidden[{i}].dropout"),
                || {
                    format!(
                        "expected a probability < 1 (1 drops every unit), found {}",
                        h.dropout
                    )
                },
            );
        }
        if let Err(m) = self.output_pair() {
            issues.push("output", m);
        }
        issues
    }

    /// The output activation and loss, checked against the task.
    ///
    /// # Errors
    /// A message naming the mismatch and the valid pair.
    pub fn output_pair(&self) -> Result<(Activation, LossKind), String> {
        let (act, loss) = self.task.default_output();
        if let Some(o) = &self.output {
            let a = o.activation.unwrap_or(act);
            let l = o.loss.unwrap_or(loss);
            if a != act || l != loss {
                return Err(format!(
                    "task `{}` trains with activation `{}` and loss `{}`, found activation `{}` \
                     and loss `{}`; change the task or drop `output`",
                    ser(&self.task),
                    ser(&act),
                    ser(&loss),
                    ser(&a),
                    ser(&l)
                ));
            }
        }
        Ok((act, loss))
    }
}

pub(crate) fn ser<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Batch size: a number of samples (1 = online learning) or `full` (the whole set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    /// This many samples per update (the last batch of an epoch may be smaller).
    Samples(usize),
    /// One update per epoch over all samples.
    Full,
}

impl BatchSize {
    /// The number of rows per batch for a data set of `n` samples.
    pub fn rows(self, n: usize) -> usize {
        match self {
            BatchSize::Samples(b) => b.min(n).max(1),
            BatchSize::Full => n.max(1),
        }
    }
}

impl Serialize for BatchSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BatchSize::Samples(b) => s.serialize_u64(*b as u64),
            BatchSize::Full => s.serialize_str("full"),
        }
    }
}

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = BatchSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a batch size >= 1 or the string `full`")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<BatchSize, E> {
                if v == 0 {
                    return Err(E::custom("expected a batch size >= 1 or `full`, found 0"));
                }
                Ok(BatchSize::Samples(v as usize))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<BatchSize, E> {
                if v < 1 {
                    return Err(E::custom(format!(
                        "expected a batch size >= 1 or `full`, found {v}"
                    )));
                }
                Ok(BatchSize::Samples(v as usize))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BatchSize, E> {
                if v == "full" {
                    Ok(BatchSize::Full)
                } else {
                    Err(E::custom(format!(
                        "expected a batch size >= 1 or `full`, found `{v}`"
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for BatchSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BatchSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "samples per batch (1 = online learning) or `full`",
            "oneOf": [ { "type": "integer", "minimum": 1 }, { "const": "full" } ]
        })
    }
}

/// Early stopping on the validation loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingConfig {
    /// Epochs without improvement before stopping. Default 5.
    #[serde(default = "five")]
    pub patience: usize,
    /// An improvement must lower the best validation loss by more than this. Default 0.
    #[serde(default = "zero")]
    pub min_delta: NonNegative,
}

fn five() -> usize {
    5
}

/// Divergence guard settings. NaN and infinite losses always stop the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DivergenceConfig {
    /// A batch loss above `factor` x the first epoch's mean loss stops the run. Default 1000.
    #[serde(default = "thousand")]
    pub factor: Positive,
}

impl Default for DivergenceConfig {
    fn default() -> Self {
        Self { factor: thousand() }
    }
}

fn thousand() -> Positive {
    Positive::new(1000.0).expect("valid")
}

/// Transfer learning: start from a checkpoint's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferConfig {
    /// The safetensors checkpoint to start from (relative paths are resolved by the CLI against
    /// the YAML file's folder).
    pub checkpoint: PathBuf,
    /// Layers (0-based, input side first, the output layer is the last) that get no updates.
    /// Default: none (fine-tune everything).
    #[serde(default)]
    pub freeze: Vec<usize>,
    /// Replace the output layer by a freshly initialised one sized for the new data. Default true.
    #[serde(default = "yes")]
    pub replace_output: bool,
}

fn yes() -> bool {
    true
}

/// The training run (YAML key `train`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The optimizer and its hyper-parameters.
    pub optimizer: OptimizerConfig,
    /// Samples per update or `full`. Default 32.
    #[serde(default = "batch32")]
    pub batch_size: BatchSize,
    /// Passes over the training set (>= 1). Default 10.
    #[serde(default = "ten")]
    pub epochs: usize,
    /// L2 weight decay (added as `weight_decay * w` to weight gradients, biases excluded).
    /// Default 0.
    #[serde(default = "zero")]
    pub weight_decay: NonNegative,
    /// Optional learning-rate schedule.
    #[serde(default)]
    pub schedule: Option<ScheduleConfig>,
    /// Optional early stopping on the validation loss (needs a validation set).
    #[serde(default)]
    pub early_stopping: Option<EarlyStoppingConfig>,
    /// Divergence guard. Default factor 1000.
    #[serde(default)]
    pub divergence: DivergenceConfig,
    /// Optional transfer learning from a checkpoint.
    #[serde(default)]
    pub transfer: Option<TransferConfig>,
}

fn batch32() -> BatchSize {
    BatchSize::Samples(32)
}
fn ten() -> usize {
    10
}

impl TrainConfig {
    /// A config with `optimizer` and every other field at its default.
    pub fn new(optimizer: OptimizerConfig) -> Self {
        Self {
            optimizer,
            batch_size: batch32(),
            epochs: ten(),
            weight_decay: zero(),
            schedule: None,
            early_stopping: None,
            divergence: DivergenceConfig::default(),
            transfer: None,
        }
    }

    /// Checks epochs >= 1, the optimizer, the schedule and the freeze list's duplicates.
    pub fn validate(&self) -> Issues {
        let mut issues = Issues::new();
        issues.check(self.epochs >= 1, "epochs", || {
            "expected at least 1, found 0".into()
        });
        issues.nest("optimizer", self.optimizer.validate());
        if let Some(ScheduleConfig::Step(s)) = &self.schedule {
            issues.check(s.every >= 1, "schedule.step.every", || {
                "expected at least 1 epoch, found 0".into()
            });
        }
        if let Some(t) = &self.transfer {
            let mut seen = t.freeze.clone();
            seen.sort_unstable();
            seen.dedup();
            issues.check(seen.len() == t.freeze.len(), "transfer.freeze", || {
                format!("layer indices listed twice: {:?}", t.freeze)
            });
        }
        issues
    }

    /// Resolves the transfer checkpoint path against `base` (the YAML file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(t) = &mut self.transfer
            && t.checkpoint.is_relative()
        {
            t.checkpoint = base.join(&t.checkpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatched_output_pair_is_an_issue() {
        let m = ModelConfig {
            task: Task::Classification,
            hidden: vec![],
            output: Some(OutputConfig {
                activation: Some(Activation::Sigmoid),
                loss: None,
            }),
            init: Init::Auto,
        };
        let issues = m.validate();
        assert_eq!(issues.len(), 1);
        assert!(issues.0[0].message.contains("softmax"), "{}", issues.0[0]);
    }

    #[test]
    fn batch_size_parses_number_or_full() {
        let b: BatchSize = serde_json::from_str("64").unwrap();
        assert_eq!(b, BatchSize::Samples(64));
        let b: BatchSize = serde_json::from_str("\"full\"").unwrap();
        assert_eq!(b, BatchSize::Full);
        assert!(serde_json::from_str::<BatchSize>("0").is_err());
        assert!(serde_json::from_str::<BatchSize>("\"half\"").is_err());
    }

    #[test]
    fn train_config_from_json_with_defaults() {
        let t: TrainConfig = serde_json::from_str(
            r#"{"optimizer": {"momentum": {"lr": 0.1}}, "schedule": {"step": {"every": 5}},
                "transfer": {"checkpoint": "a.safetensors", "freeze": [0]}}"#,
        )
        .unwrap();
        assert!(t.validate().is_empty());
        assert_eq!(t.epochs, 10);
        let OptimizerConfig::Momentum(m) = &t.optimizer else {
            panic!("momentum expected")
        };
        assert_eq!(m.momentum.get(), 0.9);
        let mut t2 = t.clone();
        t2.resolve_paths(Path::new("/base"));
        assert_eq!(
            t2.transfer.unwrap().checkpoint,
            PathBuf::from("/base/a.safetensors")
        );
        assert!(
            serde_json::from_str::<TrainConfig>(
                r#"{"optimizer": {"adam": {"lr": 0.1, "bta1": 0.9}}}"#
            )
            .is_err()
        );
    }
}
