//! Geometric ops: flips, the affine family (rotate, translate, scale, shear, affine) warped by
//! inverse mapping with bilinear interpolation, random crop with padding, random resized crop and
//! elastic distortion.
//!
//! The affine ops each draw a forward 2×3 matrix about the image centre; consecutive affine ops
//! are multiplied together and warped once (one interpolation instead of several, which is both
//! faster and sharper). Coordinates are stepped along each output row in Q16 fixed point (the
//! row start and the per-pixel increment are computed once per row), and bilinear weights use
//! 8 fractional bits.
//!
//! One file per op family: `flip.rs` (hflip, vflip), `affine.rs` (the affine ops' configs and
//! matrix draws), `warp.rs` ([`Mat`] and the bilinear warp), `crop.rs` (random crop),
//! `resize.rs` (random resized crop and the bilinear resize), `elastic.rs`.

mod affine;
mod crop;
mod elastic;
mod flip;
mod resize;
mod warp;

pub use affine::{
    AffineConfig, MAX_SHIFT_FRACTION, MAX_SHIFT_PIXELS, RotateConfig, ScaleConfig, ShearConfig,
    TranslateConfig,
};
pub use crop::{RandomCropConfig, crop_padded};
pub use elastic::ElasticConfig;
pub use flip::{FlipConfig, hflip, vflip};
pub use resize::RandomResizedCropConfig;
pub use warp::{Mat, warp_affine};

pub(crate) use affine::{AffineParams, draw_affine_or_identity};
pub(crate) use crop::random_crop;
pub(crate) use elastic::{ElasticScratch, elastic, gaussian_kernel};
pub(crate) use resize::{ResizeScratch, random_resized_crop};

use whet_core::spec::{Issues, Probability};

fn p_one() -> Probability {
    Probability::ONE
}
fn fill_zero() -> u8 {
    0
}

/// Most pixels of an op's output image (`random_crop`, `random_resized_crop`): width x height
/// <= 2^26, as for the images a folder is resized to.
pub const MAX_OUTPUT_PIXELS: usize = 1 << 26;

/// Issues for an output size `width x height` out of range (zero, or more than
/// [`MAX_OUTPUT_PIXELS`], computed without overflow).
pub(crate) fn check_output_size(issues: &mut Issues, width: usize, height: usize) {
    issues.check(
        width > 0
            && height > 0
            && width
                .checked_mul(height)
                .is_some_and(|p| p <= MAX_OUTPUT_PIXELS),
        "",
        || {
            format!(
                "expected width and height > 0 and width x height <= {MAX_OUTPUT_PIXELS} pixels, \
                 found {width}x{height}"
            )
        },
    );
}

pub(crate) fn check_range(issues: &mut Issues, path: &str, r: [f64; 2], min: f64, max: f64) {
    issues.check(
        r[0].is_finite() && r[1].is_finite() && r[0] <= r[1] && r[0] >= min && r[1] <= max,
        path,
        || {
            format!(
                "expected [low, high] with {min} <= low <= high <= {max}, found [{}, {}]",
                r[0], r[1]
            )
        },
    );
}

/// A deterministic test image: byte `i` is `7 i mod 251`.
#[cfg(test)]
fn ramp(h: usize, w: usize, c: usize) -> crate::buf::Img {
    crate::buf::Img::from_vec(
        h,
        w,
        c,
        (0..h * w * c).map(|i| (i * 7 % 251) as u8).collect(),
    )
}
