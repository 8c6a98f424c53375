//! Training from shards that need not fit in memory.
//!
//! [`ShardSource::index`](crate::ShardSource::index) reads and decodes every shard once and
//! keeps where each image lives ([`ShardIndex`]); [`ShardIndex::split`] takes the validation
//! split off (the same images [`ImageSet::split_stratified`] takes) and leaves the training
//! images as a [`ShardSet`]. [`ShardStream`] feeds the trainer from it in the shard-local order of
//! [`Blocks`]: each batch decodes the shards it needs into a small cache of decoded shards, and a
//! worker thread decodes the next shard of the epoch's sequence ahead of time
//! ([`whet_core::order::BlockCache`], which a streamed table's rows use too). The pixels,
//! labels, order and augmentation streams are those of the same set held in memory
//! ([`ShardSet::to_set`] with [`whet_core::order::InBlocks`]), so both give the same weights.

use crate::augment::Augmenter;
use crate::error::{Error, Result};
use crate::folder::{Grey, Skipped, decode_many};
use crate::set::{ImageSet, Normalizer, PixelStats, check_set_memory, validation_mask};
use crate::shards::{
    Member, ParquetShards, ShardFormat, ShardWriter, encode_pngs_range, read_shard,
};
use ndarray::ArrayViewMut2;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use whet_core::order::{BlockCache, Blocks, CacheStats};
use whet_core::{BatchSource, SourceError};

/// Where the images of a shard source live ([`ShardIndex::images`]: per shard file, the
/// positions of the images kept after `classes`, `limit` and `skip_bad`, with their labels and
/// the sums of their pixels), and the images skipped with `skip_bad`.
#[derive(Debug, Clone)]
pub struct ShardIndex {
    pub(crate) images: ShardSet,
    pub(crate) skipped: Vec<Skipped>,
}

impl ShardIndex {
    /// Every image kept, where it lives.
    pub fn images(&self) -> &ShardSet {
        &self.images
    }

    /// Images skipped with `skip_bad`.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Takes a stratified validation split of `fraction` off with `seed` (the images
    /// [`ImageSet::split_stratified`] would take from the same set) and decodes it into memory;
    /// the rest are the training images, left in the shards. With `fraction` 0 there is no
    /// validation set.
    ///
    /// # Errors
    /// [`Error::Config`] for a fraction outside `[0, 1)`; [`Error::Budget`] when the validation
    /// set would not fit; read and decode errors of the shards.
    pub fn split(
        self,
        fraction: f64,
        seed: u64,
        parquet: &dyn ParquetShards,
    ) -> Result<(ShardSet, Option<ImageSet>)> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(Error::Config(format!(
                "validation fraction must be in [0, 1), found {fraction}"
            )));
        }
        let all = self.images;
        let (h, w, c) = all.shape;
        let is_val = if fraction > 0.0 {
            validation_mask(&all.labels, all.class_names.len(), fraction, seed)
        } else {
            vec![false; all.labels.len()]
        };
        let n_val = is_val.iter().filter(|v| **v).count();
        let mut train = ShardSet {
            files: all.files,
            format: all.format,
            members: Vec::with_capacity(all.members.len()),
            labels: Vec::with_capacity(all.labels.len() - n_val),
            class_names: all.class_names,
            shape: all.shape,
            grey: all.grey,
            stats: all.stats,
        };
        let mut val_members: Vec<Vec<u32>> = Vec::with_capacity(all.members.len());
        let mut val_labels = Vec::with_capacity(n_val);
        let mut at = 0;
        for here in &all.members {
            let (mut t, mut v) = (Vec::new(), Vec::new());
            for &m in here {
                if is_val[at] {
                    v.push(m);
                    val_labels.push(all.labels[at]);
                } else {
                    t.push(m);
                    train.labels.push(all.labels[at]);
                }
                at += 1;
            }
            train.members.push(t);
            val_members.push(v);
        }
        if fraction == 0.0 {
            return Ok((train, None));
        }
        check_set_memory(
            "the validation images",
            n_val,
            train.shape,
            "data.images.validation",
        )?;
        let mut pixels = Vec::with_capacity(n_val * h * w * c);
        for (k, v) in val_members.iter().enumerate() {
            if !v.is_empty() {
                train.decode_members(k, v, &mut pixels, parquet)?;
            }
        }
        // The sums are exact, so the training images' are all of them minus the validation's.
        let mut val_stats = PixelStats::new(c);
        val_stats.add(&pixels);
        train.stats.subtract(&val_stats);
        let names = train.class_names.clone();
        Ok((
            train,
            Some(ImageSet::new(h, w, c, pixels, val_labels, names)?),
        ))
    }
}

