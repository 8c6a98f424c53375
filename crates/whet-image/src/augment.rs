//! The augmentation config ([`AugmentConfig`], YAML key `augment`), the built [`Augmenter`], and
//! its two modes: offline expansion ([`Augmenter::expand`]) and online batch filling
//! ([`Augmenter::fill`]).
//!
//! # Determinism
//! Every op node gets a fixed id (its position in a pre-order walk of the op tree). The
//! randomness of node `id` on sample `i` in epoch `e` comes from
//! `whet_core::rng::stream(seed, &[1, e, i, id])` and from nothing else, so an image's result
//! depends only on (seed, epoch, sample, config), never on threads or on the other samples.

use crate::buf::{Img, View, below, chance};
use crate::builder::probability;
use crate::color::{
    self, BlurConfig, BlurScratch, BrightnessConfig, ContrastConfig, ErasingConfig, GammaConfig,
};
use crate::error::{Error, Result};
use crate::geometric::{
    self, AffineConfig, AffineParams, ElasticConfig, ElasticScratch, FlipConfig, Mat,
    RandomCropConfig, RandomResizedCropConfig, ResizeScratch, RotateConfig, ScaleConfig,
    ShearConfig, TranslateConfig,
};
use crate::noise::{GaussianNoise, GaussianNoiseConfig, SaltPepperConfig, Speckle, SpeckleConfig};
use crate::set::{ImageSet, Normalizer};
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use whet_core::spec::{Issues, Probability};
use whet_core::{Rng, rng::stream};

fn p_one() -> Probability {
    Probability::ONE
}
fn one() -> usize {
    1
}

/// One augmentation op (YAML: a one-key map, `- rotate: { degrees: 12, p: 0.7 }`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OpConfig {
    /// Mirror left-right.
    Hflip(FlipConfig),
    /// Mirror top-bottom.
    Vflip(FlipConfig),
    /// Random rotation.
    Rotate(RotateConfig),
    /// Random shift.
    Translate(TranslateConfig),
    /// Random zoom.
    Scale(ScaleConfig),
    /// Random horizontal shear.
    Shear(ShearConfig),
    /// Rotation, shift, zoom and shear as one warp.
    Affine(AffineConfig),
    /// Random crop with padding.
    RandomCrop(RandomCropConfig),
    /// Random resized crop.
    RandomResizedCrop(RandomResizedCropConfig),
    /// Random brightness shift.
    Brightness(BrightnessConfig),
    /// Random contrast change.
    Contrast(ContrastConfig),
    /// Random gamma.
    Gamma(GammaConfig),
    /// Gaussian blur.
    GaussianBlur(BlurConfig),
    /// Elastic distortion (Simard et al. 2003).
    Elastic(ElasticConfig),
    /// Random erasing (cutout).
    #[serde(alias = "cutout")]
    Erasing(ErasingConfig),
    /// Additive Gaussian noise.
    GaussianNoise(GaussianNoiseConfig),
    /// Salt-and-pepper noise.
    SaltAndPepper(SaltPepperConfig),
    /// Multiplicative speckle noise.
    Speckle(SpeckleConfig),
    /// Apply one op chosen uniformly from `ops`.
    OneOf(OneOfConfig),
    /// Apply `n` distinct ops chosen uniformly from `ops`, in list order.
    SomeOf(SomeOfConfig),
}

/// `one_of`: with probability `p`, apply one op chosen uniformly from `ops`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OneOfConfig {
    /// The candidates (at least one).
    pub ops: Vec<OpConfig>,
    /// Probability of applying one of them. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

impl OneOfConfig {
    /// One op chosen uniformly from `ops` (at least one, checked by validation), `p` 1.
    pub fn new(ops: Vec<OpConfig>) -> Self {
        Self { ops, p: p_one() }
    }

    /// Sets the probability of applying the choice.
    ///
    /// # Panics
    /// When `p` is not in `[0, 1]`.
    #[track_caller]
    pub fn with_p(mut self, p: f64) -> Self {
        self.p = probability(p, "p");
        self
    }
}

/// `some_of`: with probability `p`, apply `n` distinct ops chosen uniformly from `ops`, in
/// their list order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SomeOfConfig {
    /// How many to apply (`1 <= n <= ops.len()`).
    pub n: usize,
    /// The candidates (at most 64).
    pub ops: Vec<OpConfig>,
    /// Probability of applying them. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

impl SomeOfConfig {
    /// `n` distinct ops chosen uniformly from `ops` (`1 <= n <= ops.len() <= 64`, checked by
    /// validation), `p` 1.
    pub fn new(n: usize, ops: Vec<OpConfig>) -> Self {
        Self { n, ops, p: p_one() }
    }

    /// Sets the probability of applying the choice.
    ///
    /// # Panics
    /// When `p` is not in `[0, 1]`.
    #[track_caller]
    pub fn with_p(mut self, p: f64) -> Self {
        self.p = probability(p, "p");
        self
    }
}

/// When augmentation happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AugmentMode {
    /// Fresh draws every epoch while training.
    #[default]
    Online,
    /// The training set is expanded once by `copies` augmented copies (originals kept).
    Offline,
}

