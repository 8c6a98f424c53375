//! Using a trained model: [`predict`] scores new data with a run's fitted preprocessing and
//! network, [`evaluate`] measures the run's model on new labelled data with the code that
//! measures a run ([`crate::execute`]'s `measure` and `SetCharts`), so both give the numbers a
//! run gives for the same rows. The network is read through the run's one
//! [`whet_train::Readout`] (its binary threshold, its regression target's scale).

use crate::error::{Error, Result, ResultExt};
use crate::execute::{EvaluatedOn, Metrics, SetCharts, measure, write_json, write_set_charts};
use crate::manifest::{Manifest, ManifestKind};
use crate::prepare::{DataSummary, Preprocessing};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use whet_core::outputs::{self, Input, OutputKind};
use whet_tabular::polars::prelude::*;

/// Rows scored at once: the feature matrix of one batch (`BATCH_ROWS × features` f32) is what
/// predicting holds besides the loaded table and the output columns.
pub const BATCH_ROWS: usize = 65_536;

/// The name of the predicted-label column in `whet predict`'s output (classification and
/// binary runs).
pub const LABEL_COLUMN: &str = "label";
/// The name of the predicted-value column (regression runs).
pub const VALUE_COLUMN: &str = "prediction";
/// The prefix of the score columns: `p_<class>` (one per class; binary: the positive class).
pub const SCORE_PREFIX: &str = "p_";

/// What to do with a row the fitted steps leave unscorable (a missing or non-finite feature
/// value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BadRows {
    /// Stop with an error naming the file, the row and the column (the default).
    #[default]
    Fail,
    /// Score the other rows and list the bad ones (`file,row,reason`) in this CSV file, or in
    /// `OUT.skipped.csv` beside the output when `None`.
    Skip(Option<PathBuf>),
}

/// How to run [`predict`].
#[derive(Debug, Clone, Default)]
pub struct PredictOptions {
    /// Columns of the input written next to every prediction with their values as loaded,
    /// after the identifiers (tables).
    pub keep: Vec<String>,
    /// Side tables the run joins, by the name the run file gives them, read from these files
    /// instead of the run's paths (`--table NAME=PATH`).
    pub tables: BTreeMap<String, PathBuf>,
    /// What to do with rows that cannot be scored.
    pub bad_rows: BadRows,
}

/// What [`predict`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictReport {
    /// The output file.
    pub out: PathBuf,
    /// Rows read from the inputs.
    pub rows_in: usize,
    /// Rows written (one per scored input row).
    pub rows_written: usize,
    /// Rows that could not be scored and were listed in [`PredictReport::skipped_file`].
    pub skipped: usize,
    /// The side file listing the skipped rows (with [`BadRows::Skip`]; header only when none
    /// was skipped).
    pub skipped_file: Option<PathBuf>,
    /// Input rows the run's own pre-split steps removed (an inner join, `drop_rows`), as they
    /// did in training; 0 for most runs.
    pub removed_by_steps: usize,
    /// The output's columns.
    pub columns: Vec<String>,
    /// The data files that were over the memory budget, so were read a chunk of rows at a
    /// time.
    pub streamed: Vec<PathBuf>,
}

/// What [`evaluate`] wrote.
#[derive(Debug, Clone)]
pub struct EvaluateReport {
    /// The metrics (also `OUT/metrics.json`): the run's, with `test`, `test_classes` and
    /// `test_samples` measured on the new data.
    pub metrics: Metrics,
    /// Rows whose target was missing, dropped before measuring (as in a run).
    pub target_missing_dropped: usize,
    /// Images left out because their class is not one of the run's: class name and count.
    pub left_out: Vec<(String, usize)>,
    /// The files written into the output folder.
    pub files: Vec<PathBuf>,
    /// Whether the data file was over the memory budget, so was read a chunk of rows at a
    /// time (and its rows measured from shards on disk when they did not fit).
    pub streamed: bool,
}

/// A run folder's model and manifest.
struct RunDir {
    manifest: Manifest,
    model: whet_train::Mlp,
    /// How the model's outputs become labels and values: its decision (the run's binary
    /// threshold) and the regression target's scale from the manifest.
    readout: whet_train::Readout,
    manifest_path: PathBuf,
    model_path: PathBuf,
}

impl RunDir {
    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::new("the run's manifest", &self.manifest_path),
            Input::new("the run's model", &self.model_path),
        ]
    }
}

fn load_run(run_dir: &Path) -> Result<RunDir> {
    let manifest_path = run_dir.join("manifest.json");
    let model_path = run_dir.join("model.safetensors");
    if !manifest_path.is_file() {
        return Err(Error::Invalid(format!(
            "`{}` is not a run folder: it has no manifest.json (give the folder `whet run` wrote)",
            run_dir.display()
        )));
    }
    let manifest = Manifest::load(&manifest_path)?;
    manifest.refuse_folds(&manifest_path)?;
    if manifest.kind != ManifestKind::Run {
        return Err(Error::Invalid(format!(
            "`{}` is an export, not a run: it has no model (give the folder `whet run` wrote)",
            run_dir.display()
        )));
    }
    if !model_path.is_file() {
        return Err(Error::Invalid(format!(
            "`{}` has no model.safetensors: the run did not finish (it diverged or was stopped)",
            run_dir.display()
        )));
    }
    let model = whet_train::checkpoint::load(&model_path)
        .context(format!("loading the model `{}`", model_path.display()))?;
    let scale = match &manifest.preprocessing {
        Preprocessing::Tables(t) => t.target_scale,
        Preprocessing::Images { .. } => None,
    }
    .filter(|_| model.task() == whet_train::Task::Regression);
    let readout = whet_train::Readout::of(&model).with_target_scale(scale);
    Ok(RunDir {
        manifest,
        model,
        readout,
        manifest_path,
        model_path,
    })
}

