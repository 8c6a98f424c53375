//! Input noise: Gaussian (additive), salt-and-pepper, speckle (multiplicative).
//!
//! Strengths are in pixel units on the 0-1 scale: `std: 0.1` on a `u8` image adds noise of
//! standard deviation `0.1 · 255 = 25.5` levels, then rounds and saturates to `[0, 255]`.
//!
//! # Fast normal draws
//! Each noise value takes 12 bits of ChaCha8 output (five values per `u64`). The 12 bits pick one
//! of 4096 equal-probability bins of the standard normal; interior bins use the normal quantile
//! at the bin's centre (from a table built once with Acklam's inverse-CDF approximation, relative
//! error below 1.2e-9), and the two outer bins (probability 1/4096 each) are sampled exactly
//! beyond their boundary with Marsaglia's tail method (Marsaglia 1964, "Generating a variable
//! from the tail of the normal distribution"). So the tails are not truncated, and the only
//! approximation is that a value is placed at its bin's centre: bins are at most 0.004 σ wide
//! within ±2σ, far below one `u8` level for any useful σ. Because the table for a fixed `std` is
//! built when the op is built, the per-pixel cost is a table look-up, an add and a saturation.

use crate::buf::{Img, View, unit_f64};
use crate::builder::{non_negative, probability};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use whet_core::Rng;
use whet_core::spec::{NonNegative, Probability};

fn p_one() -> Probability {
    Probability::ONE
}
fn zero_f() -> f64 {
    0.0
}

/// `gaussian_noise`: add `N(mean, std²)` noise, in pixel units on the 0-1 scale (`std: 0.04`
/// is about 10 levels of 255).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GaussianNoiseConfig {
    /// Standard deviation on the 0-1 scale.
    pub std: NonNegative,
    /// Mean on the 0-1 scale, in `[-1, 1]`. Default 0.
    #[serde(default = "zero_f")]
    pub mean: f64,
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

impl GaussianNoiseConfig {
    /// Noise of standard deviation `std` on the 0-1 scale, `mean` 0, `p` 1.
    ///
    /// # Panics
    /// When `std` is negative or not finite.
    #[track_caller]
    pub fn new(std: f64) -> Self {
        Self {
            std: non_negative(std, "std"),
            mean: zero_f(),
            p: p_one(),
        }
    }

    /// Sets the mean on the 0-1 scale (in `[-1, 1]`, checked by validation).
    pub fn with_mean(mut self, mean: f64) -> Self {
        self.mean = mean;
        self
    }
}

/// `salt_and_pepper`: each pixel is, with probability `amount`, set to black or white (half each,
/// all channels together).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaltPepperConfig {
    /// Fraction of pixels corrupted.
    pub amount: Probability,
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

impl SaltPepperConfig {
    /// A fraction `amount` of the pixels set to black or white, `p` 1.
    ///
    /// # Panics
    /// When `amount` is not in `[0, 1]`.
    #[track_caller]
    pub fn new(amount: f64) -> Self {
        Self {
            amount: probability(amount, "amount"),
            p: p_one(),
        }
    }
}

/// `speckle`: multiplicative noise `v' = v (1 + n)`, `n ~ N(0, std²)`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeckleConfig {
    /// Standard deviation of the relative change.
    pub std: NonNegative,
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

impl SpeckleConfig {
    /// Relative noise of standard deviation `std`, `p` 1.
    ///
    /// # Panics
    /// When `std` is negative or not finite.
    #[track_caller]
    pub fn new(std: f64) -> Self {
        Self {
            std: non_negative(std, "std"),
            p: p_one(),
        }
    }
}

impl GaussianNoiseConfig {
    pub(crate) fn validate(&self) -> whet_core::Issues {
        let mut i = whet_core::Issues::new();
        i.check((-1.0..=1.0).contains(&self.mean), "mean", || {
            format!("expected a mean in [-1, 1], found {}", self.mean)
        });
        i
    }
}

const BITS: u32 = 12;
const BINS: usize = 1 << BITS;

/// Acklam's rational approximation of the standard normal quantile function (relative error
/// below 1.15e-9). The coefficients are kept exactly as published.
#[allow(clippy::excessive_precision)]
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383577518672690e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let pl = 0.02425;
    if p < pl {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - pl {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// Standard-normal values at the centres of the 4096 bins.
fn z_table() -> &'static [f64; BINS] {
    static T: OnceLock<Box<[f64; BINS]>> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = Box::new([0.0; BINS]);
        for (i, v) in t.iter_mut().enumerate() {
            *v = normal_quantile((i as f64 + 0.5) / BINS as f64);
        }
        t
    })
}

