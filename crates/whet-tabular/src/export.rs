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
    columns_frame(matrix_columns(x, features), y, x.nrows())
}

/// The columns of `x`, named `features`.
fn matrix_columns(x: &Array2<f32>, features: &[String]) -> Vec<Float32Chunked> {
    features
        .iter()
        .enumerate()
        .map(|(j, f)| Float32Chunked::from_vec(f.as_str().into(), x.column(j).to_vec()))
        .collect()
}

/// The feature columns `cols` (`rows` each) plus a `target` column from `y`.
fn columns_frame(
    cols: Vec<Float32Chunked>,
    y: Option<&Array2<f32>>,
    rows: usize,
) -> Result<DataFrame> {
    let mut cols: Vec<Column> = cols.into_iter().map(IntoColumn::into_column).collect();
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
    Ok(DataFrame::new(rows, cols)?)
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
    columns_table(matrix_columns(x, features), y, features, ids, x.nrows())
}

/// [`split_table`] of the feature columns `cols` (named `features`, `rows` each) instead of a
/// matrix.
fn columns_table(
    cols: Vec<Float32Chunked>,
    y: Option<&Array2<f32>>,
    features: &[String],
    ids: Option<&DataFrame>,
    rows: usize,
) -> Result<DataFrame> {
    let df = columns_frame(cols, y, rows)?;
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

/// A file written in pieces through a buffer, its bytes counted and hashed as they leave it
/// (for its [`FileEntry`]). polars' Parquet writer hands over every page header on its own
/// (a few hundred bytes a call): unbuffered, that was a system call each, 1.5 million for a
/// 10 M-row export.
struct Hashed(Arc<std::sync::Mutex<HashedFile>>);

/// The state of a [`Hashed`] file, shared with its [`SplitFile`], which drains, syncs and
/// sums it when the file is complete.
struct HashedFile {
    file: std::fs::File,
    buf: Vec<u8>,
    sum: Sha256,
    bytes: u64,
}

impl HashedFile {
    /// How many bytes are gathered before they are written.
    const BUFFER: usize = 1 << 20;

    fn new(file: std::fs::File) -> Self {
        HashedFile {
            file,
            buf: Vec::with_capacity(Self::BUFFER),
            sum: Sha256::new(),
            bytes: 0,
        }
    }

    /// Writes `bytes` to the file, hashed and counted.
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.sum.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Writes out the buffered bytes.
    fn drain(&mut self) -> std::io::Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let done = self.put(&buf);
        self.buf = buf;
        self.buf.clear();
        done
    }
}

