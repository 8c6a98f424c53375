//! What training a network holds in memory, estimated from its config before anything is
//! allocated, and checked against the process's budget ([`whet_core::budget`]).
//!
//! Per parameter (weight or bias, `f32`): the value, its gradient and the optimizer's two state
//! slots (every optimizer keeps two), plus the best epoch's copy under early stopping. Per
//! batch row: the input and target rows and, for every layer, its activations, its deltas, its
//! noise and dropout buffers, and the second half of its forward product when its weights are
//! cut between threads. All arithmetic saturates, so a count of `u64::MAX` gives an
//! estimate of `u64::MAX` bytes, not an overflow.

use crate::config::{LayerConfig, ModelConfig, TrainConfig};
use crate::conv::{Geometry, SpatialKind};
use crate::error::Result;
use crate::mlp::Mlp;
use whet_core::budget;

/// Bytes of one `f32`.
const F32: u64 = 4;
/// Rows of the evaluation workspace at most (as [`crate::evaluate`] uses).
pub(crate) const EVAL_ROWS: usize = 1024;

/// The estimate of what training holds, in bytes, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainingMemory {
    /// Weights, biases, gradients, optimizer state (and the early-stopping copy).
    pub model: u64,
    /// The batch workspace (training batch and evaluation batch): inputs, targets, activations,
    /// deltas, noise and dropout buffers, and the convolutions' per-thread im2col scratch.
    pub workspace: u64,
    /// The run-file key of the layers (`model.hidden` or `model.layers`).
    layers_key: &'static str,
}

/// The sizes the estimate needs: per image layer (weights, values per row), the dense widths.
struct Shapes {
    /// Per image layer: its parameters, the values it keeps per batch row, its scratch.
    image: Vec<ImageLayer>,
    /// Inputs of the first dense layer.
    dense_inputs: usize,
    /// Hidden dense widths.
    hidden: Vec<usize>,
}

/// What one image layer of `geo` holds: its parameters, its values per batch row (outputs,
/// deltas, noise and dropout buffers, the pools' indices or the normalised values, a
/// convolution's per-group weight gradients, counted as one per row at most), and the bytes of
/// each thread's scratch (a convolution's im2col matrix of one group of images).
fn image_layer(geo: &Geometry, kind: SpatialKind) -> ImageLayer {
    let out = geo.out_len() as u64;
    let f = geo.output[2] as u64;
    let (params, partials, scratch) = match kind {
        SpatialKind::Conv => {
            let weights = budget::product(&[geo.patch() as u64, f]);
            (weights.saturating_add(f), weights, geo.scratch_bytes())
        }
        SpatialKind::BatchNorm => (f.saturating_mul(2), 0, 0),
        _ => (0, 0, 0),
    };
    ImageLayer {
        params,
        per_row: out.saturating_mul(5).saturating_add(partials),
        scratch,
    }
}

/// See [`image_layer`].
struct ImageLayer {
    params: u64,
    per_row: u64,
    scratch: u64,
}

impl TrainingMemory {
    /// The estimate for `model` trained with `train` on `train_rows` samples of `input_dim`
    /// features (images of `shape`, when given) and `output_dim` targets (`valid_rows` for the
    /// evaluation workspace). Image layers that do not fit `shape` count as nothing (building
    /// the network reports them).
    pub fn estimate(
        model: &ModelConfig,
        train: &TrainConfig,
        shape: Option<[usize; 3]>,
        input_dim: usize,
        output_dim: usize,
        train_rows: usize,
        valid_rows: usize,
    ) -> TrainingMemory {
        let geometries = shape
            .and_then(|s| crate::conv::geometries(model, s).ok())
            .unwrap_or_default();
        let convs = model.layers.iter().filter(|l| l.is_image_layer());
        let image: Vec<ImageLayer> = convs
            .zip(&geometries)
            .map(|(l, g)| {
                let kind = match l {
                    LayerConfig::Conv(_) => SpatialKind::Conv,
                    LayerConfig::BatchNorm(_) => SpatialKind::BatchNorm,
                    _ => SpatialKind::MaxPool,
                };
                image_layer(g, kind)
            })
            .collect();
        let shapes = Shapes {
            image,
            dense_inputs: geometries.last().map_or(input_dim, Geometry::out_len),
            hidden: model.dense_layers().iter().map(|h| h.dense).collect(),
        };
        let key = if model.layers.is_empty() {
            "model.hidden"
        } else {
            "model.layers"
        };
        Self::of_shapes(
            &shapes, key, train, input_dim, output_dim, train_rows, valid_rows,
        )
    }

