//! Trains a 784-256-128-10 ReLU network on the full MNIST training set (60,000 images) and
//! evaluates it on the 10,000 test images; prints per-epoch loss, accuracy and samples/s.
//!
//! Run with: `cargo run --release -p whet-train --example mnist_full`
//! Environment: `EPOCHS` (default 20), `WHET_KERNEL=matrixmultiply` to switch the kernel,
//! `RAYON_NUM_THREADS`, `CHECKPOINT=path.safetensors` to save the trained weights.

#[path = "../tests/it/idx.rs"]
mod idx;

use std::time::Instant;
use whet_train::*;

struct Print;

impl Observer for Print {
    fn epoch_end(&mut self, r: &EpochRecord) {
        println!(
            "epoch {:2}  lr {:.2e}  train loss {:.4} acc {:.4}  test loss {:.4} acc {:.4}  {:.2}s  {:.0} samples/s",
            r.epoch,
            r.lr,
            r.train_loss,
            r.train_accuracy.unwrap_or(f64::NAN),
            r.valid_loss.unwrap_or(f64::NAN),
            r.valid_accuracy.unwrap_or(f64::NAN),
            r.seconds,
            r.samples_per_second
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let digits: Vec<u8> = (0..10).collect();
    let t = Instant::now();
    let (x, y) = idx::load("train", 60_000, &digits);
    let (tx, ty) = idx::load("t10k", 10_000, &digits);
    println!(
        "loaded {} train / {} test images in {:.1}s",
        x.nrows(),
        tx.nrows(),
        t.elapsed().as_secs_f64()
    );
    let epochs: usize = std::env::var("EPOCHS")
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(20);
    let model: ModelConfig = serde_json::from_str(
        r#"{"task": "classification", "hidden": [{"dense": 256, "activation": "relu"}, {"dense": 128, "activation": "relu"}]}"#,
    )?;
    let train: TrainConfig = serde_json::from_value(serde_json::json!({
        "optimizer": {"adam": {"lr": 0.001}},
        "batch_size": 128,
        "epochs": epochs,
        "schedule": {"cosine": {"min_lr": 0.0}},
    }))?;
    let mut net = build_model(&model, &train, None, 784, 10, 42)?;
    if std::env::var("WHET_KERNEL").as_deref() == Ok("matrixmultiply") {
        net.kernel = Kernel::Matrixmultiply;
    }
    println!(
        "kernel {:?}, rayon threads {}",
        net.kernel,
        rayon::current_num_threads()
    );
    let mut train_src = ArraySource::new(x, y)?;
    let mut test_src = ArraySource::new(tx, ty)?;
    let report = fit(
        &mut net,
        &train,
        42,
        &mut train_src,
        Some(&mut test_src),
        &mut Print,
    )?;
    let eval = evaluate(&net, &mut test_src)?;
    let first = report.curves.first().map_or(0.0, |c| c.samples_per_second);
    let mut rest: Vec<f64> = report
        .curves
        .iter()
        .skip(1)
        .map(|c| c.samples_per_second)
        .collect();
    rest.sort_by(f64::total_cmp);
    let median = rest.get(rest.len() / 2).copied().unwrap_or(first);
    println!(
        "test accuracy {:.2} %  (loss {:.4});  training {:.1}s, {:.0} samples/s overall, first epoch {:.0}, median later epoch {:.0}",
        100.0 * eval.accuracy().unwrap_or(0.0),
        eval.loss,
        report.seconds,
        report.samples_per_second,
        first,
        median
    );
    if let Ok(p) = std::env::var("CHECKPOINT") {
        checkpoint::save(&net, std::path::Path::new(&p))?;
        println!("saved {p}");
    }
    Ok(())
}
