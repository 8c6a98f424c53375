//! The `whet` command-line tool: one YAML run file from raw data to a trained network and a
//! per-stage ablation report.
//!
//! Everything a run does lives in the [`whet`] library crate; this crate parses the command
//! line ([`Cli`]), calls it, draws progress bars ([`progress`]) and prints results ([`cmd`]).
//! `main` maps errors to exit codes: 0 success, 1 a run that failed (diverged, or every variant
//! failed), 2 bad input or usage.

/// Writes to standard output like `print!`, but returns an error instead of panicking when
/// stdout is closed (`whet schema | head -1`): [`StdoutClosed`], which ends whet quietly with
/// exit code 0, as `cat` or ripgrep do.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*), false)
    };
}

/// [`out!`] with a newline, like `println!`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*), true)
    };
}

pub(crate) use {out, outln};

pub mod cmd;
pub mod progress;

/// Standard output was closed by its reader (a pipe into `head`): not a failure of whet, which
/// stops writing and exits 0 without a message.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}
impl std::error::Error for StdoutClosed {}

/// Writes `args` (and a newline) to standard output and flushes it, so a closed pipe shows up
/// here and not as a panic in `println!` or a lost write at exit.
///
/// # Errors
/// [`StdoutClosed`] when the reader has gone (broken pipe); any other write error as itself.
pub fn write_stdout(args: std::fmt::Arguments<'_>, newline: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let written = o
        .write_fmt(args)
        .and_then(|()| if newline { o.write_all(b"\n") } else { Ok(()) })
        .and_then(|()| o.flush());
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}

use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

/// Marks an error as "the run itself failed" (exit code 1) rather than bad input (exit code 2).
#[derive(Debug)]
pub struct RunFailed(pub String);

impl std::fmt::Display for RunFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for RunFailed {}

const AFTER_HELP: &str = "\
Examples:
  whet validate pipelines/mnist-ablation.yaml
  whet run pipelines/mnist-mlp.yaml --out runs/mlp
  whet ablate pipelines/mnist-ablation.yaml --out runs/ablation
  whet preview pipelines/mnist-ablation.yaml --out preview.png
  whet audit pipelines/flights-delay.yaml
  whet export pipelines/flights-delay.yaml --out export/ --format parquet
  whet schema > whet.schema.json
  whet run pipelines/mnist-mlp.yaml 2> train.log   (one line per epoch)
  whet completions bash > ~/.local/share/bash-completion/completions/whet
  whet man --out man/

Exit codes: 0 success, 1 the run failed (e.g. diverged), 2 bad input or usage.
From the repository, `cargo whet <command> ...` builds and runs whet.";

