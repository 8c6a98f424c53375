//! The affine family: `rotate`, `translate`, `scale`, `shear` and `affine`. Each draws a forward
//! matrix ([`AffineParams::draw`]); the augmenter multiplies consecutive ones and warps once
//! ([`super::warp_affine`]).

use super::warp::Mat;
use super::{check_range, fill_zero, p_one};
use crate::buf::{chance, uniform};
use crate::builder::non_negative;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::Rng;
use whet_core::spec::{Issues, NonNegative, Probability};

fn zero() -> NonNegative {
    NonNegative::ZERO
}
fn scale_one() -> [f64; 2] {
    [1.0, 1.0]
}

/// `rotate`: rotation by an angle drawn uniformly in `[-degrees, degrees]` (counter-clockwise
/// positive), about the image centre, bilinear.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateConfig {
    /// Largest absolute angle, in degrees.
    pub degrees: NonNegative,
    /// Value of pixels that come from outside the source. Default 0.
    #[serde(default = "fill_zero")]
    pub fill: u8,
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

impl RotateConfig {
    /// Rotation by up to `degrees` either way, `fill` 0, `p` 1.
    ///
    /// # Panics
    /// When `degrees` is negative or not finite.
    #[track_caller]
    pub fn new(degrees: f64) -> Self {
        Self {
            degrees: non_negative(degrees, "degrees"),
            fill: fill_zero(),
            p: p_one(),
        }
    }

    /// Sets the value of pixels that come from outside the source.
    pub fn with_fill(mut self, fill: u8) -> Self {
        self.fill = fill;
        self
    }
}

/// `translate`: shift by up to `pixels` (or `fraction` of the width/height) in each direction,
/// drawn uniformly and independently for x and y. Give exactly one of `pixels` and `fraction`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TranslateConfig {
    /// Largest shift in pixels.
    #[serde(default)]
    pub pixels: Option<NonNegative>,
    /// Largest shift as a fraction of the width (x) and height (y).
    #[serde(default)]
    pub fraction: Option<NonNegative>,
    /// Fill value for uncovered pixels. Default 0.
    #[serde(default = "fill_zero")]
    pub fill: u8,
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

impl TranslateConfig {
    /// A shift by up to `pixels` pixels in x and in y, `fill` 0, `p` 1.
    ///
    /// # Panics
    /// When `pixels` is negative or not finite.
    #[track_caller]
    pub fn pixels(pixels: f64) -> Self {
        Self {
            pixels: Some(non_negative(pixels, "pixels")),
            fraction: None,
            fill: fill_zero(),
            p: p_one(),
        }
    }

    /// A shift by up to `fraction` of the width (x) and of the height (y), `fill` 0, `p` 1.
    ///
    /// # Panics
    /// When `fraction` is negative or not finite.
    #[track_caller]
    pub fn fraction(fraction: f64) -> Self {
        Self {
            pixels: None,
            fraction: Some(non_negative(fraction, "fraction")),
            fill: fill_zero(),
            p: p_one(),
        }
    }

    /// Sets the fill value for uncovered pixels.
    pub fn with_fill(mut self, fill: u8) -> Self {
        self.fill = fill;
        self
    }
}

/// `scale`: zoom by a factor drawn uniformly in `[low, high]` about the centre.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleConfig {
    /// `[low, high]` zoom factors, `0 < low <= high <= 10`.
    pub range: [f64; 2],
    /// Fill value for uncovered pixels. Default 0.
    #[serde(default = "fill_zero")]
    pub fill: u8,
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

impl ScaleConfig {
    /// Zoom by a factor in `range` (`[low, high]`, checked by validation:
    /// `0 < low <= high <= 10`), `fill` 0, `p` 1.
    pub fn new(range: [f64; 2]) -> Self {
        Self {
            range,
            fill: fill_zero(),
            p: p_one(),
        }
    }

    /// Sets the fill value for uncovered pixels.
    pub fn with_fill(mut self, fill: u8) -> Self {
        self.fill = fill;
        self
    }
}

