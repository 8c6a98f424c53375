//! Photometric ops: brightness (saturating adds), contrast (fixed-point affine), gamma (a
//! 256-entry lookup table built per call), separable Gaussian blur in fixed point, and random erasing.

use crate::buf::{Img, View, below, uniform};
use crate::geometric::{check_range, gaussian_kernel};
use crate::simd::Simd;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::Rng;
use whet_core::spec::{Issues, NonNegative, Probability};

fn p_one() -> Probability {
    Probability::ONE
}
fn p_half() -> Probability {
    Probability::HALF
}

/// `brightness`: add `delta · 255` with `delta` uniform in `[-limit, limit]` (saturating).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BrightnessConfig {
    /// Largest absolute shift, as a fraction of the full range (0.2 = ±51 levels).
    pub limit: NonNegative,
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

/// `contrast`: scale deviations from the image mean by a factor uniform in
/// `[1 - limit, 1 + limit]` (saturating).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContrastConfig {
    /// Largest relative change of contrast (`< 1` keeps the factor positive... values up to 10
    /// are accepted; a factor below 0 is clamped to 0).
    pub limit: NonNegative,
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

/// `gamma`: `v' = 255 (v / 255)^g` with `g` uniform in `range`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GammaConfig {
    /// `[low, high]` exponents, `0.05 <= low <= high <= 20`.
    pub range: [f64; 2],
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

/// `gaussian_blur`: Gaussian blur with a standard deviation uniform in `sigma` pixels; the kernel
/// radius is `ceil(3 sigma)`, edges replicated.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlurConfig {
    /// `[low, high]` standard deviation in pixels, `0.1 <= low <= high <= 20`.
    pub sigma: [f64; 2],
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

fn default_area() -> [f64; 2] {
    [0.02, 0.33]
}
fn default_ratio() -> [f64; 2] {
    [0.3, 3.3]
}

/// `erasing`: random erasing / cutout (Zhong et al. 2020, "Random erasing data augmentation";
/// DeVries & Taylor 2017, "Improved regularization of CNNs with cutout"): a rectangle whose area
/// is a uniform fraction in `area` of the image and whose aspect ratio is log-uniform in `ratio`
/// is set to `fill`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasingConfig {
    /// Area fraction range. Default `[0.02, 0.33]`.
    #[serde(default = "default_area")]
    pub area: [f64; 2],
    /// Aspect-ratio range. Default `[0.3, 3.3]`.
    #[serde(default = "default_ratio")]
    pub ratio: [f64; 2],
    /// Value written into the rectangle. Default 0.
    #[serde(default)]
    pub fill: u8,
    /// Probability of applying the op. Default 0.5.
    #[serde(default = "p_half")]
    pub p: Probability,
}

impl ContrastConfig {
    pub(crate) fn validate(&self) -> Issues {
        let mut i = Issues::new();
        i.check(self.limit.get() <= 10.0, "limit", || {
            format!("expected limit <= 10, found {}", self.limit)
        });
        i
    }
}
impl GammaConfig {
    pub(crate) fn validate(&self) -> Issues {
        let mut i = Issues::new();
        check_range(&mut i, "range", self.range, 0.05, 20.0);
        i
    }
}
impl BlurConfig {
    pub(crate) fn validate(&self) -> Issues {
        let mut i = Issues::new();
        check_range(&mut i, "sigma", self.sigma, 0.1, 20.0);
        i
    }
}
impl ErasingConfig {
    pub(crate) fn validate(&self) -> Issues {
        let mut i = Issues::new();
        check_range(&mut i, "area", self.area, 0.0, 1.0);
        check_range(&mut i, "ratio", self.ratio, 1e-3, 1e3);
        i
    }
}

/// Maps every byte of `src` through `lut` into `dst`.
pub fn apply_lut(src: View<'_>, dst: &mut Img, lut: &[u8; 256]) {
    dst.reshape(src.h, src.w, src.c);
    for (d, &s) in dst.data.iter_mut().zip(src.data) {
        *d = lut[s as usize];
    }
}

pub(crate) fn brightness(cfg: &BrightnessConfig, src: View<'_>, dst: &mut Img, rng: &mut Rng) {
    let l = cfg.limit.get();
    let delta = (uniform(rng, -l, l) * 255.0).round().clamp(-255.0, 255.0) as i32;
    dst.reshape(src.h, src.w, src.c);
    add_bytes(Simd::detect(), src.data, &mut dst.data, delta);
}

