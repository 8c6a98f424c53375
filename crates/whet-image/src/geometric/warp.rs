//! [`Mat`], the 2×3 affine matrix, and [`warp_affine`], the bilinear warp all affine ops share
//! (also [`sample`], the bilinear sampler the elastic op resamples with).

use crate::buf::{Img, View};
use crate::simd::Simd;

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

/// Bilinear sample at Q16 coordinates `(qx, qy)`, writing `C` channels to `out`.
#[inline(always)]
pub(super) fn sample<const C: usize>(src: View<'_>, qx: i64, qy: i64, fill: u8, out: &mut [u8]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometric::ramp;

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
}
