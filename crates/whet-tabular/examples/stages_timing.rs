//! Times mean imputation + z-score + a left join on an integer key on N rows × 20 float columns
//! (10 % missing, 100k keys), synthetic from a seed, and prints the peak RSS. The same work in
//! Python is `benches/compare_python.py`; run both on an idle machine and compare ratios.
//!
//! Run with: `cargo run -p whet-tabular --example stages_timing -- 10000000` (the dev profile
//! builds dependencies at opt-level 3; `--release` works too but rebuilds polars with LTO).

use std::time::Instant;

use polars::prelude::*;
use rand::RngExt;
use whet_tabular::{
    Cardinality, ImputeConfig, JoinConfig, NormMethod, NormalizeConfig, NumericFill, Stage, join,
};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM")).map(String::from))
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    let mut rng = whet_core::rng::stream(42, &[6, n as u64]);
    let t = Instant::now();
    let mut cols = Vec::with_capacity(21);
    let keys: Vec<i64> = (0..n).map(|_| rng.random_range(0..100_000i64)).collect();
    cols.push(Int64Chunked::from_vec("key".into(), keys).into_column());
    for j in 0..20 {
        let v: Float64Chunked = (0..n)
            .map(|_| {
                let x = rng.random::<f64>() * 10.0 + j as f64;
                (rng.random::<f64>() >= 0.1).then_some(x)
            })
            .collect();
        cols.push(v.with_name(format!("x{j}").into()).into_column());
    }
    let df = DataFrame::new(n, cols)?;
    let right = df!("key" => (0..100_000i64).collect::<Vec<_>>(), "r0" => (0..100_000).map(|k| k as f64).collect::<Vec<_>>())?;
    println!("generate: {:.2} s", t.elapsed().as_secs_f64());
    let rss0 = peak_rss_mib();

    let t = Instant::now();
    let imp = ImputeConfig {
        numeric: NumericFill::Mean,
        ..Default::default()
    };
    let df = imp.fit(&df)?.transform(df)?;
    let t_imp = t.elapsed().as_secs_f64();
    let z = NormalizeConfig {
        method: NormMethod::Zscore,
        columns: vec![],
        exclude: vec!["key".into()],
    };
    let df = z.fit(&df)?.transform(df)?;
    let t_z = t.elapsed().as_secs_f64() - t_imp;
    let mut cfg = JoinConfig::new("right", &["key"]);
    cfg.cardinality = Some(Cardinality::ManyToOne);
    let (out, _) = join(&df, &right, &cfg)?;
    let total = t.elapsed().as_secs_f64();
    println!(
        "rows {n}: impute {t_imp:.3} s, zscore {t_z:.3} s, join {:.3} s, total {total:.3} s; out {:?}; peak RSS {:.0} MiB (after generation {rss0:.0} MiB); threads {}",
        total - t_imp - t_z,
        out.shape(),
        peak_rss_mib(),
        std::env::var("POLARS_MAX_THREADS").unwrap_or_else(|_| "all cores".into())
    );
    Ok(())
}
