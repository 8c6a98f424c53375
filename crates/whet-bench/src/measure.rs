//! Timing windows that also record how much CPU *other* processes used, as the Python peers do
//! (`bench/py/common.py`), plus the small statistics and output helpers every workload shares.
//!
//! The machine this runs on is shared with builds, so each timed window reads the machine's busy
//! CPU time (`/proc/stat`) and this process's own CPU time (`/proc/self/stat`, all threads) at
//! both ends: `other_cores = (machine busy − own) / wall`. Where `/proc` is missing (not Linux)
//! the figure is `None` and the timing itself still works.

use serde_json::{Value, json};
use std::io::Write;
use std::time::Instant;

/// Kernel clock ticks per second of `/proc/stat` and `/proc/<pid>/stat` (USER_HZ, 100 on every
/// Linux architecture whet runs on).
const USER_HZ: f64 = 100.0;

/// Busy CPU seconds of the whole machine since boot: user + nice + system + irq + softirq + steal.
pub fn machine_busy_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let vals: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    if vals.len() < 7 {
        return None;
    }
    let steal = vals.get(7).copied().unwrap_or(0);
    Some((vals[0] + vals[1] + vals[2] + vals[5] + vals[6] + steal) as f64 / USER_HZ)
}

/// CPU seconds this process (all its threads) has used.
pub fn own_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields after its closing parenthesis are
    // plain. utime and stime are fields 14 and 15, i.e. 11th and 12th after the parenthesis.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Peak resident set size of this process so far, bytes (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// An open timing window; [`Window::close`] gives the [`Measured`] result.
#[derive(Debug)]
pub struct Window {
    machine: Option<f64>,
    own: Option<f64>,
    start: Instant,
}

/// Wall time of a window and the CPU other processes used during it.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Wall-clock seconds.
    pub wall: f64,
    /// Average number of cores other processes kept busy, if `/proc` could be read.
    pub other_cores: Option<f64>,
}

impl Window {
    /// Starts a window now.
    pub fn open() -> Self {
        let machine = machine_busy_seconds();
        let own = own_cpu_seconds();
        Self {
            machine,
            own,
            start: Instant::now(),
        }
    }

    /// Ends the window.
    pub fn close(self) -> Measured {
        let wall = self.start.elapsed().as_secs_f64();
        let other_cores = match (
            self.machine,
            self.own,
            machine_busy_seconds(),
            own_cpu_seconds(),
        ) {
            (Some(m0), Some(o0), Some(m1), Some(o1)) => {
                Some(((m1 - m0) - (o1 - o0)).max(0.0) / wall.max(1e-9))
            }
            _ => None,
        };
        Measured { wall, other_cores }
    }
}

/// Round trips per batch of [`core_round_trip_ns`].
const ROUND_TRIPS: u64 = 500;
/// Batches of [`core_round_trip_ns`]; the figure is their median.
const ROUND_TRIP_BATCHES: usize = 5;
/// Round trips [`core_round_trip_ns`] makes and does not count first, for this long.
const WARM_UP: std::time::Duration = std::time::Duration::from_millis(20);
/// Empty polls between two yields to the OS scheduler in [`core_round_trip_ns`]: when the two
/// threads share a core (a busy machine), the waiting one lets the other run.
const POLLS_PER_YIELD: u32 = 256;

/// How far apart two threads of this process run, as the time for one value to go from one
/// thread to the other and back through a shared cache line: nanoseconds per round trip, the
/// median of a few batches of them after [`WARM_UP`] of uncounted ones (without it, 2 of 6
/// fresh processes here measured 1.3–7 µs: both threads still on one core). `None` with fewer
/// than two processors, or when the other thread did not answer within `deadline` (a machine
/// too busy to run both).
///
/// The threads are not pinned: the OS places them, as it places the worker pool's. On a virtual
/// machine the figure tells where the host put the virtual CPUs at that moment. On the 2-vCPU
/// machine of `bench/RESULTS.md` it is about 65 ns (two cores sharing a cache), about 330 ns
/// (far apart) or, now and then, about 29 ns (seemingly the two hardware threads of one core),
/// switching within seconds. 2-thread training epochs take 1.7–2.4x longer in the far state
/// (every step passes data from one core's cache to the other's) and about 1.7x longer in the
/// 29 ns one (two threads sharing one core's arithmetic) than in the 65 ns one, while 1-thread
/// epochs do not change.
pub fn core_round_trip_ns(deadline: std::time::Duration) -> Option<f64> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    /// One value alone on its cache line (128 bytes: adjacent-line prefetchers pair lines).
    #[repr(align(128))]
    struct Line(AtomicU64);

    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    let line = Line(AtomicU64::new(0));
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    // Waits until `line` holds `want`; false when the deadline passed first.
    let wait = |want: u64| {
        let mut polls = 0u32;
        while line.0.load(Ordering::Acquire) != want {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            polls += 1;
            if polls == POLLS_PER_YIELD {
                polls = 0;
                if start.elapsed() > deadline {
                    stop.store(true, Ordering::Relaxed);
                    return false;
                }
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        true
    };
    let batches = std::thread::scope(|s| {
        // The partner answers every odd value with the next even one, until `stop`.
        s.spawn(|| {
            let mut i = 0u64;
            while wait(2 * i + 1) {
                line.0.store(2 * i + 2, Ordering::Release);
                i += 1;
            }
        });
        // One round trip from value `2i + 1`; false when the partner stopped answering.
        let round_trip = |i: u64| {
            line.0.store(2 * i + 1, Ordering::Release);
            wait(2 * i + 2)
        };
        let mut i = 0u64;
        // A new thread starts on its parent's core: until the scheduler moves one of the two to
        // another core they take turns on one, a context switch per round trip.
        let warm = Instant::now();
        while warm.elapsed() < WARM_UP {
            if !round_trip(i) {
                return None;
            }
            i += 1;
        }
        let mut batches = Vec::with_capacity(ROUND_TRIP_BATCHES);
        for _ in 0..ROUND_TRIP_BATCHES {
            let t = Instant::now();
            for _ in 0..ROUND_TRIPS {
                if !round_trip(i) {
                    return None;
                }
                i += 1;
            }
            batches.push(t.elapsed().as_secs_f64() * 1e9 / ROUND_TRIPS as f64);
        }
        // Lets the partner go.
        stop.store(true, Ordering::Relaxed);
        Some(batches)
    })?;
    Some(median(&batches))
}

/// How long [`placement_ns`] waits for the other thread before giving up.
const PLACEMENT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// [`core_round_trip_ns`] as the benches record it: whole nanoseconds, giving up after
/// [`PLACEMENT_DEADLINE`].
pub fn placement_ns() -> Option<f64> {
    core_round_trip_ns(PLACEMENT_DEADLINE).map(f64::round)
}

/// Runs `f` inside a window.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Measured) {
    let w = Window::open();
    let out = f();
    (out, w.close())
}

