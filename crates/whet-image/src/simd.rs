//! Runtime CPU dispatch for the pixel kernels.
//!
//! The workspace targets baseline x86-64 (SSE2), where the autovectorizer has 16-byte lanes and
//! no byte shuffle. [`Simd::detect`] finds AVX2 (x86-64-v3, through `pulp`) at run time, and
//! [`Simd::run`] runs a closure inside a function compiled with those features enabled, so the
//! same plain loops get 32-byte lanes. Kernels called from the closure must be
//! `#[inline(always)]` for this to reach them. A kernel gives the same bytes on every level (the
//! tests compare the levels on the machine they run on); only the speed differs.

#[cfg(target_arch = "x86_64")]
pub(crate) use pulp::x86::V3;

/// An instruction-set level that kernels run at.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Simd {
    /// The compile-time baseline.
    Scalar,
    /// AVX2, FMA, BMI (x86-64-v3), with the token that proves it.
    #[cfg(target_arch = "x86_64")]
    V3(V3),
}

impl Simd {
    /// The best level this CPU supports (detected once, then cached by `pulp`).
    #[inline]
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(v3) = V3::try_new() {
            return Simd::V3(v3);
        }
        Simd::Scalar
    }

    /// Runs `f` with this level's target features enabled.
    #[inline(always)]
    pub(crate) fn run<R>(self, f: impl FnOnce() -> R) -> R {
        match self {
            Simd::Scalar => f(),
            #[cfg(target_arch = "x86_64")]
            Simd::V3(v3) => v3.vectorize(f),
        }
    }

    /// Every level this CPU supports, baseline first (for tests that compare them).
    #[cfg(test)]
    pub(crate) fn all() -> Vec<Simd> {
        let mut v = vec![Simd::Scalar];
        if !matches!(Simd::detect(), Simd::Scalar) {
            v.push(Simd::detect());
        }
        v
    }
}

/// Random images for the tests that compare levels: odd and even widths, 1 and 3 channels.
#[cfg(test)]
pub(crate) fn arb_img(
    max_h: usize,
    max_w: usize,
) -> impl proptest::strategy::Strategy<Value = crate::buf::Img> {
    use proptest::prelude::*;
    (
        1..=max_h,
        1..=max_w,
        prop_oneof![Just(1usize), Just(3usize)],
    )
        .prop_flat_map(|(h, w, c)| {
            proptest::collection::vec(any::<u8>(), h * w * c)
                .prop_map(move |d| crate::buf::Img::from_vec(h, w, c, d))
        })
}
