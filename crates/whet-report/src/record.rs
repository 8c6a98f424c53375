//! What the CLI hands over: the record of each run and the description of an ablation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Training finished and the metrics were evaluated.
    Ok,
    /// Training stopped because the loss became non-finite or exploded.
    Diverged,
    /// The run failed for another reason (bad data, I/O error…); see its message.
    Failed,
}

impl RunStatus {
    /// The name used in tables: `ok`, `diverged` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Diverged => "diverged",
            RunStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One epoch of a learning curve. Accuracies are fractions in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    /// Epoch number (the CLI's numbering, usually from 1).
    pub epoch: usize,
    /// Mean training loss over the epoch.
    #[serde(deserialize_with = "nullable::f64")]
    pub train_loss: f64,
    /// Training accuracy (classification only).
    pub train_accuracy: Option<f64>,
    /// Validation loss, when there is a validation set.
    pub val_loss: Option<f64>,
    /// Validation accuracy (classification with a validation set only).
    pub val_accuracy: Option<f64>,
    /// Wall-clock seconds of the epoch.
    #[serde(deserialize_with = "nullable::f64")]
    pub seconds: f64,
}

/// The result of one run: one variant trained with one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The variant's name (`baseline` for the baseline).
    pub variant: String,
    /// The seed of the run; runs of different variants with the same seed are paired.
    pub seed: u64,
    /// How the run ended.
    pub status: RunStatus,
    /// Final metrics by name (`accuracy`, `loss`, `mse`…). Accuracy-like metrics are fractions.
    /// Non-finite values are treated as missing.
    #[serde(deserialize_with = "nullable::map")]
    pub metrics: BTreeMap<String, f64>,
    /// The same metrics on the validation split, when the run also has a test set (empty
    /// otherwise): what a report that chooses among variants ranks by.
    #[serde(
        default,
        deserialize_with = "nullable::map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub validation: BTreeMap<String, f64>,
    /// Examples in the validation split, when the run had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_samples: Option<usize>,
    /// Wall-clock training time in seconds.
    #[serde(deserialize_with = "nullable::f64")]
    pub train_seconds: f64,
    /// Per-epoch curves (possibly cut short by divergence or early stopping).
    pub curves: Vec<EpochRow>,
    /// Why the run diverged or failed, if known.
    pub message: Option<String>,
    /// The folds of a k-fold run (then `metrics` and `validation` are their means): the report
    /// pairs variants over (seed, fold) and widens the intervals for the folds' overlapping
    /// training sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_validation: Option<FoldRecords>,
}

/// The folds of one k-fold run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldRecords {
    /// Test rows over training rows (their mean over the folds): the `n₂/n₁` of the
    /// corrected variance (see [`crate::describe_folds`]).
    pub test_train_ratio: f64,
    /// One per fold, in order (repeat by repeat).
    pub folds: Vec<FoldRecord>,
}

/// One fold's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldRecord {
    /// The fold's position across repeats (`repeat · k + fold`, from 0): runs of different
    /// variants with the same seed and the same fold are paired.
    pub fold: usize,
    /// The fold's test metrics by name (non-finite values are missing).
    #[serde(deserialize_with = "nullable::map")]
    pub metrics: BTreeMap<String, f64>,
    /// Its validation metrics (empty without a validation split).
    #[serde(
        default,
        deserialize_with = "nullable::map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub validation: BTreeMap<String, f64>,
}

/// JSON has no NaN or infinity: serde_json writes them as `null`. These read `null` back as NaN,
/// so a diverged run's record survives a round trip through `ablation.json` (the CLI's resume).
mod nullable {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer};

    pub(super) fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }

    pub(super) fn map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
        Ok(m.into_iter()
            .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
            .collect())
    }
}

/// A declared variant of an ablation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantInfo {
    /// Its name, unique in the ablation (`baseline` for the first one).
    pub name: String,
    /// What it changes, in words: `drop augment.ops.elastic`, `set train.lr = 0.1`.
    pub description: String,
}

