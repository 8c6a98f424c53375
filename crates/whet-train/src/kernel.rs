//! The matrix-multiply kernel and its deterministic parallel split.
//!
//! Two single-threaded kernels are available ([`Kernel`]): the `gemm` crate (AVX2/AVX-512
//! micro-kernels, the default) and `matrixmultiply` through ndarray. Neither is asked to
//! parallelise itself. Instead [`matmul`] splits the output into a fixed number of blocks that
//! depends only on the shapes, never on the thread count, and hands the blocks to rayon. Every
//! output element is therefore computed by the same kernel call with the same reduction order
//! whether one or many threads run, so results are bit-identical across `RAYON_NUM_THREADS`.
//!
//! A product with one row or one column (a network's single output, a batch of one row) is
//! summed here in `k` order (`vector_product`) instead of by gemm, whose matrix-vector paths
//! sum over `k` in SIMD lanes as wide as the machine's (8 with AVX2, 16 with AVX-512), so the
//! same seed gave other bits on another machine. gemm's matrix kernel sums every output element
//! in `k` order on both, so larger products agree across machines too.

use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which single-threaded matrix-multiply kernel to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kernel {
    /// The `gemm` crate (runtime-dispatched AVX2 / AVX-512 micro-kernels).
    #[default]
    Gemm,
    /// `matrixmultiply` through `ndarray::linalg::general_mat_mul`.
    Matrixmultiply,
}

/// Products below this many flops are not split (rayon's hand-off costs a few microseconds).
pub const SPLIT_MIN_FLOPS: usize = 1 << 22;

/// Number of blocks a large product is split into. Fixed, so results never depend on the
/// number of threads.
pub const SPLIT_BLOCKS: usize = 2;

/// Weight matrices of at least this many values are cut in two between threads
/// ([`weight_cut`]).
pub(crate) const WEIGHT_CUT_MIN: usize = 16 * 1024;

const _: () = assert!(SPLIT_BLOCKS == 2, "weight_cut cuts in two");

/// Where `len` rows or columns are cut for the first `half` of `blocks` blocks (a multiple of
/// 8, half an AVX-512 register).
fn cut(len: usize, half: usize, blocks: usize) -> usize {
    (len * half / blocks).div_ceil(8) * 8
}

/// The input row at which a dense layer's `[inputs, outputs]` weights are cut in two, or `None`
/// when they stay whole (fewer inputs than outputs, or fewer than [`WEIGHT_CUT_MIN`] values).
///
/// [`matmul`] cuts the weight gradient `xᵀ · dz` (`[inputs, outputs]`, more rows than columns)
/// at this row when the batch makes it large enough to split, and the input gradient
/// `dz · Wᵀ` too when the batch has fewer rows than the layer has inputs. The forward product
/// then sums over the two halves of the inputs separately ([`matmul_inner_halves`]) and the
/// optimizer updates the same two halves, each on the thread that made its gradient: a layer's
/// weights, gradients and optimizer state stay in one core's cache from step to step. Cut by
/// output columns in the forward product (as [`matmul`] would), each thread read a quarter of
/// the weights from the other core's cache after every update; on this project's two-vCPU
/// machine, with the two virtual CPUs far apart, the updates of the 784-256-128-10 network took
/// 196 ms of a 2-thread epoch instead of 23 ms at one thread (20 ms with the cut).
///
/// Depends on the shape only, never on the thread count, so results do not either.
pub(crate) fn weight_cut(inputs: usize, outputs: usize) -> Option<usize> {
    (inputs >= outputs && inputs.saturating_mul(outputs) >= WEIGHT_CUT_MIN)
        .then(|| cut(inputs, 1, SPLIT_BLOCKS))
}

