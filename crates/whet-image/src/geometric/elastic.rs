//! `elastic`, and the Gaussian kernel it shares with the blur.

use super::warp::sample;
use super::{fill_zero, p_one};
use crate::buf::{Img, View};
use crate::builder::{non_negative, positive};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::Rng;
use whet_core::spec::{Issues, NonNegative, Positive, Probability};

/// `elastic`: elastic distortion (Simard, Steinkraus & Platt 2003, "Best practices for
/// convolutional neural networks applied to visual document analysis"): two fields of uniform
/// random displacements in `[-1, 1]` are smoothed by a Gaussian of standard deviation `sigma`
/// pixels, scaled by `alpha` pixels, and the image is resampled (bilinear) at the displaced
/// positions.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElasticConfig {
    /// Displacement scale in pixels (Simard et al. use 34 on MNIST).
    pub alpha: NonNegative,
    /// Smoothing standard deviation in pixels (Simard et al. use 4 on MNIST).
    pub sigma: Positive,
    /// Fill value outside the source. Default 0.
    #[serde(default = "fill_zero")]
    pub fill: u8,
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

impl ElasticConfig {
    /// Displacements scaled by `alpha` pixels, smoothed with standard deviation `sigma` pixels
    /// (at most 64, checked by validation), `fill` 0, `p` 1.
    ///
    /// # Panics
    /// When `alpha` is negative or `sigma` is not above 0 (or either is not finite).
    #[track_caller]
    pub fn new(alpha: f64, sigma: f64) -> Self {
        Self {
            alpha: non_negative(alpha, "alpha"),
            sigma: positive(sigma, "sigma"),
            fill: fill_zero(),
            p: p_one(),
        }
    }

    /// Sets the fill value outside the source.
    pub fn with_fill(mut self, fill: u8) -> Self {
        self.fill = fill;
        self
    }
}

impl ElasticConfig {
    pub(crate) fn validate(&self) -> Issues {
        let mut i = Issues::new();
        i.check(self.sigma.get() <= 64.0, "sigma", || {
            format!("expected sigma <= 64 pixels, found {}", self.sigma)
        });
        i.check(self.alpha.get() <= super::MAX_SHIFT_PIXELS, "alpha", || {
            format!(
                "expected alpha <= {} pixels, found {}",
                super::MAX_SHIFT_PIXELS,
                self.alpha
            )
        });
        i
    }
}

/// A normalised 1-D Gaussian kernel of radius `ceil(3 sigma)` (at least 1).
pub(crate) fn gaussian_kernel(sigma: f64, out: &mut Vec<f32>) {
    let r = (3.0 * sigma).ceil().max(1.0) as usize;
    out.clear();
    let mut sum = 0.0;
    for i in 0..=2 * r {
        let x = i as f64 - r as f64;
        let v = (-x * x / (2.0 * sigma * sigma)).exp();
        out.push(v as f32);
        sum += v;
    }
    for v in out.iter_mut() {
        *v /= sum as f32;
    }
}

/// Separable Gaussian smoothing of an `h × w` `f32` field in place (edges replicated).
/// `pad` and `tmp` are scratch.
pub(crate) fn smooth_f32(
    field: &mut [f32],
    h: usize,
    w: usize,
    k: &[f32],
    pad: &mut Vec<f32>,
    tmp: &mut Vec<f32>,
) {
    let r = k.len() / 2;
    tmp.resize(h * w, 0.0);
    pad.resize(w + 2 * r, 0.0);
    // Horizontal: copy the row with replicated borders, then accumulate shifted whole rows so the
    // inner loop is a vectorisable axpy.
    for (row, out) in field.chunks_exact(w).zip(tmp.chunks_exact_mut(w)) {
        pad[..r].fill(row[0]);
        pad[r..r + w].copy_from_slice(row);
        pad[r + w..].fill(row[w - 1]);
        out.fill(0.0);
        for (j, &kv) in k.iter().enumerate() {
            for (o, &p) in out.iter_mut().zip(&pad[j..j + w]) {
                *o += kv * p;
            }
        }
    }
    // Vertical.
    for y in 0..h {
        let out = &mut field[y * w..(y + 1) * w];
        out.fill(0.0);
        for (j, &kv) in k.iter().enumerate() {
            let sy = (y as isize + j as isize - r as isize).clamp(0, h as isize - 1) as usize;
            for (o, &p) in out.iter_mut().zip(&tmp[sy * w..(sy + 1) * w]) {
                *o += kv * p;
            }
        }
    }
}

/// Scratch for [`elastic`].
#[derive(Debug, Default)]
pub(crate) struct ElasticScratch {
    dx: Vec<f32>,
    dy: Vec<f32>,
    pad: Vec<f32>,
    tmp: Vec<f32>,
}

pub(crate) fn elastic(
    cfg: &ElasticConfig,
    kernel: &[f32],
    src: View<'_>,
    dst: &mut Img,
    rng: &mut Rng,
    s: &mut ElasticScratch,
) {
    use rand::Rng as _;
    let (h, w) = (src.h, src.w);
    dst.reshape(h, w, src.c);
    s.dx.resize(h * w, 0.0);
    s.dy.resize(h * w, 0.0);
    for f in [&mut s.dx, &mut s.dy] {
        for pair in f.chunks_mut(2) {
            let r = rng.next_u64();
            // 24 random bits per value: uniform in [-1, 1).
            for (k, v) in pair.iter_mut().enumerate() {
                let bits = ((r >> (32 * k)) as u32) >> 8;
                *v = bits as f32 * (2.0 / 16_777_216.0) - 1.0;
            }
        }
    }
    smooth_f32(&mut s.dx, h, w, kernel, &mut s.pad, &mut s.tmp);
    smooth_f32(&mut s.dy, h, w, kernel, &mut s.pad, &mut s.tmp);
    let alpha = cfg.alpha.get() as f32 * 65536.0;
    let c = src.c;
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let qx = ((x as f32) * 65536.0 + alpha * s.dx[i]) as i64;
            let qy = ((y as f32) * 65536.0 + alpha * s.dy[i]) as i64;
            let out = &mut dst.data[i * c..(i + 1) * c];
            if c == 1 {
                sample::<1>(src, qx, qy, cfg.fill, out);
            } else {
                sample::<3>(src, qx, qy, cfg.fill, out);
            }
        }
    }
}

crate::builder::with_p!(ElasticConfig);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::assert_same_as_json;
    use crate::geometric::ramp;

    #[test]
    fn elastic_with_zero_alpha_is_identity() {
        let src = ramp(12, 10, 1);
        let mut dst = Img::default();
        let cfg = ElasticConfig {
            alpha: NonNegative::ZERO,
            sigma: Positive::new(2.0).unwrap(),
            fill: 0,
            p: Probability::ONE,
        };
        let mut s = ElasticScratch::default();
        let mut k = Vec::new();
        gaussian_kernel(2.0, &mut k);
        elastic(
            &cfg,
            &k,
            src.view(),
            &mut dst,
            &mut whet_core::rng::stream(1, &[0]),
            &mut s,
        );
        assert_eq!(src, dst);
    }

    #[test]
    fn builder_matches_serde_defaults() {
        assert_same_as_json(
            &ElasticConfig::new(34.0, 4.0),
            r#"{"alpha": 34, "sigma": 4}"#,
        );
        assert_same_as_json(
            &ElasticConfig::new(34.0, 4.0).with_fill(2).with_p(0.3),
            r#"{"alpha": 34, "sigma": 4, "fill": 2, "p": 0.3}"#,
        );
    }
}