/// The `augment` section of a run file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// `online` (default) or `offline`.
    #[serde(default)]
    pub mode: AugmentMode,
    /// Offline only: augmented copies per training image. Default 1.
    #[serde(default = "one")]
    pub copies: usize,
    /// The ops, applied in order. Default: none.
    #[serde(default)]
    pub ops: Vec<OpConfig>,
    /// Offline only: fit the image normalisation (`data.images.normalize`) on the training set
    /// with its augmented copies instead of on the original training images. Default false: the
    /// statistics describe the real images, and validation and test are never augmented.
    #[serde(default)]
    pub fit_normalizer_on_copies: bool,
}

impl Default for AugmentConfig {
    /// Online, no ops (`copies` 1), as `{}` in YAML.
    fn default() -> Self {
        Self {
            mode: AugmentMode::Online,
            copies: 1,
            ops: Vec::new(),
            fit_normalizer_on_copies: false,
        }
    }
}

/// Building the config in Rust instead of reading it from YAML. This is the same config as
///
/// ```yaml
/// augment:
///   ops:
///     - hflip: { p: 0.5 }
///     - rotate: { degrees: 12, p: 0.7 }
///     - gaussian_noise: { std: 0.05 }
/// ```
///
/// ```
/// use whet_image::geometric::{FlipConfig, RotateConfig};
/// use whet_image::noise::GaussianNoiseConfig;
/// use whet_image::{AugmentConfig, Augmenter, OpConfig};
///
/// let cfg = AugmentConfig::online()
///     .with_op(OpConfig::Hflip(FlipConfig::new().with_p(0.5)))
///     .with_op(RotateConfig::new(12.0).with_p(0.7))
///     .with_op(GaussianNoiseConfig::new(0.05));
/// assert!(cfg.validate().is_empty());
/// let augmenter = Augmenter::new(&cfg, 42, 28, 28, 1).unwrap();
/// assert_eq!(augmenter.op_labels().len(), 3);
///
/// // Offline: the training set plus 4 augmented copies of every image.
/// let offline = AugmentConfig::offline(4).with_op(OpConfig::hflip());
/// assert_eq!(offline.copies, 4);
/// ```
impl AugmentConfig {
    /// Fresh draws every epoch, no ops yet: the same as [`AugmentConfig::default`].
    pub fn online() -> Self {
        Self::default()
    }

    /// Expand the training set once by `copies` augmented copies of every image
    /// (`1 <= copies <= 1000`, checked by validation), no ops yet.
    pub fn offline(copies: usize) -> Self {
        Self {
            mode: AugmentMode::Offline,
            copies,
            ..Self::default()
        }
    }

    /// Offline only: fit the normalisation on the training set with its augmented copies
    /// (see [`AugmentConfig::fit_normalizer_on_copies`]).
    pub fn with_fit_normalizer_on_copies(mut self, on: bool) -> Self {
        self.fit_normalizer_on_copies = on;
        self
    }

    /// Appends an op: an [`OpConfig`] or any op config (`RotateConfig::new(12.0)`).
    pub fn with_op(mut self, op: impl Into<OpConfig>) -> Self {
        self.ops.push(op.into());
        self
    }
}

/// `From<XConfig> for OpConfig` for every op config that belongs to one variant (the flips share
/// [`FlipConfig`]: use [`OpConfig::hflip`], [`OpConfig::vflip`] or the variants).
macro_rules! op_from {
    ($($config:ty => $variant:ident),* $(,)?) => {$(
        impl From<$config> for OpConfig {
            fn from(c: $config) -> Self {
                OpConfig::$variant(c)
            }
        }
    )*};
}

op_from!(
    RotateConfig => Rotate,
    TranslateConfig => Translate,
    ScaleConfig => Scale,
    ShearConfig => Shear,
    AffineConfig => Affine,
    RandomCropConfig => RandomCrop,
    RandomResizedCropConfig => RandomResizedCrop,
    BrightnessConfig => Brightness,
    ContrastConfig => Contrast,
    GammaConfig => Gamma,
    BlurConfig => GaussianBlur,
    ElasticConfig => Elastic,
    ErasingConfig => Erasing,
    GaussianNoiseConfig => GaussianNoise,
    SaltPepperConfig => SaltAndPepper,
    SpeckleConfig => Speckle,
    OneOfConfig => OneOf,
    SomeOfConfig => SomeOf,
);

impl OpConfig {
    /// Mirror left-right, always (`- hflip: {}`).
    pub fn hflip() -> Self {
        OpConfig::Hflip(FlipConfig::new())
    }

    /// Mirror top-bottom, always (`- vflip: {}`).
    pub fn vflip() -> Self {
        OpConfig::Vflip(FlipConfig::new())
    }