/// The class names of a run (empty for regression).
fn classes(m: &Manifest) -> Vec<String> {
    match (&m.preprocessing, &m.data) {
        (Preprocessing::Tables(t), _) => t.classes.clone(),
        (_, DataSummary::Images { classes, .. }) => classes.clone(),
        _ => vec![],
    }
}

/// The message for an unscorable row of `batch` (from `path`): file, row, column, the value as
/// loaded.
fn bad_row_text(path: &Path, batch: &whet_tabular::NewBatch, bad: &whet_tabular::BadRow) -> String {
    let row = batch.transformed.source_rows[bad.index];
    let loaded = batch
        .loaded(&bad.column, row)
        .map(|v| format!(" (value as loaded: {v})"))
        .unwrap_or_default();
    format!(
        "`{}`, row {row} (0-based data row, header not counted): feature `{}` is {} after the run's steps{loaded}",
        path.display(),
        bad.column,
        bad.reason
    )
}

/// The feature matrix of the transformed rows `start..start + len`.
fn batch_matrix(
    t: &whet_tabular::Transformed,
    features: &[String],
    start: usize,
    len: usize,
) -> Result<ndarray::Array2<f32>> {
    let slice = t.frame.slice(start as i64, len);
    Ok(whet_tabular::to_matrix(
        &slice,
        features,
        &t.last_step,
        "predict",
    )?)
}

/// Scores new data with a trained run: replays the run's fitted preprocessing on every input of
/// `data` (tables: CSV, CSV.gz or Parquet files with the training schema, the target column
/// optional, joins replayed against the run's side tables or [`PredictOptions::tables`];
/// images: PNG/JPEG files, or folders of them, flat or in class sub-folders, or IDX image
/// files, converted, resized and normalised as the run did) and writes one row per input row or
/// image to `out` (Parquet or CSV, by its extension; written atomically): the identifiers
/// (tables: `data.id`, or `row`: the 0-based row number in its file, with a leading `file`
/// column when there are several files; image files: `path`; IDX files: `row`, the image's
/// index), the [`PredictOptions::keep`] columns, the predicted label in the original label
/// values ([`LABEL_COLUMN`], binary: by the run's threshold) and one probability column per
/// class (named [`SCORE_PREFIX`] then the class; binary: the positive class only), or the
/// predicted value in the target's units ([`VALUE_COLUMN`]) for regression. Features are built
/// and scored in batches of [`BATCH_ROWS`] rows, and written batch by batch; a table file
/// estimated to need more than the memory budget is read a chunk of rows at a time (a Parquet
/// file; see [`whet_tabular::NewData`]), so what predicting holds does not grow with the file.
/// `progress` shows the rows read.
///
/// `out` may not overlap an input (checked first); it and the list of skipped rows are written
/// to temporary files and moved into place at the end.
///
/// # Errors
/// An `out` that overlaps an input or has another extension, a folder that is not a run, data
/// that do not fit the run, a row the fitted steps leave unscorable (unless
/// [`BadRows::Skip`]), write errors.
pub fn predict(
    run_dir: &Path,
    data: &[PathBuf],
    out: &Path,
    options: &PredictOptions,
    progress: &dyn whet_core::Progress,
) -> Result<PredictReport> {
    let format = output_format(out)?;
    let run = load_run(run_dir)?;
    let mut inputs = run.inputs();
    inputs.extend(data.iter().map(|d| Input::new("a data file", d)));
    inputs.extend(
        options
            .tables
            .iter()
            .map(|(n, p)| Input::new(format!("the table `{n}`"), p)),
    );
    let skipped_file = match &options.bad_rows {
        BadRows::Fail => None,
        BadRows::Skip(Some(p)) => Some(p.clone()),
        BadRows::Skip(None) => Some(skipped_path(out)),
    };
    outputs::check(out, OutputKind::File, &inputs)?;
    if let Some(s) = &skipped_file {
        outputs::check(s, OutputKind::File, &inputs)?;
    }
    if data.is_empty() {
        return Err(Error::Invalid("give at least one data file".into()));
    }
    let classes = classes(&run.manifest);
    let images = match (&run.manifest.preprocessing, &run.manifest.data) {
        (Preprocessing::Tables(_), _) => None,
        (
            Preprocessing::Images {
                normalizer, grey, ..
            },
            DataSummary::Images { shape, .. },
        ) => {
            if !options.keep.is_empty() || !options.tables.is_empty() {
                return Err(Error::Invalid(
                    "--keep and --table name table columns and tables; an image run has none"
                        .into(),
                ));
            }
            if skipped_file.is_some() {
                return Err(Error::Invalid(
                    "--skip-bad lists table rows the fitted steps cannot score; an image that cannot be decoded stops an image prediction, naming the file".into(),
                ));
            }
            Some((normalizer, *grey, *shape))
        }
        (Preprocessing::Images { .. }, _) => {
            return Err(Error::Invalid(format!(
                "`{}`: the manifest's image preprocessing has no image sizes",
                run.manifest_path.display()
            )));
        }
    };
    let output = Output {
        run: &run,
        classes: &classes,
        several: data.len() > 1,
    };
    // Both files are written to temporary files and moved into place at the end.
    let write = |w: &mut std::io::BufWriter<std::fs::File>,
                 skipped: Option<&mut std::io::BufWriter<std::fs::File>>|
     -> Result<PredictReport> {
        let mut sink = whet_tabular::TableWriter::new(w, format)?;
        let mut skipped = match skipped {
            Some(s) => Some(whet_tabular::TableWriter::with_schema(
                s,
                whet_tabular::ExportFormat::Csv,
                skipped_frame(vec![])?.schema(),
            )?),
            None => None,
        };
        let (rows_in, removed, n_skipped, streamed) = match (images, &run.manifest.preprocessing) {
            (Some((normalizer, grey, shape)), _) => {
                let scored = predict_images(&run, normalizer, grey, shape, data, &classes)?;
                let rows = scored.ids.height();
                sink.write(&mut output.frame(scored.ids, scored.columns, &LabelType::Text)?)?;
                (rows, 0, 0, vec![])
            }
            (None, Preprocessing::Tables(t)) => predict_tables(
                &output,
                t,
                data,
                options,
                &mut sink,
                skipped.as_mut(),
                progress,
            )?,
            (None, Preprocessing::Images { .. }) => unreachable!("checked above"),
        };
        let (columns, rows_written) = (sink.columns().to_vec(), sink.rows());
        sink.finish()?;
        if let Some(s) = skipped {
            s.finish()?;
        }
        Ok(PredictReport {
            out: out.to_path_buf(),
            rows_in,
            rows_written,
            skipped: n_skipped,
            skipped_file: skipped_file.clone(),
            removed_by_steps: removed,
            columns,
            streamed,
        })
    };
    let mut report = None;
    whet_core::fsx::atomic_write_with(out, |w| -> Result<()> {
        report = Some(match &skipped_file {
            // Written even when empty, so a list from an earlier prediction never stays beside
            // this one.
            Some(p) => {
                let mut inner = None;
                whet_core::fsx::atomic_write_with(p, |s| -> Result<()> {
                    inner = Some(write(w, Some(s))?);
                    Ok(())
                })?;
                inner.expect("written")
            }
            None => write(w, None)?,
        });
        Ok(())
    })?;
    Ok(report.expect("written"))
}

