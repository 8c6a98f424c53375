//! `whet-bench augment`: images per second of whet-image's ops on the peers' images.
//!
//! The ops and their parameters mirror `bench/py/augment.py` (see its docstring) through the
//! public API the CLI uses: an [`Augmenter`] built from [`OpConfig`]s. Single ops run
//! [`Augmenter::apply`] on every image (uint8 out, as the peers' ops), in parallel over images
//! with rayon and one reusable [`Scratch`] per thread; the `chain` runs the online training path,
//! [`Augmenter::fill`], which also normalises into an `f32` batch as the peers' chains do.
//!
//! Where whet's ops differ in shape from the peers':
//! - `brightness_contrast` is whet's `brightness` then `contrast` (two ops; the peers do both in
//!   one lookup table);
//! - `blur` is `gaussian_blur` with sigma 1/3, whose kernel radius `ceil(3 sigma)` = 1 gives the
//!   peers' 3x3 kernel (the peers use the same sigma).

use crate::inputs;
use crate::measure::{self, RetryPolicy, round3, timed};
use rayon::prelude::*;
use serde_json::json;
use std::cell::RefCell;
use whet_image::{Augmenter, ImageSet, Normalizer, OpConfig, Scratch};

/// The ops, in the peers' order.
pub const OPS: [&str; 7] = [
    "hflip",
    "rotate",
    "resized_crop",
    "brightness_contrast",
    "gaussian_noise",
    "blur",
    "chain",
];
/// `(h, w, c)` of a size named `HxWxC` (C 1 or 3, sides 1 to 4096).
fn parse_size(name: &str) -> Result<(usize, usize, usize), String> {
    let bad = || format!("size `{name}` is not HxWxC (sides 1 to 4096, C 1 or 3), e.g. 256x256x3");
    let parts: Vec<usize> = name
        .split('x')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    match parts[..] {
        [h, w, c] if (1..=4096).contains(&h) && (1..=4096).contains(&w) && (c == 1 || c == 3) => {
            Ok((h, w, c))
        }
        _ => Err(bad()),
    }
}

/// How many images of `h × w × c` a figure uses: `--n-large` for 256x256x3, `--n-small` for
/// 28x28x1, and for other sizes as many as hold the pixels of `n_large` 256x256x3 images (at
/// least 4, at most `n_small`), as `bench/py/augment.py` counts them.
pub fn images_for((h, w, c): (usize, usize, usize), n_large: usize, n_small: usize) -> usize {
    match (h, w, c) {
        (256, 256, 3) => n_large,
        (28, 28, 1) => n_small,
        _ => {
            let n = (n_large * 256 * 256 * 3) as f64 / (h * w * c) as f64;
            (n.round() as usize).clamp(4, n_small.max(4))
        }
    }
}
/// Normalisation of the chain: `(v / 255 - MEAN) / STD` per channel.
const MEAN: f32 = 0.5;
const STD: f32 = 0.25;

/// Options of `whet-bench augment`.
#[derive(Debug, Clone, clap::Args)]
pub struct AugmentArgs {
    /// Seed of the images (`inputs::image`) and of the ops' random streams.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Number of 256x256x3 images.
    #[arg(long, default_value_t = 32)]
    pub n_large: usize,
    /// Number of 28x28x1 images.
    #[arg(long, default_value_t = 1024)]
    pub n_small: usize,
    /// Comma-separated ops (default: all).
    #[arg(
        long,
        default_value = "hflip,rotate,resized_crop,brightness_contrast,gaussian_noise,blur,chain"
    )]
    pub ops: String,
    /// Comma-separated sizes `HxWxC` (default: the two of the per-op figures).
    #[arg(long, default_value = "256x256x3,28x28x1")]
    pub sizes: String,
    /// Seconds per timed repeat (at least).
    #[arg(long, default_value_t = 0.3)]
    pub min_time: f64,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn crop_side(side: usize) -> usize {
    (side as f64 * 7.0 / 8.0).round() as usize
}