/// `shear`: horizontal shear by an angle drawn uniformly in `[-degrees, degrees]`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShearConfig {
    /// Largest absolute shear angle in degrees (< 80).
    pub degrees: NonNegative,
    /// Fill value for uncovered pixels. Default 0.
    #[serde(default = "fill_zero")]
    pub fill: u8,
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

impl ShearConfig {
    /// Shear by up to `degrees` either way (below 80, checked by validation), `fill` 0, `p` 1.
    ///
    /// # Panics
    /// When `degrees` is negative or not finite.
    #[track_caller]
    pub fn new(degrees: f64) -> Self {
        Self {
            degrees: non_negative(degrees, "degrees"),
            fill: fill_zero(),
            p: p_one(),
        }
    }

    /// Sets the fill value for uncovered pixels.
    pub fn with_fill(mut self, fill: u8) -> Self {
        self.fill = fill;
        self
    }
}

/// `affine`: rotation, translation, scaling and shear combined into one warp.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AffineConfig {
    /// Largest absolute rotation in degrees. Default 0.
    #[serde(default = "zero")]
    pub degrees: NonNegative,
    /// Largest shift in pixels (x and y drawn independently). Default none.
    #[serde(default)]
    pub translate_pixels: Option<NonNegative>,
    /// Largest shift as a fraction of width/height. Default none.
    #[serde(default)]
    pub translate_fraction: Option<NonNegative>,
    /// `[low, high]` zoom factors. Default `[1, 1]`.
    #[serde(default = "scale_one")]
    pub scale: [f64; 2],
    /// Largest absolute shear angle in degrees (< 80). Default 0.
    #[serde(default = "zero")]
    pub shear: NonNegative,
    /// Fill value for uncovered pixels. Default 0.
    #[serde(default = "fill_zero")]
    pub fill: u8,
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

impl Default for AffineConfig {
    /// The identity warp (no rotation, shift, zoom or shear), `fill` 0, `p` 1, as `{}` in YAML.
    fn default() -> Self {
        Self {
            degrees: zero(),
            translate_pixels: None,
            translate_fraction: None,
            scale: scale_one(),
            shear: zero(),
            fill: fill_zero(),
            p: p_one(),
        }
    }
}

impl AffineConfig {
    /// The same as [`AffineConfig::default`]: the identity; add parts with the `with_*` setters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the largest absolute rotation in degrees.
    ///
    /// # Panics
    /// When `degrees` is negative or not finite.
    #[track_caller]
    pub fn with_degrees(mut self, degrees: f64) -> Self {
        self.degrees = non_negative(degrees, "degrees");
        self
    }

    /// Sets the largest shift in pixels (give at most one of pixels and fraction).
    ///
    /// # Panics
    /// When `pixels` is negative or not finite.
    #[track_caller]
    pub fn with_translate_pixels(mut self, pixels: f64) -> Self {
        self.translate_pixels = Some(non_negative(pixels, "translate_pixels"));
        self
    }

    /// Sets the largest shift as a fraction of width/height (give at most one of pixels and
    /// fraction).
    ///
    /// # Panics
    /// When `fraction` is negative or not finite.
    #[track_caller]
    pub fn with_translate_fraction(mut self, fraction: f64) -> Self {
        self.translate_fraction = Some(non_negative(fraction, "translate_fraction"));
        self
    }

    /// Sets the `[low, high]` zoom factors.
    pub fn with_scale(mut self, scale: [f64; 2]) -> Self {
        self.scale = scale;
        self
    }

    /// Sets the largest absolute shear angle in degrees (below 80, checked by validation).
    ///
    /// # Panics
    /// When `degrees` is negative or not finite.
    #[track_caller]
    pub fn with_shear(mut self, degrees: f64) -> Self {
        self.shear = non_negative(degrees, "shear");
        self
    }

    /// Sets the fill value for uncovered pixels.
    pub fn with_fill(mut self, fill: u8) -> Self {
        self.fill = fill;
        self
    }
}

