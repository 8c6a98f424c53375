//! One manifest format for runs and exports (`manifest.json`): the run file, the seed, the data
//! sizes, the fitted preprocessing and, for a run, the network. `whet apply` takes either.

use crate::error::{Error, Result};
use crate::prepare::{DataSummary, Preprocessing};
use crate::runfile::{Run, RunFile};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The format tag of [`Manifest`].
pub const MANIFEST_FORMAT: &str = "whet-manifest/1";

/// Who wrote a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManifestKind {
    /// `whet run` (or an ablation cell): the folder has the trained model.
    Run,
    /// `whet export`: the folder has the processed data sets.
    Export,
    /// A k-fold run (`split.method: kfold`): no model of its own; its `folds/` folder has one
    /// complete run folder per fold. This manifest has the run file and the seed, and the
    /// first fold's data sizes, preprocessing and network.
    CrossValidation,
}

/// One file a manifest lists.
pub type FileEntry = whet_tabular::FileEntry;

/// What a run or an export used: `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// The whet version that wrote it.
    pub whet_version: String,
    /// A run's or an export's.
    pub kind: ManifestKind,
    /// The run file (data paths resolved).
    pub run: RunFile,
    /// The ablation variant (`baseline` for the run file as written).
    pub variant: String,
    /// The seed.
    pub seed: u64,
    /// Data sizes.
    pub data: DataSummary,
    /// The fitted preprocessing, which new data go through.
    pub preprocessing: Preprocessing,
    /// The network (a run's manifest).
    pub architecture: Option<whet_train::Architecture>,
    /// The files written beside it, with sizes and SHA-256 (an export's manifest; a folder of
    /// PNG files is one entry whose hash covers every file's path and content).
    pub files: Vec<FileEntry>,
    /// What the user was warned about while the data were prepared (a class folder without
    /// images, duplicate column names, a numeric column read as text…), each naming the file
    /// and the column or cell.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl Manifest {
    /// Refuses the manifest of a k-fold run where one model and one fitted preprocessing are
    /// needed (predict, evaluate, model export, apply), naming its folds' run folders instead.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a manifest of kind [`ManifestKind::CrossValidation`].
    pub(crate) fn refuse_folds(&self, path: &Path) -> Result<()> {
        if self.kind != ManifestKind::CrossValidation {
            return Ok(());
        }
        let folds = path.parent().unwrap_or(Path::new(".")).join("folds");
        let mut names: Vec<String> = std::fs::read_dir(&folds)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("model.safetensors").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let example = names.first().map_or_else(String::new, |n| {
            format!(" (e.g. `{}`)", folds.join(n).display())
        });
        Err(Error::Invalid(format!(
            "`{}` is the manifest of a k-fold run, which trained one model per fold, each with \
             the preprocessing fitted on its own training rows: give one fold's run folder under \
             `{}`{example}, or train one model on a holdout split (e.g. `split: {{ method: \
             random, test: 0.2 }}`, or `stratified` for classes)",
            path.display(),
            folds.display()
        )))
    }

    /// A manifest of `run` with `seed`.
    pub(crate) fn new(
        kind: ManifestKind,
        run: &Run,
        seed: u64,
        data: DataSummary,
        preprocessing: Preprocessing,
        architecture: Option<whet_train::Architecture>,
        warnings: Vec<String>,
    ) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            whet_version: env!("CARGO_PKG_VERSION").into(),
            kind,
            run: run.file().clone(),
            variant: run.variant().into(),
            seed,
            data,
            preprocessing,
            architecture,
            files: vec![],
            warnings,
        }
    }

    /// Reads a manifest written by `whet run`, `whet ablate` or `whet export`.
    ///
    /// # Errors
    /// [`Error::Io`], or [`Error::Json`] when the file is not a whet manifest.
    pub fn load(path: &Path) -> Result<Manifest> {
        let text =
            whet_core::input::read_capped(path, "manifests", whet_tabular::MAX_MANIFEST_BYTES)?;
        let m: Manifest = serde_json::from_slice(&text).map_err(|source| Error::Json {
            what: "whet manifest (written by `whet run` or `whet export`)",
            path: path.to_path_buf(),
            source,
        })?;
        if m.format != MANIFEST_FORMAT {
            return Err(Error::Invalid(format!(
                "`{}` has format `{}`; this whet reads `{MANIFEST_FORMAT}`",
                path.display(),
                m.format
            )));
        }
        Ok(m)
    }

    /// Writes the manifest atomically as pretty JSON.
    ///
    /// # Errors
    /// [`Error::Fs`] when it cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(|source| Error::Json {
            what: "whet manifest",
            path: path.to_path_buf(),
            source,
        })?;
        whet_core::fsx::atomic_write(path, &text)?;
        Ok(())
    }

    /// The fitted table preprocessing.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an image run's manifest.
    pub fn tables(&self) -> Result<&whet_tabular::Manifest> {
        match &self.preprocessing {
            Preprocessing::Tables(m) => Ok(m),
            Preprocessing::Images { .. } => Err(Error::Invalid(format!(
                "`{}` is an image run: `apply` replays table preprocessing",
                self.run.name
            ))),
        }
    }
}

