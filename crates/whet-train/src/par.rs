//! Rayon helpers that stay on the calling thread when the pool has one thread.
//!
//! A parallel call made from outside the pool (the CLI's and the benches' main thread) hands
//! its work to a pool thread and sleeps until it is done: two context switches per call. One
//! training step makes about fifteen such calls (products, element-wise passes, the batch copy,
//! the optimizer), which at one thread buys nothing and on a machine shared with other work
//! waits for the scheduler each time. So with one thread everything runs inline, and with more
//! [`fit`](crate::fit) enters the pool once per batch ([`in_pool`]).
//!
//! None of this changes results: the work is split the same way either way (blocks fixed by the
//! shapes), only who runs each block changes.

/// True when rayon has a single thread here, so parallel calls would only add hand-offs.
pub(crate) fn serial() -> bool {
    rayon::current_num_threads() <= 1
}

/// [`rayon::join`], or `a` then `b` on this thread when [`serial`].
pub(crate) fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    if serial() {
        (a(), b())
    } else {
        rayon::join(a, b)
    }
}

/// Runs `f` on a pool thread (one hand-off), so the parallel calls inside it start from a
/// worker and cost no further hand-offs; inline when already on a worker or when [`serial`].
pub(crate) fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if serial() || rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}
