//! Convolutional and pooling layers over channels-last images.
//!
//! An image batch is a `[rows, h·w·c]` matrix whose rows are images with their channels
//! interleaved (HWC, as whet-image produces them), so a layer's output, read as
//! `[rows·h·w, c]`, is one pixel per row. A convolution is computed as a matrix product
//! (im2col): every output pixel's `k × k × c_in` receptive field is copied into one row of a
//! `[rows·out_h·out_w, k·k·c_in]` matrix (zeros where the window hangs over a padded border),
//! which is multiplied by the `[k·k·c_in, filters]` weight matrix on the crate's GEMM kernel
//! ([`crate::kernel`]); the backward pass multiplies the output gradients by the transposed
//! weights and scatters the columns back (col2im). The matrix is built a group of images at a
//! time (at most 256 KiB where one image's fits) in a per-thread scratch buffer and multiplied
//! while it is in cache; the weight gradient is the sum of the groups' products, in group
//! order. Row `(ky, kx, ci)` of the weight
//! matrix is index `(ky·k + kx)·c_in + ci`. Pooling takes the maximum (the first on ties) or the
//! mean of each `size × size` window, with no padding (windows that do not fit are dropped, as
//! PyTorch's default floor mode does).
//!
//! Every image of a batch is independent, so the passes run in parallel over fixed groups of
//! images (sized by the shapes alone) and the results do not depend on the thread count.

use crate::activation::Activation;
use crate::config::Init;
use crate::kernel::{Kernel, matmul_serial};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2};
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::rng::stream;
use whet_core::spec::{NonNegative, Probability};

/// Largest number of filters of one convolution.
pub const MAX_FILTERS: usize = 4096;
/// Largest kernel side (and pooling window side).
pub const MAX_KERNEL: usize = 32;

/// How a convolution treats the border.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// No padding: only windows that fit inside the image (`out = (in − kernel) / stride + 1`).
    #[default]
    Valid,
    /// Zero padding so that `out = ceil(in / stride)`; an odd total pads one more row or column
    /// at the bottom and right (as TensorFlow and ONNX's `SAME_UPPER`).
    Same,
}

/// One convolution (YAML `- conv: { filters: 32, kernel: 5, padding: same }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvConfig {
    /// Number of filters (output channels), 1 to 4096.
    pub filters: usize,
    /// Side of the square kernel, 1 to 32.
    pub kernel: usize,
    /// Step between windows, 1 to the kernel side. Default 1.
    #[serde(default = "one")]
    pub stride: usize,
    /// `valid` (the default) or `same`.
    #[serde(default)]
    pub padding: Padding,
    /// Activation after the convolution: `relu` (the default), `leaky_relu`, `sigmoid`, `tanh`
    /// or `identity`.
    #[serde(default = "relu")]
    pub activation: Activation,
    /// Standard deviation of Gaussian noise added to the output during training. Default 0.
    #[serde(default = "crate::config::zero")]
    pub noise: NonNegative,
    /// Inverted-dropout probability of the output during training (< 1). Default 0.
    #[serde(default = "crate::config::zero_p")]
    pub dropout: Probability,
}

fn one() -> usize {
    1
}
fn relu() -> Activation {
    Activation::Relu
}

impl ConvConfig {
    /// `filters` filters of `kernel × kernel`, stride 1, valid padding, `relu` (as the YAML
    /// `{ filters, kernel }`).
    pub fn new(filters: usize, kernel: usize) -> Self {
        Self {
            filters,
            kernel,
            stride: 1,
            padding: Padding::Valid,
            activation: relu(),
            noise: crate::config::zero(),
            dropout: crate::config::zero_p(),
        }
    }

    /// Sets the stride.
    pub fn with_stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the padding.
    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Sets the activation.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets the training-time Gaussian noise on the output.
    ///
    /// # Panics
    /// When `std` is negative or not finite.
    pub fn with_noise(mut self, std: f64) -> Self {
        self.noise = crate::config::bounded("ConvConfig::with_noise", std);
        self
    }

    /// Sets the training-time dropout probability of the output.
    ///
    /// # Panics
    /// When `p` is not in [0, 1].
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.dropout = crate::config::bounded("ConvConfig::with_dropout", p);
        self
    }

    pub(crate) fn validate(&self) -> whet_core::Issues {
        let mut issues = whet_core::Issues::new();
        issues.check((1..=MAX_FILTERS).contains(&self.filters), "filters", || {
            format!(
                "expected 1 to {MAX_FILTERS} filters, found {}",
                self.filters
            )
        });
        issues.check((1..=MAX_KERNEL).contains(&self.kernel), "kernel", || {
            format!(
                "expected a kernel side of 1 to {MAX_KERNEL}, found {}",
                self.kernel
            )
        });
        issues.check(
            self.stride >= 1 && self.stride <= self.kernel.max(1),
            "stride",
            || {
                format!(
                    "expected a stride of 1 to the kernel side {}, found {} (a larger stride \
                     skips pixels)",
                    self.kernel, self.stride
                )
            },
        );
        check_output(&mut issues, self.activation, self.dropout, "a convolution");
        issues
    }
}

/// The checks of an image layer's output: an element-wise activation (a softmax or step would
/// act on each pixel's channels, or stop every gradient) and a dropout below 1.
fn check_output(
    issues: &mut whet_core::Issues,
    activation: Activation,
    dropout: Probability,
    what: &str,
) {
    issues.check(
        !matches!(activation, Activation::Softmax | Activation::Step),
        "activation",
        || {
            format!(
                "expected relu, leaky_relu, sigmoid, tanh or identity after {what}, found {}",
                crate::config::ser(&activation)
            )
        },
    );
    issues.check(dropout.get() < 1.0, "dropout", || {
        format!("expected a probability < 1 (1 drops every unit), found {dropout}")
    });
}

/// A pooling window (YAML `- max_pool: 2` or `- avg_pool: { size: 3, stride: 2 }`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolConfig {
    /// Side of the square window, 1 to 32.
    pub size: usize,
    /// Step between windows, 1 to the window side. Default: the window side (no overlap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    /// Standard deviation of Gaussian noise added to the output during training. Default 0.
    pub noise: NonNegative,
    /// Inverted-dropout probability of the output during training (< 1). Default 0.
    pub dropout: Probability,
}

/// The fields of the map form of [`PoolConfig`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFields {
    size: usize,
    #[serde(default)]
    stride: Option<usize>,
    #[serde(default = "crate::config::zero")]
    noise: NonNegative,
    #[serde(default = "crate::config::zero_p")]
    dropout: Probability,
}

impl From<PoolFields> for PoolConfig {
    fn from(f: PoolFields) -> Self {
        Self {
            size: f.size,
            stride: f.stride,
            noise: f.noise,
            dropout: f.dropout,
        }
    }
}

