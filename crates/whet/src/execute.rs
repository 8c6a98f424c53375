//! One run end to end: prepare the data, build and train the network, evaluate it, and write
//! `metrics.json`, `curves.csv`, the charts, `model.safetensors` and `manifest.json`.

use crate::cache::{Cache, KeyBuilder};
use crate::error::{Error, Result, ResultExt};
use crate::manifest::{Manifest, ManifestKind};
use crate::runfile::Run;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use whet_core::Progress;
use whet_report::{Confusion, EpochRow, RunRecord, RunStatus};
use whet_train::{BatchSource, EpochRecord, Observer};

/// Draws the epoch bar from the trainer's events.
struct EpochBars<'a> {
    bars: &'a dyn Progress,
    epochs_started: bool,
}

impl Observer for EpochBars<'_> {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, batches: usize) {
        if !self.epochs_started {
            self.bars.begin("training", Some((epochs * batches) as u64));
            self.epochs_started = true;
        }
        self.bars.message(&format!("epoch {epoch}/{epochs}"));
    }
    fn batch_end(&mut self, _epoch: usize, _batch: usize, _loss: f64) {
        self.bars.advance(1);
    }
    fn epoch_end(&mut self, r: &EpochRecord) {
        let v = r
            .valid_loss
            .map(|v| format!(" val {v:.4}"))
            .unwrap_or_default();
        self.bars
            .message(&format!("epoch {} loss {:.4}{v}", r.epoch, r.train_loss));
    }
}

/// Per-class results on the test set (classification and binary tasks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassBreakdown {
    /// Class names, in label order.
    pub labels: Vec<String>,
    /// Precision per class (`null` when the class was never predicted).
    pub precision: Vec<Option<f64>>,
    /// Recall per class (`null` when the class is absent from the test set).
    pub recall: Vec<Option<f64>>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
}

/// The data set a run's final metrics are measured on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluatedOn {
    /// The test set (the run file has one).
    #[default]
    Test,
    /// The validation split: the run file has no test set (no `data.images.test`, or
    /// `split.test: 0`).
    Validation,
}

impl std::fmt::Display for EvaluatedOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EvaluatedOn::Test => "test",
            EvaluatedOn::Validation => "validation",
        })
    }
}

/// What a run measured: `metrics.json` is this struct, one copy of each number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The run file's name.
    pub name: String,
    /// The ablation variant (`baseline` for the run file as written).
    pub variant: String,
    /// The seed the run used.
    pub seed: u64,
    /// How the run ended.
    pub status: RunStatus,
    /// Why the run diverged, when it did.
    pub message: Option<String>,
    /// Which set the run's result is measured on: `test`, or `validation` when the run file
    /// has no test set (then `test` is empty and the ablation report ranks by `validation`).
    #[serde(default)]
    pub evaluated_on: EvaluatedOn,
    /// Test-set metrics by name (`loss`, `accuracy`, `balanced_accuracy`, `roc_auc`; `mse`,
    /// `mae`, `r2` for regression); empty when training diverged or there is no test set.
    pub test: BTreeMap<String, f64>,
    /// Validation metrics by name, when the run has a validation set and finished.
    pub validation: Option<BTreeMap<String, f64>>,
    /// Per-class results on the test set (classification; `None` without a test set).
    pub test_classes: Option<ClassBreakdown>,
    /// Test samples evaluated.
    pub test_samples: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// The epoch whose weights were kept (early stopping), if any.
    pub best_epoch: Option<usize>,
    /// Whether early stopping ended training.
    pub stopped_early: bool,
    /// Wall-clock training seconds.
    pub train_seconds: f64,
    /// Wall-clock seconds of the whole run (data, training, evaluation, writing).
    pub total_seconds: f64,
    /// Training throughput.
    pub samples_per_second: Option<f64>,
    /// Trainable parameters of the network.
    pub parameters: usize,
    /// Stages served from the stage cache.
    pub cache_hits: Vec<String>,
}

/// The outcome of [`Run::execute`].
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// How the run ended (also in `metrics.status`).
    pub status: RunStatus,
    /// What it measured (written as `metrics.json`).
    pub metrics: Metrics,
    /// What it used (written as `manifest.json`).
    pub manifest: Manifest,
    /// The learning curves, one row per epoch (written as `curves.csv`).
    pub curves: Vec<EpochRow>,
}

impl Metrics {
    /// The metrics of the set the run is judged on ([`Metrics::evaluated_on`]): the test
    /// metrics, or the validation metrics of a run without a test set.
    pub fn evaluated(&self) -> BTreeMap<String, f64> {
        match self.evaluated_on {
            EvaluatedOn::Test => self.test.clone(),
            EvaluatedOn::Validation => self.validation.clone().unwrap_or_default(),
        }
    }
}

impl RunOutcome {
    /// The record an ablation report takes (its metrics are [`Metrics::evaluated`]).
    pub fn record(&self) -> RunRecord {
        RunRecord {
            variant: self.metrics.variant.clone(),
            seed: self.metrics.seed,
            status: self.status,
            metrics: self.metrics.evaluated(),
            train_seconds: self.metrics.train_seconds,
            curves: self.curves.clone(),
            message: self.metrics.message.clone(),
        }
    }
}

