//! From a run's data section to what the trainer and the exporters take: images loaded, split,
//! normalised and augmented (offline through the stage cache, online through
//! [`whet_image::AugmentSource`]), or tables loaded, joined, split and fitted on the training split.
//!
//! [`Run::prepare`] is the one place this happens: `whet run`, `whet export` and every ablation
//! cell use it, so what is exported is what the model was trained and evaluated on.

use crate::cache::{Bundle, Cache, KeyBuilder};
use crate::error::{Error, Result, ResultExt};
use crate::runfile::{Run, RunData};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use whet_core::Progress;
use whet_core::order::{Blocks, InBlocks};
use whet_image::{
    AugmentConfig, AugmentMode, AugmentSource, Augmenter, ImageSet, Normalizer, ShardSet,
    ShardStream, Skipped,
};
use whet_train::{ArraySource, BatchSource};

/// A run's data, prepared with one seed.
#[derive(Debug)]
pub struct Prepared {
    /// The data, by kind.
    pub data: PreparedData,
    /// Stages served from the stage cache (`tables`, `offline augmentation`).
    pub cache_hits: Vec<String>,
    /// Image files skipped by a folder loader with `skip_bad` (reported, not silently lost).
    pub skipped: Vec<Skipped>,
    /// What the user should know about the data that did not stop the run (a file skipped, a
    /// class folder without images, duplicate column names, a numeric column read as text),
    /// each naming the file and the column or cell. [`Run::prepare`] gives each to
    /// [`Progress::warn`]; runs and exports record them in the manifest.
    pub warnings: Vec<String>,
}

/// Prepared data, by kind.
// One value per run, moved a handful of times: boxing a variant would only add a `*` at each use.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum PreparedData {
    /// Images.
    Images(PreparedImages),
    /// Tables: arrays per split, feature and class names, reports and the fitted manifest.
    Tables(whet_tabular::Prepared),
}

/// The training images of a run: in memory, or left in their shards and streamed.
#[derive(Debug)]
pub enum TrainImages {
    /// In memory.
    Memory {
        /// The training images the model is fed: the originals, followed by the augmented
        /// copies in offline mode.
        set: ImageSet,
        /// The shard-local order of a shard source with a `shuffle_buffer` (the order the
        /// streaming reader of the same shards visits): the training images of each shard.
        blocks: Option<Blocks>,
    },
    /// Left in the shards, because they do not fit in the memory budget: read a few decoded
    /// shards at a time ([`whet_image::ShardStream`]).
    Streamed {
        /// Where the training images are.
        set: ShardSet,
        /// The shuffle buffer, in images.
        buffer: usize,
    },
}

impl TrainImages {
    /// Height, width, channels.
    pub fn shape(&self) -> (usize, usize, usize) {
        match self {
            TrainImages::Memory { set, .. } => set.shape(),
            TrainImages::Streamed { set, .. } => set.shape(),
        }
    }

    /// Class names, by label.
    pub fn class_names(&self) -> &[String] {
        match self {
            TrainImages::Memory { set, .. } => set.class_names(),
            TrainImages::Streamed { set, .. } => set.class_names(),
        }
    }

    /// The number of images the model is fed per epoch.
    pub fn len(&self) -> usize {
        match self {
            TrainImages::Memory { set, .. } => set.len(),
            TrainImages::Streamed { set, .. } => set.len(),
        }
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The images, when they are in memory.
    pub fn in_memory(&self) -> Option<&ImageSet> {
        match self {
            TrainImages::Memory { set, .. } => Some(set),
            TrainImages::Streamed { .. } => None,
        }
    }
}

/// Prepared images: the splits, the normaliser fitted on the training originals, and the online
/// augmenter when there is one.
#[derive(Debug)]
pub struct PreparedImages {
    /// The training images the model is fed.
    pub train: TrainImages,
    /// Training originals (before offline copies), for the summary.
    pub train_originals: usize,
    /// Class counts of the training originals.
    pub class_counts_train: Vec<usize>,
    /// The validation split, if `validation` > 0.
    pub validation: Option<ImageSet>,
    /// The test set (empty when the run file has none).
    pub test: ImageSet,
    /// Fitted on the training originals (never on validation or test; on the offline copies
    /// only with `augment.fit_normalizer_on_copies`).
    pub normalizer: Normalizer,
    /// The augmentation of the run file, if any.
    pub augment: Option<AugmentConfig>,
    /// The online augmenter, when `augment.mode` is `online`.
    pub online: Option<Augmenter>,
}

/// What the trainer takes: a batch source for training, arrays for validation and test.
pub struct TrainingData {
    /// Training batches (augmenting, with online augmentation).
    pub train: Box<dyn BatchSource>,
    /// The validation set, if any.
    pub validation: Option<Box<dyn BatchSource>>,
    /// The test set; `None` when the run file has none (no `data.images.test`, or
    /// `split.test: 0`): the run then reports validation metrics.
    pub test: Option<Box<dyn BatchSource>>,
    /// Images: `[height, width, channels]` of every row (channels last), which convolutions
    /// need; `None` for tables.
    pub shape: Option<[usize; 3]>,
}

/// Sizes of the data a run used, by kind (in `manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSummary {
    /// Images.
    Images {
        /// Height, width, channels.
        shape: [usize; 3],
        /// Class names.
        classes: Vec<String>,
        /// Images per split.
        rows: ImageRows,
        /// Training originals per class.
        class_counts_train: Vec<usize>,
        /// How the training images were streamed from their shards, when they did not fit in
        /// memory (absent when they were held in memory).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        streamed: Option<Streamed>,
    },
    /// Tables.
    Tables {
        /// Rows per split.
        rows: whet_tabular::SplitRows,
        /// Feature names, in column order.
        features: Vec<String>,
        /// What each stage did (loads, joins, audits, steps).
        report: Box<whet_tabular::PrepareReport>,
    },
}