/// Median of `xs` (mean of the middle two for an even count); NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    let mut s: Vec<f64> = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// How repeats are retried when other processes are busy.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Timed repeats wanted.
    pub repeats: usize,
    /// A repeat during which other processes used more cores than this is retried.
    pub max_other: f64,
    /// At most this many retries per figure; after that, busy repeats are kept (and reported).
    pub retries: usize,
}

/// Results of repeated timing of one figure.
#[derive(Debug, Clone, Default)]
pub struct Repeats {
    /// The value of each kept repeat (a rate, e.g. images/s).
    pub values: Vec<f64>,
    /// Other processes' cores during each kept repeat (`None` without `/proc`).
    pub other: Vec<Option<f64>>,
    /// How many repeats were thrown away because the machine was busy.
    pub retried: usize,
}

impl Repeats {
    /// Median of the kept values.
    pub fn median(&self) -> f64 {
        median(&self.values)
    }

    /// The `other_cores` list as JSON (null where unknown), rounded to 3 decimals.
    pub fn other_json(&self) -> Value {
        Value::Array(
            self.other
                .iter()
                .map(|o| o.map_or(Value::Null, |v| json!(round3(v))))
                .collect(),
        )
    }
}

/// Repeats `run` (which returns a rate and its window) as `policy` says.
pub fn repeat(policy: RetryPolicy, mut run: impl FnMut() -> (f64, Measured)) -> Repeats {
    let mut r = Repeats::default();
    while r.values.len() < policy.repeats {
        let (value, m) = run();
        let busy = m.other_cores.is_some_and(|o| o > policy.max_other);
        if busy && r.retried < policy.retries {
            r.retried += 1;
            std::thread::sleep(std::time::Duration::from_secs(1));
            continue;
        }
        r.values.push(value);
        r.other.push(m.other_cores);
    }
    r
}

/// Rounds to 3 decimals (for the load figures in the output).
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Prints one JSON record as a line on stdout (the harness collects them).
///
/// # Errors
/// When stdout cannot be written.
pub fn emit(record: &Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, record)?;
    out.write_all(b"\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn repeat_retries_busy_windows_then_keeps_them() {
        let policy = RetryPolicy {
            repeats: 2,
            max_other: 0.1,
            retries: 1,
        };
        let mut calls = 0;
        let r = repeat(policy, || {
            calls += 1;
            (
                calls as f64,
                Measured {
                    wall: 1.0,
                    other_cores: Some(0.5),
                },
            )
        });
        // First busy window retried once; then busy windows are kept.
        assert_eq!(calls, 3);
        assert_eq!(r.retried, 1);
        assert_eq!(r.values, vec![2.0, 3.0]);
    }

    #[test]
    fn proc_readings_are_plausible_on_linux() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        assert!(machine_busy_seconds().is_some_and(|v| v > 0.0));
        assert!(own_cpu_seconds().is_some_and(|v| v >= 0.0));
        assert!(peak_rss_bytes().is_some_and(|v| v > 0));
    }

    /// Two threads pass a value back and forth: each round trip takes some time but far less
    /// than a millisecond on any machine with two processors (even sharing one core, the
    /// waiting thread yields to the other); with one processor there is no figure.
    #[test]
    fn core_round_trip_is_measured_with_two_processors() {
        let rt = core_round_trip_ns(std::time::Duration::from_secs(20));
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            assert_eq!(rt, None);
        } else {
            let rt = rt.expect("two threads answer each other within 20 s");
            assert!(rt > 1.0 && rt < 1e6, "{rt} ns per round trip");
        }
    }
}