    /// The op's YAML name (`rotate`, `one_of`…).
    pub fn name(&self) -> &'static str {
        match self {
            OpConfig::Hflip(_) => "hflip",
            OpConfig::Vflip(_) => "vflip",
            OpConfig::Rotate(_) => "rotate",
            OpConfig::Translate(_) => "translate",
            OpConfig::Scale(_) => "scale",
            OpConfig::Shear(_) => "shear",
            OpConfig::Affine(_) => "affine",
            OpConfig::RandomCrop(_) => "random_crop",
            OpConfig::RandomResizedCrop(_) => "random_resized_crop",
            OpConfig::Brightness(_) => "brightness",
            OpConfig::Contrast(_) => "contrast",
            OpConfig::Gamma(_) => "gamma",
            OpConfig::GaussianBlur(_) => "gaussian_blur",
            OpConfig::Elastic(_) => "elastic",
            OpConfig::Erasing(_) => "erasing",
            OpConfig::GaussianNoise(_) => "gaussian_noise",
            OpConfig::SaltAndPepper(_) => "salt_and_pepper",
            OpConfig::Speckle(_) => "speckle",
            OpConfig::OneOf(_) => "one_of",
            OpConfig::SomeOf(_) => "some_of",
        }
    }

    /// A short label with the main parameters, for previews and logs.
    pub fn label(&self) -> String {
        match self {
            OpConfig::Rotate(c) => format!("rotate ±{}°", c.degrees),
            OpConfig::Translate(c) => match (c.pixels, c.fraction) {
                (Some(px), _) => format!("translate ±{px}px"),
                (_, Some(f)) => format!("translate ±{f}"),
                _ => "translate".into(),
            },
            OpConfig::Scale(c) => format!("scale {}-{}", c.range[0], c.range[1]),
            OpConfig::Shear(c) => format!("shear ±{}°", c.degrees),
            OpConfig::Elastic(c) => format!("elastic a={} s={}", c.alpha, c.sigma),
            OpConfig::GaussianNoise(c) => format!("noise σ={}", c.std),
            OpConfig::SaltAndPepper(c) => format!("s&p {}", c.amount),
            OpConfig::Speckle(c) => format!("speckle σ={}", c.std),
            OpConfig::GaussianBlur(c) => format!("blur σ={}-{}", c.sigma[0], c.sigma[1]),
            OpConfig::OneOf(c) => format!(
                "one_of({})",
                c.ops.iter().map(|o| o.name()).collect::<Vec<_>>().join("|")
            ),
            OpConfig::SomeOf(c) => format!(
                "some_of {}({})",
                c.n,
                c.ops.iter().map(|o| o.name()).collect::<Vec<_>>().join("|")
            ),
            other => other.name().to_string(),
        }
    }

    /// Cross-field checks, with paths relative to this op (`rotate.degrees`).
    pub fn validate(&self) -> Issues {
        let mut out = Issues::new();
        let inner = match self {
            OpConfig::Translate(c) => c.validate(),
            OpConfig::Scale(c) => c.validate(),
            OpConfig::Shear(c) => c.validate(),
            OpConfig::Affine(c) => c.validate(),
            OpConfig::RandomResizedCrop(c) => c.validate(),
            OpConfig::RandomCrop(c) => {
                let mut i = Issues::new();
                crate::geometric::check_output_size(&mut i, c.width, c.height);
                i.check(c.padding <= 10_000, "padding", || {
                    format!("expected at most 10000 pixels, found {}", c.padding)
                });
                i
            }
            OpConfig::Contrast(c) => c.validate(),
            OpConfig::Gamma(c) => c.validate(),
            OpConfig::GaussianBlur(c) => c.validate(),
            OpConfig::Elastic(c) => c.validate(),
            OpConfig::Erasing(c) => c.validate(),
            OpConfig::GaussianNoise(c) => c.validate(),
            OpConfig::OneOf(c) => {
                let mut i = Issues::new();
                i.check(!c.ops.is_empty(), "ops", || {
                    "one_of needs at least one op".into()
                });
                for (k, op) in c.ops.iter().enumerate() {
                    i.nest(&format!("ops[{k}]"), op.validate());
                }
                i
            }
            OpConfig::SomeOf(c) => {
                let mut i = Issues::new();
                i.check(c.n >= 1 && c.n <= c.ops.len(), "n", || {
                    format!(
                        "expected 1 <= n <= {} (the number of ops), found {}",
                        c.ops.len(),
                        c.n
                    )
                });
                i.check(c.ops.len() <= 64, "ops", || {
                    format!("some_of takes at most 64 ops, found {}", c.ops.len())
                });
                for (k, op) in c.ops.iter().enumerate() {
                    i.nest(&format!("ops[{k}]"), op.validate());
                }
                i
            }
            _ => Issues::new(),
        };
        out.nest(self.name(), inner);
        out
    }
}

impl AugmentConfig {
    /// Cross-field checks, with paths like `ops[2].rotate.degrees`.
    pub fn validate(&self) -> Issues {
        let mut i = Issues::new();
        for (k, op) in self.ops.iter().enumerate() {
            i.nest(&format!("ops[{k}]"), op.validate());
        }
        i.check(self.copies >= 1 && self.copies <= 1000, "copies", || {
            format!("expected 1 <= copies <= 1000, found {}", self.copies)
        });
        i.check(
            !self.fit_normalizer_on_copies || self.mode == AugmentMode::Offline,
            "fit_normalizer_on_copies",
            || {
                "needs `mode: offline`: online copies are drawn afresh every epoch, so there is no fixed set to fit on".into()
            },
        );
        i
    }
}

