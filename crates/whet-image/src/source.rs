//! Where the images come from: the image part of the `data` section ([`ImagesConfig`], YAML
//! `data.images`, with one [`ImageSourceConfig`] per split: [`IdxFiles`] or a [`FolderSource`])
//! and [`load_train_test`], which reads train and test with the class filter applied.

use crate::builder::probability;
use crate::error::{Error, Result};
use crate::folder::{FolderLoad, FolderOptions, Grey, Skipped, load_folder};
use crate::idx::load_idx;
use crate::set::{ImageSet, NormalizeKind};
use crate::shards::{ParquetShards, ShardSource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use whet_core::spec::{Issues, Probability};

/// A pair of IDX files.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdxFiles {
    /// The images file (`*-images-idx3-ubyte[.gz]`).
    pub images: PathBuf,
    /// The labels file (`*-labels-idx1-ubyte[.gz]`).
    pub labels: PathBuf,
    /// Names of the labels `0, 1, …, k-1` (in the confusion matrix, the report, `metrics.json`
    /// and predictions), e.g. `[t-shirt, trouser, …]` for Fashion-MNIST; there must be a name
    /// for every label the file holds. Default: the label values as text (`"0"`, `"1"`, …).
    #[serde(default)]
    pub class_names: Option<Vec<String>>,
}

impl IdxFiles {
    /// The images file and its labels file.
    pub fn new(images: impl Into<PathBuf>, labels: impl Into<PathBuf>) -> Self {
        Self {
            images: images.into(),
            labels: labels.into(),
            class_names: None,
        }
    }

    /// Names the labels `0..k-1`.
    pub fn with_class_names(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.class_names = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Gives `set` (loaded from these files, with the `classes` filter) the configured names:
    /// label `l` of the file is named `class_names[l]`.
    fn name_classes(&self, set: &mut ImageSet, classes: Option<&[u32]>, key: &str) -> Result<()> {
        let Some(names) = &self.class_names else {
            return Ok(());
        };
        // Without a filter the loader names classes 0..=max label; with one, the kept labels.
        let wanted: Vec<u32> = match classes {
            Some(cl) => cl.to_vec(),
            None => (0..set.class_names().len() as u32).collect(),
        };
        let top = wanted.iter().copied().max().unwrap_or(0);
        if top as usize >= names.len() {
            let found = match classes {
                Some(_) => format!("`classes` keeps label {top}"),
                None => format!("`{}` holds labels up to {top}", self.labels.display()),
            };
            return Err(Error::Config(format!(
                "{key}.idx.class_names: {found}, but {} name(s) are given, for labels 0 to {}; give one name per label (0 to {top} at least)",
                names.len(),
                names.len().saturating_sub(1)
            )));
        }
        let all = match classes {
            Some(_) => wanted.iter().map(|&l| names[l as usize].clone()).collect(),
            None => names.clone(),
        };
        set.set_class_names(all)
    }
}

fn one_channel() -> usize {
    1
}

/// An image folder (one sub-folder per class).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FolderSource {
    /// The root folder.
    pub path: PathBuf,
    /// Width images are resized to (antialiased bilinear, the filter of PIL's
    /// `resize(size, BILINEAR)`, after the grey or RGB conversion).
    pub width: usize,
    /// Height images are resized to.
    pub height: usize,
    /// 1 (grey, default) or 3 (RGB).
    #[serde(default = "one_channel")]
    pub channels: usize,
    /// With `channels: 1`, how colour images become grey: `rec601` (default; the weights 0.299,
    /// 0.587 and 0.114 of R, G and B, the values of PIL's `convert("L")`) or `rec709` (0.2126,
    /// 0.7152 and 0.0722, what whet did before this option existed).
    #[serde(default)]
    pub grey: Option<Grey>,
    /// Skip undecodable files and report them instead of failing. Default false.
    #[serde(default)]
    pub skip_bad: bool,
}

impl FolderSource {
    /// The folder at `path`, images resized to `height × width`, grey (1 channel), failing on
    /// undecodable files.
    pub fn new(path: impl Into<PathBuf>, width: usize, height: usize) -> Self {
        Self {
            path: path.into(),
            width,
            height,
            channels: one_channel(),
            grey: None,
            skip_bad: false,
        }
    }

