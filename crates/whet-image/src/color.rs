//! Photometric ops: brightness (saturating adds), contrast (fixed-point affine), gamma (a
//! 256-entry lookup table built per call), separable Gaussian blur in fixed point, and random erasing.

use crate::buf::{Img, View, below, uniform};
use crate::builder::non_negative;
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

impl BrightnessConfig {
    /// A shift of up to `limit` of the full range either way, `p` 1.
    ///
    /// # Panics
    /// When `limit` is negative or not finite.
    #[track_caller]
    pub fn new(limit: f64) -> Self {
        Self {
            limit: non_negative(limit, "limit"),
            p: p_one(),
        }
    }
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

impl ContrastConfig {
    /// A contrast factor in `[1 - limit, 1 + limit]` (`limit` at most 10, checked by
    /// validation), `p` 1.
    ///
    /// # Panics
    /// When `limit` is negative or not finite.
    #[track_caller]
    pub fn new(limit: f64) -> Self {
        Self {
            limit: non_negative(limit, "limit"),
            p: p_one(),
        }
    }
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

impl GammaConfig {
    /// An exponent in `range` (`[low, high]`, checked by validation:
    /// `0.05 <= low <= high <= 20`), `p` 1.
    pub fn new(range: [f64; 2]) -> Self {
        Self { range, p: p_one() }
    }
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

impl BlurConfig {
    /// A standard deviation in `sigma` pixels (`[low, high]`, checked by validation:
    /// `0.1 <= low <= high <= 20`), `p` 1.
    pub fn new(sigma: [f64; 2]) -> Self {
        Self { sigma, p: p_one() }
    }
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

impl Default for ErasingConfig {
    /// Area `[0.02, 0.33]`, ratio `[0.3, 3.3]`, `fill` 0, `p` 0.5, as `{}` in YAML.
    fn default() -> Self {
        Self {
            area: default_area(),
            ratio: default_ratio(),
            fill: 0,
            p: p_half(),
        }
    }
}

impl ErasingConfig {
    /// The same as [`ErasingConfig::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the area fraction range.
    pub fn with_area(mut self, area: [f64; 2]) -> Self {
        self.area = area;
        self
    }

    /// Sets the aspect-ratio range.
    pub fn with_ratio(mut self, ratio: [f64; 2]) -> Self {
        self.ratio = ratio;
        self
    }

