//! Gradient checking: backpropagation against central differences.
//!
//! The numerical gradient of parameter `θ` is `(L(θ + ε) - L(θ - ε)) / 2ε`, with the loss
//! recomputed by a full forward pass (same noise/dropout draws, since those depend only on the
//! [`NoiseKey`]). In f32 use `ε ≈ 1e-3` and tolerances around 2e-2 relative (with [`ABS_SCALE`]).

use crate::mlp::{Mlp, NoiseKey};
use ndarray::{Array1, Array2, ArrayView2, s};

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
    /// Scalars left out by [`gradient_check_piecewise`] because the loss is not smooth within
    /// `ε` of them (0 for [`gradient_check`]).
    pub skipped: usize,
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
    check(model, x, y, key, eps, false)
}

/// [`gradient_check`] for networks whose loss is piecewise smooth (max pooling, ReLU): a
/// parameter whose forward and backward differences over `ε` disagree (by the measure of
/// [`GradCheck::max_error`], above 2e-2) has a kink within `ε` (a window's maximum changes
/// hands, a unit crosses zero), where no derivative exists to compare; it is counted in
/// [`GradCheck::skipped`] instead. Everywhere else the loss is smooth and backpropagation must
/// agree.
///
/// # Panics
/// As [`gradient_check`].
pub fn gradient_check_piecewise(
    model: &Mlp,
    x: ArrayView2<f32>,
    y: ArrayView2<f32>,
    key: Option<NoiseKey>,
    eps: f32,
) -> GradCheck {
    check(model, x, y, key, eps, true)
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(ABS_SCALE)
}

fn check(
    model: &Mlp,
    x: ArrayView2<f32>,
    y: ArrayView2<f32>,
    key: Option<NoiseKey>,
    eps: f32,
    piecewise: bool,
) -> GradCheck {
    let rows = x.nrows();
    let mut ws = model.workspace(rows, y.ncols());
    ws.x.assign(&x);
    ws.y.assign(&y);
    model.forward_backward(&mut ws, rows, key);
    let mut probe = model.clone();
    // The loss at the unperturbed parameters, the middle point of every one-sided difference.
    let here = piecewise.then(|| loss(model, x, y, key));
    let mut out = GradCheck {
        max_error: 0.0,
        worst: String::new(),
        checked: 0,
        skipped: 0,
    };
    // Every layer with weights: (image layer?, index), convolutions first.
    let image = (0..model.spatial.len())
        .filter(|&j| model.spatial[j].has_weights() && !model.spatial[j].frozen)
        .map(|j| (true, j));
    let dense = (0..model.layers.len())
        .filter(|&l| !model.layers[l].frozen)
        .map(|l| (false, l));
    for (is_image, l) in image.chain(dense).collect::<Vec<_>>() {
        let (grad_w, grad_b) = if is_image {
            (&ws.sp[l].grad_w, &ws.sp[l].grad_b)
        } else {
            (&ws.grad_w[l], &ws.grad_b[l])
        };
        let (nw, nb, cols) = {
            let (w, b) = params(&mut probe, is_image, l);
            (w.len(), b.len(), w.ncols())
        };
        for i in 0..nw + nb {
            let analytic = if i < nw {
                grad_w.as_slice().expect("standard")[i]
            } else {
                grad_b[i - nw]
            };
            let set = |p: &mut Mlp, v: Option<f32>| -> f32 {
                let (w, b) = params(p, is_image, l);
                let slot = if i < nw {
                    &mut w.as_slice_mut().expect("standard")[i]
                } else {
                    &mut b[i - nw]
                };
                let old = *slot;
                if let Some(v) = v {
                    *slot = v;
                }
                old
            };
            let orig = set(&mut probe, None);
            let mut at = |h: f32| {
                set(&mut probe, Some(orig + h));
                let l = loss(&probe, x, y, key);
                set(&mut probe, Some(orig));
                l
            };
            let (up, down) = (at(eps), at(-eps));
            let numeric = (up - down) / (2.0 * f64::from(eps));
            if let Some(here) = here {
                // A kink within ε makes the one-sided slopes differ by its jump.
                let h = f64::from(eps);
                if relative((up - here) / h, (here - down) / h) > 2e-2 {
                    out.skipped += 1;
                    continue;
                }
            }
            let a = f64::from(analytic);
            let err = relative(a, numeric);
            out.checked += 1;
            if err > out.max_error || out.worst.is_empty() {
                out.max_error = err;
                let what = if i < nw {
                    format!("weight [{}, {}]", i / cols, i % cols)
                } else {
                    format!("bias [{}]", i - nw)
                };
                let name = if is_image { "image layer" } else { "layer" };
                out.worst = format!("{name} {l} {what}: backprop {a:.6} vs numeric {numeric:.6}");
            }
        }
    }
    out
}

/// The weights and biases of image layer `l` (`is_image`) or dense layer `l`.
fn params(p: &mut Mlp, is_image: bool, l: usize) -> (&mut Array2<f32>, &mut Array1<f32>) {
    if is_image {
        let s = &mut p.spatial[l];
        (&mut s.weight, &mut s.bias)
    } else {
        let d = &mut p.layers[l];
        (&mut d.weight, &mut d.bias)
    }
}
