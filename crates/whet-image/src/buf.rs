//! Owned image buffers the ops work on, and small random helpers.

use rand::Rng as _;
use whet_core::Rng;

/// An owned `h × w × c` `u8` image, rows contiguous, channels interleaved (HWC).
///
/// Ops write into a destination `Img` that is resized in place ([`Img::reshape`]), so a buffer
/// reused across calls stops allocating once it has reached its largest size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Img {
    /// Height in pixels.
    pub h: usize,
    /// Width in pixels.
    pub w: usize,
    /// Channels (1 or 3).
    pub c: usize,
    /// `h * w * c` bytes.
    pub data: Vec<u8>,
}

impl Img {
    /// An image of the given shape filled with `v`.
    pub fn filled(h: usize, w: usize, c: usize, v: u8) -> Self {
        Self {
            h,
            w,
            c,
            data: vec![v; h * w * c],
        }
    }

    /// Wraps `data`.
    ///
    /// # Panics
    /// When `data.len() != h * w * c`.
    pub fn from_vec(h: usize, w: usize, c: usize, data: Vec<u8>) -> Self {
        assert_eq!(data.len(), h * w * c, "Img::from_vec: wrong length");
        Self { h, w, c, data }
    }

    /// Sets the shape, keeping the allocation when it is large enough. The content is
    /// unspecified afterwards.
    pub fn reshape(&mut self, h: usize, w: usize, c: usize) {
        self.h = h;
        self.w = w;
        self.c = c;
        // `resize` only writes the grown tail; no fresh allocation when capacity suffices.
        self.data.resize(h * w * c, 0);
    }

    /// Copies `src` into `self` (shape and bytes).
    pub fn copy_from(&mut self, src: &[u8], h: usize, w: usize, c: usize) {
        self.reshape(h, w, c);
        self.data.copy_from_slice(src);
    }

    /// Bytes per row.
    #[inline]
    pub fn stride(&self) -> usize {
        self.w * self.c
    }

    /// A borrowed view.
    pub fn view(&self) -> View<'_> {
        View {
            h: self.h,
            w: self.w,
            c: self.c,
            data: &self.data,
        }
    }
}

/// A borrowed `h × w × c` image (HWC bytes).
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// Height in pixels.
    pub h: usize,
    /// Width in pixels.
    pub w: usize,
    /// Channels (1 or 3).
    pub c: usize,
    /// `h * w * c` bytes.
    pub data: &'a [u8],
}

impl<'a> View<'a> {
    /// Wraps `data`.
    ///
    /// # Panics
    /// When `data.len() != h * w * c`.
    pub fn new(h: usize, w: usize, c: usize, data: &'a [u8]) -> Self {
        assert_eq!(data.len(), h * w * c, "View::new: wrong length");
        Self { h, w, c, data }
    }

    /// Bytes per row.
    #[inline]
    pub fn stride(&self) -> usize {
        self.w * self.c
    }
}

/// A uniform `f64` in `[0, 1)` from 53 random bits.
#[inline]
pub(crate) fn unit_f64(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform `f64` in `[lo, hi)` (or `lo` when `hi <= lo`).
#[inline]
pub(crate) fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        lo
    } else {
        lo + (hi - lo) * unit_f64(rng)
    }
}

/// True with probability `p`. `p >= 1` draws nothing, so a `p = 1` op does not consume randomness
/// for the decision.
#[inline]
pub(crate) fn chance(rng: &mut Rng, p: f64) -> bool {
    if p >= 1.0 {
        true
    } else if p <= 0.0 {
        false
    } else {
        unit_f64(rng) < p
    }
}

/// A uniform integer in `0..n` (`n > 0`), by Lemire's multiply-shift (bias < 2^-32 for small n).
#[inline]
pub(crate) fn below(rng: &mut Rng, n: usize) -> usize {
    ((rng.next_u32() as u64 * n as u64) >> 32) as usize
}
