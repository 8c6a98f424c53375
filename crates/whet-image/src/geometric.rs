//! Geometric ops: flips, the affine family (rotate, translate, scale, shear, affine) warped by
//! inverse mapping with bilinear interpolation, random crop with padding, random resized crop and
//! elastic distortion.
//!
//! The affine ops each draw a forward 2×3 matrix about the image centre; consecutive affine ops
//! are multiplied together and warped once (one interpolation instead of several, which is both
//! faster and sharper). Coordinates are stepped along each output row in Q16 fixed point (the
//! row start and the per-pixel increment are computed once per row), and bilinear weights use
//! 8 fractional bits.

use crate::buf::{Img, View, below, chance, uniform};
use crate::simd::Simd;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::Rng;
use whet_core::spec::{Issues, NonNegative, Positive, Probability};

fn p_one() -> Probability {
    Probability::ONE
}
fn fill_zero() -> u8 {
    0
}
fn zero() -> NonNegative {
    NonNegative::ZERO
}
fn scale_one() -> [f64; 2] {
    [1.0, 1.0]
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

/// `hflip`: mirror left-right.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlipConfig {
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
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

/// A 2×3 affine matrix `[a b c; d e f]` mapping `(x, y)` to `(a x + b y + c, d x + e y + f)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mat(pub [f64; 6]);

impl Mat {
    /// The identity.
    pub const IDENTITY: Mat = Mat([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);

    /// Rotation by `angle` radians (counter-clockwise as seen on screen, y pointing down), then
    /// zoom `s`, horizontal shear `sh` (tangent) and a shift, about the centre of an `h × w` image.
    pub fn about_centre(h: usize, w: usize, angle: f64, s: f64, sh: f64, tx: f64, ty: f64) -> Mat {
        let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
        let (sin, cos) = angle.sin_cos();
        // Rotation (screen counter-clockwise) · shear · scale.
        let r = [cos, sin, -sin, cos];
        let k = [s, s * sh, 0.0, s];
        let a = r[0] * k[0] + r[1] * k[2];
        let b = r[0] * k[1] + r[1] * k[3];
        let d = r[2] * k[0] + r[3] * k[2];
        let e = r[2] * k[1] + r[3] * k[3];
        // x' = A (x - c) + c + t
        let c = cx - a * cx - b * cy + tx;
        let f = cy - d * cx - e * cy + ty;
        Mat([a, b, c, d, e, f])
    }

    /// `self` after `first`: the matrix of applying `first`, then `self`.
    pub fn after(&self, first: &Mat) -> Mat {
        let [a, b, c, d, e, f] = self.0;
        let [p, q, r, s, t, u] = first.0;
        Mat([
            a * p + b * s,
            a * q + b * t,
            a * r + b * u + c,
            d * p + e * s,
            d * q + e * t,
            d * r + e * u + f,
        ])
    }

    /// The inverse, or `None` when singular.
    pub fn inverse(&self) -> Option<Mat> {
        let [a, b, c, d, e, f] = self.0;
        let det = a * e - b * d;
        if det.abs() < 1e-12 || !det.is_finite() {
            return None;
        }
        let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
        Some(Mat([
            ia,
            ib,
            -(ia * c + ib * f),
            id,
            ie,
            -(id * c + ie * f),
        ]))
    }
}

/// Horizontal flip of `src` into `dst`.
pub fn hflip(src: View<'_>, dst: &mut Img) {
    hflip_at(Simd::detect(), src, dst);
}

pub(crate) fn hflip_at(simd: Simd, src: View<'_>, dst: &mut Img) {
    dst.reshape(src.h, src.w, src.c);
    match (simd, src.c) {
        #[cfg(target_arch = "x86_64")]
        (Simd::V3(v3), 3) => v3.vectorize(|| hflip3_v3(v3, src, dst)),
        _ => simd.run(|| hflip_rows(src, dst)),
    }
}

#[inline(always)]
fn hflip_rows(src: View<'_>, dst: &mut Img) {
    let stride = src.stride();
    for (s, d) in src
        .data
        .chunks_exact(stride)
        .zip(dst.data.chunks_exact_mut(stride))
    {
        match src.c {
            1 => {
                d.copy_from_slice(s);
                d.reverse();
            }
            3 => hflip3_tail(s, d, 0, src.w),
            c => {
                for (dp, sp) in d.chunks_exact_mut(c).zip(s.chunks_exact(c).rev()) {
                    dp.copy_from_slice(sp);
                }
            }
        }
    }
}

/// Output pixels `from..to` of a mirrored 3-channel row.
#[inline(always)]
fn hflip3_tail(s: &[u8], d: &mut [u8], from: usize, to: usize) {
    let w = s.len() / 3;
    for k in from..to {
        let j = 3 * (w - 1 - k);
        d[3 * k..3 * k + 3].copy_from_slice(&s[j..j + 3]);
    }
}

/// The two byte-shuffle masks of [`hflip3_v3`]'s 10-pixel step, as `(from_a, from_b)`.
///
/// Output register byte `t` (2..32) is byte `c` of the `k`-th mirrored pixel, `k = (t-2)/3`,
/// `c = (t-2)%3`, which is source byte `3 (9-k) + c` of the 32-byte load `a`. `pshufb` only
/// moves bytes within a 16-byte lane, so bytes wanted from the other lane are taken from `b`,
/// the load with its lanes swapped. Unused slots are `0x80` (pshufb writes 0 there), so the two
/// shuffles combine with an OR. Bytes 0 and 1 stay zero: junk that the next step overwrites.
#[cfg(target_arch = "x86_64")]
const HFLIP3_MASKS: ([u8; 32], [u8; 32]) = {
    let mut from_a = [0x80u8; 32];
    let mut from_b = [0x80u8; 32];
    let mut t = 2;
    while t < 32 {
        let k = (t - 2) / 3;
        let src = 3 * (9 - k) + (t - 2) % 3;
        let same_lane = (t < 16) == (src < 16);
        if same_lane {
            from_a[t] = (src % 16) as u8;
        } else {
            from_b[t] = (src % 16) as u8;
        }
        t += 1;
    }
    (from_a, from_b)
};

/// Mirrors 3-channel rows ten pixels (30 bytes) per 32-byte store on AVX2.
///
/// Each step loads 32 source bytes (pixels `10g..10g+10` and two more bytes), swaps the load's
/// 128-bit lanes, gathers the mirrored pixels with one `pshufb` of each and an OR
/// ([`HFLIP3_MASKS`]), and stores 32 bytes that end at the last byte of output pixel
/// `w-1-10g`; the two junk bytes at the start land where the next step writes. The source is
/// read forwards, which the hardware prefetcher follows (reading it backwards was 10x slower
/// once the images no longer fit the L2 cache). Three steps run per iteration, then single
/// steps, then a 5-pixel `pshufb` step, and the last few pixels are copied one by one. The
/// slices shrink as they are consumed, so the loop conditions are the only bounds checks.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn hflip3_v3(v3: crate::simd::V3, src: View<'_>, dst: &mut Img) {
    use std::arch::x86_64::{__m128i, __m256i};
    let from_a: __m256i = pulp::cast(HFLIP3_MASKS.0);
    let from_b: __m256i = pulp::cast(HFLIP3_MASKS.1);
    let five: __m128i = pulp::cast([0u8, 12, 13, 14, 9, 10, 11, 6, 7, 8, 3, 4, 5, 0, 1, 2]);
    // Ten pixels from the front of `s` to the back of `d`.
    let ten = |s: &[u8], d: &mut [u8]| {
        let a: __m256i = pulp::cast(<[u8; 32]>::try_from(&s[..32]).expect("32 bytes"));
        let b = v3.avx2._mm256_permute4x64_epi64::<0b01_00_11_10>(a);
        let r = v3.avx2._mm256_or_si256(
            v3.avx2._mm256_shuffle_epi8(a, from_a),
            v3.avx2._mm256_shuffle_epi8(b, from_b),
        );
        let n = d.len();
        d[n - 32..].copy_from_slice(&pulp::cast::<__m256i, [u8; 32]>(r));
    };
    let stride = src.stride();
    for (s_row, d_row) in src
        .data
        .chunks_exact(stride)
        .zip(dst.data.chunks_exact_mut(stride))
    {
        // `s`: source bytes still to mirror (a suffix); `d`: the output bytes they go to (a prefix).
        let mut s = s_row;
        let mut d = &mut d_row[..];
        while s.len() >= 92 && d.len() >= 92 {
            let n = d.len();
            ten(s, d);
            ten(&s[30..], &mut d[..n - 30]);
            ten(&s[60..], &mut d[..n - 60]);
            s = &s[90..];
            d = &mut d[..n - 90];
        }
        while s.len() >= 32 && d.len() >= 32 {
            ten(s, d);
            s = &s[30..];
            let n = d.len();
            d = &mut d[..n - 30];
        }
        if s.len() >= 16 && d.len() >= 16 {
            let a: __m128i = pulp::cast(<[u8; 16]>::try_from(&s[..16]).expect("16 bytes"));
            let r = v3.ssse3._mm_shuffle_epi8(a, five);
            let n = d.len();
            d[n - 16..].copy_from_slice(&pulp::cast::<__m128i, [u8; 16]>(r));
            s = &s[15..];
        }
        // Source pixels w - s.len()/3.. are output pixels ..s.len()/3.
        hflip3_tail(s_row, d_row, 0, s.len() / 3);
    }
}

/// Vertical flip of `src` into `dst`.
pub fn vflip(src: View<'_>, dst: &mut Img) {
    dst.reshape(src.h, src.w, src.c);
    let stride = src.stride();
    for (s, d) in src
        .data
        .chunks_exact(stride)
        .zip(dst.data.chunks_exact_mut(stride).rev())
    {
        d.copy_from_slice(s);
    }
}

/// Bilinear sample at Q16 coordinates `(qx, qy)`, writing `C` channels to `out`.
#[inline(always)]
fn sample<const C: usize>(src: View<'_>, qx: i64, qy: i64, fill: u8, out: &mut [u8]) {
    // Round to 8 fractional bits.
    let rx = (qx + 128) >> 8;
    let ry = (qy + 128) >> 8;
    let x0 = rx >> 8;
    let y0 = ry >> 8;
    let wx = (rx & 255) as u32;
    let wy = (ry & 255) as u32;
    let (w, h) = (src.w as i64, src.h as i64);
    let stride = src.w * C;
    if x0 >= 0 && y0 >= 0 && x0 < w - 1 && y0 < h - 1 {
        let i = y0 as usize * stride + x0 as usize * C;
        let top = &src.data[i..i + 2 * C];
        let bot = &src.data[i + stride..i + stride + 2 * C];
        for k in 0..C {
            let t = top[k] as u32 * (256 - wx) + top[C + k] as u32 * wx;
            let b = bot[k] as u32 * (256 - wx) + bot[C + k] as u32 * wx;
            out[k] = ((t * (256 - wy) + b * wy + 32768) >> 16) as u8;
        }
    } else if x0 < -1 || y0 < -1 || x0 >= w || y0 >= h {
        out[..C].fill(fill);
    } else {
        let px = |x: i64, y: i64, k: usize| -> u32 {
            if x >= 0 && y >= 0 && x < w && y < h {
                src.data[y as usize * stride + x as usize * C + k] as u32
            } else {
                fill as u32
            }
        };
        for k in 0..C {
            let t = px(x0, y0, k) * (256 - wx) + px(x0 + 1, y0, k) * wx;
            let b = px(x0, y0 + 1, k) * (256 - wx) + px(x0 + 1, y0 + 1, k) * wx;
            out[k] = ((t * (256 - wy) + b * wy + 32768) >> 16) as u8;
        }
    }
}

fn warp_c<const C: usize>(src: View<'_>, dst: &mut Img, inv: &Mat, fill: u8) {
    let q = |v: f64| (v * 65536.0).round() as i64;
    let [a, b, c, d, e, f] = inv.0;
    let (qa, qd) = (q(a), q(d));
    let stride = dst.w * C;
    for (y, row) in dst.data.chunks_exact_mut(stride).enumerate() {
        let mut qx = q(b * y as f64 + c);
        let mut qy = q(e * y as f64 + f);
        for px in row.chunks_exact_mut(C) {
            sample::<C>(src, qx, qy, fill, px);
            qx += qa;
            qy += qd;
        }
    }
}

/// The RGB warp on AVX2. Pixels whose 2x2 neighbourhood lies inside the source (most of them)
/// are blended with vector arithmetic: the two source rows' pixel pairs (one 8-byte load each)
/// go into the two halves of a register, one `pshufb` pairs each channel's left and right
/// neighbours as 16-bit lanes, one `pmaddwd` does both horizontal blends
/// (`a (256 - wx) + b wx`), one `pmulld` and an add the vertical blend. These are exactly
/// [`sample`]'s integer steps, which handle the border pixels.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn warp_rgb_v3(v3: crate::simd::V3, src: View<'_>, dst: &mut Img, inv: &Mat, fill: u8) {
    use std::arch::x86_64::{__m128i, __m256i};
    let q = |v: f64| (v * 65536.0).round() as i64;
    let [a, b, c, d, e, f] = inv.0;
    let (qa, qd) = (q(a), q(d));
    let (w, h) = (src.w as i64, src.h as i64);
    let stride = src.w * 3;
    let data = src.data;
    // u16 lanes per 128-bit half: channel k's left byte (k) then right byte (3 + k); 0x80 = 0.
    let z = 0x80u8;
    let pair = [0, z, 3, z, 1, z, 4, z, 2, z, 5, z, z, z, z, z];
    let mut m32 = [0u8; 32];
    m32[..16].copy_from_slice(&pair);
    m32[16..].copy_from_slice(&pair);
    let mask: __m256i = pulp::cast(m32);
    let half = v3.sse2._mm_set1_epi32(32768);
    let zero = v3.sse2._mm_setzero_si128();
    let load = |i: usize| -> i64 {
        match data.get(i..i + 8) {
            Some(b) => i64::from_le_bytes(b.try_into().expect("8 bytes")),
            None => {
                // The image's last two bytes: copy rather than read past the end.
                let mut b = [0u8; 8];
                b[..6].copy_from_slice(&data[i..i + 6]);
                i64::from_le_bytes(b)
            }
        }
    };
    for (y, row) in dst.data.chunks_exact_mut(dst.w * 3).enumerate() {
        let mut qx = q(b * y as f64 + c);
        let mut qy = q(e * y as f64 + f);
        for px in row.chunks_exact_mut(3) {
            let rx = (qx + 128) >> 8;
            let ry = (qy + 128) >> 8;
            let (x0, y0) = (rx >> 8, ry >> 8);
            if x0 >= 0 && y0 >= 0 && x0 < w - 1 && y0 < h - 1 {
                let (wx, wy) = ((rx & 255) as i32, (ry & 255) as i32);
                let i = y0 as usize * stride + x0 as usize * 3;
                let v = v3.avx._mm256_set_epi64x(0, load(i + stride), 0, load(i));
                let p = v3.avx2._mm256_shuffle_epi8(v, mask);
                let hw = v3.avx._mm256_set1_epi32((wx << 16) | (256 - wx));
                // [top k=0..3, 0 | bottom k=0..3, 0], each a (256 - wx) + b wx.
                let hb = v3.avx2._mm256_madd_epi16(p, hw);
                let (w0, w1) = (256 - wy, wy);
                let vw = v3.avx._mm256_setr_epi32(w0, w0, w0, w0, w1, w1, w1, w1);
                let m = v3.avx2._mm256_mullo_epi32(hb, vw);
                let lo: __m128i = v3.avx._mm256_castsi256_si128(m);
                let hi: __m128i = v3.avx2._mm256_extracti128_si256::<1>(m);
                let r = v3.sse2._mm_add_epi32(v3.sse2._mm_add_epi32(lo, hi), half);
                let r = v3.sse2._mm_srli_epi32::<16>(r);
                let r = v3
                    .sse2
                    ._mm_packus_epi16(v3.sse4_1._mm_packus_epi32(r, zero), zero);
                let bytes: [u8; 16] = pulp::cast(r);
                px.copy_from_slice(&bytes[..3]);
            } else {
                sample::<3>(src, qx, qy, fill, px);
            }
            qx += qa;
            qy += qd;
        }
    }
}