/// Images of a shard source left in their shards (all of them in a [`ShardIndex`], the
/// training images after [`ShardIndex::split`]): per shard file, the positions of its images.
/// Block `k` of its [`Blocks`] is shard file `k`.
#[derive(Debug, Clone)]
pub struct ShardSet {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) format: ShardFormat,
    pub(crate) members: Vec<Vec<u32>>,
    pub(crate) labels: Vec<u32>,
    pub(crate) class_names: Vec<String>,
    pub(crate) shape: (usize, usize, usize),
    pub(crate) grey: Grey,
    pub(crate) stats: PixelStats,
}

impl ShardSet {
    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Labels, in shard then file order.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Class names, by label.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Height, width, channels.
    pub fn shape(&self) -> (usize, usize, usize) {
        self.shape
    }

    /// The shard files, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.class_names.len()];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// The sums of the training images' pixels (what [`Normalizer::from_stats`] fits).
    pub fn stats(&self) -> &PixelStats {
        &self.stats
    }

    /// The training images of each shard, as the blocks of a shuffle through `buffer` images.
    pub fn blocks(&self, buffer: usize) -> Blocks {
        Blocks::new(self.members.iter().map(Vec::len).collect(), buffer)
    }

    /// The most decoded shards a [`ShardStream`] with a buffer of `buffer` images holds at
    /// once: those one window of the buffer spans, one more for a batch that straddles two
    /// windows, and the one being decoded ahead.
    pub fn resident_shards(&self, buffer: usize) -> usize {
        self.blocks(buffer).span() + 2
    }

    /// The bytes of the largest decoded shard.
    pub fn largest_block_bytes(&self) -> u64 {
        let (h, w, c) = self.shape;
        let most = self.members.iter().map(Vec::len).max().unwrap_or(0);
        whet_core::budget::product(&[most as u64, h as u64, w as u64, c as u64])
    }

    /// Decodes the training images of shard `k`, in order (`h·w·c` bytes each).
    ///
    /// # Errors
    /// Read and decode errors naming the shard and member; [`Error::Format`] when the shard
    /// no longer holds an image it held when it was indexed.
    pub fn read_block(&self, k: usize, parquet: &dyn ParquetShards) -> Result<Vec<u8>> {
        let (h, w, c) = self.shape;
        let members = &self.members[k];
        let mut out = Vec::with_capacity(members.len() * h * w * c);
        if !members.is_empty() {
            self.decode_members(k, members, &mut out, parquet)?;
        }
        Ok(out)
    }

    /// Decodes the images at `positions` of shard `k`, appending to `out`.
    fn decode_members(
        &self,
        k: usize,
        positions: &[u32],
        out: &mut Vec<u8>,
        parquet: &dyn ParquetShards,
    ) -> Result<()> {
        let file = &self.files[k];
        let shard = read_shard(file, self.format, parquet)?;
        let members = positions
            .iter()
            .map(|&p| {
                shard
                    .images
                    .get(p as usize)
                    .map(|image| Member { shard: file, image })
                    .ok_or_else(|| changed(file))
            })
            .collect::<Result<Vec<_>>>()?;
        decode_many(&members, self.shape, self.grey, false, out, &mut Vec::new())?;
        Ok(())
    }

    /// Writes the training images as shards of `format` into `dir`, one source shard at a time
    /// (decoded, then encoded as PNG): the same files [`crate::write_shards`] writes from the
    /// set in memory ([`ShardSet::to_set`]).
    ///
    /// # Errors
    /// As [`ShardSet::read_block`] and [`crate::write_shards`].
    pub fn write_shards(
        &self,
        dir: &Path,
        split: &str,
        format: ShardFormat,
        shard_bytes: u64,
        parquet: &dyn ParquetShards,
    ) -> Result<Vec<String>> {
        let (h, w, c) = self.shape;
        let mut writer =
            ShardWriter::new(dir, split, format, shard_bytes, &self.class_names, parquet)?;
        let mut at = 0;
        for (k, members) in self.members.iter().enumerate() {
            let n = members.len();
            if n == 0 {
                continue;
            }
            let pixels = self.read_block(k, parquet)?;
            let labels = self.labels[at..at + n].to_vec();
            let block = ImageSet::new(h, w, c, pixels, labels, self.class_names.clone())?;
            for from in (0..n).step_by(4096) {
                writer.push(encode_pngs_range(&block, from..(from + 4096).min(n), at)?)?;
            }
            at += n;
        }
        writer.finish()
    }