    /// [`TrainingMemory::estimate`] for a network already built (its layers read from the
    /// network).
    pub fn of_network(
        model: &Mlp,
        train: &TrainConfig,
        train_rows: usize,
        valid_rows: usize,
    ) -> TrainingMemory {
        let layers = model.layers();
        let shapes = Shapes {
            image: model
                .spatial()
                .iter()
                .map(|s| image_layer(&s.geometry(), s.kind()))
                .collect(),
            dense_inputs: layers[0].inputs(),
            hidden: layers[..layers.len().saturating_sub(1)]
                .iter()
                .map(|l| l.outputs())
                .collect(),
        };
        let key = if model.spatial().is_empty() {
            "model.hidden"
        } else {
            "model.layers"
        };
        Self::of_shapes(
            &shapes,
            key,
            train,
            model.input_dim(),
            model.output_dim(),
            train_rows,
            valid_rows,
        )
    }

    fn of_shapes(
        shapes: &Shapes,
        layers_key: &'static str,
        train: &TrainConfig,
        input_dim: usize,
        output_dim: usize,
        train_rows: usize,
        valid_rows: usize,
    ) -> TrainingMemory {
        let copies = 4 + u64::from(train.early_stopping.is_some());
        let batch = train.batch_size.rows(train_rows) as u64;
        let eval = valid_rows.clamp(1, EVAL_ROWS) as u64;
        let widths = || {
            shapes
                .hidden
                .iter()
                .map(|&h| h as u64)
                .chain([output_dim as u64])
        };
        let image_params = shapes
            .image
            .iter()
            .fold(0u64, |a, l| a.saturating_add(l.params));
        let image_row = shapes
            .image
            .iter()
            .fold(0u64, |a, l| a.saturating_add(l.per_row));
        // One layer's scratch at a time, on every thread.
        let scratch = shapes.image.iter().map(|l| l.scratch).max().unwrap_or(0);
        let scratch = scratch.saturating_mul(rayon::current_num_threads() as u64);
        let params = count_parameters(&shapes.hidden, shapes.dense_inputs, output_dim)
            .saturating_add(image_params);
        // The second half of the forward product of each layer whose weights are cut between
        // threads.
        let cut_parts = dense_shapes(&shapes.hidden, shapes.dense_inputs, output_dim)
            .filter(|&(inputs, outputs)| crate::kernel::weight_cut(inputs, outputs).is_some())
            .fold(0u64, |a, (_, outputs)| a.saturating_add(outputs as u64));
        // Per row: input and target, the image layers' buffers, four buffers per dense layer
        // (activations, deltas, noise, dropout mask) and the cut layers' halves.
        let per_row = (input_dim as u64)
            .saturating_add(output_dim as u64)
            .saturating_add(image_row)
            .saturating_add(widths().fold(0u64, u64::saturating_add).saturating_mul(4))
            .saturating_add(cut_parts);
        TrainingMemory {
            model: budget::product(&[params, copies, F32]),
            workspace: budget::product(&[batch.saturating_add(eval), per_row, F32])
                .saturating_add(scratch),
            layers_key,
        }
    }

    /// The total in bytes.
    pub fn total(&self) -> u64 {
        self.model.saturating_add(self.workspace)
    }

