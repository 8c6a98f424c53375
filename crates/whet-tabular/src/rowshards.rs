//! The prepared training rows of a streamed table, on disk when they do not fit in the memory
//! budget: Parquet files of [`SHARD_ROWS`] rows each (the feature columns `x0…`, then the target
//! columns `y0…`, all `f32`), written by [`RowShardWriter`] and read back by [`RowStream`], the
//! trainer's batch source, a block at a time in the order of [`Blocks`] through a
//! [`BlockCache`] (the next block read ahead on a worker thread).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array2, ArrayViewMut2};
use polars::prelude::*;
use whet_core::order::{BlockCache, Blocks, CacheStats};
use whet_core::{BatchSource, SourceError};

use crate::error::{Error, Result};
use crate::pipeline::SplitArrays;

/// Rows per shard file (one row group each): the block the trainer reads at once.
pub const SHARD_ROWS: usize = 16_384;

/// The shuffle buffer (rows) of training rows streamed from disk when `data.shuffle_buffer` is
/// not set.
pub const DEFAULT_SHUFFLE_ROWS: usize = 65_536;

/// A folder removed when the last [`RowShards`] holding it is dropped.
#[derive(Debug, PartialEq)]
struct Folder(PathBuf);

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The prepared training rows of a streamed table, in Parquet shards ([`RowShardWriter`]). The
/// shards' folder is removed when the last clone is dropped (after training).
#[derive(Debug, Clone, PartialEq)]
pub struct RowShards {
    folder: Arc<Folder>,
    files: Vec<PathBuf>,
    sizes: Vec<usize>,
    features: usize,
    targets: usize,
}