/// `dst = clamp(src + delta)` per byte, `|delta| <= 255`. Saturating byte adds vectorise (32
/// bytes per instruction with AVX2); a table would not.
pub(crate) fn add_bytes(simd: Simd, src: &[u8], dst: &mut [u8], delta: i32) {
    let d = delta.unsigned_abs().min(255) as u8;
    simd.run(
        #[inline(always)]
        || {
            if delta >= 0 {
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o = v.saturating_add(d);
                }
            } else {
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o = v.saturating_sub(d);
                }
            }
        },
    );
}

/// `dst = clamp(round(a v + b))` per byte, for `0 <= a < 16` and `|b| < 8000`, in 16-bit fixed
/// point: `(v << 7) · round(2048 a) >> 16` (a high-half multiply) is `a v` in Q2, then a
/// saturating add of `b` in Q2 with the rounding half, a shift and a clamp. The AVX2 path does
/// exactly these steps on 16 lanes with the signed `pmulhw` (both factors are below 2^15, so it
/// equals the unsigned product; LLVM widened both the plain loop and `pmulhuw` to 32-bit lanes,
/// at half the speed); the plain loop is the reference and handles the tail.
pub(crate) fn affine_bytes(simd: Simd, src: &[u8], dst: &mut [u8], a: f64, b: f64) {
    let qa = (a * 2048.0).round().clamp(0.0, 32767.0) as u16;
    let qb = ((b * 4.0).round() + 2.0).clamp(-32000.0, 32000.0) as i16;
    #[inline(always)]
    fn plain(src: &[u8], dst: &mut [u8], qa: u16, qb: i16) {
        for (o, &v) in dst.iter_mut().zip(src) {
            let x = (v as u16) << 7;
            let t = ((x as u32 * qa as u32) >> 16) as i16;
            *o = (t.saturating_add(qb) >> 2).clamp(0, 255) as u8;
        }
    }
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::V3(v3) => v3.vectorize(
            #[inline(always)]
            || {
                use std::arch::x86_64::__m256i;
                let zero = v3.avx._mm256_setzero_si256();
                let va = v3.avx._mm256_set1_epi16(qa as i16);
                let vb = v3.avx._mm256_set1_epi16(qb);
                let half = |x: __m256i| {
                    let t = v3
                        .avx2
                        ._mm256_mulhi_epi16(v3.avx2._mm256_slli_epi16::<7>(x), va);
                    v3.avx2
                        ._mm256_srai_epi16::<2>(v3.avx2._mm256_adds_epi16(t, vb))
                };
                let mut d32 = dst.chunks_exact_mut(32);
                let mut s32 = src.chunks_exact(32);
                for (o, v) in (&mut d32).zip(&mut s32) {
                    let v: __m256i = pulp::cast(<[u8; 32]>::try_from(v).expect("32 bytes"));
                    // Unpack and pack both work within 128-bit lanes, so the order round-trips.
                    let lo = half(v3.avx2._mm256_unpacklo_epi8(v, zero));
                    let hi = half(v3.avx2._mm256_unpackhi_epi8(v, zero));
                    let r = v3.avx2._mm256_packus_epi16(lo, hi);
                    o.copy_from_slice(&pulp::cast::<__m256i, [u8; 32]>(r));
                }
                plain(s32.remainder(), d32.into_remainder(), qa, qb);
            },
        ),
        _ => simd.run(|| plain(src, dst, qa, qb)),
    }
}

/// The exact sum of `data` (`psadbw` against zero on the AVX2 path, 32 bytes per instruction).
pub(crate) fn sum_bytes(simd: Simd, data: &[u8]) -> u64 {
    #[inline(always)]
    fn plain(data: &[u8]) -> u64 {
        // u32 sums over chunks of 2^16 bytes cannot overflow and vectorise.
        data.chunks(1 << 16)
            .map(|ch| ch.iter().map(|&v| v as u32).sum::<u32>() as u64)
            .sum()
    }
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::V3(v3) => v3.vectorize(
            #[inline(always)]
            || {
                use std::arch::x86_64::__m256i;
                let zero = v3.avx._mm256_setzero_si256();
                let mut acc = zero;
                let mut rows = data.chunks_exact(32);
                for row in &mut rows {
                    let v: __m256i = pulp::cast(<[u8; 32]>::try_from(row).expect("32 bytes"));
                    acc = v3
                        .avx2
                        ._mm256_add_epi64(acc, v3.avx2._mm256_sad_epu8(v, zero));
                }
                let lanes: [u64; 4] = pulp::cast(acc);
                lanes.iter().sum::<u64>() + plain(rows.remainder())
            },
        ),
        _ => simd.run(|| plain(data)),
    }
}

