//! How a network's raw outputs (logits) become predictions: the one place evaluation, `whet
//! predict` and model export decide a label and a score. Binary: the positive class when the
//! logit is above 0 (the sigmoid score above 0.5), score = the sigmoid; classification: the
//! arg-max of the logits (= of the softmax), scores = the softmax; regression: the raw output.

use crate::config::Task;
use crate::mlp::{Mlp, argmax};
use ndarray::{Array2, ArrayView2, s};

/// The predicted class index of one row of logits: `None` for regression. Binary: 1 when the
/// logit is above 0 (decided on the logit, not the rounded f32 sigmoid, so a score that rounds
/// to 0.5 still counts as positive exactly when the logit is positive).
pub fn predicted_class(task: Task, logits: &[f32]) -> Option<usize> {
    match task {
        Task::Binary => Some(usize::from(logits[0] > 0.0)),
        Task::Classification => Some(argmax(logits.iter().copied())),
        Task::Regression => None,
    }
}

/// Predictions for a block of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// The scores per row: class probabilities (classification), the positive-class score
    /// (binary), or the values (regression).
    ///
    /// # Shapes
    /// `rows × output_dim`.
    pub scores: Array2<f32>,
    /// The predicted class index per row ([`predicted_class`]); empty for regression.
    pub classes: Vec<usize>,
}

/// Scores `x` with `model` in evaluation mode (no noise, no dropout), in batches of 1024 rows.
///
/// # Shapes
/// `x: [n, input_dim]` → `scores: [n, output_dim]`, `classes: [n]` (or `[]`).
///
/// # Panics
/// If `x` has the wrong number of columns (callers check it against [`Mlp::input_dim`]).
pub fn predict(model: &Mlp, x: ArrayView2<f32>) -> Predictions {
    assert_eq!(x.ncols(), model.input_dim(), "input columns");
    let n = x.nrows();
    let task = model.task();
    let mut scores = Array2::zeros((n, model.output_dim()));
    let mut classes = Vec::with_capacity(if task == Task::Regression { 0 } else { n });
    let mut ws = model.workspace(n.clamp(1, 1024), 0);
    let mut start = 0;
    while start < n {
        let rows = (n - start).min(ws.capacity());
        ws.x.slice_mut(s![..rows, ..])
            .assign(&x.slice(s![start..start + rows, ..]));
        model.forward(&mut ws, rows, None);
        let z = ws.logits().slice_move(s![..rows, ..]);
        for r in z.rows() {
            if let Some(c) = predicted_class(task, r.as_slice().expect("rows")) {
                classes.push(c);
            }
        }
        let mut o = scores.slice_mut(s![start..start + rows, ..]);
        o.assign(&z);
        model.loss().activate(o);
        start += rows;
    }
    Predictions { scores, classes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_decides_on_the_logit() {
        assert_eq!(predicted_class(Task::Binary, &[1e-9]), Some(1));
        assert_eq!(predicted_class(Task::Binary, &[0.0]), Some(0));
        assert_eq!(predicted_class(Task::Binary, &[-2.0]), Some(0));
        assert_eq!(
            predicted_class(Task::Classification, &[0.1, 3.0, -1.0]),
            Some(1)
        );
        assert_eq!(predicted_class(Task::Regression, &[4.0]), None);
    }
}
