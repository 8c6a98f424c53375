//! Optimizers: their configs ([`OptimizerConfig`], YAML key `train.optimizer`, one struct per
//! kind) and the [`Optimizer`] that applies them, with per-parameter state.
//!
//! Every parameter tensor has an id (layer `l`: weights `2l`, biases `2l + 1`) and its own state
//! (velocity, moment estimates, step count). Updates are element-wise, so they are split into
//! two fixed halves across rayon threads without any effect on the result (a dense layer's
//! weights at the input row where its other passes cut them). Heavy-ball momentum's velocity of
//! a dense layer's weights is updated by the training step's weight-gradient product itself
//! (`Optimizer::velocity`), so that gradient is never stored and read back.

use crate::config::bounded;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::{Issues, Positive, Probability};

/// Plain stochastic gradient descent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SgdConfig {
    /// Learning rate. Default 0.01.
    #[serde(default = "lr_01")]
    pub lr: Positive,
}

/// SGD with (heavy-ball) momentum or Nesterov momentum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MomentumConfig {
    /// Learning rate. Default 0.01.
    #[serde(default = "lr_01")]
    pub lr: Positive,
    /// Momentum coefficient in [0, 1). Default 0.9.
    #[serde(default = "p_09")]
    pub momentum: Probability,
}

/// AdaGrad.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdagradConfig {
    /// Learning rate. Default 0.01.
    #[serde(default = "lr_01")]
    pub lr: Positive,
    /// Added to the root of the accumulated squares. Default 1e-8.
    #[serde(default = "eps")]
    pub eps: Positive,
}

/// RMSProp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RmspropConfig {
    /// Learning rate. Default 0.001.
    #[serde(default = "lr_001")]
    pub lr: Positive,
    /// Decay of the squared-gradient average in [0, 1). Default 0.9.
    #[serde(default = "p_09")]
    pub rho: Probability,
    /// Added to the root of the average. Default 1e-8.
    #[serde(default = "eps")]
    pub eps: Positive,
}

/// Adam.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    /// Learning rate. Default 0.001.
    #[serde(default = "lr_001")]
    pub lr: Positive,
    /// First-moment decay in [0, 1). Default 0.9.
    #[serde(default = "p_09")]
    pub beta1: Probability,
    /// Second-moment decay in [0, 1). Default 0.999.
    #[serde(default = "p_0999")]
    pub beta2: Probability,
    /// Added to the root of the second moment. Default 1e-8.
    #[serde(default = "eps")]
    pub eps: Positive,
}

fn lr_01() -> Positive {
    Positive::new(0.01).expect("valid")
}
fn lr_001() -> Positive {
    Positive::new(0.001).expect("valid")
}
fn p_09() -> Probability {
    Probability::new(0.9).expect("valid")
}
fn p_0999() -> Probability {
    Probability::new(0.999).expect("valid")
}
fn eps() -> Positive {
    Positive::new(1e-8).expect("valid")
}

impl Default for SgdConfig {
    /// Learning rate 0.01 (as the YAML `sgd: {}`).
    fn default() -> Self {
        Self { lr: lr_01() }
    }
}

impl SgdConfig {
    /// Sets the learning rate.
    ///
    /// # Panics
    /// When `lr` is not a finite number > 0.
    pub fn with_lr(mut self, lr: f64) -> Self {
        self.lr = bounded("SgdConfig::with_lr", lr);
        self
    }
}

impl Default for MomentumConfig {
    /// Learning rate 0.01, momentum 0.9 (as the YAML `momentum: {}` or `nesterov: {}`).
    fn default() -> Self {
        Self {
            lr: lr_01(),
            momentum: p_09(),
        }
    }
}

impl MomentumConfig {
    /// Sets the learning rate.
    ///
    /// # Panics
    /// When `lr` is not a finite number > 0.
    pub fn with_lr(mut self, lr: f64) -> Self {
        self.lr = bounded("MomentumConfig::with_lr", lr);
        self
    }

    /// Sets the momentum coefficient (must be < 1 to train; [`OptimizerConfig::validate`]
    /// checks it).
    ///
    /// # Panics
    /// When `momentum` is not in [0, 1].
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = bounded("MomentumConfig::with_momentum", momentum);
        self
    }
}