/// whet: data preprocessing and augmentation for neural networks, with ablation reports.
#[derive(Debug, Parser)]
#[command(
    name = "whet",
    bin_name = "whet",
    version,
    about,
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Hide progress (bars, epoch and run lines); warnings are still written.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Progress and warnings on stderr: `text` (bars in a terminal, one plain line per epoch
    /// and per finished run otherwise) or `jsonl` (one JSON object per event).
    #[arg(long, global = true, value_enum, default_value_t = progress::LogFormat::Text)]
    pub log_format: progress::LogFormat,
    /// Print machine-readable JSON instead of tables where a command prints a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Worker threads, 1 to 1024 (default: all cores). Results do not depend on it.
    #[arg(long, global = true, value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// Memory budget, e.g. `8GiB`, `500MB` (default: 60 % of the physical memory or of the
    /// cgroup limit, or half of `ulimit -v`, whichever is smallest). Work whose estimate is
    /// larger is refused before it allocates.
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_memory)]
    pub max_memory: Option<whet_core::Budget>,
    /// Override a key of the run file, e.g. `--set train.epochs=5` (repeatable; the value is YAML).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one pipeline end to end: data, preprocessing, augmentation, training, evaluation.
    #[command(
        after_help = "Writes OUT/metrics.json, OUT/curves.csv, OUT/model.safetensors, OUT/manifest.json and charts.\nExample: whet run pipelines/mnist-mlp.yaml --out runs/mlp"
    )]
    Run {
        /// The YAML run file.
        pipeline: PathBuf,
        /// Output folder (default: runs/NAME).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Override the run file's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Do not read or write the stage cache.
        #[arg(long)]
        no_cache: bool,
        /// Log the run to the MLflow tracking server at URI (http://HOST:PORT); overrides
        /// `track.mlflow.uri`.
        #[arg(long, value_name = "URI")]
        mlflow: Option<String>,
    },
    /// Run every ablation variant over several seeds and write a report.
    #[command(
        after_help = "Writes OUT/report.md, OUT/ablation.csv, OUT/ablation.json, charts, and OUT/runs/<variant>/seed-<n>/.\nAn interrupted ablation resumes: finished runs are kept unless --fresh.\nExamples:\n  whet ablate pipelines/mnist-ablation.yaml --seeds 5\n  whet ablate pipelines/mnist-ablation.yaml --sweep train.optimizer.adam.lr=0.003,0.001 --dry-run"
    )]
    Ablate {
        /// The YAML run file (with an `ablation` section, or only `leave_one_out` by default),
        /// or an ablation's output folder (with its `plan.json`) for `--cell`, `--collect` or
        /// to resume it.
        pipeline: PathBuf,
        /// Output folder (default: runs/NAME-ablation).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Override the number of seeds per variant.
        #[arg(long)]
        seeds: Option<u64>,
        /// Run only this variant (and the baseline); repeat for several (`--only a --only b`).
        /// The name is exact and may contain commas (`--only 'lr=0.01,bs=16'`).
        #[arg(long, value_name = "VARIANT")]
        only: Vec<String>,
        /// Instead of the run file's variants, one variant per value of KEY.PATH
        /// (`--sweep train.optimizer.adam.lr=0.1,0.01`; the values are YAML). Repeat for a grid:
        /// one variant per combination, named `lr=0.1,batch_size=64`.
        #[arg(long, value_name = "KEY.PATH=A,B,...")]
        sweep: Vec<String>,
        /// List every variant with its changes and the number of runs, then stop (nothing is
        /// trained or written). With --json, as JSON.
        #[arg(long)]
        dry_run: bool,
        /// Only write OUT/plan.json (every cell with its hash, and the commands that run them),
        /// after any pretraining; run the cells with `whet ablate OUT --cell I`.
        #[arg(long, conflicts_with_all = ["dry_run", "cell", "collect"])]
        plan: bool,
        /// Run cell I of the plan in the folder PIPELINE (0-based). Without --cell, a plan
        /// folder's cell comes from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX when one is
        /// set; otherwise every cell not yet finished runs. A cell whose run file or inputs
        /// changed since planning refuses to run.
        #[arg(long, value_name = "I", conflicts_with = "collect")]
        cell: Option<usize>,
        /// Build the report of the plan in the folder PIPELINE from its finished cells; cells
        /// without a result are listed with the command that runs them.
        #[arg(long)]
        collect: bool,
        /// Worker processes (each with --threads / N threads); results equal --jobs 1.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: u16,
        /// Write OUT/k8s-job.yaml, a Kubernetes Indexed Job that runs every cell (and
        /// OUT/plan.json), instead of running: `kubectl apply -f OUT/k8s-job.yaml`, then
        /// `whet ablate OUT --collect`. Needs `--k8s image=… --k8s claim=…`.
        #[arg(long, value_name = "TARGET", value_parser = ["k8s"])]
        emit: Option<String>,
        /// Kubernetes job settings, KEY=VALUE (repeatable): image (required), claim (the
        /// PersistentVolumeClaim with the output folder; required), mount (where it is mounted;
        /// default: the output folder's parent), parallelism (default 4), cpus (default 1),
        /// memory (default 4Gi), name (default: `whet-NAME`, after the run file), retries (default 2).
        #[arg(long = "k8s", value_name = "KEY=VALUE")]
        k8s: Vec<String>,
        /// Run the cells elsewhere: `slurm` submits them as one job array (`sbatch --array`),
        /// waits for it (squeue), then collects; failed tasks are listed with their Slurm state
        /// and log. With a plan folder as PIPELINE, submits the cells without a result.
        #[arg(long, value_name = "LAUNCHER", value_parser = ["slurm"], conflicts_with_all = ["plan", "dry_run", "cell", "collect", "emit"])]
        launcher: Option<String>,
        /// Slurm settings, KEY=VALUE (repeatable): partition, time (per cell, e.g. 01:00:00),
        /// cpus (per cell, default 1; also its --threads), mem (e.g. 4G), parallel (tasks at
        /// once), account.
        #[arg(long = "slurm", value_name = "KEY=VALUE")]
        slurm: Vec<String>,
        /// With --launcher slurm: return after submitting; `whet ablate OUT --collect` later.
        #[arg(long)]
        no_wait: bool,
        /// Ignore finished runs from an earlier, interrupted ablation.
        #[arg(long)]
        fresh: bool,
        /// Do not read or write the stage cache.
        #[arg(long)]
        no_cache: bool,
        /// Log the ablation (a parent run and one nested run per cell) to the MLflow tracking
        /// server at URI; overrides `track.mlflow.uri`.
        #[arg(long, value_name = "URI")]
        mlflow: Option<String>,
    },
    /// Write the processed data sets and a manifest of the fitted parameters.
    #[command(
        after_help = "Example: whet export pipelines/flights-delay.yaml --out export/ --format parquet"
    )]
    Export {
        /// The YAML run file.
        pipeline: PathBuf,
        /// Output folder.
        #[arg(long, short)]
        out: PathBuf,
        /// File format (tables: parquet, csv, npy; images: png, idx, npy, webdataset,
        /// parquet-shards).
        #[arg(long, value_parser = parse_format)]
        format: Option<whet::ExportFormat>,
        /// Shard formats: the most encoded image bytes per shard, e.g. `256MB`, `1GiB`
        /// (default 256 MiB; a shard holds at least one image).
        #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
        shard_size: Option<whet_core::Budget>,
        /// Online augmentation: also write N augmented copies of every training image after the
        /// originals (offline augmentation exports the copies the model was trained on).
        #[arg(long, value_name = "N")]
        augmented_copies: Option<usize>,
        /// Tables: also write these columns of the main table, as loaded, after the identifiers
        /// (`data.id`, or `row`: the 0-based row number in the file).
        #[arg(long, value_name = "COL", value_delimiter = ',')]
        keep: Vec<String>,
    },
    /// Apply the preprocessing recorded in a run's or an export's manifest to new data.
    #[command(
        after_help = "Example: whet apply runs/flights-delay/manifest.json new-flights.csv --out new/"
    )]
    Apply {
        /// `manifest.json` written by `whet run`, `whet ablate` or `whet export`.
        manifest: PathBuf,
        /// The new data (the main table, in the same format as at export).
        data: PathBuf,
        /// Output folder.
        #[arg(long, short)]
        out: PathBuf,
        /// File format: parquet, csv or npy.
        #[arg(long, value_parser = parse_format, default_value = "parquet")]
        format: whet::ExportFormat,
        /// Also write these columns of the data, as loaded, after the identifiers.
        #[arg(long, value_name = "COL", value_delimiter = ',')]
        keep: Vec<String>,
    },
    /// Score new data with a trained run: one output row per input row, with its identifiers,
    /// the predicted label and one score column per class.
    #[command(
        after_help = "Tables: CSV, CSV.gz or Parquet with the training schema (the target column may be absent).