/// How a run streamed its training images from shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streamed {
    /// The shard files.
    pub shards: usize,
    /// The shuffle buffer, in images.
    pub shuffle_buffer: usize,
    /// The most decoded shards held at once.
    pub resident: usize,
    /// The bytes of the largest decoded shard.
    pub largest_shard_bytes: u64,
}

/// Images per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRows {
    /// Training originals.
    pub train: usize,
    /// Training images after offline augmentation (= `train` otherwise).
    pub train_after_augmentation: usize,
    /// Validation images.
    pub validation: usize,
    /// Test images.
    pub test: usize,
}

/// The grey conversion of runs whose manifest predates `grey`: the `image` crate's (Rec.709).
fn grey_before_the_option() -> whet_image::Grey {
    whet_image::Grey::Rec709
}

/// The fitted preprocessing of a run, by kind: what new data must go through (in
/// `manifest.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preprocessing {
    /// Images: the fitted normaliser (and the augmentation, applied to training data only).
    Images {
        /// The normalisation kind of the run file.
        normalize: whet_image::NormalizeKind,
        /// Its parameters, fitted on the training originals.
        normalizer: Normalizer,
        /// The training augmentation.
        augment: Option<AugmentConfig>,
        /// How colour images become grey for a 1-channel network (`data.images.train.folder.grey`;
        /// `rec601` for IDX runs, whose images are grey already); image files given to `predict`
        /// and `evaluate` are converted the same way. Manifests written before the option read
        /// as `rec709`, what those runs did.
        #[serde(default = "grey_before_the_option")]
        grey: whet_image::Grey,
    },
    /// Tables: the steps before the split and every fitted step with its parameters.
    Tables(Box<whet_tabular::Manifest>),
}

impl Prepared {
    /// Class names (empty for regression).
    pub fn classes(&self) -> &[String] {
        match &self.data {
            PreparedData::Images(p) => p.train.class_names(),
            PreparedData::Tables(p) => &p.classes,
        }
    }

    /// The standardisation of a regression target, fitted on the training split (tables with
    /// `{ regression: c }`, unless `scale: false`): [`Prepared::into_training`] gives the trainer
    /// standardised targets, and a [`whet_train::Readout`] with this scale turns the network's
    /// outputs back into the target's units.
    pub fn target_scale(&self) -> Option<whet_core::TargetScale> {
        match &self.data {
            PreparedData::Images(_) => None,
            PreparedData::Tables(p) => p.manifest.target_scale,
        }
    }

    /// Samples per class in the training split (what `train.class_weights: balanced` is
    /// computed from): the training originals for images (offline copies keep the class
    /// shares), the target rows for tables (binary: negatives, then positives). Empty for
    /// regression.
    pub fn train_class_counts(&self) -> Vec<u64> {
        match &self.data {
            PreparedData::Images(p) => p.class_counts_train.iter().map(|&c| c as u64).collect(),
            PreparedData::Tables(p) if p.classes.is_empty() => Vec::new(),
            PreparedData::Tables(p) => {
                let y = p.train.y();
                if y.ncols() == 1 {
                    let pos = y.iter().filter(|v| **v > 0.5).count() as u64;
                    vec![y.nrows() as u64 - pos, pos]
                } else {
                    let mut counts = vec![0u64; y.ncols()];
                    for row in y.rows() {
                        if let Some((i, _)) = row.iter().enumerate().find(|(_, v)| **v > 0.5) {
                            counts[i] += 1;
                        }
                    }
                    counts
                }
            }
        }
    }

    /// The sizes for the manifest.
    pub fn summary(&self) -> DataSummary {
        match &self.data {
            PreparedData::Images(p) => DataSummary::Images {
                shape: {
                    let (h, w, c) = p.train.shape();
                    [h, w, c]
                },
                classes: p.train.class_names().to_vec(),
                rows: ImageRows {
                    train: p.train_originals,
                    train_after_augmentation: p.train.len(),
                    validation: p.validation.as_ref().map_or(0, ImageSet::len),
                    test: p.test.len(),
                },
                class_counts_train: p.class_counts_train.clone(),
                streamed: match &p.train {
                    TrainImages::Streamed { set, buffer } => Some(Streamed {
                        shards: set.files().len(),
                        shuffle_buffer: *buffer,
                        resident: set.resident_shards(*buffer),
                        largest_shard_bytes: set.largest_block_bytes(),
                    }),
                    TrainImages::Memory { .. } => None,
                },
            },
            PreparedData::Tables(p) => DataSummary::Tables {
                rows: p.report.rows,
                features: p.features.clone(),
                report: Box::new(p.report.clone()),
            },
        }
    }

