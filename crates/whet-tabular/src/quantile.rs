//! Exact quantiles of a column that arrives in batches, in memory bounded by a room given up
//! front: the medians of `impute`, the quartiles of `normalize: robust` and the bounds of `clip`,
//! in memory and streamed alike.
//!
//! Values are compared as polars compares them (`NaN` greatest, `-0.0 == 0.0`) through a `u64`
//! key whose order is theirs. The first pass counts the values and keeps their keys while they
//! fit the room; then the order statistics are selected from them (one pass, as for data that
//! fit). Past the room the keys are counted in a histogram of their leading bits instead (each
//! bin with its least and greatest key), and each later pass narrows every wanted order
//! statistic to the histogram bin holding it (the bins below give its rank within), counting the
//! bin's keys by the bits after those its least and greatest keys share, or keeping them once
//! they fit the room. A bin whose least and greatest keys are equal holds one value (a constant
//! column, a value repeated past the room), found without another pass. So the result
//! is exact, in one pass when the column fits the room and otherwise in two or three (in a
//! pathological case at most eight: a level narrows by 8 to 16 bits, as the room allows), and it
//! does not depend on how the rows were cut into batches. The histograms take at most half the
//! room in the first pass and share what the kept keys leave of it later (at least 256 bins of
//! 24 bytes each).
//!
//! The quantile between two order statistics is interpolated as polars'
//! `QuantileMethod::Linear` does: at `f = (n - 1) q`, between the values of rank `⌊f⌋` and
//! `⌊f⌋ + 1`, `lower + (f - ⌊f⌋)(upper - lower)`, the lower one when both are equal.

use std::collections::BTreeMap;

use polars::prelude::*;

/// Bits of a key one histogram level counts by, at most and at least.
const MOST_BITS: u32 = 16;
const LEAST_BITS: u32 = 8;

/// Bits a histogram of at most `bytes` counts by (256 to 65,536 bins of 24 bytes).
fn bits_for(bytes: u64) -> u32 {
    (bytes / std::mem::size_of::<Bin>() as u64)
        .max(1)
        .ilog2()
        .clamp(LEAST_BITS, MOST_BITS)
}

/// The canonical `NaN` (polars' too).
const NAN_BITS: u64 = 0x7ff8_0000_0000_0000;
const SIGN: u64 = 1 << 63;

/// `v`'s key: keys are ordered as polars orders floats (`NaN` last, every `NaN` one key; `-0.0`
/// and `0.0` one key).
fn key(v: f64) -> u64 {
    let bits = if v.is_nan() {
        NAN_BITS
    } else {
        (v + 0.0).to_bits()
    };
    if bits & SIGN != 0 { !bits } else { bits | SIGN }
}

/// The value of a key ([`key`]'s inverse on canonical values).
fn value(k: u64) -> f64 {
    f64::from_bits(if k & SIGN != 0 { k & !SIGN } else { !k })
}

/// Where the quantile `q` of `n > 0` values falls: the lower rank, the fractional position and
/// the upper rank (equal to the lower one when no interpolation is needed), as polars computes
/// them.
fn position(n: u64, q: f64) -> (u64, f64, u64) {
    let at = (n - 1) as f64 * q;
    let lower = (at as u64).min(n - 1);
    (lower, at, (at.ceil() as u64).min(n - 1))
}

/// How a bracket gathers its keys in the next pass.
#[derive(Debug)]
enum Gather {
    /// Every key in it.
    Keys(Vec<u64>),
    /// Counts by the bits after the bracket's prefix (`len()` a power of two).
    Hist(Vec<Bin>),
}

/// A histogram bin: its keys' count, least and greatest.
#[derive(Debug, Clone, Copy)]
struct Bin {
    count: u64,
    least: u64,
    most: u64,
}

impl Bin {
    const EMPTY: Bin = Bin {
        count: 0,
        least: u64::MAX,
        most: 0,
    };