/// Warps `src` into `dst` (same shape) with the *forward* matrix `m`, bilinear, `fill` outside.
/// A singular matrix gives an image of `fill`.
pub fn warp_affine(src: View<'_>, dst: &mut Img, m: &Mat, fill: u8) {
    warp_affine_at(Simd::detect(), src, dst, m, fill);
}

pub(crate) fn warp_affine_at(simd: Simd, src: View<'_>, dst: &mut Img, m: &Mat, fill: u8) {
    dst.reshape(src.h, src.w, src.c);
    let Some(inv) = m.inverse() else {
        dst.data.fill(fill);
        return;
    };
    match src.c {
        1 => warp_c::<1>(src, dst, &inv, fill),
        3 => match simd {
            #[cfg(target_arch = "x86_64")]
            Simd::V3(v3) => v3.vectorize(|| warp_rgb_v3(v3, src, dst, &inv, fill)),
            _ => warp_c::<3>(src, dst, &inv, fill),
        },
        _ => unreachable!("images have 1 or 3 channels"),
    }
}

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

fn default_rrc_scale() -> [f64; 2] {
    [0.08, 1.0]
}
fn default_rrc_ratio() -> [f64; 2] {
    [0.75, 4.0 / 3.0]
}

/// `random_resized_crop`: cut a window whose area is a uniform fraction in `scale` of the image
/// and whose aspect ratio is log-uniform in `ratio`, and resize it (bilinear) to
/// `height × width` (Szegedy et al. 2015, "Going deeper with convolutions"; torchvision's
/// 10-attempt sampler with a centre-crop fallback).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RandomResizedCropConfig {
    /// Output width.
    pub width: usize,
    /// Output height.
    pub height: usize,
    /// Area fraction range. Default `[0.08, 1]`.
    #[serde(default = "default_rrc_scale")]
    pub scale: [f64; 2],
    /// Aspect-ratio (w/h) range. Default `[3/4, 4/3]`.
    #[serde(default = "default_rrc_ratio")]
    pub ratio: [f64; 2],
    /// Probability; when skipped the whole image is resized. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