    /// Decodes every training image into memory, in order: the set a run holds when it fits.
    ///
    /// # Errors
    /// [`Error::Budget`] when it would not fit; as [`ShardSet::read_block`].
    pub fn to_set(&self, parquet: &dyn ParquetShards) -> Result<ImageSet> {
        let (h, w, c) = self.shape;
        check_set_memory(
            "the training images",
            self.len(),
            self.shape,
            "data.images.train.shards",
        )?;
        let mut pixels = Vec::with_capacity(self.len() * h * w * c);
        for (k, m) in self.members.iter().enumerate() {
            if !m.is_empty() {
                self.decode_members(k, m, &mut pixels, parquet)?;
            }
        }
        ImageSet::new(
            h,
            w,
            c,
            pixels,
            self.labels.clone(),
            self.class_names.clone(),
        )
    }
}

fn changed(file: &Path) -> Error {
    Error::Format {
        path: file.to_path_buf(),
        message: "the shard changed while the run read it (it holds fewer images than when it \
                  was indexed); do not rewrite shards during a run"
            .into(),
    }
}

/// Training batches streamed from a [`ShardSet`]: normalised (and augmented, with an
/// [`Augmenter`]) as [`crate::AugmentSource`] and the in-memory arrays are, in the order of
/// [`Blocks`] ([`BatchSource::order`]). The decoded shards are held by a [`BlockCache`], at most
/// [`ShardStream::resident`] at once.
pub struct ShardStream {
    set: Arc<ShardSet>,
    cache: BlockCache<Vec<u8>>,
    norm: Normalizer,
    augmenter: Option<Augmenter>,
    classes: usize,
    labels: Vec<u32>,
}

impl ShardStream {
    /// Streams `set` shuffled through `buffer` images, normalised with `norm`, augmented by
    /// `augmenter` when given, with one-hot targets of `classes` columns. Parquet shards are
    /// read through `parquet`.
    ///
    /// # Errors
    /// [`Error::Config`] when the buffer holds the whole set (a full shuffle cannot stream);
    /// [`Error::Budget`] when the decoded shards it holds would not fit; [`Error::Shape`]
    /// when the augmenter or normaliser do not fit the images.
    pub fn new(
        set: ShardSet,
        buffer: usize,
        parquet: Arc<dyn ParquetShards>,
        norm: Normalizer,
        augmenter: Option<Augmenter>,
        classes: usize,
    ) -> Result<Self> {
        let blocks = set.blocks(buffer);
        if buffer >= set.len() {
            return Err(Error::Config(format!(
                "data.images.train.shards.shuffle_buffer: {buffer} holds all {} training images, \
                 which is a full shuffle of the whole set; streaming needs a smaller buffer",
                set.len()
            )));
        }
        if let Some(a) = &augmenter
            && (a.input_shape() != set.shape || a.output_shape() != set.shape)
        {
            return Err(Error::Shape {
                op: "ShardStream::new",
                message: format!(
                    "the augmenter maps {:?} to {:?}, the shards hold {:?} images",
                    a.input_shape(),
                    a.output_shape(),
                    set.shape
                ),
            });
        }
        if norm.channels() != set.shape.2 {
            return Err(Error::Shape {
                op: "ShardStream::new",
                message: format!(
                    "the normaliser has {} channels, the images {}",
                    norm.channels(),
                    set.shape.2
                ),
            });
        }
        let resident = set.resident_shards(buffer);
        whet_core::budget::check(
            format!(
                "streaming the training shards ({resident} decoded shards of up to {} images held at once)",
                set.members.iter().map(Vec::len).max().unwrap_or(0)
            ),
            whet_core::budget::product(&[resident as u64, set.largest_block_bytes()]),
            "data.images.train.shards.shuffle_buffer (or write smaller shards)",
        )?;
        let set = Arc::new(set);
        // The prefetch thread decodes in its own one-thread pool: the trainer may wait for
        // that shard on a thread of the global pool, which must not also be needed to decode it.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "whet-shard-decode".into())
            .build()
            .map_err(|e| Error::Config(format!("cannot start the shard prefetch thread: {e}")))?;
        let reader = Arc::clone(&set);
        let read = move |k: usize, ahead: bool| {
            let r = if ahead {
                pool.install(|| reader.read_block(k, &*parquet))
            } else {
                reader.read_block(k, &*parquet)
            };
            r.map_err(SourceError::new)
        };
        let cache = BlockCache::new(blocks, Arc::new(read), "whet-shard-prefetch")
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(ShardStream {
            set,
            cache,
            norm,
            augmenter,
            classes,
            labels: Vec::new(),
        })
    }