    fn put(&mut self, k: u64) {
        self.count += 1;
        self.least = self.least.min(k);
        self.most = self.most.max(k);
    }
}

/// A range of keys sharing their leading bits that holds wanted ranks.
#[derive(Debug)]
struct Bracket {
    /// The shared leading bits (right-aligned), and how many (1..=63).
    prefix: u64,
    bits: u32,
    /// Keys below the bracket and in it.
    below: u64,
    count: u64,
    /// The wanted ranks (0-based among all keys, ascending) it holds.
    ranks: Vec<u64>,
    gather: Gather,
}

impl Bracket {
    fn holds(&self, k: u64) -> bool {
        k >> (64 - self.bits) == self.prefix
    }

    fn put(&mut self, k: u64) {
        match &mut self.gather {
            Gather::Keys(v) => v.push(k),
            Gather::Hist(h) => {
                let step = h.len().trailing_zeros();
                h[((k << self.bits) >> (64 - step)) as usize].put(k);
            }
        }
    }
}

#[derive(Debug)]
enum Phase {
    /// The first pass: the keys while they fit the room, then a histogram of their leading bits.
    First {
        held: Option<Vec<u64>>,
        hist: Vec<Bin>,
    },
    /// Later passes: the brackets still holding wanted ranks.
    Narrow(Vec<Bracket>),
    /// Every quantile known.
    Done(Vec<Option<f64>>),
}

/// Exact quantiles of one column fed in batches, over as many passes as [`Quantiles::again`]
/// asks for (see the module's documentation).
#[derive(Debug)]
pub(crate) struct Quantiles {
    qs: Vec<f64>,
    /// Keys it may hold at once.
    cap: u64,
    /// Bits the first histogram counts by.
    step: u32,
    /// Values (nulls left out), counted in the first pass.
    n: u64,
    /// Keys of the wanted ranks found so far.
    found: BTreeMap<u64, u64>,
    phase: Phase,
}

impl Quantiles {
    /// The quantiles `qs` (each in `[0, 1]`), holding at most `room` bytes of values at once.
    pub(crate) fn new(qs: &[f64], room: u64) -> Self {
        let cap = room / 8;
        // The first histogram takes at most half the room (the keys held so far are counted
        // into it before they are dropped).
        let step = bits_for(room / 2);
        Quantiles {
            qs: qs.to_vec(),
            cap,
            step,
            n: 0,
            found: BTreeMap::new(),
            phase: Phase::First {
                held: Some(Vec::new()),
                hist: Vec::new(),
            },
        }
    }

    /// Takes in one batch of the pass under way (nulls are left out).
    pub(crate) fn feed(&mut self, ca: &Float64Chunked) {
        let first = matches!(self.phase, Phase::First { .. });
        let (cap, step) = (self.cap, self.step);
        let mut seen = 0u64;
        for arr in ca.downcast_iter() {
            let values = arr.values().as_slice();
            let valid = arr.validity().filter(|v| v.unset_bits() > 0);
            let keys = values
                .iter()
                .enumerate()
                .filter(|(i, _)| valid.is_none_or(|v| v.get_bit(*i)))
                .map(|(_, &v)| key(v));
            match &mut self.phase {
                Phase::First { held, hist } => {
                    if let Some(h) = held {
                        // Grown once per batch, not value by value.
                        let room = (cap as usize).saturating_sub(h.len());
                        h.reserve(room.min(values.len()));
                    }
                    for k in keys {
                        seen += 1;
                        if let Some(h) = held {
                            if (h.len() as u64) < cap {
                                h.push(k);
                                continue;
                            }
                            // Past the room: the keys so far go into the histogram.
                            *hist = vec![Bin::EMPTY; 1 << step];
                            for &k in h.iter() {
                                hist[(k >> (64 - step)) as usize].put(k);
                            }
                            *held = None;
                        }
                        hist[(k >> (64 - step)) as usize].put(k);
                    }
                }
                Phase::Narrow(brackets) => {
                    for k in keys {
                        if let Some(b) = brackets.iter_mut().find(|b| b.holds(k)) {
                            b.put(k);
                        }
                    }
                }
                Phase::Done(_) => return,
            }
        }
        if first {
            self.n += seen;
        }
    }