    /// The fitted preprocessing for the manifest.
    pub fn preprocessing(&self, run: &Run) -> Preprocessing {
        match (&self.data, run.data()) {
            (PreparedData::Images(p), RunData::Images { images, .. }) => Preprocessing::Images {
                normalize: images.normalize,
                normalizer: p.normalizer.clone(),
                augment: p.augment.clone(),
                grey: match (&images.train.folder, &images.train.shards) {
                    (Some(f), _) => f.grey(),
                    (None, Some(s)) => s.grey.unwrap_or_default(),
                    (None, None) => whet_image::Grey::default(),
                },
            },
            (PreparedData::Tables(p), _) => Preprocessing::Tables(Box::new(p.manifest.clone())),
            (PreparedData::Images(p), _) => Preprocessing::Images {
                normalize: whet_image::NormalizeKind::default(),
                normalizer: p.normalizer.clone(),
                augment: p.augment.clone(),
                grey: whet_image::Grey::default(),
            },
        }
    }

    /// The batch source and arrays the trainer takes (consumes the prepared data: table arrays
    /// are moved, not copied; a scaled regression target is standardised in place).
    ///
    /// # Errors
    /// [`Error::Data`] for an empty training split, or an empty test split that the run file
    /// asked for (`split.test` above 0).
    pub fn into_training(self) -> Result<TrainingData> {
        match self.data {
            PreparedData::Images(p) => {
                let classes = p.train.class_names().len();
                let validation = p
                    .validation
                    .as_ref()
                    .map(|v| image_arrays(v, &p.normalizer, classes))
                    .transpose()?;
                // Validation makes sure a run without test images has a validation split.
                let test = (!p.test.is_empty())
                    .then(|| image_arrays(&p.test, &p.normalizer, classes))
                    .transpose()?;
                if test.is_none() && validation.as_ref().is_none_or(|v| v.x().nrows() == 0) {
                    return Err(Error::Data(
                        "there are no test images and the validation split is empty, so nothing would measure the trained network; raise `data.images.validation` or add `data.images.test`".into(),
                    ));
                }
                let (h, w, c) = p.train.shape();
                let shape = Some([h, w, c]);
                let train: Box<dyn BatchSource> = match (p.train, p.online) {
                    (TrainImages::Streamed { set, buffer }, online) => Box::new(ShardStream::new(
                        set,
                        buffer,
                        std::sync::Arc::new(crate::PolarsShards),
                        p.normalizer,
                        online,
                        classes,
                    )?),
                    (TrainImages::Memory { set, blocks }, Some(augmenter)) => in_blocks(
                        AugmentSource::new(set, augmenter, p.normalizer, classes),
                        blocks,
                    )?,
                    (TrainImages::Memory { set, blocks }, None) => {
                        in_blocks(image_arrays(&set, &p.normalizer, classes)?, blocks)?
                    }
                };
                Ok(TrainingData {
                    train,
                    validation: validation.map(|v| Box::new(v) as Box<dyn BatchSource>),
                    test: test.map(|t| Box::new(t) as Box<dyn BatchSource>),
                    shape,
                })
            }
            PreparedData::Tables(p) => {
                // The trainer sees the standardised target (see `Prepared::target_scale`).
                let scale = p.manifest.target_scale;
                let scaled = |y| scale_targets(y, scale);
                if p.train.is_empty() {
                    return Err(Error::Data(
                        "the training split is empty after preprocessing; check the split fractions and the steps that drop rows".into(),
                    ));
                }
                // Set, the buffer orders the rows as their shards on disk would be read.
                let buffer = p.manifest.data.shuffle_buffer;
                let train: Box<dyn BatchSource> = match p.train {
                    whet_tabular::Rows::Memory(a) => {
                        let rows = a.x.nrows();
                        in_blocks(
                            ArraySource::new(a.x, scaled(a.y))?,
                            buffer.map(|b| whet_tabular::memory_blocks(rows, b)),
                        )?
                    }
                    whet_tabular::Rows::Shards { shards, .. } => {
                        Box::new(whet_tabular::RowStream::new(
                            shards,
                            buffer.unwrap_or(whet_tabular::DEFAULT_SHUFFLE_ROWS),
                            scale,
                        )?)
                    }
                };
                let wants_test = p.manifest.split.test.get() > 0.0;
                if wants_test && p.test.is_empty() {
                    return Err(Error::Data(
                        "the test split is empty; raise `split.test`".into(),
                    ));
                }
                if !wants_test && p.validation.is_empty() {
                    return Err(Error::Data(
                        "`split.test` is 0 and the validation split is empty, so nothing would measure the trained network; raise `split.validation` or set `split.test`".into(),
                    ));
                }
                // Evaluated in order: rows on disk are read a shard at a time.
                let eval = |rows: whet_tabular::Rows| -> Result<Box<dyn BatchSource>> {
                    Ok(match rows {
                        whet_tabular::Rows::Memory(a) => {
                            Box::new(ArraySource::new(a.x, scaled(a.y))?)
                        }
                        whet_tabular::Rows::Shards { shards, .. } => {
                            Box::new(whet_tabular::RowStream::in_order(shards, scale)?)
                        }
                    })
                };
                Ok(TrainingData {
                    train,
                    validation: (!p.validation.is_empty())
                        .then(|| eval(p.validation))
                        .transpose()?,
                    test: wants_test.then(|| eval(p.test)).transpose()?,
                    shape: None,
                })
            }
        }
    }
}