/// `c = a[:, ..mid] · b[..mid, :]` and `part = a[:, mid..] · b[mid.., :]`, overwriting both:
/// the product `a · b` summed over the two halves of `k` separately, one half per rayon
/// thread (the first on the calling one). The caller adds `part` to `c`; the sum's bits
/// depend on `mid` only, never on the thread count.
///
/// # Shapes
/// `a: [m, k]`, `b: [k, n]`, `c` and `part: [m, n]`, `0 < mid < k`.
///
/// # Panics
/// If the shapes do not agree or `mid` is not inside `k`.
pub(crate) fn matmul_inner_halves(
    kernel: Kernel,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    (c, part): (ArrayViewMut2<f32>, ArrayViewMut2<f32>),
    mid: usize,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(k, b.nrows(), "inner dimensions");
    assert!(
        0 < mid && mid < k,
        "cut {mid} outside the inner dimension {k}"
    );
    assert_eq!(c.dim(), (m, n), "output shape");
    assert_eq!(part.dim(), (m, n), "second output shape");
    let (a1, a2) = a.split_at(Axis(1), mid);
    let (b1, b2) = b.split_at(Axis(0), mid);
    crate::par::join(
        || single(kernel, a1, b1, c, 0.0),
        || single(kernel, a2, b2, part, 0.0),
    );
}

/// `c = a · b`, overwriting `c`, split deterministically across rayon threads.
///
/// # Shapes
/// `a: [m, k]`, `b: [k, n]`, `c: [m, n]`; any strides.
///
/// # Panics
/// If the shapes do not agree.
pub fn matmul(kernel: Kernel, a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>) {
    matmul_accumulate(kernel, a, b, c, 0.0);
}

/// `c = keep · c + a · b`, split across rayon threads as [`matmul`] splits `c = a · b` (the
/// same blocks, so the same bits on any thread count). Each element is
/// `round(round(keep · c) + p)`, where `p` is the element [`matmul`] would have stored: the same
/// bits as storing the product and adding it to `keep · c` afterwards, without writing the
/// product out and reading it back. `keep = 0` overwrites `c` without reading it. (gemm sums a
/// product deeper than its depth block, at least 512 on every machine, in blocks and adds each
/// block to `c`; there, as in a weight gradient over a batch of more than 512 rows, the bits
/// differ from the separate sum in the last place.)
///
/// # Shapes
/// As [`matmul`].
///
/// # Panics
/// If the shapes do not agree.
pub(crate) fn matmul_accumulate(
    kernel: Kernel,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    c: ArrayViewMut2<f32>,
    keep: f32,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2, "inner dimensions");
    assert_eq!(c.dim(), (m, n), "output shape");
    split(kernel, a, b, c, SPLIT_BLOCKS, keep);
}

/// `c = a · b` on the calling thread (for callers that already run in parallel over
/// independent blocks).
///
/// # Panics
/// If the shapes do not agree.
pub(crate) fn matmul_serial(
    kernel: Kernel,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    c: ArrayViewMut2<f32>,
) {
    assert_eq!(a.ncols(), b.nrows(), "inner dimensions");
    assert_eq!(c.dim(), (a.nrows(), b.ncols()), "output shape");
    single(kernel, a, b, c, 0.0);
}

/// `c = keep · c + a · b` in `blocks` fixed blocks of `c` (`keep = 0`: `c = a · b`).
fn split(
    kernel: Kernel,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    c: ArrayViewMut2<f32>,
    blocks: usize,
    keep: f32,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    if blocks <= 1 || 2 * m * n * k < SPLIT_MIN_FLOPS || m.max(n) < 32 {
        return single(kernel, a, b, c, keep);
    }
    let half = blocks / 2;
    if m >= n {
        let mid = cut(m, half, blocks);
        let (a1, a2) = a.split_at(Axis(0), mid);
        let (c1, c2) = c.split_at(Axis(0), mid);
        crate::par::join(
            || split(kernel, a1, b, c1, half, keep),
            || split(kernel, a2, b, c2, blocks - half, keep),
        );
    } else {
        let mid = cut(n, half, blocks);
        let (b1, b2) = b.split_at(Axis(1), mid);
        let (c1, c2) = c.split_at(Axis(1), mid);
        crate::par::join(
            || split(kernel, a, b1, c1, half, keep),
            || split(kernel, a, b2, c2, blocks - half, keep),
        );
    }
}

