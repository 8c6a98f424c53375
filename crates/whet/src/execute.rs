//! One run end to end: prepare the data, build and train the network, evaluate it, and write
//! `metrics.json`, `metrics.dvc.json`, `curves.csv`, the charts, `model.safetensors` and `manifest.json`.
//!
//! The network's outputs are read through one [`whet_train::Readout`] (a regression target's
//! scale included), so the metrics and the regression charts are in the target's units.

use crate::cache::{Cache, KeyBuilder};
use crate::error::{Error, Result, ResultExt};
use crate::manifest::{Manifest, ManifestKind};
use crate::runfile::Run;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use whet_core::{EpochLine, Progress, RunLine, RunMetric};
use whet_report::{Confusion, EpochRow, RunRecord, RunStatus};
use whet_train::{BatchSource, EpochRecord, Observer};

/// Turns the trainer's events into progress: one bar over every batch of the run, and an
/// [`EpochLine`] per finished epoch (which a log keeps).
struct EpochBars<'a> {
    bars: &'a dyn Progress,
    epochs: usize,
    epochs_started: bool,
}

impl Observer for EpochBars<'_> {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, batches: usize) {
        if !self.epochs_started {
            self.bars.begin("training", Some((epochs * batches) as u64));
            self.epochs_started = true;
        }
        self.epochs = epochs;
        self.bars.message(&format!("epoch {epoch}/{epochs}"));
    }
    fn batch_end(&mut self, _epoch: usize, _batch: usize, _loss: f64) {
        self.bars.advance(1);
    }
    fn epoch_end(&mut self, r: &EpochRecord) {
        self.bars.epoch(&epoch_line(r, self.epochs));
    }
}

/// The progress event of a finished epoch of `epochs`.
fn epoch_line(r: &EpochRecord, epochs: usize) -> EpochLine {
    EpochLine {
        epoch: r.epoch,
        epochs,
        train_loss: r.train_loss,
        train_accuracy: r.train_accuracy,
        valid_loss: r.valid_loss,
        valid_accuracy: r.valid_accuracy,
        seconds: r.seconds,
        run: None,
    }
}

/// The metric a run is judged by when nothing names one: accuracy, or the mean squared error
/// of a regression (the ablation's default too).
pub(crate) fn default_metric(task: whet_train::Task) -> &'static str {
    match task {
        whet_train::Task::Regression => "mse",
        _ => "accuracy",
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
    /// F1 per class (`null` when the class is neither in the test set nor predicted).
    #[serde(default)]
    pub f1: Vec<Option<f64>>,
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

/// The run folder's flat, numeric-only metrics ([`Metrics::flat`]) for `dvc metrics show`.
pub const METRICS_DVC_JSON: &str = "metrics.dvc.json";

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
    /// Test-set metrics by name (`loss`, `accuracy`, `majority_baseline`, `balanced_accuracy`,
    /// `precision_macro`, `f1_macro`, `roc_auc`; `mse`, `mae`, `r2` for regression, in the
    /// target's original units); empty when training diverged or there is no test set. `loss`
    /// is the training objective: weighted by class when `train.class_weights` is set, and on
    /// the standardised values for a standardised regression target (the default).
    pub test: BTreeMap<String, f64>,
    /// Validation metrics by name, when the run has a validation set and finished.
    pub validation: Option<BTreeMap<String, f64>>,
    /// Per-class results on the test set (classification; `None` without a test set).
    pub test_classes: Option<ClassBreakdown>,
    /// Binary runs: the positive-class probability threshold every label used (`model.threshold`,
    /// or the one `auto` chose on the validation split; 0.5 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Test samples evaluated.
    pub test_samples: usize,
    /// Validation samples evaluated (`None` without a validation split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_samples: Option<usize>,
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
    /// A k-fold run's folds (`split.method: kfold`): then `test` and `validation` are the
    /// means over the folds, and this has each fold's numbers and every metric's corrected
    /// 95 % interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_validation: Option<CrossValidation>,
}