Images: PNG/JPEG files, folders of them (flat or class sub-folders; `path` identifies each), or IDX
image files (`row`: the 0-based image index).
Columns: the identifiers (data.id, or `row`: the 0-based row number in the file, header not counted;
`file` first when several files are given), the --keep columns, `label` (the predicted class, in the
original label values) and `p_<class>` per class (binary: the positive class only), or `prediction`
(regression). A row the fitted steps cannot score stops the command naming file, row and column,
unless --skip-bad lists it in a side file.
Example: whet predict runs/flights-delay new-flights.csv --out predictions.parquet"
    )]
    Predict {
        /// The run folder (`whet run --out`).
        run: PathBuf,
        /// The data files to score.
        #[arg(required = true)]
        data: Vec<PathBuf>,
        /// The output file: `.parquet` or `.csv`.
        #[arg(long, short)]
        out: PathBuf,
        /// Also write these input columns, as loaded, after the identifiers.
        #[arg(long, value_name = "COL", value_delimiter = ',')]
        keep: Vec<String>,
        /// Read the side table NAME (as the run file names it) from PATH instead of the run's
        /// file (repeatable).
        #[arg(long = "table", value_name = "NAME=PATH", value_parser = parse_table)]
        tables: Vec<(String, PathBuf)>,
        /// Score the rows that can be scored and list the others (file,row,reason) in FILE
        /// (default: OUT.skipped.csv).
        #[arg(long, value_name = "FILE", num_args = 0..=1)]
        skip_bad: Option<Option<PathBuf>>,
    },
    /// Measure a trained run on new labelled data: metrics.json and the charts, as a run
    /// writes them.
    #[command(
        after_help = "Writes OUT/metrics.json (the run's metrics with `test` measured on DATA) and the charts of the
