//! GFLOP/s of the matrix kernels on a 2048 x 2048 product and on the products of one training
//! step of 784-256-128-10 with batch 128: first call and steady state.
//!
//! Run with: `RAYON_NUM_THREADS=1 cargo run --release -p whet-train --example matmul_gflops`

use ndarray::Array2;
use std::time::Instant;
use whet_train::Kernel;
use whet_train::kernel::matmul;

fn main() {
    let shapes = [
        (2048, 2048, 2048),
        (128, 784, 256),
        (784, 128, 256),
        (128, 256, 128),
    ];
    println!("threads {}", rayon::current_num_threads());
    for &(m, k, n) in &shapes {
        let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.1);
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.1);
        let flops = 2.0 * (m * k * n) as f64;
        let reps = ((3e10 / flops) as usize).clamp(3, 5000);
        for kernel in [Kernel::Gemm, Kernel::Matrixmultiply] {
            let mut c = Array2::<f32>::zeros((m, n));
            let t = Instant::now();
            matmul(kernel, a.view(), b.view(), c.view_mut());
            let first = flops / t.elapsed().as_secs_f64() / 1e9;
            let t = Instant::now();
            for _ in 0..reps {
                matmul(kernel, a.view(), b.view(), c.view_mut());
            }
            let steady = flops * reps as f64 / t.elapsed().as_secs_f64() / 1e9;
            println!(
                "{m}x{k}x{n} {kernel:?}: first call {first:.1} GFLOP/s, steady {steady:.1} GFLOP/s"
            );
        }
    }
}
