//! Activation functions, applied in place and fused with the bias addition.

use ndarray::{ArrayView2, ArrayViewMut2};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Negative-side slope of [`Activation::LeakyRelu`].
pub const LEAKY_SLOPE: f32 = 0.01;

/// An element-wise (or, for softmax, row-wise) activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(0, x)`.
    Relu,
    /// `x` for `x > 0`, else `0.01 x` (Maas et al. 2013).
    LeakyRelu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `x`.
    Identity,
    /// Heaviside step: 1 for `x > 0`, else 0. Its derivative is zero almost everywhere, so no
    /// gradient can be learnt through it (allowed only in frozen layers).
    Step,
    /// Row-wise softmax with the max subtracted first (numerically stable).
    Softmax,
}

impl Activation {
    /// True for the ReLU family (He initialisation under `init: auto`).
    pub fn is_relu_family(self) -> bool {
        matches!(self, Activation::Relu | Activation::LeakyRelu)
    }

    /// Adds `bias` to every row of `z`, then applies the activation in place.
    ///
    /// # Shapes
    /// `z: [batch, units]`, `bias: [units]`.
    ///
    /// # Panics
    /// If `z` is not in standard (row-major, contiguous rows) layout or the bias length differs.
    pub fn bias_forward(self, mut z: ArrayViewMut2<f32>, bias: &[f32]) {
        assert_eq!(z.ncols(), bias.len(), "bias length");
        for mut row in z.rows_mut() {
            let r = row.as_slice_mut().expect("contiguous rows");
            match self {
                Activation::Relu => {
                    for (v, b) in r.iter_mut().zip(bias) {
                        *v = (*v + b).max(0.0);
                    }
                }
                Activation::LeakyRelu => {
                    for (v, b) in r.iter_mut().zip(bias) {
                        let x = *v + b;
                        *v = if x > 0.0 { x } else { LEAKY_SLOPE * x };
                    }
                }
                Activation::Sigmoid => {
                    for (v, b) in r.iter_mut().zip(bias) {
                        *v = sigmoid(*v + b);
                    }
                }
                Activation::Tanh => {
                    for (v, b) in r.iter_mut().zip(bias) {
                        *v = (*v + b).tanh();
                    }
                }
                Activation::Identity => {
                    for (v, b) in r.iter_mut().zip(bias) {
                        *v += b;
                    }
                }
                Activation::Step => {
                    for (v, b) in r.iter_mut().zip(bias) {
                        *v = if *v + b > 0.0 { 1.0 } else { 0.0 };
                    }
                }
                Activation::Softmax => {
                    for (v, b) in r.iter_mut().zip(bias) {
                        *v += b;
                    }
                    softmax_in_place(r);
                }
            }
        }
    }

    /// Turns `g` (gradient with respect to the activation's output) into the gradient with
    /// respect to its input, using the stored outputs `a`.
    ///
    /// # Shapes
    /// `g: [batch, units]`, `a: [batch, units]`.
    ///
    /// # Panics
    /// If the shapes differ or the arrays are not row-contiguous.
    pub fn backward_in_place(self, mut g: ArrayViewMut2<f32>, a: ArrayView2<f32>) {
        assert_eq!(g.dim(), a.dim(), "gradient and activation shapes");
        let cols = g.ncols();
        if let (Some(gs), Some(as_)) = (g.as_slice_mut(), a.as_slice()) {
            // One pass over the whole block (rows may be a few channels long).
            return self.backward_slice(gs, as_, cols);
        }
        for (mut grow, arow) in g.rows_mut().into_iter().zip(a.rows()) {
            let gr = grow.as_slice_mut().expect("contiguous rows");
            let ar = arow.as_slice().expect("contiguous rows");
            self.backward_slice(gr, ar, cols);
        }
    }

    /// [`Activation::backward_in_place`] over matching slices of whole rows of `cols` values.
    fn backward_slice(self, gr: &mut [f32], ar: &[f32], cols: usize) {
        match self {
            Activation::Relu => {
                for (g, &a) in gr.iter_mut().zip(ar) {
                    *g = if a > 0.0 { *g } else { 0.0 };
                }
            }
            Activation::LeakyRelu => {
                for (g, &a) in gr.iter_mut().zip(ar) {
                    *g = if a > 0.0 { *g } else { LEAKY_SLOPE * *g };
                }
            }
            Activation::Sigmoid => {
                for (g, &a) in gr.iter_mut().zip(ar) {
                    *g *= a * (1.0 - a);
                }
            }
            Activation::Tanh => {
                for (g, &a) in gr.iter_mut().zip(ar) {
                    *g *= 1.0 - a * a;
                }
            }
            Activation::Identity => {}
            Activation::Step => gr.fill(0.0),
            Activation::Softmax => {
                // Jacobian-vector product per row: dz = s * (g - <g, s>).
                for (gr, ar) in gr
                    .chunks_exact_mut(cols.max(1))
                    .zip(ar.chunks_exact(cols.max(1)))
                {
                    let dot: f32 = gr.iter().zip(ar).map(|(g, s)| g * s).sum();
                    for (g, &s) in gr.iter_mut().zip(ar) {
                        *g = s * (*g - dot);
                    }
                }
            }
        }
    }
}

/// The logistic function, written to avoid overflow for large negative inputs.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Softmax of one row, in place, with the maximum subtracted first.
pub fn softmax_in_place(r: &mut [f32]) {
    let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0f32;
    for v in r.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    let inv = 1.0 / s;
    for v in r.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn softmax_is_stable_for_huge_logits() {
        let mut z = array![[1000.0f32, 1000.0, -1000.0]];
        Activation::Softmax.bias_forward(z.view_mut(), &[0.0, 0.0, 0.0]);
        assert_eq!(z, array![[0.5f32, 0.5, 0.0]]);
    }

    #[test]
    fn sigmoid_extremes_are_finite() {
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(0.0), 0.5);
    }

    #[test]
    fn step_and_relu_forward() {
        let mut z = array![[-1.0f32, 0.5]];
        Activation::Step.bias_forward(z.view_mut(), &[0.0, 0.0]);
        assert_eq!(z, array![[0.0f32, 1.0]]);
        let mut z = array![[-1.0f32, 0.5]];
        Activation::Relu.bias_forward(z.view_mut(), &[0.25, 0.25]);
        assert_eq!(z, array![[0.0f32, 0.75]]);
    }
}
