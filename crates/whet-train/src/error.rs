//! The crate's error type.

use crate::train::EpochRecord;
use std::path::PathBuf;

/// Result alias with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a training run stopped on divergence, with the curves recorded so far.
#[derive(Debug, Clone)]
pub struct Diverged {
    /// Epoch (1-based) in which the loss diverged.
    pub epoch: usize,
    /// Batch (1-based, within the epoch) in which the loss diverged.
    pub batch: usize,
    /// Learning rate in use at that moment.
    pub lr: f64,
    /// The offending loss value (NaN, infinite, or exploded).
    pub loss: f64,
    /// The reference loss the explosion was measured against (first epoch's mean loss, or the
    /// first batch's loss during the first epoch).
    pub reference: f64,
    /// The explosion factor in force.
    pub factor: f64,
    /// Per-epoch curves of the completed epochs.
    pub curves: Vec<EpochRecord>,
}

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.loss.is_finite() {
            format!(
                "loss {:.4e} exceeds {} x the reference loss {:.4e}",
                self.loss, self.factor, self.reference
            )
        } else {
            format!("loss is {}", self.loss)
        };
        write!(
            f,
            "training diverged at epoch {}, batch {}: {what} with learning rate {}; \
             lower the learning rate (for example to {})",
            self.epoch,
            self.batch,
            whet_core::spec::fmt_number(self.lr),
            whet_core::spec::fmt_number(self.lr / 10.0)
        )
    }
}

/// Everything that can go wrong in whet-train.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input file that is not a regular file, is over its size cap, or cannot be opened.
    #[error(transparent)]
    Input(#[from] whet_core::input::InputError),
    /// The model or training config is invalid (the issues are listed).
    #[error("invalid config: {0}")]
    Config(String),
    /// A batch source gave inconsistent sizes.
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        /// What was being compared.
        what: String,
        /// The size that would be valid.
        expected: usize,
        /// The size found.
        got: usize,
    },
    /// The batch source failed to fill a batch.
    #[error("batch source failed at epoch {epoch} (0-based) filling {rows} rows: {source}")]
    Source {
        /// Epoch passed to `fill`.
        epoch: usize,
        /// Number of rows requested.
        rows: usize,
        /// The source's error (its causes stay reachable through `source()`).
        #[source]
        source: whet_core::SourceError,
    },
    /// Asked to backpropagate through a step activation.
    #[error(
        "layer {layer} uses the step activation, whose derivative is zero almost everywhere, so \
         backpropagation cannot train layer {trainable} below or at it (its gradient would always \
         be 0); freeze layers 0..={layer} (transfer.freeze) or use sigmoid/tanh/relu instead"
    )]
    StepNotDifferentiable {
        /// Index of the layer with the step activation.
        layer: usize,
        /// A trainable layer whose gradient would have to pass through it.
        trainable: usize,
    },
    /// The training run diverged (NaN, infinity or an exploding loss).
    #[error("{0}")]
    Diverged(Box<Diverged>),
    /// A checkpoint file is malformed.
    #[error("checkpoint `{}`: {message}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Writing a file failed.
    #[error(transparent)]
    Write(#[from] whet_core::fsx::FsError),
    /// An estimate over the memory budget, found before allocating (see
    /// [`whet_core::budget`]).
    #[error(transparent)]
    Budget(#[from] whet_core::BudgetError),
}