impl Run {
    /// Prepares the run's data with `seed`: loads, splits, fits the preprocessing on the
    /// training split, and augments offline (through `cache`) when the run file says so.
    ///
    /// A table run whose split is `method: kfold` is prepared one fold at a time
    /// ([`Run::prepare_fold`]); this refuses it.
    ///
    /// # Errors
    /// Bad or missing data, naming the file and place; a k-fold run.
    pub fn prepare(&self, seed: u64, cache: &Cache, progress: &dyn Progress) -> Result<Prepared> {
        if let Some((k, _)) = self.folds() {
            return Err(self.located(
                "split.method",
                format!(
                    "this run's split is k-fold: it is prepared one fold at a time ({k} folds), \
                     each with its own training rows, so there is no single prepared data set \
                     (`whet run` and `whet ablate` train every fold); for one data set, use a \
                     holdout split, e.g. `split: {{ method: random, test: 0.2 }}` (or `stratified` for classes)"
                ),
            ));
        }
        self.prepare_fold(seed, None, cache, progress)
    }

    /// [`Run::prepare`] for one fold of a k-fold run (`fold` is `None` for the other splits):
    /// the fold's rows are the test set, and every fitted stage learns from the other folds'
    /// training rows only.
    ///
    /// # Errors
    /// Bad or missing data, naming the file and place; a fold outside the split.
    pub fn prepare_fold(
        &self,
        seed: u64,
        fold: Option<whet_tabular::Fold>,
        cache: &Cache,
        progress: &dyn Progress,
    ) -> Result<Prepared> {
        self.preflight()?;
        let mut p = match self.data() {
            RunData::Images { images, augment } => {
                prepare_images(images, augment.as_ref(), seed, cache, progress)
            }
            RunData::Tables(cfg) => prepare_tables(cfg, seed, fold, cache, progress),
        }
        .map_err(|e| self.locate_data_error(e))?;
        warn_loads(&mut p, progress);
        Ok(p)
    }

    /// `Some(estimated bytes)` when this is a table run whose main table is over the memory
    /// budget ([`whet_tabular::must_stream`]), so it streams.
    ///
    /// # Errors
    /// The main table's path or format errors.
    pub fn table_streams(&self) -> Result<Option<u64>> {
        let RunData::Tables(cfg) = self.data() else {
            return Ok(None);
        };
        let budget = whet_core::budget::current().bytes();
        whet_tabular::must_stream(cfg, budget)
            .map_err(|e| name_table_files(e, cfg))
            .map_err(|e| self.locate_data_error(e))
    }

    /// A table run over the memory budget ([`Run::table_streams`] gave `bytes`), prepared
    /// batch by batch straight into an export's split files in `dir`
    /// ([`whet_tabular::Destination::Export`], in the format and with the `keep` columns of
    /// `options`), the tables it joins loaded through [`Cache::tables`]: the preparation (with
    /// no rows in memory) and the files.
    ///
    /// # Errors
    /// Those of [`Run::prepare`], [`whet_tabular::Error::CannotStream`] for NPY, write errors.
    pub(crate) fn export_streamed_tables(
        &self,
        seed: u64,
        bytes: u64,
        dir: &std::path::Path,
        options: &crate::export::ExportOptions,
        cache: &Cache,
        progress: &dyn Progress,
    ) -> Result<(Prepared, Vec<whet_tabular::FileEntry>)> {
        self.preflight()?;
        let format = crate::export::table_format(options)?;
        let keep = &options.keep;
        let RunData::Tables(cfg) = self.data() else {
            return Err(Error::Invalid("a streamed export is of tables".into()));
        };
        let budget = whet_core::budget::current().bytes();
        let mut writers = whet_tabular::SplitWriters::new(dir, format, keep)?;
        let p = whet_tabular::prepare_streamed(
            cfg,
            seed,
            bytes,
            budget,
            whet_tabular::Destination::Export(&mut writers),
            &rows_work_dir(),
            cache.tables(),
            progress,
        )
        .map_err(|e| name_table_files(e, cfg))
        .map_err(|e| self.locate_data_error(e))?;
        let files = writers.finish(&p.features)?;
        let mut p = Prepared {
            data: PreparedData::Tables(p),
            cache_hits: vec![],
            skipped: vec![],
            warnings: vec![],
        };
        warn_loads(&mut p, progress);
        Ok((p, files))
    }

