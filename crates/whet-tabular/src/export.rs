//! Export of prepared splits (Parquet, CSV or NPY) and `manifest.json`, all written atomically,
//! with sha256 content hashes in the manifest.

use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use polars::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use whet_core::fsx;

use crate::error::{Error, Result};
use crate::pipeline::{Prepared, SplitRows, StepConfig, TablesConfig};
use crate::split::SplitConfig;
use crate::stage::FittedStep;
use crate::target::TargetKind;

/// The manifest format tag.
pub const MANIFEST_FORMAT: &str = "whet-tabular/1";

/// File format of exported splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// `<split>.parquet` (zstd): the identifier columns, the features and a `target` column.
    #[default]
    Parquet,
    /// `<split>.csv`: the identifier columns, the features and a `target` column.
    Csv,
    /// `<split>_x.npy`, `<split>_y.npy` (float32, C order), `<split>_ids.csv` (the identifier
    /// columns) and `features.txt`.
    Npy,
}

/// One written file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name inside the export folder.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 of the content, lower-case hex.
    pub sha256: String,
}

/// Everything needed to replay the preprocessing on new data, and to check exported files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format tag ([`MANIFEST_FORMAT`]).
    pub format: String,
    /// Seed of the run.
    pub seed: u64,
    /// Tables (with resolved paths), main table, target config.
    pub data: TablesConfig,
    /// Steps run before the split (joins, exclusions…), replayed as they are.
    pub pre_split: Vec<StepConfig>,
    /// The split used.
    pub split: SplitConfig,
    /// The fold of a k-fold split these steps were fitted on (`None` for the other methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<crate::split::Fold>,
    /// The resolved target.
    pub target: TargetKind,
    /// Class names (binary: 2, regression: none).
    pub classes: Vec<String>,
    /// The standardisation of a regression target, fitted on the training split (`None` for
    /// classes, `scale: false`, and manifests written before targets were scaled). The network
    /// predicts scaled values; [`whet_core::TargetScale::invert`] gives the target's units.
    /// Exported `target` columns and [`crate::apply`]'s targets stay in the original units.
    #[serde(default)]
    pub target_scale: Option<whet_core::TargetScale>,
    /// Fitted steps with their parameters (learnt on train).
    pub fitted: Vec<FittedStep>,
    /// Feature names, in matrix column order.
    pub features: Vec<String>,
    /// Columns left at the end that are not features.
    pub unused_columns: Vec<String>,
    /// Columns and types of the main table as loaded.
    pub input_schema: Vec<(String, String)>,
    /// Row counts of the splits.
    pub rows: SplitRows,
    /// Exported files with hashes (filled by [`export`]).
    pub files: Vec<FileEntry>,
}

/// The largest manifest (`manifest.json`) read, in bytes: 256 MiB.
pub const MAX_MANIFEST_BYTES: u64 = 256 << 20;

impl Manifest {
    /// Reads a manifest (at most [`MAX_MANIFEST_BYTES`]).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Manifest`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = whet_core::input::read_capped(path, "manifests", MAX_MANIFEST_BYTES)?;
        serde_json::from_slice(&text).map_err(|source| Error::Manifest {
            path: path.into(),
            source,
        })
    }

    /// Writes the manifest atomically as pretty JSON.
    ///
    /// # Errors
    /// [`Error::Fs`] or [`Error::Manifest`].
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(|source| Error::Manifest {
            path: path.into(),
            source,
        })?;
        fsx::atomic_write(path, &text)?;
        Ok(())
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportReport {
    /// Data files.
    pub files: Vec<FileEntry>,
    /// The manifest's path.
    pub manifest: PathBuf,
}

/// The `.npy` (version 1.0) bytes of a float32 C-order matrix.
///
/// # Shapes
/// `x` is `rows × cols`; the file has that shape.
pub fn npy_bytes(x: &Array2<f32>) -> Vec<u8> {
    let (r, c) = x.dim();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({r}, {c}), }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of
    // 64 and ended by a newline.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + r * c * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match x.as_slice() {
        Some(s) => s
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        None => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
    }
    out
}