pub(crate) fn contrast(cfg: &ContrastConfig, src: View<'_>, dst: &mut Img, rng: &mut Rng) {
    let l = cfg.limit.get();
    let f = uniform(rng, 1.0 - l, 1.0 + l).max(0.0);
    let simd = Simd::detect();
    let mean = sum_bytes(simd, src.data) as f64 / src.data.len().max(1) as f64;
    dst.reshape(src.h, src.w, src.c);
    affine_bytes(simd, src.data, &mut dst.data, f, mean * (1.0 - f));
}

pub(crate) fn gamma(cfg: &GammaConfig, src: View<'_>, dst: &mut Img, rng: &mut Rng) {
    let g = uniform(rng, cfg.range[0], cfg.range[1]);
    let mut lut = [0u8; 256];
    for (v, o) in lut.iter_mut().enumerate() {
        *o = (255.0 * (v as f64 / 255.0).powf(g))
            .round()
            .clamp(0.0, 255.0) as u8;
    }
    apply_lut(src, dst, &lut);
}

/// Reusable buffers for [`gaussian_blur`].
#[derive(Debug, Default)]
pub struct BlurScratch {
    kf: Vec<f32>,
    k: Vec<u16>,
    kv: Vec<u16>,
    /// Non-zero horizontal taps as (weight, byte offset into the padded row).
    taps: Vec<(u16, usize)>,
    /// Non-zero vertical taps of the current output row as (weight, offset into `tmp`).
    rows: Vec<(u16, usize)>,
    pad: Vec<u8>,
    tmp: Vec<u16>,
}

/// Gaussian blur with standard deviation `sigma`, separable and in 16-bit fixed point so both
/// passes run on 16 `u16` lanes per AVX2 instruction: the horizontal pass uses a Q8 kernel
/// (weights sum to exactly 256) and writes Q8 pixels to a `u16` buffer; the vertical pass uses a
/// Q15 kernel (sum 32768) with high-half multiplies (`(t w) >> 16`, i.e. `pmulhuw`) into `u16`
/// accumulators in Q7, then rounds. Each pass works on blocks of 64 outputs held in registers
/// while every tap is added (one read of each input row per tap, one write per output). The
/// truncation of the high-half multiply costs under 0.06 levels.
pub fn gaussian_blur(src: View<'_>, dst: &mut Img, sigma: f64, s: &mut BlurScratch) {
    gaussian_blur_at(Simd::detect(), src, dst, sigma, s);
}

pub(crate) fn gaussian_blur_at(
    simd: Simd,
    src: View<'_>,
    dst: &mut Img,
    sigma: f64,
    s: &mut BlurScratch,
) {
    gaussian_kernel(sigma, &mut s.kf);
    let quantise = |kf: &[f32], out: &mut Vec<u16>, total: i32| {
        out.clear();
        out.extend(kf.iter().map(|&v| (v as f64 * total as f64).round() as u16));
        let sum: i32 = out.iter().map(|&v| v as i32).sum();
        let mid = out.len() / 2;
        out[mid] = (out[mid] as i32 + total - sum) as u16;
    };
    quantise(&s.kf, &mut s.k, 256);
    quantise(&s.kf, &mut s.kv, 32768);
    let r = s.k.len() / 2;
    let (h, w, c) = (src.h, src.w, src.c);
    let stride = w * c;
    dst.reshape(h, w, c);
    s.tmp.resize(h * stride, 0);
    s.pad.resize((w + 2 * r) * c, 0);
    s.taps.clear();
    s.taps.extend(
        s.k.iter()
            .enumerate()
            .filter(|&(_, &kv)| kv != 0)
            .map(|(j, &kv)| (kv, j * c)),
    );
    let BlurScratch {
        kv,
        taps,
        rows,
        pad,
        tmp,
        ..
    } = s;
    simd.run(
        #[inline(always)]
        || {
            for (row, out) in src
                .data
                .chunks_exact(stride)
                .zip(tmp.chunks_exact_mut(stride))
            {
                for j in 0..r {
                    pad[j * c..(j + 1) * c].copy_from_slice(&row[..c]);
                    pad[(r + w + j) * c..(r + w + j + 1) * c].copy_from_slice(&row[stride - c..]);
                }
                pad[r * c..(r + w) * c].copy_from_slice(row);
                blur_row_h(pad, out, taps);
            }
            for (y, out) in dst.data.chunks_exact_mut(stride).enumerate() {
                rows.clear();
                rows.extend(
                    kv.iter()
                        .enumerate()
                        .filter(|&(_, &k)| k != 0)
                        .map(|(j, &k)| {
                            let sy =
                                (y as isize + j as isize - r as isize).clamp(0, h as isize - 1);
                            (k, sy as usize * stride)
                        }),
                );
                blur_row_v(tmp, out, rows);
            }
        },
    );
}

