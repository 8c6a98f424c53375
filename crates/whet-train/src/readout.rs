//! [`Readout`]: the one place a network's raw outputs become predictions (a class, or a value in
//! the target's units). Evaluation reads the network through it; so do predictions and exported
//! models built on whet.

use ndarray::{Array2, ArrayView2};
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

    #[test]
    #[should_panic(expected = "regression")]
    fn scale_on_classes_panics() {
        let _ = Readout::new(Task::Binary).with_target_scale(Some(TargetScale {
            mean: 0.0,
            std: 1.0,
        }));
    }
}
