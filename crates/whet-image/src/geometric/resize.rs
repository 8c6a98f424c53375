//! `random_resized_crop` and the bilinear resize it uses.

use super::{check_range, p_one};
use crate::buf::{Img, View, below, uniform};
use crate::simd::Simd;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::Rng;
use whet_core::spec::{Issues, Probability};

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
    /// A crop resized to `height × width`, area fraction `[0.08, 1]`, aspect ratio
    /// `[3/4, 4/3]`, `p` 1.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            scale: default_rrc_scale(),
            ratio: default_rrc_ratio(),
            p: p_one(),
        }
    }

    /// Sets the area fraction range.
    pub fn with_scale(mut self, scale: [f64; 2]) -> Self {
        self.scale = scale;
        self
    }

    /// Sets the aspect-ratio (w/h) range.
    pub fn with_ratio(mut self, ratio: [f64; 2]) -> Self {
        self.ratio = ratio;
        self
    }
}

impl RandomResizedCropConfig {
    pub(crate) fn validate(&self) -> Issues {
        let mut i = Issues::new();
        check_range(&mut i, "scale", self.scale, 1e-6, 1.0);
        check_range(&mut i, "ratio", self.ratio, 1e-3, 1e3);
        super::check_output_size(&mut i, self.width, self.height);
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

crate::builder::with_p!(RandomResizedCropConfig);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::assert_same_as_json;
    use crate::geometric::ramp;

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

    #[test]
    fn resize_full_window_same_size_is_identity() {
        let src = ramp(8, 5, 3);
        let mut dst = Img::default();
        let mut s = ResizeScratch::default();
        resize_bilinear(src.view(), &mut dst, (0.0, 0.0, 5.0, 8.0), 8, 5, &mut s);
        assert_eq!(src, dst);
    }

    #[test]
    fn builder_matches_serde_defaults() {
        assert_same_as_json(
            &RandomResizedCropConfig::new(24, 20),
            r#"{"width": 24, "height": 20}"#,
        );
        assert_same_as_json(
            &RandomResizedCropConfig::new(24, 20)
                .with_scale([0.5, 1.0])
                .with_ratio([0.5, 2.0])
                .with_p(0.5),
            r#"{"width": 24, "height": 20, "scale": [0.5, 1], "ratio": [0.5, 2], "p": 0.5}"#,
        );
    }
}
