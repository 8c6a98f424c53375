//! Evaluation metrics: accuracy, balanced accuracy, per-class and macro precision, recall and
//! F1, the majority-class baseline, confusion matrix, ROC AUC and the ROC and precision-recall
//! curves (binary); MSE, MAE and R² (regression). Labels come from the model's
//! [`Decision`](crate::Decision) (the binary threshold included).

use crate::config::Task;
use crate::error::{Error, Result};
use crate::mlp::{Mlp, Workspace, argmax};
use crate::readout::Readout;
use ndarray::{ArrayView2, s};
use serde::Serialize;
use std::collections::BTreeMap;
use whet_core::BatchSource;

/// Classification metrics (also used for binary, with classes 0 and 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// Fraction of correct predictions.
    pub accuracy: f64,
    /// Mean recall over the classes present in the targets.
    pub balanced_accuracy: f64,
    /// Per-class precision (None when the class was never predicted).
    pub precision: Vec<Option<f64>>,
    /// Per-class recall (None when the class never occurs in the targets).
    pub recall: Vec<Option<f64>>,
    /// Per-class F1, `2 TP / (2 TP + FP + FN)` (None when the class is neither in the targets
    /// nor predicted).
    pub f1: Vec<Option<f64>>,
    /// Mean precision over the classes present in the targets (a class never predicted counts
    /// 0, as scikit-learn's `zero_division=0`). The macro recall is `balanced_accuracy`.
    pub precision_macro: f64,
    /// Mean F1 over the classes present in the targets.
    pub f1_macro: f64,
    /// The accuracy of always predicting the most frequent class of the targets (its share).
    pub majority_baseline: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// Area under the ROC curve (binary only; None when one class is absent).
    pub roc_auc: Option<f64>,
}

/// Regression metrics, averaged over output columns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegressionMetrics {
    /// Mean squared error (without the 1/2 factor of the loss).
    pub mse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Coefficient of determination, mean over outputs (None when a target is constant).
    pub r2: Option<f64>,
}

/// Task-specific metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metrics {
    /// Classification or binary.
    Classification(ClassMetrics),
    /// Regression.
    Regression(RegressionMetrics),
}

/// The result of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Mean loss per sample (the training loss, evaluation mode).
    pub loss: f64,
    /// Samples evaluated.
    pub samples: usize,
    /// The metrics.
    pub metrics: Metrics,
}

impl Evaluation {
    /// Accuracy for classification and binary tasks.
    pub fn accuracy(&self) -> Option<f64> {
        match &self.metrics {
            Metrics::Classification(c) => Some(c.accuracy),
            Metrics::Regression(_) => None,
        }
    }

    /// The scalar metrics by name: `loss` always; `accuracy`, `majority_baseline`,
    /// `balanced_accuracy`, `precision_macro`, `f1_macro` and `roc_auc` (when defined) for
    /// classification and binary tasks; `mse`, `mae` and `r2` (when defined) for regression.
    /// These are the names an ablation ranks by (see [`higher_is_better`]).
    pub fn flat(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert("loss".to_string(), self.loss);
        match &self.metrics {
            Metrics::Classification(c) => {
                m.insert("accuracy".into(), c.accuracy);
                m.insert("balanced_accuracy".into(), c.balanced_accuracy);
                m.insert("precision_macro".into(), c.precision_macro);
                m.insert("f1_macro".into(), c.f1_macro);
                m.insert("majority_baseline".into(), c.majority_baseline);
                if let Some(a) = c.roc_auc {
                    m.insert("roc_auc".into(), a);
                }
            }
            Metrics::Regression(r) => {
                m.insert("mse".into(), r.mse);
                m.insert("mae".into(), r.mae);
                if let Some(r2) = r.r2 {
                    m.insert("r2".into(), r2);
                }
            }
        }
        m
    }
}

/// The metric names [`Evaluation::flat`] gives for a model of `task` (`roc_auc` for binary
/// models; `r2` when the targets vary).
pub fn metric_names(task: crate::Task) -> &'static [&'static str] {
    match task {
        crate::Task::Classification => &[
            "loss",
            "accuracy",
            "balanced_accuracy",
            "precision_macro",
            "f1_macro",
            "majority_baseline",
        ],
        crate::Task::Binary => &[
            "loss",
            "accuracy",
            "balanced_accuracy",
            "precision_macro",
            "f1_macro",
            "majority_baseline",
            "roc_auc",
        ],
        crate::Task::Regression => &["loss", "mse", "mae", "r2"],
    }
}

