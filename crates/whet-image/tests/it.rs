//! Integration tests of whet-image: properties of the ops, determinism across thread counts,
//! golden images, loader errors, offline expansion, preview and export.
//!
//! Goldens live in `tests/data/golden/`; regenerate them on purpose with
//! `REGENERATE=1 cargo test -p whet-image --test it golden`.

use proptest::prelude::*;
use std::path::{Path, PathBuf};
use whet_image::geometric::{Mat, hflip, vflip, warp_affine};
use whet_image::{
    AugmentConfig, Augmenter, Error, FolderOptions, ImageSet, Img, Normalizer, OpConfig,
    load_folder, load_idx,
};

fn mnist(name: &str) -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../datasets/mnist")
    .join(name)
}

fn mnist_train(limit: usize) -> ImageSet {
    load_idx(
        &mnist("train-images-idx3-ubyte.gz"),
        &mnist("train-labels-idx1-ubyte.gz"),
        Some(limit),
        None,
    )
    .unwrap()
}

fn ops(json: &str) -> Vec<OpConfig> {
    serde_json::from_str(json).unwrap()
}

fn arb_img() -> impl Strategy<Value = Img> {
    (
        1usize..20,
        1usize..20,
        prop_oneof![Just(1usize), Just(3usize)],
    )
        .prop_flat_map(|(h, w, c)| {
            proptest::collection::vec(any::<u8>(), h * w * c)
                .prop_map(move |d| Img::from_vec(h, w, c, d))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn flipping_twice_is_identity(img in arb_img()) {
        let (mut a, mut b) = (Img::default(), Img::default());
        hflip(img.view(), &mut a);
        hflip(a.view(), &mut b);
        prop_assert_eq!(&b, &img);
        vflip(img.view(), &mut a);
        vflip(a.view(), &mut b);
        prop_assert_eq!(&b, &img);
    }

    #[test]
    fn rotation_by_zero_is_identity(img in arb_img(), seed in any::<u64>()) {
        let aug = Augmenter::from_ops(&ops(r#"[{"rotate": {"degrees": 0}}]"#), seed, img.h, img.w, img.c).unwrap();
        prop_assert_eq!(aug.apply_to_img(&img.data, 0, 0), img);
    }

    #[test]
    fn noise_with_zero_std_is_identity(img in arb_img(), seed in any::<u64>()) {
        let aug = Augmenter::from_ops(
            &ops(r#"[{"gaussian_noise": {"std": 0}}, {"speckle": {"std": 0}}, {"salt_and_pepper": {"amount": 0}}]"#),
            seed, img.h, img.w, img.c).unwrap();
        prop_assert_eq!(aug.apply_to_img(&img.data, 3, 9), img);
    }

    #[test]
    fn quarter_turn_is_transpose_then_vflip(n in 1usize..24, c in prop_oneof![Just(1usize), Just(3usize)], seed in any::<u64>()) {
        let data: Vec<u8> = (0..n * n * c).map(|i| (whet_core::rng::mix64(seed ^ i as u64) >> 56) as u8).collect();
        let img = Img::from_vec(n, n, c, data);
        let mut rot = Img::default();
        warp_affine(img.view(), &mut rot, &Mat::about_centre(n, n, std::f64::consts::FRAC_PI_2, 1.0, 0.0, 0.0, 0.0), 0);
        let mut t = img.clone();
        for y in 0..n {
            for x in 0..n {
                for k in 0..c {
                    t.data[(y * n + x) * c + k] = img.data[(x * n + y) * c + k];
                }
            }
        }
        let mut want = Img::default();
        vflip(t.view(), &mut want);
        prop_assert_eq!(rot, want);
    }

    #[test]
    fn crops_have_the_asked_size(h in 4usize..40, w in 4usize..40, oh in 1usize..40, ow in 1usize..40, seed in any::<u64>()) {
        let img = vec![7u8; h * w * 3];
        let rrc = format!(r#"[{{"random_resized_crop": {{"width": {ow}, "height": {oh}}}}}]"#);
        let aug = Augmenter::from_ops(&ops(&rrc), seed, h, w, 3).unwrap();
        let out = aug.apply_to_img(&img, 0, 1);
        prop_assert_eq!((out.h, out.w, out.c, out.data.len()), (oh, ow, 3, oh * ow * 3));
        let pad = (oh.max(ow)).saturating_sub(h.min(w)) / 2 + 1;
        let rc = format!(r#"[{{"random_crop": {{"width": {ow}, "height": {oh}, "padding": {pad}}}}}]"#);
        let aug = Augmenter::from_ops(&ops(&rc), seed, h, w, 3).unwrap();
        let out = aug.apply_to_img(&img, 0, 1);
        prop_assert_eq!((out.h, out.w, out.data.len()), (oh, ow, oh * ow * 3));
    }

    #[test]
    fn gaussian_noise_has_the_asked_mean_and_spread(std in 0.01f64..0.08, mean in -0.05f64..0.05, seed in any::<u64>()) {
        let (h, w) = (96, 96);
        let img = vec![128u8; h * w];
        let json = format!(r#"[{{"gaussian_noise": {{"std": {std}, "mean": {mean}}}}}]"#);
        let aug = Augmenter::from_ops(&ops(&json), seed, h, w, 1).unwrap();
        let out = aug.apply_to_img(&img, 0, 0);
        let n = (h * w) as f64;
        let d: Vec<f64> = out.data.iter().map(|&v| (v as f64 - 128.0) / 255.0).collect();
        let m = d.iter().sum::<f64>() / n;
        let sd = (d.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt();
        // 5 standard errors on the mean, plus half a level of rounding.
        prop_assert!((m - mean).abs() < 5.0 * std / n.sqrt() + 0.5 / 255.0, "mean {} vs {}", m, mean);
        // Rounding to levels adds variance 1/12 level^2.
        let want_sd = (std * std + 1.0 / (12.0 * 255.0 * 255.0)).sqrt();
        prop_assert!((sd / want_sd - 1.0).abs() < 0.06, "sd {} vs {}", sd, want_sd);
    }
}

const FULL: &str = r#"{ "ops": [
    { "hflip": { "p": 0.5 } },
    { "rotate": { "degrees": 12, "p": 0.7 } },
    { "translate": { "pixels": 2, "p": 0.5 } },
    { "elastic": { "alpha": 34, "sigma": 4, "p": 0.5 } },
    { "gaussian_blur": { "sigma": [0.5, 1.0], "p": 0.3 } },
    { "brightness": { "limit": 0.1 } },
    { "erasing": {} },
    { "gaussian_noise": { "std": 0.08, "p": 0.5 } },
    { "speckle": { "std": 0.1, "p": 0.3 } },
    { "salt_and_pepper": { "amount": 0.02, "p": 0.3 } },
    { "one_of": { "ops": [ { "vflip": {} }, { "gamma": { "range": [0.7, 1.3] } } ], "p": 0.5 } },
    { "some_of": { "n": 2, "ops": [ { "contrast": { "limit": 0.3 } }, { "shear": { "degrees": 10 } }, { "scale": { "range": [0.9, 1.1] } } ] } }
] }"#;

#[test]
fn same_seed_same_bytes_with_one_or_two_threads() {
    let set = mnist_train(300);
    let cfg: AugmentConfig = serde_json::from_str(FULL).unwrap();
    let aug = Augmenter::new(&cfg, 11, 28, 28, 1).unwrap();
    let norm = Normalizer::unit(1);
    let indices: Vec<usize> = (0..300).rev().step_by(3).collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut x = vec![0f32; indices.len() * 784];
            let mut y = vec![0u32; indices.len()];
            aug.fill(&set, &norm, 3, &indices, &mut x, &mut y).unwrap();
            let expanded = aug.expand(&set, 2).unwrap();
            (x, y, expanded)
        })
    };
    let (x1, y1, e1) = run(1);
    let (x2, y2, e2) = run(2);
    assert_eq!(y1, y2);
    assert!(x1.iter().zip(&x2).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_eq!(e1, e2);
    // And the augmentation did something, differently per epoch.
    let mut x3 = vec![0f32; indices.len() * 784];
    let mut y3 = vec![0u32; indices.len()];
    aug.fill(&set, &norm, 4, &indices, &mut x3, &mut y3)
        .unwrap();
    assert_ne!(x1, x3);
}

#[test]
fn offline_expansion_keeps_originals_and_adds_copies() {
    let set = mnist_train(50);
    let cfg: AugmentConfig = serde_json::from_str(FULL).unwrap();
    let aug = Augmenter::new(&cfg, 1, 28, 28, 1).unwrap();
    let big = aug.expand(&set, 3).unwrap();
    assert_eq!(big.len(), 200);
    assert_eq!(&big.pixels()[..50 * 784], set.pixels());
    assert_eq!(&big.labels()[150..], set.labels());
    assert_ne!(&big.pixels()[50 * 784..100 * 784], set.pixels());
    assert_eq!(
        big.image(60),
        aug.apply_to_img(set.image(10), 0, 10).data.as_slice()
    );
    // Size-changing ops cannot expand offline.
    let crop = Augmenter::from_ops(
        &ops(r#"[{"random_crop": {"width": 20, "height": 20}}]"#),
        0,
        28,
        28,
        1,
    )
    .unwrap();
    assert!(matches!(crop.expand(&set, 1), Err(Error::Shape { .. })));
}

fn golden_check(name: &str, img: &Img) {
    let path = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/data/golden")
    .join(format!("{name}.png"));
    let ct = if img.c == 1 {
        image::ColorType::L8
    } else {
        image::ColorType::Rgb8
    };
    if std::env::var_os("REGENERATE").is_some() {
        image::save_buffer(&path, &img.data, img.w as u32, img.h as u32, ct).unwrap();
        return;
    }
    let want = image::open(&path).unwrap_or_else(|e| {
        panic!(
            "golden {} missing ({e}); run with REGENERATE=1",
            path.display()
        )
    });
    let want = if img.c == 1 {
        want.to_luma8().into_raw()
    } else {
        want.to_rgb8().into_raw()
    };
    assert_eq!(
        want, img.data,
        "golden {name} differs; if intended, regenerate with REGENERATE=1"
    );
}

/// The first 8 MNIST digits side by side, each through the op for sample i.
fn strip(json: &str) -> Img {
    let set = mnist_train(8);
    let aug = Augmenter::from_ops(&ops(json), 2026, 28, 28, 1).unwrap();
    let (oh, ow, _) = aug.output_shape();
    let mut out = Img::filled(oh, ow * 8, 1, 0);
    for i in 0..8 {
        let a = aug.apply_to_img(set.image(i), 0, i as u64);
        for y in 0..oh {
            out.data[y * ow * 8 + i * ow..y * ow * 8 + (i + 1) * ow]
                .copy_from_slice(&a.data[y * ow..(y + 1) * ow]);
        }
    }
    out
}

#[test]
fn golden_images() {
    golden_check("rotate", &strip(r#"[{"rotate": {"degrees": 30}}]"#));
    golden_check(
        "affine",
        &strip(
            r#"[{"affine": {"degrees": 15, "translate_pixels": 3, "scale": [0.8, 1.2], "shear": 15}}]"#,
        ),
    );
    golden_check(
        "elastic",
        &strip(r#"[{"elastic": {"alpha": 34, "sigma": 4}}]"#),
    );
    golden_check(
        "gaussian_noise",
        &strip(r#"[{"gaussian_noise": {"std": 0.15}}]"#),
    );
    golden_check(
        "blur_erasing",
        &strip(r#"[{"gaussian_blur": {"sigma": [1.0, 1.0]}}, {"erasing": {"p": 1.0}}]"#),
    );
}

fn write_idx_raw(path: &Path, magic: u32, dims: &[u32], body: &[u8]) {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(body);
    std::fs::write(path, b).unwrap();
}

#[test]
fn idx_loader_errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Truncated gzip.
    let gz = std::fs::read(mnist("train-labels-idx1-ubyte.gz")).unwrap();
    let cut = d.join("cut-labels.gz");
    std::fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
    let e = load_idx(&mnist("train-images-idx3-ubyte.gz"), &cut, Some(10), None).unwrap_err();
    assert!(e.to_string().contains("cut-labels.gz"), "{e}");
    // Wrong magic: the images file given as labels.
    let e = load_idx(
        &mnist("train-images-idx3-ubyte.gz"),
        &mnist("train-images-idx3-ubyte.gz"),
        None,
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("wrong magic number 0x00000803"),
        "{e}"
    );
    // Label count mismatch.
    let imgs = d.join("imgs");
    let labs = d.join("labs");
    write_idx_raw(&imgs, 0x803, &[3, 2, 2], &[0; 12]);
    write_idx_raw(&labs, 0x801, &[2], &[0, 1]);
    let e = load_idx(&imgs, &labs, None, None).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LabelCount {
                images: 3,
                labels: 2,
                ..
            }
        ),
        "{e}"
    );
    // Truncated raw data.
    write_idx_raw(&labs, 0x801, &[3], &[0, 1, 1]);
    write_idx_raw(&imgs, 0x803, &[3, 2, 2], &[0; 7]);
    let e = load_idx(&imgs, &labs, None, None).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    // Absurd declared size, refused before allocating.
    write_idx_raw(&imgs, 0x803, &[60_000, 100_000, 100_000], &[]);
    write_idx_raw(&labs, 0x801, &[60_000], &[]);
    let e = load_idx(&imgs, &labs, None, None).unwrap_err();
    assert!(e.to_string().contains("more than the limit"), "{e}");
    // Not an IDX at all.
    std::fs::write(&imgs, b"hi").unwrap();
    assert!(load_idx(&imgs, &labs, None, None).is_err());
}

#[test]
fn idx_class_filter_and_limit_relabel() {
    let set = load_idx(
        &mnist("train-images-idx3-ubyte.gz"),
        &mnist("train-labels-idx1-ubyte.gz"),
        Some(100),
        Some(&[7, 1]),
    )
    .unwrap();
    assert_eq!(set.len(), 100);
    assert_eq!(set.class_names(), vec!["7", "1"]);
    assert!(set.labels().iter().all(|&l| l < 2));
    let all = mnist_train(2000);
    let first7 = all.labels().iter().position(|&l| l == 7).unwrap();
    let first = set.labels().iter().position(|&l| l == 0).unwrap();
    assert_eq!(set.image(first), all.image(first7));
}

#[test]
fn folder_loader_reports_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    for (class, v) in [("cat", 50u8), ("dog", 200u8)] {
        let p = dir.path().join(class);
        std::fs::create_dir_all(&p).unwrap();
        for k in 0..2 {
            let img = image::RgbImage::from_pixel(10, 6, image::Rgb([v, v / 2, k]));
            img.save(p.join(format!("{k}.png"))).unwrap();
        }
    }
    let bad = dir.path().join("dog/broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n not really").unwrap();
    let mut opt = FolderOptions {
        width: 8,
        height: 8,
        channels: 3,
        grey: whet_image::Grey::Rec601,
        skip_bad: false,
        classes: None,
        limit: None,
    };
    let e = load_folder(dir.path(), &opt).unwrap_err();
    assert!(e.to_string().contains("broken.png"), "{e}");
    opt.skip_bad = true;
    let r = load_folder(dir.path(), &opt).unwrap();
    assert_eq!(r.set.len(), 4);
    assert_eq!(r.set.class_names(), vec!["cat", "dog"]);
    assert_eq!(r.set.shape(), (8, 8, 3));
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].path, bad);
    opt.channels = 1;
    let grey = load_folder(dir.path(), &opt).unwrap();
    assert_eq!(grey.set.c(), 1);
}

/// The folder loader decodes on the rayon pool: the images come out in file order whatever the
/// thread count, a corrupt file skipped in the middle of a batch closes its gap, and `limit`
/// with `skip_bad` decodes a second batch for the images the skipped file did not give.
#[test]
fn folder_loader_keeps_file_order_on_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut value = 10u8;
    for (class, names) in [("cat", ["0", "1", "2"]), ("dog", ["0", "1", "5"])] {
        let p = dir.path().join(class);
        std::fs::create_dir_all(&p).unwrap();
        for name in names {
            image::GrayImage::from_pixel(12, 9, image::Luma([value]))
                .save(p.join(format!("{name}.png")))
                .unwrap();
            value += 20;
        }
    }
    // Sorted between cat/1.png and cat/2.png.
    std::fs::write(dir.path().join("cat/1x.png"), b"\x89PNG\r\n\x1a\n broken").unwrap();
    let opt = FolderOptions {
        width: 4,
        height: 4,
        channels: 1,
        grey: whet_image::Grey::Rec601,
        skip_bad: true,
        classes: None,
        limit: Some(4),
    };
    let load = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| load_folder(dir.path(), &opt)).unwrap()
    };
    let one = load(1);
    // cat 0, 1, 2 (values 10, 30, 50) and the first dog (70): the broken file cost one image,
    // which a second batch fetched.
    assert_eq!(one.set.labels(), &[0, 0, 0, 1]);
    let firsts: Vec<u8> = (0..4).map(|i| one.set.image(i)[0]).collect();
    assert_eq!(firsts, [10, 30, 50, 70]);
    assert!((0..4).all(|i| one.set.image(i).iter().all(|&v| v == firsts[i])));
    assert_eq!(one.skipped.len(), 1);
    assert!(one.skipped[0].path.ends_with("cat/1x.png"));
    for threads in [2, 3] {
        let many = load(threads);
        assert_eq!(many.set.labels(), one.set.labels());
        assert_eq!(many.set.pixels(), one.set.pixels(), "{threads} threads");
        assert_eq!(many.skipped, one.skipped);
    }
}

#[test]
fn preview_writes_a_png_of_the_expected_size() {
    let set = mnist_train(40);
    let aug = Augmenter::from_ops(
        &ops(r#"[{"rotate": {"degrees": 20}}, {"gaussian_noise": {"std": 0.1}}]"#),
        3,
        28,
        28,
        1,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sub/grid.png");
    whet_image::write_preview(&set, &aug, 3, 4, &out).unwrap();
    let img = image::open(&out).unwrap();
    // 28 px scaled by 4 = 112 px cells, 5 columns, a 90 px label column, 4 px gaps, one title
    // line (18) and the column header (22).
    assert_eq!(
        (img.width(), img.height()),
        (90 + 5 * 116 + 4, 18 + 22 + 3 * 116 + 4)
    );
    // Some dark text and some non-white image content exist.
    let rgb = img.to_rgb8();
    assert!(rgb.pixels().filter(|p| p.0 == [0, 0, 0]).count() > 100);
}

#[test]
fn export_roundtrips_through_idx_and_png_folders() {
    let set = mnist_train(30);
    let dir = tempfile::tempdir().unwrap();
    let (i, l) = (
        dir.path().join("x-images.gz"),
        dir.path().join("x-labels.gz"),
    );
    whet_image::write_idx(&set, &i, &l).unwrap();
    let back = load_idx(&i, &l, None, None).unwrap();
    assert_eq!(back.pixels(), set.pixels());
    assert_eq!(back.labels(), set.labels());
    let root = dir.path().join("png");
    whet_image::write_png_folders(&set, &root).unwrap();
    let opt = FolderOptions {
        width: 28,
        height: 28,
        channels: 1,
        grey: whet_image::Grey::Rec601,
        skip_bad: false,
        classes: None,
        limit: None,
    };
    let f = load_folder(&root, &opt).unwrap();
    assert_eq!(f.set.len(), 30);
    let mut a: Vec<&[u8]> = (0..30).map(|k| set.image(k)).collect();
    let mut b: Vec<&[u8]> = (0..30).map(|k| f.set.image(k)).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn augment_yaml_shape_parses_and_validates() {
    let cfg: AugmentConfig = serde_json::from_str(
        r#"{ "mode": "offline", "copies": 4, "ops": [ { "cutout": {} }, { "rotate": { "degrees": 12, "p": 0.7 } } ] }"#,
    )
    .unwrap();
    assert!(cfg.validate().is_empty());
    let bad: AugmentConfig =
        serde_json::from_str(r#"{ "ops": [ { "translate": { "pixels": 2, "fraction": 0.1 } } ] }"#)
            .unwrap();
    let issues = bad.validate();
    assert_eq!(issues.0[0].path, "ops[0].translate");
    assert!(
        serde_json::from_str::<AugmentConfig>(
            r#"{ "ops": [ { "rotate": { "degrees": 12, "pp": 1 } } ] }"#
        )
        .is_err()
    );
    assert!(
        serde_json::from_str::<AugmentConfig>(
            r#"{ "ops": [ { "rotate": { "degrees": 12, "p": 1.5 } } ] }"#
        )
        .is_err()
    );
}