    /// Ends a pass: `true` when the same batches must be fed again, `false` once every quantile
    /// is known ([`Quantiles::finish`]).
    pub(crate) fn again(&mut self) -> bool {
        let phase = std::mem::replace(&mut self.phase, Phase::Done(Vec::new()));
        let mut next = Vec::new();
        match phase {
            Phase::Done(v) => {
                self.phase = Phase::Done(v);
                return false;
            }
            Phase::First { held, hist } => {
                let ranks = self.wanted();
                match held {
                    Some(mut keys) => select(&mut keys, 0, &ranks, &mut self.found),
                    None => next = split(0, &hist, &ranks),
                }
            }
            Phase::Narrow(brackets) => {
                for b in brackets {
                    match b.gather {
                        Gather::Keys(mut keys) => {
                            select(&mut keys, b.below, &b.ranks, &mut self.found)
                        }
                        Gather::Hist(h) => next.extend(split(b.below, &h, &b.ranks)),
                    }
                }
            }
        }
        // Brackets narrowed to one key are found; the others keep their keys while they fit,
        // the smallest first, or count them by their next bits in histograms that share what
        // is left of the room.
        let mut left = self.cap;
        next.sort_by_key(|b| b.count);
        let mut pending = Vec::new();
        for mut b in next {
            if b.bits == 64 {
                for &r in &b.ranks {
                    self.found.insert(r, b.prefix);
                }
                continue;
            }
            if b.count <= left {
                left -= b.count;
                b.gather = Gather::Keys(Vec::with_capacity(b.count as usize));
            }
            pending.push(b);
        }
        let counted = pending
            .iter()
            .filter(|b| matches!(b.gather, Gather::Hist(_)))
            .count()
            .max(1) as u64;
        let step = bits_for(left.saturating_mul(8) / counted);
        for b in &mut pending {
            if matches!(b.gather, Gather::Hist(_)) {
                b.gather = Gather::Hist(vec![Bin::EMPTY; 1 << step.min(64 - b.bits)]);
            }
        }
        if pending.is_empty() {
            self.phase = Phase::Done(self.values());
            false
        } else {
            self.phase = Phase::Narrow(pending);
            true
        }
    }

    /// The quantiles, in the order asked (`None` without any value), once
    /// [`Quantiles::again`] returned `false`.
    pub(crate) fn finish(self) -> Vec<Option<f64>> {
        match self.phase {
            Phase::Done(v) => v,
            // Not reached: `again` ends in `Done`.
            _ => vec![None; self.qs.len()],
        }
    }

    /// The ranks the quantiles need, ascending, each once.
    fn wanted(&self) -> Vec<u64> {
        if self.n == 0 {
            return Vec::new();
        }
        let mut ranks: Vec<u64> = self
            .qs
            .iter()
            .flat_map(|&q| {
                let (lo, _, hi) = position(self.n, q);
                [lo, lo + u64::from(hi != lo)]
            })
            .collect();
        ranks.sort_unstable();
        ranks.dedup();
        ranks
    }

    /// The quantiles from the keys found.
    fn values(&self) -> Vec<Option<f64>> {
        let at = |r: u64| self.found.get(&r).copied().map(value);
        self.qs
            .iter()
            .map(|&q| {
                if self.n == 0 {
                    return None;
                }
                let (lo, f, hi) = position(self.n, q);
                let lower = at(lo)?;
                if hi == lo {
                    return Some(lower);
                }
                let upper = at(lo + 1)?;
                Some(if lower == upper {
                    lower
                } else {
                    (f - lo as f64) * (upper - lower) + lower
                })
            })
            .collect()
    }
}