impl Default for AdagradConfig {
    /// Learning rate 0.01, epsilon 1e-8 (as the YAML `adagrad: {}`).
    fn default() -> Self {
        Self {
            lr: lr_01(),
            eps: eps(),
        }
    }
}

impl AdagradConfig {
    /// Sets the learning rate.
    ///
    /// # Panics
    /// When `lr` is not a finite number > 0.
    pub fn with_lr(mut self, lr: f64) -> Self {
        self.lr = bounded("AdagradConfig::with_lr", lr);
        self
    }

    /// Sets the epsilon added to the root of the accumulated squares.
    ///
    /// # Panics
    /// When `eps` is not a finite number > 0.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = bounded("AdagradConfig::with_eps", eps);
        self
    }
}

impl Default for RmspropConfig {
    /// Learning rate 0.001, rho 0.9, epsilon 1e-8 (as the YAML `rmsprop: {}`).
    fn default() -> Self {
        Self {
            lr: lr_001(),
            rho: p_09(),
            eps: eps(),
        }
    }
}

impl RmspropConfig {
    /// Sets the learning rate.
    ///
    /// # Panics
    /// When `lr` is not a finite number > 0.
    pub fn with_lr(mut self, lr: f64) -> Self {
        self.lr = bounded("RmspropConfig::with_lr", lr);
        self
    }

    /// Sets the decay of the squared-gradient average (must be < 1 to train).
    ///
    /// # Panics
    /// When `rho` is not in [0, 1].
    pub fn with_rho(mut self, rho: f64) -> Self {
        self.rho = bounded("RmspropConfig::with_rho", rho);
        self
    }

    /// Sets the epsilon added to the root of the average.
    ///
    /// # Panics
    /// When `eps` is not a finite number > 0.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = bounded("RmspropConfig::with_eps", eps);
        self
    }
}

impl Default for AdamConfig {
    /// Learning rate 0.001, betas 0.9 and 0.999, epsilon 1e-8 (as the YAML `adam: {}`).
    fn default() -> Self {
        Self {
            lr: lr_001(),
            beta1: p_09(),
            beta2: p_0999(),
            eps: eps(),
        }
    }
}

impl AdamConfig {
    /// Sets the learning rate.
    ///
    /// # Panics
    /// When `lr` is not a finite number > 0.
    pub fn with_lr(mut self, lr: f64) -> Self {
        self.lr = bounded("AdamConfig::with_lr", lr);
        self
    }

    /// Sets the first-moment decay (must be < 1 to train).
    ///
    /// # Panics
    /// When `beta1` is not in [0, 1].
    pub fn with_beta1(mut self, beta1: f64) -> Self {
        self.beta1 = bounded("AdamConfig::with_beta1", beta1);
        self
    }

    /// Sets the second-moment decay (must be < 1 to train).
    ///
    /// # Panics
    /// When `beta2` is not in [0, 1].
    pub fn with_beta2(mut self, beta2: f64) -> Self {
        self.beta2 = bounded("AdamConfig::with_beta2", beta2);
        self
    }

    /// Sets the epsilon added to the root of the second moment.
    ///
    /// # Panics
    /// When `eps` is not a finite number > 0.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = bounded("AdamConfig::with_eps", eps);
        self
    }
}

/// The optimizer, written as a one-key map: `{ adam: { lr: 0.001 } }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerConfig {
    /// Plain SGD.
    Sgd(SgdConfig),
    /// Heavy-ball momentum (Polyak 1964), in the `v = m v + g; w -= lr v` form.
    Momentum(MomentumConfig),
    /// Nesterov momentum (Sutskever et al. 2013), `v = m v + g; w -= lr (g + m v)`.
    Nesterov(MomentumConfig),
    /// AdaGrad (Duchi, Hazan & Singer 2011).
    Adagrad(AdagradConfig),
    /// RMSProp (Tieleman & Hinton 2012).
    Rmsprop(RmspropConfig),
    /// Adam (Kingma & Ba 2015, arXiv:1412.6980).
    Adam(AdamConfig),
}

impl OptimizerConfig {
    /// Plain SGD with learning rate `lr`.
    ///
    /// # Panics
    /// When `lr` is not a finite number > 0 (the same for every constructor below).
    pub fn sgd(lr: f64) -> Self {
        OptimizerConfig::Sgd(SgdConfig::default().with_lr(lr))
    }