/// Outputs per block in the blur passes: four AVX2 registers of `u16` accumulators, enough to
/// amortise the per-tap loads of the weights and bounds.
const BLOCK: usize = 64;

/// `out[i] = Σ k · pad[i + off]` over the taps, in Q8 (the weights sum to 256, so no overflow).
#[inline(always)]
fn blur_row_h(pad: &[u8], out: &mut [u16], taps: &[(u16, usize)]) {
    let mut blocks = out.chunks_exact_mut(BLOCK);
    let mut b = 0;
    for o in &mut blocks {
        let mut acc = [0u16; BLOCK];
        for &(k, off) in taps {
            let p: &[u8; BLOCK] = pad[b + off..b + off + BLOCK].try_into().expect("a block");
            for i in 0..BLOCK {
                acc[i] = acc[i].wrapping_add(k * p[i] as u16);
            }
        }
        o.copy_from_slice(&acc);
        b += BLOCK;
    }
    // The tail (all of a row narrower than a block): one vectorisable pass per tap.
    let tail = blocks.into_remainder();
    tail.fill(0);
    for &(k, off) in taps {
        for (o, &p) in tail.iter_mut().zip(&pad[b + off..]) {
            *o = o.wrapping_add(k * p as u16);
        }
    }
}

/// `out[x] = round(Σ (k · tmp[off + x]) >> 16, Q7 -> Q0)` over the taps: the vertical pass.
#[inline(always)]
fn blur_row_v(tmp: &[u16], out: &mut [u8], rows: &[(u16, usize)]) {
    let term = |k: u16, t: u16| ((t as u32 * k as u32) >> 16) as u16;
    let round = |a: u16| ((a + 64) >> 7) as u8;
    let mut blocks = out.chunks_exact_mut(BLOCK);
    let mut x = 0;
    for o in &mut blocks {
        let mut acc = [0u16; BLOCK];
        for &(k, off) in rows {
            let t: &[u16; BLOCK] = tmp[off + x..off + x + BLOCK].try_into().expect("a block");
            for i in 0..BLOCK {
                acc[i] = acc[i].wrapping_add(term(k, t[i]));
            }
        }
        for i in 0..BLOCK {
            o[i] = round(acc[i]);
        }
        x += BLOCK;
    }
    // The tail, as in `blur_row_h`.
    let tail = blocks.into_remainder();
    let mut acc = [0u16; BLOCK];
    let acc = &mut acc[..tail.len()];
    for &(k, off) in rows {
        for (a, &t) in acc.iter_mut().zip(&tmp[off + x..]) {
            *a = a.wrapping_add(term(k, t));
        }
    }
    for (o, &a) in tail.iter_mut().zip(acc.iter()) {
        *o = round(a);
    }
}

pub(crate) fn blur(
    cfg: &BlurConfig,
    src: View<'_>,
    dst: &mut Img,
    rng: &mut Rng,
    s: &mut BlurScratch,
) {
    let sigma = uniform(rng, cfg.sigma[0], cfg.sigma[1]);
    gaussian_blur(src, dst, sigma, s);
}