/// Reads an `.npy` written by [`npy_bytes`] (float32, C order, 2-D).
///
/// # Errors
/// [`Error::Io`], or [`Error::Apply`] when the header is not such a file.
pub fn read_npy(path: &Path) -> Result<Array2<f32>> {
    let b = whet_core::input::read_capped(path, "tables", crate::MAX_TABLE_BYTES)?;
    let bad = |why: &str| {
        Error::Apply(format!(
            "`{}` is not a 2-D float32 .npy: {why}",
            path.display()
        ))
    };
    if b.len() < 10 || &b[..8] != b"\x93NUMPY\x01\x00" {
        return Err(bad("bad magic"));
    }
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(b.get(10..10 + hl).ok_or_else(|| bad("short header"))?)
        .map_err(|_e| bad("header is not UTF-8"))?;
    if !header.contains("'<f4'") || !header.contains("False") {
        return Err(bad("not little-endian float32 in C order"));
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let [r, c] = dims[..] else {
        return Err(bad("not 2-D"));
    };
    let data = &b[10 + hl..];
    if data.len() != r * c * 4 {
        return Err(bad("data length does not match the shape"));
    }
    let v: Vec<f32> = data
        .chunks_exact(4)
        .map(|q| f32::from_le_bytes([q[0], q[1], q[2], q[3]]))
        .collect();
    Array2::from_shape_vec((r, c), v).map_err(|_e| bad("shape"))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<FileEntry> {
    fsx::atomic_write(&dir.join(name), bytes)?;
    Ok(FileEntry {
        name: name.into(),
        bytes: bytes.len() as u64,
        sha256: hex(&Sha256::digest(bytes)),
    })
}

/// A frame of the features plus a `target` column (class index or value).
///
/// # Errors
/// polars errors only.
pub fn split_frame(
    x: &Array2<f32>,
    y: Option<&Array2<f32>>,
    features: &[String],
) -> Result<DataFrame> {
    let mut cols: Vec<Column> = Vec::with_capacity(features.len() + 1);
    for (j, f) in features.iter().enumerate() {
        let v: Vec<f32> = x.column(j).to_vec();
        cols.push(Float32Chunked::from_vec(f.as_str().into(), v).into_column());
    }
    if let Some(y) = y {
        let t: Vec<f32> = if y.ncols() == 1 {
            y.column(0).to_vec()
        } else {
            y.rows()
                .into_iter()
                .map(|r| r.iter().position(|&v| v == 1.0).unwrap_or(0) as f32)
                .collect()
        };
        cols.push(Float32Chunked::from_vec("target".into(), t).into_column());
    }
    Ok(DataFrame::new(x.nrows(), cols)?)
}

/// The table of a split in the CSV and Parquet exports (and of `whet apply`): the identifier
/// columns `ids`, the features, then `target`.
///
/// # Errors
/// [`Error::Apply`] when an `ids` column has the name of a feature or of `target`.
pub fn split_table(
    x: &Array2<f32>,
    y: Option<&Array2<f32>>,
    features: &[String],
    ids: Option<&DataFrame>,
) -> Result<DataFrame> {
    let df = split_frame(x, y, features)?;
    let Some(ids) = ids else {
        return Ok(df);
    };
    let mut taken = features.to_vec();
    if y.is_some() {
        taken.push("target".into());
    }
    crate::rows::check_clashes(ids, &taken, "feature columns or `target`")?;
    Ok(ids.hstack(df.columns())?)
}

/// A file written in pieces, its bytes counted and hashed as they go (for its [`FileEntry`]).
struct Hashed {
    file: std::fs::File,
    sum: Arc<std::sync::Mutex<(Sha256, u64)>>,
}

impl Write for Hashed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        let mut sum = self
            .sum
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sum.0.update(&buf[..n]);
        sum.1 += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

enum Batched<W: Write> {
    Parquet(Box<polars::io::parquet::write::BatchedWriter<W>>),
    Csv(polars::io::csv::write::BatchedWriter<W>),
}

/// A table written batch by batch, as whet writes tables: Parquet (zstd, a row group per
/// batch) or CSV (one header; the same bytes as the table written at once). Its columns are
/// those of the first batch, or the schema given to [`TableWriter::with_schema`].
pub struct TableWriter<W: Write> {
    /// The output, until the first batch gives the columns.
    out: Option<W>,
    format: ExportFormat,
    writer: Option<Batched<W>>,
    columns: Vec<String>,
    rows: usize,
}

impl<W: Write> TableWriter<W> {
    /// A writer into `out` in `format`, its columns those of the first batch.
    ///
    /// # Errors
    /// [`Error::Config`] for NPY (not a table format).
    pub fn new(out: W, format: ExportFormat) -> Result<Self> {
        if format == ExportFormat::Npy {
            return Err(Error::Config(
                "a table is written as Parquet or CSV, not NPY".into(),
            ));
        }
        Ok(TableWriter {
            out: Some(out),
            format,
            writer: None,
            columns: Vec::new(),
            rows: 0,
        })
    }

    /// A writer into `out` in `format` with `schema`'s columns, which a file without rows
    /// has too.
    ///
    /// # Errors
    /// [`Error::Config`] for NPY, polars errors.
    pub fn with_schema(out: W, format: ExportFormat, schema: &SchemaRef) -> Result<Self> {
        let mut w = TableWriter::new(out, format)?;
        w.start(schema)?;
        Ok(w)
    }

    fn start(&mut self, schema: &SchemaRef) -> Result<&mut Batched<W>> {
        let Some(out) = self.out.take() else {
            return Err(Error::Config("a table writer started twice".into()));
        };
        self.columns = schema.iter_names().map(|n| n.to_string()).collect();
        let writer = match self.format {
            ExportFormat::Csv => {
                Batched::Csv(CsvWriter::new(out).include_header(true).batched(schema)?)
            }
            _ => Batched::Parquet(Box::new(
                ParquetWriter::new(out)
                    .with_compression(ParquetCompression::Zstd(None))
                    .batched(schema)?,
            )),
        };
        Ok(self.writer.insert(writer))
    }

    /// Appends the rows of `df` (the writer's columns).
    ///
    /// # Errors
    /// polars and write errors.
    pub fn write(&mut self, df: &mut DataFrame) -> Result<()> {
        let writer = match self.writer.as_mut() {
            Some(w) => w,
            None => self.start(df.schema())?,
        };
        if df.height() == 0 {
            return Ok(());
        }
        df.rechunk_mut();
        match writer {
            Batched::Parquet(w) => w.write_batch(df)?,
            Batched::Csv(w) => w.write_batch(df)?,
        }
        self.rows += df.height();
        Ok(())
    }

    /// The table's columns (empty before the first batch).
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Ends the table (a CSV file's header when it has no rows, a Parquet file's footer).
    ///
    /// # Errors
    /// [`Error::Config`] when no batch gave the columns; polars and write errors.
    pub fn finish(self) -> Result<()> {
        match self.writer {
            Some(Batched::Parquet(w)) => {
                w.finish()?;
            }
            Some(Batched::Csv(mut w)) => w.finish()?,
            None => {
                return Err(Error::Config(
                    "a table without columns: no batch was written".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The refusal of NPY for rows written batch by batch (`what`: which rows, and that they are
/// written so, e.g. "a table larger than the memory budget is exported"): an NPY file starts
/// with its row count, known at the end only.
pub fn npy_cannot_stream(what: &str) -> Error {
    Error::CannotStream {
        key: "--format npy".into(),
        reason: format!(
            "{what} batch by batch, and an NPY file starts with its row count: write Parquet or \
             CSV, or raise the budget with `--max-memory`"
        ),
    }
}

/// One split's file of a [`SplitWriters`].
struct SplitFile {
    name: String,
    writer: TableWriter<Hashed>,
    /// The file, to make it durable when it is complete.
    file: std::fs::File,
    sum: Arc<std::sync::Mutex<(Sha256, u64)>>,
}

/// The split files of an export written batch by batch (a table streamed through
/// `prepare_streamed`): the tables [`write_splits`] writes from memory, as `<split>.parquet`
/// (zstd, a row group per batch) or `<split>.csv` (the same bytes), and `features.txt`.
pub struct SplitWriters {
    dir: PathBuf,
    format: ExportFormat,
    keep: Vec<String>,
    files: [Option<SplitFile>; 3],
}

impl SplitWriters {
    /// Writers into `dir` in `format`, with the `keep` columns of the main table after the
    /// identifier columns ([`split_ids`]).
    ///
    /// # Errors
    /// [`Error::CannotStream`] for NPY (its header holds the row count, known at the end only).
    pub fn new(dir: &Path, format: ExportFormat, keep: &[String]) -> Result<Self> {
        if format == ExportFormat::Npy {
            return Err(npy_cannot_stream(
                "a table larger than the memory budget is exported",
            ));
        }
        Ok(SplitWriters {
            dir: dir.to_path_buf(),
            format,
            keep: keep.to_vec(),
            files: Default::default(),
        })
    }

    /// The `keep` columns.
    pub(crate) fn keep(&self) -> &[String] {
        &self.keep
    }

    /// Appends rows to split `k` (0 train, 1 validation, 2 test): features `x`, targets `y`,
    /// identifier columns `ids`. The split's file is created at its first call, even with no
    /// rows.
    pub(crate) fn push(
        &mut self,
        k: usize,
        x: &Array2<f32>,
        y: &Array2<f32>,
        features: &[String],
        ids: &DataFrame,
    ) -> Result<()> {
        const SPLITS: [&str; 3] = ["train", "validation", "test"];
        let mut df = split_table(x, Some(y), features, Some(ids))?;
        let file = match &mut self.files[k] {
            Some(f) => f,
            None => {
                let ext = if self.format == ExportFormat::Parquet {
                    "parquet"
                } else {
                    "csv"
                };
                let name = format!("{}.{ext}", SPLITS[k]);
                let path = self.dir.join(&name);
                let io = |source| Error::Io {
                    path: path.clone(),
                    source,
                };
                let file = std::fs::File::create(&path).map_err(io)?;
                let sum = Arc::new(std::sync::Mutex::new((Sha256::new(), 0)));
                let out = Hashed {
                    file: file.try_clone().map_err(io)?,
                    sum: sum.clone(),
                };
                let writer = TableWriter::new(out, self.format)?;
                self.files[k].insert(SplitFile {
                    name,
                    writer,
                    file,
                    sum,
                })
            }
        };
        file.writer.write(&mut df)
    }

    /// Ends every split's file and writes `features.txt`; returns the files' entries (those
    /// [`write_splits`] returns).
    ///
    /// # Errors
    /// Write errors.
    pub fn finish(self, features: &[String]) -> Result<Vec<FileEntry>> {
        let mut entries = Vec::new();
        for f in self.files.into_iter().flatten() {
            f.writer.finish()?;
            let path = self.dir.join(&f.name);
            f.file
                .sync_all()
                .map_err(|source| Error::Io { path, source })?;
            let sum = f
                .sum
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            entries.push(FileEntry {
                name: f.name,
                bytes: sum.1,
                sha256: hex(&sum.0.clone().finalize()),
            });
        }
        entries.push(features_file(&self.dir, features)?);
        Ok(entries)
    }
}

/// Writes `features.txt`: the feature names, one a line.
fn features_file(dir: &Path, features: &[String]) -> Result<FileEntry> {
    let mut names = Vec::new();
    for f in features {
        writeln!(names, "{f}").map_err(|source| Error::Io {
            path: dir.join("features.txt"),
            source,
        })?;
    }
    write_file(dir, "features.txt", &names)
}

/// Writes one split in `format` into `dir`; returns the written files. `ids` (the identifier
/// and `--keep` columns, one row per row of `x`) lead the table in CSV and Parquet, and are the
/// side file `<name>_ids.csv` beside the NPY arrays.
///
/// # Errors
/// Write and encoding errors; [`Error::Apply`] when an `ids` column has the name of a feature
/// or of `target` in a CSV or Parquet table, or its row count differs from `x`'s.
pub fn write_split(
    dir: &Path,
    name: &str,
    x: &Array2<f32>,
    y: Option<&Array2<f32>>,
    features: &[String],
    ids: Option<&DataFrame>,
    format: ExportFormat,
) -> Result<Vec<FileEntry>> {
    if let Some(ids) = ids
        && ids.height() != x.nrows()
    {
        return Err(Error::Apply(format!(
            "{name}: {} identifier rows for {} feature rows",
            ids.height(),
            x.nrows()
        )));
    }
    match format {
        ExportFormat::Npy => {
            let mut out = vec![write_file(dir, &format!("{name}_x.npy"), &npy_bytes(x))?];
            if let Some(y) = y {
                out.push(write_file(dir, &format!("{name}_y.npy"), &npy_bytes(y))?);
            }
            if let Some(ids) = ids {
                let mut buf = Vec::new();
                CsvWriter::new(&mut buf)
                    .include_header(true)
                    .finish(&mut ids.clone())?;
                out.push(write_file(dir, &format!("{name}_ids.csv"), &buf)?);
            }
            Ok(out)
        }
        ExportFormat::Parquet | ExportFormat::Csv => {
            let mut df = split_table(x, y, features, ids)?;
            let mut buf = Vec::new();
            let file = if format == ExportFormat::Parquet {
                ParquetWriter::new(&mut buf)
                    .with_compression(ParquetCompression::Zstd(None))
                    .finish(&mut df)?;
                format!("{name}.parquet")
            } else {
                CsvWriter::new(&mut buf)
                    .include_header(true)
                    .finish(&mut df)?;
                format!("{name}.csv")
            };
            Ok(vec![write_file(dir, &file, &buf)?])
        }
    }
}

/// The identifier columns of each split (train, validation, test) of `prepared`, then the
/// `keep` columns: read from the main table's file as it is now (the run's cache key covers
/// its bytes), taken at [`Prepared::source_rows`].
///
/// # Errors
/// Loading errors, and a `keep` column absent from the main table.
pub fn split_ids(prepared: &Prepared, keep: &[String]) -> Result<[DataFrame; 3]> {
    let data = &prepared.manifest.data;
    let main = data.main_name()?;
    let spec = &data.tables[main];
    let raw = if data.id.is_empty() && keep.is_empty() {
        DataFrame::empty()
    } else {
        crate::load::load_rows(spec)?.0
    };
    let r = &prepared.source_rows;
    let one = |rows: &[IdxSize]| crate::rows::row_columns(&raw, rows, &data.id, keep, &spec.path);
    Ok([one(&r.train)?, one(&r.validation)?, one(&r.test)?])
}

/// Writes train / validation / test in `format`, `features.txt`, and `manifest.json` (written
/// last, with the hashes of the other files) into `dir`.
///
/// # Errors
/// [`Error::Fs`] on write errors, polars errors on encoding.
pub fn export(prepared: &Prepared, dir: &Path, format: ExportFormat) -> Result<ExportReport> {
    let ids = split_ids(prepared, &[])?;
    let files = write_splits(prepared, dir, format, &ids)?;
    let mut manifest = prepared.manifest.clone();
    manifest.files = files.clone();
    let path = dir.join("manifest.json");
    manifest.save(&path)?;
    Ok(ExportReport {
        files,
        manifest: path,
    })
}

/// Writes train / validation / test in `format` and `features.txt` into `dir` (what [`export`]
/// writes besides its manifest), each split with its identifier columns `ids` (from
/// [`split_ids`]); returns the written files with their sizes and hashes.
///
/// # Errors
/// [`Error::Fs`] on write errors, polars errors on encoding, [`Error::Apply`] for an
/// identifier column named like a feature.
pub fn write_splits(
    prepared: &Prepared,
    dir: &Path,
    format: ExportFormat,
    ids: &[DataFrame; 3],
) -> Result<Vec<FileEntry>> {
    let mut files = Vec::new();
    for ((name, rows), ids) in [
        ("train", &prepared.train),
        ("validation", &prepared.validation),
        ("test", &prepared.test),
    ]
    .into_iter()
    .zip(ids)
    {
        let Some(s) = rows.in_memory() else {
            return Err(Error::CannotStream {
                key: "whet export".into(),
                reason: format!(
                    "the {} prepared {name} rows did not fit in the memory budget and went to \
                     shards on disk; `whet export` of the run file streams them into the files \
                     instead",
                    rows.len()
                ),
            });
        };
        files.extend(write_split(
            dir,
            name,
            &s.x,
            Some(&s.y),
            &prepared.features,
            Some(ids),
            format,
        )?);
    }
    files.push(features_file(dir, &prepared.features)?);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_round_trips() {
        let x = Array2::from_shape_vec((2, 3), vec![1.0f32, 2.0, 3.0, 4.0, 5.0, f32::MIN_POSITIVE])
            .unwrap();
        let b = npy_bytes(&x);
        let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        std::fs::write(&p, &b).unwrap();
        assert_eq!(read_npy(&p).unwrap(), x);
    }
}