    /// A data error found while preparing, with the run file's line of the setting it is
    /// about in front (`run.yaml:14:5: at `steps[2].encode`: …`): the failing step, the
    /// target, the split, or the image source whose file it names.
    fn locate_data_error(&self, e: Error) -> Error {
        fn tabular(e: &Error) -> Option<&whet_tabular::Error> {
            match e {
                Error::Tabular(t) => Some(t),
                Error::Context { source, .. } => tabular(source),
                _ => None,
            }
        }
        let key = match (tabular(&e), self.data()) {
            (Some(whet_tabular::Error::Step { index, name, .. }), _) => {
                Some(format!("steps[{index}].{name}"))
            }
            (Some(whet_tabular::Error::Target(_)), _) => Some("data.target".to_string()),
            (Some(whet_tabular::Error::Split(_)), _) => Some("split".to_string()),
            (None, RunData::Images { images, .. }) => {
                let text = crate::error::chain_text(&e);
                let names = |s: &whet_image::ImageSourceConfig| {
                    let paths = [
                        s.idx.as_ref().map(|i| &i.images),
                        s.idx.as_ref().map(|i| &i.labels),
                        s.folder.as_ref().map(|f| &f.path),
                        s.shards.as_ref().map(|f| &f.path),
                    ];
                    paths
                        .into_iter()
                        .flatten()
                        .any(|p| text.contains(&p.display().to_string()))
                };
                if names(&images.train) {
                    Some("data.images.train".to_string())
                } else if images.test.as_ref().is_some_and(names) {
                    Some("data.images.test".to_string())
                } else {
                    None
                }
            }
            _ => None,
        };
        match key.and_then(|k| self.location(&k)) {
            Some(at) => e.context(at),
            None => e,
        }
    }

    /// What can be checked against the memory budget before any data is read: the network
    /// with one input and one output (its hidden layers alone; the data's dimensions only add
    /// to it). So a network far too big for the machine is refused before the data are loaded.
    ///
    /// # Errors
    /// [`Error::Train`] with the budget error.
    pub fn preflight(&self) -> Result<()> {
        let f = self.file();
        whet_train::TrainingMemory::estimate(&f.model, &f.train, None, 1, 1, 1, 0).check(0)?;
        Ok(())
    }

    /// The input audit of a table run (the columns the network would see).
    ///
    /// # Errors
    /// [`Error::Invalid`] for image data; loading errors naming the file.
    pub fn audit(&self, progress: &dyn Progress) -> Result<whet_tabular::AuditReport> {
        match self.data() {
            RunData::Tables(cfg) => Ok(whet_tabular::audit(cfg, progress)?),
            RunData::Images { .. } => Err(Error::Invalid(format!(
                "`whet audit` audits table columns; `{}` uses image data",
                self.path().display()
            ))),
        }
    }

    /// Draws `samples` training images, each followed by `versions` augmented versions, into a
    /// PNG grid at `out`.
    ///
    /// `out` may not be, or lie inside, an input (checked first, as [`Run::check_output`]).
    ///
    /// # Errors
    /// [`Error::Invalid`] for table data or out-of-range counts; an `out` that overlaps an
    /// input; loading and write errors.
    pub fn preview(&self, out: &std::path::Path, samples: usize, versions: usize) -> Result<()> {
        let RunData::Images { images, augment } = self.data() else {
            return Err(Error::Invalid(format!(
                "`whet preview` shows image augmentation; `{}` uses tables (try `whet audit`)",
                self.path().display()
            )));
        };
        if !(1..=64).contains(&samples) || !(1..=32).contains(&versions) {
            return Err(Error::Invalid(format!(
                "--samples must be 1 to 64 and --versions 1 to 32 (got {samples} and {versions})"
            )));
        }
        self.check_output_as(out, whet_core::outputs::OutputKind::File)?;
        let train = whet_image::load_train_test(images, &crate::PolarsShards)?.train;
        let a = augment.clone().unwrap_or_default();
        let augmenter = Augmenter::new(&a, self.seed(), train.h(), train.w(), train.c())?;
        whet_image::write_preview(&train, &augmenter, samples, versions, out)?;
        Ok(())
    }
}

/// `source` visited in the shard-local order of `blocks`, when there are blocks.
fn in_blocks<S: BatchSource + 'static>(
    source: S,
    blocks: Option<Blocks>,
) -> Result<Box<dyn BatchSource>> {
    Ok(match blocks {
        Some(b) => Box::new(InBlocks::new(source, b).map_err(|e| Error::Data(e.to_string()))?),
        None => Box::new(source),
    })
}

/// Images loaded and split, with the normaliser fitted on the training images.
struct Loaded {
    train: TrainImages,
    validation: Option<ImageSet>,
    test: ImageSet,
    normalizer: Normalizer,
    train_originals: usize,
    class_counts_train: Vec<usize>,
    warnings: Vec<String>,
    skipped: Vec<Skipped>,
}

/// Loads the training and test images into memory and splits the validation set off.
fn load_images(
    cfg: &whet_image::ImagesConfig,
    seed: u64,
    progress: &dyn Progress,
) -> Result<Loaded> {
    progress.begin("loading images", None);
    let whet_image::TrainTest {
        train,
        test,
        skipped,
        empty_train_classes,
    } = whet_image::load_train_test(cfg, &crate::PolarsShards).context("loading the images")?;
    progress.end();
    let mut warnings = whet_image::skipped_warnings(&skipped);
    warnings.extend(empty_train_classes.iter().map(|d| {
        format!(
            "class folder `{}` holds no image: it stays a class (so labels match the test folders and the `classes` indices) that the network never sees in training; add images, or remove the folder",
            d.display()
        )
    }));
    let frac = cfg.validation.get();
    let (train, validation) = if frac > 0.0 {
        let (t, v) = train
            .split_stratified(frac, seed)
            .context("splitting off the validation set")?;
        (t, Some(v))
    } else {
        (train, None)
    };
    if train.is_empty() {
        return Err(empty_training_set());
    }
    // Fitted on the training originals, unless the run file asks for the offline copies too.
    let normalizer = Normalizer::fit(cfg.normalize, &train);
    Ok(Loaded {
        train_originals: train.len(),
        class_counts_train: train.class_counts(),
        train: TrainImages::Memory {
            set: train,
            blocks: None,
        },
        validation,
        test,
        normalizer,
        warnings,
        skipped,
    })
}

