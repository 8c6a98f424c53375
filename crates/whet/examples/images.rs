//! The README's library example: MNIST with elastic distortion, trained and evaluated from Rust.
use whet::prelude::*;
fn main() -> whet::Result<()> {
    let idx = |name: &str| format!("datasets/mnist/{name}-ubyte.gz");
    let train = ImageSourceConfig::idx(idx("train-images-idx3"), idx("train-labels-idx1"));
    let test = ImageSourceConfig::idx(idx("t10k-images-idx3"), idx("t10k-labels-idx1"));
    let images = ImagesConfig::new(train.with_limit(1000)).with_test(test);
    let augment = AugmentConfig::online().with_op(ElasticConfig::new(34.0, 4.0));
    let model = ModelConfig::classification().with_hidden([HiddenConfig::dense(128)]);
    let fit = TrainConfig::new(OptimizerConfig::adam(0.001)).with_epochs(5);
    let file = RunFile::images("mnist-rust", images, model, fit).with_augment(augment);
    let run = file.into_run(".")?;
    let out = run.execute("runs/mnist-rust", 7, &Cache::off(), &NoProgress)?;
    println!("test accuracy {:.4}", out.metrics.test["accuracy"]);
    Ok(())
}
