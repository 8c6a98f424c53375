//! Deterministic benchmark inputs, bit-identical to the Python peers' (`bench/py/common.py`).
//!
//! Every value comes from [`h32`], a fixed 32-bit integer hash of `(seed, a, b, c, d)`, not from
//! an RNG library, so the Rust and Python sides see the same pixels and samples without sharing
//! files. The formula is in `bench/README.md`; the tests below pin values computed by the Python
//! implementation.

use ndarray::Array2;

/// The input hash: a multiply-add of the five arguments modulo 2^32, then a murmur-style
/// finaliser. Wrapping arithmetic on `u32` is exactly the Python side's `mod 2**32`.
#[inline]
pub fn h32(seed: u64, a: u64, b: u64, c: u64, d: u64) -> u32 {
    // Only the low 32 bits of each argument matter (the Python side masks them the same way).
    let t = |v: u64| v as u32;
    let mut v = t(seed)
        .wrapping_mul(0x9E37_79B1)
        .wrapping_add(t(a).wrapping_mul(0x85EB_CA77))
        .wrapping_add(t(b).wrapping_mul(0xC2B2_AE3D))
        .wrapping_add(t(c).wrapping_mul(0x27D4_EB2F))
        .wrapping_add(t(d).wrapping_mul(0x1656_67B1))
        .wrapping_add(0x632B_E5AB);
    v ^= v >> 15;
    v = v.wrapping_mul(0x2C1B_3C6D);
    v ^= v >> 12;
    v = v.wrapping_mul(0x297A_2D39);
    v ^= v >> 15;
    v
}

/// Maps a hash value to `[-1, 1)`, in f64 (as the Python side does before any cast).
#[inline]
pub fn unit(v: u32) -> f64 {
    f64::from(v) / 4_294_967_296.0 * 2.0 - 1.0
}

/// Image `index` of the set for `seed`: `h × w × c` interleaved `u8`,
/// `pixel(y, x, ch) = h32(seed, index, y, x, ch) >> 24`.
pub fn image(seed: u64, index: u64, h: usize, w: usize, c: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(h * w * c);
    for y in 0..h as u64 {
        for x in 0..w as u64 {
            for ch in 0..c as u64 {
                out.push((h32(seed, index, y, x, ch) >> 24) as u8);
            }
        }
    }
    out
}

/// The synthetic classification set of the training benchmark: `n` samples of `dim` features and
/// their labels in `0..classes`.
///
/// `label[i] = h32(seed, 1, i, 0, 0) mod classes`;
/// `x[i, j] = f32(0.5 · unit(h32(seed, 2, label[i], j, 0)) + 0.5 · unit(h32(seed, 3, i, j, 0)))`:
/// a per-class centroid plus noise, centred on zero, so the network learns it at a fixed learning
/// rate.
pub fn training_set(seed: u64, n: usize, dim: usize, classes: usize) -> (Array2<f32>, Vec<usize>) {
    let labels: Vec<usize> = (0..n as u64)
        .map(|i| (h32(seed, 1, i, 0, 0) % classes as u32) as usize)
        .collect();
    let centroids: Vec<f64> = (0..classes as u64)
        .flat_map(|k| (0..dim as u64).map(move |j| unit(h32(seed, 2, k, j, 0))))
        .collect();
    let mut x = Array2::<f32>::zeros((n, dim));
    for (i, mut row) in x.rows_mut().into_iter().enumerate() {
        let centre = &centroids[labels[i] * dim..(labels[i] + 1) * dim];
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0.5 * centre[j] + 0.5 * unit(h32(seed, 3, i as u64, j as u64, 0))) as f32;
        }
    }
    (x, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values printed by bench/py/common.py (numpy 2.4.6); if these fail, the two sides no longer
    // see the same inputs.
    #[test]
    fn hash_matches_python() {
        assert_eq!(h32(0, 0, 0, 0, 0), 522_683_461);
        assert_eq!(h32(7, 1, 2, 3, 4), 2_848_751_144);
        assert_eq!(h32(u64::from(u32::MAX), 5, 10_000_000, 0, 0), 121_584_202);
    }

    #[test]
    fn image_matches_python() {
        let want: [u8; 60] = [
            252, 152, 199, 220, 237, 165, 148, 45, 41, 73, 33, 85, 223, 61, 137, 165, 246, 61, 155,
            137, 137, 109, 144, 150, 37, 106, 98, 62, 188, 206, 15, 106, 40, 14, 235, 217, 132,
            123, 165, 35, 51, 247, 73, 98, 123, 4, 230, 56, 34, 54, 209, 244, 255, 218, 47, 210,
            115, 237, 249, 145,
        ];
        assert_eq!(image(7, 3, 4, 5, 3), want);
    }

    #[test]
    fn training_set_matches_python() {
        let (x, y) = training_set(7, 5, 6, 10);
        assert_eq!(y, vec![6, 1, 9, 9, 4]);
        let bits: Vec<u32> = x.iter().take(3).map(|v| v.to_bits()).collect();
        assert_eq!(bits, vec![1_060_973_380, 1_050_852_412, 1_052_375_153]);
        assert!((f64::from(x[[1, 0]]) - (-0.055_785_670_876_502_99)).abs() < 1e-7);
    }

    #[test]
    fn training_inputs_are_centred() {
        let (x, _) = training_set(1, 2000, 784, 10);
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
    }
}