impl RandomResizedCropConfig {
    pub(crate) fn validate(&self) -> Issues {
        let mut i = Issues::new();
        check_range(&mut i, "scale", self.scale, 1e-6, 1.0);
        check_range(&mut i, "ratio", self.ratio, 1e-3, 1e3);
        i.check(self.width > 0 && self.height > 0, "", || {
            format!(
                "expected width and height > 0, found {}x{}",
                self.width, self.height
            )
        });
        i
    }
}

/// Scratch for [`resize_bilinear`].
#[derive(Debug, Default)]
pub(crate) struct ResizeScratch {
    xi: Vec<u32>,
    xw: Vec<u16>,
    r0: Vec<u16>,
    r1: Vec<u16>,
    groups: ShuffleGroups,
}

/// Tables for the AVX2 horizontal pass of 3-channel rows: output pixels in groups of four (12
/// bytes), each gathered from one 16-byte source load by two byte shuffles (first and second
/// neighbour of every output byte) and blended with per-lane weights. The tables depend only on
/// the column mapping, so they are built once per image and used for every row.
#[derive(Debug, Default)]
struct ShuffleGroups {
    /// Source byte offset of each group's load.
    base: Vec<u32>,
    /// Shuffle indices of the first and second neighbours (`0x80`: zero for the 4 spare lanes).
    masks: Vec<[[u8; 16]; 2]>,
    /// Weights of the first and second neighbours per lane.
    weights: Vec<[[u16; 16]; 2]>,
    /// Whether the group fits one load (its source span is at most 16 bytes and inside the row).
    ok: Vec<bool>,
}