/// Everything an ablation report is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationInput {
    /// Title of the report (usually the pipeline's name).
    pub title: String,
    /// The pipeline file the runs come from, as the user named it.
    pub pipeline: String,
    /// The run file's `description`, shown under the title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Command-line changes to the run file, as given (`--set train.epochs=5`,
    /// `--sweep train.optimizer.adam.lr=0.1,0.01`): the report lists them, since the run file
    /// alone does not say what ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    /// The variants in report order; the first one is the baseline and is named `baseline`.
    pub variants: Vec<VariantInfo>,
    /// All runs, of every variant and seed, in any order.
    pub runs: Vec<RunRecord>,
    /// The metric the verdicts and the effect chart are about (`accuracy`, `mse`…).
    pub primary_metric: String,
    /// Whether a higher primary metric is better (accuracy) or worse (loss, error).
    pub higher_is_better: bool,
    /// The metrics besides the primary one where lower is better (`loss`, `mse`, `mae`); the
    /// others are read as higher-is-better when the report flags a clear change in them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lower_is_better: Vec<String>,
    /// Free lines added at the end of the report (data sizes, cache hits…).
    pub notes: Vec<String>,
    /// The variants are candidates to choose from (a `--sweep` or a grid): the report ranks and
    /// judges them on the runs' validation metrics and shows test numbers only for the one
    /// chosen, since the best of several test numbers overstates what the choice will do.
    /// Ignored when the runs have no separate validation metrics.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub choose_on_validation: bool,
    /// What the validation split decides inside every run (`early stopping`, `the binary
    /// threshold`): the report warns when the split is too small for the differences judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_decides: Vec<String>,
}

/// Column names of `ablation.csv` that metrics may not take.
pub const RESERVED_COLUMNS: &[&str] = &["variant", "seed", "status", "train_seconds", "message"];

impl AblationInput {
    /// Checks the input: a first variant named `baseline`, unique variant names, every run of a
    /// declared variant, at most one run per (variant, seed), metric names that fit in the CSV,
    /// and a primary metric reported by the ok runs (when there are any).
    ///
    /// # Errors
    /// The first problem found, naming the run or variant.
    pub fn validate(&self) -> Result<()> {
        let first = self.variants.first().ok_or(Error::NoVariants)?;
        if first.name != "baseline" {
            return Err(Error::FirstVariantNotBaseline {
                found: first.name.clone(),
            });
        }
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        for (i, v) in self.variants.iter().enumerate() {
            if let Some(&first) = index_of.get(v.name.as_str()) {
                return Err(Error::DuplicateVariant {
                    name: v.name.clone(),
                    first,
                    second: i,
                });
            }
            index_of.insert(&v.name, i);
        }
        let mut seen: HashMap<(&str, u64), usize> = HashMap::new();
        for (i, run) in self.runs.iter().enumerate() {
            if !index_of.contains_key(run.variant.as_str()) {
                return Err(Error::UnknownVariant {
                    index: i,
                    variant: run.variant.clone(),
                    seed: run.seed,
                    known: self.variants.iter().map(|v| v.name.clone()).collect(),
                });
            }
            if let Some(&first) = seen.get(&(run.variant.as_str(), run.seed)) {
                return Err(Error::DuplicateRun {
                    variant: run.variant.clone(),
                    seed: run.seed,
                    first,
                    second: i,
                });
            }
            seen.insert((&run.variant, run.seed), i);
            if let Some(name) = run
                .metrics
                .keys()
                .find(|k| k.trim().is_empty() || RESERVED_COLUMNS.contains(&k.as_str()))
            {
                return Err(Error::BadMetricName {
                    index: i,
                    variant: run.variant.clone(),
                    seed: run.seed,
                    name: name.clone(),
                    reserved: RESERVED_COLUMNS,
                });
            }
        }
        let ok: Vec<&RunRecord> = self
            .runs
            .iter()
            .filter(|r| r.status == RunStatus::Ok)
            .collect();
        if !ok.is_empty()
            && !ok
                .iter()
                .any(|r| r.metrics.contains_key(&self.primary_metric))
        {
            let available: BTreeSet<String> =
                ok.iter().flat_map(|r| r.metrics.keys().cloned()).collect();
            return Err(Error::PrimaryMetricMissing {
                metric: self.primary_metric.clone(),
                available: available.into_iter().collect(),
            });
        }
        Ok(())
    }