impl<'de> Deserialize<'de> for PoolConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::config::number_or_map::<D, PoolFields, _>(
            d,
            "a window side such as `2`, or `{ size: 3, stride: 2 }`",
            |n| PoolConfig::new(n as usize),
        )
    }
}

impl JsonSchema for PoolConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PoolConfig".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "a window side, or the window with its options",
            "oneOf": [
                { "type": "integer", "minimum": 1, "description": "the window side (stride = side)" },
                {
                    "type": "object",
                    "description": "`{ size, stride, noise, dropout }`: the window side (1 to 32), the step between windows (default the side), and the training-time noise std and dropout probability of the output (default 0)",
                    "additionalProperties": false,
                    "required": ["size"],
                    "properties": {
                        "size": { "type": "integer", "minimum": 1, "description": "side of the square window" },
                        "stride": { "type": "integer", "minimum": 1, "description": "step between windows; default the window side" },
                        "noise": { "type": "number", "minimum": 0, "description": "std of the training-time Gaussian noise on the output; default 0" },
                        "dropout": { "type": "number", "minimum": 0, "maximum": 1, "description": "training-time dropout probability of the output; default 0" }
                    }
                }
            ]
        })
    }
}

impl PoolConfig {
    /// A `size × size` window with stride `size` (as the YAML `max_pool: size`).
    pub fn new(size: usize) -> Self {
        Self {
            size,
            stride: None,
            noise: crate::config::zero(),
            dropout: crate::config::zero_p(),
        }
    }

    /// Sets the stride.
    pub fn with_stride(mut self, stride: usize) -> Self {
        self.stride = Some(stride);
        self
    }

    /// The stride: the one given, or the window side.
    pub fn stride(&self) -> usize {
        self.stride.unwrap_or(self.size)
    }

    pub(crate) fn validate(&self) -> whet_core::Issues {
        let mut issues = whet_core::Issues::new();
        issues.check((1..=MAX_KERNEL).contains(&self.size), "size", || {
            format!(
                "expected a window side of 1 to {MAX_KERNEL}, found {}",
                self.size
            )
        });
        issues.check(
            (1..=self.size.max(1)).contains(&self.stride()),
            "stride",
            || {
                format!(
                    "expected a stride of 1 to the window side {}, found {}",
                    self.size,
                    self.stride()
                )
            },
        );
        issues.check(self.dropout.get() < 1.0, "dropout", || {
            format!(
                "expected a probability < 1 (1 drops every unit), found {}",
                self.dropout
            )
        });
        issues
    }
}

/// Batch normalisation of an image layer's channels (YAML `- batch_norm: {}`; Ioffe & Szegedy
/// 2015). Training normalises each channel by the batch's mean and variance over every image and
/// pixel, then scales and shifts it by a learnt `γ` and `β` (initialised to 1 and 0); it keeps
/// running averages of the mean and the (unbiased) variance, which evaluation and the exported
/// model use instead. For the usual convolution → normalisation → ReLU, give the convolution
/// `activation: identity` and this layer `activation: relu`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchNormConfig {
    /// Weight of each batch in the running averages: `running = (1 − momentum) · running +
    /// momentum · batch`. Default 0.1 (PyTorch's).
    #[serde(default = "default_momentum")]
    pub momentum: Probability,
    /// Added to the variance before its square root. Default 1e-5.
    #[serde(default = "default_epsilon")]
    pub epsilon: whet_core::spec::Positive,
    /// Activation after the scale and shift: `identity` (the default), `relu`, `leaky_relu`,
    /// `sigmoid` or `tanh`.
    #[serde(default = "identity")]
    pub activation: Activation,
    /// Standard deviation of Gaussian noise added to the output during training. Default 0.
    #[serde(default = "crate::config::zero")]
    pub noise: NonNegative,
    /// Inverted-dropout probability of the output during training (< 1). Default 0.
    #[serde(default = "crate::config::zero_p")]
    pub dropout: Probability,
}

fn default_momentum() -> Probability {
    Probability::new(0.1).expect("0.1 is a probability")
}
fn default_epsilon() -> whet_core::spec::Positive {
    whet_core::spec::Positive::new(1e-5).expect("1e-5 is positive")
}
fn identity() -> Activation {
    Activation::Identity
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self {
            momentum: default_momentum(),
            epsilon: default_epsilon(),
            activation: identity(),
            noise: crate::config::zero(),
            dropout: crate::config::zero_p(),
        }
    }
}

impl BatchNormConfig {
    /// Sets the activation after the scale and shift.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    pub(crate) fn validate(&self) -> whet_core::Issues {
        let mut issues = whet_core::Issues::new();
        check_output(
            &mut issues,
            self.activation,
            self.dropout,
            "a batch normalisation",
        );
        issues
    }
}

/// What a spatial layer computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpatialKind {
    /// A convolution.
    Conv,
    /// Maximum over each window.
    MaxPool,
    /// Mean over each window.
    AvgPool,
    /// Batch normalisation of each channel.
    BatchNorm,
}

/// The shapes of one spatial layer: input and output `[height, width, channels]`, window side,
/// stride and zero padding `[top, left, bottom, right]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Geometry {
    /// Input `[height, width, channels]`.
    pub input: [usize; 3],
    /// Output `[height, width, channels]`.
    pub output: [usize; 3],
    /// Window (kernel) side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding `[top, left, bottom, right]`.
    pub pad: [usize; 4],
}

impl Geometry {
    /// For output column `ox`: the input column of kernel column 0 (negative inside the left
    /// padding) and the kernel columns `lo..hi` that fall inside the image.
    fn columns(&self, ox: usize) -> (isize, usize, usize) {
        let x0 = (ox * self.stride) as isize - self.pad[1] as isize;
        let w = self.input[1] as isize;
        let lo = (-x0).clamp(0, self.kernel as isize) as usize;
        let hi = (w - x0).clamp(lo as isize, self.kernel as isize) as usize;
        (x0, lo, hi)
    }
    /// The geometry of a window of side `kernel` moved by `stride` over `input`, producing
    /// `channels` channels. `None` when the window does not fit.
    pub fn new(
        input: [usize; 3],
        kernel: usize,
        stride: usize,
        padding: Padding,
        channels: usize,
    ) -> Option<Geometry> {
        let [h, w, _] = input;
        if kernel == 0 || stride == 0 || h == 0 || w == 0 {
            return None;
        }
        let side = |n: usize| -> Option<(usize, usize, usize)> {
            match padding {
                Padding::Valid => (n >= kernel).then(|| ((n - kernel) / stride + 1, 0, 0)),
                Padding::Same => {
                    let out = n.div_ceil(stride);
                    let total = ((out - 1) * stride + kernel).saturating_sub(n);
                    Some((out, total / 2, total - total / 2))
                }
            }
        };
        let (oh, top, bottom) = side(h)?;
        let (ow, left, right) = side(w)?;
        Some(Geometry {
            input,
            output: [oh, ow, channels],
            kernel,
            stride,
            pad: [top, left, bottom, right],
        })
    }

