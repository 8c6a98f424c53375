//! [`Readout`]: the one place a network's raw outputs become predictions (a class, or a value in
//! the target's units). Evaluation reads the network through it; so do predictions and exported
//! models built on whet.

use ndarray::{Array2, ArrayView2, s};
use whet_core::TargetScale;

use crate::config::Task;
use crate::decision::Decision;
use crate::mlp::Mlp;

/// How a network's raw outputs (the output layer before its activation: logits, or values)
/// become predictions:
/// - classification: the class with the largest logit (the largest softmax probability);
/// - binary: class 1 when the sigmoid score is above the network's threshold (0.5 unless
///   `model.threshold` says otherwise);
/// - regression: the output, turned back into the target's units by the target's
///   [`TargetScale`] when the network was trained on a standardised target.
///
/// Labels come from the network's [`Decision`]; the readout adds the target's scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Readout {
    decision: Decision,
    target_scale: Option<TargetScale>,
}

impl Readout {
    /// The readout of a network for `task` with the default decision ([`Decision::new`]) whose
    /// outputs are in the target's units.
    pub fn new(task: Task) -> Self {
        Readout {
            decision: Decision::new(task),
            target_scale: None,
        }
    }

    /// The readout of `model`: its [`Mlp::decision`] (task and binary threshold), outputs in
    /// the target's units.
    pub fn of(model: &Mlp) -> Self {
        Readout {
            decision: model.decision(),
            target_scale: None,
        }
    }

    /// The readout of a regression network trained on targets standardised with `scale`
    /// (`None`: trained on the raw values).
    ///
    /// # Panics
    /// When `scale` is given for a task other than regression (class targets are not scaled).
    pub fn with_target_scale(mut self, scale: Option<TargetScale>) -> Self {
        assert!(
            scale.is_none() || self.task() == Task::Regression,
            "a target scale is for regression networks"
        );
        self.target_scale = scale;
        self
    }

    /// The task.
    pub fn task(&self) -> Task {
        self.decision.task()
    }

    /// The decision that gives labels.
    pub fn decision(&self) -> Decision {
        self.decision
    }

    /// The target's scale, when the network predicts standardised values.
    pub fn target_scale(&self) -> Option<TargetScale> {
        self.target_scale
    }

    /// The predicted class of one row of logits (classification and binary tasks; 0 for
    /// regression): [`Decision::label`].
    pub fn label(&self, logits: &[f32]) -> usize {
        self.decision.label(logits)
    }

    /// One regression output (as the network gives it, or a target as the network was trained
    /// on it) in the target's original units.
    pub fn value(&self, raw: f32) -> f64 {
        match self.target_scale {
            Some(s) => s.invert(raw),
            None => f64::from(raw),
        }
    }

    /// [`Readout::value`] of every output of a batch ([`crate::Mlp::predict`] of a regression
    /// network).
    ///
    /// # Shapes
    /// `raw: [n, outputs]` -> `[n, outputs]`.
    pub fn values(&self, raw: ArrayView2<f32>) -> Array2<f64> {
        raw.mapv(|v| self.value(v))
    }

    /// Scores `x` with `model` in evaluation mode (no noise, no dropout), in batches of at most
    /// 1024 rows: per row, the outputs of the [`Decision`] and the label
    /// ([`Readout::label`]), or for regression the values in the target's units
    /// ([`Readout::value`]).
    ///
    /// # Shapes
    /// `x: [n, input_dim]` -> `probabilities: [n, output_dim]`, `labels: [n]`, `values:
    /// [n, 0]` (classification and binary); `probabilities: [n, 0]`, `labels: []`, `values:
    /// [n, output_dim]` (regression).
    ///
    /// # Panics
    /// If `x` does not have [`Mlp::input_dim`] columns or `model` is for another task (callers
    /// check both).
    pub fn predict(&self, model: &Mlp, x: ArrayView2<f32>) -> Predictions {
        assert_eq!(x.ncols(), model.input_dim(), "input columns");
        assert_eq!(model.task(), self.task(), "the readout's task");
        let n = x.nrows();
        let regression = self.task() == Task::Regression;
        let k = model.output_dim();
        let (pk, vk) = if regression { (0, k) } else { (k, 0) };
        let mut out = Predictions {
            probabilities: Array2::zeros((n, pk)),
            labels: Vec::with_capacity(if regression { 0 } else { n }),
            values: Array2::zeros((n, vk)),
        };
        let mut ws = model.workspace(model.eval_rows(n), 0);
        let mut start = 0;
        while start < n {
            let rows = (n - start).min(ws.capacity());
            ws.x.slice_mut(s![..rows, ..])
                .assign(&x.slice(s![start..start + rows, ..]));
            model.forward(&mut ws, rows, None);
            let mut z = ws.logits().slice(s![..rows, ..]).to_owned();
            if regression {
                out.values
                    .slice_mut(s![start..start + rows, ..])
                    .assign(&self.values(z.view()));
            } else {
                for r in z.rows() {
                    out.labels
                        .push(self.label(r.as_slice().expect("contiguous rows")));
                }
                self.decision.outputs(z.view_mut());
                out.probabilities
                    .slice_mut(s![start..start + rows, ..])
                    .assign(&z);
            }
            start += rows;
        }
        out
    }
}

