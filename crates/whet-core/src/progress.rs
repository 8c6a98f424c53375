//! Progress reporting from libraries, without a terminal dependency.
//!
//! Long work (loading, augmenting, epochs, batches) reports through a `&dyn Progress`; the CLI
//! implements it with progress bars, tests and library users pass [`NoProgress`].

/// Receives progress of long work. Implementations must be cheap: `advance` may be called from
/// hot loops and from several threads.
pub trait Progress: Send + Sync {
    /// A new phase starts; `total` is the number of units if known.
    fn begin(&self, phase: &str, total: Option<u64>);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// A short status line for the current phase (e.g. the latest loss).
    fn message(&self, msg: &str);
    /// The current phase ended.
    fn end(&self);
    /// Something the user should know that does not stop the work (a skipped file, a cache
    /// that could not be written). The default prints `warning: MESSAGE` on stderr.
    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _phase: &str, _total: Option<u64>) {}
    fn advance(&self, _n: u64) {}
    fn message(&self, _msg: &str) {}
    fn end(&self) {}
}