/// One single-threaded kernel call: `c = keep · c + a · b` (`keep = 0`: `c = a · b`, the old
/// `c` not read).
fn single(
    kernel: Kernel,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    mut c: ArrayViewMut2<f32>,
    keep: f32,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if keep == 0.0 {
            c.fill(0.0);
        } else {
            c.mapv_inplace(|v| keep * v);
        }
        return;
    }
    match kernel {
        Kernel::Matrixmultiply => ndarray::linalg::general_mat_mul(1.0, &a, &b, keep, &mut c),
        Kernel::Gemm if m == 1 || n == 1 => vector_product(a, b, c, keep),
        Kernel::Gemm => gemm_call(a, b, c, keep),
    }
}

/// `c = keep · c + a · b` for a product with one row or one column: every element of `a · b`
/// summed in `k` order (products rounded, then added; no fused multiply-add), the same bits on
/// every machine, then added to `keep · c` (`keep = 0`: stored).
fn vector_product(a: ArrayView2<f32>, b: ArrayView2<f32>, mut c: ArrayViewMut2<f32>, keep: f32) {
    for (i, a_row) in a.rows().into_iter().enumerate() {
        for (j, b_col) in b.columns().into_iter().enumerate() {
            let mut s = 0.0f32;
            for (x, y) in a_row.iter().zip(b_col.iter()) {
                s += x * y;
            }
            let dst = &mut c[[i, j]];
            *dst = if keep == 0.0 { s } else { keep * *dst + s };
        }
    }
}

/// How many of its register tiles' columns a single-threaded gemm call must have in one column
/// chunk before it copies its left operand into a packed buffer (gemm's
/// `set_lhs_packing_threshold_single_thread`; gemm 0.19 packs above 8). A dense layer's forward
/// product is computed by gemm transposed, `zᵀ = Wᵀ · xᵀ`, so its left operand is the layer's
/// weights and its columns the batch's rows: with gemm's default a 128-row batch (21 tiles of
/// 6 columns with AVX-512) copied the whole weight matrix on every step, 2.1 % of a 1-thread
/// epoch of the 784-256-128-10 network, where reading the weights in place is faster. 32 tiles
/// (192 columns with AVX-512) leaves every batch up to that size unpacked; the 2048² matmul's
/// chunks are wider and still packed. Packing only copies values, so the bits are the same.
pub(crate) const LHS_PACKING_TILES: usize = 32;

/// gemm 0.19's own single-threaded left-operand packing threshold.
const GEMM_DEFAULT_LHS_PACKING_TILES: usize = 8;

/// Sets gemm's single-threaded left-operand packing threshold to [`LHS_PACKING_TILES`] once per
/// process, before the first product, unless the program already set its own (the setting is
/// gemm's, process-wide).
fn tune_gemm() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if gemm::get_lhs_packing_threshold_single_thread() == GEMM_DEFAULT_LHS_PACKING_TILES {
            gemm::set_lhs_packing_threshold_single_thread(LHS_PACKING_TILES);
        }
    });
}

