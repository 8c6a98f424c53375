//! Losses, each fused with its output activation: the network's last layer produces logits `z`
//! and the loss works on them directly, which is both cheaper and numerically stable.
//!
//! All three fused pairs have the same gradient with respect to the logits, `dL/dz = a - y`
//! (divided by the batch size, since the loss is the batch mean).
//!
//! With [`ClassWeights`] each sample's loss (and so its gradient) is multiplied by the weight of
//! its class: `w_y · L`, the batch loss staying the sum divided by the batch size (as
//! scikit-learn's `class_weight`; with `balanced` weights the mean weight over the training set
//! is 1, so the loss keeps its scale).

use crate::activation::{Activation, sigmoid, softmax_in_place};
use ndarray::{ArrayView2, ArrayViewMut2};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A loss function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// `1/2 sum_j (a_j - y_j)^2` per sample, after the identity.
    Mse,
    /// `-(y ln a + (1 - y) ln(1 - a))` per sample, after the sigmoid; computed from the logit
    /// as `max(z, 0) - z y + ln(1 + e^-|z|)`.
    BinaryCrossEntropy,
    /// `-sum_j y_j ln softmax(z)_j` per sample, computed as `sum_j y_j (lse(z) - z_j)` with the
    /// log-sum-exp `lse` taken after subtracting the row maximum.
    CrossEntropy,
}

impl LossKind {
    /// The output activation this loss is fused with.
    pub fn activation(self) -> Activation {
        match self {
            LossKind::Mse => Activation::Identity,
            LossKind::BinaryCrossEntropy => Activation::Sigmoid,
            LossKind::CrossEntropy => Activation::Softmax,
        }
    }

    /// Loss of one row of logits `z` against targets `y`.
    pub fn row_loss(self, z: &[f32], y: &[f32]) -> f64 {
        match self {
            LossKind::Mse => z
                .iter()
                .zip(y)
                .map(|(&z, &y)| 0.5 * f64::from(z - y).powi(2))
                .sum(),
            LossKind::BinaryCrossEntropy => z
                .iter()
                .zip(y)
                .map(|(&z, &y)| {
                    let z = f64::from(z);
                    z.max(0.0) - z * f64::from(y) + (-z.abs()).exp().ln_1p()
                })
                .sum(),
            LossKind::CrossEntropy => {
                let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let s: f64 = z.iter().map(|&v| f64::from(v - m).exp()).sum();
                let lse = f64::from(m) + s.ln();
                z.iter()
                    .zip(y)
                    .filter(|(_, y)| **y != 0.0)
                    .map(|(&z, &y)| f64::from(y) * (lse - f64::from(z)))
                    .sum()
            }
        }
    }

    /// Loss of one row, multiplied by its class weight when `weights` are given.
    pub fn weighted_row_loss(self, z: &[f32], y: &[f32], weights: Option<&ClassWeights>) -> f64 {
        let l = self.row_loss(z, y);
        match weights {
            Some(w) => f64::from(w.row_weight(y)) * l,
            None => l,
        }
    }

    /// Computes the summed loss over the rows of `z` (each row weighted by its class weight when
    /// `weights` are given) and overwrites `z` with `scale * dL/dz`.
    ///
    /// # Shapes
    /// `z: [batch, outputs]` (logits in, gradient out), `y: [batch, outputs]`.
    ///
    /// # Panics
    /// If the shapes differ or rows are not contiguous.
    pub fn loss_and_grad(
        self,
        mut z: ArrayViewMut2<f32>,
        y: ArrayView2<f32>,
        scale: f32,
        weights: Option<&ClassWeights>,
    ) -> f64 {
        assert_eq!(z.dim(), y.dim(), "logits and targets shapes");
        let mut total = 0.0f64;
        for (mut zr, yr) in z.rows_mut().into_iter().zip(y.rows()) {
            let zs = zr.as_slice_mut().expect("contiguous rows");
            let ys = yr.as_slice().expect("contiguous rows");
            total += self.weighted_row_loss(zs, ys, weights);
            let scale = match weights {
                Some(w) => scale * w.row_weight(ys),
                None => scale,
            };
            match self {
                LossKind::Mse => {
                    for (z, &y) in zs.iter_mut().zip(ys) {
                        *z = (*z - y) * scale;
                    }
                }
                LossKind::BinaryCrossEntropy => {
                    for (z, &y) in zs.iter_mut().zip(ys) {
                        *z = (sigmoid(*z) - y) * scale;
                    }
                }
                LossKind::CrossEntropy => {
                    let ysum: f32 = ys.iter().sum();
                    softmax_in_place(zs);
                    for (z, &y) in zs.iter_mut().zip(ys) {
                        *z = (*z * ysum - y) * scale;
                    }
                }
            }
        }
        total
    }
}