/// The list of skipped rows: `file`, `row`, `reason`.
fn skipped_frame(rows: Vec<(String, IdxSize, String)>) -> Result<DataFrame> {
    let n = rows.len();
    let (f, r, why): (Vec<String>, Vec<IdxSize>, Vec<String>) =
        rows.into_iter()
            .fold((vec![], vec![], vec![]), |mut acc, (f, r, w)| {
                acc.0.push(f);
                acc.1.push(r);
                acc.2.push(w);
                acc
            });
    pl(DataFrame::new(
        n,
        vec![
            StringChunked::from_iter_values("file".into(), f.iter().map(String::as_str))
                .into_column(),
            Column::new("row".into(), r),
            StringChunked::from_iter_values("reason".into(), why.iter().map(String::as_str))
                .into_column(),
        ],
    ))
}

/// What a prediction's output rows are made of.
struct Output<'a> {
    run: &'a RunDir,
    classes: &'a [String],
    /// Whether there are several inputs (a leading `file` column then names each row's).
    several: bool,
}

impl Output<'_> {
    /// The output rows: the identifier columns `ids`, then the prediction columns.
    fn frame(
        &self,
        mut ids: DataFrame,
        cols: Columns,
        label_type: &LabelType,
    ) -> Result<DataFrame> {
        let Columns {
            labels,
            probs,
            values,
        } = cols;
        let rows = labels.len().max(values.len());
        let mut out: Vec<Column> = Vec::new();
        match self.run.model.task() {
            whet_train::Task::Regression => {
                out.push(Float64Chunked::from_vec(VALUE_COLUMN.into(), values).into_column());
            }
            whet_train::Task::Binary => {
                out.push(label_type.column(labels)?);
                let pos = self.classes.get(1).cloned().unwrap_or_else(|| "1".into());
                let v = probs.into_iter().next().unwrap_or_default();
                out.push(
                    Float32Chunked::from_vec(format!("{SCORE_PREFIX}{pos}").into(), v)
                        .into_column(),
                );
            }
            whet_train::Task::Classification => {
                out.push(label_type.column(labels)?);
                for (j, v) in probs.into_iter().enumerate() {
                    let name = self
                        .classes
                        .get(j)
                        .cloned()
                        .unwrap_or_else(|| j.to_string());
                    out.push(
                        Float32Chunked::from_vec(format!("{SCORE_PREFIX}{name}").into(), v)
                            .into_column(),
                    );
                }
            }
        }
        let taken: Vec<String> = out.iter().map(|c| c.name().to_string()).collect();
        if ids.width() == 0 {
            return pl(DataFrame::new(rows, out));
        }
        whet_tabular::check_clashes(&ids, &taken, "prediction columns")?;
        pl(ids.hstack_mut(&out))?;
        Ok(ids)
    }
}

/// A polars result as a whet one (through the tabular error, which wraps polars').
fn pl<T>(r: PolarsResult<T>) -> Result<T> {
    r.map_err(|e| Error::from(whet_tabular::Error::from(e)))
}

/// The default list of skipped rows: `OUT.skipped.csv` (the output's file name with
/// `.skipped.csv` appended).
pub fn skipped_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".skipped.csv");
    out.with_file_name(name)
}