    /// Heavy-ball momentum with learning rate `lr` and the default momentum 0.9.
    pub fn momentum(lr: f64) -> Self {
        OptimizerConfig::Momentum(MomentumConfig::default().with_lr(lr))
    }

    /// Nesterov momentum with learning rate `lr` and the default momentum 0.9.
    pub fn nesterov(lr: f64) -> Self {
        OptimizerConfig::Nesterov(MomentumConfig::default().with_lr(lr))
    }

    /// AdaGrad with learning rate `lr` and the default epsilon.
    pub fn adagrad(lr: f64) -> Self {
        OptimizerConfig::Adagrad(AdagradConfig::default().with_lr(lr))
    }

    /// RMSProp with learning rate `lr` and the default rho and epsilon.
    pub fn rmsprop(lr: f64) -> Self {
        OptimizerConfig::Rmsprop(RmspropConfig::default().with_lr(lr))
    }

    /// Adam with learning rate `lr` and the default betas and epsilon; for other values build an
    /// [`AdamConfig`]: `OptimizerConfig::Adam(AdamConfig::default().with_beta2(0.99))`.
    pub fn adam(lr: f64) -> Self {
        OptimizerConfig::Adam(AdamConfig::default().with_lr(lr))
    }

    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd(c) => c.lr.get(),
            OptimizerConfig::Momentum(c) | OptimizerConfig::Nesterov(c) => c.lr.get(),
            OptimizerConfig::Adagrad(c) => c.lr.get(),
            OptimizerConfig::Rmsprop(c) => c.lr.get(),
            OptimizerConfig::Adam(c) => c.lr.get(),
        }
    }

    /// Checks that the decay coefficients are < 1.
    pub fn validate(&self) -> Issues {
        let mut issues = Issues::new();
        let mut lt1 = |name: &str, p: Probability| {
            issues.check(p.get() < 1.0, name.to_string(), || {
                format!("expected a number in [0, 1), found {p}")
            })
        };
        match self {
            OptimizerConfig::Momentum(c) => lt1("momentum.momentum", c.momentum),
            OptimizerConfig::Nesterov(c) => lt1("nesterov.momentum", c.momentum),
            OptimizerConfig::Rmsprop(c) => lt1("rmsprop.rho", c.rho),
            OptimizerConfig::Adam(c) => {
                lt1("adam.beta1", c.beta1);
                lt1("adam.beta2", c.beta2);
            }
            OptimizerConfig::Sgd(_) | OptimizerConfig::Adagrad(_) => {}
        }
        issues
    }
}

/// The parameter id of dense layer `l`'s weights (its biases are the next id).
pub(crate) const fn dense_weight_id(l: usize) -> usize {
    2 * l
}

#[derive(Debug, Clone, Default)]
struct State {
    a: Vec<f32>,
    b: Vec<f32>,
    t: u64,
}

/// An optimizer built from an [`OptimizerConfig`].
#[derive(Debug, Clone)]
pub struct Optimizer {
    config: OptimizerConfig,
    states: Vec<State>,
}

impl Optimizer {
    /// A fresh optimizer (all state zero).
    pub fn new(config: &OptimizerConfig) -> Self {
        Self {
            config: config.clone(),
            states: Vec::new(),
        }
    }

    /// Updates `value` in place from `grad` with learning rate `lr`; `weight_decay` adds
    /// `weight_decay * value` to the gradient first (L2 regularisation; pass 0 for biases).
    ///
    /// # Panics
    /// If `value` and `grad` differ in length, or `id` is reused with another length.
    pub fn update(
        &mut self,
        id: usize,
        value: &mut [f32],
        grad: &[f32],
        lr: f32,
        weight_decay: f32,
    ) {
        self.update_at(id, value, grad, (lr, weight_decay), None, true);
    }

