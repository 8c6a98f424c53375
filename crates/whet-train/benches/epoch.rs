//! One training epoch of a 784-256-128-10 ReLU network on 60,000 synthetic centred samples with
//! batch 128 and SGD with momentum 0.9, lr 0.01 (the configuration `bench/py/train.py` runs for
//! PyTorch and NumPy), for both matrix kernels; the raw kernels on a 2048 x 2048 product; and
//! the products of one batch of that network and of the LeNet-5-like CNN (items = flops, so
//! "items/s" reads as flop/s).
//!
//! Run with: `RAYON_NUM_THREADS=1 cargo bench -p whet-train --bench epoch`
//! (and again with `RAYON_NUM_THREADS=2`).

use divan::counter::ItemsCount;
use ndarray::Array2;
use rand::RngExt;
use whet_core::rng::stream;
use whet_train::kernel::matmul;
use whet_train::*;

fn main() {
    divan::main();
}

const N: usize = 60_000;

fn setup(kernel: Kernel) -> (Mlp, TrainConfig, ArraySource) {
    let mut rng = stream(1, &[100]);
    let x = Array2::from_shape_simple_fn((N, 784), || rng.random::<f32>() - 0.5);
    let labels: Vec<usize> = (0..N).map(|_| rng.random_range(0..10)).collect();
    let y = ArraySource::one_hot(&labels, 10).expect("labels < 10");
    let model: ModelConfig = serde_json::from_str(
        r#"{"task": "classification", "hidden": [{"dense": 256}, {"dense": 128}]}"#,
    )
    .expect("valid");
    let train: TrainConfig = serde_json::from_str(
        r#"{"optimizer": {"momentum": {"lr": 0.01, "momentum": 0.9}}, "batch_size": 128, "epochs": 1}"#,
    )
    .expect("valid");
    let mut net = Mlp::new(&model, 784, 10, 1).expect("valid");
    net.kernel = kernel;
    (net, train, ArraySource::new(x, y).expect("same rows"))
}

#[divan::bench(args = [Kernel::Gemm, Kernel::Matrixmultiply], sample_count = 3, sample_size = 1)]
fn epoch_784_256_128_10_batch128(bencher: divan::Bencher, kernel: Kernel) {
    let (mut net, train, mut data) = setup(kernel);
    bencher.counter(ItemsCount::new(N)).bench_local(|| {
        fit(&mut net, &train, 1, &mut data, None, &mut NoObserver).expect("no divergence")
    });
}

#[divan::bench(args = [Kernel::Gemm, Kernel::Matrixmultiply], sample_count = 5, sample_size = 1)]
fn matmul_2048(bencher: divan::Bencher, kernel: Kernel) {
    let n = 2048;
    let a = Array2::from_shape_fn((n, n), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.1);
    let b = Array2::from_shape_fn((n, n), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.1);
    let mut c = Array2::<f32>::zeros((n, n));
    bencher
        .counter(ItemsCount::new(2 * n * n * n))
        .bench_local(|| matmul(kernel, a.view(), b.view(), c.view_mut()));
}

/// The products of one LeNet-5-like training batch (128 images of 28×28×1; conv 6@5×5 same,
/// pool 2, conv 16@5×5): `(name, m, k, n, a transposed)`, as [`Mlp`] calls them (the weight
/// gradients multiply the transposed im2col matrix).
const LENET: [(&str, usize, usize, usize, bool); 5] = [
    ("conv1 forward", 128 * 784, 25, 6, false),
    ("conv1 weight gradient", 25, 128 * 784, 6, true),
    ("conv2 forward", 128 * 100, 150, 16, false),
    ("conv2 weight gradient", 150, 128 * 100, 16, true),
    ("conv2 input gradient", 128 * 100, 16, 150, false),
];

#[divan::bench(args = LENET.map(|s| s.0), sample_count = 20, sample_size = 5)]
fn lenet_products(bencher: divan::Bencher, name: &str) {
    let &(_, m, k, n, transposed) = LENET.iter().find(|s| s.0 == name).expect("a LeNet shape");
    let a = if transposed {
        Array2::from_shape_fn((k, m), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.1)
    } else {
        Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.1)
    };
    let a = if transposed { a.t() } else { a.view() };
    let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.1);
    let mut c = Array2::<f32>::zeros((m, n));
    bencher
        .counter(ItemsCount::new(2 * m * n * k))
        .bench_local(|| matmul(Kernel::Gemm, a, b.view(), c.view_mut()));
}

/// The products of one 784-256-128-10 training batch of 128 rows, as [`Mlp`] calls them:
/// `(name, m, k, n, a transposed, b transposed)` (the weight gradients multiply the transposed
/// layer input, the input gradients the transposed weights). Compare their rates with
/// `matmul_2048`: the share of the 2048² rate a training epoch reaches cannot exceed theirs.
const MLP: [(&str, usize, usize, usize, bool, bool); 5] = [
    ("fc1 forward", 128, 784, 256, false, false),
    ("fc1 weight gradient", 784, 128, 256, true, false),
    ("fc2 forward", 128, 256, 128, false, false),
    ("fc2 weight gradient", 256, 128, 128, true, false),
    ("fc2 input gradient", 128, 128, 256, false, true),
];

#[divan::bench(args = MLP.map(|s| s.0), sample_count = 20, sample_size = 20)]
fn mlp_products(bencher: divan::Bencher, name: &str) {
    let &(_, m, k, n, at, bt) = MLP.iter().find(|s| s.0 == name).expect("an MLP shape");
    let fill = |r: usize, c: usize, t: bool| {
        let (r, c) = if t { (c, r) } else { (r, c) };
        Array2::from_shape_fn((r, c), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.1)
    };
    let (a, b) = (fill(m, k, at), fill(k, n, bt));
    let a = if at { a.t() } else { a.view() };
    let b = if bt { b.t() } else { b.view() };
    let mut c = Array2::<f32>::zeros((m, n));
    bencher
        .counter(ItemsCount::new(2 * m * n * k))
        .bench_local(|| matmul(Kernel::Gemm, a, b, c.view_mut()));
}
