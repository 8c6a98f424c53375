//! Gradient checking: backpropagation against central differences.
//!
//! The numerical gradient of parameter `θ` is `(L(θ + ε) - L(θ - ε)) / 2ε`, with the loss
//! recomputed by a full forward pass (same noise/dropout draws, since those depend only on the
//! [`NoiseKey`]). In f32 use `ε ≈ 1e-3` and tolerances around 2e-2 relative (with [`ABS_SCALE`]).

use crate::mlp::{Mlp, NoiseKey};
use ndarray::{ArrayView2, s};

/// Gradients smaller than this are compared absolutely: f32 rounding in the loss makes the
/// central difference uncertain by about `1e-7 · |L| / ε`, i.e. around 1e-4 for `ε = 1e-3`.
pub const ABS_SCALE: f64 = 5e-2;

/// The largest disagreement found by [`gradient_check`].
#[derive(Debug, Clone, PartialEq)]
pub struct GradCheck {
    /// Largest `|analytic - numeric| / max(ABS_SCALE, |analytic|, |numeric|)` over all checked
    /// scalars (see [`ABS_SCALE`]).
    pub max_error: f64,
    /// Where it happened, e.g. `layer 1 weight [3, 0]: backprop 0.12 vs numeric 0.13`.
    pub worst: String,
    /// Number of scalars checked (frozen layers are skipped).
    pub checked: usize,
}

/// Mean loss of `model` on `x`, `y` (the forward pass of training with `key`; each row weighted
/// by its class weight when the model has [`crate::ClassWeights`]).
pub fn loss(model: &Mlp, x: ArrayView2<f32>, y: ArrayView2<f32>, key: Option<NoiseKey>) -> f64 {
    let rows = x.nrows();
    let mut ws = model.workspace(rows, y.ncols());
    ws.x.assign(&x);
    model.forward(&mut ws, rows, key);
    let z = ws.logits().slice_move(s![..rows, ..]);
    let total: f64 = z
        .rows()
        .into_iter()
        .zip(y.rows())
        .map(|(z, y)| model.row_loss(z.as_slice().expect("rows"), y.as_slice().expect("rows")))
        .sum();
    total / rows as f64
}

/// Compares backpropagated gradients with central differences for every trainable parameter.
///
/// # Panics
/// If `x`/`y` do not fit the model, or are not in standard layout.
pub fn gradient_check(
    model: &Mlp,
    x: ArrayView2<f32>,
    y: ArrayView2<f32>,
    key: Option<NoiseKey>,
    eps: f32,
) -> GradCheck {
    let rows = x.nrows();
    let mut ws = model.workspace(rows, y.ncols());
    ws.x.assign(&x);
    ws.y.assign(&y);
    model.forward_backward(&mut ws, rows, key);
    let mut probe = model.clone();
    let mut out = GradCheck {
        max_error: 0.0,
        worst: String::new(),
        checked: 0,
    };
    for l in 0..model.layers.len() {
        if model.layers[l].frozen {
            continue;
        }
        let nw = model.layers[l].weight.len();
        let nb = model.layers[l].bias.len();
        for i in 0..nw + nb {
            let (analytic, orig) = if i < nw {
                let v = &mut probe.layers[l].weight.as_slice_mut().expect("standard")[i];
                (ws.grad_w[l].as_slice().expect("standard")[i], *v)
            } else {
                (ws.grad_b[l][i - nw], probe.layers[l].bias[i - nw])
            };
            let set = |p: &mut Mlp, v: f32| {
                if i < nw {
                    p.layers[l].weight.as_slice_mut().expect("standard")[i] = v;
                } else {
                    p.layers[l].bias[i - nw] = v;
                }
            };
            set(&mut probe, orig + eps);
            let up = loss(&probe, x, y, key);
            set(&mut probe, orig - eps);
            let down = loss(&probe, x, y, key);
            set(&mut probe, orig);
            let numeric = (up - down) / (2.0 * f64::from(eps));
            let a = f64::from(analytic);
            let err = (a - numeric).abs() / a.abs().max(numeric.abs()).max(ABS_SCALE);
            out.checked += 1;
            if err > out.max_error || out.worst.is_empty() {
                out.max_error = err;
                let what = if i < nw {
                    let c = model.layers[l].outputs();
                    format!("weight [{}, {}]", i / c, i % c)
                } else {
                    format!("bias [{}]", i - nw)
                };
                out.worst = format!("layer {l} {what}: backprop {a:.6} vs numeric {numeric:.6}");
            }
        }
    }
    out
}