    /// Sets how colour images become grey (with 1 channel; checked by validation).
    pub fn with_grey(mut self, grey: Grey) -> Self {
        self.grey = Some(grey);
        self
    }

    /// The grey conversion in effect: the one given, else [`Grey::Rec601`].
    pub fn grey(&self) -> Grey {
        self.grey.unwrap_or_default()
    }

    /// Sets the channels: 1 (grey) or 3 (RGB), checked by validation.
    pub fn with_channels(mut self, channels: usize) -> Self {
        self.channels = channels;
        self
    }

    /// Sets whether undecodable files are skipped and reported instead of failing the load.
    pub fn with_skip_bad(mut self, skip_bad: bool) -> Self {
        self.skip_bad = skip_bad;
        self
    }
}

/// One image source: give exactly one of `idx`, `folder` and `shards`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSourceConfig {
    /// MNIST-style IDX files.
    #[serde(default)]
    pub idx: Option<IdxFiles>,
    /// An image folder.
    #[serde(default)]
    pub folder: Option<FolderSource>,
    /// Image shards: WebDataset tar files or Hugging Face-style Parquet files.
    #[serde(default)]
    pub shards: Option<Box<ShardSource>>,
    /// Keep only the first `limit` images (after the class filter). Default: all.
    #[serde(default)]
    pub limit: Option<usize>,
}

impl ImageSourceConfig {
    /// MNIST-style IDX files: `images` and its `labels`, all images.
    pub fn idx(images: impl Into<PathBuf>, labels: impl Into<PathBuf>) -> Self {
        Self {
            idx: Some(IdxFiles::new(images, labels)),
            folder: None,
            shards: None,
            limit: None,
        }
    }

    /// An image folder, all images.
    pub fn folder(folder: FolderSource) -> Self {
        Self {
            idx: None,
            folder: Some(folder),
            shards: None,
            limit: None,
        }
    }

    /// Image shards, all images.
    pub fn shards(shards: ShardSource) -> Self {
        Self {
            idx: None,
            folder: None,
            shards: Some(Box::new(shards)),
            limit: None,
        }
    }

    /// Keeps only the first `limit` images (after the class filter; at least 1, checked by
    /// validation).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

fn no_validation() -> Probability {
    Probability::new(0.0).expect("0 is a probability")
}

/// `data.images`: where the images come from and how they are prepared.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    /// The training images.
    pub train: ImageSourceConfig,
    /// The test images. Default: none.
    #[serde(default)]
    pub test: Option<ImageSourceConfig>,
    /// Keep only these classes (IDX: label values; folders: indices in the sorted sub-folder
    /// names), relabelled 0..k in this order; applied to train and test. Default: all.
    #[serde(default)]
    pub classes: Option<Vec<u32>>,
    /// Fraction of the training images held out for validation (seeded, stratified), in
    /// `[0, 1)`. Default 0.
    #[serde(default = "no_validation")]
    pub validation: Probability,
    /// `unit` (default) or `standardize`.
    #[serde(default)]
    pub normalize: NormalizeKind,
}

impl ImagesConfig {
    /// Training images from `train`; no test set, all classes, no validation split, `unit`
    /// normalisation.
    pub fn new(train: ImageSourceConfig) -> Self {
        Self {
            train,
            test: None,
            classes: None,
            validation: no_validation(),
            normalize: NormalizeKind::default(),
        }
    }

    /// Sets the test images.
    pub fn with_test(mut self, test: ImageSourceConfig) -> Self {
        self.test = Some(test);
        self
    }

    /// Keeps only these classes, relabelled `0..k` in this order.
    pub fn with_classes(mut self, classes: impl IntoIterator<Item = u32>) -> Self {
        self.classes = Some(classes.into_iter().collect());
        self
    }

    /// Sets the fraction of the training images held out for validation (below 1, checked by
    /// validation).
    ///
    /// # Panics
    /// When `fraction` is not in `[0, 1]`.
    #[track_caller]
    pub fn with_validation(mut self, fraction: f64) -> Self {
        self.validation = probability(fraction, "validation");
        self
    }