/// Largest shift in pixels (`translate.pixels`, `affine.translate_pixels`, `elastic.alpha`):
/// far beyond any image whet loads, and small enough that pixel coordinates never overflow.
pub const MAX_SHIFT_PIXELS: f64 = 10_000.0;
/// Largest shift as a fraction of the image (`translate.fraction`,
/// `affine.translate_fraction`): 1 moves the image fully out.
pub const MAX_SHIFT_FRACTION: f64 = 1.0;

/// Issues for a shift in pixels or as a fraction of the image, out of range.
pub(crate) fn check_shift(
    i: &mut Issues,
    pixels: (&str, Option<NonNegative>),
    fraction: (&str, Option<NonNegative>),
) {
    if let Some(v) = pixels.1 {
        i.check(v.get() <= MAX_SHIFT_PIXELS, pixels.0, || {
            format!("expected at most {MAX_SHIFT_PIXELS} pixels, found {v}")
        });
    }
    if let Some(v) = fraction.1 {
        i.check(v.get() <= MAX_SHIFT_FRACTION, fraction.0, || {
            format!("expected a fraction of the image size <= {MAX_SHIFT_FRACTION}, found {v}")
        });
    }
}

impl TranslateConfig {
    pub(crate) fn validate(&self) -> Issues {
        let mut i = Issues::new();
        i.check(self.pixels.is_some() != self.fraction.is_some(), "", || {
            "give exactly one of `pixels` and `fraction`".into()
        });
        check_shift(&mut i, ("pixels", self.pixels), ("fraction", self.fraction));
        i
    }
}
impl ScaleConfig {
    pub(crate) fn validate(&self) -> Issues {
        let mut i = Issues::new();
        check_range(&mut i, "range", self.range, 1e-3, 10.0);
        i
    }
}
impl ShearConfig {
    pub(crate) fn validate(&self) -> Issues {
        let mut i = Issues::new();
        i.check(self.degrees.get() < 80.0, "degrees", || {
            format!("expected a shear below 80 degrees, found {}", self.degrees)
        });
        i
    }
}
impl AffineConfig {
    pub(crate) fn validate(&self) -> Issues {
        let mut i = Issues::new();
        check_range(&mut i, "scale", self.scale, 1e-3, 10.0);
        i.check(self.shear.get() < 80.0, "shear", || {
            format!("expected a shear below 80 degrees, found {}", self.shear)
        });
        i.check(
            !(self.translate_pixels.is_some() && self.translate_fraction.is_some()),
            "",
            || "give at most one of `translate_pixels` and `translate_fraction`".into(),
        );
        check_shift(
            &mut i,
            ("translate_pixels", self.translate_pixels),
            ("translate_fraction", self.translate_fraction),
        );
        i
    }
}

/// The parameters of one affine op after validation (angles in radians).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AffineParams {
    pub degrees: f64,
    pub tx_pixels: f64,
    pub tx_fraction: f64,
    pub scale: [f64; 2],
    pub shear_degrees: f64,
}

impl AffineParams {
    pub(crate) fn rotate(c: &RotateConfig) -> Self {
        Self {
            degrees: c.degrees.get(),
            ..Self::identity()
        }
    }
    pub(crate) fn translate(c: &TranslateConfig) -> Self {
        Self {
            tx_pixels: c.pixels.map_or(0.0, |v| v.get()),
            tx_fraction: c.fraction.map_or(0.0, |v| v.get()),
            ..Self::identity()
        }
    }
    pub(crate) fn scale(c: &ScaleConfig) -> Self {
        Self {
            scale: c.range,
            ..Self::identity()
        }
    }
    pub(crate) fn shear(c: &ShearConfig) -> Self {
        Self {
            shear_degrees: c.degrees.get(),
            ..Self::identity()
        }
    }
    pub(crate) fn affine(c: &AffineConfig) -> Self {
        Self {
            degrees: c.degrees.get(),
            tx_pixels: c.translate_pixels.map_or(0.0, |v| v.get()),
            tx_fraction: c.translate_fraction.map_or(0.0, |v| v.get()),
            scale: c.scale,
            shear_degrees: c.shear.get(),
        }
    }
    fn identity() -> Self {
        Self {
            degrees: 0.0,
            tx_pixels: 0.0,
            tx_fraction: 0.0,
            scale: [1.0, 1.0],
            shear_degrees: 0.0,
        }
    }