/// The whet ops for `op` on `h × w` images.
fn op_configs(op: &str, h: usize, w: usize) -> Result<Vec<OpConfig>, String> {
    let rrc = json!({ "random_resized_crop": {
        "width": crop_side(w), "height": crop_side(h), "scale": [0.08, 1.0], "ratio": [0.75, 4.0 / 3.0],
    } });
    let rotate = json!({ "rotate": { "degrees": 15.0, "fill": 0 } });
    let bc = [
        json!({ "brightness": { "limit": 0.2 } }),
        json!({ "contrast": { "limit": 0.2 } }),
    ];
    let noise = json!({ "gaussian_noise": { "std": 10.0 / 255.0 } });
    let values = match op {
        "hflip" => vec![json!({ "hflip": { "p": 1.0 } })],
        "rotate" => vec![rotate],
        "resized_crop" => vec![rrc],
        "brightness_contrast" => bc.to_vec(),
        "gaussian_noise" => vec![noise],
        "blur" => vec![json!({ "gaussian_blur": { "sigma": [1.0 / 3.0, 1.0 / 3.0] } })],
        "chain" => vec![
            json!({ "hflip": { "p": 0.5 } }),
            rotate,
            rrc,
            bc[0].clone(),
            bc[1].clone(),
            noise,
        ],
        other => {
            return Err(format!(
                "unknown op `{other}`; expected one of {}",
                OPS.join(", ")
            ));
        }
    };
    values
        .into_iter()
        .map(|v| serde_json::from_value(v).map_err(|e| format!("op `{op}`: {e}")))
        .collect()
}

/// One workload: an op on a set of images, with its output buffers.
struct Work {
    aug: Augmenter,
    set: ImageSet,
    chain: bool,
    norm: Normalizer,
    indices: Vec<usize>,
    x: Vec<f32>,
    labels: Vec<u32>,
}

impl Work {
    fn new(op: &str, set: ImageSet, seed: u64) -> Result<Self, String> {
        let ops = op_configs(op, set.h(), set.w())?;
        let aug = Augmenter::from_ops(&ops, seed, set.h(), set.w(), set.c())
            .map_err(|e| format!("op `{op}`: {e}"))?;
        let (oh, ow, oc) = aug.output_shape();
        let chain = op == "chain";
        let n = set.len();
        let c = set.c();
        Ok(Self {
            aug,
            chain,
            norm: Normalizer::new(
                vec![1.0 / (255.0 * STD); c],
                vec![-MEAN / STD; c],
                vec![MEAN; c],
                vec![STD; c],
            )
            .map_err(|e| format!("normalizer: {e}"))?,
            indices: (0..n).collect(),
            x: if chain {
                vec![0.0; n * oh * ow * oc]
            } else {
                Vec::new()
            },
            labels: vec![0; n],
            set,
        })
    }

    /// Augments every image once (epoch `epoch`, so each pass draws new parameters).
    fn pass(&mut self, epoch: u64) -> Result<(), String> {
        if self.chain {
            return self
                .aug
                .fill(
                    &self.set,
                    &self.norm,
                    epoch,
                    &self.indices,
                    &mut self.x,
                    &mut self.labels,
                )
                .map_err(|e| format!("fill: {e}"));
        }
        let (aug, set) = (&self.aug, &self.set);
        (0..set.len()).into_par_iter().for_each(|i| {
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                std::hint::black_box(aug.apply(set.image(i), epoch, i as u64, &mut s));
            });
        });
        Ok(())
    }
}