    /// Sets the value written into the rectangle.
    pub fn with_fill(mut self, fill: u8) -> Self {
        self.fill = fill;
        self
    }
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

/// The byte offset of one `brightness` draw.
pub(crate) fn draw_brightness(cfg: &BrightnessConfig, rng: &mut Rng) -> i32 {
    let l = cfg.limit.get();
    (uniform(rng, -l, l) * 255.0).round().clamp(-255.0, 255.0) as i32
}

/// The factor of one `contrast` draw.
pub(crate) fn draw_contrast(cfg: &ContrastConfig, rng: &mut Rng) -> f64 {
    let l = cfg.limit.get();
    uniform(rng, 1.0 - l, 1.0 + l).max(0.0)
}

pub(crate) fn brightness(cfg: &BrightnessConfig, src: View<'_>, dst: &mut Img, rng: &mut Rng) {
    let delta = draw_brightness(cfg, rng);
    dst.reshape(src.h, src.w, src.c);
    add_bytes(Simd::detect(), src.data, &mut dst.data, delta);
}

/// `brightness` by `delta` then `contrast` by `f` in two reads of `src` and one write, instead
/// of two reads and a write for each: the mean that contrast needs is summed over the shifted
/// bytes without storing them, and the affine map shifts each byte again before mapping it.
/// The same bytes as the two ops one after the other (`brightness_contrast_is_the_two_ops`).
pub(crate) fn brightness_contrast(simd: Simd, src: View<'_>, dst: &mut Img, delta: i32, f: f64) {
    let mean = sum_bytes(simd, src.data, delta) as f64 / src.data.len().max(1) as f64;
    dst.reshape(src.h, src.w, src.c);
    affine_bytes(simd, src.data, &mut dst.data, delta, f, mean * (1.0 - f));
}

/// The saturating byte shift by `delta` as two saturating ops (one of them by 0), so SIMD code
/// needs no branch: `(up, down)`.
fn shift_parts(delta: i32) -> (u8, u8) {
    (delta.clamp(0, 255) as u8, (-delta).clamp(0, 255) as u8)
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

/// `dst = clamp(round(a v + b))` per byte of `src` first shifted by `delta` (saturating; 0 for
/// none), for `0 <= a < 16` and `|b| < 8000`, in 16-bit fixed
/// point: `(v << 7) · round(2048 a) >> 16` (a high-half multiply) is `a v` in Q2, then a
/// saturating add of `b` in Q2 with the rounding half, a shift and a clamp. The AVX2 path does
/// exactly these steps on 16 lanes with the signed `pmulhw` (both factors are below 2^15, so it
/// equals the unsigned product; LLVM widened both the plain loop and `pmulhuw` to 32-bit lanes,
/// at half the speed); the plain loop is the reference and handles the tail.
pub(crate) fn affine_bytes(simd: Simd, src: &[u8], dst: &mut [u8], delta: i32, a: f64, b: f64) {
    let qa = (a * 2048.0).round().clamp(0.0, 32767.0) as u16;
    let qb = ((b * 4.0).round() + 2.0).clamp(-32000.0, 32000.0) as i16;
    let (up, down) = shift_parts(delta);
    #[inline(always)]
    fn plain(src: &[u8], dst: &mut [u8], (up, down): (u8, u8), qa: u16, qb: i16) {
        for (o, &v) in dst.iter_mut().zip(src) {
            let x = (v.saturating_add(up).saturating_sub(down) as u16) << 7;
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
                let vup = v3.avx._mm256_set1_epi8(up as i8);
                let vdown = v3.avx._mm256_set1_epi8(down as i8);
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
                    let v = v3
                        .avx2
                        ._mm256_subs_epu8(v3.avx2._mm256_adds_epu8(v, vup), vdown);
                    // Unpack and pack both work within 128-bit lanes, so the order round-trips.
                    let lo = half(v3.avx2._mm256_unpacklo_epi8(v, zero));
                    let hi = half(v3.avx2._mm256_unpackhi_epi8(v, zero));
                    let r = v3.avx2._mm256_packus_epi16(lo, hi);
                    o.copy_from_slice(&pulp::cast::<__m256i, [u8; 32]>(r));
                }
                plain(s32.remainder(), d32.into_remainder(), (up, down), qa, qb);
            },
        ),
        _ => simd.run(|| plain(src, dst, (up, down), qa, qb)),
    }
}

/// The exact sum of the bytes of `data` shifted by `delta` (saturating; 0 for none), with
/// `psadbw` against zero on the AVX2 path, 32 bytes per instruction.
pub(crate) fn sum_bytes(simd: Simd, data: &[u8], delta: i32) -> u64 {
    let (up, down) = shift_parts(delta);
    #[inline(always)]
    fn plain(data: &[u8], (up, down): (u8, u8)) -> u64 {
        // u32 sums over chunks of 2^16 bytes cannot overflow and vectorise.
        data.chunks(1 << 16)
            .map(|ch| {
                ch.iter()
                    .map(|&v| v.saturating_add(up).saturating_sub(down) as u32)
                    .sum::<u32>() as u64
            })
            .sum()
    }
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::V3(v3) => v3.vectorize(
            #[inline(always)]
            || {
                use std::arch::x86_64::__m256i;
                let zero = v3.avx._mm256_setzero_si256();
                let vup = v3.avx._mm256_set1_epi8(up as i8);
                let vdown = v3.avx._mm256_set1_epi8(down as i8);
                let mut acc = zero;
                let mut rows = data.chunks_exact(32);
                for row in &mut rows {
                    let v: __m256i = pulp::cast(<[u8; 32]>::try_from(row).expect("32 bytes"));
                    let v = v3
                        .avx2
                        ._mm256_subs_epu8(v3.avx2._mm256_adds_epu8(v, vup), vdown);
                    acc = v3
                        .avx2
                        ._mm256_add_epi64(acc, v3.avx2._mm256_sad_epu8(v, zero));
                }
                let lanes: [u64; 4] = pulp::cast(acc);
                lanes.iter().sum::<u64>() + plain(rows.remainder(), (up, down))
            },
        ),
        _ => simd.run(|| plain(data, (up, down))),
    }
}

pub(crate) fn contrast(cfg: &ContrastConfig, src: View<'_>, dst: &mut Img, rng: &mut Rng) {
    let f = draw_contrast(cfg, rng);
    brightness_contrast(Simd::detect(), src, dst, 0, f);
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
    /// The vertical kernel, Q8 (sums to 256).
    k: Vec<u16>,
    /// The horizontal kernel, Q15 (sums to 32768).
    kh: Vec<u16>,
    /// Non-zero horizontal taps as (weight, offset into `line`).
    taps: Vec<(u16, usize)>,
    /// Vertical taps of the current output row, as (weight, offset of the source row above,
    /// offset of the one below): the kernel is symmetric, so each pair shares one multiply.
    pairs: Vec<(u16, usize, usize)>,
    /// The vertically blurred row (Q8), with `r` replicated pixels on each side.
    line: Vec<u16>,
}

/// Gaussian blur with standard deviation `sigma` (radius `ceil(3 sigma)`, edges replicated),
/// separable in 16-bit fixed point so both passes run on 16 `u16` lanes per AVX2 instruction.
///
/// Row by row: the vertical pass reads the source rows directly (no padding: the row index is
/// clamped) with a Q8 kernel (weights sum to exactly 256), adding the two rows of each
/// symmetric pair before one multiply, into a `u16` line that stays in the L1 cache; the
/// horizontal pass runs on that line (its ends replicated) with a Q15 kernel and high-half
/// multiplies (`(t w) >> 16`, i.e. `pmulhuw`) into `u16` accumulators in Q7, then rounds. The
/// truncation of the high-half multiply costs under 0.06 levels. The AVX2 kernels do the same
/// wrapping `u16` arithmetic as the portable ones, so every level gives the same bytes.
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
    quantise(&s.kf, &mut s.kh, 32768);
    let r = s.k.len() / 2;
    let (h, w, c) = (src.h, src.w, src.c);
    let stride = w * c;
    dst.reshape(h, w, c);
    if stride == 0 {
        return;
    }
    s.line.resize(stride + 2 * r * c, 0);
    s.taps.clear();
    s.taps.extend(
        s.kh.iter()
            .enumerate()
            .filter(|&(_, &k)| k != 0)
            .map(|(j, &k)| (k, j * c)),
    );
    let row_at = |y: usize, j: usize| (y + j).saturating_sub(r).min(h - 1) * stride;
    for (y, out) in dst.data.chunks_exact_mut(stride).enumerate() {
        let centre = (s.k[r], y * stride);
        s.pairs.clear();
        s.pairs.extend(
            (0..r)
                .filter(|&j| s.k[j] != 0)
                .map(|j| (s.k[j], row_at(y, j), row_at(y, 2 * r - j))),
        );
        let line = &mut s.line[..];
        let (pairs, taps) = (&s.pairs[..], &s.taps[..]);
        // The row loop runs at the baseline level and each pass enters the SIMD level on its own
        // (two calls per row): a closure as large as the whole loop was not inlined into the
        // AVX2 context, and its intrinsics then ran as calls (measured 30x slower).
        let mut body = |vertical: &dyn Fn(&mut [u16]), horizontal: &dyn Fn(&[u16], &mut [u8])| {
            vertical(&mut line[r * c..r * c + stride]);
            for j in 0..r {
                line.copy_within(r * c..r * c + c, j * c);
                line.copy_within(r * c + stride - c..r * c + stride, (r + w + j) * c);
            }
            horizontal(line, out);
        };
        match simd {
            #[cfg(target_arch = "x86_64")]
            Simd::V3(v3) => body(
                &|l| v3.vectorize(|| blur_vertical_v3(v3, src.data, l, centre, pairs)),
                &|l, o| v3.vectorize(|| blur_horizontal_v3(v3, l, o, taps)),
            ),
            _ => body(
                &|l| simd.run(|| blur_vertical(src.data, l, centre, pairs)),
                &|l, o| simd.run(|| blur_horizontal(l, o, taps)),
            ),
        }
    }
}

/// Outputs per block in the portable blur kernels: enough `u16` accumulators for the
/// autovectorizer to keep several registers busy.
const BLOCK: usize = 64;

/// `out[x] = kc · src[c + x] + Σ k · (src[a + x] + src[b + x])` in Q8 (the weights sum to 256,
/// so nothing overflows): the vertical pass.
#[inline(always)]
fn blur_vertical(
    src: &[u8],
    out: &mut [u16],
    (kc, c): (u16, usize),
    pairs: &[(u16, usize, usize)],
) {
    for (bi, o) in out.chunks_mut(BLOCK).enumerate() {
        let x = bi * BLOCK;
        let len = o.len();
        let mut acc = [0u16; BLOCK];
        let acc = &mut acc[..len];
        for (a, &p) in acc.iter_mut().zip(&src[c + x..c + x + len]) {
            *a = kc.wrapping_mul(p as u16);
        }
        for &(k, top, bottom) in pairs {
            let (t, b) = (
                &src[top + x..top + x + len],
                &src[bottom + x..bottom + x + len],
            );
            for ((a, &p), &q) in acc.iter_mut().zip(t).zip(b) {
                *a = a.wrapping_add(k.wrapping_mul(p as u16 + q as u16));
            }
        }
        o.copy_from_slice(acc);
    }
}

/// `out[x] = round(Σ (k · line[off + x]) >> 16, Q7 -> Q0)` over the taps: the horizontal pass.
#[inline(always)]
fn blur_horizontal(line: &[u16], out: &mut [u8], taps: &[(u16, usize)]) {
    let term = |k: u16, t: u16| ((t as u32 * k as u32) >> 16) as u16;
    for (bi, o) in out.chunks_mut(BLOCK).enumerate() {
        let x = bi * BLOCK;
        let len = o.len();
        let mut acc = [0u16; BLOCK];
        let acc = &mut acc[..len];
        for &(k, off) in taps {
            for (a, &t) in acc.iter_mut().zip(&line[off + x..off + x + len]) {
                *a = a.wrapping_add(term(k, t));
            }
        }
        for (o, &a) in o.iter_mut().zip(acc.iter()) {
            *o = ((a + 64) >> 7) as u8;
        }
    }
}

/// [`blur_vertical`] on AVX2, 32 outputs (two registers of `u16`) per block: bytes widened with
/// `vpmovzxbw`, the pair added, one `vpmullw` per pair. The last partial block takes the
/// portable code.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn blur_vertical_v3(
    v3: crate::simd::V3,
    src: &[u8],
    out: &mut [u16],
    (kc, c): (u16, usize),
    pairs: &[(u16, usize, usize)],
) {
    use std::arch::x86_64::{__m128i, __m256i};
    let (avx, a2) = (v3.avx, v3.avx2);
    let load = |at: usize| -> [__m256i; 2] {
        let b: [__m128i; 2] =
            pulp::cast(<[u8; 32]>::try_from(&src[at..at + 32]).expect("32 bytes"));
        [a2._mm256_cvtepu8_epi16(b[0]), a2._mm256_cvtepu8_epi16(b[1])]
    };
    let kcv = avx._mm256_set1_epi16(kc as i16);
    let mut blocks = out.chunks_exact_mut(32);
    let mut x = 0;
    for o in &mut blocks {
        let p = load(c + x);
        let mut acc = [
            a2._mm256_mullo_epi16(p[0], kcv),
            a2._mm256_mullo_epi16(p[1], kcv),
        ];
        for &(k, top, bottom) in pairs {
            let kv = avx._mm256_set1_epi16(k as i16);
            let (t, b) = (load(top + x), load(bottom + x));
            for i in 0..2 {
                let sum = a2._mm256_add_epi16(t[i], b[i]);
                acc[i] = a2._mm256_add_epi16(acc[i], a2._mm256_mullo_epi16(sum, kv));
            }
        }
        o.copy_from_slice(&pulp::cast::<[__m256i; 2], [u16; 32]>(acc));
        x += 32;
    }
    // Offsets are relative to the slice, so the tail is the portable pass on `src[x..]`.
    blur_vertical(&src[x..], blocks.into_remainder(), (kc, c), pairs);
}

/// [`blur_horizontal`] on AVX2, 32 outputs per block: per tap, `vpmulhuw` and an add on two
/// registers, then the rounding shift and one `vpackuswb` (whose lane interleave a `vpermq`
/// undoes). The last partial block takes the portable code.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn blur_horizontal_v3(v3: crate::simd::V3, line: &[u16], out: &mut [u8], taps: &[(u16, usize)]) {
    use std::arch::x86_64::__m256i;
    let (avx, a2) = (v3.avx, v3.avx2);
    let half = avx._mm256_set1_epi16(64);
    let mut blocks = out.chunks_exact_mut(32);
    let mut x = 0;
    for o in &mut blocks {
        let mut acc = [avx._mm256_setzero_si256(); 2];
        for &(k, off) in taps {
            let kv = avx._mm256_set1_epi16(k as i16);
            let t: [__m256i; 2] =
                pulp::cast(<[u16; 32]>::try_from(&line[off + x..off + x + 32]).expect("32 values"));
            for i in 0..2 {
                acc[i] = a2._mm256_add_epi16(acc[i], a2._mm256_mulhi_epu16(t[i], kv));
            }
        }
        let lo = a2._mm256_srli_epi16::<7>(a2._mm256_add_epi16(acc[0], half));
        let hi = a2._mm256_srli_epi16::<7>(a2._mm256_add_epi16(acc[1], half));
        let packed = a2._mm256_permute4x64_epi64::<0b11_01_10_00>(a2._mm256_packus_epi16(lo, hi));
        o.copy_from_slice(&pulp::cast::<__m256i, [u8; 32]>(packed));
        x += 32;
    }
    blur_horizontal(&line[x..], blocks.into_remainder(), taps);
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

crate::builder::with_p!(
    BrightnessConfig,
    ContrastConfig,
    GammaConfig,
    BlurConfig,
    ErasingConfig
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::assert_same_as_json;

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
            affine_bytes(Simd::detect(), &src, &mut dst, 0, a, b);
            for (v, &o) in src.iter().zip(&dst) {
                let want = (a * *v as f64 + b).round().clamp(0.0, 255.0);
                assert!(
                    (o as f64 - want).abs() <= 1.0,
                    "a={a} b={b} v={v}: {o} vs {want}"
                );
            }
        }
        affine_bytes(Simd::detect(), &src, &mut dst, 0, 1.0, 0.0);
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
            let shifted: Vec<u8> = data.iter().map(|&v| (v as i32 + delta).clamp(0, 255) as u8).collect();
            let want_shifted_sum: u64 = shifted.iter().map(|&v| v as u64).sum();
            let mut want = None;
            for simd in Simd::all() {
                proptest::prop_assert_eq!(sum_bytes(simd, &data, 0), want_sum);
                proptest::prop_assert_eq!(sum_bytes(simd, &data, delta), want_shifted_sum);
                let (mut x, mut y) = (vec![0u8; data.len()], vec![0u8; data.len()]);
                add_bytes(simd, &data, &mut x, delta);
                affine_bytes(simd, &data, &mut y, 0, a, b);
                proptest::prop_assert_eq!(&x, &shifted);
                // A shift inside the affine map is the shift, then the map.
                let (mut z, mut z_then) = (vec![0u8; data.len()], vec![0u8; data.len()]);
                affine_bytes(simd, &data, &mut z, delta, a, b);
                affine_bytes(simd, &shifted, &mut z_then, 0, a, b);
                proptest::prop_assert_eq!(&z, &z_then);
                match &want {
                    None => want = Some(y),
                    Some(w) => proptest::prop_assert_eq!(w, &y),
                }
            }
        }

        #[test]
        fn brightness_contrast_is_the_two_ops(
            img in crate::simd::arb_img(20, 60),
            limits in (0.0f64..1.0, 0.0f64..1.0),
            seed in 0u64..1000,
        ) {
            let b = BrightnessConfig { limit: NonNegative::new(limits.0).unwrap(), p: Probability::ONE };
            let c = ContrastConfig { limit: NonNegative::new(limits.1).unwrap(), p: Probability::ONE };
            let (mut one, mut two) = (Img::default(), Img::default());
            let mut rb = whet_core::rng::stream(seed, &[1]);
            let mut rc = whet_core::rng::stream(seed, &[2]);
            brightness(&b, img.view(), &mut one, &mut rb);
            contrast(&c, one.view(), &mut two, &mut rc);
            let mut rb = whet_core::rng::stream(seed, &[1]);
            let mut rc = whet_core::rng::stream(seed, &[2]);
            let (delta, f) = (draw_brightness(&b, &mut rb), draw_contrast(&c, &mut rc));
            for simd in Simd::all() {
                let mut fused = Img::default();
                brightness_contrast(simd, img.view(), &mut fused, delta, f);
                proptest::prop_assert_eq!(&fused, &two, "{:?}", simd);
            }
        }
    }

    /// The blur's fixed-point definition, pixel by pixel with clamped edges.
    fn blur_reference(img: &Img, sigma: f64) -> Img {
        let mut s = BlurScratch::default();
        // Reuse the kernel quantisation by blurring once (fills `s.k` and `s.kh`).
        gaussian_blur_at(Simd::Scalar, img.view(), &mut Img::default(), sigma, &mut s);
        let (h, w, c) = (img.h as isize, img.w as isize, img.c);
        let r = (s.k.len() / 2) as isize;
        let at = |x: isize, y: isize, ch: usize| {
            img.data[(y.clamp(0, h - 1) * w + x.clamp(0, w - 1)) as usize * c + ch] as u16
        };
        // The vertical pass (Q8) at a clamped column.
        let vq = |x: isize, y: isize, ch: usize| -> u16 {
            (0..s.k.len())
                .map(|j| s.k[j] * at(x, y + j as isize - r, ch))
                .sum()
        };
        let mut out = Img::filled(img.h, img.w, c, 0);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let a: u16 = (0..s.kh.len())
                        .map(|j| {
                            let t = vq((x + j as isize - r).clamp(0, w - 1), y, ch);
                            ((t as u32 * s.kh[j] as u32) >> 16) as u16
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
            img in crate::simd::arb_img(12, 80),
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

    #[test]
    fn builders_match_serde_defaults() {
        assert_same_as_json(&BrightnessConfig::new(0.2), r#"{"limit": 0.2}"#);
        assert_same_as_json(
            &BrightnessConfig::new(0.2).with_p(0.5),
            r#"{"limit": 0.2, "p": 0.5}"#,
        );
        assert_same_as_json(&ContrastConfig::new(0.3), r#"{"limit": 0.3}"#);
        assert_same_as_json(
            &ContrastConfig::new(0.3).with_p(0.5),
            r#"{"limit": 0.3, "p": 0.5}"#,
        );
        assert_same_as_json(&GammaConfig::new([0.8, 1.2]), r#"{"range": [0.8, 1.2]}"#);
        assert_same_as_json(
            &GammaConfig::new([0.8, 1.2]).with_p(0.5),
            r#"{"range": [0.8, 1.2], "p": 0.5}"#,
        );
        assert_same_as_json(&BlurConfig::new([0.5, 1.5]), r#"{"sigma": [0.5, 1.5]}"#);
        assert_same_as_json(
            &BlurConfig::new([0.5, 1.5]).with_p(0.5),
            r#"{"sigma": [0.5, 1.5], "p": 0.5}"#,
        );
        assert_same_as_json(&ErasingConfig::default(), "{}");
        assert_same_as_json(&ErasingConfig::new(), "{}");
        assert_same_as_json(
            &ErasingConfig::new()
                .with_area([0.1, 0.2])
                .with_ratio([0.5, 2.0])
                .with_fill(128)
                .with_p(1.0),
            r#"{"area": [0.1, 0.2], "ratio": [0.5, 2], "fill": 128, "p": 1}"#,
        );
    }
}