/// The folds of a k-fold run, in its `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidation {
    /// Folds per repeat.
    pub k: usize,
    /// How many times the folds were dealt.
    pub repeats: usize,
    /// Test rows over training rows, the mean over the folds: the `n₂/n₁` of the corrected
    /// intervals.
    pub test_train_ratio: f64,
    /// Each test metric over the folds: mean, sd and the 95 % interval with Nadeau and
    /// Bengio's correction for the folds' overlapping training sets
    /// ([`whet_report::describe_folds`]).
    pub summary: BTreeMap<String, whet_report::Describe>,
    /// One per fold, repeat by repeat.
    pub folds: Vec<FoldMetrics>,
}

/// One fold of a k-fold run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldMetrics {
    /// Which fold was the test set.
    pub fold: whet_tabular::Fold,
    /// Its outputs' folder, relative to the run's (`folds/fold-3`): a complete run folder
    /// (model, manifest, curves, charts) that `whet predict` takes.
    pub folder: String,
    /// How its training ended.
    pub status: RunStatus,
    /// Why it diverged, when it did.
    pub message: Option<String>,
    /// Rows it trained, validated and tested on.
    pub rows: whet_tabular::SplitRows,
    /// Its test metrics (empty when it diverged).
    pub test: BTreeMap<String, f64>,
    /// Its validation metrics, when it had a validation split.
    pub validation: Option<BTreeMap<String, f64>>,
    /// Epochs it trained.
    pub epochs: usize,
    /// The epoch whose weights it kept (early stopping), if any.
    pub best_epoch: Option<usize>,
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
    /// The progress event of this finished run, judged by `metric` on the set it was
    /// evaluated on (no metric when the run did not finish or did not measure it).
    pub fn line(&self, metric: &str) -> RunLine {
        RunLine {
            name: self.name.clone(),
            variant: self.variant.clone(),
            seed: self.seed,
            fold: None,
            status: self.status.to_string(),
            message: self.message.clone(),
            kept: false,
            epochs: self.epochs,
            metric: self.evaluated().get(metric).map(|&value| RunMetric {
                set: Some(self.evaluated_on.to_string()),
                name: metric.to_string(),
                value,
                percent: whet_report::is_percent_metric(metric),
            }),
            seconds: self.total_seconds,
        }
    }

    /// The metrics of the set the run is judged on ([`Metrics::evaluated_on`]): the test
    /// metrics, or the validation metrics of a run without a test set.
    pub fn evaluated(&self) -> BTreeMap<String, f64> {
        match self.evaluated_on {
            EvaluatedOn::Test => self.test.clone(),
            EvaluatedOn::Validation => self.validation.clone().unwrap_or_default(),
        }
    }

    /// Every number of the run in one flat map of finite values: `test_<metric>`,
    /// `validation_<metric>`, `epochs`, `best_epoch`, `train_seconds`, `total_seconds`,
    /// `samples_per_second`, `parameters`, `test_samples`, `threshold` (those that apply).
    /// It is `metrics.dvc.json` (what `dvc metrics show` renders) and the final metrics of a
    /// tracked run.
    pub fn flat(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        for (k, v) in &self.test {
            m.insert(format!("test_{k}"), *v);
        }
        for (k, v) in self.validation.iter().flatten() {
            m.insert(format!("validation_{k}"), *v);
        }
        m.insert("epochs".into(), self.epochs as f64);
        if let Some(b) = self.best_epoch {
            m.insert("best_epoch".into(), b as f64);
        }
        m.insert("train_seconds".into(), self.train_seconds);
        m.insert("total_seconds".into(), self.total_seconds);
        if let Some(s) = self.samples_per_second {
            m.insert("samples_per_second".into(), s);
        }
        m.insert("parameters".into(), self.parameters as f64);
        if self.evaluated_on == EvaluatedOn::Test {
            m.insert("test_samples".into(), self.test_samples as f64);
        }
        if let Some(t) = self.threshold {
            m.insert("threshold".into(), t);
        }
        m.retain(|_, v| v.is_finite());
        m
    }
}

