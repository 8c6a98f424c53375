//! Learning-rate schedules ([`ScheduleConfig`], YAML key `train.schedule`) and
//! [`TrainConfig::lr_at`], the one place a run's learning rate for an epoch is computed.

use crate::config::{TrainConfig, bounded};
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

impl StepScheduleConfig {
    /// Decay every `every` epochs by the default factor 0.5 (as the YAML `{ every: … }`).
    pub fn new(every: usize) -> Self {
        Self {
            every,
            gamma: half(),
        }
    }

    /// Sets the factor applied at each decay.
    ///
    /// # Panics
    /// When `gamma` is not a finite number > 0.
    pub fn with_gamma(mut self, gamma: f64) -> Self {
        self.gamma = bounded("StepScheduleConfig::with_gamma", gamma);
        self
    }
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

impl Default for CosineScheduleConfig {
    /// Anneal down to 0 (as the YAML `{}`).
    fn default() -> Self {
        Self { min_lr: zero() }
    }
}

impl CosineScheduleConfig {
    /// Sets the learning rate reached at the last epoch.
    ///
    /// # Panics
    /// When `min_lr` is negative or not finite.
    pub fn with_min_lr(mut self, min_lr: f64) -> Self {
        self.min_lr = bounded("CosineScheduleConfig::with_min_lr", min_lr);
        self
    }
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
    /// Step decay every `every` epochs by the default factor 0.5; for another factor build a
    /// [`StepScheduleConfig`]: `ScheduleConfig::Step(StepScheduleConfig::new(5).with_gamma(0.1))`.
    pub fn step(every: usize) -> Self {
        ScheduleConfig::Step(StepScheduleConfig::new(every))
    }

    /// Cosine annealing down to 0; for another floor build a [`CosineScheduleConfig`].
    pub fn cosine() -> Self {
        ScheduleConfig::Cosine(CosineScheduleConfig::default())
    }

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

    fn parse<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    /// The constructors and `Default` equal what serde gives for the minimal YAML.
    #[test]
    fn defaults_equal_serde_minimal() {
        assert_eq!(StepScheduleConfig::new(3), parse(r#"{"every": 3}"#));
        assert_eq!(CosineScheduleConfig::default(), parse("{}"));
        assert_eq!(ScheduleConfig::step(3), parse(r#"{"step": {"every": 3}}"#));
        assert_eq!(ScheduleConfig::cosine(), parse(r#"{"cosine": {}}"#));
        assert_eq!(
            StepScheduleConfig::new(3).with_gamma(0.1),
            parse(r#"{"every": 3, "gamma": 0.1}"#)
        );
        assert_eq!(
            CosineScheduleConfig::default().with_min_lr(0.001),
            parse(r#"{"min_lr": 0.001}"#)
        );
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
