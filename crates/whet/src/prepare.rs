//! From a run file's data section to the trainer's batch sources: images (loaded, split,
//! normalised, augmented offline or online) or tables (loaded, joined, split, fitted on train).
//! Deterministic stages go through the stage [`Cache`].

use crate::cache::{Bundle, Cache, KeyBuilder};
use crate::config::RunFile;
use anyhow::{Context, Result, anyhow};
use ndarray::Array2;
use serde_json::{Value, json};
use whet_core::Progress;
use whet_train::{ArraySource, BatchSource};

/// Data ready for training.
pub struct PreparedData {
    /// Training batches (augmenting, when online augmentation is on).
    pub train: Box<dyn BatchSource>,
    /// Validation set, if any.
    pub valid: Option<ArraySource>,
    /// Test set.
    pub test: ArraySource,
    /// Class names (empty for regression).
    pub classes: Vec<String>,
    /// Fitted preprocessing parameters (for `manifest.json`).
    pub manifest: Value,
    /// Sizes and reports (for `manifest.json` and the summary).
    pub summary: Value,
    /// Stages served from the cache.
    pub cache_hits: Vec<String>,
}

/// Prepares the data of `run` with `seed`.
///
/// # Errors
/// Bad or missing data, with the file and place.
pub fn prepare(
    run: &RunFile,
    seed: u64,
    cache: &Cache,
    progress: &dyn Progress,
) -> Result<PreparedData> {
    if run.data.images.is_some() {
        crate::images::prepare(run, seed, cache, progress)
    } else {
        prepare_tables(run, seed, cache, progress)
    }
}

/// The tabular config of a run file.
///
/// # Errors
/// The run file has no tables or no target.
pub fn tabular_config(run: &RunFile) -> Result<whet_tabular::TabularConfig> {
    let tables = run
        .data
        .tables
        .clone()
        .ok_or_else(|| anyhow!("the run file has no `data.tables`"))?;
    let target = run
        .data
        .target
        .clone()
        .ok_or_else(|| anyhow!("the run file has no `data.target`"))?;
    Ok(whet_tabular::TabularConfig {
        data: whet_tabular::TablesConfig {
            tables,
            main: run.data.main.clone(),
            target,
        },
        steps: run.steps.clone(),
        split: run.split.clone().unwrap_or_default(),
    })
}

/// Runs `load` (anything that reads the files of `tables`) and turns a panic inside it into an
/// error that names the file.
///
/// polars' Parquet reader panics on some corrupt files (whet-fuzz found failed asserts,
/// out-of-range slices and `unwrap`s in its thrift, page and bitmap decoders). Such a panic is a
/// corrupt input, not a bug in whet, so it is reported like any read error: each table is read
/// again on its own (under `catch_unwind`) to find the one that fails. On a corrupt file the
/// same read may end in an error or a panic depending on which of polars' parallel column
/// decoders gets there first, so a table whose lone read returns an error is the culprit too
/// (that error names it). A panic that no single table reproduces is passed on unchanged (an
/// internal error).
///
/// # Errors
/// `load`'s error, the error of the table that fails alone, or `reading `FILE`: the reader
/// failed on corrupt data (...)`.
pub fn catch_corrupt_tables<'a, T>(
    tables: impl IntoIterator<Item = &'a whet_tabular::TableSpec>,
    load: impl FnOnce() -> Result<T>,
) -> Result<T> {
    use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
    let payload = match catch_unwind(AssertUnwindSafe(load)) {
        Ok(r) => return r,
        Err(p) => p,
    };
    let text = |p: &(dyn std::any::Any + Send)| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into())
    };
    for spec in tables {
        let p = match catch_unwind(AssertUnwindSafe(|| whet_tabular::load_table(spec))) {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(e.into()),
            Err(p) => p,
        };
        let format = match spec.resolved_format() {
            Ok(whet_tabular::TableFormat::Parquet) => "Parquet ",
            _ => "",
        };
        anyhow::bail!(
            "reading `{}`: the {format}reader failed on corrupt data ({}); the file is damaged or not a valid {format}file",
            spec.path.display(),
            text(&*p).lines().next().unwrap_or_default()
        );
    }
    resume_unwind(payload)
}

fn arrays_to_bundle(b: &mut Bundle, name: &str, a: &Array2<f32>) -> Value {
    let a = a.as_standard_layout();
    b.push_f32(name, a.as_slice().expect("standard layout"));
    json!([a.nrows(), a.ncols()])
}