impl Hashed {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashedFile> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Write for Hashed {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut f = self.lock();
        if f.buf.len() + bytes.len() > HashedFile::BUFFER {
            f.drain()?;
        }
        if bytes.len() >= HashedFile::BUFFER {
            f.put(bytes)?;
        } else {
            f.buf.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut f = self.lock();
        f.drain()?;
        f.file.flush()
    }
}

enum Batched<W: Write> {
    Parquet(Box<ParquetBatches<W>>),
    Csv(polars::io::csv::write::BatchedWriter<W>),
}

/// A Parquet file written a row group per batch, each row group's columns encoded and
/// compressed in parallel on [`parquet_pool`], then written in order one batch later (row group
/// N is written while N + 1 is compressed; the last one by [`ParquetBatches::finish`]): the
/// bytes polars' batched writer writes, which compresses every column on the calling thread.
struct ParquetBatches<W: Write> {
    writer: polars::io::parquet::write::BatchedWriter<W>,
    /// Each column's Parquet type and encodings.
    columns: Vec<(
        polars_parquet::write::ParquetType,
        Vec<polars_parquet::write::Encoding>,
    )>,
    options: polars_parquet::write::WriteOptions,
    /// The last row group's rows and pages, written when the next one is being compressed
    /// (or at the end).
    pending: Option<(u64, Vec<Vec<polars_parquet::write::CompressedPage>>)>,
}

/// The threads that encode and compress Parquet columns (as many as rayon's global pool): a
/// pool of their own, so that the work of the thread preparing the next batch (on the global
/// pool and polars' pool) never waits behind a row group's compression. `None` when the
/// threads could not start (the columns are then compressed on the calling thread).
fn parquet_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|i| format!("whet-parquet-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

impl<W: Write> ParquetBatches<W> {
    /// The options [`ParquetWriter`] writes with: zstd at its default level, default
    /// statistics, format version 1, default page size.
    fn new(out: W, schema: &SchemaRef) -> Result<Self> {
        let compression = ParquetCompression::Zstd(None);
        let mut writer = ParquetWriter::new(out)
            .with_compression(compression)
            .batched(schema)?;
        let arrow = schema.to_arrow(CompatLevel::newest());
        let encodings = polars::io::parquet::write::get_encodings(&arrow);
        let columns = writer
            .parquet_schema()
            .fields()
            .iter()
            .cloned()
            .zip(encodings.iter().cloned())
            .collect();
        Ok(ParquetBatches {
            writer,
            columns,
            options: polars_parquet::write::WriteOptions {
                statistics: polars::io::parquet::write::StatisticsOptions::default(),
                version: polars_parquet::write::Version::V1,
                compression: compression.into(),
                data_page_size: None,
            },
            pending: None,
        })
    }

    /// Writes the rows of `df` (in one chunk) as a row group: its columns are encoded and
    /// compressed on [`parquet_pool`] while this thread writes the row group before it (kept
    /// back until then), so that writing overlaps the next row group's compression.
    fn write(&mut self, df: &DataFrame) -> Result<()> {
        use polars_parquet::write::{CompressedPage, Compressor, array_to_columns};
        use rayon::prelude::*;
        let options = self.options;
        for batch in df.iter_chunks(CompatLevel::newest(), false) {
            if batch.is_empty() {
                continue;
            }
            let columns = &self.columns;
            let encode = || {
                batch
                    .columns()
                    .par_iter()
                    .zip(columns)
                    .map(|(array, (kind, encodings))| {
                        array_to_columns(array, kind.clone(), options, encodings)?
                            .into_iter()
                            .map(|pages| {
                                let pages = pages.map(|p| {
                                    p.map_err(|e| {
                                        polars_parquet::read::ParquetError::FeatureNotSupported(
                                            e.to_string(),
                                        )
                                    })
                                });
                                Ok(Compressor::new_from_vec(pages, options.compression, vec![])
                                    .collect::<std::result::Result<Vec<_>, _>>()?)
                            })
                            .collect::<PolarsResult<Vec<_>>>()
                    })
                    .collect::<PolarsResult<Vec<_>>>()
            };
            let before = self.pending.take();
            let writer = &mut self.writer;
            let mut written = Ok(());
            let mut write_before = || {
                if let Some((rows, pages)) = &before {
                    written = writer.write_row_group(*rows, pages);
                }
            };
            let pages: PolarsResult<Vec<Vec<Vec<CompressedPage>>>> = match parquet_pool() {
                Some(pool) => {
                    let mut pages = None;
                    pool.in_place_scope(|s| {
                        s.spawn(|_| pages = Some(encode()));
                        write_before();
                    });
                    pages.unwrap_or_else(|| {
                        Err(PolarsError::ComputeError(
                            "a row group's columns were not encoded".into(),
                        ))
                    })
                }
                None => {
                    write_before();
                    encode()
                }
            };
            written?;
            let pages: Vec<Vec<CompressedPage>> = pages?.into_iter().flatten().collect();
            self.pending = Some((batch.len() as u64, pages));
        }
        Ok(())
    }

    /// Writes the last row group and the footer.
    fn finish(mut self) -> Result<()> {
        if let Some((rows, pages)) = self.pending.take() {
            self.writer.write_row_group(rows, &pages)?;
        }
        self.writer.finish()?;
        Ok(())
    }
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
            _ => Batched::Parquet(Box::new(ParquetBatches::new(out, schema)?)),
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
            Batched::Parquet(w) => w.write(df)?,
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
            Some(Batched::Parquet(w)) => w.finish()?,
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
    /// The file, its buffer and its sum: drained, made durable and summed when it is complete.
    file: Arc<std::sync::Mutex<HashedFile>>,
}

/// A batch for the [`SplitWriters`]' writing thread: split `k`'s rows, with the split's file
/// when it is new.
type SplitBatch = (usize, Option<SplitFile>, DataFrame);

/// The split files of an export written batch by batch (a table streamed through
/// `prepare_streamed`): the tables [`write_splits`] writes from memory, as `<split>.parquet`
/// (zstd, a row group per batch) or `<split>.csv` (the same bytes), and `features.txt`.
///
/// The files are encoded, compressed and written on a thread of their own, two batches
/// behind at most, while the next batch is prepared; its first error is returned when the next
/// batch is handed over, or by [`SplitWriters::finish`].
pub struct SplitWriters {
    dir: PathBuf,
    format: ExportFormat,
    keep: Vec<String>,
    /// Which split files were created.
    created: [bool; 3],
    /// The batches to the writing thread, while it runs.
    batches: Option<std::sync::mpsc::SyncSender<SplitBatch>>,
    /// The writing thread: the split files once every batch is written.
    writer: Option<std::thread::JoinHandle<Result<[Option<SplitFile>; 3]>>>,
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
        let (tx, rx) = std::sync::mpsc::sync_channel::<SplitBatch>(2);
        let writer = std::thread::Builder::new()
            .name("whet-export-writer".into())
            .spawn(move || {
                let mut files: [Option<SplitFile>; 3] = Default::default();
                for (k, new, mut df) in rx {
                    if let Some(f) = new {
                        files[k] = Some(f);
                    }
                    if let Some(f) = &mut files[k] {
                        f.writer.write(&mut df)?;
                    }
                }
                Ok(files)
            })
            .map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(SplitWriters {
            dir: dir.to_path_buf(),
            format,
            keep: keep.to_vec(),
            created: Default::default(),
            batches: Some(tx),
            writer: Some(writer),
        })
    }

    /// The `keep` columns.
    pub(crate) fn keep(&self) -> &[String] {
        &self.keep
    }

    /// Waits for the writing thread: the split files, or its first error.
    fn join(&mut self) -> Result<[Option<SplitFile>; 3]> {
        self.batches = None;
        match self.writer.take().map(std::thread::JoinHandle::join) {
            Some(Ok(done)) => done,
            Some(Err(_)) => Err(Error::Config(
                "the thread writing the split files stopped with a panic".into(),
            )),
            None => Err(Error::Config(
                "the split files were already finished".into(),
            )),
        }
    }

    /// Appends rows to split `k` (0 train, 1 validation, 2 test): feature columns `x`,
    /// targets `y`, identifier columns `ids`. The split's file is created at its first call,
    /// even with no rows.
    ///
    /// # Errors
    /// Creating the file, and the first error of the writing thread.
    pub(crate) fn push(
        &mut self,
        k: usize,
        x: Vec<Float32Chunked>,
        y: &Array2<f32>,
        features: &[String],
        ids: &DataFrame,
    ) -> Result<()> {
        const SPLITS: [&str; 3] = ["train", "validation", "test"];
        let df = columns_table(x, Some(y), features, Some(ids), y.nrows())?;
        let new = if self.created[k] {
            None
        } else {
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
            let file = Arc::new(std::sync::Mutex::new(HashedFile::new(file)));
            let writer = TableWriter::new(Hashed(file.clone()), self.format)?;
            self.created[k] = true;
            Some(SplitFile { name, writer, file })
        };
        let sent = match &self.batches {
            Some(tx) => tx.send((k, new, df)).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread stopped: its error.
        self.join()?;
        Err(Error::Config(
            "the thread writing the split files stopped early".into(),
        ))
    }

    /// Ends every split's file and writes `features.txt`; returns the files' entries (those
    /// [`write_splits`] returns).
    ///
    /// # Errors
    /// Write errors.
    pub fn finish(mut self, features: &[String]) -> Result<Vec<FileEntry>> {
        let files = self.join()?;
        let mut done = Vec::new();
        for f in files.into_iter().flatten() {
            f.writer.finish()?;
            let path = self.dir.join(&f.name);
            let file = Hashed(f.file);
            file.lock()
                .drain()
                .map_err(|source| Error::Io { path, source })?;
            done.push((f.name, file));
        }
        // Each file made durable on a thread of its own: the kernel writes them back together.
        let dir = &self.dir;
        std::thread::scope(|s| {
            let syncs: Vec<_> = done
                .iter()
                .map(|(name, file)| {
                    s.spawn(move || {
                        file.lock().file.sync_all().map_err(|source| Error::Io {
                            path: dir.join(name),
                            source,
                        })
                    })
                })
                .collect();
            syncs.into_iter().try_for_each(|t| {
                t.join().unwrap_or_else(|_| {
                    Err(Error::Config(
                        "a thread syncing a split file panicked".into(),
                    ))
                })
            })
        })?;
        let mut entries = Vec::new();
        for (name, file) in done {
            let f = file.lock();
            entries.push(FileEntry {
                name,
                bytes: f.bytes,
                sha256: hex(&f.sum.clone().finalize()),
            });
        }
        entries.push(features_file(&self.dir, features)?);
        Ok(entries)
    }
}

impl Drop for SplitWriters {
    /// Stops the writing thread after the batches it was given (an export that failed).
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = self.join();
        }
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

    /// The Parquet bytes of `TableWriter` (columns compressed in parallel) are those of polars'
    /// batched writer with the same options, a row group per batch: numbers with and without
    /// missing values, text, booleans, dates, an empty batch skipped.
    #[test]
    fn table_writer_writes_polars_parquet_bytes() {
        let n = 70_000usize;
        let frame = |from: usize, rows: usize| {
            let r = from..from + rows;
            df!(
                "f32" => r.clone().map(|i| (i % 97) as f32 * 0.5).collect::<Vec<_>>(),
                "f64_missing" => r.clone().map(|i| (i % 7 != 0).then_some(i as f64 / 3.0)).collect::<Vec<_>>(),
                "i64" => r.clone().map(|i| i as i64 * 31 % 1000).collect::<Vec<_>>(),
                "text" => r.clone().map(|i| format!("v{}", i % 13)).collect::<Vec<_>>(),
                "flag" => r.clone().map(|i| i % 3 == 0).collect::<Vec<_>>(),
            )
            .unwrap()
        };
        let batches = [frame(0, n), frame(n, 0), frame(n, 1234), frame(n + 1234, n)];
        let mut ours = Vec::new();
        let mut w = TableWriter::new(&mut ours, ExportFormat::Parquet).unwrap();
        for b in &batches {
            w.write(&mut b.clone()).unwrap();
        }
        w.finish().unwrap();
        let mut theirs = Vec::new();
        let mut w = ParquetWriter::new(&mut theirs)
            .with_compression(ParquetCompression::Zstd(None))
            .batched(batches[0].schema())
            .unwrap();
        for b in &batches {
            if b.height() > 0 {
                w.write_batch(b).unwrap();
            }
        }
        w.finish().unwrap();
        assert!(ours == theirs, "{} vs {} bytes", ours.len(), theirs.len());
        let back = ParquetReader::new(std::io::Cursor::new(ours))
            .finish()
            .unwrap();
        assert_eq!(back.height(), 2 * n + 1234);
    }

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
