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
use crate::decision::{ThresholdConfig, ThresholdCriterion};
use crate::loss::LossKind;
use crate::optim::OptimizerConfig;
use crate::schedule::ScheduleConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use whet_core::{Issues, NonNegative, Positive, Probability};

/// Most epochs a run file may ask for (`train.epochs`), checked by [`TrainConfig::validate`].
pub const MAX_EPOCHS: usize = 1_000_000;
/// Most samples per batch (`train.batch_size`; `full` has no bound but the data's size).
pub const MAX_BATCH_SIZE: usize = 10_000_000;
/// Most units of one hidden layer (`model.hidden[i].dense`).
pub const MAX_UNITS: usize = 1_000_000;
/// Most hidden layers (`model.hidden`).
pub const MAX_HIDDEN_LAYERS: usize = 1_000;

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
pub(crate) fn zero() -> NonNegative {
    NonNegative::ZERO
}
pub(crate) fn zero_p() -> Probability {
    Probability::new(0.0).expect("0 is a probability")
}

impl HiddenConfig {
    /// A layer of `units` units with the defaults: `relu`, no noise, no dropout (as the YAML
    /// `{ dense: units }`).
    pub fn new(units: usize) -> Self {
        Self {
            dense: units,
            activation: default_activation(),
            noise: zero(),
            dropout: zero_p(),
        }
    }

    /// The same as [`HiddenConfig::new`], named after the YAML key: `HiddenConfig::dense(256)`.
    pub fn dense(units: usize) -> Self {
        Self::new(units)
    }

    /// Sets the activation after the affine map.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets the standard deviation of the training-time Gaussian noise on the layer's output.
    ///
    /// # Panics
    /// When `std` is negative or not finite.
    pub fn with_noise(mut self, std: f64) -> Self {
        self.noise = bounded("HiddenConfig::with_noise", std);
        self
    }

    /// Sets the training-time inverted-dropout probability of the layer's output (must be < 1
    /// to train; [`ModelConfig::validate`] checks it).
    ///
    /// # Panics
    /// When `p` is not in [0, 1].
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.dropout = bounded("HiddenConfig::with_dropout", p);
        self
    }
}

/// `v` as a range-checked config number (`Positive`, `NonNegative`, `Probability`), for the
/// `with_*` setters: a value out of range there is a bug in the calling code (values from users
/// are checked when the YAML is parsed).
///
/// # Panics
/// When `v` is out of range, naming `setter`.
pub(crate) fn bounded<T: TryFrom<f64, Error = String>>(setter: &str, v: f64) -> T {
    T::try_from(v).unwrap_or_else(|e| panic!("{setter}: {e}"))
}

/// Deserialises a config that is written either as a number (its main size: `max_pool: 2`,
/// `dense: 128`) or as a map of its fields (`F`, with `deny_unknown_fields`).
pub(crate) fn number_or_map<'de, D, F, T>(
    d: D,
    expecting: &'static str,
    from_number: fn(u64) -> T,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    F: Deserialize<'de> + Into<T>,
{
    struct V<F, T> {
        expecting: &'static str,
        from_number: fn(u64) -> T,
        fields: std::marker::PhantomData<F>,
    }
    impl<'de, F: Deserialize<'de> + Into<T>, T> serde::de::Visitor<'de> for V<F, T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
            Ok((self.from_number)(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
            u64::try_from(v)
                .map(self.from_number)
                .map_err(|_| E::custom(format!("expected {}, found {v}", self.expecting)))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            F::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Into::into)
        }
    }
    d.deserialize_any(V {
        expecting,
        from_number,
        fields: std::marker::PhantomData::<F>,
    })
}

/// A dense layer of `model.layers` (YAML `- dense: 128` or
/// `- dense: { units: 128, activation: tanh, dropout: 0.5 }`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DenseConfig {
    /// Number of units (at least 1).
    pub units: usize,
    /// Activation after the affine map. Default `relu`.
    pub activation: Activation,
    /// Standard deviation of Gaussian noise added to the output during training. Default 0.
    pub noise: NonNegative,
    /// Inverted-dropout probability of the output during training (< 1). Default 0.
    pub dropout: Probability,
}

/// The fields of the map form of [`DenseConfig`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DenseFields {
    units: usize,
    #[serde(default = "default_activation")]
    activation: Activation,
    #[serde(default = "zero")]
    noise: NonNegative,
    #[serde(default = "zero_p")]
    dropout: Probability,
}

impl From<DenseFields> for DenseConfig {
    fn from(f: DenseFields) -> Self {
        Self {
            units: f.units,
            activation: f.activation,
            noise: f.noise,
            dropout: f.dropout,
        }
    }
}

impl<'de> Deserialize<'de> for DenseConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_map::<D, DenseFields, _>(
            d,
            "a number of units such as `128`, or `{ units: 128, activation: tanh }`",
            |n| DenseConfig::from(HiddenConfig::new(usize::try_from(n).unwrap_or(usize::MAX))),
        )
    }
}

