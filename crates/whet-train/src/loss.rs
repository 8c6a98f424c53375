//! Losses, each fused with its output activation: the network's last layer produces logits `z`
//! and the loss works on them directly, which is both cheaper and numerically stable.
//!
//! All three fused pairs have the same gradient with respect to the logits, `dL/dz = a - y`
//! (divided by the batch size, since the loss is the batch mean).

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

    /// Computes the summed loss over the rows of `z` and overwrites `z` with `scale * dL/dz`.
    ///
    /// # Shapes
    /// `z: [batch, outputs]` (logits in, gradient out), `y: [batch, outputs]`.
    ///
    /// # Panics
    /// If the shapes differ or rows are not contiguous.
    pub fn loss_and_grad(self, mut z: ArrayViewMut2<f32>, y: ArrayView2<f32>, scale: f32) -> f64 {
        assert_eq!(z.dim(), y.dim(), "logits and targets shapes");
        let mut total = 0.0f64;
        for (mut zr, yr) in z.rows_mut().into_iter().zip(y.rows()) {
            let zs = zr.as_slice_mut().expect("contiguous rows");
            let ys = yr.as_slice().expect("contiguous rows");
            total += self.row_loss(zs, ys);
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

    /// Turns logits into outputs in place (probabilities, or the identity for MSE).
    pub fn activate(self, mut z: ArrayViewMut2<f32>) {
        let zero = vec![0.0; z.ncols()];
        match self {
            LossKind::Mse => {}
            _ => self.activation().bias_forward(z.view_mut(), &zero),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn cross_entropy_is_stable_and_correct() {
        let mut z = array![[1000.0f32, 0.0], [0.0, 0.0]];
        let y = array![[0.0f32, 1.0], [1.0, 0.0]];
        let l = LossKind::CrossEntropy.loss_and_grad(z.view_mut(), y.view(), 0.5);
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