/// True when a larger value of `metric` (a name from [`Evaluation::flat`]) is better: false for
/// the errors `loss`, `mse` and `mae`, true for the others (accuracies, precision, F1, ROC AUC,
/// R²; `majority_baseline` is a property of the data, the same for every model).
pub fn higher_is_better(metric: &str) -> bool {
    !matches!(metric, "mse" | "mae" | "loss")
}

/// Evaluates `model` on all samples of `source` (filled with epoch 0, in order) in evaluation
/// mode (no noise, no dropout), reading its outputs with [`Readout::of`] the model (targets
/// in their own units): [`evaluate_readout`] with that readout.
///
/// # Errors
/// See [`evaluate_readout`].
pub fn evaluate(model: &Mlp, source: &mut dyn BatchSource) -> Result<Evaluation> {
    evaluate_readout(model, source, &Readout::of(model))
}

/// Evaluates `model` on all samples of `source` (filled with epoch 0, in order) in evaluation
/// mode (no noise, no dropout). Predictions come from `readout` ([`Readout::label`]; for
/// regression [`Readout::value`], applied to the outputs and to the source's targets, which are
/// in the units the network was trained on), so `mse`, `mae` and `r2` are in the target's
/// original units. `loss` is the training loss on the source as it is (for a standardised
/// regression target: on the standardised values).
///
/// # Errors
/// [`Error::Shape`] when the source's dimensions differ from the model's; [`Error::Source`]
/// when filling fails; [`Error::Config`] for an empty source or a readout for another task.
pub fn evaluate_readout(
    model: &Mlp,
    source: &mut dyn BatchSource,
    readout: &Readout,
) -> Result<Evaluation> {
    if readout.task() != model.task {
        return Err(Error::Config(format!(
            "the readout is for a {:?} network, the model is {:?}",
            readout.task(),
            model.task
        )));
    }
    if source.input_dim() != model.input_dim() || source.target_dim() != model.output_dim() {
        return Err(Error::Shape {
            what: format!(
                "evaluation data columns (features + targets; have {} + {})",
                source.input_dim(),
                source.target_dim()
            ),
            expected: model.input_dim() + model.output_dim(),
            got: source.input_dim() + source.target_dim(),
        });
    }
    let mut ws = model.workspace(model.eval_rows(source.len()), model.output_dim());
    evaluate_with(model, source, &mut ws, readout)
}

/// [`evaluate_readout`] with a caller-provided workspace (no allocation besides the metric
/// tallies).
pub(crate) fn evaluate_with(
    model: &Mlp,
    source: &mut dyn BatchSource,
    ws: &mut Workspace,
    readout: &Readout,
) -> Result<Evaluation> {
    let n = source.len();
    if n == 0 {
        return Err(Error::Config("cannot evaluate on an empty data set".into()));
    }
    let k = model.output_dim();
    let classes = if model.task == Task::Binary { 2 } else { k };
    let mut confusion = vec![vec![0u64; classes]; classes];
    let mut scores: Vec<(f32, bool)> = Vec::new();
    let (mut se, mut ae) = (vec![0.0f64; k], vec![0.0f64; k]);
    let (mut ys, mut yy) = (vec![0.0f64; k], vec![0.0f64; k]);
    let mut loss = 0.0f64;
    for_each_batch(model, source, ws, |z, y| {
        for (zr, yr) in z.rows().into_iter().zip(y.rows()) {
            let (zs, ts) = (zr.as_slice().expect("rows"), yr.as_slice().expect("rows"));
            loss += model.row_loss(zs, ts);
            match model.task {
                Task::Classification => {
                    let t = argmax(ts.iter().copied());
                    confusion[t][readout.label(zs)] += 1;
                }
                Task::Binary => {
                    let t = ts[0] > 0.5;
                    confusion[usize::from(t)][readout.label(zs)] += 1;
                    scores.push((zs[0], t));
                }
                Task::Regression => {
                    for j in 0..k {
                        let (p, t) = (readout.value(zs[j]), readout.value(ts[j]));
                        se[j] += (p - t).powi(2);
                        ae[j] += (p - t).abs();
                        ys[j] += t;
                        yy[j] += t * t;
                    }
                }
            }
        }
    })?;
    let nf = n as f64;
    let metrics = if model.task == Task::Regression {
        let mut r2s = Vec::new();
        for j in 0..k {
            let sst = yy[j] - ys[j] * ys[j] / nf;
            if sst > 1e-12 * yy[j].max(1.0) {
                r2s.push(1.0 - se[j] / sst);
            }
        }
        Metrics::Regression(RegressionMetrics {
            mse: se.iter().sum::<f64>() / (nf * k as f64),
            mae: ae.iter().sum::<f64>() / (nf * k as f64),
            r2: (r2s.len() == k).then(|| r2s.iter().sum::<f64>() / k as f64),
        })
    } else {
        Metrics::Classification(class_metrics(
            confusion,
            &mut scores,
            model.task == Task::Binary,
        ))
    };
    Ok(Evaluation {
        loss: loss / nf,
        samples: n,
        metrics,
    })
}

