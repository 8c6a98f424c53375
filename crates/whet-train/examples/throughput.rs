//! Training throughput of 784-256-128-10 ReLU, batch 128, SGD momentum 0.9 / lr 0.01 on 60,000
//! synthetic centred samples (the configuration of `bench/py/train.py`): the first epoch on its
//! own, then the median of the next `EPOCHS` (default 3), and the achieved GFLOP/s.
//!
//! Run with: `RAYON_NUM_THREADS=1 cargo run --release -p whet-train --example throughput`
//! (`WHET_KERNEL=matrixmultiply` switches the kernel; `SAMPLES=12800` shortens the epochs, e.g.
//! under `valgrind --tool=callgrind --toggle-collect='whet_train::train::fit*'`).

use ndarray::Array2;
use rand::RngExt;
use whet_core::rng::stream;
use whet_train::*;

const FLOPS_PER_SAMPLE: f64 = 1_007_104.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let epochs: usize = std::env::var("EPOCHS")
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(3);
    let n: usize = std::env::var("SAMPLES")
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(60_000);
    let mut rng = stream(1, &[100]);
    let x = Array2::from_shape_simple_fn((n, 784), || rng.random::<f32>() - 0.5);
    let labels: Vec<usize> = (0..n).map(|_| rng.random_range(0..10)).collect();
    let mut data = ArraySource::new(x, ArraySource::one_hot(&labels, 10)?)?;
    let model: ModelConfig = serde_json::from_str(
        r#"{"task": "classification", "hidden": [{"dense": 256}, {"dense": 128}]}"#,
    )?;
    let train: TrainConfig = serde_json::from_value(serde_json::json!({
        "optimizer": {"momentum": {"lr": 0.01, "momentum": 0.9}},
        "batch_size": 128,
        "epochs": epochs + 1,
    }))?;
    let mut net = Mlp::new(&model, 784, 10, 1)?;
    if std::env::var("WHET_KERNEL").as_deref() == Ok("matrixmultiply") {
        net.kernel = Kernel::Matrixmultiply;
    }
    let r = fit(&mut net, &train, 1, &mut data, None, &mut NoObserver)?;
    let first = r.curves[0].samples_per_second;
    let mut rest: Vec<f64> = r.curves[1..].iter().map(|c| c.samples_per_second).collect();
    rest.sort_by(f64::total_cmp);
    let med = rest[rest.len() / 2];
    println!(
        "kernel {:?} threads {}: first epoch {:.0} samples/s, steady (median of {}) {:.0} samples/s = {:.1} GFLOP/s; loss {:.4} -> {:.4}",
        net.kernel,
        rayon::current_num_threads(),
        first,
        rest.len(),
        med,
        med * FLOPS_PER_SAMPLE / 1e9,
        r.curves[0].train_loss,
        r.curves.last().map_or(0.0, |c| c.train_loss)
    );
    Ok(())
}