/// What scoring the inputs gave, before the output is assembled.
struct Scored {
    /// The leading columns (image paths, or rows of IDX files), one row per scored image.
    ids: DataFrame,
    /// The predictions.
    columns: Columns,
}

/// The type the label column is written in.
enum LabelType {
    /// Text (class names of images, binary classes, text labels).
    Text,
    /// The target column's numbers as loaded.
    Number(DataType),
}

impl LabelType {
    fn of(tables: &whet_tabular::Manifest) -> LabelType {
        let dtype = tables
            .input_schema
            .iter()
            .find(|(n, _)| n == tables.target.column())
            .map(|(_, t)| t.as_str());
        if !matches!(
            tables.target,
            whet_tabular::TargetKind::Classification { .. }
        ) {
            return LabelType::Text;
        }
        match dtype {
            Some("i64" | "i32" | "i16" | "i8" | "u64" | "u32" | "u16" | "u8") => {
                LabelType::Number(DataType::Int64)
            }
            Some("f64" | "f32") => LabelType::Number(DataType::Float64),
            _ => LabelType::Text,
        }
    }

    /// The label column: text, or cast back to the target's numbers.
    fn column(&self, labels: Vec<String>) -> Result<Column> {
        let col =
            StringChunked::from_iter_values(LABEL_COLUMN.into(), labels.iter().map(String::as_str))
                .into_column();
        Ok(match self {
            LabelType::Text => col,
            LabelType::Number(t) => col.strict_cast(t).map_err(whet_tabular::Error::from)?,
        })
    }
}

/// Appends the run's predictions for `x` (read through its [`whet_train::Readout`]) to
/// `labels` (class names), `probs` and `values`.
fn score_batch(
    run: &RunDir,
    x: &ndarray::Array2<f32>,
    classes: &[String],
    out: &mut Columns,
) -> Result<()> {
    if x.ncols() != run.model.input_dim() {
        return Err(Error::Invalid(format!(
            "the run's manifest gives {} features but its model takes {}: the run folder is inconsistent",
            x.ncols(),
            run.model.input_dim()
        )));
    }
    let p = run.readout.predict(&run.model, x.view());
    if out.probs.is_empty() {
        out.probs = vec![Vec::new(); p.probabilities.ncols()];
    }
    for (j, s) in out.probs.iter_mut().enumerate() {
        s.extend(p.probabilities.column(j).iter());
    }
    if p.values.ncols() > 0 {
        // A table's regression target is one column.
        out.values.extend(p.values.column(0).iter());
    }
    out.labels.extend(
        p.labels
            .iter()
            .map(|&c| classes.get(c).cloned().unwrap_or_else(|| c.to_string())),
    );
    Ok(())
}

/// The prediction columns of a batch.
#[derive(Default)]
struct Columns {
    labels: Vec<String>,
    probs: Vec<Vec<f32>>,
    values: Vec<f64>,
}

/// Images scored per batch of files: decoded, normalised as the run did, scored.
const IMAGE_BATCH: usize = 4096;

fn predict_images(
    run: &RunDir,
    normalizer: &whet_image::Normalizer,
    grey: whet_image::Grey,
    shape: [usize; 3],
    data: &[PathBuf],
    classes: &[String],
) -> Result<Scored> {
    let shards: Vec<&PathBuf> = data.iter().filter(|d| is_shards(d)).collect();
    if !shards.is_empty() {
        if shards.len() != data.len() {
            return Err(Error::Invalid(format!(
                "`{}` names image shards and `{}` does not: give shards, image files and folders, or IDX files, in one prediction",
                shards[0].display(),
                data.iter()
                    .find(|d| !is_shards(d))
                    .map_or_else(String::new, |d| d.display().to_string())
            )));
        }
        return predict_shards(run, normalizer, grey, shape, data, classes);
    }
    let idx: Vec<&PathBuf> = data.iter().filter(|d| is_idx(d)).collect();
    if !idx.is_empty() {
        if idx.len() != data.len() {
            return Err(Error::Invalid(format!(
                "`{}` is an IDX image file and `{}` is not: give image files and folders, or IDX files, in one prediction",
                idx[0].display(),
                data.iter()
                    .find(|d| !is_idx(d))
                    .map_or_else(String::new, |d| d.display().to_string())
            )));
        }
        return predict_idx(run, normalizer, shape, data, classes);
    }
    let [h, w, c] = shape;
    let mut files = Vec::new();
    for d in data {
        files.extend(whet_image::image_files(d)?);
    }
    let mut out = Columns::default();
    for chunk in files.chunks(IMAGE_BATCH) {
        let set = whet_image::load_files(chunk, w, h, c, grey)?;
        let (x, _) = set.to_arrays(normalizer, 1)?;
        score_batch(run, &x, classes, &mut out)?;
    }
    let paths = StringChunked::from_iter_values(
        "path".into(),
        files.iter().map(|f| f.display().to_string()),
    );
    Ok(Scored {
        ids: pl(DataFrame::new(files.len(), vec![paths.into_column()]))?,
        columns: out,
    })
}

/// Whether an image input names shards: a `.tar` or `.parquet` file, a folder with such files
/// directly in it, or a file-name pattern with `*`.
fn is_shards(path: &Path) -> bool {
    if path.is_dir() {
        return whet_image::shard_files(path).is_ok();
    }
    whet_image::ShardFormat::of(path).is_some()
        || path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains('*'))
}

