//! Imputation + z-score + a left join on an integer key (four float columns on the right, as in
//! `bench/`'s table workload), at 100k and 1M rows × 20 float columns
//! (10 % missing), synthetic from a fixed seed; and the exact median and quartiles of
//! `normalize: robust` against polars' `quantile` on the same columns.
//!
//! Run with: `cargo bench -p whet-tabular --bench stages` (or add `--profile dev` to reuse the
//! test build instead of rebuilding polars with LTO)
//! (set `RAYON_NUM_THREADS` / `POLARS_MAX_THREADS` to pin the thread count).

use divan::Bencher;
use polars::prelude::*;
use rand::RngExt;
use rayon::prelude::*;
use whet_tabular::{
    ImputeConfig, JoinConfig, NormMethod, NormalizeConfig, NumericFill, Stage, join,
};

fn main() {
    divan::main();
}

const COLS: usize = 20;
const KEYS: i64 = 100_000;

/// `n` rows: `key` (integer in 0..100k) and `x0..x19` (normal-ish floats, 10 % missing).
fn table(n: usize) -> (DataFrame, DataFrame) {
    let mut rng = whet_core::rng::stream(42, &[6, n as u64]);
    let mut cols = Vec::with_capacity(COLS + 1);
    let keys: Vec<i64> = (0..n).map(|_| rng.random_range(0..KEYS)).collect();
    cols.push(Int64Chunked::from_vec("key".into(), keys).into_column());
    for j in 0..COLS {
        let v: Float64Chunked = (0..n)
            .map(|_| {
                let x: f64 = rng.random::<f64>() * 10.0 + j as f64;
                (rng.random::<f64>() >= 0.1).then_some(x)
            })
            .collect();
        cols.push(v.with_name(format!("x{j}").into()).into_column());
    }
    let left = DataFrame::new(n, cols).unwrap();
    let right = df!(
        "key" => (0..KEYS).collect::<Vec<_>>(),
        "r0" => (0..KEYS).map(|k| k as f64 * 0.5).collect::<Vec<_>>(),
        "r1" => (0..KEYS).map(|k| (k % 97) as f64).collect::<Vec<_>>(),
        "r2" => (0..KEYS).map(|k| (k % 89) as f64 - 3.0).collect::<Vec<_>>(),
        "r3" => (0..KEYS).map(|k| k as f64 * -0.25).collect::<Vec<_>>(),
    )
    .unwrap();
    (left, right)
}

fn impute() -> ImputeConfig {
    ImputeConfig {
        numeric: NumericFill::Mean,
        ..Default::default()
    }
}
fn zscore() -> NormalizeConfig {
    NormalizeConfig {
        method: NormMethod::Zscore,
        columns: vec![],
        exclude: vec!["key".into()],
    }
}

#[divan::bench(args = [100_000, 1_000_000], sample_count = 10)]
fn impute_mean(bencher: Bencher, n: usize) {
    let (df, _) = table(n);
    bencher
        .with_inputs(|| df.clone())
        .bench_values(|df| impute().fit(&df).unwrap().transform(df).unwrap());
}

#[divan::bench(args = [100_000, 1_000_000], sample_count = 10)]
fn zscore_fit_transform(bencher: Bencher, n: usize) {
    let (df, _) = table(n);
    let df = impute().fit(&df).unwrap().transform(df).unwrap();
    bencher
        .with_inputs(|| df.clone())
        .bench_values(|df| zscore().fit(&df).unwrap().transform(df).unwrap());
}

/// The join alone, at up to the table workload's 10 M rows (whose gathered columns, 80 MB each,
/// are fresh memory every time, as in a run); the left table is only its key and one column.
#[divan::bench(args = [100_000, 1_000_000, 10_000_000], sample_count = 10)]
fn left_join_int_key(bencher: Bencher, n: usize) {
    let mut rng = whet_core::rng::stream(42, &[7, n as u64]);
    let keys: Vec<i64> = (0..n).map(|_| rng.random_range(0..KEYS)).collect();
    let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let df = df!("key" => keys, "x0" => x).unwrap();
    let (_, right) = table(0);
    let mut cfg = JoinConfig::new("right", &["key"]);
    cfg.cardinality = Some(whet_tabular::Cardinality::ManyToOne);
    bencher.bench(|| join(&df, &right, &cfg).unwrap());
}

/// The join with a right table as lookup tables usually are: a float, an integer and a text
/// column (the text gathered by polars from whet's row index, the numbers by whet).
#[divan::bench(args = [1_000_000, 10_000_000], sample_count = 10)]
fn left_join_mixed_columns(bencher: Bencher, n: usize) {
    let mut rng = whet_core::rng::stream(42, &[8, n as u64]);
    let keys: Vec<i64> = (0..n).map(|_| rng.random_range(0..KEYS)).collect();
    let df = df!("key" => keys).unwrap();
    let right = df!(
        "key" => (0..KEYS).collect::<Vec<_>>(),
        "lat" => (0..KEYS).map(|k| k as f64 * 0.5).collect::<Vec<_>>(),
        "elevation" => (0..KEYS).map(|k| k % 3000).collect::<Vec<_>>(),
        "name" => (0..KEYS).map(|k| format!("site {k}")).collect::<Vec<_>>(),
    )
    .unwrap();
    let mut cfg = JoinConfig::new("right", &["key"]);
    cfg.cardinality = Some(whet_tabular::Cardinality::ManyToOne);
    bencher.bench(|| join(&df, &right, &cfg).unwrap());
}

#[divan::bench(args = [100_000, 1_000_000], sample_count = 10)]
fn impute_zscore_join(bencher: Bencher, n: usize) {
    let (df, right) = table(n);
    let mut cfg = JoinConfig::new("right", &["key"]);
    cfg.cardinality = Some(whet_tabular::Cardinality::ManyToOne);
    bencher.with_inputs(|| df.clone()).bench_values(|df| {
        let df = impute().fit(&df).unwrap().transform(df).unwrap();
        let df = zscore().fit(&df).unwrap().transform(df).unwrap();
        join(&df, &right, &cfg).unwrap()
    });
}

fn robust() -> NormalizeConfig {
    NormalizeConfig {
        method: NormMethod::Robust,
        ..zscore()
    }
}

/// `normalize: robust` fitted in memory: the median and quartiles of every column (whet's exact
/// quantiles, the values held at once as the budget allows).
#[divan::bench(args = [100_000, 1_000_000], sample_count = 10)]
fn robust_fit(bencher: Bencher, n: usize) {
    let (df, _) = table(n);
    bencher.bench(|| robust().fit(&df).unwrap());
}

/// The same statistics through polars' `quantile` (linear; one copy and selection per
/// quantile), columns in parallel: the baseline for `robust_fit`.
#[divan::bench(args = [100_000, 1_000_000], sample_count = 10)]
fn robust_polars_quantiles(bencher: Bencher, n: usize) {
    let (df, _) = table(n);
    let columns: Vec<Float64Chunked> = (0..COLS)
        .map(|j| df.column(&format!("x{j}")).unwrap().f64().unwrap().clone())
        .collect();
    bencher.bench(|| {
        columns
            .par_iter()
            .map(|ca| [0.5, 0.25, 0.75].map(|q| ca.quantile(q, QuantileMethod::Linear).unwrap()))
            .collect::<Vec<_>>()
    });
}