fn bundle_to_array(b: &Bundle, name: &str, shape: &Value) -> Result<Array2<f32>> {
    let rows = shape[0].as_u64().context("cache shape")? as usize;
    let cols = shape[1].as_u64().context("cache shape")? as usize;
    let data = b
        .f32(name)
        .with_context(|| format!("cache entry lacks `{name}`"))?;
    Array2::from_shape_vec((rows, cols), data).context("cache entry shape")
}

/// Runs the tabular preparation (or reads it from the cache) and returns the bundle with
/// train/validation/test arrays, features, classes, report and manifest.
///
/// # Errors
/// Bad data or config.
pub fn prepared_tables(
    run: &RunFile,
    seed: u64,
    cache: &Cache,
    progress: &dyn Progress,
) -> Result<(Bundle, bool)> {
    let cfg = tabular_config(run)?;
    let mut key = KeyBuilder::new()
        .json("tabular", &cfg)?
        .part("seed", &seed.to_string());
    for (name, spec) in &cfg.data.tables {
        key = key.file(&format!("table:{name}"), &spec.path)?;
    }
    let key = key.finish();
    cache.get_or_compute("tables", &key, || {
        let p = catch_corrupt_tables(cfg.data.tables.values(), || {
            whet_tabular::prepare(&cfg, seed, progress).map_err(|e| name_table_files(e, &cfg))
        })?;
        let mut b = Bundle::default();
        let mut shapes = serde_json::Map::new();
        for (name, s) in [
            ("train", &p.train),
            ("validation", &p.validation),
            ("test", &p.test),
        ] {
            shapes.insert(
                format!("x_{name}"),
                arrays_to_bundle(&mut b, &format!("x_{name}"), &s.x),
            );
            shapes.insert(
                format!("y_{name}"),
                arrays_to_bundle(&mut b, &format!("y_{name}"), &s.y),
            );
        }
        b.meta = json!({
            "shapes": shapes,
            "features": p.features,
            "classes": p.classes,
            "report": p.report,
            "manifest": p.manifest,
        });
        Ok(b)
    })
}

/// Adds the table files to an error from preparing the tables when its message names none of
/// them (a target with one class, a step that leaves no rows, …), so every data error says which
/// files it is about.
fn name_table_files(e: whet_tabular::Error, cfg: &whet_tabular::TabularConfig) -> anyhow::Error {
    let e = anyhow::Error::new(e);
    let text = crate::render_error(&e);
    let paths: Vec<String> = cfg
        .data
        .tables
        .iter()
        .map(|(name, t)| format!("{name}: `{}`", t.path.display()))
        .collect();
    if cfg
        .data
        .tables
        .values()
        .any(|t| text.contains(&t.path.display().to_string()))
    {
        e
    } else {
        e.context(format!("preparing the tables ({})", paths.join(", ")))
    }
}

fn prepare_tables(
    run: &RunFile,
    seed: u64,
    cache: &Cache,
    progress: &dyn Progress,
) -> Result<PreparedData> {
    let (b, hit) = prepared_tables(run, seed, cache, progress)?;
    let shapes = &b.meta["shapes"];
    let get = |n: &str| bundle_to_array(&b, n, &shapes[n]);
    let train = ArraySource::new(get("x_train")?, get("y_train")?)?;
    let valid = ArraySource::new(get("x_validation")?, get("y_validation")?)?;
    let test = ArraySource::new(get("x_test")?, get("y_test")?)?;
    if train.x.nrows() == 0 {
        anyhow::bail!(
            "the training split is empty after preprocessing; check the split fractions and the steps that drop rows"
        );
    }
    if test.x.nrows() == 0 {
        anyhow::bail!("the test split is empty; raise `split.test`");
    }
    let classes: Vec<String> =
        serde_json::from_value(b.meta["classes"].clone()).unwrap_or_default();
    let summary = json!({
        "kind": "tables",
        "rows": {"train": train.x.nrows(), "validation": valid.x.nrows(), "test": test.x.nrows()},
        "features": b.meta["features"],
        "report": b.meta["report"],
    });
    Ok(PreparedData {
        valid: (valid.x.nrows() > 0).then_some(valid),
        train: Box::new(train),
        test,
        classes,
        manifest: b.meta["manifest"].clone(),
        summary,
        cache_hits: if hit { vec!["tables".into()] } else { vec![] },
    })
}
