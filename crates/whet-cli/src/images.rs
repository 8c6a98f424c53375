//! Image data for a run: load (cached decode), split, normalise, augment (offline through the
//! stage cache, online through [`AugmentSource`]), and the image side of `export` and `preview`.

use crate::ExportFormat;
use crate::cache::{Bundle, Cache, KeyBuilder};
use crate::config::RunFile;
use crate::data::PreparedData;
use anyhow::{Context, Result, anyhow, bail};
use ndarray::{Array2, ArrayViewMut2};
use serde_json::json;
use std::path::Path;
use whet_core::Progress;
use whet_image::{AugmentMode, Augmenter, ImageSet, Normalizer};
use whet_train::{ArraySource, BatchSource, SourceError};

/// The training set with online augmentation: every epoch draws fresh random ops per sample,
/// from streams derived from (seed, epoch, sample, op), in parallel.
pub struct AugmentSource {
    set: ImageSet,
    augmenter: Augmenter,
    norm: Normalizer,
    classes: usize,
    labels: Vec<u32>,
    dim: usize,
}

impl BatchSource for AugmentSource {
    fn len(&self) -> usize {
        self.set.len()
    }
    fn input_dim(&self) -> usize {
        self.dim
    }
    fn target_dim(&self) -> usize {
        self.classes
    }
    fn fill(
        &mut self,
        epoch: usize,
        indices: &[usize],
        mut x: ArrayViewMut2<f32>,
        mut y: ArrayViewMut2<f32>,
    ) -> Result<(), SourceError> {
        self.labels.resize(indices.len(), 0);
        let xs = x
            .as_slice_mut()
            .ok_or_else(|| SourceError::msg("the trainer's batch buffer is not contiguous"))?;
        self.augmenter
            .fill(
                &self.set,
                &self.norm,
                epoch as u64,
                indices,
                xs,
                &mut self.labels,
            )
            .map_err(SourceError::new)?;
        y.fill(0.0);
        for (r, &l) in self.labels.iter().enumerate() {
            y[[r, l as usize]] = 1.0;
        }
        Ok(())
    }
}

fn to_arrays(set: &ImageSet, norm: &Normalizer, classes: usize) -> Result<ArraySource> {
    let dim = set.image_len();
    let mut x = Array2::<f32>::zeros((set.len(), dim));
    for (i, mut row) in x.rows_mut().into_iter().enumerate() {
        norm.apply(set.image(i), row.as_slice_mut().expect("standard layout"));
    }
    let labels: Vec<usize> = set.labels.iter().map(|&l| l as usize).collect();
    let y = ArraySource::one_hot(&labels, classes)?;
    Ok(ArraySource::new(x, y)?)
}

fn set_to_bundle(set: &ImageSet) -> Bundle {
    let mut b = Bundle {
        meta: json!({"h": set.h, "w": set.w, "c": set.c, "classes": set.class_names}),
        blobs: vec![],
    };
    b.blobs.push(("pixels".into(), set.pixels.clone()));
    b.push_u32("labels", &set.labels);
    b
}

fn bundle_to_set(b: &Bundle) -> Result<ImageSet> {
    let g = |k: &str| {
        b.meta[k]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| anyhow!("cache entry lacks `{k}`"))
    };
    let classes: Vec<String> = serde_json::from_value(b.meta["classes"].clone())?;
    let pixels = b
        .blob("pixels")
        .ok_or_else(|| anyhow!("cache entry lacks pixels"))?
        .to_vec();
    let labels = b
        .u32("labels")
        .ok_or_else(|| anyhow!("cache entry lacks labels"))?;
    Ok(ImageSet::new(
        g("h")?,
        g("w")?,
        g("c")?,
        pixels,
        labels,
        classes,
    )?)
}

/// Loads train and test sets as the run file says.
///
/// # Errors
/// Missing, corrupt or inconsistent files, naming the file.
pub fn load_sets(run: &RunFile, progress: &dyn Progress) -> Result<(ImageSet, ImageSet)> {
    let cfg = run
        .data
        .images
        .as_ref()
        .ok_or_else(|| anyhow!("the run file has no `data.images`"))?;
    progress.begin("loading images", None);
    let (train, test, skipped) =
        whet_image::data::load_train_test(cfg).context("loading the images")?;
    progress.end();
    for s in &skipped {
        eprintln!(
            "warning: skipped `{}` (skip_bad): {}",
            s.path.display(),
            s.reason
        );
    }
    Ok((train, test))
}