/// Measures every op on every size and prints one JSON line each.
///
/// # Errors
/// A message for an unknown op or size, an op whet rejects, or a stdout failure.
pub fn run(args: &AugmentArgs, threads: usize, policy: RetryPolicy) -> Result<(), String> {
    for size in args.sizes.split(',') {
        let name = size;
        let (h, w, c) = parse_size(size)?;
        let n = images_for((h, w, c), args.n_large, args.n_small);
        let mut pixels = Vec::with_capacity(n * h * w * c);
        for i in 0..n as u64 {
            pixels.extend(inputs::image(args.seed, i, h, w, c));
        }
        let set = ImageSet::new(h, w, c, pixels, vec![0; n], vec!["all".into()])
            .map_err(|e| format!("image set: {e}"))?;
        for op in args.ops.split(',') {
            eprintln!("augment whet t={threads} {name} {op}");
            let mut work = Work::new(op, set.clone(), args.seed)?;
            let mut epoch = 0u64;
            let (first, m) = timed(|| work.pass(epoch));
            first?;
            epoch += 1;
            let passes = ((args.min_time / m.wall.max(1e-6)).ceil() as u64).max(1);
            let mut failure = None;
            let r = measure::repeat(policy, || {
                let (res, mm) = timed(|| {
                    for _ in 0..passes {
                        work.pass(epoch)?;
                        epoch += 1;
                    }
                    Ok::<(), String>(())
                });
                if let Err(e) = res {
                    failure = Some(e);
                }
                ((n as u64 * passes) as f64 / mm.wall, mm)
            });
            if let Some(e) = failure {
                return Err(e);
            }
            measure::emit(&json!({
                "bench": "augment",
                "engine": "whet",
                "threads": threads,
                "parallelism": format!("1 process x {threads} rayon thread(s)"),
                "library_threads": { "rayon.current_num_threads": rayon::current_num_threads() },
                "versions": { "whet": env!("CARGO_PKG_VERSION") },
                "seed": args.seed,
                "op": op,
                "whet_ops": work.aug.op_labels(),
                "size": name,
                "images": n,
                "unit": "images/s",
                "first_ips": n as f64 / m.wall,
                "first_other_cores": m.other_cores.map(round3),
                "median_ips": r.median(),
                "ips": r.values,
                "passes": passes,
                "other_cores": r.other_json(),
                "retried": r.retried,
                "peak_rss_bytes": measure::peak_rss_bytes(),
            }))
            .map_err(|e| format!("writing the result: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_builds_for_both_sizes() {
        for (h, w, c) in [(256, 256, 3), (28, 28, 1)] {
            for op in OPS {
                let ops = op_configs(op, h, w).expect("configs parse");
                let aug = Augmenter::from_ops(&ops, 1, h, w, c).expect("whet accepts the ops");
                let (oh, ow, _) = aug.output_shape();
                if op == "resized_crop" || op == "chain" {
                    assert_eq!((oh, ow), (crop_side(h), crop_side(w)));
                } else {
                    assert_eq!((oh, ow), (h, w));
                }
            }
        }
    }

    #[test]
    fn sizes_parse_and_count_images_as_the_python_side() {
        assert_eq!(parse_size("1024x1024x3"), Ok((1024, 1024, 3)));
        assert!(parse_size("28x28").unwrap_err().contains("HxWxC"));
        assert!(parse_size("28x28x2").is_err());
        assert_eq!(images_for((256, 256, 3), 32, 1024), 32);
        assert_eq!(images_for((28, 28, 1), 32, 1024), 1024);
        // 32 · 256² / 512² = 8; 32 · 256² / 1024² = 2, at least 4; 28x28x3: 2,675, at most 1,024.
        assert_eq!(images_for((512, 512, 3), 32, 1024), 8);
        assert_eq!(images_for((1024, 1024, 3), 32, 1024), 4);
        assert_eq!(images_for((28, 28, 3), 32, 1024), 1024);
        assert_eq!(images_for((64, 64, 3), 32, 1024), 512);
    }

    #[test]
    fn a_pass_changes_the_images() {
        let (h, w, c) = (28, 28, 1);
        let pixels: Vec<u8> = (0..4).flat_map(|i| inputs::image(7, i, h, w, c)).collect();
        let set = ImageSet::new(h, w, c, pixels, vec![0; 4], vec!["all".into()]).expect("set");
        let mut work = Work::new("chain", set, 7).expect("chain builds");
        work.pass(0).expect("pass runs");
        // Normalised output of 24x24 crops: finite, and not all equal.
        assert!(work.x.iter().all(|v| v.is_finite()));
        assert!(work.x.iter().any(|&v| v != work.x[0]));
    }

    #[test]
    fn unknown_op_is_an_error_naming_the_valid_ones() {
        let e = op_configs("sharpen", 28, 28).expect_err("unknown op");
        assert!(e.contains("sharpen") && e.contains("hflip"), "{e}");
    }
}