    /// Draws a forward matrix (output = M · input, about the centre of an `h × w` image).
    /// Only the non-trivial parameters consume randomness.
    pub(crate) fn draw(&self, rng: &mut Rng, h: usize, w: usize) -> Mat {
        let angle = if self.degrees > 0.0 {
            uniform(rng, -self.degrees, self.degrees).to_radians()
        } else {
            0.0
        };
        let (mut tx, mut ty) = (0.0, 0.0);
        if self.tx_pixels > 0.0 {
            tx = uniform(rng, -self.tx_pixels, self.tx_pixels);
            ty = uniform(rng, -self.tx_pixels, self.tx_pixels);
        } else if self.tx_fraction > 0.0 {
            tx = uniform(rng, -self.tx_fraction, self.tx_fraction) * w as f64;
            ty = uniform(rng, -self.tx_fraction, self.tx_fraction) * h as f64;
        }
        let s = if self.scale[0] < self.scale[1] {
            uniform(rng, self.scale[0], self.scale[1])
        } else {
            self.scale[0]
        };
        let sh = if self.shear_degrees > 0.0 {
            uniform(rng, -self.shear_degrees, self.shear_degrees)
                .to_radians()
                .tan()
        } else {
            0.0
        };
        Mat::about_centre(h, w, angle, s, sh, tx, ty)
    }
}

pub(crate) fn draw_affine_or_identity(
    params: &AffineParams,
    p: f64,
    rng: &mut Rng,
    h: usize,
    w: usize,
) -> Option<Mat> {
    if chance(rng, p) {
        Some(params.draw(rng, h, w))
    } else {
        None
    }
}

crate::builder::with_p!(
    RotateConfig,
    TranslateConfig,
    ScaleConfig,
    ShearConfig,
    AffineConfig
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::assert_same_as_json;

    #[test]
    fn builders_match_serde_defaults() {
        assert_same_as_json(&RotateConfig::new(12.0), r#"{"degrees": 12}"#);
        assert_same_as_json(
            &RotateConfig::new(12.0).with_fill(3).with_p(0.7),
            r#"{"degrees": 12, "fill": 3, "p": 0.7}"#,
        );
        assert_same_as_json(&TranslateConfig::pixels(4.0), r#"{"pixels": 4}"#);
        assert_same_as_json(&TranslateConfig::fraction(0.1), r#"{"fraction": 0.1}"#);
        assert_same_as_json(
            &TranslateConfig::pixels(4.0).with_fill(9).with_p(0.5),
            r#"{"pixels": 4, "fill": 9, "p": 0.5}"#,
        );
        assert_same_as_json(&ScaleConfig::new([0.9, 1.1]), r#"{"range": [0.9, 1.1]}"#);
        assert_same_as_json(&ShearConfig::new(10.0), r#"{"degrees": 10}"#);
        assert_same_as_json(&AffineConfig::default(), "{}");
        assert_same_as_json(&AffineConfig::new(), "{}");
        assert_same_as_json(
            &AffineConfig::new()
                .with_degrees(5.0)
                .with_translate_fraction(0.1)
                .with_scale([0.9, 1.1])
                .with_shear(3.0)
                .with_fill(1)
                .with_p(0.5),
            r#"{"degrees": 5, "translate_fraction": 0.1, "scale": [0.9, 1.1], "shear": 3,
                "fill": 1, "p": 0.5}"#,
        );
        assert_same_as_json(
            &AffineConfig::new().with_translate_pixels(2.0),
            r#"{"translate_pixels": 2}"#,
        );
    }

    #[test]
    #[should_panic(expected = "degrees")]
    fn builder_rejects_a_negative_angle() {
        RotateConfig::new(-1.0);
    }

    #[test]
    #[should_panic(expected = "p:")]
    fn builder_rejects_a_probability_above_one() {
        ShearConfig::new(1.0).with_p(1.5);
    }
}