/// The predictions of a batch of rows ([`Readout::predict`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Classification: the class probabilities (softmax); binary: the positive-class
    /// probability (sigmoid). No columns for regression.
    ///
    /// # Shapes
    /// `[rows, output_dim]` (regression: `[rows, 0]`).
    pub probabilities: Array2<f32>,
    /// The label (class index) of each row; empty for regression.
    pub labels: Vec<usize>,
    /// Regression: the predicted values in the target's units. No columns otherwise.
    ///
    /// # Shapes
    /// `[rows, output_dim]` (classification and binary: `[rows, 0]`).
    pub values: Array2<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_values() {
        let c = Readout::new(Task::Classification);
        assert_eq!(c.label(&[0.1, 2.0, -1.0]), 1);
        let b = Readout::new(Task::Binary);
        assert_eq!(
            (b.label(&[0.2]), b.label(&[-0.2]), b.label(&[0.0])),
            (1, 0, 0)
        );
        let r = Readout::new(Task::Regression);
        assert_eq!(r.value(1.5), 1.5);
        let s = TargetScale {
            mean: 40.0,
            std: 10.0,
        };
        let r = r.with_target_scale(Some(s));
        assert_eq!(r.value(1.5), 55.0);
        assert_eq!(
            r.values(ndarray::array![[0.0f32], [-1.0]].view()),
            ndarray::array![[40.0], [30.0]]
        );
    }

    /// A one-input network whose output is its input (a logit, or a standardised value).
    fn identity(cfg: &crate::config::ModelConfig) -> Mlp {
        let train = crate::TrainConfig::new(crate::OptimizerConfig::adam(0.01));
        let mut net = crate::build_model(cfg, &train, None, 1, 1, 0).unwrap();
        net.layers[0].weight.fill(1.0);
        net.layers[0].bias.fill(0.0);
        net
    }

    #[test]
    fn predict_uses_the_threshold_and_the_scale() {
        use crate::config::ModelConfig;
        let x = ndarray::array![[0.5f32], [1.0], [-1.0], [0.0]];
        let mut net = identity(&ModelConfig::binary());
        // Threshold 0.7 is a logit of ln(0.7 / 0.3) = 0.847: 0.5 is below it, 1.0 above.
        net.set_threshold(0.7).unwrap();
        let p = Readout::of(&net).predict(&net, x.view());
        assert_eq!(p.labels, [0, 1, 0, 0]);
        assert_eq!(p.probabilities.dim(), (4, 1));
        assert_eq!(p.values.dim(), (4, 0));
        assert!((p.probabilities[[3, 0]] - 0.5).abs() < 1e-7);
        assert!((f64::from(p.probabilities[[1, 0]]) - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-6);
        let net = identity(&ModelConfig::regression());
        let r = Readout::of(&net).with_target_scale(Some(TargetScale {
            mean: 40.0,
            std: 10.0,
        }));
        let p = r.predict(&net, x.view());
        assert!(p.labels.is_empty());
        assert_eq!(p.probabilities.dim(), (4, 0));
        assert_eq!(p.values.column(0).to_vec(), [45.0, 50.0, 30.0, 40.0]);
    }

    #[test]
    #[should_panic(expected = "regression")]
    fn scale_on_classes_panics() {
        let _ = Readout::new(Task::Binary).with_target_scale(Some(TargetScale {
            mean: 0.0,
            std: 1.0,
        }));
    }
}
