//! Image sets as the trainer takes them: normalised arrays ([`ImageSet::to_arrays`]) and the
//! online-augmenting batch source ([`AugmentSource`]).

use crate::{Augmenter, ImageSet, Normalizer};
use ndarray::{Array2, ArrayViewMut2};
use whet_core::{BatchSource, SourceError};

impl ImageSet {
    /// The images normalised with `norm` (one row per image, HWC order) and their labels
    /// one-hot over `classes` columns.
    ///
    /// # Shapes
    /// `x` is `len × h·w·c`, `y` is `len × classes`.
    ///
    /// # Errors
    /// [`crate::Error::Shape`] when a label is not below `classes` or the normaliser has another
    /// channel count.
    pub fn to_arrays(
        &self,
        norm: &Normalizer,
        classes: usize,
    ) -> crate::Result<(Array2<f32>, Array2<f32>)> {
        if norm.scale().len() != self.c() {
            return Err(crate::Error::Shape {
                op: "to_arrays",
                message: format!(
                    "the normaliser has {} channels, the images {}",
                    norm.scale().len(),
                    self.c()
                ),
            });
        }
        let mut x = Array2::<f32>::zeros((self.len(), self.image_len()));
        for (i, mut row) in x.rows_mut().into_iter().enumerate() {
            if let Some(r) = row.as_slice_mut() {
                norm.apply(self.image(i), r);
            }
        }
        let mut y = Array2::<f32>::zeros((self.len(), classes));
        for (i, &l) in self.labels().iter().enumerate() {
            if l as usize >= classes {
                return Err(crate::Error::Shape {
                    op: "to_arrays",
                    message: format!("label {l} of image {i} is not below {classes} classes"),
                });
            }
            y[[i, l as usize]] = 1.0;
        }
        Ok((x, y))
    }
}

/// The training set with online augmentation: every epoch draws fresh random ops per sample,
/// from streams derived from (seed, epoch, sample, op), in parallel (see [`Augmenter::fill`]).
/// Targets are one-hot rows.
pub struct AugmentSource {
    set: ImageSet,
    augmenter: Augmenter,
    norm: Normalizer,
    classes: usize,
    labels: Vec<u32>,
    dim: usize,
}

impl AugmentSource {
    /// A source that augments `set` with `augmenter` and normalises with `norm`; targets have
    /// `classes` columns.
    pub fn new(set: ImageSet, augmenter: Augmenter, norm: Normalizer, classes: usize) -> Self {
        let (h, w, c) = augmenter.output_shape();
        AugmentSource {
            set,
            augmenter,
            norm,
            classes,
            labels: Vec::new(),
            dim: h * w * c,
        }
    }
}

impl BatchSource for AugmentSource {
    fn len(&self) -> usize {
        self.set.len()
    }
    fn input_dim(&self) -> usize {
        self.dim
    }
    fn target_dim(&self) -> usize {
        self.classes
    }
    fn fill(
        &mut self,
        epoch: usize,
        indices: &[usize],
        mut x: ArrayViewMut2<f32>,
        y: ArrayViewMut2<f32>,
    ) -> Result<(), SourceError> {
        self.labels.resize(indices.len(), 0);
        let xs = x
            .as_slice_mut()
            .ok_or_else(|| SourceError::msg("the trainer's batch buffer is not contiguous"))?;
        self.augmenter
            .fill(
                &self.set,
                &self.norm,
                epoch as u64,
                indices,
                xs,
                &mut self.labels,
            )
            .map_err(SourceError::new)?;
        one_hot(&self.labels, self.classes, y)
    }
}

/// Writes `labels` as one-hot rows of `classes` columns into `y`.
///
/// # Errors
/// A label not below `classes`.
pub(crate) fn one_hot(
    labels: &[u32],
    classes: usize,
    mut y: ArrayViewMut2<f32>,
) -> Result<(), SourceError> {
    y.fill(0.0);
    for (r, &l) in labels.iter().enumerate() {
        if l as usize >= classes {
            return Err(SourceError::msg(format!(
                "label {l} is not below {classes} classes"
            )));
        }
        y[[r, l as usize]] = 1.0;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_are_normalised_rows_with_one_hot_labels() {
        let set = ImageSet::new(
            1,
            2,
            1,
            vec![0, 255, 51, 102],
            vec![1, 0],
            vec!["a".into(), "b".into()],
        )
        .unwrap();
        let (x, y) = set.to_arrays(&Normalizer::unit(1), 2).unwrap();
        for (got, want) in x.iter().zip([0.0, 1.0, 0.2, 0.4]) {
            assert!((got - want).abs() < 1e-6, "{x}");
        }
        assert_eq!(y.as_slice().unwrap(), &[0.0, 1.0, 1.0, 0.0]);
        assert!(set.to_arrays(&Normalizer::unit(1), 1).is_err());
        assert!(set.to_arrays(&Normalizer::unit(3), 2).is_err());
    }
}
