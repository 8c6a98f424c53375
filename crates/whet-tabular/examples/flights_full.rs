//! The flights pipeline on the full nycflights13 data (336,776 flights), with timings.
//!
//! Run with: `cargo run -p whet-tabular --example flights_full [OUT_DIR]`
//! (with OUT_DIR, the splits are exported there as Parquet with `manifest.json`).

use std::path::PathBuf;
use std::time::Instant;

use whet_core::NoProgress;
use whet_tabular::{ExportFormat, TabularConfig, audit, export, prepare};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let d = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../datasets/nycflights13");
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    let mut v = serde_json::json!({
        "data": {
            "tables": { "flights": p("flights.csv.gz"), "weather": p("weather.csv.gz"), "planes": p("planes.csv.gz") },
            "main": "flights",
            "target": { "column": "arr_delay", "threshold": 15 },
        },
        "steps": [
            { "join": { "with": "weather", "on": ["origin", "time_hour"], "how": "left", "cardinality": "many_to_one" } },
            { "join": { "with": "planes", "on": ["tailnum"], "how": "left", "suffix": "_plane", "cardinality": "many_to_one" } },
            { "audit": { "leakage": 0.9 } },
        ],
        "split": { "method": "time", "order": "time_hour", "test": 0.2, "validation": 0.1 },
    });
    // 1. Audit with the after-the-fact columns left in.
    let cfg: TabularConfig = serde_json::from_value(v.clone())?;
    let t = Instant::now();
    let rep = audit(&cfg, &NoProgress)?;
    println!(
        "audit (full data, leakage 0.9): {:.2} s\n{}",
        t.elapsed().as_secs_f64(),
        rep.to_table()
    );

    // 2. The pipeline with them excluded.
    v["steps"] = serde_json::json!([
        v["steps"][0], v["steps"][1],
        { "exclude": ["arr_time", "dep_delay", "dep_time", "air_time"] },
        { "audit": { "max_missing": 0.4, "leakage": 0.95, "fail_on": ["leakage"] } },
        { "drop_columns": { "max_missing": 0.5 } },
        { "impute": { "numeric": "median", "categorical": "mode", "indicator": true } },
        { "encode": { "one_hot": ["carrier", "origin"], "max_levels": 20 } },
        { "normalize": { "method": "zscore" } },
    ]);
    let cfg: TabularConfig = serde_json::from_value(v)?;
    let t = Instant::now();
    let prep = prepare(
        &cfg,
        42,
        None,
        &whet_tabular::LoadedTables::none(),
        &NoProgress,
    )?;
    println!("prepare: {:.2} s total", t.elapsed().as_secs_f64());
    for (phase, s) in &prep.report.seconds {
        println!("  {phase:<16} {s:.3} s");
    }
    for j in &prep.report.joins {
        println!(
            "  join {}: {} -> {} rows, {} unmatched left",
            j.with, j.rows_before, j.rows_after, j.unmatched_left
        );
    }
    println!(
        "  rows train/validation/test: {} / {} / {} ({} dropped: missing target); {} features; train positives {:.2} %",
        prep.train.len(),
        prep.validation.len(),
        prep.test.len(),
        prep.report.target_missing_dropped,
        prep.features.len(),
        100.0 * prep.train.y().mean().unwrap_or(0.0)
    );
    if let Some(out) = std::env::args().nth(1) {
        let t = Instant::now();
        let r = export(&prep, out.as_ref(), ExportFormat::Parquet)?;
        println!(
            "export: {:.2} s, {} files, {}",
            t.elapsed().as_secs_f64(),
            r.files.len(),
            r.manifest.display()
        );
    }
    Ok(())
}
