//! `random_crop`.

use super::{fill_zero, p_one};
use crate::buf::{Img, View, below};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::Rng;
use whet_core::spec::Probability;

/// `random_crop`: pad each side by `padding` pixels of `fill`, then cut a `height × width`
/// window at a uniformly drawn position.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RandomCropConfig {
    /// Output width in pixels.
    pub width: usize,
    /// Output height in pixels.
    pub height: usize,
    /// Padding added on each side before cropping. Default 0.
    #[serde(default)]
    pub padding: usize,
    /// Padding value. Default 0.
    #[serde(default = "fill_zero")]
    pub fill: u8,
    /// Probability of applying the op; when skipped, the centre window is taken so the output
    /// size is always `height × width`. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

impl RandomCropConfig {
    /// A `height × width` crop, no padding, `fill` 0, `p` 1.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            padding: 0,
            fill: fill_zero(),
            p: p_one(),
        }
    }

    /// Sets the padding added on each side before cropping.
    pub fn with_padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }

    /// Sets the padding value.
    pub fn with_fill(mut self, fill: u8) -> Self {
        self.fill = fill;
        self
    }
}

/// Random crop with padding (see [`RandomCropConfig`]). `top`/`left` are in padded coordinates.
#[allow(clippy::too_many_arguments)]
pub fn crop_padded(
    src: View<'_>,
    dst: &mut Img,
    top: usize,
    left: usize,
    oh: usize,
    ow: usize,
    pad: usize,
    fill: u8,
) {
    let c = src.c;
    dst.reshape(oh, ow, c);
    let stride = ow * c;
    for (y, row) in dst.data.chunks_exact_mut(stride).enumerate() {
        let sy = (top + y) as isize - pad as isize;
        if sy < 0 || sy >= src.h as isize {
            row.fill(fill);
            continue;
        }
        let srow = &src.data[sy as usize * src.stride()..(sy as usize + 1) * src.stride()];
        let sx0 = left as isize - pad as isize;
        // Columns [a, b) of the output come from the source; the rest is fill.
        let a = (-sx0).clamp(0, ow as isize) as usize;
        let b = (src.w as isize - sx0).clamp(a as isize, ow as isize) as usize;
        row[..a * c].fill(fill);
        if b > a {
            let s0 = (sx0 + a as isize) as usize;
            row[a * c..b * c].copy_from_slice(&srow[s0 * c..(s0 + b - a) * c]);
        }
        row[b * c..].fill(fill);
    }
}

pub(crate) fn random_crop(
    cfg: &RandomCropConfig,
    src: View<'_>,
    dst: &mut Img,
    rng: &mut Rng,
    apply: bool,
) {
    let ph = src.h + 2 * cfg.padding;
    let pw = src.w + 2 * cfg.padding;
    let (top, left) = if apply {
        (
            below(rng, ph - cfg.height + 1),
            below(rng, pw - cfg.width + 1),
        )
    } else {
        ((ph - cfg.height) / 2, (pw - cfg.width) / 2)
    };
    crop_padded(
        src,
        dst,
        top,
        left,
        cfg.height,
        cfg.width,
        cfg.padding,
        cfg.fill,
    );
}

crate::builder::with_p!(RandomCropConfig);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::assert_same_as_json;
    use crate::geometric::ramp;

    #[test]
    fn crop_with_padding_places_fill() {
        let src = ramp(4, 4, 1);
        let mut dst = Img::default();
        crop_padded(src.view(), &mut dst, 0, 0, 4, 4, 2, 5);
        assert_eq!(&dst.data[..8], &[5; 8]);
        assert_eq!(dst.data[10], src.data[0]);
    }

    #[test]
    fn builder_matches_serde_defaults() {
        assert_same_as_json(
            &RandomCropConfig::new(24, 20),
            r#"{"width": 24, "height": 20}"#,
        );
        assert_same_as_json(
            &RandomCropConfig::new(24, 20)
                .with_padding(4)
                .with_fill(7)
                .with_p(0.5),
            r#"{"width": 24, "height": 20, "padding": 4, "fill": 7, "p": 0.5}"#,
        );
    }
}