impl ShuffleGroups {
    fn build(&mut self, xi: &[u32], xw: &[u16], step: usize, row_len: usize) {
        self.base.clear();
        self.masks.clear();
        self.weights.clear();
        self.ok.clear();
        for (gi, gw) in xi.chunks_exact(4).zip(xw.chunks_exact(4)) {
            let base = gi[0] as usize;
            let span = gi[3] as usize - base + step + 3;
            let mut m = [[0x80u8; 16]; 2];
            let mut wt = [[0u16; 16]; 2];
            let ok = span <= 16 && base + 16 <= row_len;
            if ok {
                for j in 0..4 {
                    for ch in 0..3 {
                        let l = 3 * j + ch;
                        m[0][l] = (gi[j] as usize - base + ch) as u8;
                        m[1][l] = (gi[j] as usize - base + step + ch) as u8;
                        wt[0][l] = 256 - gw[j];
                        wt[1][l] = gw[j];
                    }
                }
            }
            self.base.push(base as u32);
            self.masks.push(m);
            self.weights.push(wt);
            self.ok.push(ok);
        }
    }
}

/// Resizes the window `(x0, y0, cw, ch)` of `src` to `oh × ow` with bilinear interpolation
/// (half-pixel centres, edge clamped). Separable: each needed source row is interpolated
/// horizontally once into a `u16` buffer (8 fractional bits), then rows are blended vertically
/// (32-bit lanes: 8 per instruction under AVX2, where the baseline has no 32-bit vector
/// multiply).
pub(crate) fn resize_bilinear(
    src: View<'_>,
    dst: &mut Img,
    win: (f64, f64, f64, f64),
    oh: usize,
    ow: usize,
    s: &mut ResizeScratch,
) {
    resize_bilinear_at(Simd::detect(), src, dst, win, oh, ow, s);
}

