//! `whet-bench make-shards`: a synthetic labelled image set written as WebDataset tar shards,
//! for the streaming benchmark (`bench/py/harness.py --only stream`): `train/train-NNNNN.tar`
//! and `test/test-NNNNN.tar` under `--out`, `--shard-images` images per shard.
//!
//! Image `i` of class `i % 10` is a grey background with a bright disc whose place depends on the
//! class, jittered by a few pixels, and a seeded brightness: enough structure for a network to
//! learn, and images that compress in PNG as photos of simple objects do. Shards are generated
//! and written one at a time, so memory stays at one shard whatever `--images` is.

use serde_json::json;
use std::path::{Path, PathBuf};
use whet_image::{ImageSet, ShardFormat, encode_pngs, write_webdataset};

/// Options of `whet-bench make-shards`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShardsArgs {
    /// The output folder (`train/` and `test/` are written in it).
    #[arg(long)]
    pub out: PathBuf,
    /// Training images.
    #[arg(long, default_value_t = 1_000_000)]
    pub images: usize,
    /// Test images.
    #[arg(long, default_value_t = 10_000)]
    pub test_images: usize,
    /// Image side in pixels (square, grey).
    #[arg(long, default_value_t = 64)]
    pub side: usize,
    /// Images per shard.
    #[arg(long, default_value_t = 8192)]
    pub shard_images: usize,
    /// Seed of the jitter and brightness.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// SplitMix64: a small, stable generator (the set must not change with a crate's version).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Images `from..to` of the set (`salt` separates train from test).
fn images(from: usize, to: usize, side: usize, seed: u64, salt: u64) -> Result<ImageSet, String> {
    let mut pixels = vec![0u8; (to - from) * side * side];
    let mut labels = Vec::with_capacity(to - from);
    for (k, img) in pixels.chunks_exact_mut(side * side).enumerate() {
        let i = (from + k) as u64;
        let class = (i % 10) as usize;
        let r = mix(seed ^ mix(salt ^ i));
        let jitter = |b: u64| ((r >> b) % 9) as f64 - 4.0;
        let angle = class as f64 * std::f64::consts::TAU / 10.0;
        let (cx, cy) = (
            side as f64 * (0.5 + 0.3 * angle.cos()) + jitter(0),
            side as f64 * (0.5 + 0.3 * angle.sin()) + jitter(8),
        );
        let radius = side as f64 * 0.12;
        let bright = 150 + (r >> 16) % 100;
        let background = 20 + (r >> 24) % 40;
        for y in 0..side {
            for x in 0..side {
                let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
                img[y * side + x] = if d < radius {
                    bright as u8
                } else {
                    (background + (x * 16 / side) as u64) as u8
                };
            }
        }
        labels.push(class as u32);
    }
    let names = (0..10).map(|c| c.to_string()).collect();
    ImageSet::new(side, side, 1, pixels, labels, names).map_err(|e| e.to_string())
}

fn write_split(
    dir: &Path,
    split: &str,
    n: usize,
    args: &ShardsArgs,
    salt: u64,
) -> Result<(usize, u64), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let per = args.shard_images.max(1);
    let (mut shards, mut bytes) = (0, 0u64);
    for (k, from) in (0..n).step_by(per).enumerate() {
        let set = images(from, (from + per).min(n), args.side, args.seed, salt)?;
        let encoded = encode_pngs(&set).map_err(|e| e.to_string())?;
        let path = dir.join(format!(
            "{split}-{k:05}.{}",
            ShardFormat::Webdataset.extension()
        ));
        write_webdataset(&path, &encoded).map_err(|e| e.to_string())?;
        bytes += std::fs::metadata(&path).map_or(0, |m| m.len());
        shards += 1;
    }
    Ok((shards, bytes))
}

/// Writes the shards and prints one JSON line describing them.
///
/// # Errors
/// Write and encode errors.
pub fn run(args: &ShardsArgs) -> Result<(), String> {
    let t0 = std::time::Instant::now();
    let (train_shards, train_bytes) =
        write_split(&args.out.join("train"), "train", args.images, args, 1)?;
    let (test_shards, test_bytes) =
        write_split(&args.out.join("test"), "test", args.test_images, args, 2)?;
    println!(
        "{}",
        json!({
            "bench": "make-shards",
            "images": args.images,
            "test_images": args.test_images,
            "side": args.side,
            "shard_images": args.shard_images,
            "train_shards": train_shards,
            "train_bytes": train_bytes,
            "test_shards": test_shards,
            "test_bytes": test_bytes,
            "seconds": t0.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
