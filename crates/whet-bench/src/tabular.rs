//! `whet-bench tabular`: the 10-million-row workload through whet-tabular (cargo feature
//! `tabular`).
//!
//! The same stages as `bench/py/tabular.py`, each timed, on the Parquet files that
//! `bench/py/make_table.py` writes:
//! - read: [`whet_tabular::load_table`] of both files;
//! - transform: mean imputation ([`ImputeConfig`] with `numeric: mean`) then z-score
//!   ([`NormalizeConfig`], population std) of the `x*` columns, each fitted on the whole table
//!   and applied to it, as the peers do;
//! - join: [`whet_tabular::join`], a left join on `key` with the default checks (whet refuses a
//!   many-to-many join, so it checks key uniqueness; the peers do not).
//!
//! Thread count: rayon's pool is set by `--threads`; polars sizes its own pool from
//! `POLARS_MAX_THREADS` when it starts (it cannot be set from inside a safe program once threads
//! exist), which the harness sets to the same number; the record shows both, and a warning goes
//! to stderr when they differ.

use crate::measure::{self, Measured, round3, timed};
use serde_json::{Value, json};
use std::path::PathBuf;
use whet_tabular::polars::prelude::*;
use whet_tabular::{
    ImputeConfig, JoinConfig, NormMethod, NormalizeConfig, NumericFill, Stage, TableSpec,
};

/// Options of `whet-bench tabular`.
#[derive(Debug, Clone, clap::Args)]
pub struct TabularArgs {
    /// The left table (`left-<seed>-<rows>.parquet` from make_table.py).
    #[arg(long)]
    pub left: PathBuf,
    /// The right table (`right-<seed>-<keys>.parquet`).
    #[arg(long)]
    pub right: PathBuf,
}

fn sum_f64(df: &DataFrame, column: &str) -> Result<f64, String> {
    let col = df
        .column(column)
        .map_err(|e| format!("column `{column}`: {e}"))?;
    let ca = col.f64().map_err(|e| format!("column `{column}`: {e}"))?;
    Ok(ca.sum().unwrap_or(0.0))
}

/// Runs the workload and prints one JSON line.
///
/// # Errors
/// A message naming the stage that failed (with whet-tabular's error), or a stdout failure.
pub fn run(args: &TabularArgs, threads: usize) -> Result<(), String> {
    let polars_env = std::env::var("POLARS_MAX_THREADS").ok();
    if polars_env.as_deref() != Some(threads.to_string().as_str()) {
        eprintln!(
            "whet-bench: POLARS_MAX_THREADS is {polars_env:?}, not {threads}: polars will use its \
             own thread count (bench/py/harness.py sets it)"
        );
    }
    let wall = std::time::Instant::now();
    let (loaded, read) = timed(|| {
        let left = whet_tabular::load_table(&TableSpec::new(&args.left));
        let right = whet_tabular::load_table(&TableSpec::new(&args.right));
        (left, right)
    });
    let (left, _) = loaded
        .0
        .map_err(|e| format!("reading {}: {e}", args.left.display()))?;
    let (right, _) = loaded
        .1
        .map_err(|e| format!("reading {}: {e}", args.right.display()))?;

    let columns: Vec<String> = left
        .get_column_names()
        .iter()
        .filter(|c| c.starts_with('x'))
        .map(|c| c.to_string())
        .collect();
    let impute = ImputeConfig {
        numeric: NumericFill::Mean,
        columns: columns.clone(),
        ..ImputeConfig::default()
    };
    let normalize = NormalizeConfig {
        method: NormMethod::Zscore,
        columns,
        exclude: vec![],
    };
    let (out, transform) = timed(|| -> Result<DataFrame, String> {
        let filled = impute
            .fit(&left)
            .and_then(|f| f.transform(left))
            .map_err(|e| format!("mean imputation: {e}"))?;
        normalize
            .fit(&filled)
            .and_then(|f| f.transform(filled))
            .map_err(|e| format!("z-score: {e}"))
    });
    let out = out?;

    let (joined, join) =
        timed(|| whet_tabular::join(&out, &right, &JoinConfig::new("right", &["key"])));
    let (joined, _) = joined.map_err(|e| format!("left join on `key`: {e}"))?;
    drop(out);
    let wall = wall.elapsed().as_secs_f64();

    let stages: [(&str, Measured); 3] = [("read", read), ("transform", transform), ("join", join)];
    let total: f64 = stages.iter().map(|(_, m)| m.wall).sum();
    let other = stages
        .iter()
        .map(|(_, m)| m.other_cores.map(|o| o * m.wall))
        .sum::<Option<f64>>()
        .map(|s| round3(s / total.max(1e-9)));
    let mut rec = json!({
        "bench": "tabular",
        "engine": "whet",
        "threads": threads,
        "env": { "POLARS_MAX_THREADS": polars_env },
        "library_threads": {
            "rayon.current_num_threads": rayon::current_num_threads(),
        },
        "versions": { "whet": env!("CARGO_PKG_VERSION"), "polars (rust)": whet_tabular::polars::VERSION },
        "total_s": total,
        "wall_s": wall,
        "other_cores": other,
        "peak_rss_bytes": measure::peak_rss_bytes(),
        "check": {
            "rows": joined.height(),
            "sum_x0": sum_f64(&joined, "x0")?,
            "sum_r0": sum_f64(&joined, "r0")?,
        },
        "left": args.left,
        "right": args.right,
    });
    let mut stage_other = serde_json::Map::new();
    for (name, m) in stages {
        rec[format!("{name}_s")] = json!(m.wall);
        stage_other.insert(
            name.into(),
            m.other_cores.map_or(Value::Null, |o| json!(round3(o))),
        );
    }
    rec["stage_other_cores"] = Value::Object(stage_other);
    measure::emit(&rec).map_err(|e| format!("writing the result: {e}"))
}