    /// Values per input image.
    pub fn in_len(&self) -> usize {
        self.input.iter().product()
    }

    /// Values per output image.
    pub fn out_len(&self) -> usize {
        self.output.iter().product()
    }

    /// Output pixels per image.
    pub fn out_pixels(&self) -> usize {
        self.output[0] * self.output[1]
    }

    /// Length of one im2col row (`k · k · c_in`).
    pub fn patch(&self) -> usize {
        self.kernel * self.kernel * self.input[2]
    }
}

/// One layer of the image part of a network, as stored in an [`crate::Architecture`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpatialSpec {
    /// What it computes.
    pub kind: SpatialKind,
    /// Its shapes.
    pub geometry: Geometry,
    /// Activation (convolutions; `identity` for pools).
    pub activation: Activation,
    /// Training noise std.
    pub noise: f32,
    /// Training dropout probability.
    pub dropout: f32,
    /// Batch normalisation: the running averages' momentum and the variance's epsilon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_norm: Option<[f32; 2]>,
}

/// A layer of the image part of a network: a convolution (with weights) or a pooling window.
///
/// Fields are read through accessors; the weight shape agrees with the geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct Spatial {
    pub(crate) kind: SpatialKind,
    pub(crate) geo: Geometry,
    /// Convolutions: `[k·k·c_in, filters]`; pools: empty.
    pub(crate) weight: Array2<f32>,
    /// Convolutions: `[filters]`; pools: empty.
    pub(crate) bias: Array1<f32>,
    pub(crate) activation: Activation,
    pub(crate) noise: f32,
    pub(crate) dropout: f32,
    pub(crate) frozen: bool,
    /// Batch normalisation: running mean and variance per channel (empty otherwise).
    pub(crate) running: [Array1<f32>; 2],
    /// Batch normalisation: momentum and epsilon.
    pub(crate) norm: Option<[f32; 2]>,
}

impl Spatial {
    /// A convolution of `geo` ([`geometries`]) initialised with `init` from the stream
    /// `[3, index]` (He or Xavier over the fan-in `k·k·c_in` and fan-out `k·k·filters`).
    pub fn conv(
        config: &ConvConfig,
        geo: Geometry,
        init: Init,
        seed: u64,
        index: usize,
    ) -> Spatial {
        let fan_in = geo.patch();
        let fan_out = config.kernel * config.kernel * config.filters;
        let weight = crate::mlp::init_weights(
            (fan_in, config.filters),
            (fan_in, fan_out),
            config.activation,
            init,
            stream(seed, &[3, index as u64]),
        );
        Spatial {
            kind: SpatialKind::Conv,
            geo,
            weight,
            bias: Array1::zeros(config.filters),
            activation: config.activation,
            noise: config.noise.get() as f32,
            dropout: config.dropout.get() as f32,
            frozen: false,
            running: [Array1::zeros(0), Array1::zeros(0)],
            norm: None,
        }
    }

    /// A batch normalisation of `geo` ([`geometries`]): `γ` = 1, `β` = 0, running mean 0 and
    /// variance 1.
    pub fn batch_norm(config: &BatchNormConfig, geo: Geometry) -> Spatial {
        let c = geo.output[2];
        Spatial {
            kind: SpatialKind::BatchNorm,
            geo,
            weight: Array2::ones((1, c)),
            bias: Array1::zeros(c),
            activation: config.activation,
            noise: config.noise.get() as f32,
            dropout: config.dropout.get() as f32,
            frozen: false,
            running: [Array1::zeros(c), Array1::ones(c)],
            norm: Some([config.momentum.get() as f32, config.epsilon.get() as f32]),
        }
    }

    /// A pooling layer of `geo` ([`geometries`]).
    pub fn pool(config: &PoolConfig, kind: SpatialKind, geo: Geometry) -> Spatial {
        Spatial {
            kind,
            geo,
            weight: Array2::zeros((0, 0)),
            bias: Array1::zeros(0),
            activation: Activation::Identity,
            noise: config.noise.get() as f32,
            dropout: config.dropout.get() as f32,
            frozen: false,
            running: [Array1::zeros(0), Array1::zeros(0)],
            norm: None,
        }
    }

    /// Rebuilds a layer from its stored spec and (for convolutions) weights.
    ///
    /// # Errors
    /// A message when the shapes disagree.
    pub(crate) fn from_spec(
        spec: &SpatialSpec,
        weight: Array2<f32>,
        bias: Array1<f32>,
        running: [Array1<f32>; 2],
    ) -> Result<Spatial, String> {
        let g = spec.geometry;
        let padding_ok = g.pad.iter().all(|&p| p < g.kernel.max(1));
        let fits = |n: usize, a: usize, b: usize, out: usize| {
            n + a + b >= g.kernel && (n + a + b - g.kernel) / g.stride.max(1) + 1 == out
        };
        let shapes_ok = g.kernel >= 1
            && g.stride >= 1
            && padding_ok
            && g.in_len() > 0
            && fits(g.input[0], g.pad[0], g.pad[2], g.output[0])
            && fits(g.input[1], g.pad[1], g.pad[3], g.output[1]);
        if !shapes_ok {
            return Err(format!("the geometry {g:?} does not chain"));
        }
        let (rows, cols) = match spec.kind {
            SpatialKind::Conv => (g.patch(), g.output[2]),
            SpatialKind::BatchNorm => {
                if g.output != g.input || g.pad != [0; 4] || spec.batch_norm.is_none() {
                    return Err(format!(
                        "a batch normalisation keeps its shape and has a momentum and an \
                         epsilon: {g:?}"
                    ));
                }
                (1, g.output[2])
            }
            _ => {
                if g.output[2] != g.input[2] || g.pad != [0; 4] {
                    return Err(format!("a pool must keep the channels unpadded: {g:?}"));
                }
                (0, 0)
            }
        };
        if weight.dim() != (rows, cols) || bias.len() != cols {
            return Err(format!(
                "expected weight [{rows}, {cols}] and bias [{cols}], found weight {:?} and bias [{}]",
                weight.dim(),
                bias.len()
            ));
        }
        let channels = if spec.kind == SpatialKind::BatchNorm {
            cols
        } else {
            0
        };
        if running.iter().any(|r| r.len() != channels) {
            return Err(format!(
                "expected running statistics of {channels} channels, found {} and {}",
                running[0].len(),
                running[1].len()
            ));
        }
        if running[1].iter().any(|v| *v < 0.0) {
            return Err("a running variance is negative".into());
        }
        Ok(Spatial {
            kind: spec.kind,
            geo: g,
            weight,
            bias,
            activation: spec.activation,
            noise: spec.noise,
            dropout: spec.dropout,
            frozen: false,
            running,
            norm: spec.batch_norm,
        })
    }