    /// Sets the normalisation.
    pub fn with_normalize(mut self, normalize: NormalizeKind) -> Self {
        self.normalize = normalize;
        self
    }
}

/// The checks of how a folder's or shards' images are decoded: `key` is `folder` or `shards`.
fn check_decoding(
    i: &mut Issues,
    key: &str,
    (width, height, channels): (usize, usize, usize),
    grey: Option<Grey>,
) {
    i.check(
        channels == 1 || channels == 3,
        format!("{key}.channels"),
        || format!("expected 1 or 3, found {channels}"),
    );
    i.check(grey.is_none() || channels == 1, format!("{key}.grey"), || {
        "`grey` says how colour becomes grey, so it needs `channels: 1` (found 3); remove it, or \
         set `channels: 1`"
            .into()
    });
    i.check(
        width > 0 && height > 0 && width.checked_mul(height).is_some_and(|p| p <= 1 << 26),
        key,
        || {
            format!(
                "image size {width}x{height} out of range: expected width and height >= 1 and \
                 width x height <= {} pixels",
                1u64 << 26
            )
        },
    );
}

impl ImageSourceConfig {
    fn validate(&self) -> Issues {
        let mut i = Issues::new();
        let given = [
            self.idx.is_some(),
            self.folder.is_some(),
            self.shards.is_some(),
        ];
        i.check(given.iter().filter(|g| **g).count() == 1, "", || {
            "give exactly one of `idx`, `folder` and `shards`".into()
        });
        if let Some(names) = self.idx.as_ref().and_then(|x| x.class_names.as_ref()) {
            i.check(
                !names.is_empty() && names.len() <= 256,
                "idx.class_names",
                || {
                    format!(
                        "expected 1 to 256 names (IDX labels are bytes), found {}",
                        names.len()
                    )
                },
            );
            let mut seen = std::collections::BTreeSet::new();
            for (k, n) in names.iter().enumerate() {
                i.check(
                    !n.trim().is_empty(),
                    format!("idx.class_names[{k}]"),
                    || "a class name must not be empty".into(),
                );
                i.check(seen.insert(n), format!("idx.class_names[{k}]"), || {
                    format!("`{n}` names two labels; give each label its own name")
                });
            }
        }
        if let Some(f) = &self.folder {
            check_decoding(&mut i, "folder", (f.width, f.height, f.channels), f.grey);
        }
        if let Some(f) = &self.shards {
            check_decoding(&mut i, "shards", (f.width, f.height, f.channels), f.grey);
            if let Some(names) = &f.class_names {
                let mut seen = std::collections::BTreeSet::new();
                for (k, n) in names.iter().enumerate() {
                    i.check(
                        !n.trim().is_empty() && seen.insert(n),
                        format!("shards.class_names[{k}]"),
                        || format!("`{n}`: class names must be non-empty and distinct"),
                    );
                }
            }
            i.check(f.shuffle_buffer != Some(0), "shards.shuffle_buffer", || {
                "expected a buffer of at least 1 image, found 0 (leave it out to shuffle the \
                 whole set)"
                    .into()
            });
        }
        i.check(self.limit != Some(0), "limit", || {
            "expected limit >= 1, found 0".into()
        });
        i
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Some(idx) = &mut self.idx {
            idx.images = base.join(&idx.images);
            idx.labels = base.join(&idx.labels);
        }
        if let Some(f) = &mut self.folder {
            f.path = base.join(&f.path);
        }
        if let Some(f) = &mut self.shards {
            f.path = base.join(&f.path);
        }
    }