/// A model measured on one labelled set: the numbers `metrics.json` holds for it and the
/// confusion matrix its chart shows. [`measure`] makes it, for a run's test and validation sets
/// and for `whet evaluate` on new data, so both give the same numbers for the same rows.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    /// The scalar metrics by name ([`whet_train::Evaluation::flat`]).
    pub metrics: BTreeMap<String, f64>,
    /// Rows measured.
    pub samples: usize,
    /// Per-class results (classification and binary tasks).
    pub classes: Option<ClassBreakdown>,
    /// The confusion matrix for the chart (classification and binary tasks).
    pub confusion: Option<Confusion>,
}

/// Measures `model` on `source`; `classes` names the classes (indices when their count does
/// not match the network's).
pub(crate) fn measure(
    model: &whet_train::Mlp,
    source: &mut dyn BatchSource,
    classes: &[String],
) -> whet_train::Result<Measured> {
    let e = whet_train::evaluate(model, source)?;
    let (breakdown, confusion) = match &e.metrics {
        whet_train::Metrics::Classification(c) => {
            let labels: Vec<String> = if classes.len() == c.confusion.len() {
                classes.to_vec()
            } else {
                (0..c.confusion.len()).map(|i| i.to_string()).collect()
            };
            (
                Some(ClassBreakdown {
                    labels: labels.clone(),
                    precision: c.precision.clone(),
                    recall: c.recall.clone(),
                    confusion: c.confusion.clone(),
                }),
                Some(Confusion {
                    labels,
                    counts: c.confusion.clone(),
                }),
            )
        }
        whet_train::Metrics::Regression(_) => (None, None),
    };
    Ok(Measured {
        metrics: e.flat(),
        samples: e.samples,
        classes: breakdown,
        confusion,
    })
}

fn rows(curves: &[EpochRecord]) -> Vec<EpochRow> {
    curves
        .iter()
        .map(|c| EpochRow {
            epoch: c.epoch,
            train_loss: c.train_loss,
            train_accuracy: c.train_accuracy,
            val_loss: c.valid_loss,
            val_accuracy: c.valid_accuracy,
            seconds: c.seconds,
        })
        .collect()
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        what: "JSON output",
        path: path.to_path_buf(),
        source,
    })?;
    whet_core::fsx::atomic_write(path, text.as_bytes())?;
    Ok(())
}

impl Run {
    /// Runs this run with `seed`, writing everything into `out`: prepares the data (through
    /// `cache`), trains, evaluates, and writes `metrics.json`, `curves.csv`, the charts,
    /// `model.safetensors` and `manifest.json`. A diverged run is an `Ok` outcome with status
    /// `diverged` (its curves are written, it has no model).
    ///
    /// `out` is checked first ([`Run::check_output`]: it may not overlap an input), then locked
    /// ([`whet_core::lock::FolderLock`]): while this runs, another run, export or ablation into
    /// `out` fails at once, naming this process. The output marker
    /// ([`whet_core::outputs::mark`]) is its first file.
    ///
    /// # Errors
    /// An `out` that overlaps an input, bad data or config, outputs that cannot be written, or
    /// [`Error::Lock`] when another process writes into `out`.
    pub fn execute(
        &self,
        out: impl AsRef<Path>,
        seed: u64,
        cache: &Cache,
        progress: &dyn Progress,
    ) -> Result<RunOutcome> {
        let out = out.as_ref();
        self.check_output(out)?;
        let _lock = whet_core::lock::FolderLock::acquire(out)?;
        self.execute_locked(out, seed, cache, progress)
    }

