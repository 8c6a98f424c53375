//! Column kernels over `f64` values and their validity, one 64-value block (one mask word) at a
//! time: the mean and the variance in one pass, fed whole or in pieces with the same result,
//! and filling missing values in place.

use polars::prelude::*;

/// The mask with the low `n` bits set (`n <= 64`).
fn low_bits(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// Cuts a column into blocks of 64 values aligned to the column's first row, whatever pieces it
/// arrives in (the arrays of one column, the batches of a streamed table): the blocks are those
/// of the column in one piece, so sums over blocks do not depend on how the rows were chunked.
/// `f(values, mask)` gets each block in row order; bit `j` of `mask` is set when `values[j]` is
/// present (bits past the block's end are clear).
#[derive(Debug, Clone)]
pub(crate) struct Blocker {
    buf: [f64; 64],
    mask: u64,
    len: usize,
}

impl Default for Blocker {
    fn default() -> Self {
        Self {
            buf: [0.0; 64],
            mask: 0,
            len: 0,
        }
    }
}

impl Blocker {
    /// Appends `ca`'s values, calling `f` on every block completed.
    pub fn feed(&mut self, ca: &Float64Chunked, f: &mut impl FnMut(&[f64], u64)) {
        for arr in ca.downcast_iter() {
            let vals = arr.values().as_slice();
            let valid = arr.validity().filter(|v| v.unset_bits() > 0);
            let present = |i: usize| valid.is_none_or(|v| v.get_bit(i));
            let mut at = 0;
            // Complete the block left open by the previous piece.
            while self.len > 0 && at < vals.len() {
                self.push(vals[at], present(at), f);
                at += 1;
            }
            let full = (vals.len() - at) / 64 * 64;
            match valid {
                None => {
                    for blk in vals[at..at + full].chunks_exact(64) {
                        f(blk, u64::MAX);
                    }
                }
                Some(v) => {
                    // One mask word per full block: the iterator's words, then (for a bitmap
                    // not aligned to a byte) the last ones in its remainder.
                    let slice = v.clone().sliced(at, full);
                    let mut words = slice.fast_iter_u64();
                    let mut blocks = vals[at..at + full].chunks_exact(64);
                    for w in words.by_ref() {
                        if let Some(blk) = blocks.next() {
                            f(blk, w);
                        }
                    }
                    let (rest, _) = words.remainder();
                    for (blk, w) in blocks.by_ref().zip(rest) {
                        f(blk, w);
                    }
                }
            }
            for (i, &v) in vals.iter().enumerate().skip(at + full) {
                self.push(v, present(i), f);
            }
        }
    }

    fn push(&mut self, v: f64, present: bool, f: &mut impl FnMut(&[f64], u64)) {
        self.buf[self.len] = v;
        self.mask |= u64::from(present) << self.len;
        self.len += 1;
        if self.len == 64 {
            f(&self.buf, self.mask);
            (self.len, self.mask) = (0, 0);
        }
    }

    /// Calls `f` on the last, partial block (if any).
    pub fn finish(&mut self, f: &mut impl FnMut(&[f64], u64)) {
        if self.len > 0 {
            f(&self.buf[..self.len], self.mask);
            (self.len, self.mask) = (0, 0);
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

/// The running mean of [`mean`], fed in pieces ([`MeanAcc::feed`]): block sums added with
/// Neumaier's compensated summation ("Rundungsfehleranalyse einiger Verfahren zur Summation
/// endlicher Summen", 1974), in row order whatever the thread count or the pieces.
#[derive(Debug, Clone, Default)]
pub(crate) struct MeanAcc {
    blocks: Blocker,
    n: usize,
    sum: f64,
    comp: f64,
}

impl MeanAcc {
    fn add(n: &mut usize, sum: &mut f64, comp: &mut f64, blk: &[f64], mask: u64) {
        *n += mask.count_ones() as usize;
        let b = block_sum(blk, mask);
        let t = *sum + b;
        *comp += if sum.abs() >= b.abs() {
            (*sum - t) + b
        } else {
            (b - t) + *sum
        };
        *sum = t;
    }

    /// Takes in the next rows.
    pub fn feed(&mut self, ca: &Float64Chunked) {
        let (n, sum, comp) = (&mut self.n, &mut self.sum, &mut self.comp);
        self.blocks
            .feed(ca, &mut |blk, mask| Self::add(n, sum, comp, blk, mask));
    }

    /// The mean of every present value fed (`None` without any).
    pub fn finish(mut self) -> Option<f64> {
        let (n, sum, comp) = (&mut self.n, &mut self.sum, &mut self.comp);
        self.blocks
            .finish(&mut |blk, mask| Self::add(n, sum, comp, blk, mask));
        (self.n > 0).then(|| (self.sum + self.comp) / self.n as f64)
    }
}

/// Mean of the present values (`None` without any), see [`MeanAcc`].
#[cfg(test)]
pub(crate) fn mean(ca: &Float64Chunked) -> Option<f64> {
    let mut acc = MeanAcc::default();
    acc.feed(ca);
    acc.finish()
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

/// The running [`Moments`] of [`moments`], fed in pieces ([`MomentsAcc::feed`]): each 64-value
/// block's mean and squared deviations are computed in registers, then merged into the running
/// totals with the pairwise update of Chan, Golub & LeVeque, "Updating formulae and a pairwise
/// algorithm for computing sample variances" (1979), which stays accurate where the textbook
/// sum-of-squares formula cancels. The blocks are the column's whatever the pieces
/// ([`Blocker`]), so the result does not depend on threads or batches.
#[derive(Debug, Clone, Default)]
pub(crate) struct MomentsAcc {
    blocks: Blocker,
    m: Moments,
}

impl Default for Moments {
    fn default() -> Self {
        Moments {
            count: 0,
            mean: 0.0,
            m2: 0.0,
        }
    }
}

impl MomentsAcc {
    fn add(m: &mut Moments, blk: &[f64], mask: u64) {
        let nb = mask.count_ones() as usize;
        if nb == 0 {
            return;
        }
        let mb = block_sum(blk, mask) / nb as f64;
        let qb = block_sq_dev(blk, mask, mb);
        let total = m.count + nb;
        let delta = mb - m.mean;
        let w = nb as f64 / total as f64;
        m.mean += delta * w;
        m.m2 += qb + delta * delta * m.count as f64 * w;
        m.count = total;
    }

    /// Takes in the next rows.
    pub fn feed(&mut self, ca: &Float64Chunked) {
        let m = &mut self.m;
        self.blocks
            .feed(ca, &mut |blk, mask| Self::add(m, blk, mask));
    }

    /// The moments of every value fed.
    pub fn finish(mut self) -> Moments {
        let m = &mut self.m;
        self.blocks.finish(&mut |blk, mask| Self::add(m, blk, mask));
        self.m
    }
}

/// [`Moments`] of `ca` in one pass (see [`MomentsAcc`]).
#[cfg(test)]
pub(crate) fn moments(ca: &Float64Chunked) -> Moments {
    let mut acc = MomentsAcc::default();
    acc.feed(ca);
    acc.finish()
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

    proptest::proptest! {
        /// A column fed in pieces (as a streamed table's batches arrive) gives the bits of the
        /// column in one piece.
        #[test]
        fn pieces_give_the_bits_of_the_whole(
            v in proptest::collection::vec(proptest::option::weighted(0.8, -1e6f64..1e6), 0..1500),
            cuts in proptest::collection::vec(0usize..1500, 0..6),
        ) {
            let whole = Float64Chunked::from_iter_options("x".into(), v.iter().copied());
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(v.len())).collect();
            cuts.push(0);
            cuts.push(v.len());
            cuts.sort_unstable();
            let (mut m, mut a) = (MomentsAcc::default(), MeanAcc::default());
            for w in cuts.windows(2) {
                // Each piece itself in two arrays, the second with a bit offset.
                let piece = whole.slice(w[0] as i64, w[1] - w[0]);
                let half = piece.len() / 2;
                let mut two = piece.slice(0, half);
                two.append(&piece.slice(half as i64, piece.len() - half)).unwrap();
                m.feed(&two);
                a.feed(&two);
            }
            let (m, whole_m) = (m.finish(), moments(&whole));
            proptest::prop_assert_eq!(m.count, v.iter().flatten().count());
            proptest::prop_assert_eq!(m.count, whole_m.count);
            proptest::prop_assert_eq!(m.mean.to_bits(), whole_m.mean.to_bits());
            proptest::prop_assert_eq!(m.m2.to_bits(), whole_m.m2.to_bits());
            proptest::prop_assert_eq!(a.finish().map(f64::to_bits), mean(&whole).map(f64::to_bits));
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