/// Random erasing in place on `img`.
pub(crate) fn erase(cfg: &ErasingConfig, img: &mut Img, rng: &mut Rng) {
    let (w, h) = (img.w as f64, img.h as f64);
    let (lr0, lr1) = (cfg.ratio[0].ln(), cfg.ratio[1].ln());
    for _ in 0..10 {
        let target = w * h * uniform(rng, cfg.area[0], cfg.area[1]);
        let ratio = uniform(rng, lr0, lr1).exp();
        let ew = (target * ratio).sqrt().round() as usize;
        let eh = (target / ratio).sqrt().round() as usize;
        if ew >= 1 && eh >= 1 && ew <= img.w && eh <= img.h {
            let x0 = below(rng, img.w - ew + 1);
            let y0 = below(rng, img.h - eh + 1);
            let c = img.c;
            let stride = img.stride();
            for y in y0..y0 + eh {
                img.data[y * stride + x0 * c..y * stride + (x0 + ew) * c].fill(cfg.fill);
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_of_constant_is_constant() {
        let src = Img::filled(9, 11, 3, 77);
        let mut dst = Img::default();
        let mut s = BlurScratch::default();
        gaussian_blur(src.view(), &mut dst, 1.7, &mut s);
        assert!(dst.data.iter().all(|&v| v == 77));
    }

    #[test]
    fn blur_spreads_an_impulse_symmetrically() {
        let mut src = Img::filled(9, 9, 1, 0);
        src.data[4 * 9 + 4] = 255;
        let mut dst = Img::default();
        gaussian_blur(src.view(), &mut dst, 1.0, &mut BlurScratch::default());
        let at = |x: usize, y: usize| dst.data[y * 9 + x];
        assert!(at(4, 4) > at(5, 4) && at(5, 4) > at(6, 4));
        assert_eq!(at(3, 4), at(5, 4));
        assert_eq!(at(4, 3), at(4, 5));
    }

    #[test]
    fn fixed_point_affine_is_within_one_level() {
        let src: Vec<u8> = (0..=255).collect();
        let mut dst = vec![0u8; 256];
        for (a, b) in [
            (1.0, 0.0),
            (0.8, 25.6),
            (1.2, -25.6),
            (0.0, 128.0),
            (11.0, -1400.0),
        ] {
            affine_bytes(Simd::detect(), &src, &mut dst, a, b);
            for (v, &o) in src.iter().zip(&dst) {
                let want = (a * *v as f64 + b).round().clamp(0.0, 255.0);
                assert!(
                    (o as f64 - want).abs() <= 1.0,
                    "a={a} b={b} v={v}: {o} vs {want}"
                );
            }
        }
        affine_bytes(Simd::detect(), &src, &mut dst, 1.0, 0.0);
        assert_eq!(src, dst, "factor 1 is exact");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        #[test]
        fn byte_kernels_agree_across_levels(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20_000),
            delta in -255i32..=255,
            a in 0.0f64..4.0,
            b in -600.0f64..600.0,
        ) {
            let want_sum: u64 = data.iter().map(|&v| v as u64).sum();
            let mut want = None;
            for simd in Simd::all() {
                proptest::prop_assert_eq!(sum_bytes(simd, &data), want_sum);
                let (mut x, mut y) = (vec![0u8; data.len()], vec![0u8; data.len()]);
                add_bytes(simd, &data, &mut x, delta);
                affine_bytes(simd, &data, &mut y, a, b);
                for (&v, &o) in data.iter().zip(&x) {
                    proptest::prop_assert_eq!(o as i32, (v as i32 + delta).clamp(0, 255));
                }
                match &want {
                    None => want = Some(y),
                    Some(w) => proptest::prop_assert_eq!(w, &y),
                }
            }
        }
    }

    /// The blur's fixed-point definition, pixel by pixel with clamped edges.
    fn blur_reference(img: &Img, sigma: f64) -> Img {
        let mut s = BlurScratch::default();
        // Reuse the kernel quantisation by blurring once (fills `s.k` and `s.kv`).
        gaussian_blur_at(Simd::Scalar, img.view(), &mut Img::default(), sigma, &mut s);
        let (h, w, c) = (img.h as isize, img.w as isize, img.c);
        let r = (s.k.len() / 2) as isize;
        let at = |x: isize, y: isize, ch: usize| {
            img.data[(y.clamp(0, h - 1) * w + x.clamp(0, w - 1)) as usize * c + ch] as u16
        };
        let hq = |x: isize, y: isize, ch: usize| -> u16 {
            (0..s.k.len())
                .map(|j| s.k[j] * at(x + j as isize - r, y, ch))
                .sum()
        };
        let mut out = Img::filled(img.h, img.w, c, 0);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let a: u16 = (0..s.kv.len())
                        .map(|j| {
                            let t = hq(x, (y + j as isize - r).clamp(0, h - 1), ch);
                            ((t as u32 * s.kv[j] as u32) >> 16) as u16
                        })
                        .sum();
                    out.data[(y * w + x) as usize * c + ch] = ((a + 64) >> 7) as u8;
                }
            }
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

        #[test]
        fn blur_levels_agree_with_the_definition(
            img in crate::simd::arb_img(12, 40),
            sigma in 0.1f64..2.5,
        ) {
            let want = blur_reference(&img, sigma);
            for simd in Simd::all() {
                let mut dst = Img::default();
                gaussian_blur_at(simd, img.view(), &mut dst, sigma, &mut BlurScratch::default());
                proptest::prop_assert_eq!(&dst, &want, "{:?}", simd);
            }
        }
    }

    #[test]
    fn gamma_one_is_identity() {
        let src = Img::from_vec(1, 256, 1, (0..=255).collect());
        let mut dst = Img::default();
        let cfg = GammaConfig {
            range: [1.0, 1.0],
            p: Probability::ONE,
        };
        gamma(
            &cfg,
            src.view(),
            &mut dst,
            &mut whet_core::rng::stream(0, &[0]),
        );
        assert_eq!(src, dst);
    }
}
