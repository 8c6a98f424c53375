//! Writes a preview grid of MNIST digits through an affine + elastic + noise pipeline.
//!
//! Run with: `cargo run -p whet-image --example preview -- /tmp/preview.png`

use std::path::{Path, PathBuf};
use whet_image::{AugmentConfig, Augmenter, load_idx};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("preview.png"));
    let data = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../datasets/mnist");
    let set = load_idx(
        &data.join("train-images-idx3-ubyte.gz"),
        &data.join("train-labels-idx1-ubyte.gz"),
        Some(200),
        None,
    )?;
    let cfg: AugmentConfig = serde_json::from_str(
        r#"{ "ops": [
            { "affine": { "degrees": 12, "translate_pixels": 2, "scale": [0.9, 1.1], "shear": 8 } },
            { "elastic": { "alpha": 34, "sigma": 4, "p": 0.5 } },
            { "gaussian_noise": { "std": 0.08, "p": 0.5 } }
        ] }"#,
    )?;
    let aug = Augmenter::new(&cfg, 42, set.h(), set.w(), set.c())?;
    whet_image::write_preview(&set, &aug, 6, 6, &out)?;
    println!("wrote {}", out.display());
    Ok(())
}
