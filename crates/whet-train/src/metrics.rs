//! Evaluation metrics: accuracy, balanced accuracy, per-class precision and recall, confusion
//! matrix, ROC AUC (binary); MSE, MAE and R² (regression).

use crate::config::Task;
use crate::error::{Error, Result};
use crate::mlp::{Mlp, Workspace, argmax};
use crate::predict::predicted_class;
use ndarray::s;
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

    /// The scalar metrics by name: `loss` always; `accuracy`, `balanced_accuracy` and `roc_auc`
    /// (when defined) for classification and binary tasks; `mse`, `mae` and `r2` (when defined)
    /// for regression. These are the names an ablation ranks by (see [`higher_is_better`]).
    pub fn flat(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert("loss".to_string(), self.loss);
        match &self.metrics {
            Metrics::Classification(c) => {
                m.insert("accuracy".into(), c.accuracy);
                m.insert("balanced_accuracy".into(), c.balanced_accuracy);
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
        crate::Task::Classification => &["loss", "accuracy", "balanced_accuracy"],
        crate::Task::Binary => &["loss", "accuracy", "balanced_accuracy", "roc_auc"],
        crate::Task::Regression => &["loss", "mse", "mae", "r2"],
    }
}

/// True when a larger value of `metric` (a name from [`Evaluation::flat`]) is better: false for
/// the errors `loss`, `mse` and `mae`, true for the others (accuracies, ROC AUC, R²).
pub fn higher_is_better(metric: &str) -> bool {
    !matches!(metric, "mse" | "mae" | "loss")
}

/// Evaluates `model` on all samples of `source` (filled with epoch 0, in order) in evaluation
/// mode (no noise, no dropout).
///
/// # Errors
/// [`Error::Shape`] when the source's dimensions differ from the model's; [`Error::Source`]
/// when filling fails; [`Error::Config`] for an empty source.
pub fn evaluate(model: &Mlp, source: &mut dyn BatchSource) -> Result<Evaluation> {
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
    let mut ws = model.workspace(source.len().clamp(1, 1024), model.output_dim());
    evaluate_with(model, source, &mut ws)
}

/// [`evaluate`] with a caller-provided workspace (no allocation besides the metric tallies).
pub(crate) fn evaluate_with(
    model: &Mlp,
    source: &mut dyn BatchSource,
    ws: &mut Workspace,
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
        let z = ws.logits().slice_move(s![..rows, ..]);
        let y = ws.y.slice(s![..rows, ..]);
        for (zr, yr) in z.rows().into_iter().zip(y.rows()) {
            let (zs, ts) = (zr.as_slice().expect("rows"), yr.as_slice().expect("rows"));
            loss += model.loss.row_loss(zs, ts);
            match model.task {
                Task::Classification => {
                    let t = argmax(ts.iter().copied());
                    let p = predicted_class(model.task, zs).expect("a class");
                    confusion[t][p] += 1;
                }
                Task::Binary => {
                    let t = ts[0] > 0.5;
                    let p = predicted_class(model.task, zs).expect("a class");
                    confusion[usize::from(t)][p] += 1;
                    scores.push((zs[0], t));
                }
                Task::Regression => {
                    for j in 0..k {
                        let (p, t) = (f64::from(zs[j]), f64::from(ts[j]));
                        se[j] += (p - t).powi(2);
                        ae[j] += (p - t).abs();
                        ys[j] += t;
                        yy[j] += t * t;
                    }
                }
            }
        }
        start += rows;
    }
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
    let precision = (0..c)
        .map(|j| {
            let predicted: u64 = (0..c).map(|i| confusion[i][j]).sum();
            (predicted > 0).then(|| confusion[j][j] as f64 / predicted as f64)
        })
        .collect();
    let present: Vec<f64> = recall.iter().flatten().copied().collect();
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
        confusion,
        roc_auc: if binary { roc_auc(scores) } else { None },
    }
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
            ["accuracy", "balanced_accuracy", "loss", "roc_auc"]
        );
        assert_eq!(flat["loss"], 0.5);
        assert_eq!(flat["accuracy"], 0.8);
        assert_eq!(flat["balanced_accuracy"], 0.875);
        assert_eq!(flat["roc_auc"], 0.9);
        c.roc_auc = None;
        let e = eval(Metrics::Classification(c));
        assert_eq!(keys(&e), ["accuracy", "balanced_accuracy", "loss"]);
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
    fn errors_are_lower_is_better() {
        for m in ["loss", "mse", "mae"] {
            assert!(!higher_is_better(m), "{m}");
        }
        for m in ["accuracy", "balanced_accuracy", "roc_auc", "r2"] {
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