fn empty_training_set() -> Error {
    Error::Data("the training set is empty (check `limit`, `classes` and `validation`)".into())
}

/// Training shards with a shuffle buffer: indexed (every image decoded once, only where it
/// lives kept), the validation set split off and decoded, then the training images decoded
/// into memory when they fit the memory budget, or left in the shards to be streamed. Either
/// way the training images are visited in the order of their shards' [`Blocks`].
fn load_shards(
    cfg: &whet_image::ImagesConfig,
    shards: &whet_image::ShardSource,
    buffer: usize,
    seed: u64,
    progress: &dyn Progress,
) -> Result<Loaded> {
    let (_, files) = whet_image::shard_files(&shards.path).context("loading the images")?;
    progress.begin(
        "indexing the training shards (every image decoded once)",
        Some(files.len() as u64),
    );
    let index = shards
        .index(
            cfg.classes.as_deref(),
            cfg.train.limit,
            "data.images.train",
            &crate::PolarsShards,
            progress,
        )
        .context("loading the images")?;
    progress.end();
    let (test, test_skipped) = whet_image::load_test(
        cfg,
        index.images().shape(),
        index.images().class_names(),
        &crate::PolarsShards,
    )
    .context("loading the images")?;
    let mut skipped = index.skipped().to_vec();
    skipped.extend(test_skipped);
    let (set, validation) = index
        .split(cfg.validation.get(), seed, &crate::PolarsShards)
        .context("splitting off the validation set")?;
    if set.is_empty() {
        return Err(empty_training_set());
    }
    // Exact sums: the same normaliser as fitted on the decoded set.
    let normalizer = Normalizer::from_stats(cfg.normalize, set.stats());
    let blocks = set.blocks(buffer);
    let fits =
        whet_image::set_bytes(set.len(), set.shape()) <= whet_core::budget::current().bytes();
    let train = if fits {
        progress.begin("decoding the training shards", None);
        let decoded = set.to_set(&crate::PolarsShards)?;
        progress.end();
        TrainImages::Memory {
            set: decoded,
            blocks: Some(blocks),
        }
    } else {
        TrainImages::Streamed { set, buffer }
    };
    Ok(Loaded {
        train_originals: train.len(),
        class_counts_train: match &train {
            TrainImages::Memory { set, .. } => set.class_counts(),
            TrainImages::Streamed { set, .. } => set.class_counts(),
        },
        train,
        validation,
        test,
        normalizer,
        warnings: whet_image::skipped_warnings(&skipped),
        skipped,
    })
}

/// Header of a cached offline-augmented image set.
#[derive(Serialize, Deserialize)]
struct SetMeta {
    h: usize,
    w: usize,
    c: usize,
    classes: Vec<String>,
}

fn set_to_bundle(set: &ImageSet) -> Result<Bundle> {
    let mut b = Bundle::new(&SetMeta {
        h: set.h(),
        w: set.w(),
        c: set.c(),
        classes: set.class_names().to_vec(),
    })?;
    b.push_bytes("pixels", set.pixels().to_vec());
    b.push_u32("labels", set.labels());
    Ok(b)
}

fn bundle_to_set(b: &Bundle) -> Option<ImageSet> {
    let m: SetMeta = b.meta()?;
    let pixels = b.blob("pixels")?.to_vec();
    let labels = b.u32("labels")?;
    ImageSet::new(m.h, m.w, m.c, pixels, labels, m.classes).ok()
}