impl RowShards {
    /// The number of rows.
    pub fn len(&self) -> usize {
        self.sizes.iter().sum()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Features per row.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Target columns per row.
    pub fn targets(&self) -> usize {
        self.targets
    }

    /// The shard files.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The shards as blocks for the shuffle buffer `buffer` (rows).
    pub fn blocks(&self, buffer: usize) -> Blocks {
        Blocks::new(self.sizes.clone(), buffer)
    }

    /// Bytes of one block in memory (features and targets as `f32`).
    pub fn block_bytes(&self) -> u64 {
        whet_core::budget::product(&[SHARD_ROWS as u64, (self.features + self.targets) as u64, 4])
    }

    /// Bytes `blocks` blocks hold in memory: at most every row.
    fn held_bytes(&self, blocks: usize) -> u64 {
        let all = whet_core::budget::product(&[
            self.len() as u64,
            (self.features + self.targets) as u64,
            4,
        ]);
        whet_core::budget::product(&[blocks as u64, self.block_bytes()]).min(all)
    }

    /// Reads shard `k`: its features and targets, row-major.
    ///
    /// # Errors
    /// [`Error::ReadTable`] when the file cannot be read or does not hold what was written.
    pub fn read_block(&self, k: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let path = &self.files[k];
        let bad = |source| Error::ReadTable {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let df = ParquetReader::new(file).finish().map_err(bad)?;
        let n = self.sizes[k];
        if df.height() != n || df.width() != self.features + self.targets {
            return Err(bad(PolarsError::ComputeError(
                format!(
                    "the shard holds {} rows of {} columns, {n} rows of {} were written: another \
                     process changed it",
                    df.height(),
                    df.width(),
                    self.features + self.targets
                )
                .into(),
            )));
        }
        let mut x = vec![0f32; n * self.features];
        let mut y = vec![0f32; n * self.targets];
        for (j, c) in df.columns().iter().enumerate() {
            let (out, d, j) = if j < self.features {
                (&mut x, self.features, j)
            } else {
                (&mut y, self.targets, j - self.features)
            };
            let ca = c.f32().map_err(bad)?;
            for (r, v) in ca.into_no_null_iter().enumerate() {
                out[r * d + j] = v;
            }
        }
        Ok((x, y))
    }
}

/// Writes prepared training rows into [`RowShards`] as they come, a shard each time
/// [`SHARD_ROWS`] rows are pending. Each file is written under a temporary name and renamed
/// into place.
#[derive(Debug)]
pub struct RowShardWriter {
    dir: PathBuf,
    features: usize,
    targets: usize,
    x: Vec<f32>,
    y: Vec<f32>,
    /// Rows pending in `x` and `y`.
    rows: usize,
    done: RowShards,
}

impl RowShardWriter {
    /// A writer into the new folder `dir` of rows of `features` features and `targets` target
    /// columns. The folder is removed with the shards (or with the writer, if it fails).
    ///
    /// # Errors
    /// [`Error::Io`] when the folder cannot be made.
    pub fn new(dir: &Path, features: usize, targets: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let folder = Arc::new(Folder(dir.to_path_buf()));
        Ok(RowShardWriter {
            dir: dir.to_path_buf(),
            features,
            targets,
            x: Vec::new(),
            y: Vec::new(),
            rows: 0,
            done: RowShards {
                folder,
                files: Vec::new(),
                sizes: Vec::new(),
                features,
                targets,
            },
        })
    }

    /// Appends the rows of `x` and `y` (row-major, the same number of rows).
    ///
    /// # Errors
    /// Writing a full shard failed.
    pub fn push(&mut self, x: &Array2<f32>, y: &Array2<f32>) -> Result<()> {
        for (xr, yr) in x.rows().into_iter().zip(y.rows()) {
            self.x.extend(xr.iter());
            self.y.extend(yr.iter());
            self.rows += 1;
            if self.rows == SHARD_ROWS {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let n = self.rows;
        if n == 0 {
            return Ok(());
        }
        let mut columns = Vec::with_capacity(self.features + self.targets);
        for (data, d, prefix) in [(&self.x, self.features, "x"), (&self.y, self.targets, "y")] {
            for j in 0..d {
                let v: Vec<f32> = (0..n).map(|r| data[r * d + j]).collect();
                columns.push(Column::new(format!("{prefix}{j}").into(), v));
            }
        }
        let mut df = DataFrame::new(n, columns)?;
        let k = self.done.files.len();
        let path = self.dir.join(format!("rows-{k:06}.parquet"));
        let tmp = self.dir.join(format!(".rows-{k:06}.parquet.partial"));
        let io = |source| Error::Io {
            path: tmp.clone(),
            source,
        };
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        ParquetWriter::new(&mut file)
            .with_row_group_size(Some(SHARD_ROWS))
            .finish(&mut df)
            .map_err(|source| Error::ReadTable {
                path: tmp.clone(),
                source,
            })?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        self.done.files.push(path);
        self.done.sizes.push(n);
        self.x.clear();
        self.y.clear();
        self.rows = 0;
        Ok(())
    }

    /// Writes the last, partial shard and returns the shards.
    ///
    /// # Errors
    /// Writing it failed.
    pub fn finish(mut self) -> Result<RowShards> {
        self.flush()?;
        Ok(self.done)
    }
}

/// The rows of one split of a prepared table: in memory, or on disk when a streamed table's
/// did not fit.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    /// Features and targets in memory.
    Memory(SplitArrays),
    /// Features and targets in Parquet shards; the targets also in memory (class counts, the
    /// target's scale).
    Shards {
        /// The shards.
        shards: RowShards,
        /// The targets, one row per row of the split.
        y: Array2<f32>,
    },
}

impl Rows {
    /// The number of rows.
    pub fn len(&self) -> usize {
        self.y().nrows()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Features per row.
    pub fn features(&self) -> usize {
        match self {
            Rows::Memory(a) => a.x.ncols(),
            Rows::Shards { shards, .. } => shards.features,
        }
    }

    /// The targets.
    pub fn y(&self) -> &Array2<f32> {
        match self {
            Rows::Memory(a) => &a.y,
            Rows::Shards { y, .. } => y,
        }
    }

    /// The arrays, when the rows are in memory.
    pub fn in_memory(&self) -> Option<&SplitArrays> {
        match self {
            Rows::Memory(a) => Some(a),
            Rows::Shards { .. } => None,
        }
    }
}

/// The blocks an in-memory training set of `rows` rows is visited in when `data.shuffle_buffer`
/// is set: those of its shards had it been streamed ([`SHARD_ROWS`] rows each), so both give
/// the same batches.
pub fn memory_blocks(rows: usize, buffer: usize) -> Blocks {
    let mut sizes = vec![SHARD_ROWS; rows / SHARD_ROWS];
    if !rows.is_multiple_of(SHARD_ROWS) {
        sizes.push(rows % SHARD_ROWS);
    }
    Blocks::new(sizes, buffer)
}

/// The trainer's batch source over [`RowShards`]: the rows in the order of [`Blocks`]
/// ([`BatchSource::order`]), at most [`RowStream::resident`] shards in memory at once.
pub struct RowStream {
    shards: Arc<RowShards>,
    cache: BlockCache<(Vec<f32>, Vec<f32>)>,
    scale: Option<whet_core::TargetScale>,
}

impl RowStream {
    /// Streams `shards` shuffled through `buffer` rows; the targets standardised with `scale`
    /// when given (as the trainer's in-memory copy is).
    ///
    /// # Errors
    /// [`Error::Config`] when the buffer holds every row (a full shuffle cannot stream),
    /// [`Error::Budget`] when the shards it holds would not fit.
    pub fn new(
        shards: RowShards,
        buffer: usize,
        scale: Option<whet_core::TargetScale>,
    ) -> Result<Self> {
        if buffer >= shards.len() {
            return Err(Error::Config(format!(
                "data.shuffle_buffer: {buffer} holds all {} training rows, which is a full \
                 shuffle of the whole set; streaming needs a smaller buffer",
                shards.len()
            )));
        }
        Self::with_blocks(shards.blocks(buffer), shards, scale)
    }

    /// Streams `shards` front to back (an evaluation's order: no shuffle), the next shard read
    /// ahead; the targets standardised with `scale` when given.
    ///
    /// # Errors
    /// [`Error::Budget`] when the shards it holds would not fit.
    pub fn in_order(shards: RowShards, scale: Option<whet_core::TargetScale>) -> Result<Self> {
        let mut s = Self::with_blocks(shards.blocks(1), shards, scale)?;
        s.cache.in_order();
        Ok(s)
    }

    fn with_blocks(
        blocks: Blocks,
        shards: RowShards,
        scale: Option<whet_core::TargetScale>,
    ) -> Result<Self> {
        let resident = blocks.span() + 2;
        whet_core::budget::check(
            format!(
                "streaming the prepared rows ({resident} shards of {SHARD_ROWS} rows held at once)"
            ),
            shards.held_bytes(resident),
            "data.shuffle_buffer",
        )?;
        let shards = Arc::new(shards);
        let reader = Arc::clone(&shards);
        let read = move |k: usize, _ahead: bool| reader.read_block(k).map_err(SourceError::new);
        let cache = BlockCache::new(blocks, Arc::new(read), "whet-rows-prefetch")
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(RowStream {
            shards,
            cache,
            scale,
        })
    }

    /// The most shards it holds at once.
    pub fn resident(&self) -> usize {
        self.cache.resident()
    }

    /// How the cache has been used so far.
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }
}

impl BatchSource for RowStream {
    fn len(&self) -> usize {
        self.shards.len()
    }
    fn input_dim(&self) -> usize {
        self.shards.features
    }
    fn target_dim(&self) -> usize {
        self.shards.targets
    }
    fn memory(&self) -> u64 {
        self.shards.held_bytes(self.resident())
    }
    fn order(&mut self, seed: u64, epoch: usize, out: &mut [usize]) -> bool {
        self.cache.order(seed, epoch, out)
    }
    fn fill(
        &mut self,
        _epoch: usize,
        indices: &[usize],
        mut x: ArrayViewMut2<f32>,
        mut y: ArrayViewMut2<f32>,
    ) -> std::result::Result<(), SourceError> {
        self.cache.load(indices)?;
        let (d, t) = (self.shards.features, self.shards.targets);
        let view = self.cache.view();
        for (r, &i) in indices.iter().enumerate() {
            let ((bx, by), at) = view
                .get(i)
                .ok_or_else(|| SourceError::msg(format!("row {i} is not resident")))?;
            for (o, v) in x.row_mut(r).iter_mut().zip(&bx[at * d..(at + 1) * d]) {
                *o = *v;
            }
            for (o, v) in y.row_mut(r).iter_mut().zip(&by[at * t..(at + 1) * t]) {
                *o = self.scale.map_or(*v, |s| s.apply(*v));
            }
        }
        Ok(())
    }
}