run's evaluation: confusion (classes), ROC and precision-recall (binary), predicted vs actual and
residuals (regression).
Tables: DATA has the training schema with the target column. Images: a folder with one sub-folder
per class (matched to the run's classes by name), an IDX image file with --labels, or image shards
(a .tar or .parquet file, a folder of them, or a pattern such as 'test-*.tar'; tar labels are the
run's class numbers, Parquet shards' named classes are matched by name).
Example: whet evaluate runs/flights-delay flights-2014.csv --out eval-2014/"
    )]
    Evaluate {
        /// The run folder (`whet run --out`).
        run: PathBuf,
        /// Labelled data: a table with the target column, a class-folder tree, IDX images, or
        /// image shards.
        data: PathBuf,
        /// The IDX label file of an IDX image file DATA.
        #[arg(long, value_name = "FILE")]
        labels: Option<PathBuf>,
        /// Output folder.
        #[arg(long, short)]
        out: PathBuf,
        /// Read the side table NAME from PATH instead of the run's file (repeatable).
        #[arg(long = "table", value_name = "NAME=PATH", value_parser = parse_table)]
        tables: Vec<(String, PathBuf)>,
    },
    /// Write a run's network as an ONNX model (with the preprocessing that maps onto ONNX) or
    /// as safetensors.
    #[command(
        name = "export-model",
        after_help = "Example: whet export-model runs/flights-delay --format onnx --out model.onnx\n         whet export-model runs/mnist-mlp --format safetensors --layout torch --out state.safetensors"
    )]
    ExportModel {
        /// The folder `whet run` wrote (its manifest.json and model.safetensors).
        run_dir: PathBuf,
        /// File format: onnx or safetensors.
        #[arg(long, value_parser = parse_model_format)]
        format: whet::ModelFormat,
        /// Weight layout of a safetensors file: whet ([in, out]) or torch ([out, in], as
        /// nn.Linear). Only with --format safetensors.
        #[arg(long, value_parser = whet::parse_layout)]
        layout: Option<whet::WeightLayout>,
        /// The file to write.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Draw a grid of training images and their augmented versions.
    #[command(after_help = "Example: whet preview pipelines/mnist-ablation.yaml --out preview.png")]
    Preview {
        /// The YAML run file.
        pipeline: PathBuf,
        /// The PNG to write.
        #[arg(long, short, default_value = "preview.png")]
        out: PathBuf,
        /// Number of source images (rows).
        #[arg(long, default_value_t = 8)]
        samples: usize,
        /// Augmented versions per image (columns after the original).
        #[arg(long, default_value_t = 8)]
        versions: usize,
    },
    /// Audit the input columns of a tabular pipeline: missing values, leakage, ID-like columns.
    #[command(after_help = "Example: whet audit pipelines/flights-delay.yaml --json")]
    Audit {
        /// The YAML run file.
        pipeline: PathBuf,
    },
    /// Check run files without running them: syntax, types, ranges, files, columns.
    #[command(after_help = "Example: whet validate pipelines/*.yaml")]
    Validate {
        /// The YAML run files.
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
    },
    /// Print the JSON Schema of run files (for editor completion and checking).
    #[command(
        after_help = "Editors: put `# yaml-language-server: $schema=whet.schema.json` at the top of a run file."
    )]
    Schema {
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Print the Markdown key reference (docs/reference.md) instead of the JSON Schema.
        #[arg(long)]
        markdown: bool,
    },
    /// Print a shell completion script for whet.
    #[command(after_help = "Install, e.g.:
  bash: whet completions bash > ~/.local/share/bash-completion/completions/whet
  zsh:  whet completions zsh > ~/.zfunc/_whet   (with `fpath+=~/.zfunc` before `compinit`)
  fish: whet completions fish > ~/.config/fish/completions/whet.fish")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a folder.
    #[command(
        after_help = "Example: whet man | man -l -    or    whet man --out /usr/local/share/man/man1"
    )]
    Man {
        /// Write `whet.1` and `whet-COMMAND.1` for every command into this folder instead of
        /// printing `whet.1`.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

fn parse_format(s: &str) -> Result<whet::ExportFormat, String> {
    s.parse()
}

fn parse_table(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!(
            "`{s}`: expected NAME=PATH, e.g. weather=weather-2014.csv"
        )),
    }
}