    /// The stored spec.
    pub fn spec(&self) -> SpatialSpec {
        SpatialSpec {
            kind: self.kind,
            geometry: self.geo,
            activation: self.activation,
            noise: self.noise,
            dropout: self.dropout,
            batch_norm: self.norm,
        }
    }

    /// Batch normalisation: the running mean and variance per channel (empty otherwise).
    pub fn running(&self) -> (&Array1<f32>, &Array1<f32>) {
        (&self.running[0], &self.running[1])
    }

    /// Batch normalisation: the running averages' momentum and the variance's epsilon.
    pub fn norm(&self) -> Option<[f32; 2]> {
        self.norm
    }

    /// True for a layer with learnt parameters (a convolution or a batch normalisation).
    pub fn has_weights(&self) -> bool {
        matches!(self.kind, SpatialKind::Conv | SpatialKind::BatchNorm)
    }

    /// What it computes.
    pub fn kind(&self) -> SpatialKind {
        self.kind
    }

    /// Its shapes.
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// Convolutions: weights `[k·k·c_in, filters]`, row `(ky·k + kx)·c_in + ci`; batch
    /// normalisation: `γ` as `[1, channels]`; pools: empty.
    pub fn weight(&self) -> &Array2<f32> {
        &self.weight
    }

    /// Convolutions: biases `[filters]`; batch normalisation: `β`; pools: empty.
    pub fn bias(&self) -> &Array1<f32> {
        &self.bias
    }

    /// Activation (pools: identity).
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Std of the training-time Gaussian noise on the output (0 for none).
    pub fn noise(&self) -> f32 {
        self.noise
    }

    /// Training-time dropout probability of the output (0 for none).
    pub fn dropout(&self) -> f32 {
        self.dropout
    }

    /// True when the layer receives no updates.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// True for a convolution (a layer with weights).
    pub fn is_conv(&self) -> bool {
        self.kind == SpatialKind::Conv
    }

    pub(crate) fn perturbed(&self) -> bool {
        self.noise > 0.0 || self.dropout > 0.0
    }
}

/// The shapes of the image layers of `config.layers` (convolutions and pools, in order) for
/// images of `shape` (`[height, width, channels]`).
///
/// # Errors
/// A message naming `model.layers[i]` when a kernel or window does not fit its input.
pub fn geometries(
    config: &crate::config::ModelConfig,
    shape: [usize; 3],
) -> Result<Vec<Geometry>, String> {
    use crate::config::LayerConfig;
    let mut cur = shape;
    let mut out = Vec::new();
    for (i, layer) in config.layers.iter().enumerate() {
        let (side, geo) = match layer {
            LayerConfig::Conv(c) => (
                c.kernel,
                Geometry::new(cur, c.kernel, c.stride, c.padding, c.filters),
            ),
            LayerConfig::MaxPool(p) | LayerConfig::AvgPool(p) => (
                p.size,
                Geometry::new(cur, p.size, p.stride(), Padding::Valid, cur[2]),
            ),
            LayerConfig::BatchNorm(_) => (1, Geometry::new(cur, 1, 1, Padding::Valid, cur[2])),
            LayerConfig::Flatten(_) | LayerConfig::Dense(_) => continue,
        };
        let Some(geo) = geo else {
            return Err(format!(
                "model.layers[{i}].{}: a {side}×{side} window does not fit its input of {}×{}×{} \
                 (height × width × channels); use a smaller kernel or window, `padding: same`, \
                 or fewer layers before it",
                layer.key(),
                cur[0],
                cur[1],
                cur[2]
            ));
        };
        cur = geo.output;
        out.push(geo);
    }
    Ok(out)
}

/// Images per parallel task of the copies.
const IMAGES_PER_TASK: usize = 8;

/// Runs `f(task, chunk)` over `data` in chunks of `chunk` values (one task = a fixed group of
/// images): in parallel on rayon, or on this thread when `small` or when serial execution is
/// forced. Each chunk is independent, so the result is the same either way.
fn for_each_task<T: Send>(
    data: &mut [T],
    chunk: usize,
    small: bool,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if crate::par::serial() || small {
        data.chunks_mut(chunk)
            .enumerate()
            .for_each(|(t, c)| f(t, c));
    } else {
        data.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(t, c)| f(t, c));
    }
}

/// The im2col matrix of one group of images aims at this many bytes (it stays in a core's
/// cache between its copy and its product).
const GROUP_BYTES: usize = 256 << 10;

thread_local! {
    /// Per thread: a group's im2col matrix (forward and weight gradient) or its gradient (input
    /// gradient; the passes never nest), grown once and reused.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer of `len` values (a fresh one if this thread's is in
/// use).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

impl Geometry {
    /// Images per group of a convolution's passes: as many as keep the group's im2col matrix
    /// within 256 KiB, 1 to 16. Depends on the shapes only, so results never depend on the
    /// number of threads.
    pub(crate) fn group_images(&self) -> usize {
        (GROUP_BYTES / (4 * self.out_pixels() * self.patch()).max(1)).clamp(1, 16)
    }

    /// Groups of [`Geometry::group_images`] in a batch of `rows` images.
    pub(crate) fn groups(&self, rows: usize) -> usize {
        rows.div_ceil(self.group_images())
    }

    /// The bytes of one thread's scratch buffer (the im2col matrix of a group, or its
    /// gradient).
    pub(crate) fn scratch_bytes(&self) -> u64 {
        let per = (self.group_images() * self.out_pixels() * self.patch()) as u64;
        per.saturating_mul(4)
    }

    /// Fills `cols` (`images · out_pixels · patch` values) with the im2col matrix of images
    /// `first..first + images` of `x`, viewed as `[images · out_pixels, patch]`.
    fn im2col_group<'c>(
        &self,
        x: ArrayView2<f32>,
        first: usize,
        images: usize,
        cols: &'c mut [f32],
    ) -> ArrayView2<'c, f32> {
        let per = self.out_pixels() * self.patch();
        for (i, out) in cols.chunks_mut(per).enumerate() {
            let img = x.row(first + i);
            im2col_one(self, img.as_slice().expect("contiguous rows"), out);
        }
        ArrayView2::from_shape((images * self.out_pixels(), self.patch()), &*cols)
            .expect("whole images")
    }

    /// Images `first..first + images` of `d` (`[rows, out_len]` as a slice) as one pixel per
    /// row, `[images · out_pixels, filters]`.
    fn group_pixels<'d>(&self, d: &'d [f32], first: usize, images: usize) -> ArrayView2<'d, f32> {
        let n = self.out_len();
        ArrayView2::from_shape(
            (images * self.out_pixels(), self.output[2]),
            &d[first * n..(first + images) * n],
        )
        .expect("whole images")
    }
}

