//! Helpers: run the binary, write run files, read outputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../..")
    .canonicalize()
    .expect("repo root")
}

/// Absolute path of a file in `datasets/`.
pub fn dataset(rel: &str) -> String {
    repo().join("datasets").join(rel).display().to_string()
}

/// The result of one `whet` invocation.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `whet ARGS` in `dir` with a private stage cache.
pub fn whet(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_whet"))
        .args(args)
        .arg("--quiet")
        .current_dir(dir)
        .env("WHET_CACHE_DIR", dir.join(".cache"))
        .output()
        .expect("the whet binary runs");
    Run::from(out)
}

/// A small, valid MNIST run file (absolute data paths) that trains in a second or two.
pub fn tiny_mnist(extra: &str) -> String {
    format!(
        r#"name: tiny
seed: 3
data:
  images:
    train: {{ idx: {{ images: {ti}, labels: {tl} }}, limit: 400 }}
    test: {{ idx: {{ images: {vi}, labels: {vl} }}, limit: 300 }}
    validation: 0.1
augment:
  mode: online
  ops:
    - rotate: {{ degrees: 10, p: 0.5 }}
    - gaussian_noise: {{ std: 0.05, p: 0.5 }}
model:
  task: classification
  hidden:
    - {{ dense: 32, activation: relu }}
train:
  optimizer: {{ adam: {{ lr: 0.003 }} }}
  batch_size: 32
  epochs: 3
{extra}"#,
        ti = dataset("mnist/train-images-idx3-ubyte.gz"),
        tl = dataset("mnist/train-labels-idx1-ubyte.gz"),
        vi = dataset("mnist/t10k-images-idx3-ubyte.gz"),
        vl = dataset("mnist/t10k-labels-idx1-ubyte.gz"),
    )
}

/// An ablation's `ablation.csv`, rows sorted, without the `train_seconds` column (it differs run
/// to run): what two ways of running one ablation must agree on.
pub fn ablation_results(out: &Path) -> String {
    let text = std::fs::read_to_string(out.join("ablation.csv"))
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let t = header.iter().position(|h| *h == "train_seconds").unwrap();
    let mut rows: Vec<String> = text
        .lines()
        .map(|l| {
            let mut c: Vec<&str> = l.split(',').collect();
            c.remove(t);
            c.join(",")
        })
        .collect();
    rows.sort();
    rows.join("\n")
}