    /// The most decoded shards it holds at once ([`ShardSet::resident_shards`]).
    pub fn resident(&self) -> usize {
        self.cache.resident()
    }

    /// How the cache has been used so far.
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }
}

impl BatchSource for ShardStream {
    fn len(&self) -> usize {
        self.set.len()
    }
    fn input_dim(&self) -> usize {
        let (h, w, c) = self.set.shape;
        h * w * c
    }
    fn target_dim(&self) -> usize {
        self.classes
    }
    fn memory(&self) -> u64 {
        let labels = whet_core::budget::product(&[self.set.len() as u64, 4]);
        whet_core::budget::product(&[self.resident() as u64, self.set.largest_block_bytes()])
            .saturating_add(labels)
    }
    fn order(&mut self, seed: u64, epoch: usize, out: &mut [usize]) -> bool {
        self.cache.order(seed, epoch, out)
    }
    fn fill(
        &mut self,
        epoch: usize,
        indices: &[usize],
        mut x: ArrayViewMut2<f32>,
        y: ArrayViewMut2<f32>,
    ) -> std::result::Result<(), SourceError> {
        self.cache.load(indices)?;
        let dim = self.input_dim();
        let xs = x
            .as_slice_mut()
            .ok_or_else(|| SourceError::msg("the trainer's batch buffer is not contiguous"))?;
        if xs.len() != indices.len() * dim {
            return Err(SourceError::msg(format!(
                "the batch buffer holds {} values for {} rows of {dim}",
                xs.len(),
                indices.len()
            )));
        }
        let cache = self.cache.view();
        let image = |i: usize| -> &[u8] {
            // Every block of the batch is resident (`load`), so these lookups succeed.
            cache.get(i).map_or(&[][..], |(data, at)| {
                data.get(at * dim..(at + 1) * dim).unwrap_or(&[])
            })
        };
        match &self.augmenter {
            Some(a) => a.fill_with(image, &self.norm, epoch as u64, indices, xs),
            None => xs
                .par_chunks_mut(dim)
                .zip(indices.par_iter())
                .for_each(|(row, &i)| self.norm.apply(image(i), row)),
        }
        self.labels.clear();
        self.labels
            .extend(indices.iter().map(|&i| self.set.labels[i]));
        crate::online::one_hot(&self.labels, self.classes, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AugmentConfig, NoParquet, NormalizeKind, OpConfig, ShardSource, write_shards};
    use ndarray::Array2;

    /// 90 images of 3×3 grey in 3 classes, written as about a dozen tar shards.
    fn shards(dir: &Path) -> ImageSet {
        let n = 90;
        let pixels: Vec<u8> = (0..n * 9).map(|i| (i * 37 % 251) as u8).collect();
        let labels = (0..n as u32).map(|i| i * 7 % 3).collect();
        let names = vec!["a".into(), "b".into(), "c".into()];
        let set = ImageSet::new(3, 3, 1, pixels, labels, names).unwrap();
        let files = write_shards(
            &set,
            dir,
            "train",
            ShardFormat::Webdataset,
            8 * 1024,
            &NoParquet,
        )
        .unwrap();
        assert!(files.len() > 6, "{files:?}");
        set
    }

    /// Every batch of three epochs, as rows.
    fn batches(src: &mut dyn BatchSource, seed: u64, rows: usize) -> Vec<Array2<f32>> {
        let n = src.len();
        let mut out = Vec::new();
        let mut order = vec![0; n];
        for epoch in 0..3 {
            assert!(src.order(seed, epoch, &mut order), "a shard-local order");
            for idx in order.chunks(rows) {
                let mut x = Array2::zeros((idx.len(), src.input_dim()));
                let mut y = Array2::zeros((idx.len(), src.target_dim()));
                src.fill(epoch, idx, x.view_mut(), y.view_mut()).unwrap();
                out.push(x);
                out.push(y);
            }
        }
        out
    }

    #[test]
    fn streaming_gives_the_batches_of_the_set_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let all = shards(dir.path());
        let source = ShardSource::new(dir.path(), 3, 3)
            .with_shuffle_buffer(20)
            .with_class_names(["a", "b", "c"]);
        let index = source
            .index(None, None, "train", &NoParquet, &whet_core::NoProgress)
            .unwrap();
        assert_eq!(index.images().labels(), all.labels());
        let (set, validation) = index.split(0.2, 4, &NoParquet).unwrap();
        // The split and the normaliser of the set in memory.
        let (train, val) = all.split_stratified(0.2, 4).unwrap();
        assert_eq!(validation.unwrap(), val);
        assert_eq!(set.to_set(&NoParquet).unwrap(), train);
        let norm = Normalizer::from_stats(NormalizeKind::Standardize, set.stats());
        assert_eq!(norm, Normalizer::fit(NormalizeKind::Standardize, &train));
        let cfg = AugmentConfig::online().with_op(OpConfig::hflip());
        for augment in [false, true] {
            let augmenter = || augment.then(|| Augmenter::new(&cfg, 9, 3, 3, 1).unwrap());
            let blocks = set.blocks(20);
            let mut memory: Box<dyn BatchSource> = match augmenter() {
                Some(a) => Box::new(
                    whet_core::order::InBlocks::new(
                        crate::AugmentSource::new(train.clone(), a, norm.clone(), 3),
                        blocks,
                    )
                    .unwrap(),
                ),
                None => {
                    let (x, y) = train.to_arrays(&norm, 3).unwrap();
                    Box::new(ArraysInBlocks { x, y, blocks })
                }
            };
            let mut stream = ShardStream::new(
                set.clone(),
                20,
                Arc::new(NoParquet),
                norm.clone(),
                augmenter(),
                3,
            )
            .unwrap();
            let want = batches(memory.as_mut(), 11, 8);
            let got = batches(&mut stream, 11, 8);
            assert!(want == got, "augment {augment}: the batches differ");
            // Each shard is decoded at most once per epoch (fewer when shards stay cached from
            // one epoch to the next), and no more than `resident` are held at a time.
            let s = stream.stats();
            let shards = set.files().len();
            assert!(s.reads <= 3 * shards, "augment {augment}: {s:?}");
            assert!(
                s.reads >= shards + 2 * (shards - stream.resident()),
                "{s:?}"
            );
            assert!(s.prefetched > 0, "{s:?}");
            assert!(s.most_resident <= stream.resident(), "{s:?}");
            assert!(stream.resident() < shards, "{s:?}");
        }
    }