/// Train / validation / test sets after the validation split (seeded, stratified).
fn split_sets(
    run: &RunFile,
    seed: u64,
    progress: &dyn Progress,
) -> Result<(ImageSet, Option<ImageSet>, ImageSet)> {
    let cfg = run
        .data
        .images
        .as_ref()
        .ok_or_else(|| anyhow!("the run file has no `data.images`"))?;
    let (train, test) = load_sets(run, progress)?;
    let frac = cfg.validation.get();
    if frac > 0.0 {
        let (train, valid) = train
            .split_stratified(frac, seed)
            .context("splitting off the validation set")?;
        Ok((train, Some(valid), test))
    } else {
        Ok((train, None, test))
    }
}

/// Prepares image data for training.
///
/// # Errors
/// Bad data or an augmentation that does not fit the images.
pub fn prepare(
    run: &RunFile,
    seed: u64,
    cache: &Cache,
    progress: &dyn Progress,
) -> Result<PreparedData> {
    let cfg = run
        .data
        .images
        .as_ref()
        .ok_or_else(|| anyhow!("the run file has no `data.images`"))?;
    let (train, valid, test) = split_sets(run, seed, progress)?;
    if train.is_empty() {
        bail!("the training set is empty (check `limit`, `classes` and `validation`)");
    }
    let classes = train.class_names.len();
    let norm = Normalizer::fit(cfg.normalize, &train);
    let mut cache_hits = Vec::new();
    let augment = run.augment.as_ref().filter(|a| !a.ops.is_empty());
    let (train_source, train_len): (Box<dyn BatchSource>, usize) = match augment {
        None => {
            let a = to_arrays(&train, &norm, classes)?;
            let n = a.x.nrows();
            (Box::new(a), n)
        }
        Some(a) if a.mode == AugmentMode::Offline => {
            let key = KeyBuilder::new()
                .json("images", cfg)?
                .json("augment", a)?
                .part("seed", &seed.to_string())
                .finish();
            let augmenter = Augmenter::new(a, seed, train.h, train.w, train.c)?;
            progress.begin(&format!("augmenting offline ({} copies)", a.copies), None);
            let (b, hit) = cache.get_or_compute("offline", &key, || {
                Ok(set_to_bundle(&augmenter.expand(&train, a.copies)?))
            })?;
            progress.end();
            if hit {
                cache_hits.push("offline augmentation".to_string());
            }
            let expanded = bundle_to_set(&b)?;
            let arrays = to_arrays(&expanded, &norm, classes)?;
            let n = arrays.x.nrows();
            (Box::new(arrays), n)
        }
        Some(a) => {
            let augmenter = Augmenter::new(a, seed, train.h, train.w, train.c)?;
            let (h, w, c) = augmenter.output_shape();
            if (h, w, c) != (train.h, train.w, train.c) {
                bail!(
                    "the augmentation changes the image size from {}x{}x{} to {h}x{w}x{c}; validation and test images are not augmented, so add a resize/crop that keeps {}x{}",
                    train.h,
                    train.w,
                    train.c,
                    train.h,
                    train.w
                );
            }
            let n = train.len();
            (
                Box::new(AugmentSource {
                    dim: h * w * c,
                    set: train.clone(),
                    augmenter,
                    norm: norm.clone(),
                    classes,
                    labels: Vec::new(),
                }),
                n,
            )
        }
    };
    let valid = valid.map(|v| to_arrays(&v, &norm, classes)).transpose()?;
    let test_arrays = to_arrays(&test, &norm, classes)?;
    let summary = json!({
        "kind": "images",
        "shape": [train.h, train.w, train.c],
        "classes": train.class_names,
        "rows": {"train": train.len(), "train_after_augmentation": train_len,
                 "validation": valid.as_ref().map_or(0, |v| v.x.nrows()), "test": test.len()},
        "class_counts_train": train.class_counts(),
    });
    Ok(PreparedData {
        train: train_source,
        valid,
        test: test_arrays,
        classes: train.class_names.clone(),
        manifest: json!({"normalize": cfg.normalize, "normalizer": norm, "augment": run.augment}),
        summary,
        cache_hits,
    })
}