/// Per-class loss weights by class index (binary: index 0 the negative class, 1 the positive
/// one), each a finite number > 0. `whet` resolves `train.class_weights` (label names, or
/// `balanced`) into these; the trainer never sees label names.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassWeights(Vec<f32>);

impl ClassWeights {
    /// Weights by class index.
    ///
    /// # Errors
    /// A message when the list is empty or a weight is not a finite number > 0.
    pub fn new(weights: Vec<f32>) -> Result<Self, String> {
        if weights.is_empty() {
            return Err("expected one weight per class, found none".into());
        }
        if let Some((i, w)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !(w.is_finite() && **w > 0.0))
        {
            return Err(format!(
                "class {i}: expected a finite weight > 0, found {}",
                whet_core::spec::fmt_number(f64::from(*w))
            ));
        }
        Ok(Self(weights))
    }

    /// scikit-learn's `balanced` weights from the training split's class counts:
    /// `n_samples / (n_classes × count_c)`, with `n_classes` the classes that occur. A class
    /// without training samples gets weight 1 (no sample carries it).
    ///
    /// # Errors
    /// A message when no class has a sample.
    pub fn balanced(counts: &[u64]) -> Result<Self, String> {
        let n: u64 = counts.iter().sum();
        let present = counts.iter().filter(|c| **c > 0).count();
        if n == 0 {
            return Err("the training split has no samples to balance".into());
        }
        Self::new(
            counts
                .iter()
                .map(|&c| {
                    if c == 0 {
                        1.0
                    } else {
                        (n as f64 / (present as f64 * c as f64)) as f32
                    }
                })
                .collect(),
        )
    }

    /// The weights, by class index.
    pub fn get(&self) -> &[f32] {
        &self.0
    }