fn parse_model_format(s: &str) -> Result<whet::ModelFormat, String> {
    s.parse()
}

/// Most worker threads `--threads` accepts.
pub const MAX_THREADS: usize = 1024;

fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number of threads from 1 to {MAX_THREADS}, found `{s}` (the default uses \
             every core; results do not depend on it)"
        )),
    }
}

fn parse_memory(s: &str) -> Result<whet_core::Budget, String> {
    whet_core::Budget::parse(s).map_err(|e| e.to_string())
}

/// Runs the CLI with these arguments and returns the process exit code (the binary's `main`).
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayVersion => {
            // clap names a subcommand's version after the subcommand (`whet-run 0.1.0`); whet
            // has one version, printed under one name whatever command asked for it.
            let _ = outln!("whet {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 2,
            };
        }
    };
    if let Some(n) = cli.threads {
        // Only sizes the pool: results never depend on the thread count.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    if let Some(b) = cli.max_memory {
        whet_core::budget::set(b);
    }
    // Panics that a library catches on purpose (a third-party decoder panicking on a corrupt
    // file becomes a decode error naming the file) must not print the default hook's noise; any
    // other panic is a bug in whet and is reported once, below, as an internal error.
    std::panic::set_hook(Box::new(|info| {
        let mut last = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some(info.to_string());
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cmd::dispatch(&cli)));
    let _ = std::panic::take_hook();
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) if e.is::<StdoutClosed>() => 0,
        Ok(Err(e)) => {
            eprintln!("error: {}", render_error(&e));
            if e.chain().any(|c| {
                c.is::<RunFailed>()
                    || c.downcast_ref::<whet::Error>()
                        .is_some_and(whet::Error::is_failed_run)
            }) {
                1
            } else {
                2
            }
        }
        Err(_) => {
            let msg = LAST_PANIC
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_default();
            // A `println!` a dependency makes (clap's help into `head`) panics on a closed
            // stdout: the same quiet end as [`StdoutClosed`].
            if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
                return 0;
            }
            eprintln!(
                "error: internal error (a bug in whet; please report it with the run file): {msg}"
            );
            2
        }
    }
}

/// The error and its causes on one line, `outer: cause: cause`, leaving out a cause whose text
/// the line already holds (library errors often show their source in their own message as well
/// as returning it from `source()`, which `{:#}` would print twice).
pub fn render_error(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The message of the last panic, recorded by the hook installed in [`main_with_args`].
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper {
        source: std::io::Error,
    }

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "reading `t.parquet`: {}", self.source)
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let e = anyhow::Error::new(Wrapper {
            source: std::io::Error::other("bad footer"),
        })
        .context("loading the tables");
        assert_eq!(
            render_error(&e),
            "loading the tables: reading `t.parquet`: bad footer"
        );
    }
}