/// Scores image shards, shard by shard and at most [`IMAGE_BATCH`] images at a time: one row
/// per image, identified by `path` = `shard/member` (the tar member or the Parquet row's
/// `image.path`).
fn predict_shards(
    run: &RunDir,
    normalizer: &whet_image::Normalizer,
    grey: whet_image::Grey,
    [h, w, c]: [usize; 3],
    data: &[PathBuf],
    classes: &[String],
) -> Result<Scored> {
    let mut out = Columns::default();
    let mut paths: Vec<String> = Vec::new();
    for d in data {
        let (format, files) = whet_image::shard_files(d)?;
        for file in files {
            let shard = whet_image::read_shard(&file, format, &crate::PolarsShards)?;
            for chunk in shard.images.chunks(IMAGE_BATCH) {
                let set = whet_image::decode_images(chunk, &file, (h, w, c), grey)?;
                let (x, _) = set.to_arrays(normalizer, 1)?;
                score_batch(run, &x, classes, &mut out)?;
                paths.extend(
                    chunk
                        .iter()
                        .map(|im| file.join(&im.name).display().to_string()),
                );
            }
        }
    }
    let n = paths.len();
    let paths = StringChunked::from_iter_values("path".into(), paths.into_iter());
    Ok(Scored {
        ids: pl(DataFrame::new(n, vec![paths.into_column()]))?,
        columns: out,
    })
}

/// Whether an image input is an IDX file: a file that is not a PNG or JPEG (its header is
/// checked when it is read).
fn is_idx(path: &Path) -> bool {
    !path.is_dir() && !whet_image::is_image_file(path) && !is_shards(path)
}

/// Reads the IDX image file `path` and checks its images have the run's size.
fn load_idx_checked(path: &Path, [h, w, c]: [usize; 3]) -> Result<whet_image::ImageSet> {
    let set = whet_image::load_idx_images(path).map_err(|e| {
        Error::from(e).context(format!(
            "reading `{}` as IDX images (image inputs are PNG or JPEG files, folders of them, or IDX image files)",
            path.display()
        ))
    })?;
    if set.shape() != (h, w, c) {
        let (sh, sw, sc) = set.shape();
        return Err(Error::Data(format!(
            "`{}`: its IDX images are {sh}x{sw} with {sc} channel(s), the run was trained on {h}x{w} with {c} channel(s)",
            path.display()
        )));
    }
    Ok(set)
}

/// Scores IDX image files: one row per image, identified by `row` (its 0-based index in the
/// file), with a leading `file` column when there are several files.
fn predict_idx(
    run: &RunDir,
    normalizer: &whet_image::Normalizer,
    shape: [usize; 3],
    data: &[PathBuf],
    classes: &[String],
) -> Result<Scored> {
    let mut out = Columns::default();
    let mut id_frames = Vec::new();
    for path in data {
        let set = load_idx_checked(path, shape)?;
        let n = set.len();
        let mut start = 0;
        while start < n {
            let len = (n - start).min(IMAGE_BATCH);
            let batch = set.select(&(start..start + len).collect::<Vec<_>>());
            let (x, _) = batch.to_arrays(normalizer, 1)?;
            score_batch(run, &x, classes, &mut out)?;
            start += len;
        }
        let mut cols = vec![Column::new(
            "row".into(),
            (0..n as IdxSize).collect::<Vec<_>>(),
        )];
        if data.len() > 1 {
            let file = StringChunked::full("file".into(), &path.display().to_string(), n);
            cols.insert(0, file.into_column());
        }
        id_frames.push(pl(DataFrame::new(n, cols))?);
    }
    let ids = stack(id_frames)?;
    Ok(Scored { ids, columns: out })
}

/// Scores table files batch by batch ([`whet_tabular::NewData`]: a file over the memory budget
/// is read a chunk of rows at a time) into `sink`, the rows the fitted steps leave unscorable
/// listed in `skipped` (or an error without it). Returns the rows read, the rows the run's
/// pre-split steps removed, the rows skipped and the files read in batches.
fn predict_tables<W: std::io::Write, S: std::io::Write>(
    output: &Output<'_>,
    tables: &whet_tabular::Manifest,
    data: &[PathBuf],
    options: &PredictOptions,
    sink: &mut whet_tabular::TableWriter<W>,
    mut skipped: Option<&mut whet_tabular::TableWriter<S>>,
    progress: &dyn whet_core::Progress,
) -> Result<(usize, usize, usize, Vec<PathBuf>)> {
    let label_type = LabelType::of(tables);
    let (mut rows_in, mut removed, mut n_skipped) = (0, 0, 0);
    let mut streamed = Vec::new();
    for path in data {
        let context = || format!("predicting on `{}`", path.display());
        let new = whet_tabular::NewData::open(
            tables,
            path,
            &options.tables,
            whet_core::budget::current().bytes(),
            &crate::prepare::rows_work_dir(),
            progress,
        )
        .map_err(|e| Error::from(e).context(context()))?;
        if new.streamed().is_some() {
            streamed.push(path.clone());
        }
        let report = new.for_each_batch(false, &options.keep, progress, |mut b| {
            let bad = whet_tabular::bad_rows(&b.transformed.frame, &tables.features)?;
            if let Some(first) = bad.first() {
                let Some(list) = skipped.as_deref_mut() else {
                    let rows = &b.transformed.source_rows;
                    return Err(Error::Data(format!(
                        "{}; {} such row(s) among rows {}–{} of the file: fix them, or pass --skip-bad to score the others and list these in a side file",
                        bad_row_text(path, &b, first),
                        bad.len(),
                        rows.first().copied().unwrap_or_default(),
                        rows.last().copied().unwrap_or_default(),
                    )));
                };
                let listed = bad
                    .iter()
                    .map(|r| {
                        (
                            path.display().to_string(),
                            b.transformed.source_rows[r.index],
                            format!("feature `{}` is {}", r.column, r.reason),
                        )
                    })
                    .collect();
                let mut frame = skipped_frame(listed)?;
                list.write(&mut frame)?;
                n_skipped += bad.len();
                let at: Vec<usize> = bad.iter().map(|r| r.index).collect();
                b.remove(&at)?;
            }
            let n = b.transformed.frame.height();
            let mut columns = Columns::default();
            let mut start = 0;
            while start < n {
                let len = (n - start).min(BATCH_ROWS);
                let x = batch_matrix(&b.transformed, &tables.features, start, len)
                    ?;
                score_batch(output.run, &x, output.classes, &mut columns)?;
                start += len;
            }
            let mut ids = b.ids;
            if output.several {
                let file = StringChunked::full("file".into(), &path.display().to_string(), n);
                pl(ids.insert_column(0, file.into_column()))?;
            }
            sink.write(&mut output.frame(ids, columns, &label_type)?)?;
            Ok(())
        });
        let report = report.map_err(|e| e.context(context()))?;
        rows_in += report.rows_in;
        removed += report.rows_in - report.rows_out;
    }
    Ok((rows_in, removed, n_skipped, streamed))
}