    /// [`Run::execute`] into `out`, which the caller has checked and locked.
    pub(crate) fn execute_locked(
        &self,
        out: &Path,
        seed: u64,
        cache: &Cache,
        progress: &dyn Progress,
    ) -> Result<RunOutcome> {
        let started = Instant::now();
        progress.begin("preparing data", None);
        let prepared = self.prepare(seed, cache, progress)?;
        progress.end();
        let classes = prepared.classes().to_vec();
        let summary = prepared.summary();
        let preprocessing = prepared.preprocessing(self);
        let cache_hits = prepared.cache_hits.clone();
        let warnings = prepared.warnings.clone();
        let mut data = prepared.into_training()?;
        let file = self.file();
        // What the run holds while training: the prepared data and the trainer's estimate.
        let sources: [Option<&dyn BatchSource>; 3] = [
            Some(data.train.as_ref()),
            data.validation.as_ref().map(|v| v as &dyn BatchSource),
            data.test.as_ref().map(|t| t as &dyn BatchSource),
        ];
        let held = sources.iter().flatten().fold(0u64, |a, s| {
            a.saturating_add(whet_core::budget::product(&[
                s.len() as u64,
                (s.input_dim() + s.target_dim()) as u64,
                4,
            ]))
        });
        whet_train::TrainingMemory::estimate(
            &file.model,
            &file.train,
            data.train.input_dim(),
            data.train.target_dim(),
            data.train.len(),
            data.validation.as_ref().map_or(0, |v| v.len()),
        )
        .check(held)?;
        let mut model = whet_train::build_model(
            &file.model,
            &file.train,
            data.train.input_dim(),
            data.train.target_dim(),
            seed,
        )
        .context("building the network")?;
        let mut obs = EpochBars {
            bars: progress,
            epochs_started: false,
        };
        let fitted = whet_train::fit(
            &mut model,
            &file.train,
            seed,
            data.train.as_mut(),
            data.validation.as_mut().map(|v| v as &mut dyn BatchSource),
            &mut obs,
        );
        progress.end();
        let (status, curves, message, report) = match fitted {
            Ok(r) => (RunStatus::Ok, r.curves.clone(), None, Some(r)),
            Err(whet_train::Error::Diverged(d)) => {
                let msg = d.to_string();
                (RunStatus::Diverged, d.curves.clone(), Some(msg), None)
            }
            Err(e) => return Err(Error::from(e).context("training")),
        };
        let evaluated_on = if data.test.is_some() {
            EvaluatedOn::Test
        } else {
            EvaluatedOn::Validation
        };
        let mut test = BTreeMap::new();
        let mut validation = None;
        let mut test_classes = None;
        let mut test_samples = 0;
        let mut confusion = None;
        if status == RunStatus::Ok {
            if let Some(t) = data.test.as_mut() {
                let m = measure(&model, t, &classes).context("evaluating on the test set")?;
                test = m.metrics;
                test_samples = m.samples;
                test_classes = m.classes;
                confusion = m.confusion;
            }
            if let Some(v) = data.validation.as_mut() {
                let m = measure(&model, v, &classes).context("evaluating on validation")?;
                validation = Some(m.metrics);
                if evaluated_on == EvaluatedOn::Validation {
                    // The confusion chart shows the set the run is judged on.
                    confusion = m.confusion;
                }
            }
        }
        // The first write: the marker, so a folder loader never takes this folder for data.
        whet_core::outputs::mark(out)?;
        if status == RunStatus::Ok {
            whet_train::checkpoint::save(&model, &out.join("model.safetensors"))
                .context("saving the model")?;
        }
        let train_seconds = report
            .as_ref()
            .map_or_else(|| curves.iter().map(|c| c.seconds).sum(), |r| r.seconds);
        let curves = rows(&curves);
        let metrics = Metrics {
            name: self.name().to_string(),
            variant: self.variant().to_string(),
            seed,
            status,
            message,
            evaluated_on,
            test,
            validation,
            test_classes,
            test_samples,
            epochs: curves.len(),
            best_epoch: report.as_ref().and_then(|r| r.best_epoch),
            stopped_early: report.as_ref().is_some_and(|r| r.stopped_early),
            train_seconds,
            total_seconds: 0.0,
            samples_per_second: report.as_ref().map(|r| r.samples_per_second),
            parameters: model.parameter_count(),
            cache_hits,
        };
        let manifest = Manifest::new(
            ManifestKind::Run,
            self,
            seed,
            summary,
            preprocessing,
            Some(model.architecture()),
            warnings,
        );
        let mut outcome = RunOutcome {
            status,
            metrics,
            manifest,
            curves,
        };
        whet_report::write_run(&outcome.record(), confusion.as_ref(), out)
            .context("writing the run's curves and charts")?;
        outcome.metrics.total_seconds = started.elapsed().as_secs_f64();
        write_json(&out.join("metrics.json"), &outcome.metrics)?;
        outcome.manifest.save(&out.join("manifest.json"))?;
        Ok(outcome)
    }

    /// Runs the `pretrain` run file first when its output is missing or stale (its run file
    /// changed); a run without `pretrain` returns at once. The pretrain run file is loaded with
    /// this run's overrides.
    ///
    /// # Errors
    /// The pretrain run file is invalid, or its run failed.
    pub fn ensure_pretrained(&self, cache: &Cache, progress: &dyn Progress) -> Result<()> {
        let Some(p) = &self.file().pretrain else {
            return Ok(());
        };
        let pre = Run::load(&p.pipeline, self.overrides()).context(format!(
            "loading the pretrain run file `{}`",
            p.pipeline.display()
        ))?;
        let key = KeyBuilder::new().json("pretrain", &pre.value).finish();
        let stamp = p.out.join("pretrain.key");
        if std::fs::read_to_string(&stamp).is_ok_and(|k| k == key)
            && p.out.join("model.safetensors").is_file()
        {
            return Ok(());
        }
        let outcome = pre.execute(&p.out, pre.seed(), cache, progress)?;
        if outcome.status != RunStatus::Ok {
            return Err(Error::Failed(format!(
                "the pretrain run `{}` {}",
                p.pipeline.display(),
                outcome.status
            )));
        }
        whet_core::fsx::atomic_write(&stamp, key.as_bytes())?;
        Ok(())
    }
}