    /// [`Optimizer::update`] for a dense layer's weights, `[inputs, outputs]` flattened by rows:
    /// cut between threads where the layer's other passes cut them
    /// ([`weight_cut`](crate::kernel::weight_cut)), so each half is updated by the thread that
    /// made its gradient and reads it in the next forward pass.
    pub(crate) fn update_weights(
        &mut self,
        id: usize,
        (value, grad): (&mut [f32], &[f32]),
        (inputs, outputs): (usize, usize),
        lr: f32,
        weight_decay: f32,
    ) {
        let mid = weight_halves(inputs, outputs);
        self.update_at(id, value, grad, (lr, weight_decay), mid, true);
    }

    /// The state of parameter `id` in `states`, with `len` values (zero before its first step).
    ///
    /// # Panics
    /// If `id` was used with another length.
    fn state(states: &mut Vec<State>, id: usize, len: usize) -> &mut State {
        if states.len() <= id {
            states.resize_with(id + 1, State::default);
        }
        let st = &mut states[id];
        if st.a.len() != len {
            assert!(st.t == 0, "parameter {id} changed size");
            st.a = vec![0.0; len];
            st.b = vec![0.0; len];
        }
        st
    }

    /// Whether a training step's weight-gradient products accumulate into this optimizer's
    /// state ([`Optimizer::velocity`]) instead of being stored as gradients: heavy-ball momentum
    /// only (Nesterov's step needs the gradient itself, the others square it).
    pub(crate) fn accumulates(&self) -> bool {
        self.accumulating_momentum().is_some()
    }

    /// The momentum coefficient when the optimizer [accumulates](Optimizer::accumulates).
    fn accumulating_momentum(&self) -> Option<f32> {
        match &self.config {
            OptimizerConfig::Momentum(c) => Some(c.momentum.get() as f32),
            _ => None,
        }
    }

    /// When the optimizer [accumulates](Optimizer::accumulates): the momentum coefficient `m`
    /// and the velocity `v` of parameter `id` (`len` values, zero before the first step), for
    /// the weight-gradient product to update in place, `v = m · v + g`
    /// ([`matmul_accumulate`](crate::kernel::matmul_accumulate)).
    /// [`Optimizer::update_accumulated`] then finishes the step. The gradient is never stored
    /// and read back: the update reads two arrays and writes one instead of reading three and
    /// writing two.
    ///
    /// # Panics
    /// If `id` was used with another length.
    pub(crate) fn velocity(&mut self, id: usize, len: usize) -> Option<(f32, &mut [f32])> {
        let mu = self.accumulating_momentum()?;
        Some((mu, &mut Self::state(&mut self.states, id, len).a))
    }

    /// Finishes heavy-ball momentum's step of a dense layer's weights `id` (`[inputs, outputs]`
    /// flattened by rows, cut between threads as [`Optimizer::update_weights`] cuts them) whose
    /// velocity already holds `m · v + g` ([`Optimizer::velocity`]): adds
    /// `weight_decay · value` to the velocity (when not 0), then `value -= lr · v`. Without
    /// weight decay the bits are [`Optimizer::update_weights`]'; with it, the decay term joins
    /// the velocity after `m · v` instead of the gradient before (one rounding apart).
    ///
    /// # Panics
    /// If the optimizer does not [accumulate](Optimizer::accumulates) or `id` was used with
    /// another length.
    pub(crate) fn update_accumulated(
        &mut self,
        id: usize,
        value: &mut [f32],
        (inputs, outputs): (usize, usize),
        lr: f32,
        weight_decay: f32,
    ) {
        assert!(self.accumulates(), "only heavy-ball momentum accumulates");
        assert_eq!(
            value.len(),
            inputs * outputs,
            "weights of [{inputs}, {outputs}]"
        );
        let mid = weight_halves(inputs, outputs);
        let st = Self::state(&mut self.states, id, value.len());
        st.t += 1;
        let wd = weight_decay;
        let parts = Parts {
            w: value,
            g: &[],
            a: &mut st.a,
            b: &mut st.b,
            mid,
            simd: true,
        };
        if wd == 0.0 {
            parts.apply(|w, _, v, _| {
                for (w, v) in w.iter_mut().zip(v) {
                    *w -= lr * *v;
                }
            })
        } else {
            parts.apply(|w, _, v, _| {
                for (w, v) in w.iter_mut().zip(v) {
                    *v += wd * *w;
                    *w -= lr * *v;
                }
            })
        }
    }

