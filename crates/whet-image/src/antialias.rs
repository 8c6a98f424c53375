//! Resizing of 8-bit images with an antialiased bilinear (triangle) filter, the way PIL's
//! `Image.resize(size, Image.BILINEAR)` computes it: separable, the filter's support widened by
//! the shrink factor (so shrinking averages every source pixel instead of aliasing), weights
//! normalised per output pixel and applied in 22-bit fixed point, the horizontal pass first
//! (rounded to 8 bits) and then the vertical one.
//!
//! The folder loader resizes every image with it: a tenth of the time of the `image` crate's
//! `resize_exact` (which goes through `f32` pixels), with PIL's numbers.

/// Fixed-point bits of the weights: 32 − 8 (pixel) − 2 (headroom), as PIL.
const BITS: u32 = 22;

/// The weights of one axis: for output index `i`, source indices `start[i] .. start[i] + len[i]`
/// with weights `weights[i * stride ..][.. len[i]]`.
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    stride: usize,
    weights: Vec<i32>,
}

impl Taps {
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        // The triangle's support is 1 source pixel, widened by the shrink factor.
        let support = filter_scale;
        let stride = 2 * support.ceil() as usize + 1;
        let mut taps = Taps {
            start: Vec::with_capacity(out_size),
            len: Vec::with_capacity(out_size),
            stride,
            weights: vec![0; out_size * stride],
        };
        let mut k = vec![0.0f64; stride];
        for i in 0..out_size {
            let center = (i as f64 + 0.5) * scale;
            let lo = (center - support + 0.5).floor().max(0.0) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(in_size);
            let n = hi.saturating_sub(lo).min(stride);
            let mut sum = 0.0;
            for (t, kt) in k.iter_mut().enumerate().take(n) {
                let x = ((lo + t) as f64 - center + 0.5) / filter_scale;
                *kt = (1.0 - x.abs()).max(0.0);
                sum += *kt;
            }
            let w = &mut taps.weights[i * stride..][..n];
            for (wt, kt) in w.iter_mut().zip(&k) {
                let v = if sum != 0.0 { kt / sum } else { *kt };
                *wt = (v * f64::from(1u32 << BITS)).round() as i32;
            }
            taps.start.push(lo);
            taps.len.push(n);
        }
        taps
    }

    fn of(&self, i: usize) -> (usize, &[i32]) {
        (
            self.start[i],
            &self.weights[i * self.stride..][..self.len[i]],
        )
    }
}

/// `acc + v·k`. Cannot overflow: the weights of one output are non-negative and sum to about
/// `2^22`, so a sum stays below `255·2^22 + 2^21 < 2^31`. Written as wrapping arithmetic so the
/// dev profile (overflow checks on, which `cargo whet` runs) does not check every
/// multiply-add of the loops (1.6x the release build's time with the checks).
#[inline(always)]
fn mac(acc: i32, v: u8, k: i32) -> i32 {
    acc.wrapping_add(i32::from(v).wrapping_mul(k))
}

fn to_u8(acc: i32) -> u8 {
    (acc >> BITS).clamp(0, 255) as u8
}

/// The horizontal pass for `C` channels: each row of `src` (`w` pixels) to `ow` pixels of `dst`.
fn horizontal<const C: usize>(src: &[u8], w: usize, ow: usize, taps: &Taps, dst: &mut [u8]) {
    for (row, out) in src.chunks_exact(w * C).zip(dst.chunks_exact_mut(ow * C)) {
        for (x, px) in out.chunks_exact_mut(C).enumerate() {
            let (lo, k) = taps.of(x);
            let mut acc = [1i32 << (BITS - 1); C];
            for (p, &kt) in row[lo * C..].chunks_exact(C).zip(k) {
                for ch in 0..C {
                    acc[ch] = mac(acc[ch], p[ch], kt);
                }
            }
            for ch in 0..C {
                px[ch] = to_u8(acc[ch]);
            }
        }
    }
}

/// The horizontal pass for any channel count.
fn horizontal_any(src: &[u8], (w, c): (usize, usize), ow: usize, taps: &Taps, dst: &mut [u8]) {
    for (row, out) in src.chunks_exact(w * c).zip(dst.chunks_exact_mut(ow * c)) {
        for (x, px) in out.chunks_exact_mut(c).enumerate() {
            let (lo, k) = taps.of(x);
            for (ch, o) in px.iter_mut().enumerate() {
                let mut acc = 1i32 << (BITS - 1);
                for (p, &kt) in row[lo * c..].chunks_exact(c).zip(k) {
                    acc = mac(acc, p[ch], kt);
                }
                *o = to_u8(acc);
            }
        }
    }
}