    /// Loads this source; `key` is its YAML key (`data.images.train`), named in errors;
    /// `parquet` reads Parquet shards.
    ///
    /// # Errors
    /// As [`load_idx`], [`load_folder`] and [`ShardSource::load`]; [`Error::Config`] when
    /// `idx.class_names` has no name for a label the file holds.
    pub fn load(
        &self,
        classes: Option<&[u32]>,
        key: &str,
        parquet: &dyn ParquetShards,
    ) -> Result<FolderLoad> {
        match (&self.idx, &self.folder, &self.shards) {
            (None, None, Some(s)) => s.load(classes, self.limit, key, parquet),
            (Some(idx), None, None) => {
                let mut set = load_idx(&idx.images, &idx.labels, self.limit, classes)?;
                idx.name_classes(&mut set, classes, key)?;
                Ok(FolderLoad {
                    set,
                    skipped: Vec::new(),
                    empty_classes: Vec::new(),
                })
            }
            (None, Some(f), None) => {
                let r = load_folder(
                    &f.path,
                    &FolderOptions {
                        width: f.width,
                        height: f.height,
                        channels: f.channels,
                        grey: f.grey(),
                        skip_bad: f.skip_bad,
                        classes: classes.map(|c| c.to_vec()),
                        limit: self.limit,
                    },
                )?;
                Ok(r)
            }
            _ => Err(Error::Config(format!(
                "{key}: give exactly one of `idx`, `folder` and `shards`"
            ))),
        }
    }
}

impl ImagesConfig {
    /// Cross-field checks (paths relative to `data.images`).
    pub fn validate(&self) -> Issues {
        let mut i = Issues::new();
        i.nest("train", self.train.validate());
        if let Some(t) = &self.test {
            i.nest("test", t.validate());
            i.check(
                t.shards.as_ref().is_none_or(|s| s.shuffle_buffer.is_none()),
                "test.shards.shuffle_buffer",
                || {
                    "test images are not shuffled; give `shuffle_buffer` to the training shards"
                        .into()
                },
            );
        }
        i.check(self.validation.get() < 1.0, "validation", || {
            format!("expected a fraction in [0, 1), found {}", self.validation)
        });
        // Without a test set the run reports validation metrics; without either, nothing
        // would measure the trained network.
        i.check(
            self.test.is_some() || self.validation.get() > 0.0,
            "test",
            || {
                "there is no test set and no validation split, so nothing would measure the \
                 trained network: add `data.images.test` (images to evaluate on) or set \
                 `data.images.validation` (e.g. 0.1; the run then reports validation metrics)"
                    .into()
            },
        );
        if let Some(c) = &self.classes {
            i.check(!c.is_empty(), "classes", || {
                "expected at least one class".into()
            });
        }
        i
    }

    /// Makes relative paths relative to `base` (the YAML file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        self.train.resolve_paths(base);
        if let Some(t) = &mut self.test {
            t.resolve_paths(base);
        }
    }
}

/// Train, test (empty when not configured) and the files skipped with `skip_bad` (so the
/// caller can report them). The validation split and the normaliser are the caller's
/// ([`ImageSet::split_stratified`], [`Normalizer::fit`](crate::Normalizer::fit)). `parquet`
/// reads Parquet shards ([`crate::NoParquet`] refuses them).
///
/// # Errors
/// Loader errors ([`load_idx`], [`load_folder`], [`ShardSource::load`]); [`Error::Shape`] when
/// train and test images differ in shape or test has more classes than train.
pub fn load_train_test(cfg: &ImagesConfig, parquet: &dyn ParquetShards) -> Result<TrainTest> {
    let classes = cfg.classes.as_deref();
    let FolderLoad {
        set: all_train,
        mut skipped,
        empty_classes,
    } = cfg.train.load(classes, "data.images.train", parquet)?;
    let (test, sk) = load_test(cfg, all_train.shape(), all_train.class_names(), parquet)?;
    skipped.extend(sk);
    Ok(TrainTest {
        train: all_train,
        test,
        skipped,
        empty_train_classes: empty_classes,
    })
}