impl JsonSchema for DenseConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DenseConfig".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "a number of units, or the layer with its options",
            "oneOf": [
                { "type": "integer", "minimum": 1, "description": "units (relu, no noise, no dropout)" },
                {
                    "type": "object",
                    "description": "`{ units, activation, noise, dropout }`: the number of units, the activation (default relu), and the training-time noise std and dropout probability of the output (default 0)",
                    "additionalProperties": false,
                    "required": ["units"],
                    "properties": {
                        "units": { "type": "integer", "minimum": 1, "description": "number of units" },
                        "activation": { "type": "string", "enum": ["relu", "leaky_relu", "sigmoid", "tanh", "identity", "step", "softmax"], "description": "activation after the affine map; default relu" },
                        "noise": { "type": "number", "minimum": 0, "description": "std of the training-time Gaussian noise on the output; default 0" },
                        "dropout": { "type": "number", "minimum": 0, "maximum": 1, "description": "training-time dropout probability of the output; default 0" }
                    }
                }
            ]
        })
    }
}

impl From<HiddenConfig> for DenseConfig {
    fn from(h: HiddenConfig) -> Self {
        Self {
            units: h.dense,
            activation: h.activation,
            noise: h.noise,
            dropout: h.dropout,
        }
    }
}

impl From<&DenseConfig> for HiddenConfig {
    fn from(d: &DenseConfig) -> Self {
        Self {
            dense: d.units,
            activation: d.activation,
            noise: d.noise,
            dropout: d.dropout,
        }
    }
}

/// Marks where the image layers end and the dense ones begin (YAML `- flatten: {}`). Optional:
/// the first dense layer reads the last image layer's output flattened either way (channels
/// last: `[height, width, channels]` in row-major order).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlattenConfig {}

/// One layer of `model.layers`: the image layers first (convolutions and pools), then an
/// optional `flatten`, then the dense layers. The output layer is added from the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LayerConfig {
    /// A convolution: `- conv: { filters: 32, kernel: 5, padding: same }`.
    Conv(crate::conv::ConvConfig),
    /// Maximum over windows: `- max_pool: 2` or `- max_pool: { size: 3, stride: 2 }`.
    MaxPool(crate::conv::PoolConfig),
    /// Mean over windows: `- avg_pool: 2`.
    AvgPool(crate::conv::PoolConfig),
    /// Batch normalisation of each channel: `- batch_norm: {}` or
    /// `- batch_norm: { activation: relu }`.
    BatchNorm(crate::conv::BatchNormConfig),
    /// The end of the image layers: `- flatten: {}`.
    Flatten(FlattenConfig),
    /// A dense layer: `- dense: 128` or `- dense: { units: 128, activation: tanh }`.
    Dense(DenseConfig),
}

impl LayerConfig {
    /// The YAML key of the layer (`conv`, `max_pool`, …).
    pub fn key(&self) -> &'static str {
        match self {
            LayerConfig::Conv(_) => "conv",
            LayerConfig::MaxPool(_) => "max_pool",
            LayerConfig::AvgPool(_) => "avg_pool",
            LayerConfig::BatchNorm(_) => "batch_norm",
            LayerConfig::Flatten(_) => "flatten",
            LayerConfig::Dense(_) => "dense",
        }
    }

    /// True for the layers that read images (convolutions, pools, batch normalisation).
    pub fn is_image_layer(&self) -> bool {
        matches!(
            self,
            LayerConfig::Conv(_)
                | LayerConfig::MaxPool(_)
                | LayerConfig::AvgPool(_)
                | LayerConfig::BatchNorm(_)
        )
    }
}

/// Explicit output activation and loss; both must match the task when given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Output activation. Default: the task's (softmax / sigmoid / identity).
    #[serde(default)]
    pub activation: Option<Activation>,
    /// Loss. Default: the task's (cross_entropy / binary_cross_entropy / mse).
    #[serde(default)]
    pub loss: Option<LossKind>,
}

impl OutputConfig {
    /// Sets the output activation.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = Some(activation);
        self
    }

    /// Sets the loss.
    pub fn with_loss(mut self, loss: LossKind) -> Self {
        self.loss = Some(loss);
        self
    }
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
    /// The layers as a list that may start with image layers (instead of `hidden`):
    /// convolutions and pools, an optional `flatten`, then dense layers, input side first.
    /// Image layers need image data. Default: none (`hidden` decides).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerConfig>,
    /// Optional explicit output activation/loss; a pair that does not match the task is an error.
    #[serde(default)]
    pub output: Option<OutputConfig>,
    /// Weight initialisation. Default `auto`.
    #[serde(default)]
    pub init: Init,
    /// Binary tasks: the positive-class probability above which a sample is labelled positive
    /// (strictly between 0 and 1), or `auto`: chosen after training on the validation split by
    /// `threshold_criterion` (the run then needs a validation split). Default 0.5. The
    /// threshold decides every label: test metrics, the confusion matrix, predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<ThresholdConfig>,
    /// What `threshold: auto` maximises on the validation split: `balanced_accuracy` (the
    /// default) or `f1` (the positive class's F1). Youden's J picks the same threshold as
    /// balanced accuracy. Only with `threshold: auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_criterion: Option<ThresholdCriterion>,
}