fn prepare_images(
    cfg: &whet_image::ImagesConfig,
    augment: Option<&AugmentConfig>,
    seed: u64,
    cache: &Cache,
    progress: &dyn Progress,
) -> Result<Prepared> {
    let buffered = cfg
        .train
        .shards
        .as_ref()
        .and_then(|s| s.shuffle_buffer.map(|b| (s, b)));
    let Loaded {
        train,
        validation,
        test,
        mut normalizer,
        train_originals,
        class_counts_train,
        warnings,
        skipped,
    } = match buffered {
        Some((shards, buffer)) => load_shards(cfg, shards, buffer, seed, progress)?,
        None => load_images(cfg, seed, progress)?,
    };
    let mut cache_hits = Vec::new();
    let mut online = None;
    let train = match (augment, train) {
        (None, train) => train,
        (
            Some(a),
            TrainImages::Memory {
                set: train,
                blocks: None,
            },
        ) if a.mode == AugmentMode::Offline => {
            // The training images themselves, not only where they come from: files replaced
            // or added under the same paths must not get the copies of the old ones.
            let labels: Vec<u8> = train
                .labels()
                .iter()
                .flat_map(|l| l.to_le_bytes())
                .collect();
            let key = KeyBuilder::new()
                .json("images", cfg)
                .json("augment", a)
                .part("seed", &seed.to_string())
                .json("shape", &train.shape())
                .json("classes", &train.class_names())
                .bytes("pixels", train.pixels())
                .bytes("labels", &labels)
                .finish();
            let augmenter = Augmenter::new(a, seed, train.h(), train.w(), train.c())?;
            progress.begin(&format!("augmenting offline ({} copies)", a.copies), None);
            let cached = cache
                .get("offline", &key, progress)
                .and_then(|b| bundle_to_set(&b));
            let expanded = match cached {
                Some(set) => {
                    cache_hits.push("offline augmentation".to_string());
                    set
                }
                None => {
                    let set = augmenter.expand(&train, a.copies)?;
                    if let Err(e) = set_to_bundle(&set).and_then(|b| cache.put("offline", &key, &b))
                    {
                        progress.warn(&format!("could not write the stage cache: {e}"));
                    }
                    set
                }
            };
            progress.end();
            if a.fit_normalizer_on_copies {
                normalizer = Normalizer::fit(cfg.normalize, &expanded);
            }
            TrainImages::Memory {
                set: expanded,
                blocks: None,
            }
        }
        (Some(a), _) if a.mode == AugmentMode::Offline => {
            return Err(Error::Data(
                "`augment.mode: offline` adds the copies to a training set held in memory, which \
                 training shards with a `shuffle_buffer` are not; use `mode: online` (fresh \
                 random versions every epoch)"
                    .into(),
            ));
        }
        (Some(a), train) => {
            let (h0, w0, c0) = train.shape();
            let augmenter = Augmenter::new(a, seed, h0, w0, c0)?;
            let (h, w, c) = augmenter.output_shape();
            if (h, w, c) != (h0, w0, c0) {
                return Err(Error::Data(format!(
                    "the augmentation changes the image size from {h0}x{w0}x{c0} to {h}x{w}x{c}; validation and test images are not augmented, so add a resize/crop that keeps {h0}x{w0}"
                )));
            }
            online = Some(augmenter);
            train
        }
    };
    Ok(Prepared {
        data: PreparedData::Images(PreparedImages {
            train,
            train_originals,
            class_counts_train,
            validation,
            test,
            normalizer,
            augment: augment.cloned(),
            online,
        }),
        cache_hits,
        skipped,
        warnings,
    })
}

/// Adds the tables' load warnings to `p` (from the load reports, so a cached preparation warns
/// like a fresh one), and writes every warning of `p` through `progress`.
fn warn_loads(p: &mut Prepared, progress: &dyn Progress) {
    if let PreparedData::Tables(t) = &p.data {
        p.warnings.extend(
            t.report
                .loads
                .iter()
                .flat_map(|l| l.warnings.iter().cloned()),
        );
    }
    for w in &p.warnings {
        progress.warn(w);
    }
}

/// Header of a cached table preparation: everything but the arrays, typed.
#[derive(Serialize, Deserialize)]
struct TablesMeta {
    shapes: [(usize, usize); 6],
    features: Vec<String>,
    classes: Vec<String>,
    indices: whet_tabular::SplitIndices,
    report: whet_tabular::PrepareReport,
    manifest: whet_tabular::Manifest,
}

fn tables_to_bundle(p: &whet_tabular::Prepared) -> Result<Bundle> {
    let (Some(train), Some(validation), Some(test)) = (
        p.train.in_memory(),
        p.validation.in_memory(),
        p.test.in_memory(),
    ) else {
        return Err(Error::Data("rows on disk are not cached".into()));
    };
    let arrays = [
        &train.x,
        &train.y,
        &validation.x,
        &validation.y,
        &test.x,
        &test.y,
    ];
    let shape = |a: &Array2<f32>| (a.nrows(), a.ncols());
    let mut b = Bundle::new(&TablesMeta {
        shapes: arrays.map(shape),
        features: p.features.clone(),
        classes: p.classes.clone(),
        indices: p.indices.clone(),
        report: p.report.clone(),
        manifest: p.manifest.clone(),
    })?;
    for (i, a) in arrays.iter().enumerate() {
        let a = a.as_standard_layout();
        b.push_f32(&i.to_string(), a.as_slice().unwrap_or_default());
    }
    let r = &p.source_rows;
    for (name, rows) in [
        ("rows_train", &r.train),
        ("rows_validation", &r.validation),
        ("rows_test", &r.test),
    ] {
        b.push_u32(name, rows);
    }
    Ok(b)
}

fn bundle_to_tables(b: &Bundle) -> Option<whet_tabular::Prepared> {
    let m: TablesMeta = b.meta()?;
    let mut arrays = Vec::with_capacity(6);
    for (i, &(r, c)) in m.shapes.iter().enumerate() {
        arrays.push(Array2::from_shape_vec((r, c), b.f32(&i.to_string())?).ok()?);
    }
    let mut it = arrays.into_iter();
    let mut split = || -> Option<whet_tabular::SplitArrays> {
        Some(whet_tabular::SplitArrays {
            x: it.next()?,
            y: it.next()?,
        })
    };
    let (train, validation, test) = (split()?, split()?, split()?);
    let source_rows = whet_tabular::SplitIndices {
        train: b.u32("rows_train")?,
        validation: b.u32("rows_validation")?,
        test: b.u32("rows_test")?,
    };
    Some(whet_tabular::Prepared {
        source_rows,
        train: whet_tabular::Rows::Memory(train),
        validation: whet_tabular::Rows::Memory(validation),
        test: whet_tabular::Rows::Memory(test),
        features: m.features,
        classes: m.classes,
        indices: m.indices,
        report: m.report,
        manifest: m.manifest,
    })
}