/// Runs `f(first, images, chunk, scratch)` for every group of images of a batch of `rows`
/// (see [`Geometry::group_images`]), in parallel: `chunk` is the group's part of `data`
/// (`per_group` values per group), `scratch` this thread's buffer sized for the group's im2col
/// matrix.
fn for_each_group<T: Send>(
    g: &Geometry,
    rows: usize,
    data: &mut [T],
    per_group: usize,
    f: impl Fn(usize, usize, &mut [T], &mut [f32]) + Sync + Send,
) {
    let (gi, per) = (g.group_images(), g.out_pixels() * g.patch());
    for_each_task(data, per_group, rows * per < 1 << 16, |t, chunk| {
        let images = gi.min(rows - t * gi);
        with_scratch(gi * per, |scratch| {
            f(t * gi, images, chunk, &mut scratch[..images * per])
        });
    });
}

/// A convolution's forward pass over the first `rows` images of `x` (`[rows, in_len]`):
/// `out = activation(im2col(x) · w + bias)` (`[rows, out_len]`), a group of images at a time
/// (its im2col matrix built in this thread's scratch and multiplied while in cache), groups in
/// parallel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_forward(
    kernel: Kernel,
    g: &Geometry,
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    bias: &[f32],
    activation: Activation,
    mut out: ArrayViewMut2<f32>,
    rows: usize,
) {
    let n = g.group_images() * g.out_len();
    let out = &mut out.as_slice_mut().expect("standard layout")[..rows * g.out_len()];
    for_each_group(g, rows, out, n, |first, images, chunk, cols| {
        let a = g.im2col_group(x, first, images, cols);
        let mut z =
            ArrayViewMut2::from_shape((a.nrows(), g.output[2]), chunk).expect("whole images");
        matmul_serial(kernel, a, w, z.view_mut());
        activation.bias_forward(z, bias);
    });
}

/// The weight gradient of a convolution over the first `rows` images: `grad_w = Σ_groups
/// im2col(x_group)ᵀ · d_group`, each group's product into its row of `partials`
/// (`[groups, patch·filters]`, in parallel), then summed in group order (so the result does not
/// depend on the number of threads). `d` is the gradient before the activation, `[rows, out_len]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_weight_gradient(
    kernel: Kernel,
    g: &Geometry,
    x: ArrayView2<f32>,
    d: ArrayView2<f32>,
    partials: &mut Array2<f32>,
    mut grad_w: ArrayViewMut2<f32>,
    rows: usize,
) {
    let size = g.patch() * g.output[2];
    let d = &d.as_slice().expect("standard layout")[..rows * g.out_len()];
    let parts = &mut partials.as_slice_mut().expect("standard layout")[..g.groups(rows) * size];
    for_each_group(g, rows, parts, size, |first, images, part, cols| {
        let a = g.im2col_group(x, first, images, cols);
        let part = ArrayViewMut2::from_shape((g.patch(), g.output[2]), part).expect("one partial");
        matmul_serial(kernel, a.t(), g.group_pixels(d, first, images), part);
    });
    grad_w.fill(0.0);
    let gw = grad_w.as_slice_mut().expect("standard layout");
    for part in parts.chunks(size) {
        for (o, v) in gw.iter_mut().zip(part) {
            *o += v;
        }
    }
}

/// The input gradient of a convolution over the first `rows` images: `dx = col2im(d · wᵀ)`
/// (`dx` overwritten), a group at a time in this thread's scratch, groups in parallel.
pub(crate) fn conv_input_gradient(
    kernel: Kernel,
    g: &Geometry,
    d: ArrayView2<f32>,
    w: ArrayView2<f32>,
    mut dx: ArrayViewMut2<f32>,
    rows: usize,
) {
    let in_len = g.in_len();
    let d = &d.as_slice().expect("standard layout")[..rows * g.out_len()];
    let dx = &mut dx.as_slice_mut().expect("standard layout")[..rows * in_len];
    let n = g.group_images() * in_len;
    for_each_group(g, rows, dx, n, |first, images, chunk, dcols| {
        let dg = g.group_pixels(d, first, images);
        let c =
            ArrayViewMut2::from_shape((dg.nrows(), g.patch()), &mut *dcols).expect("whole images");
        matmul_serial(kernel, dg, w.t(), c);
        let per = g.out_pixels() * g.patch();
        for (img, cols) in chunk.chunks_mut(in_len).zip(dcols.chunks(per)) {
            col2im_one(g, cols, img);
        }
    });
}

