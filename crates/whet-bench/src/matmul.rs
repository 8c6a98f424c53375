//! `whet-bench matmul`: fp32 `C = A · B` through whet-train's kernel, in GFLOP/s.
//!
//! The peer figure (`bench/py/train.py --engine matmul-numpy|matmul-torch`) is the machine's
//! practical peak; this one is what whet's own matrix products reach on the same shapes, with
//! each of whet-train's kernels ([`Kernel::Gemm`], the default, and [`Kernel::Matrixmultiply`]).
//! The inputs are `unit(h32(7, 90 | 91, index, 0, 0))`, as on the Python side.

use crate::inputs::{h32, unit};
use crate::measure::{self, RetryPolicy, round3, timed};
use ndarray::Array2;
use serde_json::json;
use whet_train::Kernel;
use whet_train::kernel::matmul;

/// Options of `whet-bench matmul`.
#[derive(Debug, Clone, clap::Args)]
pub struct MatmulArgs {
    /// Side of the square matrices.
    #[arg(long, default_value_t = Probe::N)]
    pub n: usize,
}

fn matrix(n: usize, salt: u64) -> Array2<f32> {
    Array2::from_shape_fn((n, n), |(i, j)| {
        unit(h32(7, salt, (i * n + j) as u64, 0, 0)) as f32
    })
}

/// Whet's default kernel on 2048 x 2048 inputs, kept to be timed again and again: the rate
/// `whet-bench train --paired-peak` compares each epoch with.
pub struct Probe {
    a: Array2<f32>,
    b: Array2<f32>,
    c: Array2<f32>,
}

impl Probe {
    /// The side of the probe's matrices, and the default of `whet-bench matmul --n`.
    pub const N: usize = 2048;

    /// The inputs of `whet-bench matmul` (and one product to warm them up).
    pub fn new() -> Self {
        let n = Self::N;
        let mut p = Self {
            a: matrix(n, 90),
            b: matrix(n, 91),
            c: Array2::zeros((n, n)),
        };
        p.gflops(0.0);
        p
    }

    /// GFLOP/s of [`Kernel::Gemm`] over as many products as fit in about `seconds` (at least
    /// one), on rayon's current pool.
    pub fn gflops(&mut self, seconds: f64) -> f64 {
        let flops = 2.0 * (Self::N as f64).powi(3);
        let (mut done, start) = (0usize, std::time::Instant::now());
        loop {
            matmul(
                Kernel::Gemm,
                self.a.view(),
                self.b.view(),
                self.c.view_mut(),
            );
            done += 1;
            let t = start.elapsed().as_secs_f64();
            if t >= seconds {
                return flops * done as f64 / t.max(1e-9) / 1e9;
            }
        }
    }
}

/// Measures every kernel and prints one JSON line per kernel.
///
/// # Errors
/// When stdout cannot be written.
pub fn run(args: &MatmulArgs, threads: usize, policy: RetryPolicy) -> std::io::Result<()> {
    let n = args.n;
    let a = matrix(n, 90);
    let b = matrix(n, 91);
    let mut c = Array2::<f32>::zeros((n, n));
    let flops = 2.0 * (n as f64).powi(3);
    for (name, kernel) in [
        ("whet", Kernel::Gemm),
        ("whet-matrixmultiply", Kernel::Matrixmultiply),
    ] {
        let ((), first) = timed(|| matmul(kernel, a.view(), b.view(), c.view_mut()));
        let reps = ((0.5 / first.wall.max(1e-6)) as usize).max(1);
        let r = measure::repeat(policy, || {
            let ((), m) = timed(|| {
                for _ in 0..reps {
                    matmul(kernel, a.view(), b.view(), c.view_mut());
                }
            });
            (flops * reps as f64 / m.wall / 1e9, m)
        });
        measure::emit(&json!({
            "bench": "matmul",
            "engine": name,
            "kernel": format!("{kernel:?}"),
            "threads": threads,
            "n": n,
            "first_gflops": flops / first.wall / 1e9,
            "first_other_cores": first.other_cores.map(round3),
            "gflops_runs": r.values,
            "gflops": r.median(),
            "other_cores": r.other_json(),
            "retried": r.retried,
            "library_threads": { "rayon.current_num_threads": rayon::current_num_threads() },
            "versions": { "whet": env!("CARGO_PKG_VERSION") },
        }))?;
    }
    Ok(())
}