/// What [`apply`] wrote.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    /// Rows written.
    pub rows: usize,
    /// Feature names.
    pub features: Vec<String>,
    /// Rows dropped because their target was present but missing.
    pub target_missing_dropped: usize,
    /// The files written, in `out`.
    pub files: Vec<PathBuf>,
    /// Whether the data file was over the memory budget, so was read a chunk of rows at a
    /// time.
    pub streamed: bool,
}

/// Replays the fitted table preprocessing of a run's or an export's manifest on new data (the
/// main table, in the same format as at training), writing `applied.*` into `out` in `format`:
/// the identifier columns (`data.id`, or `row`: the 0-based row number in `data`), the `keep`
/// columns as loaded, the features, and the target when `data` has its column.
/// `out` may not overlap the manifest or the data file (checked first).
///
/// Parquet and CSV are written batch by batch, and a data file estimated to need more than the
/// memory budget is read a chunk of rows at a time (a CSV file converted to Parquet first; see
/// [`whet_tabular::NewData`]); NPY needs every row in memory. `progress` shows the rows read.
///
/// `out` is locked first, as by [`Run::execute`].
///
/// # Errors
/// An `out` that overlaps an input, an unreadable manifest or data file, data that do not fit
/// the manifest, a `keep` column that is not in `data`, NPY for a file over the budget, write
/// errors, or [`Error::Lock`] when another process writes into `out`.
pub fn apply(
    manifest: &Path,
    data: &Path,
    out: &Path,
    format: whet_tabular::ExportFormat,
    keep: &[String],
    progress: &dyn whet_core::Progress,
) -> Result<ApplyReport> {
    use whet_core::outputs::{self, Input, OutputKind};
    use whet_tabular::ExportFormat;
    let inputs = [
        Input::new("the data file", data),
        Input::new("the manifest", manifest),
    ];
    outputs::check(out, OutputKind::Folder, &inputs)?;
    let _lock = whet_core::lock::FolderLock::acquire(out)?;
    let m = Manifest::load(manifest)?;
    m.refuse_folds(manifest)?;
    let tables = m.tables()?;
    let context = || {
        format!(
            "applying `{}` to the data file `{}`",
            manifest.display(),
            data.display()
        )
    };
    let new = whet_tabular::NewData::open(
        tables,
        data,
        &std::collections::BTreeMap::new(),
        whet_core::budget::current().bytes(),
        &crate::prepare::rows_work_dir(),
        progress,
    )
    .map_err(|e| Error::from(e).context(context()))?;
    let features = tables.features.clone();
    // One batch's table: identifiers, features, target.
    let table = |b: &whet_tabular::NewBatch| -> Result<(ndarray::Array2<f32>, Option<ndarray::Array2<f32>>)> {
        let t = &b.transformed;
        let x = whet_tabular::to_matrix(&t.frame, &features, &t.last_step, "apply")?;
        Ok((x, t.target.as_ref().map(|t| t.matrix())))
    };
    if format == ExportFormat::Npy {
        if let Some((bytes, budget)) = new.streamed() {
            return Err(Error::from(whet_tabular::npy_cannot_stream(&format!(
                "`{}` needs about {} in memory, more than the budget of {}, so it is applied",
                data.display(),
                whet_core::budget::show_bytes(bytes),
                whet_core::budget::show_bytes(budget)
            ))));
        }
        // Read whole: one batch.
        let mut whole = None;
        let report = new
            .for_each_batch(true, keep, progress, |b| -> Result<()> {
                let (x, y) = table(&b)?;
                whole = Some((x, y, b.ids));
                Ok(())
            })
            .map_err(|e| e.context(context()))?;
        let Some((x, y, ids)) = whole else {
            return Err(Error::Data(format!("{}: no rows", context())));
        };
        outputs::mark(out)?;
        let files = whet_tabular::write_split(
            out,
            "applied",
            &x,
            y.as_ref(),
            &features,
            Some(&ids),
            format,
        )?;
        return Ok(ApplyReport {
            rows: x.nrows(),
            features,
            target_missing_dropped: report.target_missing_dropped,
            files: files.into_iter().map(|f| out.join(f.name)).collect(),
            streamed: false,
        });
    }
    outputs::mark(out)?;
    let ext = if format == ExportFormat::Csv {
        "csv"
    } else {
        "parquet"
    };
    let path = out.join(format!("applied.{ext}"));
    let mut done = None;
    whet_core::fsx::atomic_write_with(&path, |w| -> Result<()> {
        let mut writer = whet_tabular::TableWriter::new(w, format)?;
        let report = new
            .for_each_batch(true, keep, progress, |b| -> Result<()> {
                let (x, y) = table(&b)?;
                let mut df = whet_tabular::split_table(&x, y.as_ref(), &features, Some(&b.ids))?;
                writer.write(&mut df)?;
                Ok(())
            })
            .map_err(|e| e.context(context()))?;
        let rows = writer.rows();
        writer.finish()?;
        done = Some((report, rows));
        Ok(())
    })?;
    let (report, rows) = done.expect("written");
    Ok(ApplyReport {
        rows,
        features,
        target_missing_dropped: report.target_missing_dropped,
        files: vec![path],
        streamed: new.streamed().is_some(),
    })
}