    #[test]
    fn a_buffer_that_holds_the_set_cannot_stream() {
        let dir = tempfile::tempdir().unwrap();
        shards(dir.path());
        let source = ShardSource::new(dir.path(), 3, 3).with_shuffle_buffer(1000);
        let (set, _) = source
            .index(None, None, "train", &NoParquet, &whet_core::NoProgress)
            .unwrap()
            .split(0.0, 1, &NoParquet)
            .unwrap();
        let e = ShardStream::new(set, 1000, Arc::new(NoParquet), Normalizer::unit(1), None, 3)
            .err()
            .unwrap();
        assert!(e.to_string().contains("shuffle_buffer: 1000"), "{e}");
    }

    /// In-memory arrays in the order of blocks (what `whet` builds from `ArraySource`).
    struct ArraysInBlocks {
        x: Array2<f32>,
        y: Array2<f32>,
        blocks: Blocks,
    }

    impl BatchSource for ArraysInBlocks {
        fn len(&self) -> usize {
            self.x.nrows()
        }
        fn input_dim(&self) -> usize {
            self.x.ncols()
        }
        fn target_dim(&self) -> usize {
            self.y.ncols()
        }
        fn order(&mut self, seed: u64, epoch: usize, out: &mut [usize]) -> bool {
            self.blocks.order(seed, epoch, out).is_some()
        }
        fn fill(
            &mut self,
            _: usize,
            indices: &[usize],
            mut x: ArrayViewMut2<f32>,
            mut y: ArrayViewMut2<f32>,
        ) -> std::result::Result<(), SourceError> {
            for (r, &i) in indices.iter().enumerate() {
                x.row_mut(r).assign(&self.x.row(i));
                y.row_mut(r).assign(&self.y.row(i));
            }
            Ok(())
        }
    }
}