/// A built op.
#[derive(Debug)]
enum Kind {
    Hflip,
    Vflip,
    Affine {
        params: AffineParams,
        fill: u8,
    },
    RandomCrop(RandomCropConfig),
    RandomResizedCrop(RandomResizedCropConfig),
    Brightness(BrightnessConfig),
    Contrast(ContrastConfig),
    Gamma(GammaConfig),
    Blur(BlurConfig),
    Elastic {
        cfg: ElasticConfig,
        kernel: Vec<f32>,
    },
    Erasing(ErasingConfig),
    Noise(GaussianNoise),
    SaltPepper(f64),
    Speckle(Speckle),
    OneOf(Vec<Node>),
    SomeOf(usize, Vec<Node>),
}

#[derive(Debug)]
struct Node {
    id: u64,
    p: f64,
    kind: Kind,
}

/// Per-thread working memory of an [`Augmenter`]: ping-pong image buffers and the ops' scratch.
/// Reused across calls, so steady-state augmentation does not allocate.
#[derive(Debug, Default)]
pub struct Scratch {
    a: Img,
    b: Img,
    resize: ResizeScratch,
    elastic: ElasticScratch,
    blur: BlurScratch,
    tails: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A built augmentation pipeline for images of one input shape.
#[derive(Debug)]
pub struct Augmenter {
    nodes: Vec<Node>,
    labels: Vec<String>,
    seed: u64,
    input: (usize, usize, usize),
    output: (usize, usize, usize),
}

/// Where the current image lives while a pipeline runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Loc {
    Src,
    A,
}

impl Augmenter {
    /// Builds `cfg` for `h × w × c` inputs with `seed`.
    ///
    /// # Errors
    /// [`Error::Config`] with every validation issue, or when ops disagree on shapes (a crop
    /// larger than its input, branches of `one_of`/`some_of` that change the size).
    pub fn new(cfg: &AugmentConfig, seed: u64, h: usize, w: usize, c: usize) -> Result<Self> {
        Self::from_ops(&cfg.ops, seed, h, w, c)
    }