/// Finds the keys of `ranks` (ascending; `below` keys come before `keys`) among `keys`.
fn select(keys: &mut [u64], below: u64, ranks: &[u64], found: &mut BTreeMap<u64, u64>) {
    let mut start = 0usize;
    for &r in ranks {
        let at = (r - below) as usize;
        let (_, k, _) = keys[start..].select_nth_unstable(at - start);
        found.insert(r, *k);
        start = at + 1;
    }
}

/// The bins of `hist` (a bracket's keys counted by their next bits; `below` keys come before
/// them) that hold `ranks`, as narrower brackets: each the bits its least and greatest keys
/// share (all 64 for a bin of one value, which is then found).
fn split(below: u64, hist: &[Bin], ranks: &[u64]) -> Vec<Bracket> {
    let mut out: Vec<Bracket> = Vec::new();
    let mut start = below;
    let mut ranks = ranks.iter().copied().peekable();
    for bin in hist {
        let end = start + bin.count;
        let mut inside = Vec::new();
        while let Some(r) = ranks.next_if(|&r| r < end) {
            inside.push(r);
        }
        if !inside.is_empty() {
            let bits = (bin.least ^ bin.most).leading_zeros();
            out.push(Bracket {
                prefix: bin.least.checked_shr(64 - bits).unwrap_or(bin.least),
                bits,
                below: start,
                count: bin.count,
                ranks: inside,
                gather: Gather::Hist(Vec::new()),
            });
        }
        start = end;
    }
    out
}

/// Ends the pass of every one of `all` ([`Quantiles::again`] on each, none skipped): `true`
/// when any needs the batches again.
pub(crate) fn again_all<'a>(all: impl IntoIterator<Item = &'a mut Quantiles>) -> bool {
    all.into_iter().fold(false, |more, q| q.again() | more)
}