/// The frames one under the other (an empty frame for none).
fn stack(frames: Vec<DataFrame>) -> Result<DataFrame> {
    let mut frames = frames.into_iter();
    let mut all = frames.next().unwrap_or_default();
    for f in frames {
        pl(all.vstack_mut_owned(f))?;
    }
    Ok(all)
}

/// The format of `out`, from its extension.
fn output_format(out: &Path) -> Result<whet_tabular::ExportFormat> {
    match out.extension().and_then(|e| e.to_str()) {
        Some("parquet") => Ok(whet_tabular::ExportFormat::Parquet),
        Some("csv") => Ok(whet_tabular::ExportFormat::Csv),
        _ => Err(Error::Invalid(format!(
            "--out `{}`: the output format comes from the extension: `.parquet` or `.csv`",
            out.display()
        ))),
    }
}

/// How to run [`evaluate`].
#[derive(Debug, Clone, Default)]
pub struct EvaluateOptions {
    /// Side tables the run joins, by the name the run file gives them, read from these files
    /// instead of the run's paths (`--table NAME=PATH`).
    pub tables: BTreeMap<String, PathBuf>,
    /// The IDX label file of an IDX image file (`--labels`).
    pub labels: Option<PathBuf>,
}

/// The labelled data of [`evaluate`], as the network reads it.
struct Labelled {
    source: Box<dyn whet_core::BatchSource>,
    /// The regression target's name (its charts), `None` for classes.
    target: Option<String>,
    /// Table rows whose target was missing.
    target_missing_dropped: usize,
    /// Images of classes the run does not have: class name and count.
    left_out: Vec<(String, usize)>,
    /// Whether the data file was read a chunk of rows at a time.
    streamed: bool,
}