    /// The weight of a target row: `sum_j y_j w_j` for one-hot rows, `y w_1 + (1 - y) w_0` for
    /// one binary column.
    pub fn row_weight(&self, y: &[f32]) -> f32 {
        if y.len() == 1 && self.0.len() == 2 {
            y[0] * self.0[1] + (1.0 - y[0]) * self.0[0]
        } else {
            y.iter().zip(&self.0).map(|(y, w)| y * w).sum()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn weighted_losses_scale_loss_and_gradient_per_row() {
        let w = ClassWeights::new(vec![0.5, 3.0]).unwrap();
        // Binary: the positive row counts 3 times, the negative one half.
        let mut z = array![[0.3f32], [-0.2]];
        let y = array![[1.0f32], [0.0]];
        let plain: Vec<f64> = (0..2)
            .map(|i| LossKind::BinaryCrossEntropy.row_loss(&[z[[i, 0]]], &[y[[i, 0]]]))
            .collect();
        let mut zp = z.clone();
        let lp = LossKind::BinaryCrossEntropy.loss_and_grad(zp.view_mut(), y.view(), 0.5, None);
        let l = LossKind::BinaryCrossEntropy.loss_and_grad(z.view_mut(), y.view(), 0.5, Some(&w));
        assert!((lp - plain[0] - plain[1]).abs() < 1e-12);
        assert!((l - (3.0 * plain[0] + 0.5 * plain[1])).abs() < 1e-12, "{l}");
        assert_eq!(z[[0, 0]], zp[[0, 0]] * 3.0);
        assert_eq!(z[[1, 0]], zp[[1, 0]] * 0.5);
        // Cross-entropy: the weight of the true class.
        let w3 = ClassWeights::new(vec![1.0, 2.0, 4.0]).unwrap();
        let mut z = array![[1.0f32, 0.0, -1.0]];
        let y = array![[0.0f32, 0.0, 1.0]];
        let plain = LossKind::CrossEntropy.row_loss(&[1.0, 0.0, -1.0], &[0.0, 0.0, 1.0]);
        let l = LossKind::CrossEntropy.loss_and_grad(z.view_mut(), y.view(), 1.0, Some(&w3));
        assert!((l - 4.0 * plain).abs() < 1e-9);
        let sum: f32 = z.iter().sum();
        assert!(sum.abs() < 1e-6, "softmax gradient sums to 0: {sum}");
        assert!((z[[0, 2]] - 4.0 * (softmax3(&[1.0, 0.0, -1.0])[2] - 1.0)).abs() < 1e-6);
    }

    fn softmax3(z: &[f32]) -> Vec<f32> {
        let e: Vec<f32> = z.iter().map(|v| v.exp()).collect();
        let s: f32 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    #[test]
    fn balanced_weights_follow_scikit_learn() {
        // 6 negatives, 2 positives: 8 / (2 × 6) and 8 / (2 × 2).
        let w = ClassWeights::balanced(&[6, 2]).unwrap();
        assert_eq!(w.get(), &[8.0 / 12.0, 2.0]);
        // The mean weight over the samples is 1.
        assert!((6.0 * w.get()[0] + 2.0 * w.get()[1] - 8.0).abs() < 1e-6);
        // An absent class weighs 1 and does not count among the classes.
        assert_eq!(
            ClassWeights::balanced(&[3, 0, 1]).unwrap().get(),
            &[4.0 / 6.0, 1.0, 2.0]
        );
        assert!(ClassWeights::balanced(&[0, 0]).is_err());
    }

    #[test]
    fn class_weights_must_be_finite_and_positive() {
        for bad in [vec![], vec![1.0, 0.0], vec![-1.0, 1.0], vec![f32::NAN, 1.0]] {
            assert!(ClassWeights::new(bad.clone()).is_err(), "{bad:?}");
        }
        let e = ClassWeights::new(vec![1.0, -2.0]).unwrap_err();
        assert!(e.contains("class 1") && e.contains("-2"), "{e}");
        assert_eq!(
            ClassWeights::new(vec![1.0, 2.0])
                .unwrap()
                .row_weight(&[0.0]),
            1.0
        );
    }

    #[test]
    fn cross_entropy_is_stable_and_correct() {
        let mut z = array![[1000.0f32, 0.0], [0.0, 0.0]];
        let y = array![[0.0f32, 1.0], [1.0, 0.0]];
        let l = LossKind::CrossEntropy.loss_and_grad(z.view_mut(), y.view(), 0.5, None);
        assert!((l - (1000.0 + std::f64::consts::LN_2)).abs() < 1e-6, "{l}");
        assert_eq!(z, array![[0.5f32, -0.5], [-0.25, 0.25]]);
    }

    #[test]
    fn bce_from_logits_matches_definition() {
        let z = [0.3f32];
        let y = [1.0f32];
        let a = 1.0 / (1.0 + (-0.3f64).exp());
        assert!((LossKind::BinaryCrossEntropy.row_loss(&z, &y) + a.ln()).abs() < 1e-6);
        assert!(
            LossKind::BinaryCrossEntropy
                .row_loss(&[-200.0], &[1.0])
                .is_finite()
        );
    }

    #[test]
    fn mse_has_half_factor() {
        assert_eq!(LossKind::Mse.row_loss(&[3.0, 1.0], &[1.0, 1.0]), 2.0);
    }
}
