//! The batch-source contract between data crates and the trainer.
//!
//! A data crate (or the CLI) implements [`BatchSource`]; the trainer pulls batches from it and
//! never sees images or tables. The trait lives here, below both, so an implementor needs only
//! `whet-core` and `ndarray`. A failing [`BatchSource::fill`] returns a [`SourceError`], which
//! keeps the underlying error (and its chain) for the caller.

use ndarray::ArrayViewMut2;

/// A boxed error that can cross threads: what a [`SourceError`] carries as its cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A source of training batches. `fill` writes rows for `indices` into x (batch × input_dim) and
/// y (batch × target_dim). It is called with a fresh epoch number each epoch, so an augmenting
/// source can draw new randomness; it must be deterministic in (epoch, indices).
///
/// Targets: classification uses one-hot rows (`target_dim` = classes); binary a single 0/1
/// column; regression one column per output.
pub trait BatchSource: Send {
    /// Number of samples.
    fn len(&self) -> usize;
    /// True when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Features per sample.
    fn input_dim(&self) -> usize;
    /// Target columns per sample.
    fn target_dim(&self) -> usize;
    /// About how many bytes the source holds while training: by default, every sample's
    /// features and targets as `f32`. A source that streams its samples says what it keeps.
    fn memory(&self) -> u64 {
        crate::budget::product(&[
            self.len() as u64,
            (self.input_dim() + self.target_dim()) as u64,
            4,
        ])
    }
    /// Writes this epoch's visiting order into `out` (one index per sample) and returns true,
    /// or returns false to let the trainer shuffle all samples (the default). A source that
    /// streams from shards orders samples so that a batch needs few of them
    /// ([`crate::order::Blocks`]); the order must depend on `seed` and `epoch` only.
    fn order(&mut self, seed: u64, epoch: usize, out: &mut [usize]) -> bool {
        let _ = (seed, epoch, out);
        false
    }
    /// Writes the samples `indices` (in that order) into `x` and `y`.
    ///
    /// # Errors
    /// A [`SourceError`] when the samples cannot be produced.
    fn fill(
        &mut self,
        epoch: usize,
        indices: &[usize],
        x: ArrayViewMut2<f32>,
        y: ArrayViewMut2<f32>,
    ) -> Result<(), SourceError>;
}

/// Why a [`BatchSource`] could not fill a batch.
///
/// Build it with [`SourceError::msg`] (a message of the source's own),
/// [`SourceError::new`] (wrap the error that caused it) or [`SourceError::context`] (both).
/// A wrapped error is shown as is and its causes stay reachable through
/// [`std::error::Error::source`], as with [`std::io::Error::other`]; match the variant to get the
/// error itself (for example to downcast it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A message, with no underlying error.
    #[error("{0}")]
    Message(String),
    /// An underlying error, displayed as is (its `source()` is the wrapped error's).
    #[error(transparent)]
    Other(BoxError),
    /// A message about the underlying error that caused it.
    #[error("{message}: {source}")]
    Context {
        /// What failed.
        message: String,
        /// The error that caused it.
        #[source]
        source: BoxError,
    },
}

impl SourceError {
    /// An error with a message and no underlying error.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::Message(message.into())
    }

    /// Wraps the error that made the source fail.
    pub fn new(err: impl Into<BoxError>) -> Self {
        Self::Other(err.into())
    }

    /// A message about the error `err` that caused it (shown as `message: err`).
    pub fn context(message: impl Into<String>, err: impl Into<BoxError>) -> Self {
        Self::Context {
            message: message.into(),
            source: err.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[derive(Debug, thiserror::Error)]
    #[error("decoding image 3")]
    struct Outer {
        #[source]
        source: std::io::Error,
    }

    fn outer() -> Outer {
        Outer {
            source: std::io::Error::other("truncated file"),
        }
    }

    #[test]
    fn msg_has_no_source() {
        let e = SourceError::msg("index 9 out of range");
        assert_eq!(e.to_string(), "index 9 out of range");
        assert!(e.source().is_none());
    }

    #[test]
    fn new_shows_the_error_and_keeps_its_chain() {
        let e = SourceError::new(outer());
        assert_eq!(e.to_string(), "decoding image 3");
        assert_eq!(e.source().unwrap().to_string(), "truncated file");
        let SourceError::Other(inner) = &e else {
            panic!("Other expected")
        };
        assert!(inner.downcast_ref::<Outer>().is_some());
    }

    #[test]
    fn context_shows_both_and_keeps_the_error() {
        let e = SourceError::context("batch of 4", outer());
        assert_eq!(e.to_string(), "batch of 4: decoding image 3");
        let s = e.source().unwrap();
        assert!(s.downcast_ref::<Outer>().is_some());
        assert_eq!(s.source().unwrap().to_string(), "truncated file");
    }

    #[test]
    fn crosses_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<SourceError>();
    }
}