#[allow(unsafe_code)]
fn gemm_call(a: ArrayView2<f32>, b: ArrayView2<f32>, mut c: ArrayViewMut2<f32>, keep: f32) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let (ars, acs) = (a.strides()[0], a.strides()[1]);
    let (brs, bcs) = (b.strides()[0], b.strides()[1]);
    let (crs, ccs) = (c.strides()[0], c.strides()[1]);
    tune_gemm();
    // SAFETY: the pointers and strides come from live ndarray views whose shapes were checked
    // above (a: m×k, b: k×n, c: m×n), so every address gemm touches lies inside those views.
    // `c` is a unique mutable borrow, so it cannot alias `a` or `b`. gemm reads `c`'s old
    // contents only when `keep != 0` (`read_dst`), and `Parallelism::None` keeps the call on this
    // thread. With `read_dst` it stores `keep · c + 1 · acc` as two roundings (`alpha · dst`,
    // then the sum; `1 · acc` is exact).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            ccs,
            crs,
            keep != 0.0,
            a.as_ptr(),
            acs,
            ars,
            b.as_ptr(),
            bcs,
            brs,
            keep,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn naive(a: &Array2<f32>, b: &Array2<f32>) -> Array2<f32> {
        let mut c = Array2::zeros((a.nrows(), b.ncols()));
        for i in 0..a.nrows() {
            for j in 0..b.ncols() {
                let mut s = 0.0f64;
                for p in 0..a.ncols() {
                    s += f64::from(a[[i, p]]) * f64::from(b[[p, j]]);
                }
                c[[i, j]] = s as f32;
            }
        }
        c
    }

    /// Every element within 1e-3 relative (1e-3 absolute below 1) of `want`'s.
    fn close(got: &Array2<f32>, want: &Array2<f32>) -> bool {
        got.iter()
            .zip(want)
            .all(|(x, y)| (x - y).abs() <= 1e-3 * y.abs().max(1.0))
    }

    /// The same bits in every element.
    fn same_bits(a: &Array2<f32>, b: &Array2<f32>) -> bool {
        a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    #[test]
    fn both_kernels_match_naive_including_transposed_and_split() {
        for &(m, k, n) in &[
            (3, 4, 5),
            (130, 70, 300),
            (300, 129, 40),
            (1, 0, 3),
            (256, 40, 1),
            (1, 64, 32),
        ] {
            let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
            let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.25);
            let want = naive(&a, &b);
            for kernel in [Kernel::Gemm, Kernel::Matrixmultiply] {
                let mut c = Array2::from_elem((m, n), f32::NAN);
                matmul(kernel, a.view(), b.view(), c.view_mut());
                assert!(close(&c, &want));
                // Column-major operand views (transposed strides).
                let at = a.t().to_owned();
                let bt = b.t().to_owned();
                let mut c2 = Array2::from_elem((m, n), f32::NAN);
                matmul(kernel, at.t(), bt.t(), c2.view_mut());
                assert!(close(&c2, &want));
            }
        }
    }

    /// The product summed over two halves of `k`: close to the whole product, and the same bits
    /// with one thread or two (each half is one kernel call whoever runs it).
    #[test]
    fn inner_halves_sum_to_the_product_on_any_thread_count() {
        let (m, k, n) = (40, 300, 96);
        let mid = weight_cut(k, n).expect("a cut layer's shape");
        assert_eq!(mid, 152);
        let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.31 - 1.5);
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.07 - 0.4);
        let want = naive(&a, &b);
        let run = |threads: usize| {
            crate::par::pool(threads).install(|| {
                let mut c = Array2::from_elem((m, n), f32::NAN);
                let mut part = Array2::from_elem((m, n), f32::NAN);
                let halves = (c.view_mut(), part.view_mut());
                matmul_inner_halves(Kernel::Gemm, a.view(), b.view(), halves, mid);
                c + part
            })
        };
        let (one, two) = (run(1), run(2));
        assert!(close(&one, &want));
        assert!(same_bits(&one, &two));
        // Fewer inputs than outputs, or a small layer: not cut.
        assert_eq!(weight_cut(96, 300), None);
        assert_eq!(weight_cut(127, 128), None);
        assert_eq!(weight_cut(128, 128), Some(64));
        assert_eq!(weight_cut(784, 256), Some(392));
    }

    /// `c = keep · c + a · b` is `keep · c` plus the stored product, to the bit, on one thread
    /// and two: over the weight-gradient shapes training gives it (a transposed operand, a
    /// product split between threads at a cut layer's row, one column, one row), with `keep = 0`
    /// overwriting a `c` full of NaN and an empty `k` scaling `c`. matrixmultiply's is close.
    #[test]
    fn accumulated_products_add_the_stored_product_to_the_bit() {
        for &(m, k, n) in &[
            (300, 128, 64),
            (784, 128, 256),
            (130, 70, 300),
            (64, 128, 1),
            (1, 77, 33),
            (5, 0, 7),
        ] {
            // `a` is built transposed, as the backward pass's `xᵀ`.
            let at =
                Array2::from_shape_fn((k, m), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.31 - 1.5);
            let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.07 - 0.4);
            let c0 =
                Array2::from_shape_fn((m, n), |(i, j)| ((i * 3 + j * 7) % 17) as f32 * 0.9 - 7.0);
            let keep = 0.9f32;
            let mut product = Array2::from_elem((m, n), f32::NAN);
            matmul(Kernel::Gemm, at.t(), b.view(), product.view_mut());
            let want: Vec<u32> = c0
                .iter()
                .zip(&product)
                .map(|(c, p)| (keep * c + p).to_bits())
                .collect();
            for threads in [1, 2] {
                crate::par::pool(threads).install(|| {
                    let mut c = c0.clone();
                    matmul_accumulate(Kernel::Gemm, at.t(), b.view(), c.view_mut(), keep);
                    let got: Vec<u32> = c.iter().map(|x| x.to_bits()).collect();
                    assert_eq!(got, want, "({m}, {k}, {n}) on {threads} threads");
                    let mut fresh = Array2::from_elem((m, n), f32::NAN);
                    matmul_accumulate(Kernel::Gemm, at.t(), b.view(), fresh.view_mut(), 0.0);
                    assert!(
                        same_bits(&fresh, &product),
                        "({m}, {k}, {n}) with keep 0 on {threads} threads"
                    );
                });
            }
            let mut c = c0.clone();
            matmul_accumulate(Kernel::Matrixmultiply, at.t(), b.view(), c.view_mut(), keep);
            assert!(
                c.iter()
                    .zip(&want)
                    .all(|(x, &y)| (x - f32::from_bits(y)).abs() <= 1e-4 * x.abs().max(1.0)),
                "({m}, {k}, {n}) with matrixmultiply"
            );
        }
    }

    /// A product deeper than gemm's depth block (a full-batch weight gradient) is summed in
    /// blocks, each added to `c`: `keep · c` joins once, so the result stays close to
    /// `keep · c` plus the product.
    #[test]
    fn deep_accumulated_products_keep_c_once() {
        let (m, k, n) = (40, 5000, 50);
        let at = Array2::from_shape_fn((k, m), |(i, j)| {
            ((i * 7 + j * 3) % 11) as f32 * 0.031 - 0.15
        });
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.007 - 0.04);
        let c0 = Array2::from_shape_fn((m, n), |(i, j)| ((i * 3 + j * 7) % 17) as f32 * 0.9 - 7.0);
        let want = &c0 * 0.9 + &naive(&at.t().to_owned(), &b);
        let mut c = c0.clone();
        matmul_accumulate(Kernel::Gemm, at.t(), b.view(), c.view_mut(), 0.9);
        assert!(close(&c, &want));
    }

    /// The first gemm product sets gemm's left-operand packing threshold to whet's (no other
    /// code in the tests sets it).
    #[test]
    fn the_first_product_tunes_gemm_packing() {
        let a = Array2::from_elem((20, 30), 0.5f32);
        let b = Array2::from_elem((30, 40), 2.0f32);
        let mut c = Array2::zeros((20, 40));
        matmul(Kernel::Gemm, a.view(), b.view(), c.view_mut());
        assert!(c.iter().all(|&v| v == 30.0));
        assert_eq!(
            gemm::get_lhs_packing_threshold_single_thread(),
            LHS_PACKING_TILES
        );
    }

    /// A one-column or one-row product is the sum in `k` order, to the bit: what every
    /// machine computes, whatever its SIMD width.
    #[test]
    fn vector_products_are_summed_in_k_order() {
        for &(m, k, n) in &[(256, 77, 1), (1, 77, 33), (1, 5, 1)] {
            let a =
                Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.137 - 0.5);
            let b =
                Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.0731 - 0.3);
            let mut c = Array2::from_elem((m, n), f32::NAN);
            matmul(Kernel::Gemm, a.view(), b.view(), c.view_mut());
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0.0f32;
                    for p in 0..k {
                        s += a[[i, p]] * b[[p, j]];
                    }
                    assert_eq!(
                        c[[i, j]].to_bits(),
                        s.to_bits(),
                        "({m}, {k}, {n}) at ({i}, {j})"
                    );
                }
            }
        }
    }
}