    /// Builds a list of ops (see [`Augmenter::new`]).
    ///
    /// # Errors
    /// As [`Augmenter::new`].
    pub fn from_ops(ops: &[OpConfig], seed: u64, h: usize, w: usize, c: usize) -> Result<Self> {
        let mut issues = Issues::new();
        for (k, op) in ops.iter().enumerate() {
            issues.nest(&format!("ops[{k}]"), op.validate());
        }
        if !issues.is_empty() {
            return Err(Error::Config(
                issues
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        if c != 1 && c != 3 || h == 0 || w == 0 {
            return Err(Error::Config(format!(
                "input images must be non-empty with 1 or 3 channels, found {h}x{w}x{c}"
            )));
        }
        let mut next_id = 0;
        let mut shape = (h, w, c);
        let mut nodes = Vec::with_capacity(ops.len());
        for (k, op) in ops.iter().enumerate() {
            let (node, s) = build(op, &mut next_id, shape)
                .map_err(|m| Error::Config(format!("ops[{k}].{}: {m}", op.name())))?;
            shape = s;
            nodes.push(node);
        }
        Ok(Self {
            nodes,
            labels: ops.iter().map(|o| o.label()).collect(),
            seed,
            input: (h, w, c),
            output: shape,
        })
    }

    /// Output `(h, w, c)`.
    pub fn output_shape(&self) -> (usize, usize, usize) {
        self.output
    }

    /// Input `(h, w, c)`.
    pub fn input_shape(&self) -> (usize, usize, usize) {
        self.input
    }

    /// One short label per top-level op (`rotate ±12°`…).
    pub fn op_labels(&self) -> &[String] {
        &self.labels
    }

    /// Augments one image (HWC bytes of the input shape) for `(epoch, sample)`. The result lives
    /// in `scratch` (or is `image` itself when no op changed it).
    ///
    /// # Panics
    /// When `image` does not have the input shape's length.
    pub fn apply<'a>(
        &self,
        image: &'a [u8],
        epoch: u64,
        sample: u64,
        scratch: &'a mut Scratch,
    ) -> &'a [u8] {
        let (h, w, c) = self.input;
        let src = View::new(h, w, c, image);
        match self.run(&self.nodes, src, Loc::Src, epoch, sample, scratch) {
            Loc::Src => image,
            Loc::A => &scratch.a.data,
        }
    }

    /// Augments one image into a new [`Img`] (allocates; for tests and previews).
    ///
    /// # Panics
    /// As [`Augmenter::apply`].
    pub fn apply_to_img(&self, image: &[u8], epoch: u64, sample: u64) -> Img {
        let mut s = Scratch::default();
        let out = self.apply(image, epoch, sample, &mut s).to_vec();
        let (h, w, c) = self.output;
        Img::from_vec(h, w, c, out)
    }

    fn run(
        &self,
        nodes: &[Node],
        src: View<'_>,
        mut loc: Loc,
        epoch: u64,
        sample: u64,
        s: &mut Scratch,
    ) -> Loc {
        let mut i = 0;
        while i < nodes.len() {
            // Fuse a run of consecutive affine ops with the same fill into one warp.
            if let Kind::Affine { fill, .. } = nodes[i].kind {
                let mut m = Mat::IDENTITY;
                let mut any = false;
                let (h, w) = match loc {
                    Loc::Src => (src.h, src.w),
                    Loc::A => (s.a.h, s.a.w),
                };
                while i < nodes.len() {
                    let Kind::Affine { params, fill: f } = &nodes[i].kind else {
                        break;
                    };
                    if *f != fill {
                        break;
                    }
                    let mut rng = self.rng(epoch, sample, nodes[i].id);
                    if let Some(mi) =
                        geometric::draw_affine_or_identity(params, nodes[i].p, &mut rng, h, w)
                    {
                        m = mi.after(&m);
                        any = true;
                    }
                    i += 1;
                }
                if any {
                    let cur = cur_view(src, loc, &s.a);
                    geometric::warp_affine(cur, &mut s.b, &m, fill);
                    std::mem::swap(&mut s.a, &mut s.b);
                    loc = Loc::A;
                }
                continue;
            }
            // Fuse `brightness` followed by `contrast` into one pass (the same bytes as two).
            if let (
                Kind::Brightness(bc),
                Some(Node {
                    kind: Kind::Contrast(cc),
                    ..
                }),
            ) = (&nodes[i].kind, nodes.get(i + 1))
            {
                let mut rb = self.rng(epoch, sample, nodes[i].id);
                let delta =
                    chance(&mut rb, nodes[i].p).then(|| color::draw_brightness(bc, &mut rb));
                let mut rc = self.rng(epoch, sample, nodes[i + 1].id);
                let f = chance(&mut rc, nodes[i + 1].p).then(|| color::draw_contrast(cc, &mut rc));
                if delta.is_some() || f.is_some() {
                    let cur = cur_view(src, loc, &s.a);
                    let simd = crate::simd::Simd::detect();
                    match f {
                        Some(f) => {
                            color::brightness_contrast(simd, cur, &mut s.b, delta.unwrap_or(0), f)
                        }
                        None => {
                            s.b.reshape(cur.h, cur.w, cur.c);
                            color::add_bytes(simd, cur.data, &mut s.b.data, delta.unwrap_or(0));
                        }
                    }
                    std::mem::swap(&mut s.a, &mut s.b);
                    loc = Loc::A;
                }
                i += 2;
                continue;
            }
            loc = self.step(&nodes[i], src, loc, epoch, sample, s);
            i += 1;
        }
        loc
    }

    fn rng(&self, epoch: u64, sample: u64, id: u64) -> Rng {
        stream(self.seed, &[1, epoch, sample, id])
    }

    fn step(
        &self,
        node: &Node,
        src: View<'_>,
        loc: Loc,
        epoch: u64,
        sample: u64,
        s: &mut Scratch,
    ) -> Loc {
        let mut rng = self.rng(epoch, sample, node.id);
        let apply = chance(&mut rng, node.p);
        let Scratch {
            a,
            b,
            resize,
            elastic,
            blur,
            tails,
        } = s;
        let cur = cur_view(src, loc, a);
        match &node.kind {
            // Size-changing ops always run (a skipped crop takes the centre window).
            Kind::RandomCrop(c) => geometric::random_crop(c, cur, b, &mut rng, apply),
            Kind::RandomResizedCrop(c) => {
                geometric::random_resized_crop(c, cur, b, &mut rng, apply, resize)
            }
            _ if !apply => return loc,
            Kind::Hflip => geometric::hflip(cur, b),
            Kind::Vflip => geometric::vflip(cur, b),
            Kind::Affine { params, fill } => {
                let m = params.draw(&mut rng, cur.h, cur.w);
                geometric::warp_affine(cur, b, &m, *fill);
            }
            Kind::Brightness(c) => color::brightness(c, cur, b, &mut rng),
            Kind::Contrast(c) => color::contrast(c, cur, b, &mut rng),
            Kind::Gamma(c) => color::gamma(c, cur, b, &mut rng),
            Kind::Blur(c) => color::blur(c, cur, b, &mut rng, blur),
            Kind::Elastic { cfg, kernel } => {
                geometric::elastic(cfg, kernel, cur, b, &mut rng, elastic)
            }
            Kind::Erasing(c) => {
                b.copy_from(cur.data, cur.h, cur.w, cur.c);
                color::erase(c, b, &mut rng);
            }
            Kind::Noise(n) => n.apply(cur, b, &mut rng, tails),
            Kind::SaltPepper(amount) => crate::noise::salt_and_pepper(cur, b, *amount, &mut rng),
            Kind::Speckle(n) => n.apply(cur, b, &mut rng, tails),
            Kind::OneOf(ops) => {
                let k = below(&mut rng, ops.len());
                return self.run(std::slice::from_ref(&ops[k]), src, loc, epoch, sample, s);
            }
            Kind::SomeOf(n, ops) => {
                // Partial Fisher-Yates on a stack array (ops.len() <= 64), then list order.
                let mut idx = [0u8; 64];
                for (j, v) in idx.iter_mut().enumerate().take(ops.len()) {
                    *v = j as u8;
                }
                for j in 0..*n {
                    let r = j + below(&mut rng, ops.len() - j);
                    idx.swap(j, r);
                }
                let chosen = &mut idx[..*n];
                chosen.sort_unstable();
                let mut l = loc;
                for &k in chosen.iter() {
                    l = self.run(
                        std::slice::from_ref(&ops[k as usize]),
                        src,
                        l,
                        epoch,
                        sample,
                        s,
                    );
                }
                return l;
            }
        }
        std::mem::swap(a, b);
        Loc::A
    }

    /// Offline mode: the originals followed by `copies` augmented copies of every image (copy
    /// `k` of image `i` uses epoch `k`, sample `i`), computed in parallel.
    ///
    /// # Errors
    /// [`Error::Shape`] when `set` does not have the input shape, or the ops change the image
    /// size (the originals and the copies must share one shape); [`Error::Budget`] when the
    /// expanded set does not fit in the memory budget.
    pub fn expand(&self, set: &ImageSet, copies: usize) -> Result<ImageSet> {
        self.check_set(set, "expand")?;
        if self.output != self.input {
            return Err(Error::Shape {
                op: "expand",
                message: format!(
                    "offline expansion keeps the originals, so ops must keep the size {:?}; they give {:?}",
                    self.input, self.output
                ),
            });
        }
        let n = set.len();
        let len = set.image_len();
        crate::set::check_set_memory(
            &format!("the training set with {copies} offline copies"),
            n.saturating_mul(copies.saturating_add(1)),
            (set.h(), set.w(), set.c()),
            "augment.copies",
        )?;
        let mut pixels = vec![0u8; n * (copies + 1) * len];
        pixels[..n * len].copy_from_slice(set.pixels());
        pixels[n * len..]
            .par_chunks_mut(len)
            .enumerate()
            .for_each(|(j, out)| {
                let (k, i) = (j / n, j % n);
                SCRATCH.with(|s| {
                    let mut s = s.borrow_mut();
                    out.copy_from_slice(self.apply(set.image(i), k as u64, i as u64, &mut s));
                });
            });
        let mut labels = Vec::with_capacity(n * (copies + 1));
        for _ in 0..=copies {
            labels.extend_from_slice(set.labels());
        }
        ImageSet::new(
            set.h(),
            set.w(),
            set.c(),
            pixels,
            labels,
            set.class_names().to_vec(),
        )
    }

    /// Online mode: writes the augmented, normalised images `indices` of `set` for `epoch` into
    /// `x` (row-major `[indices.len(), h*w*c]` of the output shape) and their labels into
    /// `labels`, in parallel with rayon. Each rayon thread keeps its own [`Scratch`], so in steady
    /// state this does not allocate.
    ///
    /// # Shapes
    /// `x.len() == indices.len() * out_h * out_w * out_c`, `labels.len() == indices.len()`.
    ///
    /// # Errors
    /// [`Error::Shape`] for wrong buffer lengths, a set of another shape, an index out of range,
    /// or a normaliser with another channel count.
    pub fn fill(
        &self,
        set: &ImageSet,
        norm: &Normalizer,
        epoch: u64,
        indices: &[usize],
        x: &mut [f32],
        labels: &mut [u32],
    ) -> Result<()> {
        self.check_set(set, "fill")?;
        let (h, w, c) = self.output;
        let dim = h * w * c;
        if x.len() != indices.len() * dim || labels.len() != indices.len() {
            return Err(Error::Shape {
                op: "fill",
                message: format!(
                    "x has {} values and labels {} for {} indices of dimension {dim}",
                    x.len(),
                    labels.len(),
                    indices.len()
                ),
            });
        }
        if norm.scale().len() != c {
            return Err(Error::Shape {
                op: "fill",
                message: format!(
                    "normaliser for {} channels, images have {c}",
                    norm.scale().len()
                ),
            });
        }
        if let Some(&bad) = indices.iter().find(|&&i| i >= set.len()) {
            return Err(Error::Shape {
                op: "fill",
                message: format!("index {bad} out of range for a set of {} images", set.len()),
            });
        }
        for (l, &i) in labels.iter_mut().zip(indices) {
            *l = set.labels()[i];
        }
        self.fill_with(|i| set.image(i), norm, epoch, indices, x);
        Ok(())
    }

    /// [`Augmenter::fill`] for images that are not in one set: `image(i)` gives sample `i`'s
    /// pixels (of the input shape), which are augmented with the streams of sample `i`, so a
    /// streaming reader gets the rows [`Augmenter::fill`] gives for the same samples. The caller
    /// checks the shapes (`x` holds one output row per index).
    pub fn fill_with<'a>(
        &self,
        image: impl Fn(usize) -> &'a [u8] + Sync,
        norm: &Normalizer,
        epoch: u64,
        indices: &[usize],
        x: &mut [f32],
    ) {
        let (h, w, c) = self.output;
        x.par_chunks_mut(h * w * c)
            .zip(indices.par_iter())
            .for_each(|(row, &i)| {
                SCRATCH.with(|s| {
                    let mut s = s.borrow_mut();
                    let out = self.apply(image(i), epoch, i as u64, &mut s);
                    norm.apply(out, row);
                });
            });
    }