impl ModelConfig {
    /// A model for `task` with the defaults: no hidden layers (a linear or logistic model), the
    /// task's output activation and loss, `auto` initialisation (as the YAML `{ task: … }`).
    pub fn new(task: Task) -> Self {
        Self {
            task,
            hidden: Vec::new(),
            layers: Vec::new(),
            output: None,
            init: Init::default(),
            threshold: None,
            threshold_criterion: None,
        }
    }

    /// [`ModelConfig::new`] for [`Task::Classification`].
    pub fn classification() -> Self {
        Self::new(Task::Classification)
    }

    /// [`ModelConfig::new`] for [`Task::Binary`].
    pub fn binary() -> Self {
        Self::new(Task::Binary)
    }

    /// [`ModelConfig::new`] for [`Task::Regression`].
    pub fn regression() -> Self {
        Self::new(Task::Regression)
    }

    /// Sets the hidden layers, input side first.
    pub fn with_hidden(mut self, hidden: impl IntoIterator<Item = HiddenConfig>) -> Self {
        self.hidden = hidden.into_iter().collect();
        self
    }

    /// Sets the layers as a list that may start with convolutions and pools (instead of
    /// [`ModelConfig::with_hidden`]).
    ///
    /// ```
    /// use whet_train::*;
    /// // The YAML `layers: [{ conv: { filters: 8, kernel: 5, padding: same } }, { max_pool: 2 },
    /// // { dense: 32 }]`, for 28×28 single-channel images and 10 classes.
    /// let model = ModelConfig::classification().with_layers([
    ///     LayerConfig::Conv(ConvConfig::new(8, 5).with_padding(Padding::Same)),
    ///     LayerConfig::MaxPool(PoolConfig::new(2)),
    ///     LayerConfig::Dense(HiddenConfig::dense(32).into()),
    /// ]);
    /// let train = TrainConfig::new(OptimizerConfig::adam(0.001));
    /// let net = build_model(&model, &train, Some([28, 28, 1]), 784, 10, 7).unwrap();
    /// assert_eq!(net.spatial()[1].geometry().output, [14, 14, 8]);
    /// assert_eq!(net.layers()[0].inputs(), 14 * 14 * 8);
    /// ```
    pub fn with_layers(mut self, layers: impl IntoIterator<Item = LayerConfig>) -> Self {
        self.layers = layers.into_iter().collect();
        self
    }

    /// The hidden dense layers: `hidden`, or the dense entries of `layers`.
    pub fn dense_layers(&self) -> Vec<HiddenConfig> {
        if self.layers.is_empty() {
            self.hidden.clone()
        } else {
            self.layers
                .iter()
                .filter_map(|l| match l {
                    LayerConfig::Dense(d) => Some(HiddenConfig::from(d)),
                    _ => None,
                })
                .collect()
        }
    }

    /// True when `layers` has convolutions or pools (the network then needs images).
    pub fn has_image_layers(&self) -> bool {
        self.layers.iter().any(LayerConfig::is_image_layer)
    }

    /// Sets an explicit output activation and loss (they must match the task).
    pub fn with_output(mut self, output: OutputConfig) -> Self {
        self.output = Some(output);
        self
    }

    /// Sets the weight initialisation.
    pub fn with_init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// Sets the binary threshold: a fixed probability or `auto`.
    ///
    /// # Panics
    /// When a fixed threshold is not strictly between 0 and 1.
    pub fn with_threshold(mut self, threshold: ThresholdConfig) -> Self {
        if let ThresholdConfig::Fixed(t) = threshold {
            assert!(
                t > 0.0 && t < 1.0,
                "ModelConfig::with_threshold: expected a probability strictly between 0 and 1, found {t}"
            );
        }
        self.threshold = Some(threshold);
        self
    }

    /// Sets what `threshold: auto` maximises on the validation split.
    pub fn with_threshold_criterion(mut self, criterion: ThresholdCriterion) -> Self {
        self.threshold_criterion = Some(criterion);
        self
    }

    /// The criterion `threshold: auto` uses: the one given, or balanced accuracy. `None` when
    /// the threshold is not `auto`.
    pub fn auto_threshold(&self) -> Option<ThresholdCriterion> {
        (self.threshold == Some(ThresholdConfig::Auto))
            .then(|| self.threshold_criterion.unwrap_or_default())
    }