/// Measures a trained run on new labelled data and writes into `out` what a run writes about
/// its evaluation: `metrics.json` (the run's [`Metrics`], with `test`, `test_classes` and
/// `test_samples` measured on `data`, `validation` cleared), the confusion chart, and the
/// binary (ROC, precision-recall) or regression (predicted vs actual, residuals) charts. The
/// numbers and charts come from the code that measures a run (`measure`, `SetCharts` in
/// `execute.rs`), with the run's own [`whet_train::Readout`] (its binary threshold, its
/// target scale), so the rows of a run's test split give its test metrics exactly.
///
/// `data`: for a table run, a table with the training schema and the target column; for an
/// image run, a folder with one sub-folder per class (classes matched to the run's by name),
/// or an IDX image file with its label file in [`EvaluateOptions::labels`]. Images of a class
/// the run does not have are left out and listed in [`EvaluateReport::left_out`].
///
/// `out` may not overlap an input (checked first) and is locked while written.
///
/// # Errors
/// An `out` that overlaps an input, a folder that is not a run, data without the target column
/// or labels or that do not fit the run, a row the fitted steps leave unscorable, write errors.
pub fn evaluate(
    run_dir: &Path,
    data: &Path,
    out: &Path,
    options: &EvaluateOptions,
) -> Result<EvaluateReport> {
    let started = Instant::now();
    let run = load_run(run_dir)?;
    let mut inputs = run.inputs();
    inputs.push(Input::new("the data file", data));
    inputs.extend(
        options
            .tables
            .iter()
            .map(|(n, p)| Input::new(format!("the table `{n}`"), p)),
    );
    if let Some(l) = &options.labels {
        inputs.push(Input::new("the label file", l));
    }
    outputs::check(out, OutputKind::Folder, &inputs)?;
    let _lock = whet_core::lock::FolderLock::acquire(out)?;
    let classes = classes(&run.manifest);
    let mut labelled = match (&run.manifest.preprocessing, &run.manifest.data) {
        (Preprocessing::Tables(t), _) => {
            if options.labels.is_some() {
                return Err(Error::Invalid(
                    "--labels names the label file of IDX images; a table run reads its target column"
                        .into(),
                ));
            }
            labelled_table(t, data, &options.tables)?
        }
        (
            Preprocessing::Images {
                normalizer, grey, ..
            },
            DataSummary::Images { shape, .. },
        ) => {
            if !options.tables.is_empty() {
                return Err(Error::Invalid(
                    "--table names a side table of a table run; an image run has none".into(),
                ));
            }
            labelled_images(
                normalizer,
                *grey,
                *shape,
                &classes,
                data,
                options.labels.as_deref(),
            )?
        }
        (Preprocessing::Images { .. }, _) => {
            return Err(Error::Invalid(format!(
                "`{}`: the manifest's image preprocessing has no image sizes",
                run.manifest_path.display()
            )));
        }
    };
    let context = || format!("evaluating on `{}`", data.display());
    let m = measure(&run.model, &mut *labelled.source, &run.readout, &classes).context(context())?;
    let charts = SetCharts::of(
        &run.model,
        &run.readout,
        &mut *labelled.source,
        m.confusion.as_ref(),
        EvaluatedOn::Test,
        labelled.target.as_deref(),
    )
    .context(context())?;
    let earlier: Option<Metrics> = std::fs::read(run_dir.join("metrics.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut metrics = earlier.unwrap_or_else(|| Metrics {
        name: run.manifest.run.name.clone(),
        variant: run.manifest.variant.clone(),
        seed: run.manifest.seed,
        status: whet_report::RunStatus::Ok,
        message: None,
        evaluated_on: EvaluatedOn::Test,
        test: BTreeMap::new(),
        validation: None,
        test_classes: None,
        threshold: None,
        test_samples: 0,
        validation_samples: None,
        epochs: 0,
        best_epoch: None,
        stopped_early: false,
        train_seconds: 0.0,
        total_seconds: 0.0,
        samples_per_second: None,
        parameters: run.model.parameter_count(),
        cache_hits: vec![],
        cross_validation: None,
    });
    metrics.evaluated_on = EvaluatedOn::Test;
    metrics.test = m.metrics;
    metrics.test_samples = m.samples;
    metrics.test_classes = m.classes;
    metrics.threshold = run.readout.decision().threshold();
    metrics.validation = None;
    metrics.cache_hits = vec![];
    outputs::mark(out)?;
    let record = whet_report::RunRecord {
        variant: metrics.variant.clone(),
        seed: metrics.seed,
        status: metrics.status,
        metrics: metrics.test.clone(),
        validation: Default::default(),
        validation_samples: None,
        train_seconds: metrics.train_seconds,
        curves: vec![],
        message: None,
        cross_validation: None,
    };
    let mut files = whet_report::write_evaluation(&record, m.confusion.as_ref(), out)
        .context("writing the evaluation charts")?;
    files.extend(write_set_charts(&record, &charts, out)?);
    metrics.total_seconds = started.elapsed().as_secs_f64();
    let path = out.join("metrics.json");
    write_json(&path, &metrics)?;
    files.push(path);
    Ok(EvaluateReport {
        metrics,
        target_missing_dropped: labelled.target_missing_dropped,
        left_out: labelled.left_out,
        files,
        streamed: labelled.streamed,
    })
}

/// A table's rows after the run's steps, with the targets as the network was trained on them.
fn labelled_table(
    tables: &whet_tabular::Manifest,
    data: &Path,
    tables_from: &BTreeMap<String, PathBuf>,
) -> Result<Labelled> {
    let context = || format!("evaluating on `{}`", data.display());
    let new = whet_tabular::NewData::open(
        tables,
        data,
        tables_from,
        whet_core::budget::current().bytes(),
        &crate::prepare::rows_work_dir(),
        &whet_core::NoProgress,
    )
    .map_err(|e| Error::from(e).context(context()))?;
    // The rows are measured together: gathered batch by batch in memory, or, past half the
    // budget, in row shards on disk (read back in order, as a run's test rows are).
    let (mut xs, mut ys) = (Vec::<f32>::new(), Vec::<f32>::new());
    let (mut rows, mut target_dim) = (0, 1);
    let mut shards: Option<whet_tabular::RowShardWriter> = None;
    let budget = whet_core::budget::current().bytes();
    let report = new.for_each_batch(true, &[], &whet_core::NoProgress, |b| {
        let Some(target) = &b.transformed.target else {
            return Err(Error::Data(format!(
                "`{}` has no target column `{}`: evaluating needs the true values (use `whet predict` for unlabelled data)",
                data.display(),
                tables.target.column()
            )));
        };
        if let Some(first) = whet_tabular::bad_rows(&b.transformed.frame, &tables.features)?.first() {
            return Err(Error::Data(bad_row_text(data, &b, first)));
        }
        let n = b.transformed.frame.height();
        let x = batch_matrix(&b.transformed, &tables.features, 0, n)?;
        let y = crate::prepare::scale_targets(target.matrix(), tables.target_scale);
        target_dim = y.ncols();
        rows += n;
        if let Some(w) = &mut shards {
            w.push(&x, &y)?;
            return Ok(());
        }
        xs.extend(x.iter());
        ys.extend(y.iter());
        if ((xs.len() + ys.len()) as u64).saturating_mul(4) > budget / 2 {
            let mut w = whet_tabular::RowShardWriter::new(
                &crate::prepare::rows_work_dir(),
                x.ncols(),
                target_dim,
            )?;
            let held = |v: Vec<f32>, d: usize| {
                ndarray::Array2::from_shape_vec((rows, d), v)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", context())))
            };
            w.push(
                &held(std::mem::take(&mut xs), x.ncols())?,
                &held(std::mem::take(&mut ys), target_dim)?,
            )?;
            shards = Some(w);
        }
        Ok(())
    });
    let report = report.map_err(|e| e.context(context()))?;
    let source: Box<dyn whet_core::BatchSource> = match shards {
        Some(w) => Box::new(whet_tabular::RowStream::in_order(w.finish()?, None)?),
        None => {
            let shape = |v: Vec<f32>, d: usize| {
                ndarray::Array2::from_shape_vec((rows, d), v)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", context())))
            };
            let x = shape(xs, tables.features.len())?;
            let y = shape(ys, target_dim)?;
            Box::new(whet_train::ArraySource::new(x, y)?)
        }
    };
    let regression = matches!(tables.target, whet_tabular::TargetKind::Regression { .. });
    Ok(Labelled {
        source,
        target: regression.then(|| tables.target.column().to_string()),
        target_missing_dropped: report.target_missing_dropped,
        left_out: vec![],
        streamed: new.streamed().is_some(),
    })
}