    /// Every metric name reported by any run: the primary metric first, then the others in
    /// alphabetical order. The primary metric is listed even if no run reports it.
    pub fn metric_names(&self) -> Vec<String> {
        let others: BTreeSet<&String> = self
            .runs
            .iter()
            .flat_map(|r| r.metrics.keys())
            .filter(|k| **k != self.primary_metric)
            .collect();
        std::iter::once(self.primary_metric.clone())
            .chain(others.into_iter().cloned())
            .collect()
    }

    /// Whether the report chooses on validation: asked for, and some ok run has separate
    /// validation metrics.
    pub fn chooses_on_validation(&self) -> bool {
        self.choose_on_validation
            && self
                .runs
                .iter()
                .any(|r| r.status == RunStatus::Ok && !r.validation.is_empty())
    }

    /// The runs' k-fold cross-validation, when they have one: the most folds of one run, and
    /// the mean test/train ratio of the runs' folds (the `n₂/n₁` of the corrected intervals).
    pub fn cross_validation(&self) -> Option<(usize, f64)> {
        let cv: Vec<&FoldRecords> = self
            .runs
            .iter()
            .filter_map(|r| r.cross_validation.as_ref())
            .collect();
        let ratios: Vec<f64> = cv
            .iter()
            .map(|c| c.test_train_ratio)
            .filter(|v| v.is_finite())
            .collect();
        if ratios.is_empty() {
            return None;
        }
        let folds = cv.iter().map(|c| c.folds.len()).max().unwrap_or(0);
        Some((folds, ratios.iter().sum::<f64>() / ratios.len() as f64))
    }

    /// The same ablation judged on the validation split: every run's `metrics` are its
    /// validation metrics.
    pub fn on_validation(&self) -> AblationInput {
        let mut v = self.clone();
        for r in &mut v.runs {
            r.metrics = std::mem::take(&mut r.validation);
            for f in r.cross_validation.iter_mut().flat_map(|c| &mut c.folds) {
                f.metrics = std::mem::take(&mut f.validation);
            }
        }
        v
    }

    /// The runs in report order: by declared variant, then by seed.
    pub fn sorted_runs(&self) -> Vec<&RunRecord> {
        let order: HashMap<&str, usize> = self
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.as_str(), i))
            .collect();
        let mut runs: Vec<&RunRecord> = self.runs.iter().collect();
        runs.sort_by_key(|r| {
            (
                order.get(r.variant.as_str()).copied().unwrap_or(usize::MAX),
                r.seed,
            )
        });
        runs
    }
}

/// A binary model's ROC and precision-recall curves on one data set, with the point of the
/// threshold its labels use (drawn by [`write_binary_curves`](crate::write_binary_curves)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryCurves {
    /// The data set the curves are measured on (`test`, or `validation`).
    pub set: String,
    /// `(false positive rate, true positive rate)` points from (0, 0) to (1, 1).
    pub roc: Vec<(f64, f64)>,
    /// `(recall, precision)` points, recall rising.
    pub pr: Vec<(f64, f64)>,
    /// The area under the ROC curve, when defined.
    pub roc_auc: Option<f64>,
    /// The positive-class probability threshold of the labels.
    pub threshold: f64,
    /// The threshold's `(false positive rate, true positive rate)`.
    pub roc_point: (f64, f64),
    /// The threshold's `(recall, precision)`; `None` when it predicts no positive.
    pub pr_point: Option<(f64, f64)>,
    /// The share of positives (the precision of a model that guesses).
    pub positive_rate: f64,
}

