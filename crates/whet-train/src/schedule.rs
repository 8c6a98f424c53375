//! Learning-rate schedules ([`ScheduleConfig`], YAML key `train.schedule`) and
//! [`TrainConfig::lr_at`], the one place a run's learning rate for an epoch is computed.

use crate::config::TrainConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::{NonNegative, Positive};

/// Step decay: multiply the learning rate by `gamma` every `every` epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepScheduleConfig {
    /// Epochs between decays (>= 1).
    pub every: usize,
    /// Factor applied at each decay. Default 0.5.
    #[serde(default = "half")]
    pub gamma: Positive,
}

fn half() -> Positive {
    Positive::new(0.5).expect("valid")
}

/// Cosine annealing (Loshchilov & Hutter 2017, without restarts) over the run's epochs:
/// `lr_e = min_lr + (lr - min_lr) (1 + cos(pi e / epochs)) / 2` for epochs `e = 0..epochs`
/// (as PyTorch's `CosineAnnealingLR` with `T_max = epochs`; the last epoch stays above `min_lr`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CosineScheduleConfig {
    /// Learning rate reached at the last epoch. Default 0.
    #[serde(default = "zero")]
    pub min_lr: NonNegative,
}

/// A learning-rate schedule, applied per epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleConfig {
    /// Step decay.
    Step(StepScheduleConfig),
    /// Cosine annealing.
    Cosine(CosineScheduleConfig),
}

impl ScheduleConfig {
    /// Learning rate for `epoch` (0-based) of `epochs`, from the base rate `lr`. A run's rate
    /// comes from [`TrainConfig::lr_at`], which calls this with the optimizer's rate.
    pub fn lr_at(&self, lr: f64, epoch: usize, epochs: usize) -> f64 {
        match self {
            ScheduleConfig::Step(s) => lr * s.gamma.get().powi((epoch / s.every.max(1)) as i32),
            ScheduleConfig::Cosine(c) => {
                let min = c.min_lr.get();
                let t = epoch as f64 / epochs.max(1) as f64;
                min + (lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

impl TrainConfig {
    /// The learning rate of `epoch` (0-based): the optimizer's base rate
    /// ([`OptimizerConfig::lr`](crate::OptimizerConfig::lr)) through the schedule, if any.
    ///
    /// The single source of truth for the rate: [`fit`](crate::fit) updates with it and records
    /// it in [`EpochRecord::lr`](crate::EpochRecord::lr) and
    /// [`Diverged::lr`](crate::Diverged::lr).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let base = self.optimizer.lr();
        self.schedule
            .as_ref()
            .map_or(base, |s| s.lr_at(base, epoch, self.epochs))
    }
}

fn zero() -> NonNegative {
    NonNegative::ZERO
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let s = ScheduleConfig::Step(StepScheduleConfig {
            every: 2,
            gamma: half(),
        });
        assert_eq!(s.lr_at(1.0, 0, 10), 1.0);
        assert_eq!(s.lr_at(1.0, 2, 10), 0.5);
        assert_eq!(s.lr_at(1.0, 5, 10), 0.25);
        let c = ScheduleConfig::Cosine(CosineScheduleConfig {
            min_lr: NonNegative::new(0.1).unwrap(),
        });
        assert_eq!(c.lr_at(1.0, 0, 4), 1.0);
        assert!((c.lr_at(1.0, 2, 4) - 0.55).abs() < 1e-12);
        assert!((c.lr_at(1.0, 4, 4) - 0.1).abs() < 1e-12);
        assert!(c.lr_at(1.0, 3, 4) > 0.1);
    }

    #[test]
    fn train_config_lr_at_follows_the_schedule() {
        let mut t: TrainConfig =
            serde_json::from_str(r#"{"optimizer": {"sgd": {"lr": 0.4}}, "epochs": 4}"#).unwrap();
        assert_eq!(t.lr_at(0), 0.4);
        assert_eq!(t.lr_at(3), 0.4);
        t.schedule = Some(ScheduleConfig::Step(StepScheduleConfig {
            every: 1,
            gamma: half(),
        }));
        assert_eq!(t.lr_at(2), 0.4 * 0.5f64.powi(2));
        t.schedule = Some(ScheduleConfig::Cosine(CosineScheduleConfig {
            min_lr: zero(),
        }));
        assert_eq!(
            t.lr_at(2),
            0.4 * 0.5 * (1.0 + (std::f64::consts::PI * 0.5).cos())
        );
    }
}