/// Resizes `src` (`h × w × c`, rows of interleaved channels) to `oh × ow × c` into `out`
/// (`oh·ow·c` bytes), `tmp` being reused scratch. Copies when the sizes are equal.
///
/// # Panics
/// When a buffer's length does not match its shape.
pub(crate) fn resize_antialiased(
    src: &[u8],
    (h, w, c): (usize, usize, usize),
    (oh, ow): (usize, usize),
    out: &mut [u8],
    tmp: &mut Vec<u8>,
) {
    assert_eq!(src.len(), h * w * c, "source buffer and shape disagree");
    assert_eq!(out.len(), oh * ow * c, "output buffer and shape disagree");
    if (h, w) == (oh, ow) {
        out.copy_from_slice(src);
        return;
    }
    // Horizontal pass into `tmp` (h × ow × c), or the source as it is.
    let rows: &[u8] = if w != ow {
        let taps = Taps::new(w, ow);
        tmp.clear();
        tmp.resize(h * ow * c, 0);
        match c {
            1 => horizontal::<1>(src, w, ow, &taps, tmp),
            3 => horizontal::<3>(src, w, ow, &taps, tmp),
            4 => horizontal::<4>(src, w, ow, &taps, tmp),
            _ => horizontal_any(src, (w, c), ow, &taps, tmp),
        }
        tmp
    } else {
        src
    };
    if h == oh {
        out.copy_from_slice(rows);
        return;
    }
    // Vertical pass: each output row is a weighted sum of whole source rows (vectorises).
    let taps = Taps::new(h, oh);
    let row_len = ow * c;
    let mut acc = vec![0i32; row_len];
    for (y, dst) in out.chunks_exact_mut(row_len).enumerate() {
        let (lo, k) = taps.of(y);
        acc.fill(1 << (BITS - 1));
        for (t, &kt) in k.iter().enumerate() {
            let row = &rows[(lo + t) * row_len..][..row_len];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a = mac(*a, v, kt);
            }
        }
        for (o, &a) in dst.iter_mut().zip(&acc) {
            *o = to_u8(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resize(src: &[u8], hwc: (usize, usize, usize), o: (usize, usize)) -> Vec<u8> {
        let mut out = vec![0; o.0 * o.1 * hwc.2];
        resize_antialiased(src, hwc, o, &mut out, &mut Vec::new());
        out
    }

    #[test]
    fn weights_sum_to_one_and_cover_the_source() {
        for (i, o) in [(320, 64), (240, 64), (64, 320), (7, 3), (3, 7), (100, 99)] {
            let taps = Taps::new(i, o);
            for x in 0..o {
                let (lo, k) = taps.of(x);
                let sum: i32 = k.iter().sum();
                assert!(
                    (sum - (1 << BITS)).abs() <= k.len() as i32,
                    "{i}->{o} at {x}: {sum}"
                );
                assert!(lo + k.len() <= i);
            }
        }
    }

    #[test]
    fn constant_images_stay_constant() {
        let src = vec![77u8; 31 * 17 * 3];
        for o in [(5, 9), (64, 64), (31, 4), (2, 17)] {
            assert!(
                resize(&src, (31, 17, 3), o).iter().all(|&v| v == 77),
                "{o:?}"
            );
        }
    }

    #[test]
    fn halving_averages_pairs_with_the_triangle_weights() {
        // 1 x 4 grey row [0, 100, 200, 100] to 1 x 2: shrinking by 2 widens the support to 2
        // source pixels each side of the centre, weight 1 - |offset| / 2 with the offset from
        // the centre to the source pixel's centre, normalised over the pixels inside the image.
        // Output 0: centre 1.0; pixels 0, 1, 2 at -0.5, 0.5, 1.5 → 0.75, 0.75, 0.25
        // → (0·0.75 + 100·0.75 + 200·0.25) / 1.75 = 71.43 → 71.
        // Output 1: centre 3.0; pixels 1, 2, 3 at -1.5, -0.5, 0.5 → 0.25, 0.75, 0.75
        // → (100·0.25 + 200·0.75 + 100·0.75) / 1.75 = 142.86 → 143.
        assert_eq!(resize(&[0, 100, 200, 100], (1, 4, 1), (1, 2)), [71, 143]);
        // The same along the vertical axis.
        assert_eq!(resize(&[0, 100, 200, 100], (4, 1, 1), (2, 1)), [71, 143]);
    }

    #[test]
    fn channels_are_resized_independently() {
        let (h, w) = (6, 10);
        let rgb: Vec<u8> = (0..h * w)
            .flat_map(|i| [(i * 3) as u8, (255 - i * 2) as u8, (i * 7 % 256) as u8])
            .collect();
        let out = resize(&rgb, (h, w, 3), (4, 3));
        for ch in 0..3 {
            let plane: Vec<u8> = rgb.iter().skip(ch).step_by(3).copied().collect();
            let alone = resize(&plane, (h, w, 1), (4, 3));
            let got: Vec<u8> = out.iter().skip(ch).step_by(3).copied().collect();
            assert_eq!(got, alone, "channel {ch}");
        }
    }

    #[test]
    fn any_channel_count_agrees_with_the_specialised_passes() {
        let (h, w) = (5, 13);
        let two: Vec<u8> = (0..h * w * 2).map(|i| (i * 37 % 251) as u8).collect();
        let out = resize(&two, (h, w, 2), (3, 4));
        for ch in 0..2 {
            let plane: Vec<u8> = two.iter().skip(ch).step_by(2).copied().collect();
            let got: Vec<u8> = out.iter().skip(ch).step_by(2).copied().collect();
            assert_eq!(got, resize(&plane, (h, w, 1), (3, 4)), "channel {ch}");
        }
    }

    #[test]
    fn same_size_copies() {
        let src: Vec<u8> = (0..24).collect();
        assert_eq!(resize(&src, (2, 4, 3), (2, 4)), src);
    }
}