/// The boundary of the outer bins: `-Φ⁻¹(1/4096)`.
fn tail_start() -> f64 {
    -normal_quantile(1.0 / BINS as f64)
}

/// A standard normal value conditioned on `|z| > a`, with the sign given (Marsaglia's method).
fn tail_sample(rng: &mut Rng, a: f64, negative: bool) -> f64 {
    loop {
        let x = -(1.0 - unit_f64(rng)).ln() / a;
        let y = -(1.0 - unit_f64(rng)).ln();
        if 2.0 * y > x * x {
            let z = a + x;
            return if negative { -z } else { z };
        }
    }
}

/// Calls `f(bin)` for `n` 12-bit bins drawn from `rng` (five per `u64`).
#[inline(always)]
fn for_bins(rng: &mut Rng, n: usize, mut f: impl FnMut(usize, usize)) {
    use rand::Rng as _;
    let mut i = 0;
    while i + 5 <= n {
        let r = rng.next_u64();
        f(i, (r & 0xfff) as usize);
        f(i + 1, ((r >> 12) & 0xfff) as usize);
        f(i + 2, ((r >> 24) & 0xfff) as usize);
        f(i + 3, ((r >> 36) & 0xfff) as usize);
        f(i + 4, ((r >> 48) & 0xfff) as usize);
        i += 5;
    }
    if i < n {
        let mut r = rng.next_u64();
        while i < n {
            f(i, (r & 0xfff) as usize);
            r >>= 12;
            i += 1;
        }
    }
}

/// The loop shared by [`GaussianNoise`] and [`Speckle`]: one bin per byte (`for_bins`), the
/// byte becomes `bin(v, b)`; then, with `tail` the outer bins' boundary, each byte whose bin was
/// an outer one (about one in 2048) becomes `exact(v, z)` for a tail draw `z`, in pixel order.
/// `tails` is scratch for their positions.
fn apply_binned(
    s: &[u8],
    d: &mut [u8],
    rng: &mut Rng,
    tails: &mut Vec<u32>,
    tail: Option<f64>,
    bin: impl Fn(u8, usize) -> u8,
    exact: impl Fn(u8, f64) -> u8,
) {
    let n = s.len();
    let (s, d) = (&s[..n], &mut d[..n]);
    tails.clear();
    for_bins(rng, n, |i, b| {
        if b == 0 || b == BINS - 1 {
            tails.push(i as u32 | (((b == 0) as u32) << 31));
        }
        d[i] = bin(s[i], b);
    });
    if let Some(a) = tail {
        for &m in tails.iter() {
            let i = (m & 0x7fff_ffff) as usize;
            d[i] = exact(s[i], tail_sample(rng, a, m >> 31 == 1));
        }
    }
}

/// Additive Gaussian noise, prepared for one `(mean, std)`.
#[derive(Debug, Clone)]
pub struct GaussianNoise {
    /// `round(255 (mean + std z_bin))` per interior bin.
    table: Box<[i16; BINS]>,
    mean: f64,
    std: f64,
    tail: f64,
}

impl GaussianNoise {
    /// Noise with `mean` and `std` on the 0-1 scale.
    pub fn new(mean: f64, std: f64) -> Self {
        let z = z_table();
        let mut table = Box::new([0i16; BINS]);
        for (t, &zv) in table.iter_mut().zip(z.iter()) {
            *t = (255.0 * (mean + std * zv)).round().clamp(-512.0, 512.0) as i16;
        }
        Self {
            table,
            mean,
            std,
            tail: tail_start(),
        }
    }

    /// Adds noise to `src` into `dst`. `tails` is scratch (reused; it holds the positions that
    /// fell in an outer bin, about one in 2048).
    pub fn apply(&self, src: View<'_>, dst: &mut Img, rng: &mut Rng, tails: &mut Vec<u32>) {
        dst.reshape(src.h, src.w, src.c);
        if self.std == 0.0 && self.mean == 0.0 {
            dst.data.copy_from_slice(src.data);
            return;
        }
        let t = &*self.table;
        let (mean, std) = (self.mean, self.std);
        apply_binned(
            src.data,
            &mut dst.data,
            rng,
            tails,
            (std > 0.0).then_some(self.tail),
            |v, b| (v as i16 + t[b]).clamp(0, 255) as u8,
            |v, z| {
                (v as f64 + 255.0 * (mean + std * z))
                    .round()
                    .clamp(0.0, 255.0) as u8
            },
        );
    }
}