/// `whet export` for images: the training set (augmented offline when the run file says so),
/// validation and test, as PNG folders, IDX or NPY, with `manifest.json`, into `out`. Returns
/// the train / validation / test sizes.
///
/// # Errors
/// Bad input or write errors.
pub fn export(
    run: &RunFile,
    out: &Path,
    format: Option<ExportFormat>,
    progress: &dyn Progress,
) -> Result<(usize, usize, usize)> {
    let cfg = run
        .data
        .images
        .as_ref()
        .ok_or_else(|| anyhow!("the run file has no `data.images`"))?;
    let (mut train, valid, test) = split_sets(run, run.seed, progress)?;
    if let Some(a) = run.augment.as_ref().filter(|a| !a.ops.is_empty()) {
        let copies = if a.mode == AugmentMode::Offline {
            a.copies
        } else {
            1
        };
        let augmenter = Augmenter::new(a, run.seed, train.h, train.w, train.c)?;
        train = augmenter.expand(&train, copies)?;
    }
    let format = format.unwrap_or(ExportFormat::Png);
    let mut files = Vec::new();
    let norm = Normalizer::fit(cfg.normalize, &train);
    for (name, set) in [
        ("train", Some(&train)),
        ("validation", valid.as_ref()),
        ("test", Some(&test)),
    ] {
        let Some(set) = set else { continue };
        match format {
            ExportFormat::Png => {
                whet_image::write_png_folders(set, &out.join(name))?;
                files.push(format!("{name}/"));
            }
            ExportFormat::Idx => {
                let (i, l) = (
                    format!("{name}-images-idx3-ubyte.gz"),
                    format!("{name}-labels-idx1-ubyte.gz"),
                );
                whet_image::write_idx(set, &out.join(&i), &out.join(&l))?;
                files.extend([i, l]);
            }
            ExportFormat::Npy => {
                let a = to_arrays(set, &norm, set.class_names.len())?;
                let x = format!("{name}_x.npy");
                let y = format!("{name}_y.npy");
                whet_core::fsx::atomic_write(
                    &out.join(&x),
                    &whet_tabular::export::npy_bytes(&a.x),
                )?;
                let labels = Array2::from_shape_vec(
                    (set.len(), 1),
                    set.labels.iter().map(|&l| l as f32).collect(),
                )?;
                whet_core::fsx::atomic_write(
                    &out.join(&y),
                    &whet_tabular::export::npy_bytes(&labels),
                )?;
                files.extend([x, y]);
            }
            ExportFormat::Parquet | ExportFormat::Csv => {
                bail!("--format {format:?}: images export as png, idx or npy")
            }
        }
    }
    let manifest = json!({
        "format": "whet-images/1",
        "seed": run.seed,
        "data": cfg,
        "augment": run.augment,
        "normalizer": norm,
        "rows": {"train": train.len(), "validation": valid.as_ref().map_or(0, ImageSet::len), "test": test.len()},
        "shape": [train.h, train.w, train.c],
        "classes": train.class_names,
        "files": files,
    });
    whet_core::fsx::atomic_write(
        &out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    Ok((
        train.len(),
        valid.as_ref().map_or(0, ImageSet::len),
        test.len(),
    ))
}

/// `whet preview`: `samples` training images, each with `versions` augmented versions.
///
/// # Errors
/// Bad input or the PNG cannot be written.
pub fn preview(run: &RunFile, out: &Path, samples: usize, versions: usize) -> Result<()> {
    let (train, _) = load_sets(run, &whet_core::NoProgress)?;
    let a = run.augment.clone().unwrap_or_default();
    let augmenter = Augmenter::new(&a, run.seed, train.h, train.w, train.c)?;
    whet_image::write_preview(&train, &augmenter, samples, versions, out)?;
    Ok(())
}
