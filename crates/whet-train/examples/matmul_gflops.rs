//! GFLOP/s of the matrix kernels on a 2048 x 2048 product and on the seven products of one
//! training step of 784-256-128-10 with batch 128, with the operand layouts the trainer uses
//! (`x·W` forward, `xᵀ·δ` for the weight gradients, `δ·Wᵀ` for the input gradients): steady
//! state, and microseconds per call.
//!
//! Run with: `RAYON_NUM_THREADS=1 cargo run --release -p whet-train --example matmul_gflops`

use ndarray::{Array2, ShapeBuilder};
use std::time::Instant;
use whet_train::Kernel;
use whet_train::kernel::matmul;

/// `(m, k, n, a transposed, b transposed, what)`.
const SHAPES: [(usize, usize, usize, bool, bool, &str); 8] = [
    (2048, 2048, 2048, false, false, "square"),
    (128, 784, 256, false, false, "fwd 1"),
    (128, 256, 128, false, false, "fwd 2"),
    (128, 128, 10, false, false, "fwd 3"),
    (784, 128, 256, true, false, "grad W1"),
    (256, 128, 128, true, false, "grad W2"),
    (128, 128, 10, true, false, "grad W3"),
    (128, 128, 256, false, true, "grad x2"),
];

fn main() {
    println!("threads {}", rayon::current_num_threads());
    let mut step_us = [0.0f64; 2];
    for &(m, k, n, at, bt, what) in &SHAPES {
        let a = Array2::from_shape_fn((m, k).set_f(at), |(i, j)| {
            ((i * 7 + j * 3) % 11) as f32 * 0.1
        });
        let b = Array2::from_shape_fn((k, n).set_f(bt), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.1);
        let flops = 2.0 * (m * k * n) as f64;
        let reps = ((1e10 / flops) as usize).clamp(3, 20_000);
        for (ki, kernel) in [Kernel::Gemm, Kernel::Matrixmultiply]
            .into_iter()
            .enumerate()
        {
            let mut c = Array2::<f32>::zeros((m, n));
            matmul(kernel, a.view(), b.view(), c.view_mut());
            let t = Instant::now();
            for _ in 0..reps {
                matmul(kernel, a.view(), b.view(), c.view_mut());
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            if what != "square" {
                step_us[ki] += s * 1e6;
            }
            println!(
                "{what:8} {m}x{k}x{n} {kernel:?}: {:.1} GFLOP/s, {:.1} us",
                flops / s / 1e9,
                s * 1e6
            );
        }
    }
    // grad x3 (128x10x128) is small; the step also has it.
    println!(
        "step products (without grad x3): gemm {:.0} us, matrixmultiply {:.0} us",
        step_us[0], step_us[1]
    );
}