/// Horizontal pass of [`resize_bilinear`] for one row: output pixel `k` blends the pixels at
/// byte `xi[k]` and the next one (`single`: the same one, for a one-column source).
#[inline(always)]
fn resize_hrow<const C: usize>(row: &[u8], out: &mut [u16], xi: &[u32], xw: &[u16], single: bool) {
    let step = if single { 0 } else { C };
    for ((o, &i), &w1) in out.chunks_exact_mut(C).zip(xi).zip(xw) {
        let i = i as usize;
        let w0 = 256 - w1;
        let a: &[u8; C] = row[i..i + C].try_into().expect("in row");
        let b: &[u8; C] = row[i + step..i + step + C].try_into().expect("in row");
        for k in 0..C {
            o[k] = a[k] as u16 * w0 + b[k] as u16 * w1;
        }
    }
}

/// [`resize_hrow`] for 3 channels with [`ShuffleGroups`]: per group of four output pixels, one
/// 16-byte load, two `pshufb`, widening to 16 lanes of `u16`, two `pmullw` and an add (the same
/// products as the plain loop, which never overflow 16 bits). Groups that do not fit one load
/// and the last `ow % 4` pixels take the plain loop.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn resize_hrow3_v3(
    v3: crate::simd::V3,
    row: &[u8],
    out: &mut [u16],
    xi: &[u32],
    xw: &[u16],
    single: bool,
    g: &ShuffleGroups,
) {
    use std::arch::x86_64::{__m128i, __m256i};
    let n = g.ok.len();
    for k in 0..n {
        if g.ok[k] {
            let base = g.base[k] as usize;
            let v: __m128i = pulp::cast(<[u8; 16]>::try_from(&row[base..base + 16]).expect("16"));
            let [ma, mb] = g.masks[k];
            let [wa, wb] = g.weights[k];
            let a = v3
                .avx2
                ._mm256_cvtepu8_epi16(v3.ssse3._mm_shuffle_epi8(v, pulp::cast(ma)));
            let b = v3
                .avx2
                ._mm256_cvtepu8_epi16(v3.ssse3._mm_shuffle_epi8(v, pulp::cast(mb)));
            let r = v3.avx2._mm256_add_epi16(
                v3.avx2._mm256_mullo_epi16(a, pulp::cast(wa)),
                v3.avx2._mm256_mullo_epi16(b, pulp::cast(wb)),
            );
            // 16 lanes: the last 4 spill into the next group, which is written after this one.
            out[12 * k..12 * k + 16].copy_from_slice(&pulp::cast::<__m256i, [u16; 16]>(r));
        } else {
            let p = 4 * k..4 * k + 4;
            resize_hrow::<3>(row, &mut out[12 * k..], &xi[p.clone()], &xw[p], single);
        }
    }
    resize_hrow::<3>(row, &mut out[12 * n..], &xi[4 * n..], &xw[4 * n..], single);
}