/// Metrics from a confusion matrix (and scores for ROC AUC when `binary`).
pub fn class_metrics(
    confusion: Vec<Vec<u64>>,
    scores: &mut [(f32, bool)],
    binary: bool,
) -> ClassMetrics {
    let c = confusion.len();
    let total: u64 = confusion.iter().flatten().sum();
    let diag: u64 = (0..c).map(|i| confusion[i][i]).sum();
    let recall: Vec<Option<f64>> = (0..c)
        .map(|i| {
            let support: u64 = confusion[i].iter().sum();
            (support > 0).then(|| confusion[i][i] as f64 / support as f64)
        })
        .collect();
    let precision: Vec<Option<f64>> = (0..c)
        .map(|j| {
            let predicted: u64 = (0..c).map(|i| confusion[i][j]).sum();
            (predicted > 0).then(|| confusion[j][j] as f64 / predicted as f64)
        })
        .collect();
    let present: Vec<f64> = recall.iter().flatten().copied().collect();
    let f1: Vec<Option<f64>> = (0..c)
        .map(|i| {
            let tp = confusion[i][i];
            let support: u64 = confusion[i].iter().sum();
            let predicted: u64 = (0..c).map(|r| confusion[r][i]).sum();
            let denom = support + predicted;
            (denom > 0).then(|| 2.0 * tp as f64 / denom as f64)
        })
        .collect();
    let supported: Vec<usize> = (0..c)
        .filter(|&i| confusion[i].iter().sum::<u64>() > 0)
        .collect();
    let macro_of = |v: &[Option<f64>]| {
        if supported.is_empty() {
            0.0
        } else {
            supported.iter().map(|&i| v[i].unwrap_or(0.0)).sum::<f64>() / supported.len() as f64
        }
    };
    let precision_macro = macro_of(&precision);
    let f1_macro = macro_of(&f1);
    let majority = (0..c)
        .map(|i| confusion[i].iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    ClassMetrics {
        accuracy: if total > 0 {
            diag as f64 / total as f64
        } else {
            0.0
        },
        balanced_accuracy: if present.is_empty() {
            0.0
        } else {
            present.iter().sum::<f64>() / present.len() as f64
        },
        precision,
        recall,
        f1,
        precision_macro,
        f1_macro,
        majority_baseline: if total > 0 {
            majority as f64 / total as f64
        } else {
            0.0
        },
        confusion,
        roc_auc: if binary { roc_auc(scores) } else { None },
    }
}

/// The binary model's logits on every sample of `source`, each with whether its target is
/// positive (the input of [`crate::choose_threshold`], [`roc_curve`] and [`pr_curve`]).
///
/// # Errors
/// [`Error::Config`] for a model that is not binary or an empty source; [`Error::Shape`] and
/// [`Error::Source`] as [`evaluate`].
pub fn binary_scores(model: &Mlp, source: &mut dyn BatchSource) -> Result<Vec<(f32, bool)>> {
    if model.task != Task::Binary {
        return Err(Error::Config(format!(
            "scores and thresholds are for binary models, this one is {}",
            crate::config::ser(&model.task)
        )));
    }
    if source.input_dim() != model.input_dim() || source.target_dim() != 1 {
        return Err(Error::Shape {
            what: "scoring data columns (features + target)".into(),
            expected: model.input_dim() + 1,
            got: source.input_dim() + source.target_dim(),
        });
    }
    let n = source.len();
    if n == 0 {
        return Err(Error::Config("cannot score an empty data set".into()));
    }
    let mut ws = model.workspace(model.eval_rows(n), 1);
    let mut out = Vec::with_capacity(n);
    for_each_batch(model, source, &mut ws, |z, y| {
        out.extend(z.iter().zip(y).map(|(z, t)| (*z, *t > 0.5)));
    })?;
    Ok(out)
}

/// A regression model's first output on every sample of `source`, with its target, both in the
/// target's units through `readout`: `(actual, predicted)` (the points of the regression
/// charts). Reads `source` batch by batch, so it may be larger than memory.
///
/// # Errors
/// [`Error::Config`] for a model that is not a regression; [`Error::Shape`] and
/// [`Error::Source`] as [`evaluate`].
pub fn regression_values(
    model: &Mlp,
    source: &mut dyn BatchSource,
    readout: &crate::Readout,
) -> Result<(Vec<f64>, Vec<f64>)> {
    if model.task != Task::Regression {
        return Err(Error::Config(format!(
            "predicted values are for regression models, this one is {}",
            crate::config::ser(&model.task)
        )));
    }
    if source.input_dim() != model.input_dim() || source.target_dim() != model.output_dim() {
        return Err(Error::Shape {
            what: "data columns (features + targets)".into(),
            expected: model.input_dim() + model.output_dim(),
            got: source.input_dim() + source.target_dim(),
        });
    }
    let n = source.len();
    let mut ws = model.workspace(model.eval_rows(n.max(1)), model.output_dim());
    let (mut actual, mut predicted) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for_each_batch(model, source, &mut ws, |z, y| {
        predicted.extend(readout.values(z).column(0).iter().copied());
        actual.extend(readout.values(y).column(0).iter().copied());
    })?;
    Ok((actual, predicted))
}

/// Runs `model` over every sample of `source` in order, in batches of the workspace's capacity
/// (evaluation mode), and hands each batch's logits and targets (`rows × outputs`) to `each`.
fn for_each_batch(
    model: &Mlp,
    source: &mut dyn BatchSource,
    ws: &mut Workspace,
    mut each: impl FnMut(ArrayView2<f32>, ArrayView2<f32>),
) -> Result<()> {
    let n = source.len();
    let mut idx: Vec<usize> = Vec::with_capacity(ws.capacity());
    let mut start = 0;
    while start < n {
        let rows = (n - start).min(ws.capacity());
        idx.clear();
        idx.extend(start..start + rows);
        let (x, y) = ws.batch_mut(rows);
        source.fill(0, &idx, x, y).map_err(|source| Error::Source {
            epoch: 0,
            rows,
            source,
        })?;
        model.forward(ws, rows, None);
        each(
            ws.logits().slice_move(s![..rows, ..]),
            ws.y.slice(s![..rows, ..]),
        );
        start += rows;
    }
    Ok(())
}

/// Chooses the threshold of a binary model on `valid` (usually the validation split) by
/// `criterion` ([`crate::choose_threshold`]), sets it on the model and returns it.
///
/// # Errors
/// As [`binary_scores`]; [`Error::Config`] when `valid` holds one class only, or every score
/// is equal (no cut separates them).
pub fn tune_threshold(
    model: &mut Mlp,
    valid: &mut dyn BatchSource,
    criterion: crate::ThresholdCriterion,
) -> Result<f64> {
    let scores = binary_scores(model, valid)?;
    let pos = scores.iter().filter(|s| s.1).count();
    let t = crate::choose_threshold(&scores, criterion).ok_or_else(|| {
        Error::Config(if pos == 0 || pos == scores.len() {
            format!(
                "`threshold: auto` needs both classes in the validation split, which has {} \
                 samples, all {}; raise `validation` or use a fixed threshold",
                scores.len(),
                if pos == 0 { "negative" } else { "positive" }
            )
        } else {
            "`threshold: auto` found every validation score equal (the network did not learn to \
             separate the classes), so no threshold separates them; use a fixed threshold"
                .into()
        })
    })?;
    model.set_threshold(t)?;
    Ok(t)
}

/// The ROC curve of `scores` (logit, is positive): `(false positive rate, true positive rate)`
/// from (0, 0) to (1, 1), one point per distinct score, highest first. Empty when a class is
/// absent.
pub fn roc_curve(scores: &[(f32, bool)]) -> Vec<(f64, f64)> {
    let (p, n) = class_totals(scores);
    if p == 0 || n == 0 {
        return Vec::new();
    }
    let mut pts = vec![(0.0, 0.0)];
    for (tp, fp) in cumulative(scores) {
        pts.push((fp as f64 / n as f64, tp as f64 / p as f64));
    }
    pts
}

/// The precision-recall curve of `scores`: `(recall, precision)` one point per distinct score,
/// highest first (recall rising to 1). Empty when there is no positive.
pub fn pr_curve(scores: &[(f32, bool)]) -> Vec<(f64, f64)> {
    let (p, _) = class_totals(scores);
    if p == 0 {
        return Vec::new();
    }
    cumulative(scores)
        .map(|(tp, fp)| (tp as f64 / p as f64, tp as f64 / (tp + fp) as f64))
        .collect()
}

fn class_totals(scores: &[(f32, bool)]) -> (u64, u64) {
    let p = scores.iter().filter(|s| s.1).count() as u64;
    (p, scores.len() as u64 - p)
}

/// (TP, FP) after each group of equal scores, highest scores first.
fn cumulative(scores: &[(f32, bool)]) -> impl Iterator<Item = (u64, u64)> {
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out = Vec::new();
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            if sorted[j].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            j += 1;
        }
        out.push((tp, fp));
        i = j;
    }
    out.into_iter()
}

