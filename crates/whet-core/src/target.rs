//! [`TargetScale`]: the standardisation of a regression target, fitted on the training split by
//! the data crate that owns the target, stored in its manifest, and inverted by the trainer's
//! evaluation (and by anything that turns network outputs into values in the target's units).
//! It lives here because both sides need the one type and neither depends on the other.

use serde::{Deserialize, Serialize};

/// `scaled = (value - mean) / std`, fitted on the training split's target values (population
/// standard deviation, as the `zscore` feature scaling). The network is trained on scaled
/// values; [`TargetScale::invert`] gives a network output in the target's original units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetScale {
    /// Mean of the training values.
    pub mean: f64,
    /// Population standard deviation of the training values; always positive and finite.
    pub std: f64,
}

/// Why [`TargetScale::fit`] found no scale.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum TargetScaleError {
    /// No training values.
    #[error("there are no training values to fit the target's scale on")]
    Empty,
    /// Every training value is the same: nothing to learn, and no scale to divide by.
    #[error(
        "every one of the {rows} training values is {value}: the target does not vary, so there is nothing to learn"
    )]
    Constant {
        /// Training rows.
        rows: usize,
        /// Their one value.
        value: f64,
    },
    /// A value is NaN or infinite.
    #[error("a training value is not a finite number ({value})")]
    NonFinite {
        /// The value.
        value: f64,
    },
}

impl TargetScale {
    /// Fits mean and population standard deviation on `values` (in f64, two passes, in order:
    /// the same values give the same scale).
    ///
    /// # Errors
    /// [`TargetScaleError`] for no values, a non-finite value, or values that do not vary.
    pub fn fit(values: &[f32]) -> Result<Self, TargetScaleError> {
        if values.is_empty() {
            return Err(TargetScaleError::Empty);
        }
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Err(TargetScaleError::NonFinite {
                value: f64::from(*v),
            });
        }
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = var.sqrt();
        // Relative to the values' magnitude, so f32 rounding of a constant column is constant.
        if std <= 1e-12 * mean.abs().max(1e-30) || !std.is_finite() {
            return Err(TargetScaleError::Constant {
                rows: values.len(),
                value: f64::from(values[0]),
            });
        }
        Ok(TargetScale { mean, std })
    }

    /// A value in the target's units → what the network is trained on.
    pub fn apply(&self, value: f32) -> f32 {
        ((f64::from(value) - self.mean) / self.std) as f32
    }

    /// A network output (scaled) → a value in the target's original units.
    pub fn invert(&self, scaled: f32) -> f64 {
        f64::from(scaled) * self.std + self.mean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_apply_invert() {
        // mean 5, population variance (9 + 1 + 1 + 9) / 4 = 5.
        let s = TargetScale::fit(&[2.0, 4.0, 6.0, 8.0]).unwrap();
        assert_eq!(s.mean, 5.0);
        assert!((s.std - 5f64.sqrt()).abs() < 1e-12);
        assert!((s.apply(8.0) - (3.0 / 5f64.sqrt()) as f32).abs() < 1e-6);
        for v in [2.0f32, 4.0, 6.0, 8.0, -100.0] {
            assert!((s.invert(s.apply(v)) - f64::from(v)).abs() < 1e-4, "{v}");
        }
    }

    #[test]
    fn refuses_constant_empty_and_non_finite() {
        assert_eq!(
            TargetScale::fit(&[3.0; 4]),
            Err(TargetScaleError::Constant {
                rows: 4,
                value: 3.0
            })
        );
        assert_eq!(TargetScale::fit(&[]), Err(TargetScaleError::Empty));
        assert!(matches!(
            TargetScale::fit(&[1.0, f32::NAN]),
            Err(TargetScaleError::NonFinite { .. })
        ));
        assert!(
            TargetScale::fit(&[3.0, 3.0, 3.0, 3.0])
                .unwrap_err()
                .to_string()
                .contains("does not vary")
        );
    }
}
