//! Column kernels over `f64` values and their validity, one 64-value block (one mask word) at a
//! time: the mean and the variance in one pass, and filling missing values in place.

use polars::prelude::*;

/// The mask with the low `n` bits set (`n <= 64`).
fn low_bits(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// Calls `f(values, mask)` on consecutive blocks of at most 64 values of `ca`, in row order;
/// bit `j` of `mask` is set when `values[j]` is present (bits past the block's end are clear).
pub(crate) fn for_each_block(ca: &Float64Chunked, mut f: impl FnMut(&[f64], u64)) {
    for arr in ca.downcast_iter() {
        let vals = arr.values().as_slice();
        match arr.validity().filter(|v| v.unset_bits() > 0) {
            None => {
                for blk in vals.chunks(64) {
                    f(blk, low_bits(blk.len()));
                }
            }
            Some(valid) => {
                let mut words = valid.fast_iter_u64();
                let mut at = 0;
                for w in words.by_ref() {
                    f(&vals[at..at + 64], w);
                    at += 64;
                }
                let (rest, _) = words.remainder();
                for w in rest {
                    if at < vals.len() {
                        let end = (at + 64).min(vals.len());
                        f(&vals[at..end], w & low_bits(end - at));
                        at = end;
                    }
                }
            }
        }
    }
}

/// Sum of the present values of one block (eight lanes, so the compiler can vectorise it).
#[inline]
fn block_sum(blk: &[f64], mask: u64) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = blk.chunks_exact(8);
    for (c, ch) in chunks.by_ref().enumerate() {
        let m = (mask >> (8 * c)) as u8;
        for j in 0..8 {
            acc[j] += if (m >> j) & 1 != 0 { ch[j] } else { 0.0 };
        }
    }
    let base = blk.len() - chunks.remainder().len();
    for (j, &x) in chunks.remainder().iter().enumerate() {
        acc[j] += if (mask >> (base + j)) & 1 != 0 {
            x
        } else {
            0.0
        };
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Sum of squared deviations from `mean` of the present values of one block.
#[inline]
fn block_sq_dev(blk: &[f64], mask: u64, mean: f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = blk.chunks_exact(8);
    for (c, ch) in chunks.by_ref().enumerate() {
        let m = (mask >> (8 * c)) as u8;
        for j in 0..8 {
            let d = ch[j] - mean;
            acc[j] += if (m >> j) & 1 != 0 { d * d } else { 0.0 };
        }
    }
    let base = blk.len() - chunks.remainder().len();
    for (j, &x) in chunks.remainder().iter().enumerate() {
        let d = x - mean;
        acc[j] += if (mask >> (base + j)) & 1 != 0 {
            d * d
        } else {
            0.0
        };
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Mean of the present values (`None` without any): block sums added with Neumaier's
/// compensated summation ("Rundungsfehleranalyse einiger Verfahren zur Summation endlicher
/// Summen", 1974), in row order whatever the thread count.
pub(crate) fn mean(ca: &Float64Chunked) -> Option<f64> {
    let (mut n, mut sum, mut comp) = (0usize, 0.0f64, 0.0f64);
    for_each_block(ca, |blk, mask| {
        n += mask.count_ones() as usize;
        let b = block_sum(blk, mask);
        let t = sum + b;
        comp += if sum.abs() >= b.abs() {
            (sum - t) + b
        } else {
            (b - t) + sum
        };
        sum = t;
    });
    (n > 0).then(|| (sum + comp) / n as f64)
}

/// Count, mean and sum of squared deviations from the mean of the present values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Moments {
    /// Present values.
    pub count: usize,
    /// Their mean (0 when there are none).
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Moments {
    /// The mean, `None` without values.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }

    /// The population standard deviation (ddof 0), `None` without values.
    pub fn std(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.m2 / self.count as f64).sqrt())
    }
}

/// [`Moments`] of `ca` in one pass: each 64-value block's mean and squared deviations are
/// computed in registers, then merged into the running totals with the pairwise update of
/// Chan, Golub & LeVeque, "Updating formulae and a pairwise algorithm for computing sample
/// variances" (1979), which stays accurate where the textbook sum-of-squares formula cancels.
/// The order of the work is fixed, so the result does not depend on threads.
pub(crate) fn moments(ca: &Float64Chunked) -> Moments {
    let (mut n, mut mean, mut m2) = (0usize, 0.0f64, 0.0f64);
    for_each_block(ca, |blk, mask| {
        let nb = mask.count_ones() as usize;
        if nb == 0 {
            return;
        }
        let mb = block_sum(blk, mask) / nb as f64;
        let qb = block_sq_dev(blk, mask, mb);
        let total = n + nb;
        let delta = mb - mean;
        let w = nb as f64 / total as f64;
        mean += delta * w;
        m2 += qb + delta * delta * n as f64 * w;
        n = total;
    });
    Moments { count: n, mean, m2 }
}

/// Replaces missing values by `v`, in place when the buffers are not shared (else in a copy).
pub(crate) fn fill_f64(ca: Float64Chunked, v: f64) -> Float64Chunked {
    if ca.null_count() == 0 {
        return ca;
    }
    let name = ca.name().clone();
    let arrays = ca.downcast_into_iter().map(|mut arr| {
        let Some(valid) = arr.validity().cloned() else {
            return arr;
        };
        if let Some(vals) = arr.get_mut_values() {
            let fill = |blk: &mut [f64], w: u64| {
                if w != low_bits(blk.len()) {
                    for (j, x) in blk.iter_mut().enumerate() {
                        *x = if (w >> j) & 1 != 0 { *x } else { v };
                    }
                }
            };
            let mut words = valid.fast_iter_u64();
            let mut at = 0;
            for w in words.by_ref() {
                fill(&mut vals[at..at + 64], w);
                at += 64;
            }
            let (rest, _) = words.remainder();
            for w in rest {
                if at < vals.len() {
                    let end = (at + 64).min(vals.len());
                    fill(&mut vals[at..end], w);
                    at = end;
                }
            }
            return arr.with_validity(None);
        }
        let vals: Vec<f64> = arr.iter().map(|x| x.copied().unwrap_or(v)).collect();
        Float64Chunked::from_vec(PlSmallStr::EMPTY, vals)
            .downcast_into_iter()
            .next()
            .expect("from_vec makes one chunk")
    });
    Float64Chunked::from_chunk_iter(name, arrays)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(v: &[Option<f64>]) -> (usize, f64, f64) {
        let xs: Vec<f64> = v.iter().flatten().copied().collect();
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n.max(1) as f64;
        let m2 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
        (n, mean, m2)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    proptest::proptest! {
        #[test]
        fn moments_match_two_pass(
            v in proptest::collection::vec(proptest::option::weighted(0.8, -1e3f64..1e3), 0..300),
            split in 0usize..300,
            offset in 0usize..70,
        ) {
            // Several chunks, and a slice with a bit offset in its validity.
            let ca = Float64Chunked::from_iter_options("x".into(), v.iter().copied());
            let at = split.min(v.len());
            let mut two = ca.slice(0, at);
            two.append(&ca.slice(at as i64, v.len() - at)).unwrap();
            let off = offset.min(v.len());
            let sliced = ca.slice(off as i64, v.len() - off);
            for (c, vs) in [(&ca, &v[..]), (&two, &v[..]), (&sliced, &v[off..])] {
                let m = moments(c);
                let (n, mean, m2) = naive(vs);
                proptest::prop_assert_eq!(super::mean(c).is_some(), n > 0);
                if let Some(a) = super::mean(c) {
                    proptest::prop_assert!(close(a, mean), "{} vs {}", a, mean);
                }
                proptest::prop_assert_eq!(m.count, n);
                if n > 0 {
                    proptest::prop_assert!(close(m.mean, mean), "{} vs {}", m.mean, mean);
                    proptest::prop_assert!(close(m.m2, m2), "{} vs {}", m.m2, m2);
                }
                let filled: Vec<f64> = fill_f64(c.clone(), 7.5).into_no_null_iter().collect();
                let expect: Vec<f64> = vs.iter().map(|x| x.unwrap_or(7.5)).collect();
                proptest::prop_assert_eq!(&filled, &expect);
                // A column owned by nobody else is filled in place.
                let own = Float64Chunked::from_iter_options("x".into(), vs.iter().copied());
                let filled: Vec<f64> = fill_f64(own, 7.5).into_no_null_iter().collect();
                proptest::prop_assert_eq!(&filled, &expect);
            }
        }
    }

    #[test]
    fn moments_of_hand_checked_values() {
        let ca =
            Float64Chunked::from_iter_options("x".into(), [Some(1.0), None, Some(3.0)].into_iter());
        let m = moments(&ca);
        assert_eq!((m.count, m.mean(), m.std()), (2, Some(2.0), Some(1.0)));
        let none = Float64Chunked::from_iter_options("x".into(), [None, None].into_iter());
        assert_eq!((moments(&none).mean(), moments(&none).std()), (None, None));
        // Large offset, small spread: the one-pass sum-of-squares formula would lose it.
        let big: Vec<f64> = (0..1000).map(|i| 1e9 + (i % 2) as f64).collect();
        let m = moments(&Float64Chunked::from_vec("x".into(), big));
        assert!((m.std().unwrap() - 0.5).abs() < 1e-9, "{m:?}");
    }
}