/// ROC AUC as the Mann-Whitney U statistic with tied scores given their mean rank
/// (Hanley & McNeil 1982). None when either class is absent.
pub fn roc_auc(scores: &mut [(f32, bool)]) -> Option<f64> {
    let pos = scores.iter().filter(|s| s.1).count();
    let neg = scores.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    scores.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < scores.len() {
        let mut j = i;
        while j < scores.len() && scores[j].0 == scores[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their mean.
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * scores[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    let (p, q) = (pos as f64, neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_and_balanced_accuracy() {
        // true 0: 3 right, 1 wrong (predicted 1); true 1: 1 right.
        let m = class_metrics(vec![vec![3, 1], vec![0, 1]], &mut [], false);
        assert_eq!(m.accuracy, 0.8);
        assert_eq!(m.recall, vec![Some(0.75), Some(1.0)]);
        assert_eq!(m.precision, vec![Some(1.0), Some(0.5)]);
        assert_eq!(m.balanced_accuracy, 0.875);
    }

    #[test]
    fn f1_macro_and_majority_baseline_on_a_hand_confusion_matrix() {
        // true \ predicted: a: 5 1 0; b: 2 3 1; c: 0 0 0 (absent); 12 samples.
        let m = class_metrics(
            vec![vec![5, 1, 0], vec![2, 3, 1], vec![0, 0, 0]],
            &mut [],
            false,
        );
        // a: precision 5/7, recall 5/6, F1 10/13; b: precision 3/4, recall 1/2, F1 6/10;
        // c: predicted once, never true: precision 0, F1 0 (support + predicted = 1).
        assert_eq!(m.f1, vec![Some(10.0 / 13.0), Some(0.6), Some(0.0)]);
        assert_eq!(m.precision, vec![Some(5.0 / 7.0), Some(0.75), Some(0.0)]);
        // Macro over the classes present in the targets (a and b).
        assert!((m.precision_macro - (5.0 / 7.0 + 0.75) / 2.0).abs() < 1e-12);
        assert!((m.f1_macro - (10.0 / 13.0 + 0.6) / 2.0).abs() < 1e-12);
        assert_eq!(m.majority_baseline, 0.5);
        // A class neither true nor predicted has no F1.
        let m = class_metrics(vec![vec![2, 0], vec![0, 0]], &mut [], false);
        assert_eq!(m.f1, vec![Some(1.0), None]);
        assert_eq!(m.f1_macro, 1.0);
        assert_eq!(m.majority_baseline, 1.0);
    }

    #[test]
    fn roc_and_pr_curves_walk_the_distinct_scores() {
        let s = [(0.1, false), (0.4, true), (0.4, false), (0.8, true)];
        assert_eq!(
            roc_curve(&s),
            vec![(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
        assert_eq!(pr_curve(&s), vec![(0.5, 1.0), (1.0, 2.0 / 3.0), (1.0, 0.5)]);
        assert!(roc_curve(&[(0.1, true)]).is_empty());
        assert!(pr_curve(&[(0.1, false)]).is_empty());
    }

    fn eval(metrics: Metrics) -> Evaluation {
        Evaluation {
            loss: 0.5,
            samples: 4,
            metrics,
        }
    }

    fn keys(e: &Evaluation) -> Vec<String> {
        e.flat().into_keys().collect()
    }

    #[test]
    fn flat_classification_metrics() {
        let mut c = class_metrics(vec![vec![3, 1], vec![0, 1]], &mut [], false);
        c.roc_auc = Some(0.9);
        let e = eval(Metrics::Classification(c.clone()));
        let flat = e.flat();
        assert_eq!(
            keys(&e),
            [
                "accuracy",
                "balanced_accuracy",
                "f1_macro",
                "loss",
                "majority_baseline",
                "precision_macro",
                "roc_auc"
            ]
        );
        assert_eq!(flat["loss"], 0.5);
        assert_eq!(flat["accuracy"], 0.8);
        assert_eq!(flat["balanced_accuracy"], 0.875);
        assert_eq!(flat["roc_auc"], 0.9);
        c.roc_auc = None;
        let e = eval(Metrics::Classification(c));
        assert_eq!(
            keys(&e),
            [
                "accuracy",
                "balanced_accuracy",
                "f1_macro",
                "loss",
                "majority_baseline",
                "precision_macro"
            ]
        );
    }

    #[test]
    fn flat_regression_metrics() {
        let mut r = RegressionMetrics {
            mse: 2.0,
            mae: 1.0,
            r2: Some(0.25),
        };
        let e = eval(Metrics::Regression(r.clone()));
        assert_eq!(keys(&e), ["loss", "mae", "mse", "r2"]);
        assert_eq!(
            (e.flat()["mse"], e.flat()["mae"], e.flat()["r2"]),
            (2.0, 1.0, 0.25)
        );
        r.r2 = None;
        assert_eq!(keys(&eval(Metrics::Regression(r))), ["loss", "mae", "mse"]);
    }

    #[test]
    fn regression_metrics_in_the_targets_units() {
        use crate::config::ModelConfig;
        use crate::{ArraySource, TrainConfig, build_model};
        use ndarray::array;
        // A linear network that outputs its input: the predictions are x (standardised).
        let cfg = ModelConfig::regression();
        let train = TrainConfig::new(crate::OptimizerConfig::adam(0.01));
        let mut net = build_model(&cfg, &train, None, 1, 1, 0).unwrap();
        net.layers[0].weight.fill(1.0);
        net.layers[0].bias.fill(0.0);
        let x = array![[0.0f32], [1.0], [-1.0], [2.0]];
        let y = array![[0.0f32], [1.0], [-1.0], [1.0]];
        let mut data = ArraySource::new(x, y).unwrap();
        // Target mean 10, std 2: predictions 10, 12, 8, 14 against targets 10, 12, 8, 12.
        let scale = whet_core::TargetScale {
            mean: 10.0,
            std: 2.0,
        };
        let readout = Readout::new(Task::Regression).with_target_scale(Some(scale));
        let e = evaluate_readout(&net, &mut data, &readout).unwrap();
        let Metrics::Regression(r) = &e.metrics else {
            panic!("regression metrics")
        };
        assert_eq!(r.mse, 1.0); // (0 + 0 + 0 + 2²) / 4
        assert_eq!(r.mae, 0.5); // (0 + 0 + 0 + 2) / 4
        // Targets' mean 10.5: SST = 0.25 + 2.25 + 6.25 + 2.25 = 11, SSE = 4.
        assert!((r.r2.unwrap() - (1.0 - 4.0 / 11.0)).abs() < 1e-12);
        // Standardised units: the same R², errors divided by std² and std; the loss is the
        // training loss on the standardised values either way.
        let raw = evaluate(&net, &mut data).unwrap();
        let Metrics::Regression(q) = &raw.metrics else {
            panic!("regression metrics")
        };
        assert_eq!((q.mse, q.mae), (0.25, 0.25));
        assert!((q.r2.unwrap() - r.r2.unwrap()).abs() < 1e-12);
        assert_eq!(raw.loss, e.loss);
        let wrong = evaluate_readout(&net, &mut data, &Readout::new(Task::Binary));
        assert!(matches!(wrong, Err(Error::Config(_))));
    }

    #[test]
    fn errors_are_lower_is_better() {
        for m in ["loss", "mse", "mae"] {
            assert!(!higher_is_better(m), "{m}");
        }
        for m in ["accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "r2"] {
            assert!(higher_is_better(m), "{m}");
        }
    }

    #[test]
    fn auc_known_values() {
        let mut s = vec![(0.1, false), (0.4, true), (0.35, false), (0.8, true)];
        assert_eq!(roc_auc(&mut s), Some(1.0));
        let mut s = vec![(0.1, false), (0.4, false), (0.35, true), (0.8, true)];
        assert_eq!(roc_auc(&mut s), Some(0.75));
        let mut s = vec![(0.5, false), (0.5, true)];
        assert_eq!(roc_auc(&mut s), Some(0.5));
        assert_eq!(roc_auc(&mut [(0.5, true)]), None);
    }
}