/// The quantiles `qs` of a column in memory, by the same method as a column fed in batches
/// (passes over `ca` while the values do not fit `room` bytes).
pub(crate) fn quantiles(ca: &Float64Chunked, qs: &[f64], room: u64) -> Vec<Option<f64>> {
    let mut acc = Quantiles::new(qs, room);
    loop {
        acc.feed(ca);
        if !acc.again() {
            return acc.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// polars' quantile of the values (its arithmetic with nulls in the column differs in the
    /// last bits).
    fn polars(ca: &Float64Chunked, q: f64) -> Option<f64> {
        ca.drop_nulls().quantile(q, QuantileMethod::Linear).unwrap()
    }

    fn same(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => a == b || (a.is_nan() && b.is_nan()),
            (a, b) => a == b,
        }
    }

    /// Fed in batches of `piece` rows, every pass.
    fn batched(
        ca: &Float64Chunked,
        qs: &[f64],
        room: u64,
        piece: usize,
    ) -> (Vec<Option<f64>>, usize) {
        let mut acc = Quantiles::new(qs, room);
        let mut passes = 1;
        loop {
            let mut at = 0;
            while at < ca.len() {
                let len = piece.min(ca.len() - at);
                acc.feed(&ca.slice(at as i64, len));
                at += len;
            }
            if !acc.again() {
                return (acc.finish(), passes);
            }
            passes += 1;
        }
    }

    #[test]
    fn keys_order_values_as_polars_does() {
        let vs = [
            f64::NEG_INFINITY,
            -1e300,
            -1.0,
            -f64::MIN_POSITIVE,
            0.0,
            f64::MIN_POSITIVE,
            1.0,
            1.5,
            1e300,
            f64::INFINITY,
            f64::NAN,
        ];
        for w in vs.windows(2) {
            assert!(key(w[0]) < key(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(key(-0.0), key(0.0));
        assert_eq!(key(-f64::NAN), key(f64::NAN));
        for v in &vs[..10] {
            assert_eq!(value(key(*v)).to_bits(), v.to_bits());
        }
        assert!(value(key(f64::NAN)).is_nan());
    }

    #[test]
    fn every_room_gives_polars_quantiles() {
        // Skewed values with many repeats and nulls: deciles and the ends.
        let vals: Vec<Option<f64>> = (0..20_000u64)
            .map(|i| {
                let x = (i * 7919 % 20_000) as f64;
                (i % 13 != 0).then_some(if i % 5 == 0 {
                    (x / 100.0).floor()
                } else {
                    x.powi(3) - 4e11
                })
            })
            .collect();
        let ca = Float64Chunked::from_iter_options("x".into(), vals.into_iter());
        let qs = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0];
        let want: Vec<Option<f64>> = qs.iter().map(|&q| polars(&ca, q)).collect();
        // Every value held; the median's bin held; nothing held (narrowed to single keys).
        for (room, piece, most) in [
            (u64::MAX, 20_000, 1),
            (1 << 20, 777, 1),
            (16_000, 1000, 4),
            (0, 4096, 8),
        ] {
            let (got, passes) = batched(&ca, &qs, room, piece);
            for ((q, g), w) in qs.iter().zip(&got).zip(&want) {
                assert!(same(*g, *w), "room {room}, q {q}: {g:?} vs polars {w:?}");
            }
            assert!(passes <= most, "room {room}: {passes} passes");
            assert!(room > 0 || passes > 2, "nothing held takes several passes");
        }
    }

    #[test]
    fn empty_nan_and_single_columns() {
        let none = Float64Chunked::from_iter_options("x".into(), [None, None].into_iter());
        assert_eq!(quantiles(&none, &[0.5], 0), [None]);
        let one = Float64Chunked::from_slice("x".into(), &[-0.0]);
        assert_eq!(quantiles(&one, &[0.0, 0.5, 1.0], 0), [Some(0.0); 3]);
        let nan = Float64Chunked::from_slice("x".into(), &[1.0, f64::NAN, 2.0, f64::NAN]);
        for q in [0.0, 0.3, 0.5, 0.9, 1.0] {
            for room in [0, 1 << 20] {
                let got = quantiles(&nan, &[q], room)[0];
                assert!(same(got, polars(&nan, q)), "q {q}: {got:?}");
            }
        }
    }

    /// A value repeated past the room is found from its bin's least and greatest keys, without
    /// narrowing bit by bit.
    #[test]
    fn repeated_values_take_no_extra_pass() {
        let constant = Float64Chunked::from_vec("x".into(), vec![2013.0; 10_000]);
        assert_eq!(
            batched(&constant, &[0.5, 0.99], 0, 100),
            (vec![Some(2013.0); 2], 1)
        );
        // Nine zeros in ten, then a spread: the median's bin is one value; the 0.95 quantile's
        // bin is narrowed.
        let mostly: Vec<f64> = (0..10_000)
            .map(|i| if i % 10 == 0 { i as f64 } else { 0.0 })
            .collect();
        let ca = Float64Chunked::from_vec("x".into(), mostly);
        let (got, passes) = batched(&ca, &[0.5, 0.95], 0, 100);
        assert_eq!(got[0], Some(0.0));
        assert!(same(got[1], polars(&ca, 0.95)));
        assert!((2..8).contains(&passes), "{passes}");
    }

    proptest::proptest! {
        #[test]
        fn quantiles_are_polars_whatever_the_room_and_batches(
            v in proptest::collection::vec(proptest::option::weighted(0.9, -1e6f64..1e6), 1..400),
            q in 0.0f64..=1.0,
            room in 0u64..4000,
            piece in 1usize..100,
        ) {
            let ca = Float64Chunked::from_iter_options("x".into(), v.into_iter());
            let (got, _) = batched(&ca, &[q, 0.5], room, piece);
            proptest::prop_assert!(same(got[0], polars(&ca, q)), "{:?} vs {:?}", got[0], polars(&ca, q));
            proptest::prop_assert!(same(got[1], ca.drop_nulls().median()));
        }
    }
}
