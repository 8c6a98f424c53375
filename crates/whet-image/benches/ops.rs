//! Single-thread throughput of each augmentation op on 256x256 RGB and 28x28 grey.
//!
//! Run with:
//! `CARGO_TARGET_DIR=$HOME/.cache/whet-target-image RAYON_NUM_THREADS=1 cargo bench -p whet-image --bench ops`
//!
//! Each iteration augments one image for a new sample index (so every call draws fresh
//! randomness and builds its op streams, as in training); the op runs with `p = 1`. Throughput
//! is reported as items (images) per second. The `chain` bench is flip, rotate, crop, brightness
//! and contrast, noise, then normalisation to `f32`, like the peers' chain in BENCH-NOTES.

use std::cell::Cell;
use whet_image::{Augmenter, Normalizer, OpConfig, Scratch};

fn main() {
    divan::main();
}

const SIZES: &[&str] = &["256x256x3", "28x28x1"];

fn shape(size: &str) -> (usize, usize, usize) {
    match size {
        "256x256x3" => (256, 256, 3),
        _ => (28, 28, 1),
    }
}

fn image(h: usize, w: usize, c: usize) -> Vec<u8> {
    // A smooth pattern plus hashed texture: deterministic and not constant.
    (0..h * w * c)
        .map(|i| {
            let (y, x) = ((i / c) / w, (i / c) % w);
            let t = whet_core::rng::mix64(i as u64) as u8 >> 3;
            ((x * 3 + y * 5) as u8 / 2).wrapping_add(t)
        })
        .collect()
}

fn ops_for(name: &str, h: usize, w: usize) -> Vec<OpConfig> {
    let rrc_side = if h >= 224 { 224 } else { h };
    let yaml = match name {
        "hflip" => r#"[{"hflip": {}}]"#.to_string(),
        "vflip" => r#"[{"vflip": {}}]"#.to_string(),
        "rotate" => r#"[{"rotate": {"degrees": 15}}]"#.to_string(),
        "affine" => r#"[{"affine": {"degrees": 15, "translate_fraction": 0.1, "scale": [0.9, 1.1], "shear": 5}}]"#.to_string(),
        "random_crop" => format!(r#"[{{"random_crop": {{"width": {w}, "height": {h}, "padding": 4}}}}]"#),
        "random_resized_crop" => format!(r#"[{{"random_resized_crop": {{"width": {rrc_side}, "height": {rrc_side}}}}}]"#),
        "brightness" => r#"[{"brightness": {"limit": 0.2}}]"#.to_string(),
        "contrast" => r#"[{"contrast": {"limit": 0.2}}]"#.to_string(),
        "brightness_contrast" => {
            r#"[{"brightness": {"limit": 0.2}}, {"contrast": {"limit": 0.2}}]"#.to_string()
        }
        "gamma" => r#"[{"gamma": {"range": [0.8, 1.2]}}]"#.to_string(),
        "blur_3tap" => r#"[{"gaussian_blur": {"sigma": [0.33, 0.33]}}]"#.to_string(),
        "blur_sigma1" => r#"[{"gaussian_blur": {"sigma": [1.0, 1.0]}}]"#.to_string(),
        "elastic" => r#"[{"elastic": {"alpha": 34, "sigma": 4}}]"#.to_string(),
        "erasing" => r#"[{"erasing": {"p": 1.0}}]"#.to_string(),
        "gaussian_noise" => r#"[{"gaussian_noise": {"std": 0.0392}}]"#.to_string(),
        "salt_and_pepper" => r#"[{"salt_and_pepper": {"amount": 0.05}}]"#.to_string(),
        "speckle" => r#"[{"speckle": {"std": 0.1}}]"#.to_string(),
        "chain" => format!(
            r#"[{{"hflip": {{"p": 0.5}}}}, {{"rotate": {{"degrees": 15}}}},
               {{"random_resized_crop": {{"width": {rrc_side}, "height": {rrc_side}}}}},
               {{"brightness": {{"limit": 0.2}}}}, {{"contrast": {{"limit": 0.2}}}},
               {{"gaussian_noise": {{"std": 0.0392}}}}]"#
        ),
        other => panic!("unknown bench op {other}"),
    };
    serde_json::from_str(&yaml).expect("bench op parses")
}

fn run(bencher: divan::Bencher, op: &str, size: &str) {
    let (h, w, c) = shape(size);
    let img = image(h, w, c);
    let aug = Augmenter::from_ops(&ops_for(op, h, w), 7, h, w, c).expect("bench op builds");
    let mut scratch = Scratch::default();
    let sample = Cell::new(0u64);
    let (oh, ow, oc) = aug.output_shape();
    let norm = Normalizer::unit(c);
    let mut out = vec![0f32; oh * ow * oc];
    let normalize = op == "chain";
    bencher
        .counter(divan::counter::ItemsCount::new(1usize))
        .bench_local(|| {
            let s = sample.get();
            sample.set(s + 1);
            let r = aug.apply(divan::black_box(&img), 0, s, &mut scratch);
            if normalize {
                norm.apply(r, &mut out);
            }
            divan::black_box(r.len())
        });
}

macro_rules! bench_ops {
    ($($name:ident),* $(,)?) => {$(
        #[divan::bench(args = SIZES)]
        fn $name(bencher: divan::Bencher, size: &str) {
            run(bencher, stringify!($name), size);
        }
    )*};
}

bench_ops!(
    hflip,
    vflip,
    rotate,
    affine,
    random_crop,
    random_resized_crop,
    brightness,
    contrast,
    brightness_contrast,
    gamma,
    blur_3tap,
    blur_sigma1,
    elastic,
    erasing,
    gaussian_noise,
    salt_and_pepper,
    speckle,
    chain,
);

/// The online path on a 28x28 grey batch of 256 (affine + elastic + noise, the MNIST recipe)
/// with a rayon pool of 1 and 2 threads: shows the gain from the second core.
#[divan::bench(args = [1, 2])]
fn online_fill_mnist_batch256(bencher: divan::Bencher, threads: usize) {
    let (h, w, c) = (28, 28, 1);
    let n = 1024;
    let mut pixels = Vec::with_capacity(n * h * w);
    for _ in 0..n {
        pixels.extend_from_slice(&image(h, w, c));
    }
    let set = whet_image::ImageSet::new(h, w, c, pixels, vec![0; n], vec!["0".into()])
        .expect("bench set");
    let ops: Vec<OpConfig> = serde_json::from_str(
        r#"[{"affine": {"degrees": 12, "translate_pixels": 2, "scale": [0.9, 1.1]}},
            {"elastic": {"alpha": 34, "sigma": 4, "p": 0.5}},
            {"gaussian_noise": {"std": 0.08, "p": 0.5}}]"#,
    )
    .expect("ops parse");
    let aug = Augmenter::from_ops(&ops, 1, h, w, c).expect("ops build");
    let norm = Normalizer::unit(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let batch = 256;
    let mut x = vec![0f32; batch * h * w];
    let mut y = vec![0u32; batch];
    let epoch = Cell::new(0u64);
    bencher
        .counter(divan::counter::ItemsCount::new(batch))
        .bench_local(|| {
            let e = epoch.get();
            epoch.set(e + 1);
            let start = (e as usize * batch) % n;
            let idx: Vec<usize> = (start..start + batch).map(|i| i % n).collect();
            pool.install(|| aug.fill(&set, &norm, e, &idx, &mut x, &mut y))
                .expect("fill");
        });
}
