//! `whet-bench`: the whet side of the side-by-side benchmarks in `bench/`.
//!
//! Each subcommand runs one workload through the public APIs of the whet crates, on inputs
//! generated exactly as the Python peers generate theirs ([`inputs`]), and prints JSON lines in
//! the peers' format, which `bench/py/harness.py` collects and `bench/py/report.py` turns into
//! `bench/RESULTS.md`:
//!
//! - `matmul`: fp32 2048² products through whet-train's kernels (GFLOP/s);
//! - `train`: epochs of a 784-256-128-10 network (784-W-W-10 with `--width W`), or with
//!   `--model lenet` of a LeNet-5-like CNN on 28x28x1 images, batch 128, SGD momentum
//!   (samples/s, GFLOP/s);
//! - `augment`: each image op on 256x256x3 and 28x28x1 images, or any `HxWxC` (images/s);
//! - `load`: the folder loader on PNG or JPEG class folders (images/s);
//! - `make-shards`: a synthetic image set as WebDataset shards, for the streaming benchmark (the
//!   training itself runs through the `whet` CLI);
//! - `tabular` (cargo feature `tabular`, which pulls in polars): read, mean imputation + z-score,
//!   left join on the 10-million-row table (seconds, peak memory).
//!
//! Run it through `bash bench/run.sh` (which builds it with `--release`); by hand:
//! `cargo run --release -p whet-bench -- train --threads 1` (add `--model lenet` for the CNN).

mod augment;
mod inputs;
mod load;
mod matmul;
mod measure;
mod shards;
#[cfg(feature = "tabular")]
mod tabular;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The whet side of the benchmarks in bench/ (see bench/README.md).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Worker threads (rayon's global pool; polars reads POLARS_MAX_THREADS, which the harness
    /// sets to the same number).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// Timed repeats per figure (median).
    #[arg(long, global = true, default_value_t = 5)]
    repeats: usize,
    /// A repeat during which other processes used more than this many cores is retried.
    #[arg(long, global = true, default_value_t = 0.1)]
    max_other: f64,
    /// At most this many retries per figure.
    #[arg(long, global = true, default_value_t = 2)]
    retries: usize,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// fp32 square matrix products through whet-train's kernels, GFLOP/s.
    Matmul(matmul::MatmulArgs),
    /// Training throughput of the 784-256-128-10 MLP or (`--model lenet`) the LeNet-5-like CNN,
    /// samples/s.
    Train(train::TrainArgs),
    /// Augmentation throughput per op on 256x256x3 and 28x28x1 images, images/s.
    Augment(augment::AugmentArgs),
    /// Folder loading (read, decode, resize) of PNG or JPEG class folders, images/s.
    Load(load::LoadArgs),
    /// Read + mean imputation + z-score + left join of the Parquet tables (feature `tabular`).
    Tabular(TabularArgs),
    /// Writes a synthetic labelled image set as WebDataset tar shards.
    MakeShards(shards::ShardsArgs),
    /// Where the host placed the virtual CPUs: the round trip of a value between two threads
    /// through one cache line, ns (the harness runs it around every multi-threaded figure).
    Placement,
}

#[cfg(feature = "tabular")]
use tabular::TabularArgs;

/// Options of `whet-bench tabular` in a build without the `tabular` feature: accepted, so the
/// harness gets a clear error instead of a usage message.
#[cfg(not(feature = "tabular"))]
#[derive(Debug, Clone, clap::Args)]
struct TabularArgs {
    /// The left table.
    #[arg(long)]
    left: std::path::PathBuf,
    /// The right table.
    #[arg(long)]
    right: std::path::PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.threads == 0 {
        eprintln!("whet-bench: --threads must be at least 1, found 0");
        return ExitCode::from(2);
    }
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(cli.threads)
        .build_global()
    {
        eprintln!(
            "whet-bench: cannot start {} rayon threads: {e}",
            cli.threads
        );
        return ExitCode::from(2);
    }
    let policy = measure::RetryPolicy {
        repeats: cli.repeats.max(1),
        max_other: cli.max_other,
        retries: cli.retries,
    };
    let result = match &cli.command {
        Command::Matmul(a) => matmul::run(a, cli.threads, policy).map_err(|e| e.to_string()),
        Command::Train(a) => train::run(a, cli.threads, policy),
        // The timed loop itself runs on a pool thread, so each pass's parallel loop starts
        // without a hand-off from the main thread: on a machine shared with builds every such
        // hand-off waits for the scheduler, which cost whet up to 7x on short passes while the
        // peers (no hand-off) were unaffected. `rayon::scope` runs its closure in the pool.
        Command::Augment(a) => rayon::scope(|_| augment::run(a, cli.threads, policy)),
        Command::Load(a) => load::run(a, cli.threads, policy),
        Command::MakeShards(a) => shards::run(a),
        Command::Placement => measure::emit(&serde_json::json!({
            "bench": "placement",
            "core_round_trip_ns": measure::placement_ns(),
        }))
        .map_err(|e| format!("writing the result: {e}")),
        #[cfg(feature = "tabular")]
        Command::Tabular(a) => tabular::run(a, cli.threads),
        #[cfg(not(feature = "tabular"))]
        Command::Tabular(a) => Err(format!(
            "this whet-bench was built without the `tabular` feature (polars), so it cannot read \
             {} and {}; rebuild with `--features tabular`",
            a.left.display(),
            a.right.display()
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whet-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
