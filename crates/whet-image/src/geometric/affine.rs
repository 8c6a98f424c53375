//! The affine family: `rotate`, `translate`, `scale`, `shear` and `affine`. Each draws a forward
//! matrix ([`AffineParams::draw`]); the augmenter multiplies consecutive ones and warps once
//! ([`super::warp_affine`]).

use super::warp::Mat;
use super::{check_range, fill_zero, p_one};
use crate::buf::{chance, uniform};
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

impl TranslateConfig {
    pub(crate) fn validate(&self) -> Issues {
        let mut i = Issues::new();
        i.check(self.pixels.is_some() != self.fraction.is_some(), "", || {
            "give exactly one of `pixels` and `fraction`".into()
        });
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