fn prepare_tables(
    cfg: &whet_tabular::TabularConfig,
    seed: u64,
    fold: Option<whet_tabular::Fold>,
    cache: &Cache,
    progress: &dyn Progress,
) -> Result<Prepared> {
    // The resolved target kind too: it carries what the run file's YAML does not (two labels
    // as one output for a binary model). The seed only when the split uses it: the seeds of a
    // run split by time share one entry (its manifest then takes each run's seed).
    let mut key = KeyBuilder::new()
        .json("tabular", cfg)
        .json("target", &cfg.data.target.kind()?);
    if cfg.split.uses_seed() {
        key = key.part("seed", &seed.to_string());
    }
    if let Some(f) = fold {
        key = key.json("fold", &f);
    }
    for (name, spec) in &cfg.data.tables {
        key = key.file(&format!("table:{name}"), &spec.path)?;
    }
    // A main table larger than the budget streams: the same arrays, but its report says how it
    // streamed, so the choice is part of the key.
    let budget = whet_core::budget::current().bytes();
    let streams = whet_tabular::must_stream(cfg, budget).map_err(|e| name_table_files(e, cfg))?;
    let key = key
        .part("streamed", &streams.is_some().to_string())
        .finish();
    if let Some(mut p) = cache
        .get("tables", &key, progress)
        .and_then(|b| bundle_to_tables(&b))
    {
        // What a cached manifest does not keep: the run's seed (one entry may serve every seed
        // of a time split) and the target settings the run resolved (not written to files).
        p.manifest.seed = seed;
        p.manifest.data.target = cfg.data.target.clone();
        return Ok(Prepared {
            data: PreparedData::Tables(p),
            cache_hits: vec!["tables".into()],
            skipped: vec![],
            warnings: vec![],
        });
    }
    let p = match streams {
        Some(bytes) => {
            // The prepared training rows go to disk here when they do not fit in memory; the
            // folder goes with them after training.
            let work = rows_work_dir();
            whet_tabular::prepare_streamed(
                cfg,
                seed,
                bytes,
                budget,
                whet_tabular::Destination::Train,
                &work,
                cache.tables(),
                progress,
            )
        }
        None => whet_tabular::prepare(cfg, seed, fold, cache.tables(), progress),
    }
    .map_err(|e| name_table_files(e, cfg))?;
    // Rows on disk are not cached: they are larger than memory, and a bundle is read whole.
    if [&p.train, &p.validation, &p.test]
        .iter()
        .all(|r| r.in_memory().is_some())
        && let Err(e) = tables_to_bundle(&p).and_then(|b| cache.put("tables", &key, &b))
    {
        progress.warn(&format!("could not write the stage cache: {e}"));
    }
    Ok(Prepared {
        data: PreparedData::Tables(p),
        cache_hits: vec![],
        skipped: vec![],
        warnings: vec![],
    })
}

/// Adds the table files to an error from preparing the tables when its message names none of
/// them (a target with one class, a step that leaves no rows, …), so every data error says which
/// files it is about.
fn name_table_files(e: whet_tabular::Error, cfg: &whet_tabular::TabularConfig) -> Error {
    let text = crate::error::chain_text(&e);
    let named = cfg
        .data
        .tables
        .values()
        .any(|t| text.contains(&t.path.display().to_string()));
    if named {
        e.into()
    } else {
        let paths: Vec<String> = cfg
            .data
            .tables
            .iter()
            .map(|(name, t)| format!("{name}: `{}`", t.path.display()))
            .collect();
        Error::from(e).context(format!("preparing the tables ({})", paths.join(", ")))
    }
}

/// Normalised arrays of an image set with one-hot labels, as the trainer takes them.
///
/// # Errors
/// A label outside the classes, or a normaliser for another channel count.
pub fn image_arrays(set: &ImageSet, norm: &Normalizer, classes: usize) -> Result<ArraySource> {
    let (x, y) = set.to_arrays(norm, classes)?;
    Ok(ArraySource::new(x, y)?)
}

/// Targets as the network is trained on them: standardised by the regression target's `scale`
/// (fitted on the training split), or as they are without one. A run's splits and `whet
/// evaluate`'s data both go through it.
pub(crate) fn scale_targets(
    mut y: Array2<f32>,
    scale: Option<whet_core::TargetScale>,
) -> Array2<f32> {
    if let Some(s) = scale {
        y.mapv_inplace(|v| s.apply(v));
    }
    y
}

/// A new folder name for prepared rows written to disk while they are used (under the cache's
/// `rows/`, else the temporary folder): the process id and the time make it unique.
pub(crate) fn rows_work_dir() -> std::path::PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    crate::cache::cache_root()
        .unwrap_or_else(std::env::temp_dir)
        .join("rows")
        .join(format!("{}-{stamp}", std::process::id()))
}