/// The horizontal pass for `c` channels at level `simd`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn resize_hrow_any(
    simd: Simd,
    shuffled: bool,
    c: usize,
    row: &[u8],
    out: &mut [u16],
    xi: &[u32],
    xw: &[u16],
    single: bool,
    groups: &ShuffleGroups,
) {
    match (c, simd) {
        #[cfg(target_arch = "x86_64")]
        (3, Simd::V3(v3)) if shuffled => resize_hrow3_v3(v3, row, out, xi, xw, single, groups),
        (1, _) => resize_hrow::<1>(row, out, xi, xw, single),
        _ => resize_hrow::<3>(row, out, xi, xw, single),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn resize_bilinear_at(
    simd: Simd,
    src: View<'_>,
    dst: &mut Img,
    win: (f64, f64, f64, f64),
    oh: usize,
    ow: usize,
    s: &mut ResizeScratch,
) {
    let c = src.c;
    let (x0, y0, cw, ch) = win;
    dst.reshape(oh, ow, c);
    s.xi.clear();
    s.xw.clear();
    let fx = cw / ow as f64;
    let maxx = (src.w - 1) as f64;
    for ox in 0..ow {
        let sx = (x0 + (ox as f64 + 0.5) * fx - 0.5).clamp(0.0, maxx);
        let i = (sx.floor() as usize).min(src.w.saturating_sub(2));
        let wgt = ((sx - i as f64) * 256.0).round().clamp(0.0, 256.0) as u16;
        s.xi.push((i * c) as u32);
        s.xw.push(wgt);
    }
    // Four spare lanes: the shuffled groups store 16 lanes for 12 outputs.
    s.r0.resize(ow * c + 4, 0);
    s.r1.resize(ow * c + 4, 0);
    let single_col = src.w == 1;
    let stride = src.stride();
    let fy = ch / oh as f64;
    let maxy = (src.h - 1) as f64;
    let shuffled = c == 3 && !matches!(simd, Simd::Scalar);
    if shuffled {
        let step = if single_col { 0 } else { 3 };
        s.groups.build(&s.xi, &s.xw, step, stride);
    }
    let ResizeScratch {
        xi,
        xw,
        r0,
        r1,
        groups,
    } = s;
    simd.run(
        #[inline(always)]
        || {
            // A macro, not a closure: a closure is compiled apart from the AVX2 context.
            macro_rules! hrow {
                ($row:expr, $out:expr) => {
                    resize_hrow_any(simd, shuffled, c, $row, $out, xi, xw, single_col, groups)
                };
            }
            let mut cached: (usize, usize) = (usize::MAX, usize::MAX);
            for (oy, out) in dst.data.chunks_exact_mut(ow * c).enumerate() {
                let sy = (y0 + (oy as f64 + 0.5) * fy - 0.5).clamp(0.0, maxy);
                let i = (sy.floor() as usize).min(src.h.saturating_sub(2));
                let j = (i + 1).min(src.h - 1);
                let wy = ((sy - i as f64) * 256.0).round().clamp(0.0, 256.0) as u32;
                if cached != (i, j) {
                    if cached.1 == i {
                        std::mem::swap(r0, r1);
                    } else {
                        hrow!(&src.data[i * stride..(i + 1) * stride], r0);
                    }
                    hrow!(&src.data[j * stride..(j + 1) * stride], r1);
                    cached = (i, j);
                }
                resize_vblend(simd, r0, r1, out, wy);
            }
        },
    );
}

/// The vertical pass of [`resize_bilinear`]: `out = (a (256 - wy) + b wy + 2^15) >> 16` for the
/// Q8 rows `a` and `b`.
#[inline(always)]
fn resize_vblend(simd: Simd, r0: &[u16], r1: &[u16], out: &mut [u8], wy: u32) {
    #[inline(always)]
    fn plain(r0: &[u16], r1: &[u16], out: &mut [u8], wy: u32) {
        let w0 = 256 - wy;
        for ((o, &a), &b) in out.iter_mut().zip(r0).zip(r1) {
            *o = ((a as u32 * w0 + b as u32 * wy + 32768) >> 16) as u8;
        }
    }
    match simd {
        // 32 outputs per block with `pmaddwd` on interleaved (a, b) pairs: it multiplies signed
        // 16-bit lanes, so both rows are offset by -2^15 (an xor); since the weights sum to 256
        // that takes exactly 2^23 off the sum, which the rounding constant puts back. The same
        // integers as the plain loop.
        #[cfg(target_arch = "x86_64")]
        Simd::V3(v3) => {
            use std::arch::x86_64::__m256i;
            let (avx, a2) = (v3.avx, v3.avx2);
            let flip = avx._mm256_set1_epi16(i16::MIN);
            let weights = avx._mm256_set1_epi32(((wy << 16) | (256 - wy)) as i32);
            let round = avx._mm256_set1_epi32((1 << 23) + (1 << 15));
            let blend16 = |a: __m256i, b: __m256i| {
                let (a, b) = (a2._mm256_xor_si256(a, flip), a2._mm256_xor_si256(b, flip));
                let lo = a2._mm256_madd_epi16(a2._mm256_unpacklo_epi16(a, b), weights);
                let hi = a2._mm256_madd_epi16(a2._mm256_unpackhi_epi16(a, b), weights);
                let lo = a2._mm256_srli_epi32::<16>(a2._mm256_add_epi32(lo, round));
                let hi = a2._mm256_srli_epi32::<16>(a2._mm256_add_epi32(hi, round));
                // Unpack and pack both work within 128-bit lanes: the order round-trips.
                a2._mm256_packus_epi32(lo, hi)
            };
            let n = out.len() / 32 * 32;
            let (body, tail) = out.split_at_mut(n);
            for (k, o) in body.chunks_exact_mut(32).enumerate() {
                let x = 32 * k;
                let a: [__m256i; 2] =
                    pulp::cast(<[u16; 32]>::try_from(&r0[x..x + 32]).expect("32 values"));
                let b: [__m256i; 2] =
                    pulp::cast(<[u16; 32]>::try_from(&r1[x..x + 32]).expect("32 values"));
                let bytes = a2._mm256_packus_epi16(blend16(a[0], b[0]), blend16(a[1], b[1]));
                let bytes = a2._mm256_permute4x64_epi64::<0b11_01_10_00>(bytes);
                o.copy_from_slice(&pulp::cast::<__m256i, [u8; 32]>(bytes));
            }
            plain(&r0[n..], &r1[n..], tail, wy);
        }
        _ => plain(r0, r1, out, wy),
    }
}

pub(crate) fn random_resized_crop(
    cfg: &RandomResizedCropConfig,
    src: View<'_>,
    dst: &mut Img,
    rng: &mut Rng,
    apply: bool,
    s: &mut ResizeScratch,
) {
    let (w, h) = (src.w as f64, src.h as f64);
    let mut win = (0.0, 0.0, w, h);
    if apply {
        let area = w * h;
        let (lr0, lr1) = (cfg.ratio[0].ln(), cfg.ratio[1].ln());
        let mut found = false;
        for _ in 0..10 {
            let target = area * uniform(rng, cfg.scale[0], cfg.scale[1]);
            let ratio = uniform(rng, lr0, lr1).exp();
            let cw = (target * ratio).sqrt().round();
            let chh = (target / ratio).sqrt().round();
            if cw >= 1.0 && chh >= 1.0 && cw <= w && chh <= h {
                let x0 = below(rng, (w - cw) as usize + 1) as f64;
                let y0 = below(rng, (h - chh) as usize + 1) as f64;
                win = (x0, y0, cw, chh);
                found = true;
                break;
            }
        }
        if !found {
            // Centre crop at the nearest allowed ratio (torchvision's fallback).
            let r = w / h;
            let (cw, chh) = if r < cfg.ratio[0] {
                (w, (w / cfg.ratio[0]).round())
            } else if r > cfg.ratio[1] {
                ((h * cfg.ratio[1]).round(), h)
            } else {
                (w, h)
            };
            win = (((w - cw) / 2.0).floor(), ((h - chh) / 2.0).floor(), cw, chh);
        }
    }
    resize_bilinear(src, dst, win, cfg.height, cfg.width, s);
}

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
    pub(crate) fn validate(&self) -> Issues {
        let mut i = Issues::new();
        i.check(self.sigma.get() <= 64.0, "sigma", || {
            format!("expected sigma <= 64 pixels, found {}", self.sigma)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: usize, w: usize, c: usize) -> Img {
        Img::from_vec(
            h,
            w,
            c,
            (0..h * w * c).map(|i| (i * 7 % 251) as u8).collect(),
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        #[test]
        fn hflip_levels_agree_with_the_definition(img in crate::simd::arb_img(5, 100)) {
            for simd in Simd::all() {
                let mut dst = Img::default();
                hflip_at(simd, img.view(), &mut dst);
                for y in 0..img.h {
                    for x in 0..img.w {
                        let (o, i) = ((y * img.w + x) * img.c, (y * img.w + img.w - 1 - x) * img.c);
                        proptest::prop_assert_eq!(&dst.data[o..o + img.c], &img.data[i..i + img.c], "{:?}", simd);
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        #[test]
        fn resize_levels_agree(
            img in crate::simd::arb_img(30, 30),
            fx in 0.0f64..1.0, fy in 0.0f64..1.0, fw in 0.05f64..1.0, fh in 0.05f64..1.0,
            oh in 1usize..40, ow in 1usize..40,
        ) {
            let (w, h) = (img.w as f64, img.h as f64);
            let cw = (fw * w).max(1.0).round();
            let chh = (fh * h).max(1.0).round();
            let win = ((fx * (w - cw)).floor(), (fy * (h - chh)).floor(), cw, chh);
            let mut want = None;
            for simd in Simd::all() {
                let mut dst = Img::default();
                resize_bilinear_at(simd, img.view(), &mut dst, win, oh, ow, &mut ResizeScratch::default());
                match &want {
                    None => want = Some(dst),
                    Some(w) => proptest::prop_assert_eq!(w, &dst, "{:?}", simd),
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn warp_levels_agree(
            img in crate::simd::arb_img(24, 24),
            angle in -3.2f64..3.2,
            s in 0.5f64..2.0,
            sh in -0.5f64..0.5,
            tx in -5.0f64..5.0,
            fill in proptest::prelude::any::<u8>(),
        ) {
            let m = Mat::about_centre(img.h, img.w, angle, s, sh, tx, -tx);
            let mut want = None;
            for simd in Simd::all() {
                let mut dst = Img::default();
                warp_affine_at(simd, img.view(), &mut dst, &m, fill);
                match &want {
                    None => want = Some(dst),
                    Some(w) => proptest::prop_assert_eq!(w, &dst, "{:?}", simd),
                }
            }
        }
    }

    #[test]
    fn identity_warp_is_exact() {
        let src = ramp(9, 7, 3);
        let mut dst = Img::default();
        warp_affine(src.view(), &mut dst, &Mat::IDENTITY, 0);
        assert_eq!(src, dst);
    }

    #[test]
    fn integer_translation_shifts_pixels() {
        let src = ramp(6, 6, 1);
        let mut dst = Img::default();
        let m = Mat([1.0, 0.0, 2.0, 0.0, 1.0, 1.0]);
        warp_affine(src.view(), &mut dst, &m, 9);
        for y in 0..6 {
            for x in 0..6 {
                let want = if x >= 2 && y >= 1 {
                    src.data[(y - 1) * 6 + x - 2]
                } else {
                    9
                };
                assert_eq!(dst.data[y * 6 + x], want, "at {x},{y}");
            }
        }
    }

    #[test]
    fn matrix_inverse_roundtrip() {
        let m = Mat::about_centre(10, 20, 0.3, 1.2, 0.1, 2.0, -1.0);
        let i = m.inverse().unwrap();
        let id = m.after(&i);
        for (a, b) in id.0.iter().zip(Mat::IDENTITY.0.iter()) {
            assert!((a - b).abs() < 1e-9);
        }
    }

    #[test]
    fn crop_with_padding_places_fill() {
        let src = ramp(4, 4, 1);
        let mut dst = Img::default();
        crop_padded(src.view(), &mut dst, 0, 0, 4, 4, 2, 5);
        assert_eq!(&dst.data[..8], &[5; 8]);
        assert_eq!(dst.data[10], src.data[0]);
    }

    #[test]
    fn resize_full_window_same_size_is_identity() {
        let src = ramp(8, 5, 3);
        let mut dst = Img::default();
        let mut s = ResizeScratch::default();
        resize_bilinear(src.view(), &mut dst, (0.0, 0.0, 5.0, 8.0), 8, 5, &mut s);
        assert_eq!(src, dst);
    }

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
}