fn im2col_one(g: &Geometry, img: &[f32], out: &mut [f32]) {
    let [h, w, c] = g.input;
    let [oh, ow, _] = g.output;
    let k = g.kernel;
    let run = k * c;
    let mut o = 0;
    for oy in 0..oh {
        for ox in 0..ow {
            // The kernel columns that fall inside the image: `lo..hi` (the rest is padding).
            let (x0, lo, hi) = g.columns(ox);
            for ky in 0..k {
                let dst = &mut out[o..o + run];
                o += run;
                let iy = (oy * g.stride + ky) as isize - g.pad[0] as isize;
                if iy < 0 || iy >= h as isize {
                    dst.fill(0.0);
                    continue;
                }
                let s = (iy as usize * w) as isize + x0;
                let src = &img[(s + lo as isize) as usize * c..(s + hi as isize) as usize * c];
                if lo == 0 && hi == k {
                    copy_run(dst, src);
                } else {
                    dst[..lo * c].fill(0.0);
                    copy_run(&mut dst[lo * c..hi * c], src);
                    dst[hi * c..].fill(0.0);
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the short runs of im2col, with the common lengths inlined
/// (a call to `memcpy` for a run of 5 values costs more than the copy).
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    macro_rules! fixed {
        ($($n:literal)*) => {
            match dst.len() {
                $($n => dst[..$n].copy_from_slice(&src[..$n]),)*
                _ => dst.copy_from_slice(src),
            }
        };
    }
    fixed!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

fn col2im_one(g: &Geometry, cols: &[f32], img: &mut [f32]) {
    let [h, w, c] = g.input;
    let [oh, ow, _] = g.output;
    let k = g.kernel;
    let run = k * c;
    img.fill(0.0);
    let mut o = 0;
    for oy in 0..oh {
        for ox in 0..ow {
            let (x0, lo, hi) = g.columns(ox);
            for ky in 0..k {
                let src = &cols[o..o + run];
                o += run;
                let iy = (oy * g.stride + ky) as isize - g.pad[0] as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let s = (iy as usize * w) as isize + x0;
                let dst = &mut img[(s + lo as isize) as usize * c..(s + hi as isize) as usize * c];
                for (d, v) in dst.iter_mut().zip(&src[lo * c..hi * c]) {
                    *d += v;
                }
            }
        }
    }
}

/// Pools the first `rows` images of `x` into `out`; for max pooling records each output's
/// input index (within its image) in `argmax`.
pub(crate) fn pool_forward(
    kind: SpatialKind,
    g: &Geometry,
    x: ArrayView2<f32>,
    mut out: ArrayViewMut2<f32>,
    argmax: &mut [u32],
    rows: usize,
) {
    let out_len = g.out_len();
    let out = &mut out.as_slice_mut().expect("standard layout")[..rows * out_len];
    let argmax = &mut argmax[..rows * out_len];
    let task = |(t, (o, a)): (usize, (&mut [f32], &mut [u32]))| {
        for (i, (o, a)) in o.chunks_mut(out_len).zip(a.chunks_mut(out_len)).enumerate() {
            let img = x.row(t * IMAGES_PER_TASK + i);
            pool_one(kind, g, img.as_slice().expect("contiguous rows"), o, a);
        }
    };
    let n = out_len * IMAGES_PER_TASK;
    if crate::par::serial() || rows * g.in_len() < 1 << 16 {
        out.chunks_mut(n)
            .zip(argmax.chunks_mut(n))
            .enumerate()
            .for_each(task);
    } else {
        out.par_chunks_mut(n)
            .zip(argmax.par_chunks_mut(n))
            .enumerate()
            .for_each(task);
    }
}

fn pool_one(kind: SpatialKind, g: &Geometry, img: &[f32], out: &mut [f32], arg: &mut [u32]) {
    let [_, w, c] = g.input;
    let [oh, ow, _] = g.output;
    let k = g.kernel;
    let scale = 1.0 / (k * k) as f32;
    for oy in 0..oh {
        for ox in 0..ow {
            // Every channel of the window at once: the channels are adjacent in memory.
            let o = (oy * ow + ox) * c;
            let (out, arg) = (&mut out[o..o + c], &mut arg[o..o + c]);
            let at = |ky: usize, kx: usize| ((oy * g.stride + ky) * w + ox * g.stride + kx) * c;
            if kind == SpatialKind::MaxPool {
                // Blocks of up to 8 channels, kept in registers across the window.
                for ch0 in (0..c).step_by(8) {
                    let (o, a) = (&mut out[ch0..], &mut arg[ch0..]);
                    let window = (0..k * k).map(|t| at(t / k, t % k) + ch0);
                    macro_rules! block {
                        ($($n:literal)*) => {
                            match (c - ch0).min(8) {
                                $($n => max_block::<$n>(img, window, o, a),)*
                                _ => max_block::<8>(img, window, o, a),
                            }
                        };
                    }
                    block!(1 2 3 4 5 6 7);
                }
            } else {
                out.fill(0.0);
                for ky in 0..k {
                    for kx in 0..k {
                        let i = at(ky, kx);
                        for (s, &v) in out.iter_mut().zip(&img[i..i + c]) {
                            *s += v;
                        }
                    }
                }
                for s in out.iter_mut() {
                    *s *= scale;
                }
            }
        }
    }
}

/// The maximum of `B` adjacent channels over a window (`starts`: each window pixel's offset of
/// the first channel, in window order) into `out[..B]`, and where it was into `arg[..B]`. The
/// first maximum wins; a NaN is taken so it propagates.
#[inline(always)]
fn max_block<const B: usize>(
    img: &[f32],
    mut starts: impl Iterator<Item = usize>,
    out: &mut [f32],
    arg: &mut [u32],
) {
    let first = starts.next().unwrap_or(0);
    let mut best: [f32; B] = std::array::from_fn(|b| img[first + b]);
    let mut at: [u32; B] = std::array::from_fn(|b| (first + b) as u32);
    for i in starts {
        let v = &img[i..i + B];
        for b in 0..B {
            // Which value wins is unpredictable: selects, not branches.
            let take = (v[b] > best[b]) | (v[b].is_nan() & !best[b].is_nan());
            best[b] = std::hint::select_unpredictable(take, v[b], best[b]);
            at[b] = std::hint::select_unpredictable(take, (i + b) as u32, at[b]);
        }
    }
    out[..B].copy_from_slice(&best);
    arg[..B].copy_from_slice(&at);
}

/// The gradient of [`pool_forward`]: scatters `dout` (first `rows` images) onto `dx`
/// (overwritten).
pub(crate) fn pool_backward(
    kind: SpatialKind,
    g: &Geometry,
    dout: ArrayView2<f32>,
    argmax: &[u32],
    mut dx: ArrayViewMut2<f32>,
    rows: usize,
) {
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let dx = &mut dx.as_slice_mut().expect("standard layout")[..rows * in_len];
    for_each_task(
        dx,
        in_len * IMAGES_PER_TASK,
        rows * in_len < 1 << 16,
        |t, d| {
            for (i, img) in d.chunks_mut(in_len).enumerate() {
                let r = t * IMAGES_PER_TASK + i;
                let dr = dout.row(r);
                let dr = dr.as_slice().expect("contiguous rows");
                img.fill(0.0);
                if kind == SpatialKind::MaxPool {
                    for (d, &a) in dr.iter().zip(&argmax[r * out_len..(r + 1) * out_len]) {
                        img[a as usize] += d;
                    }
                } else {
                    unpool_mean(g, dr, img);
                }
            }
        },
    );
}

fn unpool_mean(g: &Geometry, dout: &[f32], img: &mut [f32]) {
    let [_, w, c] = g.input;
    let [oh, ow, _] = g.output;
    let k = g.kernel;
    let scale = 1.0 / (k * k) as f32;
    for oy in 0..oh {
        for ox in 0..ow {
            for ch in 0..c {
                let d = dout[(oy * ow + ox) * c + ch] * scale;
                for ky in 0..k {
                    for kx in 0..k {
                        img[((oy * g.stride + ky) * w + ox * g.stride + kx) * c + ch] += d;
                    }
                }
            }
        }
    }
}

/// Batch normalisation of the pixels `x` (`[n, c]`): `y = γ · x̂` (the caller adds `β` with the
/// activation), by the batch's statistics (training: `stats` receives each channel's mean,
/// `1 / sqrt(var + eps)` and biased variance, `xhat` the normalised values) or by the running
/// ones (`running = Some`). Sums run in row order in f64.
pub(crate) fn norm_forward(
    x: ArrayView2<f32>,
    mut y: ArrayViewMut2<f32>,
    mut xhat: ArrayViewMut2<f32>,
    gamma: &[f32],
    eps: f32,
    stats: &mut [Vec<f32>; 3],
    running: Option<&[Array1<f32>; 2]>,
) {
    let c = x.ncols();
    let n = x.nrows().max(1) as f64;
    match running {
        Some([m, v]) => {
            let [mean, inv, _] = stats;
            for j in 0..c {
                mean[j] = m[j];
                inv[j] = 1.0 / (v[j] + eps).sqrt();
            }
        }
        None => {
            let mut sum = vec![0.0f64; c];
            for row in x.rows() {
                for (s, v) in sum.iter_mut().zip(row) {
                    *s += f64::from(*v);
                }
            }
            let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
            let mut sq = vec![0.0f64; c];
            for row in x.rows() {
                for ((s, v), m) in sq.iter_mut().zip(row).zip(&mean) {
                    let d = f64::from(*v) - m;
                    *s += d * d;
                }
            }
            for j in 0..c {
                stats[0][j] = mean[j] as f32;
                stats[1][j] = (1.0 / (sq[j] / n + f64::from(eps)).sqrt()) as f32;
                stats[2][j] = (sq[j] / n) as f32;
            }
        }
    }
    for ((xr, mut yr), mut hr) in x.rows().into_iter().zip(y.rows_mut()).zip(xhat.rows_mut()) {
        for j in 0..c {
            let h = (xr[j] - stats[0][j]) * stats[1][j];
            hr[j] = h;
            yr[j] = gamma[j] * h;
        }
    }
}

/// The gradient of [`norm_forward`] in training mode: from `dy` (`[n, c]`, the gradient of the
/// output before the activation) to `grad_gamma`, `grad_beta` and, when `dx` is given, the
/// input's gradient `dx = γ·inv/n · (n·dy − Σdy − x̂·Σ(dy·x̂))` (evaluation mode:
/// `γ·inv·dy`).
pub(crate) fn norm_backward(
    dy: ArrayView2<f32>,
    xhat: ArrayView2<f32>,
    gamma: &[f32],
    inv: &[f32],
    (grad_gamma, grad_beta): (&mut [f32], &mut [f32]),
    dx: Option<ArrayViewMut2<f32>>,
    train: bool,
) {
    let c = dy.ncols();
    let n = dy.nrows() as f64;
    let mut sg = vec![0.0f64; c];
    let mut sb = vec![0.0f64; c];
    for (d, h) in dy.rows().into_iter().zip(xhat.rows()) {
        for j in 0..c {
            sg[j] += f64::from(d[j]) * f64::from(h[j]);
            sb[j] += f64::from(d[j]);
        }
    }
    for j in 0..c {
        grad_gamma[j] = sg[j] as f32;
        grad_beta[j] = sb[j] as f32;
    }
    let Some(mut dx) = dx else {
        return;
    };
    for ((d, h), mut o) in dy.rows().into_iter().zip(xhat.rows()).zip(dx.rows_mut()) {
        for j in 0..c {
            let g = f64::from(gamma[j]) * f64::from(inv[j]);
            o[j] = if train {
                (g * (f64::from(d[j]) - (sb[j] + f64::from(h[j]) * sg[j]) / n)) as f32
            } else {
                (g * f64::from(d[j])) as f32
            };
        }
    }
}

/// Column sums of `d` (`[n, cols]`) into `out`, in row order (a fixed reduction order).
pub(crate) fn column_sums(d: ArrayView2<f32>, out: &mut [f32]) {
    out.fill(0.0);
    for row in d.rows() {
        for (o, v) in out.iter_mut().zip(row.as_slice().expect("contiguous rows")) {
            *o += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// A direct convolution, to check im2col + matmul against.
    fn direct(g: &Geometry, img: &[f32], w: &Array2<f32>) -> Vec<f32> {
        let [h, wd, c] = g.input;
        let [oh, ow, f] = g.output;
        let k = g.kernel;
        let mut out = vec![0.0f32; oh * ow * f];
        for oy in 0..oh {
            for ox in 0..ow {
                for fi in 0..f {
                    let mut s = 0.0;
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * g.stride + ky) as isize - g.pad[0] as isize;
                            let ix = (ox * g.stride + kx) as isize - g.pad[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                continue;
                            }
                            for ci in 0..c {
                                let v = img[(iy as usize * wd + ix as usize) * c + ci];
                                s += v * w[[(ky * k + kx) * c + ci, fi]];
                            }
                        }
                    }
                    out[(oy * ow + ox) * f + fi] = s;
                }
            }
        }
        out
    }

    #[test]
    fn geometry_follows_the_usual_formulas() {
        let g = Geometry::new([28, 28, 1], 5, 2, Padding::Valid, 5).unwrap();
        assert_eq!(g.output, [12, 12, 5]);
        let g = Geometry::new([28, 28, 1], 5, 1, Padding::Same, 8).unwrap();
        assert_eq!((g.output, g.pad), ([28, 28, 8], [2, 2, 2, 2]));
        let g = Geometry::new([7, 6, 3], 4, 2, Padding::Same, 2).unwrap();
        assert_eq!((g.output, g.pad), ([4, 3, 2], [1, 1, 2, 1]));
        assert!(Geometry::new([3, 3, 1], 4, 1, Padding::Valid, 1).is_none());
    }

    /// The three passes of a convolution over `rows` images, on a pool of `threads` threads:
    /// the outputs (identity activation), the weight gradient and the input gradient.
    fn passes(
        g: &Geometry,
        x: &Array2<f32>,
        w: &Array2<f32>,
        d: &Array2<f32>,
        threads: usize,
    ) -> (Array2<f32>, Array2<f32>, Array2<f32>) {
        let rows = x.nrows();
        crate::par::pool(threads).install(|| {
            let bias = vec![0.5; w.ncols()];
            let mut y = Array2::from_elem((rows, g.out_len()), f32::NAN);
            let k = Kernel::Gemm;
            conv_forward(
                k,
                g,
                x.view(),
                w.view(),
                &bias,
                Activation::Identity,
                y.view_mut(),
                rows,
            );
            let mut partials = Array2::from_elem((g.groups(rows), w.len()), f32::NAN);
            let mut gw = Array2::from_elem(w.dim(), f32::NAN);
            conv_weight_gradient(k, g, x.view(), d.view(), &mut partials, gw.view_mut(), rows);
            let mut dx = Array2::from_elem(x.dim(), f32::NAN);
            conv_input_gradient(k, g, d.view(), w.view(), dx.view_mut(), rows);
            (y, gw, dx)
        })
    }

    #[test]
    fn the_grouped_passes_are_the_direct_convolution_and_its_gradients() {
        for (padding, stride) in [(Padding::Valid, 1), (Padding::Same, 2), (Padding::Same, 1)] {
            let g = Geometry::new([7, 6, 3], 3, stride, padding, 4).unwrap();
            // 37 images: groups of 16, 16 and 5.
            let rows = 37;
            assert_eq!((g.group_images(), g.groups(rows)), (16, 3));
            let x = Array2::from_shape_fn((rows, g.in_len()), |(r, i)| {
                ((r * 31 + i * 7) % 13) as f32 - 6.0
            });
            let w = Array2::from_shape_fn((g.patch(), 4), |(i, j)| ((i + 3 * j) % 5) as f32 - 2.0);
            let d = Array2::from_shape_fn((rows, g.out_len()), |(r, i)| {
                ((r * 3 + i * 5) % 7) as f32 - 3.0
            });
            let (y, gw, dx) = passes(&g, &x, &w, &d, 1);
            // Small integers: every sum is exact, so the comparisons are too.
            for r in 0..rows {
                let want: Vec<f32> = direct(&g, x.row(r).as_slice().unwrap(), &w)
                    .iter()
                    .map(|v| v + 0.5)
                    .collect();
                assert_eq!(
                    y.row(r).as_slice().unwrap(),
                    &want[..],
                    "{padding:?} {stride}"
                );
            }
            // The weight gradient: Σ over images of im2col(x)ᵀ · d.
            let per = g.out_pixels() * g.patch();
            let mut want = Array2::<f32>::zeros(w.dim());
            for r in 0..rows {
                let mut cols = vec![f32::NAN; per];
                im2col_one(&g, x.row(r).as_slice().unwrap(), &mut cols);
                let cols = Array2::from_shape_vec((g.out_pixels(), g.patch()), cols).unwrap();
                let dr = d.row(r).into_shape_with_order((g.out_pixels(), 4)).unwrap();
                want += &cols.t().dot(&dr);
            }
            assert_eq!(gw, want, "{padding:?} stride {stride}");
            // The input gradient is the adjoint of the linear part: <x·W, d> = <x, dx>.
            let lhs: f32 = y.iter().zip(d.iter()).map(|(a, b)| (a - 0.5) * b).sum();
            let rhs: f32 = x.iter().zip(dx.iter()).map(|(a, b)| a * b).sum();
            assert_eq!(lhs, rhs);
            // Two threads: the same bits.
            assert_eq!(passes(&g, &x, &w, &d, 2), (y, gw, dx));
        }
    }

    #[test]
    fn max_pooling_over_many_channels_matches_one_channel_at_a_time() {
        // 11 channels: a block of 8 and one of 3; ties, a NaN and -inf in the windows.
        let g = Geometry::new([5, 4, 11], 3, 2, Padding::Valid, 11).unwrap();
        let mut x =
            Array2::from_shape_fn((3, g.in_len()), |(r, i)| ((r * 7 + i * 5) % 9) as f32 - 4.0);
        x[[0, 3]] = f32::NAN;
        x[[1, 17]] = f32::NEG_INFINITY;
        for ch in 0..11 {
            x[[2, ch]] = f32::NEG_INFINITY;
            x[[2, 11 + ch]] = f32::NEG_INFINITY;
        }
        let mut out = Array2::zeros((3, g.out_len()));
        let mut arg = vec![0u32; 3 * g.out_len()];
        pool_forward(
            SpatialKind::MaxPool,
            &g,
            x.view(),
            out.view_mut(),
            &mut arg,
            3,
        );
        let [_, w, c] = g.input;
        let [oh, ow, _] = g.output;
        for r in 0..3 {
            for (oy, ox, ch) in
                (0..oh).flat_map(|a| (0..ow).flat_map(move |b| (0..c).map(move |ch| (a, b, ch))))
            {
                // The first maximum in window order (a NaN wins).
                let mut best: Option<(f32, usize)> = None;
                for ky in 0..3 {
                    for kx in 0..3 {
                        let i = ((oy * 2 + ky) * w + ox * 2 + kx) * c + ch;
                        let v = x[[r, i]];
                        best = match best {
                            Some((b, _)) if b.is_nan() => best,
                            Some((b, _)) if !(v > b || v.is_nan()) => best,
                            _ => Some((v, i)),
                        };
                    }
                }
                let (v, i) = best.unwrap();
                let o = (oy * ow + ox) * c + ch;
                assert_eq!(out[[r, o]].to_bits(), v.to_bits(), "image {r} output {o}");
                assert_eq!(arg[r * g.out_len() + o] as usize, i, "image {r} output {o}");
            }
        }
    }

    #[test]
    fn pooling_by_hand() {
        let g = Geometry::new([4, 4, 1], 2, 2, Padding::Valid, 1).unwrap();
        let x = Array2::from_shape_vec(
            (1, 16),
            vec![
                1., 2., 5., 6., //
                3., 4., 7., 8., //
                -1., -2., 0., 0., //
                -3., -4., 0., 9.,
            ],
        )
        .unwrap();
        let mut out = Array2::zeros((1, 4));
        let mut arg = vec![0u32; 4];
        pool_forward(
            SpatialKind::MaxPool,
            &g,
            x.view(),
            out.view_mut(),
            &mut arg,
            1,
        );
        assert_eq!(out.as_slice().unwrap(), &[4., 8., -1., 9.]);
        assert_eq!(arg, vec![5, 7, 8, 15]);
        let mut dx = Array2::zeros((1, 16));
        let dout = Array2::from_shape_vec((1, 4), vec![1., 2., 3., 4.]).unwrap();
        pool_backward(
            SpatialKind::MaxPool,
            &g,
            dout.view(),
            &arg,
            dx.view_mut(),
            1,
        );
        assert_eq!(dx[[0, 5]], 1.0);
        assert_eq!(dx[[0, 15]], 4.0);
        assert_eq!(dx.sum(), 10.0);
        pool_forward(
            SpatialKind::AvgPool,
            &g,
            x.view(),
            out.view_mut(),
            &mut arg,
            1,
        );
        assert_eq!(out.as_slice().unwrap(), &[2.5, 6.5, -2.5, 2.25]);
        pool_backward(
            SpatialKind::AvgPool,
            &g,
            dout.view(),
            &arg,
            dx.view_mut(),
            1,
        );
        assert_eq!(dx[[0, 0]], 0.25);
        assert_eq!(dx[[0, 15]], 1.0);
    }
}