/// Labelled images (a class-folder tree, or an IDX image file with its labels) relabelled to
/// the run's classes by name, normalised as the run did.
fn labelled_images(
    normalizer: &whet_image::Normalizer,
    grey: whet_image::Grey,
    shape: [usize; 3],
    classes: &[String],
    data: &Path,
    labels: Option<&Path>,
) -> Result<Labelled> {
    let [h, w, c] = shape;
    let set = if is_shards(data) {
        if labels.is_some() {
            return Err(Error::Invalid(format!(
                "--labels names the label file of an IDX image file; the shards `{}` hold their labels",
                data.display()
            )));
        }
        let (format, _) = whet_image::shard_files(data)?;
        let mut source = whet_image::ShardSource::new(data, w, h).with_channels(c);
        source.grey = Some(grey);
        let mut set = source
            .load(None, None, "the data", &crate::PolarsShards)?
            .set;
        // Tar shards hold class numbers, which are the run's classes; Parquet shards name
        // their classes, matched by name below.
        if format == whet_image::ShardFormat::Webdataset {
            let top = set.class_names().len();
            if top > classes.len() {
                return Err(Error::Data(format!(
                    "`{}`: the shards hold label {}, but the run has {} classes (labels 0 to {})",
                    data.display(),
                    top - 1,
                    classes.len(),
                    classes.len().saturating_sub(1)
                )));
            }
            set.set_class_names(classes.to_vec())?;
        }
        set
    } else if data.is_dir() {
        if labels.is_some() {
            return Err(Error::Invalid(format!(
                "--labels names the label file of an IDX image file; `{}` is a folder, labelled by its class sub-folders",
                data.display()
            )));
        }
        let opt = whet_image::FolderOptions {
            width: w,
            height: h,
            channels: c,
            grey,
            skip_bad: false,
            classes: None,
            limit: None,
        };
        whet_image::load_folder(data, &opt)?.set
    } else if whet_image::is_image_file(data) {
        return Err(Error::Invalid(format!(
            "`{}` is one image without a label: evaluate on a folder with one sub-folder per class, or an IDX image file with --labels (use `whet predict` for unlabelled images)",
            data.display()
        )));
    } else {
        let Some(labels) = labels else {
            return Err(Error::Invalid(format!(
                "`{}` is read as an IDX image file: give its label file with --labels (or a folder with one sub-folder per class)",
                data.display()
            )));
        };
        let set = whet_image::load_idx(data, labels, None, None)?;
        if set.shape() != (h, w, c) {
            let (sh, sw, sc) = set.shape();
            return Err(Error::Data(format!(
                "`{}`: its IDX images are {sh}x{sw} with {sc} channel(s), the run was trained on {h}x{w} with {c} channel(s)",
                data.display()
            )));
        }
        set
    };
    // The data's class k is the run's class `to_run[k]` (same name), or none.
    let to_run: Vec<Option<u32>> = set
        .class_names()
        .iter()
        .map(|n| classes.iter().position(|c| c == n).map(|i| i as u32))
        .collect();
    let mut left_out: BTreeMap<String, usize> = BTreeMap::new();
    let mut keep = Vec::with_capacity(set.len());
    for (i, &l) in set.labels().iter().enumerate() {
        match to_run[l as usize] {
            Some(_) => keep.push(i),
            None => {
                *left_out
                    .entry(set.class_names()[l as usize].clone())
                    .or_default() += 1
            }
        }
    }
    if keep.is_empty() {
        return Err(Error::Data(format!(
            "`{}`: none of its classes ({}) is a class of the run ({})",
            data.display(),
            set.class_names().join(", "),
            classes.join(", ")
        )));
    }
    let kept = if keep.len() == set.len() {
        set
    } else {
        set.select(&keep)
    };
    let (kh, kw, kc, pixels, old, _) = kept.into_parts();
    let relabelled: Vec<u32> = old
        .iter()
        .map(|&l| to_run[l as usize].expect("kept"))
        .collect();
    let set = whet_image::ImageSet::new(kh, kw, kc, pixels, relabelled, classes.to_vec())?;
    Ok(Labelled {
        source: Box::new(crate::prepare::image_arrays(
            &set,
            normalizer,
            classes.len(),
        )?),
        target: None,
        target_missing_dropped: 0,
        left_out: left_out.into_iter().collect(),
        streamed: false,
    })
}