    /// [`Optimizer::update`], cut between threads at `mid` (or in the middle), with the AVX2
    /// build of the loops when `simd` and the CPU has it (the tests compare both).
    fn update_at(
        &mut self,
        id: usize,
        value: &mut [f32],
        grad: &[f32],
        (lr, weight_decay): (f32, f32),
        mid: Option<usize>,
        simd: bool,
    ) {
        assert_eq!(value.len(), grad.len(), "value and gradient lengths");
        let st = Self::state(&mut self.states, id, value.len());
        st.t += 1;
        let t = st.t;
        let wd = weight_decay;
        let parts = Parts {
            w: value,
            g: grad,
            a: &mut st.a,
            b: &mut st.b,
            mid,
            simd,
        };
        match &self.config {
            OptimizerConfig::Sgd(_) => parts.apply(|w, g, _, _| {
                for (w, &g) in w.iter_mut().zip(g) {
                    *w -= lr * (g + wd * *w);
                }
            }),
            OptimizerConfig::Momentum(c) => {
                let mu = c.momentum.get() as f32;
                parts.apply(|w, g, v, _| {
                    for ((w, &g), v) in w.iter_mut().zip(g).zip(v) {
                        let g = g + wd * *w;
                        *v = mu * *v + g;
                        *w -= lr * *v;
                    }
                })
            }
            OptimizerConfig::Nesterov(c) => {
                let mu = c.momentum.get() as f32;
                parts.apply(|w, g, v, _| {
                    for ((w, &g), v) in w.iter_mut().zip(g).zip(v) {
                        let g = g + wd * *w;
                        *v = mu * *v + g;
                        *w -= lr * (g + mu * *v);
                    }
                })
            }
            OptimizerConfig::Adagrad(c) => {
                let eps = c.eps.get() as f32;
                parts.apply(|w, g, s, _| {
                    for ((w, &g), s) in w.iter_mut().zip(g).zip(s) {
                        let g = g + wd * *w;
                        *s += g * g;
                        *w -= lr * g / (s.sqrt() + eps);
                    }
                })
            }
            OptimizerConfig::Rmsprop(c) => {
                let rho = c.rho.get() as f32;
                let eps = c.eps.get() as f32;
                parts.apply(|w, g, s, _| {
                    for ((w, &g), s) in w.iter_mut().zip(g).zip(s) {
                        let g = g + wd * *w;
                        *s = rho * *s + (1.0 - rho) * g * g;
                        *w -= lr * g / (s.sqrt() + eps);
                    }
                })
            }
            OptimizerConfig::Adam(c) => {
                let (b1, b2) = (c.beta1.get(), c.beta2.get());
                let eps = c.eps.get() as f32;
                // Bias corrections folded into the step size and epsilon (Kingma & Ba, sec. 2).
                let c1 = 1.0 - b1.powi(t as i32);
                let c2 = 1.0 - b2.powi(t as i32);
                let step = (f64::from(lr) / c1) as f32;
                let inv_c2 = (1.0 / c2).sqrt() as f32;
                let (b1, b2) = (b1 as f32, b2 as f32);
                parts.apply(|w, g, m, v| {
                    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
                        let g = g + wd * *w;
                        *m = b1 * *m + (1.0 - b1) * g;
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        *w -= step * *m / (v.sqrt() * inv_c2 + eps);
                    }
                })
            }
        }
    }
}

/// Where a dense layer's `[inputs, outputs]` weights, flattened by rows, are cut between
/// threads: at its [`weight_cut`](crate::kernel::weight_cut) row, or `None` (in the middle).
fn weight_halves(inputs: usize, outputs: usize) -> Option<usize> {
    crate::kernel::weight_cut(inputs, outputs).map(|row| row * outputs)
}

/// The slices of one update: parameters `w`, gradients `g` (empty when the gradient was
/// accumulated into the state already), optimizer state `a` and `b`, and where the update is
/// cut between threads.
struct Parts<'a> {
    w: &'a mut [f32],
    g: &'a [f32],
    a: &'a mut [f32],
    b: &'a mut [f32],
    /// Where the two halves meet (`None`: in the middle).
    mid: Option<usize>,
    /// Run the loops in their AVX2 build when the CPU has it ([`vectorized`]).
    simd: bool,
}