/// A confusion matrix: `counts[t][p]` is the number of samples of true class `t` predicted as
/// class `p`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// Class names, in index order.
    pub labels: Vec<String>,
    /// Square matrix of counts; rows are true classes, columns predicted classes.
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    /// Checks that `counts` is square with one row and column per label, and not empty.
    ///
    /// # Errors
    /// [`Error::ConfusionShape`] with the first bad row.
    pub fn validate(&self) -> Result<()> {
        let k = self.labels.len();
        let bad_row = self
            .counts
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() != k)
            .map(|(i, r)| (i, r.len()));
        if k == 0 || self.counts.len() != k || bad_row.is_some() {
            return Err(Error::ConfusionShape {
                labels: k,
                rows: self.counts.len(),
                bad_row,
            });
        }
        Ok(())
    }

    /// Fraction of samples on the diagonal, or `None` when the matrix is all zeros.
    pub fn accuracy(&self) -> Option<f64> {
        let total: u64 = self.counts.iter().flatten().sum();
        let diag: u64 = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, r)| r.get(i).copied().unwrap_or(0))
            .sum();
        (total > 0).then(|| diag as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(variant: &str, seed: u64) -> RunRecord {
        RunRecord {
            variant: variant.into(),
            seed,
            status: RunStatus::Ok,
            metrics: BTreeMap::from([("accuracy".to_string(), 0.9)]),
            validation: Default::default(),
            validation_samples: None,
            train_seconds: 1.0,
            curves: vec![],
            message: None,
            cross_validation: None,
        }
    }

    fn input(runs: Vec<RunRecord>) -> AblationInput {
        AblationInput {
            title: "t".into(),
            pipeline: "p.yaml".into(),
            description: None,
            overrides: vec![],
            variants: vec![
                VariantInfo {
                    name: "baseline".into(),
                    description: String::new(),
                },
                VariantInfo {
                    name: "no-noise".into(),
                    description: "drop noise".into(),
                },
            ],
            runs,
            primary_metric: "accuracy".into(),
            higher_is_better: true,
            lower_is_better: vec!["loss".into()],
            notes: vec![],
            choose_on_validation: false,
            validation_decides: vec![],
        }
    }

    #[test]
    fn status_serialises_lower_case() {
        assert_eq!(
            serde_json::to_string(&RunStatus::Diverged).unwrap(),
            "\"diverged\""
        );
        let s: RunStatus = serde_json::from_str("\"failed\"").unwrap();
        assert_eq!(s, RunStatus::Failed);
    }

    #[test]
    fn validate_rejects_bad_inputs_with_names() {
        assert!(
            input(vec![run("baseline", 1), run("no-noise", 1)])
                .validate()
                .is_ok()
        );
        let e = input(vec![run("nope", 3)]).validate().unwrap_err();
        assert!(
            e.to_string().contains("`nope`") && e.to_string().contains("seed 3"),
            "{e}"
        );
        let e = input(vec![run("baseline", 1), run("baseline", 1)])
            .validate()
            .unwrap_err();
        assert!(matches!(e, Error::DuplicateRun { seed: 1, .. }), "{e}");
        let mut i = input(vec![]);
        i.variants.swap(0, 1);
        assert!(matches!(
            i.validate(),
            Err(Error::FirstVariantNotBaseline { .. })
        ));
        let mut r = run("baseline", 1);
        r.metrics.insert("seed".into(), 1.0);
        assert!(matches!(
            input(vec![r]).validate(),
            Err(Error::BadMetricName { .. })
        ));
        let mut i = input(vec![run("baseline", 1)]);
        i.primary_metric = "mse".into();
        let e = i.validate().unwrap_err();
        assert!(
            e.to_string().contains("`mse`") && e.to_string().contains("accuracy"),
            "{e}"
        );
    }

    #[test]
    fn non_finite_values_survive_json() {
        let mut r = run("baseline", 1);
        r.metrics.insert("loss".into(), f64::INFINITY);
        r.curves.push(EpochRow {
            epoch: 1,
            train_loss: f64::NAN,
            train_accuracy: None,
            val_loss: Some(f64::INFINITY),
            val_accuracy: None,
            seconds: 0.5,
        });
        let back: RunRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert!(back.metrics["loss"].is_nan() && back.curves[0].train_loss.is_nan());
        assert_eq!(
            back.curves[0].val_loss, None,
            "an optional non-finite value reads as missing"
        );
        assert_eq!(back.metrics["accuracy"], 0.9);
    }

    #[test]
    fn all_diverged_needs_no_primary_metric() {
        let mut r = run("baseline", 1);
        r.status = RunStatus::Diverged;
        r.metrics.clear();
        assert!(input(vec![r]).validate().is_ok());
    }

    #[test]
    fn confusion_shape_is_checked() {
        let c = Confusion {
            labels: vec!["a".into(), "b".into()],
            counts: vec![vec![1, 2], vec![3]],
        };
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("row 1 has 1 counts"), "{e}");
        let c = Confusion {
            labels: vec!["a".into(), "b".into()],
            counts: vec![vec![3, 1], vec![0, 4]],
        };
        c.validate().unwrap();
        assert_eq!(c.accuracy(), Some(7.0 / 8.0));
    }
}