impl RunOutcome {
    /// The epoch with the lowest validation loss (1-based), when the run had a
    /// validation split: with early stopping it is [`Metrics::best_epoch`], whose weights
    /// were kept; without, the weights are the last epoch's and this says where validation
    /// was best.
    pub fn lowest_validation_loss_epoch(&self) -> Option<usize> {
        self.curves
            .iter()
            .filter_map(|c| c.val_loss.filter(|v| v.is_finite()).map(|v| (c.epoch, v)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(e, _)| e)
    }

    /// The record an ablation report takes (its metrics are [`Metrics::evaluated`]).
    pub fn record(&self) -> RunRecord {
        RunRecord {
            variant: self.metrics.variant.clone(),
            seed: self.metrics.seed,
            status: self.status,
            metrics: self.metrics.evaluated(),
            // Kept apart only when the run has a test set (else `metrics` is the validation).
            validation: match self.metrics.evaluated_on {
                EvaluatedOn::Test => self.metrics.validation.clone().unwrap_or_default(),
                EvaluatedOn::Validation => BTreeMap::new(),
            },
            validation_samples: self.metrics.validation_samples,
            train_seconds: self.metrics.train_seconds,
            curves: self.curves.clone(),
            message: self.metrics.message.clone(),
            cross_validation: self.metrics.cross_validation.as_ref().map(|c| {
                whet_report::FoldRecords {
                    test_train_ratio: c.test_train_ratio,
                    folds: c
                        .folds
                        .iter()
                        .map(|f| whet_report::FoldRecord {
                            fold: f.fold.repeat * c.k + f.fold.index,
                            metrics: f.test.clone(),
                            validation: f.validation.clone().unwrap_or_default(),
                        })
                        .collect(),
                }
            }),
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

/// Measures `model` on `source`, reading its outputs through `readout`; `classes` names the
/// classes (indices when their count does not match the network's).
pub(crate) fn measure(
    model: &whet_train::Mlp,
    source: &mut dyn BatchSource,
    readout: &whet_train::Readout,
    classes: &[String],
) -> whet_train::Result<Measured> {
    let e = whet_train::evaluate_readout(model, source, readout)?;
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
                    f1: c.f1.clone(),
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

/// The charts of the set a model is judged on, besides the confusion matrix: ROC and
/// precision-recall curves (binary), predicted against actual values and residuals
/// (regression, in the target's units). A run and `whet evaluate` both write them through
/// [`write_set_charts`].
pub(crate) struct SetCharts {
    binary: Option<whet_report::BinaryCurves>,
    regression: Option<whet_report::RegressionPoints>,
}

impl SetCharts {
    /// The charts of `model` on `set` (`confusion`: its confusion matrix from [`measure`];
    /// `target`: the regression target's name, `None` draws no regression charts).
    pub(crate) fn of(
        model: &whet_train::Mlp,
        readout: &whet_train::Readout,
        set: &mut dyn BatchSource,
        confusion: Option<&Confusion>,
        evaluated_on: EvaluatedOn,
        target: Option<&str>,
    ) -> whet_train::Result<SetCharts> {
        let binary = match (model.task(), confusion) {
            (whet_train::Task::Binary, Some(c)) => {
                let scores = whet_train::binary_scores(model, set)?;
                Some(binary_curves(
                    &scores,
                    &c.counts,
                    &readout.decision(),
                    evaluated_on,
                ))
            }
            _ => None,
        };
        let regression = match (model.task(), target) {
            (whet_train::Task::Regression, Some(target)) => {
                let (actual, predicted) = whet_train::regression_values(model, set, readout)?;
                Some(whet_report::RegressionPoints {
                    target: target.to_string(),
                    actual,
                    predicted,
                })
            }
            _ => None,
        };
        Ok(SetCharts { binary, regression })
    }
}

/// Writes `charts` ([`SetCharts`]) into `out`; returns the files written.
pub(crate) fn write_set_charts(
    record: &RunRecord,
    charts: &SetCharts,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if let Some(points) = &charts.regression {
        files.extend(
            whet_report::write_regression(record, points, out)
                .context("writing the regression charts")?,
        );
    }
    if let Some(b) = &charts.binary {
        files.extend(
            whet_report::write_binary_curves(record, b, out)
                .context("writing the ROC and precision-recall charts")?,
        );
    }
    Ok(files)
}

/// The ROC and precision-recall curves of a binary model's `scores` on the evaluated set, with
/// the point of the threshold in use (from that set's `confusion[true][predicted]`).
fn binary_curves(
    scores: &[(f32, bool)],
    confusion: &[Vec<u64>],
    decision: &whet_train::Decision,
    set: EvaluatedOn,
) -> whet_report::BinaryCurves {
    let c = |t: usize, p: usize| confusion[t][p] as f64;
    let (tn, fp, fn_, tp) = (c(0, 0), c(0, 1), c(1, 0), c(1, 1));
    let rate = |a: f64, b: f64| if a + b > 0.0 { a / (a + b) } else { 0.0 };
    let mut sorted = scores.to_vec();
    whet_report::BinaryCurves {
        set: set.to_string(),
        roc: whet_train::roc_curve(scores),
        pr: whet_train::pr_curve(scores),
        roc_auc: whet_train::roc_auc(&mut sorted),
        threshold: decision
            .threshold()
            .unwrap_or(whet_train::DEFAULT_THRESHOLD),
        roc_point: (rate(fp, tn), rate(tp, fn_)),
        pr_point: (tp + fp > 0.0).then(|| (rate(tp, fn_), rate(tp, fp))),
        positive_rate: rate(tp + fn_, tn + fp),
    }
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

    /// [`Run::execute`] into `out`, which the caller has checked and locked: one training, or
    /// one per fold of a k-fold run ([`Run::execute_folds`]).
    pub(crate) fn execute_locked(
        &self,
        out: &Path,
        seed: u64,
        cache: &Cache,
        progress: &dyn Progress,
    ) -> Result<RunOutcome> {
        match self.folds() {
            None => self.execute_one(out, seed, None, cache, progress),
            Some((k, repeats)) => self.execute_folds(out, seed, k, repeats, cache, progress),
        }
    }

    /// A k-fold run: every fold trained and measured into `OUT/folds/<fold>/` (a complete run
    /// folder each), then `metrics.json` with the means, each fold's numbers and the corrected
    /// intervals ([`CrossValidation`]), and a manifest of kind `cross_validation`. Stops at the
    /// first fold that diverges (the run is then `diverged`, naming the fold).
    fn execute_folds(
        &self,
        out: &Path,
        seed: u64,
        k: usize,
        repeats: usize,
        cache: &Cache,
        progress: &dyn Progress,
    ) -> Result<RunOutcome> {
        let started = Instant::now();
        whet_core::outputs::mark(out)?;
        let metric = default_metric(self.file().model.task);
        let total = k * repeats;
        // An earlier run into `out` with more folds or repeats left folders this run will not
        // write: remove them (only whet's own output folders), so `folds/` is this run's.
        let wanted: std::collections::HashSet<String> = whet_tabular::Fold::all(k, repeats)
            .map(|f| f.folder(repeats))
            .collect();
        for entry in std::fs::read_dir(out.join("folds"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !wanted.contains(&name) && whet_core::outputs::is_output_folder(&entry.path()) {
                std::fs::remove_dir_all(entry.path()).map_err(Error::io(
                    "removing an earlier run's fold folder",
                    entry.path(),
                ))?;
            }
        }
        let mut done: Vec<(whet_tabular::Fold, String, RunOutcome)> = Vec::with_capacity(total);
        for (i, fold) in whet_tabular::Fold::all(k, repeats).enumerate() {
            let folder = format!("folds/{}", fold.folder(repeats));
            progress.message(&format!(
                "{} ({} of {total})",
                fold.label(k, repeats),
                i + 1
            ));
            let o = self.execute_one(&out.join(&folder), seed, Some(fold), cache, progress)?;
            let stop = o.status != RunStatus::Ok;
            done.push((fold, folder, o));
            if stop {
                break;
            }
        }
        let (_, _, first) = &done[0];
        let failed = done.iter().find(|(_, _, o)| o.status != RunStatus::Ok);
        let status = failed.map_or(RunStatus::Ok, |(_, _, o)| o.status);
        let message = failed.map(|(f, _, o)| {
            format!(
                "{f} {}: {}",
                o.status,
                o.metrics.message.as_deref().unwrap_or("no message")
            )
        });
        let rows = |o: &RunOutcome| match &o.manifest.data {
            crate::prepare::DataSummary::Tables { rows, .. } => *rows,
            crate::prepare::DataSummary::Images { .. } => whet_tabular::SplitRows::default(),
        };
        let folds: Vec<FoldMetrics> = done
            .iter()
            .map(|(fold, folder, o)| FoldMetrics {
                fold: *fold,
                folder: folder.clone(),
                status: o.status,
                message: o.metrics.message.clone(),
                rows: rows(o),
                test: o.metrics.test.clone(),
                validation: o.metrics.validation.clone(),
                epochs: o.metrics.epochs,
                best_epoch: o.metrics.best_epoch,
            })
            .collect();
        let ratios: Vec<f64> = folds
            .iter()
            .filter(|f| f.rows.train > 0)
            .map(|f| f.rows.test as f64 / f.rows.train as f64)
            .collect();
        let test_train_ratio = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
        let over = |pick: &dyn Fn(&FoldMetrics) -> Option<&BTreeMap<String, f64>>| {
            let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for f in &folds {
                for (name, v) in pick(f).into_iter().flatten() {
                    if v.is_finite() {
                        values.entry(name.clone()).or_default().push(*v);
                    }
                }
            }
            values
        };
        let ok = status == RunStatus::Ok;
        let summary: BTreeMap<String, whet_report::Describe> = if ok {
            over(&|f| Some(&f.test))
                .into_iter()
                .map(|(name, v)| (name, whet_report::describe_folds(&v, test_train_ratio)))
                .collect()
        } else {
            BTreeMap::new()
        };
        let mean = |values: BTreeMap<String, Vec<f64>>| -> BTreeMap<String, f64> {
            values
                .into_iter()
                .map(|(name, v)| (name, v.iter().sum::<f64>() / v.len() as f64))
                .collect()
        };
        let validation = (ok && folds.iter().all(|f| f.validation.is_some()))
            .then(|| mean(over(&|f| f.validation.as_ref())));
        let test: BTreeMap<String, f64> = summary
            .iter()
            .filter_map(|(name, d)| Some((name.clone(), d.mean?)))
            .collect();
        let spent =
            |f: fn(&Metrics) -> f64| done.iter().map(|(_, _, o)| f(&o.metrics)).sum::<f64>();
        let train_seconds = spent(|m| m.train_seconds);
        let metrics = Metrics {
            name: self.name().to_string(),
            variant: self.variant().to_string(),
            seed,
            status,
            message,
            evaluated_on: EvaluatedOn::Test,
            test,
            validation,
            test_classes: None,
            threshold: None,
            test_samples: folds.iter().map(|f| f.rows.test).sum(),
            validation_samples: first.metrics.validation_samples,
            epochs: folds.iter().map(|f| f.epochs).max().unwrap_or(0),
            best_epoch: None,
            stopped_early: done.iter().any(|(_, _, o)| o.metrics.stopped_early),
            train_seconds,
            total_seconds: 0.0,
            samples_per_second: None,
            parameters: first.metrics.parameters,
            cache_hits: vec![],
            cross_validation: Some(CrossValidation {
                k,
                repeats,
                test_train_ratio,
                summary,
                folds,
            }),
        };
        let mut manifest = first.manifest.clone();
        manifest.kind = ManifestKind::CrossValidation;
        let mut outcome = RunOutcome {
            status,
            metrics,
            manifest,
            curves: first.curves.clone(),
        };
        outcome.metrics.total_seconds = started.elapsed().as_secs_f64();
        write_json(&out.join("metrics.json"), &outcome.metrics)?;
        write_json(&out.join(METRICS_DVC_JSON), &outcome.metrics.flat())?;
        outcome.manifest.save(&out.join("manifest.json"))?;
        progress.finished(&outcome.metrics.line(metric));
        Ok(outcome)
    }

    /// One training into `out`: of the whole run, or of one fold of a k-fold run.
    fn execute_one(
        &self,
        out: &Path,
        seed: u64,
        fold: Option<whet_tabular::Fold>,
        cache: &Cache,
        progress: &dyn Progress,
    ) -> Result<RunOutcome> {
        let started = Instant::now();
        progress.begin("preparing data", None);
        let prepared = self.prepare_fold(seed, fold, cache, progress)?;
        progress.end();
        let classes = prepared.classes().to_vec();
        let summary = prepared.summary();
        let preprocessing = prepared.preprocessing(self);
        let cache_hits = prepared.cache_hits.clone();
        let warnings = prepared.warnings.clone();
        let train_counts = prepared.train_class_counts();
        let file = self.file();
        let target_scale = prepared
            .target_scale()
            .filter(|_| file.model.task == whet_train::Task::Regression);
        let target_name = match self.data() {
            crate::runfile::RunData::Tables(t) => t.data.target.regression.clone(),
            crate::runfile::RunData::Images { .. } => None,
        };
        let mut data = prepared.into_training()?;
        // What the run holds while training: the prepared data and the trainer's estimate.
        let sources: [Option<&dyn BatchSource>; 3] = [
            Some(data.train.as_ref()),
            data.validation.as_deref(),
            data.test.as_deref(),
        ];
        let held = sources
            .iter()
            .flatten()
            .fold(0u64, |a, s| a.saturating_add(s.memory()));
        whet_train::TrainingMemory::estimate(
            &file.model,
            &file.train,
            data.shape,
            data.train.input_dim(),
            data.train.target_dim(),
            data.train.len(),
            data.validation.as_ref().map_or(0, |v| v.len()),
        )
        .check(held)?;
        let mut model = whet_train::build_model(
            &file.model,
            &file.train,
            data.shape,
            data.train.input_dim(),
            data.train.target_dim(),
            seed,
        )
        .context("building the network")?;
        if let Some(cw) = &file.train.class_weights {
            let weights = self.class_weights(cw, &classes, &train_counts, model.task())?;
            model
                .set_class_weights(weights)
                .context("setting `train.class_weights`")?;
        }
        let mut obs = EpochBars {
            bars: progress,
            epochs: 0,
            epochs_started: false,
        };
        let fitted = whet_train::fit(
            &mut model,
            &file.train,
            seed,
            data.train.as_mut(),
            data.validation
                .as_mut()
                .map(|v| &mut **v as &mut dyn BatchSource),
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
        if status == RunStatus::Ok
            && let Some(criterion) = file.model.auto_threshold()
        {
            let valid = data
                .validation
                .as_mut()
                .map(|v| &mut **v as &mut dyn BatchSource)
                .ok_or_else(|| {
                    Error::Data(
                    "`threshold: auto` is chosen on the validation split, which is empty after \
                     preprocessing; raise the validation fraction or give a fixed threshold"
                        .into(),
                )
                })?;
            whet_train::tune_threshold(&mut model, valid, criterion)
                .context("choosing `model.threshold: auto` on the validation split")?;
        }
        // How the network's outputs are read: classes by its decision (with the threshold just
        // chosen), or values in the target's units.
        let readout = whet_train::Readout::of(&model).with_target_scale(target_scale);
        let evaluated_on = if data.test.is_some() {
            EvaluatedOn::Test
        } else {
            EvaluatedOn::Validation
        };
        let mut test = BTreeMap::new();
        let mut validation = None;
        let mut validation_samples = None;
        let mut test_classes = None;
        let mut test_samples = 0;
        let mut confusion = None;
        let mut charts = None;
        if status == RunStatus::Ok {
            if let Some(t) = data.test.as_mut().map(|t| &mut **t as &mut dyn BatchSource) {
                let m =
                    measure(&model, t, &readout, &classes).context("evaluating on the test set")?;
                test = m.metrics;
                test_samples = m.samples;
                test_classes = m.classes;
                confusion = m.confusion;
            }
            if let Some(v) = data
                .validation
                .as_mut()
                .map(|v| &mut **v as &mut dyn BatchSource)
            {
                let m =
                    measure(&model, v, &readout, &classes).context("evaluating on validation")?;
                validation = Some(m.metrics);
                validation_samples = Some(m.samples);
                if evaluated_on == EvaluatedOn::Validation {
                    // The confusion chart shows the set the run is judged on.
                    confusion = m.confusion;
                }
            }
            let judged = match evaluated_on {
                EvaluatedOn::Test => data.test.as_mut().map(|t| &mut **t as &mut dyn BatchSource),
                EvaluatedOn::Validation => data
                    .validation
                    .as_mut()
                    .map(|v| &mut **v as &mut dyn BatchSource),
            };
            if let Some(set) = judged {
                charts = Some(
                    SetCharts::of(
                        &model,
                        &readout,
                        set,
                        confusion.as_ref(),
                        evaluated_on,
                        target_name.as_deref(),
                    )
                    .context("scoring the evaluated set for its charts")?,
                );
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
            threshold: (status == RunStatus::Ok)
                .then(|| model.decision().threshold())
                .flatten(),
            test_samples,
            validation_samples,
            epochs: curves.len(),
            best_epoch: report.as_ref().and_then(|r| r.best_epoch),
            stopped_early: report.as_ref().is_some_and(|r| r.stopped_early),
            train_seconds,
            total_seconds: 0.0,
            samples_per_second: report.as_ref().map(|r| r.samples_per_second),
            parameters: model.parameter_count(),
            cache_hits,
            cross_validation: None,
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
        if let Some(c) = &charts {
            write_set_charts(&outcome.record(), c, out)?;
        }
        outcome.metrics.total_seconds = started.elapsed().as_secs_f64();
        write_json(&out.join("metrics.json"), &outcome.metrics)?;
        write_json(&out.join(METRICS_DVC_JSON), &outcome.metrics.flat())?;
        outcome.manifest.save(&out.join("manifest.json"))?;
        let mut line = outcome.metrics.line(default_metric(file.model.task));
        if let (Some(f), Some((k, repeats))) = (fold, self.folds()) {
            line.fold = Some(f.label(k, repeats));
        }
        progress.finished(&line);
        Ok(outcome)
    }

    /// `train.class_weights` resolved into weights by class index: `balanced` from the training
    /// split's class counts, or the labels given (a label not listed weighs 1).
    ///
    /// # Errors
    /// [`Error::Config`], located at the label, for a label that is not one of the classes.
    fn class_weights(
        &self,
        config: &whet_train::ClassWeightsConfig,
        classes: &[String],
        counts: &[u64],
        task: whet_train::Task,
    ) -> Result<whet_train::ClassWeights> {
        let k = match task {
            whet_train::Task::Binary => 2,
            _ => counts.len().max(classes.len()),
        };
        let labels: Vec<String> = if classes.len() == k {
            classes.to_vec()
        } else {
            (0..k).map(|i| i.to_string()).collect()
        };
        let weights = match config {
            whet_train::ClassWeightsConfig::Balanced => whet_train::ClassWeights::balanced(counts),
            whet_train::ClassWeightsConfig::Labels(given) => {
                let mut w = vec![1.0f32; k];
                for (label, weight) in given {
                    let Some(i) = labels.iter().position(|l| l == label) else {
                        let list: Vec<String> = labels.iter().map(|l| format!("`{l}`")).collect();
                        let hint =
                            whet_core::spec::closest(label, labels.iter().map(String::as_str))
                                .map(|c| format!("; did you mean `{c}`?"))
                                .unwrap_or_default();
                        return Err(self.located(
                            &format!("train.class_weights.{label}"),
                            format!(
                                "`{label}` is not a class of this run's target: the classes are \
                                 {}{hint}",
                                list.join(", ")
                            ),
                        ));
                    };
                    w[i] = weight.get() as f32;
                }
                whet_train::ClassWeights::new(w)
            }
        };
        weights.map_err(|m| {
            self.located(
                "train.class_weights",
                format!("cannot weigh the classes: {m}"),
            )
        })
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