/// Loads `cfg.test` (an empty set of `shape` without one) for training images of `shape`
/// named `names`: the test images take the training class names. Returns the set and the files
/// skipped with `skip_bad`.
///
/// # Errors
/// Loader errors; [`Error::Shape`] when the test images differ in shape or have more classes
/// than the training images.
pub fn load_test(
    cfg: &ImagesConfig,
    shape: (usize, usize, usize),
    names: &[String],
    parquet: &dyn ParquetShards,
) -> Result<(ImageSet, Vec<Skipped>)> {
    let Some(t) = &cfg.test else {
        let (h, w, c) = shape;
        return Ok((
            ImageSet::new(h, w, c, Vec::new(), Vec::new(), names.to_vec())?,
            Vec::new(),
        ));
    };
    let FolderLoad {
        set: mut s,
        skipped,
        ..
    } = t.load(cfg.classes.as_deref(), "data.images.test", parquet)?;
    if s.shape() != shape {
        return Err(Error::Shape {
            op: "load_images",
            message: format!(
                "test images are {}x{}x{}, train images {}x{}x{}",
                s.h(),
                s.w(),
                s.c(),
                shape.0,
                shape.1,
                shape.2
            ),
        });
    }
    // IDX class names come from the largest label seen; align test with train.
    if s.class_names().len() > names.len() {
        return Err(Error::Shape {
            op: "load_images",
            message: format!(
                "test has {} classes, train only {}",
                s.class_names().len(),
                names.len()
            ),
        });
    }
    s.set_class_names(names.to_vec())?;
    Ok((s, skipped))
}

/// What [`load_train_test`] read.
#[derive(Debug, Clone)]
pub struct TrainTest {
    /// The training images.
    pub train: ImageSet,
    /// The test images (empty when the config has none).
    pub test: ImageSet,
    /// Files skipped with `skip_bad`, in train and test.
    pub skipped: Vec<Skipped>,
    /// Training class folders with no image (kept as classes; see
    /// [`FolderLoad::empty_classes`]).
    pub empty_train_classes: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::assert_same_as_json;

    #[test]
    fn builders_match_serde_defaults() {
        let idx = r#"{"idx": {"images": "i.gz", "labels": "l.gz"}}"#;
        assert_same_as_json(
            &IdxFiles::new("i.gz", "l.gz"),
            r#"{"images": "i.gz", "labels": "l.gz"}"#,
        );
        assert_same_as_json(&ImageSourceConfig::idx("i.gz", "l.gz"), idx);
        assert_same_as_json(
            &ImageSourceConfig::idx("i.gz", "l.gz").with_limit(2000),
            r#"{"idx": {"images": "i.gz", "labels": "l.gz"}, "limit": 2000}"#,
        );
        assert_same_as_json(
            &FolderSource::new("pets", 32, 24),
            r#"{"path": "pets", "width": 32, "height": 24}"#,
        );
        assert_same_as_json(
            &FolderSource::new("pets", 32, 24).with_grey(Grey::Rec709),
            r#"{"path": "pets", "width": 32, "height": 24, "grey": "rec709"}"#,
        );
        let folder = FolderSource::new("pets", 32, 24)
            .with_channels(3)
            .with_skip_bad(true);
        assert_same_as_json(
            &ImageSourceConfig::folder(folder),
            r#"{"folder": {"path": "pets", "width": 32, "height": 24, "channels": 3,
                "skip_bad": true}}"#,
        );
        let train = ImageSourceConfig::idx("i.gz", "l.gz");
        assert_same_as_json(
            &ImagesConfig::new(train.clone()),
            &format!(r#"{{"train": {idx}}}"#),
        );
        assert_same_as_json(
            &ImagesConfig::new(train.clone())
                .with_test(train)
                .with_classes([3, 8])
                .with_validation(0.1)
                .with_normalize(NormalizeKind::Standardize),
            &format!(
                r#"{{"train": {idx}, "test": {idx}, "classes": [3, 8], "validation": 0.1,
                    "normalize": "standardize"}}"#
            ),
        );
    }

    #[test]
    fn grey_needs_one_channel() {
        let src = |f: FolderSource| {
            let issues = ImageSourceConfig::folder(f).validate();
            issues
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let e = src(FolderSource::new("p", 4, 4)
            .with_channels(3)
            .with_grey(Grey::Rec601));
        assert!(
            e.contains("folder.grey") && e.contains("channels: 1"),
            "{e}"
        );
        assert!(src(FolderSource::new("p", 4, 4).with_grey(Grey::Rec709)).is_empty());
        assert_eq!(FolderSource::new("p", 4, 4).grey(), Grey::Rec601);
    }
}