/// Multiplicative (speckle) noise prepared for one `std`.
#[derive(Debug, Clone)]
pub struct Speckle {
    table: Box<[f32; BINS]>,
    std: f64,
    tail: f64,
}

impl Speckle {
    /// Speckle noise of relative standard deviation `std`.
    pub fn new(std: f64) -> Self {
        let z = z_table();
        let mut table = Box::new([0f32; BINS]);
        for (t, &zv) in table.iter_mut().zip(z.iter()) {
            *t = (1.0 + std * zv) as f32;
        }
        Self {
            table,
            std,
            tail: tail_start(),
        }
    }

    /// Applies `v (1 + n)` to `src` into `dst`; `tails` is scratch as in [`GaussianNoise::apply`].
    pub fn apply(&self, src: View<'_>, dst: &mut Img, rng: &mut Rng, tails: &mut Vec<u32>) {
        dst.reshape(src.h, src.w, src.c);
        if self.std == 0.0 {
            dst.data.copy_from_slice(src.data);
            return;
        }
        let t = &*self.table;
        let std = self.std;
        apply_binned(
            src.data,
            &mut dst.data,
            rng,
            tails,
            Some(self.tail),
            |v, b| (v as f32 * t[b] + 0.5).clamp(0.0, 255.0) as u8,
            |v, z| (v as f64 * (1.0 + std * z)).round().clamp(0.0, 255.0) as u8,
        );
    }
}

/// Salt-and-pepper noise on `src` into `dst`: each pixel with probability `amount` becomes all 0
/// or all 255. Uses 16 random bits per pixel (15 for the decision, 1 for the colour).
pub fn salt_and_pepper(src: View<'_>, dst: &mut Img, amount: f64, rng: &mut Rng) {
    use rand::Rng as _;
    dst.copy_from(src.data, src.h, src.w, src.c);
    let thr = (amount * 32768.0).round() as u32;
    if thr == 0 {
        return;
    }
    let c = src.c;
    let mut r = 0u64;
    for (i, px) in dst.data.chunks_exact_mut(c).enumerate() {
        if i % 4 == 0 {
            r = rng.next_u64();
        }
        let bits = (r >> (16 * (i % 4))) as u32 & 0xffff;
        if (bits & 0x7fff) < thr {
            px.fill(if bits >> 15 == 1 { 255 } else { 0 });
        }
    }
}

crate::builder::with_p!(GaussianNoiseConfig, SaltPepperConfig, SpeckleConfig);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::assert_same_as_json;

    #[test]
    fn quantile_is_accurate() {
        assert!(normal_quantile(0.5).abs() < 1e-12);
        assert!((normal_quantile(0.975) - 1.959963984540054).abs() < 1e-8);
        assert!((normal_quantile(0.001) + 3.090232306167814).abs() < 1e-8);
    }

    #[test]
    fn tail_samples_lie_beyond_the_boundary() {
        let mut rng = whet_core::rng::stream(3, &[0]);
        let a = tail_start();
        for _ in 0..200 {
            let z = tail_sample(&mut rng, a, true);
            assert!(z < -a);
        }
    }

    #[test]
    fn salt_and_pepper_amount_is_respected() {
        let src = Img::filled(100, 100, 1, 128);
        let mut dst = Img::default();
        salt_and_pepper(
            src.view(),
            &mut dst,
            0.1,
            &mut whet_core::rng::stream(1, &[1]),
        );
        let changed = dst.data.iter().filter(|&&v| v != 128).count();
        assert!((800..1200).contains(&changed), "{changed}");
        assert!(dst.data.iter().all(|&v| v == 0 || v == 128 || v == 255));
    }

    #[test]
    fn builders_match_serde_defaults() {
        assert_same_as_json(&GaussianNoiseConfig::new(0.05), r#"{"std": 0.05}"#);
        assert_same_as_json(
            &GaussianNoiseConfig::new(0.05).with_mean(0.1).with_p(0.5),
            r#"{"std": 0.05, "mean": 0.1, "p": 0.5}"#,
        );
        assert_same_as_json(&SaltPepperConfig::new(0.02), r#"{"amount": 0.02}"#);
        assert_same_as_json(
            &SaltPepperConfig::new(0.02).with_p(0.5),
            r#"{"amount": 0.02, "p": 0.5}"#,
        );
        assert_same_as_json(&SpeckleConfig::new(0.1), r#"{"std": 0.1}"#);
        assert_same_as_json(
            &SpeckleConfig::new(0.1).with_p(0.5),
            r#"{"std": 0.1, "p": 0.5}"#,
        );
    }
}
