//! Shared foundations of whet, used by every other crate:
//!
//! - [`rng`]: the one random generator type ([`Rng`], ChaCha8) and [`rng::stream`], which derives an
//!   independent, reproducible stream from a seed and a path of indices (epoch, sample, op…), so
//!   results never depend on thread count or scheduling;
//! - [`fsx`]: atomic file writes (temporary file in the same folder, then rename);
//! - [`lock`]: advisory locks on output folders ([`lock::FolderLock`]), so two processes never
//!   write one folder at once;
//! - [`publish`]: staged folder publish (write into a hidden staging folder, then move into place);
//! - [`names`]: the one check of names that become path components, and the reversible
//!   encoding of data-derived names (class folders);
//! - [`outputs`]: output folders never overlap inputs, and carry a marker loaders skip;
//! - [`input`]: the one way input files are opened: regular files (and pipes, capped) only,
//!   every read capped;
//! - [`progress`]: the [`Progress`] trait libraries report long work through (only the CLI knows
//!   about terminals);
//! - [`batch`]: the [`BatchSource`] trait data crates implement and the trainer pulls batches
//!   from, with its error type [`SourceError`];
//! - [`order`]: the shard-local order of a sharded training set ([`order::Blocks`]), shared by
//!   the streaming reader and the in-memory set of the same shards;
//! - [`budget`]: the memory budget and the check made before every large allocation;
//! - [`target`]: [`TargetScale`], a regression target's standardisation (fitted by the data
//!   crates, inverted by the trainer's evaluation).
//!
//! ```
//! use whet_core::rng::{stream, Rng};
//! use rand::RngExt;
//! let mut a: Rng = stream(7, &[0, 42]);
//! let mut b: Rng = stream(7, &[0, 42]);
//! assert_eq!(a.random::<u64>(), b.random::<u64>());
//! ```

pub mod batch;
pub mod budget;
pub mod fsx;
pub mod input;
pub mod lock;
pub mod names;
pub mod order;
pub mod outputs;
pub mod progress;
pub mod publish;
pub mod rng;
pub mod spec;
pub mod target;

pub use batch::{BatchSource, SourceError};
pub use budget::{Budget, BudgetError};
pub use progress::{EpochLine, NoProgress, Progress, RunLine, RunMetric, RunProgress};
pub use rng::Rng;
pub use spec::{Issue, Issues, NonNegative, Positive, Probability};
pub use target::{TargetScale, TargetScaleError};
