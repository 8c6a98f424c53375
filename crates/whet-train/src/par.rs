//! Rayon helpers that stay on the calling thread when the pool has one thread.
//!
//! A parallel call made from outside the pool (the CLI's and the benches' main thread) hands
//! its work to a pool thread and sleeps until it is done: two context switches per call. One
//! training step makes about fifteen such calls (products, element-wise passes, the batch copy,
//! the optimizer), which at one thread buys nothing and on a machine shared with other work
//! waits for the scheduler each time. So with one thread everything runs inline, and with more
//! [`fit`](crate::fit) enters the pool once per group of batches (at most
//! [`OBSERVER_EVERY`](crate::train::OBSERVER_EVERY) of them, [`in_pool`]), keeping one more
//! worker awake while they run.
//!
//! None of this changes results: the work is split the same way either way (blocks fixed by the
//! shapes), only who runs each block changes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
/// [`fit`](crate::fit) passes a group of training steps (a "step" below is one such `f`): one
/// entry per batch cost about 4 % of a 2-thread epoch of the 784-256-128-10 network here, the
/// main thread waking a worker and the awake worker being started again for every batch.
///
/// While `f` runs, and no other step runs in the process, one more pool thread stays awake
/// ([`keep_warm`]; [`kept_warm`] says why only then): a step hands work over about fifteen
/// times with short serial stretches in between, and a worker that went to sleep in one of
/// them has to be woken for the next hand-off, which on a virtual machine (a halted virtual
/// CPU) takes tens of microseconds. One, because the products of a step are split into
/// [`SPLIT_BLOCKS`](crate::kernel::SPLIT_BLOCKS) = 2 blocks: more spinning threads would burn
/// cores without taking work. The work and its split are the same either way, so are the
/// results; the awake thread's spinning costs CPU time (about a tenth more at 2 threads) and
/// saved about a tenth of the wall time of a 2-thread epoch of the 784-256-128-10 network here.
pub(crate) fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if serial() || rayon::current_thread_index().is_some() {
        return f();
    }
    let done = AtomicBool::new(false);
    rayon::scope(|s| kept_warm(s, &done, f))
}

/// Steps inside [`kept_warm`] now, in any pool of this process.
static STEPS: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` on this thread of scope `s`'s pool while another of its threads (at most
/// `SPLIT_BLOCKS - 1`) spins in [`keep_warm`] until `done`, which is set when `f` returns or
/// unwinds.
///
/// Only a step that runs alone keeps a thread warm, and a warm loop ends as soon as another
/// step starts: a thread waiting inside one step may pick up another step's warm job, and two
/// warm loops, each on top of the other step's unfinished work, would wait for each other
/// forever.
fn kept_warm<'s, R>(s: &rayon::Scope<'s>, done: &'s AtomicBool, f: impl FnOnce() -> R) -> R {
    let alone = STEPS.fetch_add(1, Ordering::AcqRel) == 0;
    let _step = StepEnd(done);
    if alone {
        let caller = rayon::current_thread_index();
        let warm = (rayon::current_num_threads() - 1).min(crate::kernel::SPLIT_BLOCKS - 1);
        for _ in 0..warm {
            s.spawn(move |_| keep_warm(done, caller));
        }
    }
    f()
}

/// Empty polls [`keep_warm`] makes between two yields to the OS scheduler (a few
/// microseconds).
const POLLS_PER_YIELD: u32 = 64;

/// Until `done`, or until another step starts ([`STEPS`]): runs the pool's pending jobs as
/// soon as they appear (stolen ones included), polling between them instead of going to sleep.
/// Every [`POLLS_PER_YIELD`] empty polls it yields to the OS scheduler (the thread stays
/// runnable, so its CPU does not halt): on a machine with fewer free cores than threads, the
/// step's own thread may be waiting for this one's core. Returns at once on `caller`, the
/// thread running the step: waiting there for jobs of its own, it would never see `done`.
fn keep_warm(done: &AtomicBool, caller: Option<usize>) {
    if rayon::current_thread_index() == caller {
        return;
    }
    let mut idle = 0u32;
    while !done.load(Ordering::Acquire) && STEPS.load(Ordering::Acquire) <= 1 {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle = 0;
        } else if idle == POLLS_PER_YIELD {
            idle = 0;
            std::thread::yield_now();
        } else {
            idle += 1;
            std::hint::spin_loop();
        }
    }
}

/// The end of a step in [`kept_warm`], when `f` returns or unwinds: sets the step's flag and
/// counts the step out of [`STEPS`].
struct StepEnd<'a>(&'a AtomicBool);

impl Drop for StepEnd<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
        STEPS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A rayon pool of `threads` threads, for the tests that compare thread counts.
#[cfg(test)]
pub(crate) fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a test thread pool")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The step's result comes back, every job handed over inside it ran, and the other
    /// thread stops spinning when the step ends.
    #[test]
    fn a_kept_warm_step_runs_its_jobs_and_releases_the_pool() {
        let pool = pool(2);
        let done = AtomicBool::new(false);
        let ran = AtomicUsize::new(0);
        let sum = pool.scope(|s| {
            kept_warm(s, &done, || {
                let mut total = 0;
                for i in 0..200 {
                    let (a, b) = join(
                        || {
                            ran.fetch_add(1, Ordering::Relaxed);
                            i
                        },
                        || {
                            ran.fetch_add(1, Ordering::Relaxed);
                            2 * i
                        },
                    );
                    total += a + b;
                }
                total
            })
        });
        assert_eq!(sum, 3 * (0..200).sum::<usize>());
        assert_eq!(ran.load(Ordering::Relaxed), 400);
        assert!(done.load(Ordering::Acquire));
        // The pool is free again: another scope runs.
        assert_eq!(pool.install(|| join(|| 1, || 2)), (1, 2));
    }

    /// Steps run at once from two outside threads on one pool finish: a thread waiting inside
    /// one step may pick up the other step's warm job, and two warm loops each above the
    /// other step's unfinished work would wait for each other forever.
    #[test]
    fn concurrent_steps_on_one_pool_finish() {
        let pool = pool(2);
        let step = |k: usize| {
            let done = AtomicBool::new(false);
            pool.scope(|s| {
                kept_warm(s, &done, || {
                    let (a, b) = join(
                        || (0..200).map(|i| i * k).sum::<usize>(),
                        || (0..200).map(|i| i + k).sum::<usize>(),
                    );
                    a + b
                })
            })
        };
        std::thread::scope(|t| {
            let runs: Vec<_> = (0..2)
                .map(|w| t.spawn(move || (0..3000).map(|k| step(k + w)).sum::<usize>()))
                .collect();
            for r in runs {
                assert!(r.join().unwrap() > 0);
            }
        });
    }

    /// A step that panics releases the spinning thread (no hang) and the panic reaches the
    /// caller.
    #[test]
    fn a_panicking_step_releases_the_pool_and_panics() {
        let pool = pool(2);
        let done = AtomicBool::new(false);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.scope(|s| {
                kept_warm(s, &done, || {
                    join(|| (), || ());
                    panic!("a step failed")
                })
            })
        }));
        assert!(r.is_err());
        assert!(done.load(Ordering::Acquire));
        assert_eq!(pool.install(|| join(|| 3, || 4)), (3, 4));
    }
}
