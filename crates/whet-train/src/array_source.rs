//! [`ArraySource`]: training data held in memory, as a [`BatchSource`].

use ndarray::parallel::prelude::*;
use ndarray::{Array2, ArrayViewMut2, Axis};
use rayon::prelude::ParallelSlice;
use whet_core::batch::{BatchSource, SourceError};

/// Rows per parallel chunk in [`ArraySource::fill`].
const FILL_ROWS: usize = 32;

/// In-memory samples: row `i` of `x` with row `i` of `y`.
///
/// The arrays are private so that they always have the same number of rows (checked by
/// [`ArraySource::new`]); read them with [`ArraySource::x`] and [`ArraySource::y`], or take them
/// back with [`ArraySource::into_parts`].
#[derive(Debug, Clone)]
pub struct ArraySource {
    /// Features, `[n, input_dim]`.
    x: Array2<f32>,
    /// Targets, `[n, target_dim]`, with as many rows as `x`.
    y: Array2<f32>,
}

impl ArraySource {
    /// Pairs features and targets.
    ///
    /// # Errors
    /// When the row counts differ.
    pub fn new(x: Array2<f32>, y: Array2<f32>) -> Result<Self, crate::Error> {
        if x.nrows() != y.nrows() {
            return Err(crate::Error::Shape {
                what: "target rows (one per feature row)".into(),
                expected: x.nrows(),
                got: y.nrows(),
            });
        }
        Ok(Self { x, y })
    }

    /// Features, `[n, input_dim]`.
    pub fn x(&self) -> &Array2<f32> {
        &self.x
    }

    /// Targets, `[n, target_dim]`.
    pub fn y(&self) -> &Array2<f32> {
        &self.y
    }

    /// Gives back the features and targets, `(x, y)`.
    pub fn into_parts(self) -> (Array2<f32>, Array2<f32>) {
        (self.x, self.y)
    }

    /// One-hot targets for class labels `0..classes`.
    ///
    /// # Errors
    /// When a label is `>= classes`.
    pub fn one_hot(labels: &[usize], classes: usize) -> Result<Array2<f32>, crate::Error> {
        let mut y = Array2::zeros((labels.len(), classes));
        for (i, &l) in labels.iter().enumerate() {
            if l >= classes {
                return Err(crate::Error::Shape {
                    what: format!("class label of row {i} (labels must be < classes)"),
                    expected: classes,
                    got: l,
                });
            }
            y[[i, l]] = 1.0;
        }
        Ok(y)
    }
}

impl BatchSource for ArraySource {
    fn len(&self) -> usize {
        self.x.nrows()
    }
    fn input_dim(&self) -> usize {
        self.x.ncols()
    }
    fn target_dim(&self) -> usize {
        self.y.ncols()
    }
    fn fill(
        &mut self,
        _epoch: usize,
        indices: &[usize],
        mut x: ArrayViewMut2<f32>,
        mut y: ArrayViewMut2<f32>,
    ) -> Result<(), SourceError> {
        let n = self.x.nrows();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(SourceError::msg(format!(
                "sample index {bad} out of range (have {n} samples)"
            )));
        }
        if x.nrows() != indices.len() || y.nrows() != indices.len() {
            return Err(SourceError::msg(format!(
                "{} indices but buffers of {} feature rows and {} target rows",
                indices.len(),
                x.nrows(),
                y.nrows()
            )));
        }
        // Fixed chunks of rows copied in parallel: plain copies, so the result cannot depend on
        // the thread count.
        let (sx, sy) = (&self.x, &self.y);
        if crate::par::serial() {
            for (&i, (xr, yr)) in indices
                .iter()
                .zip(x.rows_mut().into_iter().zip(y.rows_mut()))
            {
                copy_row(xr, sx.row(i));
                copy_row(yr, sy.row(i));
            }
            return Ok(());
        }
        x.axis_chunks_iter_mut(Axis(0), FILL_ROWS)
            .into_par_iter()
            .zip(y.axis_chunks_iter_mut(Axis(0), FILL_ROWS).into_par_iter())
            .zip(indices.par_chunks(FILL_ROWS))
            .for_each(|((mut xc, mut yc), idx)| {
                for (k, &i) in idx.iter().enumerate() {
                    copy_row(xc.row_mut(k), sx.row(i));
                    copy_row(yc.row_mut(k), sy.row(i));
                }
            });
        Ok(())
    }
}

/// Copies one row, as a `memcpy` when both sides are contiguous (the usual case).
fn copy_row(mut dst: ndarray::ArrayViewMut1<f32>, src: ndarray::ArrayView1<f32>) {
    match (dst.as_slice_mut(), src.as_slice()) {
        (Some(d), Some(s)) => d.copy_from_slice(s),
        _ => dst.assign(&src),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_must_pair_and_parts_come_back_whole() {
        let x = Array2::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as f32);
        let y = Array2::from_shape_fn((3, 1), |(i, _)| i as f32);
        assert!(ArraySource::new(x.clone(), Array2::zeros((2, 1))).is_err());
        let s = ArraySource::new(x.clone(), y.clone()).unwrap();
        assert_eq!((s.x(), s.y()), (&x, &y));
        assert_eq!(s.into_parts(), (x, y));
    }
}