    /// The run-file key that changes the larger part: `model.hidden` (or `model.layers`) or
    /// `train.batch_size`.
    pub fn key(&self) -> &'static str {
        if self.model >= self.workspace {
            self.layers_key
        } else {
            "train.batch_size"
        }
    }

    /// Checks the total plus `held` bytes (data already in memory) against the budget.
    ///
    /// # Errors
    /// [`crate::Error::Budget`] when it does not fit.
    pub fn check(&self, held: u64) -> Result<()> {
        budget::check(
            "training the network (weights, gradients, optimizer state and batch buffers)",
            self.total().saturating_add(held),
            self.key(),
        )?;
        Ok(())
    }
}

/// The number of weights and biases of `model`'s dense layers between `input_dim` inputs and
/// `output_dim` outputs (saturating; a network with image layers: [`Mlp::parameter_count`]).
pub fn parameter_count(model: &ModelConfig, input_dim: usize, output_dim: usize) -> u64 {
    let hidden: Vec<usize> = model.dense_layers().iter().map(|h| h.dense).collect();
    count_parameters(&hidden, input_dim, output_dim)
}

fn count_parameters(hidden: &[usize], input_dim: usize, output_dim: usize) -> u64 {
    dense_shapes(hidden, input_dim, output_dim).fold(0u64, |params, (inputs, units)| {
        let (inputs, units) = (inputs as u64, units as u64);
        params.saturating_add(inputs.saturating_mul(units).saturating_add(units))
    })
}

/// The `(inputs, outputs)` of each dense layer: `input_dim` into the first hidden width, each
/// width into the next, the last into `output_dim`.
fn dense_shapes(
    hidden: &[usize],
    input_dim: usize,
    output_dim: usize,
) -> impl Iterator<Item = (usize, usize)> + '_ {
    std::iter::once(input_dim)
        .chain(hidden.iter().copied())
        .zip(hidden.iter().copied().chain([output_dim]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HiddenConfig, OptimizerConfig};

    #[test]
    fn three_wide_layers_are_estimated_from_the_config() {
        let m = ModelConfig::classification().with_hidden([
            HiddenConfig::dense(30_000),
            HiddenConfig::dense(30_000),
            HiddenConfig::dense(30_000),
        ]);
        let t = TrainConfig::new(OptimizerConfig::adam(0.001));
        assert_eq!(
            parameter_count(&m, 784, 10),
            784 * 30_000 + 30_000 + 2 * (30_000 * 30_000 + 30_000) + 30_000 * 10 + 10
        );
        let e = TrainingMemory::estimate(&m, &t, None, 784, 10, 60_000, 0);
        // About 1.8e9 parameters x 4 floats x 4 bytes: over 28 GB.
        assert!(e.model > 28_000_000_000, "{e:?}");
        assert_eq!(e.key(), "model.hidden");
        // 32 training rows and one evaluation row; the last three layers' weights are cut
        // between threads (not the first: fewer inputs than outputs).
        assert_eq!(e.workspace, 33 * (784 + 10 + 4 * 90_010 + 60_010) * 4);
    }

    #[test]
    fn huge_counts_saturate_instead_of_overflowing() {
        let m = ModelConfig::classification().with_hidden([HiddenConfig::dense(usize::MAX)]);
        let t = TrainConfig::new(OptimizerConfig::sgd(0.1)).with_batch_size(usize::MAX);
        let e = TrainingMemory::estimate(&m, &t, None, usize::MAX, 10, usize::MAX, usize::MAX);
        assert_eq!(
            (e.model, e.workspace, e.total()),
            (u64::MAX, u64::MAX, u64::MAX)
        );
    }

    #[test]
    fn a_big_batch_points_at_the_batch_size() {
        let m = ModelConfig::classification().with_hidden([HiddenConfig::dense(64)]);
        let t = TrainConfig::new(OptimizerConfig::sgd(0.1)).with_batch_size(100_000);
        let e = TrainingMemory::estimate(&m, &t, None, 100, 2, 100_000, 10);
        assert_eq!(e.key(), "train.batch_size");
        let small = budget::Budget::new(1 << 20);
        let err = small.check("x", e.total(), e.key()).unwrap_err();
        assert_eq!(err.key, "train.batch_size");
    }
}