    fn check_set(&self, set: &ImageSet, op: &'static str) -> Result<()> {
        if set.shape() != self.input {
            return Err(Error::Shape {
                op,
                message: format!(
                    "set of {}x{}x{} images, augmenter built for {:?}",
                    set.h(),
                    set.w(),
                    set.c(),
                    self.input
                ),
            });
        }
        Ok(())
    }
}

fn cur_view<'a>(src: View<'a>, loc: Loc, a: &'a Img) -> View<'a> {
    match loc {
        Loc::Src => src,
        Loc::A => a.view(),
    }
}

type Shape = (usize, usize, usize);

fn build(
    op: &OpConfig,
    next_id: &mut u64,
    shape: Shape,
) -> std::result::Result<(Node, Shape), String> {
    let id = *next_id;
    *next_id += 1;
    let (h, w, c) = shape;
    let node = |p: Probability, kind| Node {
        id,
        p: p.get(),
        kind,
    };
    let affine = |p: Probability, params, fill| node(p, Kind::Affine { params, fill });
    Ok(match op {
        OpConfig::Hflip(f) => (node(f.p, Kind::Hflip), shape),
        OpConfig::Vflip(f) => (node(f.p, Kind::Vflip), shape),
        OpConfig::Rotate(r) => (affine(r.p, AffineParams::rotate(r), r.fill), shape),
        OpConfig::Translate(t) => (affine(t.p, AffineParams::translate(t), t.fill), shape),
        OpConfig::Scale(t) => (affine(t.p, AffineParams::scale(t), t.fill), shape),
        OpConfig::Shear(t) => (affine(t.p, AffineParams::shear(t), t.fill), shape),
        OpConfig::Affine(t) => (affine(t.p, AffineParams::affine(t), t.fill), shape),
        OpConfig::RandomCrop(k) => {
            if k.height > h + 2 * k.padding || k.width > w + 2 * k.padding {
                return Err(format!(
                    "crop {}x{} is larger than the padded input {}x{}",
                    k.height,
                    k.width,
                    h + 2 * k.padding,
                    w + 2 * k.padding
                ));
            }
            (
                node(k.p, Kind::RandomCrop(k.clone())),
                (k.height, k.width, c),
            )
        }
        OpConfig::RandomResizedCrop(k) => (
            node(k.p, Kind::RandomResizedCrop(k.clone())),
            (k.height, k.width, c),
        ),
        OpConfig::Brightness(k) => (node(k.p, Kind::Brightness(k.clone())), shape),
        OpConfig::Contrast(k) => (node(k.p, Kind::Contrast(k.clone())), shape),
        OpConfig::Gamma(k) => (node(k.p, Kind::Gamma(k.clone())), shape),
        OpConfig::GaussianBlur(k) => (node(k.p, Kind::Blur(k.clone())), shape),
        OpConfig::Elastic(k) => {
            let mut kernel = Vec::new();
            geometric::gaussian_kernel(k.sigma.get(), &mut kernel);
            (
                node(
                    k.p,
                    Kind::Elastic {
                        cfg: k.clone(),
                        kernel,
                    },
                ),
                shape,
            )
        }
        OpConfig::Erasing(k) => (node(k.p, Kind::Erasing(k.clone())), shape),
        OpConfig::GaussianNoise(k) => (
            node(k.p, Kind::Noise(GaussianNoise::new(k.mean, k.std.get()))),
            shape,
        ),
        OpConfig::SaltAndPepper(k) => (node(k.p, Kind::SaltPepper(k.amount.get())), shape),
        OpConfig::Speckle(k) => (node(k.p, Kind::Speckle(Speckle::new(k.std.get()))), shape),
        OpConfig::OneOf(k) => {
            let mut ops = Vec::new();
            for (j, o) in k.ops.iter().enumerate() {
                let (n, s) = build(o, next_id, shape)?;
                if s != shape {
                    return Err(format!(
                        "ops[{j}] changes the size to {s:?}; one_of branches must keep {shape:?}"
                    ));
                }
                ops.push(n);
            }
            (node(k.p, Kind::OneOf(ops)), shape)
        }
        OpConfig::SomeOf(k) => {
            let mut ops = Vec::new();
            for (j, o) in k.ops.iter().enumerate() {
                let (n, s) = build(o, next_id, shape)?;
                if s != shape {
                    return Err(format!(
                        "ops[{j}] changes the size to {s:?}; some_of branches must keep {shape:?}"
                    ));
                }
                ops.push(n);
            }
            (node(k.p, Kind::SomeOf(k.n, ops)), shape)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(yaml_like: Vec<OpConfig>) -> Augmenter {
        Augmenter::from_ops(&yaml_like, 5, 8, 8, 1).unwrap()
    }

    #[test]
    fn fused_brightness_contrast_is_the_ops_one_by_one() {
        let cfg: Vec<OpConfig> = serde_json::from_str(
            r#"[{"brightness": {"limit": 0.4, "p": 0.7}}, {"contrast": {"limit": 0.5, "p": 0.7}}]"#,
        )
        .unwrap();
        let (h, w, c) = (9, 13, 3);
        let a = Augmenter::from_ops(&cfg, 11, h, w, c).unwrap();
        let img: Vec<u8> = (0..h * w * c).map(|i| (i * 37 % 251) as u8).collect();
        let src = View::new(h, w, c, &img);
        let (mut fused_s, mut plain_s) = (Scratch::default(), Scratch::default());
        let mut changed = 0;
        for sample in 0..64 {
            let fused = a.apply(&img, 3, sample, &mut fused_s).to_vec();
            let mut loc = Loc::Src;
            for node in &a.nodes {
                loc = a.step(node, src, loc, 3, sample, &mut plain_s);
            }
            let plain = match loc {
                Loc::Src => &img[..],
                Loc::A => &plain_s.a.data[..],
            };
            assert_eq!(fused, plain, "sample {sample}");
            changed += usize::from(fused != img);
        }
        // Both ops ran, alone and together, for some samples.
        assert!(changed > 40, "{changed}");
    }

    #[test]
    fn empty_pipeline_returns_the_input() {
        let a = ops(vec![]);
        let img: Vec<u8> = (0..64).collect();
        let mut s = Scratch::default();
        assert_eq!(a.apply(&img, 0, 0, &mut s), &img[..]);
    }

    #[test]
    fn probability_zero_skips() {
        let a = ops(vec![OpConfig::Hflip(FlipConfig {
            p: Probability::new(0.0).unwrap(),
        })]);
        let img: Vec<u8> = (0..64).collect();
        assert_eq!(a.apply_to_img(&img, 0, 3).data, img);
    }

    #[test]
    fn some_of_bad_n_is_rejected() {
        let cfg = OpConfig::SomeOf(SomeOfConfig {
            n: 3,
            ops: vec![OpConfig::Hflip(FlipConfig {
                p: Probability::ONE,
            })],
            p: Probability::ONE,
        });
        let e = Augmenter::from_ops(&[cfg], 0, 8, 8, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ops[0].some_of.n"), "{e}");
    }

    #[test]
    fn crop_larger_than_input_is_rejected() {
        let cfg = OpConfig::RandomCrop(RandomCropConfig {
            width: 20,
            height: 8,
            padding: 2,
            fill: 0,
            p: Probability::ONE,
        });
        let e = Augmenter::from_ops(&[cfg], 0, 8, 8, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than the padded input"), "{e}");
    }

    #[test]
    fn builders_match_serde_defaults() {
        use crate::builder::assert_same_as_json;
        assert_same_as_json(&AugmentConfig::default(), "{}");
        assert_same_as_json(&AugmentConfig::online(), "{}");
        assert_same_as_json(
            &AugmentConfig::offline(3),
            r#"{"mode": "offline", "copies": 3}"#,
        );
        assert_same_as_json(
            &OneOfConfig::new(vec![OpConfig::hflip()]).with_p(0.5),
            r#"{"ops": [{"hflip": {}}], "p": 0.5}"#,
        );
        assert_same_as_json(
            &SomeOfConfig::new(1, vec![OpConfig::vflip()]),
            r#"{"n": 1, "ops": [{"vflip": {}}]}"#,
        );
    }

    #[test]
    fn every_op_config_converts_to_its_variant() {
        use crate::builder::assert_same_as_json;
        let cfg = AugmentConfig::online()
            .with_op(OpConfig::hflip())
            .with_op(OpConfig::vflip())
            .with_op(RotateConfig::new(1.0))
            .with_op(TranslateConfig::pixels(1.0))
            .with_op(ScaleConfig::new([1.0, 1.0]))
            .with_op(ShearConfig::new(1.0))
            .with_op(AffineConfig::new())
            .with_op(RandomCropConfig::new(2, 2))
            .with_op(RandomResizedCropConfig::new(2, 2))
            .with_op(BrightnessConfig::new(0.1))
            .with_op(ContrastConfig::new(0.1))
            .with_op(GammaConfig::new([1.0, 1.0]))
            .with_op(BlurConfig::new([1.0, 1.0]))
            .with_op(ElasticConfig::new(1.0, 1.0))
            .with_op(ErasingConfig::new())
            .with_op(GaussianNoiseConfig::new(0.1))
            .with_op(SaltPepperConfig::new(0.1))
            .with_op(SpeckleConfig::new(0.1))
            .with_op(OneOfConfig::new(vec![OpConfig::hflip()]))
            .with_op(SomeOfConfig::new(1, vec![OpConfig::hflip()]));
        assert_same_as_json(
            &cfg,
            r#"{"ops": [
                {"hflip": {}}, {"vflip": {}}, {"rotate": {"degrees": 1}},
                {"translate": {"pixels": 1}}, {"scale": {"range": [1, 1]}},
                {"shear": {"degrees": 1}}, {"affine": {}},
                {"random_crop": {"width": 2, "height": 2}},
                {"random_resized_crop": {"width": 2, "height": 2}},
                {"brightness": {"limit": 0.1}}, {"contrast": {"limit": 0.1}},
                {"gamma": {"range": [1, 1]}}, {"gaussian_blur": {"sigma": [1, 1]}},
                {"elastic": {"alpha": 1, "sigma": 1}}, {"erasing": {}},
                {"gaussian_noise": {"std": 0.1}}, {"salt_and_pepper": {"amount": 0.1}},
                {"speckle": {"std": 0.1}}, {"one_of": {"ops": [{"hflip": {}}]}},
                {"some_of": {"n": 1, "ops": [{"hflip": {}}]}}
            ]}"#,
        );
    }
}