impl Parts<'_> {
    /// Applies the element-wise update `f` in two fixed halves on rayon's threads (the first on
    /// the calling one), each inside [`vectorized`]. Elements are independent, so the cut
    /// changes nothing but which core's cache holds each half: fixed halves keep a parameter's
    /// state with one thread from step to step, where rayon's adaptive chunks moved between
    /// them.
    fn apply<F>(self, f: F)
    where
        F: Fn(&mut [f32], &[f32], &mut [f32], &mut [f32]) + Sync,
    {
        let Self {
            w,
            g,
            a,
            b,
            mid,
            simd,
        } = self;
        let n = w.len();
        if n < crate::kernel::WEIGHT_CUT_MIN || crate::par::serial() {
            return vectorized(simd, || f(w, g, a, b));
        }
        let mid = mid.unwrap_or(n / 2).min(n);
        let (w1, w2) = w.split_at_mut(mid);
        let (g1, g2) = g.split_at(mid.min(g.len()));
        let (a1, a2) = a.split_at_mut(mid);
        let (b1, b2) = b.split_at_mut(mid);
        crate::par::join(
            || vectorized(simd, || f(w1, g1, a1, b1)),
            || vectorized(simd, || f(w2, g2, a2, b2)),
        );
    }
}

/// Runs `f` compiled for AVX2 (x86-64-v3, detected at run time through `pulp`) when the CPU has
/// it: the workspace targets baseline x86-64, where the update loops get 4-lane SSE and a scalar
/// square root per element; with AVX2 they get 8 lanes and a vector square root. The bits are
/// the same: every operation is IEEE-rounded (square root included) and none is fused (Rust
/// never contracts `a * b + c` into a fused multiply-add), so only the speed differs.
#[inline(always)]
fn vectorized<R>(simd: bool, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if simd && let Some(v3) = pulp::x86::V3::try_new() {
        return v3.vectorize(f);
    }
    let _ = simd;
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::WEIGHT_CUT_MIN;

    fn pos(v: f64) -> Positive {
        Positive::new(v).unwrap()
    }
    fn prob(v: f64) -> Probability {
        Probability::new(v).unwrap()
    }

    /// Every optimizer gives the same bits with the AVX2 build of its loop as with the
    /// baseline one (on a CPU without AVX2 both are the baseline), over sizes below and above
    /// the parallel split, with weight decay, over three steps.
    #[test]
    fn the_vectorized_updates_are_the_scalar_ones_to_the_bit() {
        let configs = [
            OptimizerConfig::Sgd(SgdConfig::default()),
            OptimizerConfig::Momentum(MomentumConfig::default()),
            OptimizerConfig::Nesterov(MomentumConfig::default()),
            OptimizerConfig::Adagrad(AdagradConfig::default()),
            OptimizerConfig::Rmsprop(RmspropConfig::default()),
            OptimizerConfig::Adam(AdamConfig::default()),
        ];
        let mut rng = whet_core::rng::stream(11, &[0]);
        use rand::RngExt;
        for n in [1, 7, 33, 2 * WEIGHT_CUT_MIN + 5] {
            let w0: Vec<f32> = (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect();
            let grads: Vec<Vec<f32>> = (0..3)
                .map(|_| {
                    (0..n)
                        .map(|i| match i % 11 {
                            0 => 0.0,
                            1 => 1e-30,
                            _ => rng.random_range(-2.0f32..2.0),
                        })
                        .collect()
                })
                .collect();
            for cfg in &configs {
                let run = |simd: bool| {
                    let mut o = Optimizer::new(cfg);
                    let mut w = w0.clone();
                    for g in &grads {
                        o.update_at(0, &mut w, g, (0.01, 1e-4), None, simd);
                    }
                    w.iter().map(|x| x.to_bits()).collect::<Vec<u32>>()
                };
                assert_eq!(run(true), run(false), "{cfg:?}, {n} parameters");
            }
        }
    }

    /// Two steps on w = [1, -2] with gradients g1 = [0.5, -1], g2 = [0.25, 0.5], lr 0.1.
    fn two_steps(cfg: OptimizerConfig) -> [f32; 2] {
        let mut o = Optimizer::new(&cfg);
        let mut w = [1.0f32, -2.0];
        o.update(0, &mut w, &[0.5, -1.0], 0.1, 0.0);
        o.update(0, &mut w, &[0.25, 0.5], 0.1, 0.0);
        w
    }

    fn close(a: [f32; 2], b: [f64; 2]) {
        for (x, y) in a.iter().zip(b) {
            assert!((f64::from(*x) - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn sgd_by_hand() {
        // w - 0.1 g1 - 0.1 g2
        close(
            two_steps(OptimizerConfig::Sgd(SgdConfig { lr: pos(0.1) })),
            [0.925, -1.95],
        );
    }

    #[test]
    fn momentum_by_hand() {
        // v1 = g1; w1 = w - .1 g1 = [.95, -1.9]; v2 = .9 g1 + g2 = [.7, -.4]; w2 = [.88, -1.86]
        let c = MomentumConfig {
            lr: pos(0.1),
            momentum: prob(0.9),
        };
        close(two_steps(OptimizerConfig::Momentum(c)), [0.88, -1.86]);
    }

    #[test]
    fn nesterov_by_hand() {
        // v1 = g1 = [.5,-1]; w1 = w - .1 (g1 + .9 v1) = [1 - .095, -2 + .19] = [.905, -1.81]
        // v2 = [.7, -.4]; w2 = w1 - .1 (g2 + .9 v2) = [.905 - .088, -1.81 - .014] = [.817, -1.824]
        let c = MomentumConfig {
            lr: pos(0.1),
            momentum: prob(0.9),
        };
        close(two_steps(OptimizerConfig::Nesterov(c)), [0.817, -1.824]);
    }

    #[test]
    fn adagrad_by_hand() {
        // s1 = [.25, 1]; w1 = [1 - .1, -2 + .1] = [.9, -1.9]
        // s2 = [.3125, 1.25]; w2 = [.9 - .1*.25/sqrt(.3125), -1.9 - .1*.5/sqrt(1.25)]
        let c = AdagradConfig {
            lr: pos(0.1),
            eps: pos(1e-8),
        };
        let w2 = [0.9 - 0.025 / 0.3125f64.sqrt(), -1.9 - 0.05 / 1.25f64.sqrt()];
        close(two_steps(OptimizerConfig::Adagrad(c)), w2);
    }

    #[test]
    fn rmsprop_by_hand() {
        // s1 = .1 g1^2 = [.025, .1]; w1 = w - .1 g1/sqrt(s1) = [1 - .05/.158113883, -2 + .1/.316227766]
        let c = RmspropConfig {
            lr: pos(0.1),
            rho: prob(0.9),
            eps: pos(1e-8),
        };
        let s1 = [0.025f64, 0.1];
        let w1 = [1.0 - 0.05 / s1[0].sqrt(), -2.0 + 0.1 / s1[1].sqrt()];
        let s2 = [0.9 * s1[0] + 0.1 * 0.0625, 0.9 * s1[1] + 0.1 * 0.25];
        let w2 = [w1[0] - 0.025 / s2[0].sqrt(), w1[1] - 0.05 / s2[1].sqrt()];
        close(two_steps(OptimizerConfig::Rmsprop(c)), w2);
    }

    #[test]
    fn adam_by_hand() {
        // Step 1: m̂ = g1, v̂ = g1², so w1 = w - .1 sign(g1) = [.9, -1.9].
        // Step 2: m = .09 g1 + .1 g2 / (1 - .81); v = (.000999 g1² + .001 g2²) / (1 - .998001).
        let c = AdamConfig {
            lr: pos(0.1),
            beta1: prob(0.9),
            beta2: prob(0.999),
            eps: pos(1e-8),
        };
        let g1 = [0.5f64, -1.0];
        let g2 = [0.25f64, 0.5];
        let mut w = [0.9f64, -1.9];
        for i in 0..2 {
            let m = (0.9 * 0.1 * g1[i] + 0.1 * g2[i]) / (1.0 - 0.81);
            let v = (0.999 * 0.001 * g1[i] * g1[i] + 0.001 * g2[i] * g2[i]) / (1.0 - 0.998001);
            w[i] -= 0.1 * m / (v.sqrt() + 1e-8);
        }
        close(two_steps(OptimizerConfig::Adam(c)), w);
    }

    fn parse<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    /// `Default` and the constructors equal what serde gives for the minimal YAML, so the Rust
    /// API and the run file cannot drift apart.
    #[test]
    fn defaults_equal_serde_minimal() {
        assert_eq!(SgdConfig::default(), parse("{}"));
        assert_eq!(MomentumConfig::default(), parse("{}"));
        assert_eq!(AdagradConfig::default(), parse("{}"));
        assert_eq!(RmspropConfig::default(), parse("{}"));
        assert_eq!(AdamConfig::default(), parse("{}"));
        for (built, json) in [
            (OptimizerConfig::sgd(0.5), r#"{"sgd": {"lr": 0.5}}"#),
            (
                OptimizerConfig::momentum(0.5),
                r#"{"momentum": {"lr": 0.5}}"#,
            ),
            (
                OptimizerConfig::nesterov(0.5),
                r#"{"nesterov": {"lr": 0.5}}"#,
            ),
            (OptimizerConfig::adagrad(0.5), r#"{"adagrad": {"lr": 0.5}}"#),
            (OptimizerConfig::rmsprop(0.5), r#"{"rmsprop": {"lr": 0.5}}"#),
            (OptimizerConfig::adam(0.5), r#"{"adam": {"lr": 0.5}}"#),
        ] {
            assert_eq!(built, parse::<OptimizerConfig>(json), "{json}");
        }
    }

    #[test]
    fn setters_equal_serde() {
        assert_eq!(
            MomentumConfig::default().with_lr(0.2).with_momentum(0.5),
            parse(r#"{"lr": 0.2, "momentum": 0.5}"#)
        );
        assert_eq!(
            AdagradConfig::default().with_lr(0.2).with_eps(1e-6),
            parse(r#"{"lr": 0.2, "eps": 1e-6}"#)
        );
        assert_eq!(
            RmspropConfig::default()
                .with_lr(0.2)
                .with_rho(0.5)
                .with_eps(1e-6),
            parse(r#"{"lr": 0.2, "rho": 0.5, "eps": 1e-6}"#)
        );
        assert_eq!(
            AdamConfig::default()
                .with_lr(0.2)
                .with_beta1(0.8)
                .with_beta2(0.99)
                .with_eps(1e-6),
            parse(r#"{"lr": 0.2, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6}"#)
        );
    }

    #[test]
    #[should_panic(expected = "AdamConfig::with_lr: expected a finite number > 0")]
    fn zero_lr_panics() {
        let _ = OptimizerConfig::adam(0.0);
    }

    #[test]
    fn weight_decay_adds_l2_gradient() {
        let mut o = Optimizer::new(&OptimizerConfig::Sgd(SgdConfig { lr: pos(0.1) }));
        let mut w = [2.0f32];
        o.update(0, &mut w, &[0.0], 0.5, 0.1);
        assert!((w[0] - (2.0 - 0.5 * 0.2)).abs() < 1e-6);
    }

    #[test]
    fn zero_gradients_never_give_nan() {
        let cfgs = [
            OptimizerConfig::Sgd(SgdConfig { lr: pos(0.1) }),
            OptimizerConfig::Momentum(MomentumConfig {
                lr: pos(0.1),
                momentum: prob(0.9),
            }),
            OptimizerConfig::Nesterov(MomentumConfig {
                lr: pos(0.1),
                momentum: prob(0.9),
            }),
            OptimizerConfig::Adagrad(AdagradConfig {
                lr: pos(0.1),
                eps: pos(1e-8),
            }),
            OptimizerConfig::Rmsprop(RmspropConfig {
                lr: pos(0.1),
                rho: prob(0.9),
                eps: pos(1e-8),
            }),
            OptimizerConfig::Adam(AdamConfig {
                lr: pos(0.1),
                beta1: prob(0.9),
                beta2: prob(0.999),
                eps: pos(1e-8),
            }),
        ];
        for c in cfgs {
            let mut o = Optimizer::new(&c);
            // Big enough to take the parallel path too.
            let mut w = vec![0.5f32; 3 * WEIGHT_CUT_MIN + 7];
            let g = vec![0.0f32; w.len()];
            for _ in 0..3 {
                o.update(0, &mut w, &g, 0.1, 0.0);
            }
            assert!(w.iter().all(|v| *v == 0.5), "{c:?}");
        }
    }
}