    /// Checks layer sizes (1 to [`MAX_UNITS`], at most [`MAX_HIDDEN_LAYERS`] layers), dropout
    /// < 1, and the output activation/loss against the task.
    pub fn validate(&self) -> Issues {
        let mut issues = Issues::new();
        self.validate_layers(&mut issues);
        issues.check(self.hidden.len() <= MAX_HIDDEN_LAYERS, "hidden", || {
            format!(
                "expected at most {MAX_HIDDEN_LAYERS} hidden layers, found {}",
                self.hidden.len()
            )
        });
        for (i, h) in self.hidden.iter().enumerate() {
            issues.check(
                (1..=MAX_UNITS).contains(&h.dense),
                format!("hidden[{i}].dense"),
                || format!("expected 1 to {MAX_UNITS} units, found {}", h.dense),
            );
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
        if self.threshold.is_some() && self.task != Task::Binary {
            issues.push(
                "threshold",
                format!(
                    "a threshold decides between the two classes of a `binary` task; task `{}` \
                     labels by {}: remove `threshold`",
                    ser(&self.task),
                    if self.task == Task::Regression {
                        "no class (it predicts values)"
                    } else {
                        "the most probable class"
                    }
                ),
            );
        }
        if self.threshold_criterion.is_some() && self.threshold != Some(ThresholdConfig::Auto) {
            issues.push(
                "threshold_criterion",
                "the criterion chooses the threshold of `threshold: auto`; set `threshold: auto` \
                 or remove `threshold_criterion`",
            );
        }
        issues
    }

    /// The checks of `layers`: not with `hidden`, image layers before `flatten` and the dense
    /// layers, each layer's own ranges.
    fn validate_layers(&self, issues: &mut Issues) {
        if self.layers.is_empty() {
            return;
        }
        if !self.hidden.is_empty() {
            issues.push(
                "layers",
                "give the layers either as `hidden` (dense layers) or as `layers`, not both",
            );
        }
        issues.check(self.layers.len() <= MAX_HIDDEN_LAYERS, "layers", || {
            format!(
                "expected at most {MAX_HIDDEN_LAYERS} layers, found {}",
                self.layers.len()
            )
        });
        let mut flat: Option<&str> = None;
        let mut images = 0usize;
        for (i, layer) in self.layers.iter().enumerate() {
            let key = format!("layers[{i}].{}", layer.key());
            if layer.is_image_layer() {
                images += 1;
                if let Some(before) = flat {
                    issues.push(
                        format!("layers[{i}]"),
                        format!(
                            "`{}` comes after `{before}`: the image layers (conv, max_pool, \
                             avg_pool, batch_norm) come first, then `flatten` (optional), then the \
                             dense layers",
                            layer.key()
                        ),
                    );
                }
            }
            match layer {
                LayerConfig::Conv(c) => issues.nest(&key, c.validate()),
                LayerConfig::BatchNorm(b) => issues.nest(&key, b.validate()),
                LayerConfig::MaxPool(p) | LayerConfig::AvgPool(p) => {
                    issues.nest(&key, p.validate());
                }
                LayerConfig::Flatten(_) => {
                    if flat.is_some() || images == 0 {
                        issues.push(
                            format!("layers[{i}]"),
                            "`flatten` ends the image layers: it comes once, after a conv or \
                             pool and before the dense layers",
                        );
                    }
                    flat = flat.or(Some("flatten"));
                }
                LayerConfig::Dense(d) => {
                    flat = Some("dense");
                    issues.check(
                        (1..=MAX_UNITS).contains(&d.units),
                        format!("{key}.units"),
                        || format!("expected 1 to {MAX_UNITS} units, found {}", d.units),
                    );
                    issues.check(d.dropout.get() < 1.0, format!("{key}.dropout"), || {
                        format!(
                            "expected a probability < 1 (1 drops every unit), found {}",
                            d.dropout
                        )
                    });
                }
            }
        }
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

/// Early stopping on a validation metric (the loss by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingConfig {
    /// Epochs without improvement before stopping. Default 5.
    #[serde(default = "five")]
    pub patience: usize,
    /// An improvement must beat the best validation value by more than this (in the metric's
    /// units: a fraction for accuracies). Default 0.
    #[serde(default = "zero")]
    pub min_delta: NonNegative,
    /// Never stop before this many epochs, however the validation metric moves (on a small
    /// validation split, early epochs are noisy and one unlucky run would otherwise stop at epoch
    /// 3 of 30). The best epoch is still chosen among all epochs. Default 0.
    #[serde(default)]
    pub min_epochs: usize,
    /// The validation metric that decides: `loss` (the default), or any metric of the model's
    /// task (`accuracy`, `balanced_accuracy`, `f1_macro`, `roc_auc`, `mse`, `mae`, `r2`…);
    /// higher is better for all but `loss`, `mse` and `mae`. Choose the metric the study is
    /// judged on when the loss and the metric disagree (a loss that rises while accuracy
    /// still improves).
    #[serde(default = "loss_metric")]
    pub metric: String,
}

fn five() -> usize {
    5
}

fn loss_metric() -> String {
    "loss".into()
}

impl Default for EarlyStoppingConfig {
    /// Patience 5, no minimum improvement, no minimum epochs, on the loss (as the YAML `{}`).
    fn default() -> Self {
        Self {
            patience: five(),
            min_delta: zero(),
            min_epochs: 0,
            metric: loss_metric(),
        }
    }
}

impl EarlyStoppingConfig {
    /// Sets the number of epochs without improvement before stopping.
    pub fn with_patience(mut self, epochs: usize) -> Self {
        self.patience = epochs;
        self
    }

    /// Sets how much an epoch must improve on the best validation value to count.
    ///
    /// # Panics
    /// When `delta` is negative or not finite.
    pub fn with_min_delta(mut self, delta: f64) -> Self {
        self.min_delta = bounded("EarlyStoppingConfig::with_min_delta", delta);
        self
    }

    /// Sets the number of epochs that always run before early stopping may end training.
    pub fn with_min_epochs(mut self, epochs: usize) -> Self {
        self.min_epochs = epochs;
        self
    }

    /// Sets the validation metric that decides (a name of [`crate::metric_names`]).
    pub fn with_metric(mut self, metric: impl Into<String>) -> Self {
        self.metric = metric.into();
        self
    }

    /// Checks `metric` against the metrics a model of `task` reports: issues at key `metric`.
    pub fn check_metric(&self, task: Task) -> Issues {
        let mut issues = Issues::new();
        let names: Vec<&str> = crate::metric_names(task)
            .iter()
            .copied()
            .filter(|m| *m != "majority_baseline")
            .collect();
        if !names.contains(&self.metric.as_str()) {
            let hint = whet_core::spec::closest(&self.metric, names.iter().copied())
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_default();
            issues.push(
                "metric",
                format!(
                    "unknown metric `{}` for a {} model: expected one of {}{hint}",
                    self.metric,
                    format!("{task:?}").to_lowercase(),
                    names.join(", ")
                ),
            );
        }
        issues
    }
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
    /// Factor 1000 (as the YAML `{}`).
    fn default() -> Self {
        Self { factor: thousand() }
    }
}

impl DivergenceConfig {
    /// Sets the explosion factor: a batch loss above `factor` x the reference stops the run.
    ///
    /// # Panics
    /// When `factor` is not a finite number > 0.
    pub fn with_factor(mut self, factor: f64) -> Self {
        self.factor = bounded("DivergenceConfig::with_factor", factor);
        self
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

impl TransferConfig {
    /// Start from `checkpoint`, fine-tune every layer, replace the output layer (as the YAML
    /// `{ checkpoint: … }`).
    pub fn new(checkpoint: impl Into<PathBuf>) -> Self {
        Self {
            checkpoint: checkpoint.into(),
            freeze: Vec::new(),
            replace_output: yes(),
        }
    }

    /// Sets the layers (0-based, input side first) that get no updates.
    pub fn with_freeze(mut self, layers: impl IntoIterator<Item = usize>) -> Self {
        self.freeze = layers.into_iter().collect();
        self
    }

    /// Sets whether the output layer is replaced by a fresh one sized for the new data.
    pub fn with_replace_output(mut self, replace: bool) -> Self {
        self.replace_output = replace;
        self
    }
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
    /// Optional early stopping on a validation metric (needs a validation set).
    #[serde(default)]
    pub early_stopping: Option<EarlyStoppingConfig>,
    /// Divergence guard. Default factor 1000.
    #[serde(default)]
    pub divergence: DivergenceConfig,
    /// Optional transfer learning from a checkpoint.
    #[serde(default)]
    pub transfer: Option<TransferConfig>,
    /// Classification and binary tasks: per-class loss weights, `balanced` (`n_samples /
    /// (n_classes × count_c)` on the training split, as scikit-learn) or `{ label: weight }`
    /// (finite weights > 0; labels not listed weigh 1). Default: none (every sample weighs 1).
    /// The training and validation `loss` (curves, early stopping and the `loss` metric) are
    /// then the weighted loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<ClassWeightsConfig>,
}

/// `train.class_weights`: `balanced`, or a weight per class label. Resolved into index-based
/// [`crate::ClassWeights`] by whoever knows the class names (`whet`).
#[derive(Debug, Clone, PartialEq)]
pub enum ClassWeightsConfig {
    /// `n_samples / (n_classes × count_c)` from the training split's class counts.
    Balanced,
    /// Weights by class label (each a finite number > 0); a label not listed weighs 1.
    Labels(BTreeMap<String, Positive>),
}

const CLASS_WEIGHTS_EXPECTED: &str =
    "`balanced` or a map from class label to weight (e.g. `{ \"yes\": 3.0 }`)";

impl Serialize for ClassWeightsConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ClassWeightsConfig::Balanced => s.serialize_str("balanced"),
            ClassWeightsConfig::Labels(m) => m.serialize(s),
        }
    }
}

/// A class label as a map key: YAML reads `1:` or `true:` as a number or a boolean.
struct LabelKey(String);

impl<'de> Deserialize<'de> for LabelKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = LabelKey;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a class label")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LabelKey, E> {
                Ok(LabelKey(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<LabelKey, E> {
                Ok(LabelKey(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<LabelKey, E> {
                Ok(LabelKey(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<LabelKey, E> {
                Ok(LabelKey(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<LabelKey, E> {
                Ok(LabelKey(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for ClassWeightsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ClassWeightsConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(CLASS_WEIGHTS_EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ClassWeightsConfig, E> {
                if v == "balanced" {
                    Ok(ClassWeightsConfig::Balanced)
                } else {
                    Err(E::custom(format!(
                        "expected {CLASS_WEIGHTS_EXPECTED}, found `{v}`"
                    )))
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ClassWeightsConfig, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(LabelKey(k)) = map.next_key()? {
                    let w: Positive = map.next_value()?;
                    out.insert(k, w);
                }
                if out.is_empty() {
                    return Err(serde::de::Error::custom(format!(
                        "expected {CLASS_WEIGHTS_EXPECTED}, found an empty map"
                    )));
                }
                Ok(ClassWeightsConfig::Labels(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ClassWeightsConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ClassWeightsConfig".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`balanced` (n_samples / (n_classes × count_c) on the training split) or a weight (finite, > 0) per class label",
            "oneOf": [
                { "const": "balanced" },
                {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": { "type": "number", "exclusiveMinimum": 0.0 }
                }
            ]
        })
    }
}

fn batch32() -> BatchSize {
    BatchSize::Samples(32)
}
fn ten() -> usize {
    10
}

impl TrainConfig {
    /// A config with `optimizer` and every other field at its default (as the YAML
    /// `{ optimizer: … }`): batches of 32, 10 epochs, no weight decay, schedule, early stopping
    /// or transfer, divergence factor 1000.
    ///
    /// # Example
    /// ```
    /// use whet_train::{EarlyStoppingConfig, OptimizerConfig, ScheduleConfig, TrainConfig};
    /// let train = TrainConfig::new(OptimizerConfig::adam(0.001))
    ///     .with_epochs(30)
    ///     .with_batch_size(64)
    ///     .with_schedule(ScheduleConfig::cosine())
    ///     .with_early_stopping(EarlyStoppingConfig::default().with_patience(3));
    /// assert!(train.validate().is_empty());
    /// assert_eq!(train.lr_at(0), 0.001);
    /// // The same config as the YAML (here JSON) a run file would hold:
    /// let parsed: TrainConfig = serde_json::from_str(
    ///     r#"{"optimizer": {"adam": {"lr": 0.001}}, "epochs": 30, "batch_size": 64,
    ///         "schedule": {"cosine": {}}, "early_stopping": {"patience": 3}}"#,
    /// )?;
    /// assert_eq!(train, parsed);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
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
            class_weights: None,
        }
    }

    /// Sets the optimizer.
    pub fn with_optimizer(mut self, optimizer: OptimizerConfig) -> Self {
        self.optimizer = optimizer;
        self
    }

    /// Sets the number of samples per update (1 = online learning).
    ///
    /// # Panics
    /// When `samples` is 0.
    pub fn with_batch_size(mut self, samples: usize) -> Self {
        assert!(
            samples >= 1,
            "TrainConfig::with_batch_size: expected at least 1, found 0"
        );
        self.batch_size = BatchSize::Samples(samples);
        self
    }

    /// One update per epoch over the whole training set (`batch_size: full`).
    pub fn with_full_batch(mut self) -> Self {
        self.batch_size = BatchSize::Full;
        self
    }

    /// Sets the number of passes over the training set.
    pub fn with_epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// Sets the L2 weight decay (biases excluded).
    ///
    /// # Panics
    /// When `decay` is negative or not finite.
    pub fn with_weight_decay(mut self, decay: f64) -> Self {
        self.weight_decay = bounded("TrainConfig::with_weight_decay", decay);
        self
    }

    /// Sets the learning-rate schedule.
    pub fn with_schedule(mut self, schedule: ScheduleConfig) -> Self {
        self.schedule = Some(schedule);
        self
    }

    /// Turns on early stopping (on the validation loss unless the config names another metric;
    /// the run then needs a validation set).
    pub fn with_early_stopping(mut self, early_stopping: EarlyStoppingConfig) -> Self {
        self.early_stopping = Some(early_stopping);
        self
    }

    /// Sets the divergence guard.
    pub fn with_divergence(mut self, divergence: DivergenceConfig) -> Self {
        self.divergence = divergence;
        self
    }

    /// Starts from a checkpoint (see [`crate::checkpoint::transfer`]).
    pub fn with_transfer(mut self, transfer: TransferConfig) -> Self {
        self.transfer = Some(transfer);
        self
    }

    /// Sets the per-class loss weights (`balanced` or by label).
    pub fn with_class_weights(mut self, weights: ClassWeightsConfig) -> Self {
        self.class_weights = Some(weights);
        self
    }

    /// Checks 1 <= epochs <= [`MAX_EPOCHS`], batch size <= [`MAX_BATCH_SIZE`], the optimizer,
    /// the schedule and the freeze list's duplicates.
    pub fn validate(&self) -> Issues {
        let mut issues = Issues::new();
        issues.check((1..=MAX_EPOCHS).contains(&self.epochs), "epochs", || {
            format!("expected 1 to {MAX_EPOCHS} epochs, found {}", self.epochs)
        });
        if let BatchSize::Samples(b) = self.batch_size {
            issues.check(b <= MAX_BATCH_SIZE, "batch_size", || {
                format!(
                    "expected at most {MAX_BATCH_SIZE} samples per batch (or `full`), found {b}"
                )
            });
        }
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
            layers: vec![],
            output: Some(OutputConfig {
                activation: Some(Activation::Sigmoid),
                loss: None,
            }),
            init: Init::Auto,
            threshold: None,
            threshold_criterion: None,
        };
        let issues = m.validate();
        assert_eq!(issues.len(), 1);
        assert!(issues.0[0].message.contains("softmax"), "{}", issues.0[0]);
    }

    fn parse<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    // The constructors and `Default`s equal what serde gives for the minimal input, so the Rust
    // API and the YAML cannot drift apart.

    #[test]
    fn hidden_new_equals_serde_minimal() {
        assert_eq!(HiddenConfig::new(8), parse(r#"{"dense": 8}"#));
        assert_eq!(HiddenConfig::dense(8), HiddenConfig::new(8));
        assert_eq!(
            HiddenConfig::dense(8)
                .with_activation(Activation::Tanh)
                .with_noise(0.1)
                .with_dropout(0.2),
            parse(r#"{"dense": 8, "activation": "tanh", "noise": 0.1, "dropout": 0.2}"#)
        );
    }

    #[test]
    fn image_layers_new_equal_serde_minimal() {
        use crate::conv::{ConvConfig, Padding, PoolConfig};
        assert_eq!(
            ConvConfig::new(8, 3),
            parse(r#"{"filters": 8, "kernel": 3}"#)
        );
        assert_eq!(
            ConvConfig::new(8, 3)
                .with_stride(2)
                .with_padding(Padding::Same)
                .with_activation(Activation::Tanh)
                .with_noise(0.1)
                .with_dropout(0.2),
            parse(
                r#"{"filters": 8, "kernel": 3, "stride": 2, "padding": "same",
                    "activation": "tanh", "noise": 0.1, "dropout": 0.2}"#
            )
        );
        assert_eq!(PoolConfig::new(2), parse("2"));
        assert_eq!(PoolConfig::new(2), parse(r#"{"size": 2}"#));
        assert_eq!(
            PoolConfig::new(3).with_stride(2),
            parse(r#"{"size": 3, "stride": 2}"#)
        );
        assert_eq!(DenseConfig::from(HiddenConfig::new(8)), parse("8"));
        assert_eq!(
            DenseConfig::from(HiddenConfig::new(8).with_activation(Activation::Tanh)),
            parse(r#"{"units": 8, "activation": "tanh"}"#)
        );
        assert_eq!(FlattenConfig::default(), parse("{}"));
        assert_eq!(crate::conv::BatchNormConfig::default(), parse("{}"));
        assert_eq!(
            crate::conv::BatchNormConfig::default().with_activation(Activation::Relu),
            parse(r#"{"activation": "relu"}"#)
        );
        // A negative number is refused with what is expected.
        let e = serde_json::from_str::<PoolConfig>("-2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a window side such as `2`"), "{e}");
    }

    #[test]
    fn output_default_equals_serde_minimal() {
        assert_eq!(OutputConfig::default(), parse("{}"));
        assert_eq!(
            OutputConfig::default()
                .with_activation(Activation::Softmax)
                .with_loss(LossKind::CrossEntropy),
            parse(r#"{"activation": "softmax", "loss": "cross_entropy"}"#)
        );
    }

    #[test]
    fn model_new_equals_serde_minimal() {
        assert_eq!(
            ModelConfig::classification(),
            parse(r#"{"task": "classification"}"#)
        );
        assert_eq!(ModelConfig::binary(), parse(r#"{"task": "binary"}"#));
        assert_eq!(
            ModelConfig::regression(),
            parse(r#"{"task": "regression"}"#)
        );
        assert_eq!(
            ModelConfig::classification()
                .with_hidden([HiddenConfig::dense(4)])
                .with_output(OutputConfig::default())
                .with_init(Init::He),
            parse(
                r#"{"task": "classification", "hidden": [{"dense": 4}], "output": {},
                    "init": "he"}"#
            )
        );
    }

    #[test]
    fn threshold_setters_equal_serde_and_are_checked_against_the_task() {
        assert_eq!(
            ModelConfig::binary()
                .with_threshold(ThresholdConfig::Auto)
                .with_threshold_criterion(ThresholdCriterion::F1),
            parse(r#"{"task": "binary", "threshold": "auto", "threshold_criterion": "f1"}"#)
        );
        let auto: ModelConfig = parse(r#"{"task": "binary", "threshold": "auto"}"#);
        assert_eq!(
            auto.auto_threshold(),
            Some(ThresholdCriterion::BalancedAccuracy)
        );
        assert!(auto.validate().is_empty());
        let fixed = ModelConfig::binary().with_threshold(ThresholdConfig::Fixed(0.3));
        assert_eq!(fixed.auto_threshold(), None);
        let wrong = ModelConfig::classification().with_threshold(ThresholdConfig::Fixed(0.3));
        let issues = wrong.validate();
        assert_eq!(issues.0[0].path, "threshold");
        assert!(issues.0[0].message.contains("binary"), "{}", issues.0[0]);
        let stray = fixed.with_threshold_criterion(ThresholdCriterion::F1);
        assert_eq!(stray.validate().0[0].path, "threshold_criterion");
    }

    #[test]
    fn class_weights_parse_balanced_or_a_label_map() {
        let t: TrainConfig =
            parse(r#"{"optimizer": {"sgd": {"lr": 0.1}}, "class_weights": "balanced"}"#);
        assert_eq!(t.class_weights, Some(ClassWeightsConfig::Balanced));
        assert_eq!(
            TrainConfig::new(OptimizerConfig::sgd(0.1))
                .with_class_weights(ClassWeightsConfig::Balanced),
            t
        );
        let m: ClassWeightsConfig = parse(r#"{"yes": 3, "no": 0.5}"#);
        let ClassWeightsConfig::Labels(m) = m else {
            panic!("a map")
        };
        assert_eq!(m["yes"].get(), 3.0);
        for (bad, says) in [
            (r#""equal""#, "`balanced` or a map"),
            (r#"{}"#, "empty map"),
            (r#"{"yes": -1}"#, "finite number > 0"),
            (r#"{"yes": 0}"#, "finite number > 0"),
            ("[1, 2]", "`balanced` or a map"),
        ] {
            let e = serde_json::from_str::<ClassWeightsConfig>(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn early_stopping_default_equals_serde_minimal() {
        assert_eq!(EarlyStoppingConfig::default(), parse("{}"));
        assert_eq!(
            EarlyStoppingConfig::default()
                .with_patience(2)
                .with_min_delta(0.01),
            parse(r#"{"patience": 2, "min_delta": 0.01}"#)
        );
    }

    #[test]
    fn divergence_default_equals_serde_minimal() {
        assert_eq!(DivergenceConfig::default(), parse("{}"));
        assert_eq!(
            DivergenceConfig::default().with_factor(10.0),
            parse(r#"{"factor": 10}"#)
        );
    }

    #[test]
    fn transfer_new_equals_serde_minimal() {
        assert_eq!(
            TransferConfig::new("a.safetensors"),
            parse(r#"{"checkpoint": "a.safetensors"}"#)
        );
        assert_eq!(
            TransferConfig::new("a.safetensors")
                .with_freeze([0, 1])
                .with_replace_output(false),
            parse(r#"{"checkpoint": "a.safetensors", "freeze": [0, 1], "replace_output": false}"#)
        );
    }

    #[test]
    fn train_new_equals_serde_minimal() {
        let opt = OptimizerConfig::sgd(0.1);
        assert_eq!(
            TrainConfig::new(opt.clone()),
            parse(r#"{"optimizer": {"sgd": {"lr": 0.1}}}"#)
        );
        assert_eq!(
            TrainConfig::new(opt)
                .with_optimizer(OptimizerConfig::adam(0.01))
                .with_batch_size(8)
                .with_epochs(3)
                .with_weight_decay(0.001)
                .with_schedule(ScheduleConfig::step(2))
                .with_early_stopping(EarlyStoppingConfig::default())
                .with_divergence(DivergenceConfig::default().with_factor(50.0))
                .with_transfer(TransferConfig::new("m.safetensors")),
            parse(
                r#"{"optimizer": {"adam": {"lr": 0.01}}, "batch_size": 8, "epochs": 3,
                    "weight_decay": 0.001, "schedule": {"step": {"every": 2}},
                    "early_stopping": {}, "divergence": {"factor": 50},
                    "transfer": {"checkpoint": "m.safetensors"}}"#
            )
        );
        assert_eq!(
            TrainConfig::new(OptimizerConfig::sgd(0.1))
                .with_full_batch()
                .batch_size,
            BatchSize::Full
        );
    }

    #[test]
    #[should_panic(expected = "HiddenConfig::with_dropout: expected a probability in [0, 1]")]
    fn out_of_range_setter_panics_with_its_name() {
        let _ = HiddenConfig::dense(4).with_dropout(1.5);
    }

    #[test]
    fn counts_are_bounded() {
        let t = TrainConfig::new(OptimizerConfig::sgd(0.1))
            .with_epochs(usize::MAX)
            .with_batch_size(MAX_BATCH_SIZE + 1);
        let paths: Vec<String> = t.validate().iter().map(|i| i.path.clone()).collect();
        assert_eq!(paths, ["epochs", "batch_size"]);
        let ok = TrainConfig::new(OptimizerConfig::sgd(0.1))
            .with_epochs(MAX_EPOCHS)
            .with_batch_size(MAX_BATCH_SIZE);
        assert!(ok.validate().is_empty());
        let m = ModelConfig::classification().with_hidden([
            HiddenConfig::dense(usize::MAX),
            HiddenConfig::dense(MAX_UNITS),
        ]);
        let issues = m.validate();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues.0[0].path, "hidden[0].dense");
        let deep = ModelConfig::classification()
            .with_hidden(vec![HiddenConfig::dense(1); MAX_HIDDEN_LAYERS + 1]);
        assert_eq!(deep.validate().0[0].path, "hidden");
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
