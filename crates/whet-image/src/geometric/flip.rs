//! `hflip` and `vflip`.

use super::p_one;
use crate::buf::{Img, View};
use crate::simd::Simd;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::spec::Probability;

/// `hflip`: mirror left-right.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlipConfig {
    /// Probability of applying the op. Default 1.
    #[serde(default = "p_one")]
    pub p: Probability,
}

impl Default for FlipConfig {
    /// Always flip (`p` 1), as `{}` in YAML.
    fn default() -> Self {
        Self { p: p_one() }
    }
}

impl FlipConfig {
    /// The same as [`FlipConfig::default`]: always flip.
    pub fn new() -> Self {
        Self::default()
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

crate::builder::with_p!(FlipConfig);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::assert_same_as_json;

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

    #[test]
    fn builder_matches_serde_defaults() {
        assert_same_as_json(&FlipConfig::default(), "{}");
        assert_same_as_json(&FlipConfig::new(), "{}");
        assert_same_as_json(&FlipConfig::new().with_p(0.25), r#"{"p": 0.25}"#);
    }
}
