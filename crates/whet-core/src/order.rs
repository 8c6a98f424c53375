//! The order in which the trainer visits a sharded training set: shards shuffled, then samples
//! shuffled inside windows of a shuffle buffer ([`Blocks::order`]), so that a window needs only
//! the few shards it spans. The streaming source and the in-memory set of the same shards use
//! this one function ([`InBlocks`] gives it to an in-memory source), so both see the same batches.

use crate::batch::{BatchSource, SourceError};
use ndarray::ArrayViewMut2;
use rand::RngExt;

/// A training set stored in consecutive blocks (the training samples of each shard, in shard
/// order) and the size of the shuffle buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocks {
    sizes: Vec<usize>,
    starts: Vec<usize>,
    total: usize,
    buffer: usize,
}

impl Blocks {
    /// Blocks of `sizes` samples (block `k` holds the samples `sizes[..k].sum()` onwards),
    /// shuffled through a buffer of `buffer` samples (at least 1).
    pub fn new(sizes: Vec<usize>, buffer: usize) -> Self {
        let mut starts = Vec::with_capacity(sizes.len());
        let mut at = 0usize;
        for &s in &sizes {
            starts.push(at);
            at = at.saturating_add(s);
        }
        Blocks {
            sizes,
            starts,
            total: at,
            buffer: buffer.max(1),
        }
    }

    /// Samples per block.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The first sample of each block.
    pub fn starts(&self) -> &[usize] {
        &self.starts
    }

    /// The shuffle buffer, in samples.
    pub fn buffer(&self) -> usize {
        self.buffer
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The block that holds sample `i` (`None` past the end).
    pub fn block_of(&self, i: usize) -> Option<usize> {
        if i >= self.len() {
            return None;
        }
        // The last block starting at or before `i` that is not empty.
        let k = self.starts.partition_point(|&s| s <= i);
        (0..k).rev().find(|&b| self.sizes[b] > 0)
    }

    /// The most blocks one window of the buffer can span.
    pub fn span(&self) -> usize {
        let mut sizes: Vec<usize> = self.sizes.iter().copied().filter(|&s| s > 0).collect();
        sizes.sort_unstable();
        // A window touches at most the two blocks at its ends plus the smallest blocks that
        // fit wholly inside it.
        let mut inside = 0usize;
        let mut room = self.buffer.saturating_sub(2);
        for s in &sizes {
            if *s > room {
                break;
            }
            room -= s;
            inside += 1;
        }
        (inside + 2).min(sizes.len())
    }

    /// Writes epoch `epoch`'s order into `out` (one index per sample) and returns the block
    /// sequence it visits; `None` (and `out` untouched) when the buffer holds the whole set,
    /// which is the trainer's own full shuffle.
    ///
    /// The blocks are shuffled with the stream `[8, epoch]` of `seed`, their samples laid end
    /// to end in that order, then each run of `buffer` consecutive samples is shuffled with
    /// the stream `[9, epoch]`.
    ///
    /// # Panics
    /// When `out` does not have one place per sample.
    pub fn order(&self, seed: u64, epoch: usize, out: &mut [usize]) -> Option<Vec<usize>> {
        let n = self.len();
        assert_eq!(out.len(), n, "Blocks::order: one place per sample");
        if self.buffer >= n {
            return None;
        }
        let mut seq: Vec<usize> = (0..self.sizes.len()).collect();
        let mut rng = crate::rng::stream(seed, &[8, epoch as u64]);
        for i in (1..seq.len()).rev() {
            let j = rng.random_range(0..=i);
            seq.swap(i, j);
        }
        let mut at = 0;
        for &b in &seq {
            let s = self.starts[b];
            for (k, slot) in out[at..at + self.sizes[b]].iter_mut().enumerate() {
                *slot = s + k;
            }
            at += self.sizes[b];
        }
        let mut rng = crate::rng::stream(seed, &[9, epoch as u64]);
        for window in out.chunks_mut(self.buffer) {
            for i in (1..window.len()).rev() {
                let j = rng.random_range(0..=i);
                window.swap(i, j);
            }
        }
        Some(seq)
    }
}

/// An in-memory source visited in the order of [`Blocks`]: what a sharded training set that
/// fits in memory trains with, so it sees the batches the streaming reader of the same shards
/// would.
pub struct InBlocks<S> {
    inner: S,
    blocks: Blocks,
}

impl<S: BatchSource> InBlocks<S> {
    /// `inner`'s samples, ordered by `blocks`.
    ///
    /// # Errors
    /// When the blocks do not hold `inner`'s samples.
    pub fn new(inner: S, blocks: Blocks) -> Result<Self, SourceError> {
        if blocks.len() != inner.len() {
            return Err(SourceError::msg(format!(
                "the shards hold {} training samples, the set {}",
                blocks.len(),
                inner.len()
            )));
        }
        Ok(InBlocks { inner, blocks })
    }
}

impl<S: BatchSource> BatchSource for InBlocks<S> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn input_dim(&self) -> usize {
        self.inner.input_dim()
    }
    fn target_dim(&self) -> usize {
        self.inner.target_dim()
    }
    fn memory(&self) -> u64 {
        self.inner.memory()
    }
    fn order(&mut self, seed: u64, epoch: usize, out: &mut [usize]) -> bool {
        self.blocks.order(seed, epoch, out).is_some()
    }
    fn fill(
        &mut self,
        epoch: usize,
        indices: &[usize],
        x: ArrayViewMut2<f32>,
        y: ArrayViewMut2<f32>,
    ) -> Result<(), SourceError> {
        self.inner.fill(epoch, indices, x, y)
    }
}

/// The resident blocks of a [`BlockCache`] ([`BlockCache::view`]).
pub struct BlockView<'a, T> {
    blocks: &'a Blocks,
    cache: &'a [(usize, T)],
}

impl<T> BlockView<'_, T> {
    /// The block holding sample `i` and `i`'s place in it (`None` when it is not resident).
    pub fn get(&self, i: usize) -> Option<(&T, usize)> {
        let b = self.blocks.block_of(i)?;
        let data = self.cache.iter().find(|(k, _)| *k == b).map(|(_, d)| d)?;
        Some((data, i - self.blocks.starts()[b]))
    }
}

/// How a [`BlockCache`] was used, for tests and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Blocks read (by the prefetch thread or on demand).
    pub reads: usize,
    /// Of which read ahead by the prefetch thread and used.
    pub prefetched: usize,
    /// The most blocks held at once (cache and prefetch).
    pub most_resident: usize,
}

/// Reads block `k` of a sharded set; `ahead` is true on the prefetch thread (a reader that uses
/// the global thread pool must use a pool of its own there: the trainer may be waiting for that
/// block on a thread of the global pool).
pub type ReadBlock<T> = dyn Fn(usize, bool) -> Result<T, SourceError> + Send + Sync;

/// A read block and its index, from the prefetch thread.
type Ahead<T> = (usize, Result<T, SourceError>);

/// The blocks of a set streamed from shards: the blocks the current batch needs are read into a
/// small cache (least recently used evicted first), and the next block of the epoch's sequence
/// ([`Blocks::order`]) is read ahead on a worker thread. What a streaming [`BatchSource`] holds
/// its shards with.
pub struct BlockCache<T: Send + 'static> {
    blocks: Blocks,
    read: std::sync::Arc<ReadBlock<T>>,
    cache: Vec<(usize, T)>,
    capacity: usize,
    /// This epoch's block sequence and each block's place in it.
    place: Vec<usize>,
    seq: Vec<usize>,
    /// `None` once dropped, which ends the prefetch thread.
    requests: Option<std::sync::mpsc::Sender<usize>>,
    results: std::sync::mpsc::Receiver<Ahead<T>>,
    worker: Option<std::thread::JoinHandle<()>>,
    pending: Option<usize>,
    need: Vec<usize>,
    stats: CacheStats,
}

impl<T: Send + 'static> Drop for BlockCache<T> {
    /// Ends the prefetch thread and waits for it, so that what its reader holds (files, a
    /// folder to remove) is released before the cache is gone.
    fn drop(&mut self) {
        self.requests = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl<T: Send + 'static> BlockCache<T> {
    /// A cache of `blocks` read with `read`, holding at most [`Blocks::span`] + 2 blocks (the
    /// blocks of one window, the one before it still cached, and the one read ahead). `thread`
    /// names the prefetch thread.
    ///
    /// # Errors
    /// When the prefetch thread cannot start.
    pub fn new(
        blocks: Blocks,
        read: std::sync::Arc<ReadBlock<T>>,
        thread: &str,
    ) -> Result<Self, SourceError> {
        let (requests, jobs) = std::sync::mpsc::channel::<usize>();
        let (done, results) = std::sync::mpsc::channel::<Ahead<T>>();
        let reader = std::sync::Arc::clone(&read);
        let worker = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                for k in jobs {
                    if done.send((k, reader(k, true))).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| SourceError::msg(format!("cannot start the prefetch thread: {e}")))?;
        Ok(BlockCache {
            capacity: blocks.span() + 1,
            blocks,
            read,
            cache: Vec::new(),
            place: Vec::new(),
            seq: Vec::new(),
            requests: Some(requests),
            results,
            worker: Some(worker),
            pending: None,
            need: Vec::new(),
            stats: CacheStats::default(),
        })
    }

    /// Reads ahead in the blocks' own order (a source read front to back, as an evaluation
    /// reads it) until [`BlockCache::order`] sets an epoch's sequence.
    pub fn in_order(&mut self) {
        self.seq = (0..self.blocks.sizes().len()).collect();
        self.place.clone_from(&self.seq);
    }

    /// The blocks.
    pub fn blocks(&self) -> &Blocks {
        &self.blocks
    }

    /// The most blocks it holds at once: [`Blocks::span`] + 2.
    pub fn resident(&self) -> usize {
        self.capacity + 1
    }

    /// How the cache has been used so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// [`Blocks::order`] for epoch `epoch`, remembered so that the next block can be read
    /// ahead; false when the buffer holds the whole set.
    pub fn order(&mut self, seed: u64, epoch: usize, out: &mut [usize]) -> bool {
        match self.blocks.order(seed, epoch, out) {
            Some(seq) => {
                self.place = vec![usize::MAX; self.blocks.sizes().len()];
                for (at, &b) in seq.iter().enumerate() {
                    self.place[b] = at;
                }
                self.seq = seq;
                true
            }
            None => false,
        }
    }

    /// Makes every block holding one of `indices` resident, then asks for the block after them
    /// in the epoch's sequence to be read ahead.
    ///
    /// # Errors
    /// An index past the end, or the reader's error.
    pub fn load(&mut self, indices: &[usize]) -> Result<(), SourceError> {
        self.need.clear();
        for &i in indices {
            let b = self.blocks.block_of(i).ok_or_else(|| {
                SourceError::msg(format!(
                    "index {i} out of range for {} samples",
                    self.blocks.len()
                ))
            })?;
            if !self.need.contains(&b) {
                self.need.push(b);
            }
        }
        for k in 0..self.need.len() {
            self.ensure(self.need[k])?;
        }
        self.prefetch()
    }

    /// The resident blocks, to read samples from (on any thread) once [`BlockCache::load`]
    /// made a batch's blocks resident.
    pub fn view(&self) -> BlockView<'_, T> {
        BlockView {
            blocks: &self.blocks,
            cache: &self.cache,
        }
    }

    /// Waits for the block being read ahead.
    fn receive(&mut self) -> Result<Ahead<T>, SourceError> {
        self.pending = None;
        self.results
            .recv()
            .map_err(|_| SourceError::msg("the prefetch thread stopped"))
    }

    /// Puts block `k` in the cache, evicting the least recently used blocks that this batch
    /// does not need.
    fn insert(&mut self, k: usize, data: T) {
        while self.cache.len() >= self.capacity {
            let Some(at) = self.cache.iter().position(|(b, _)| !self.need.contains(b)) else {
                break;
            };
            self.cache.remove(at);
        }
        self.cache.push((k, data));
        self.stats.reads += 1;
        let held = self.cache.len() + usize::from(self.pending.is_some());
        self.stats.most_resident = self.stats.most_resident.max(held);
    }

    /// Makes block `k` resident and most recently used.
    fn ensure(&mut self, k: usize) -> Result<(), SourceError> {
        if let Some(at) = self.cache.iter().position(|(b, _)| *b == k) {
            let entry = self.cache.remove(at);
            self.cache.push(entry);
            return Ok(());
        }
        let data = if self.pending == Some(k) {
            let (_, r) = self.receive()?;
            self.stats.prefetched += 1;
            r
        } else {
            (self.read)(k, false)
        };
        self.insert(k, data?);
        Ok(())
    }

    /// Asks the prefetch thread for the block after the last one this batch needs in the
    /// epoch's sequence, unless it is resident or already coming.
    fn prefetch(&mut self) -> Result<(), SourceError> {
        let Some(last) = self.need.iter().filter_map(|&b| self.place.get(b)).max() else {
            return Ok(());
        };
        let Some(&next) = self.seq.get(last + 1) else {
            return Ok(());
        };
        if self.pending == Some(next) || self.cache.iter().any(|(b, _)| *b == next) {
            return Ok(());
        }
        if self.pending.is_some() {
            // A block read ahead for nothing (a batch jumped past it): collect and drop it.
            let _ = self.receive()?;
        }
        self.requests
            .as_ref()
            .ok_or_else(|| SourceError::msg("the prefetch thread stopped"))?
            .send(next)
            .map_err(|_| SourceError::msg("the prefetch thread stopped"))?;
        self.pending = Some(next);
        let held = self.cache.len() + 1;
        self.stats.most_resident = self.stats.most_resident.max(held);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_a_permutation_whose_windows_stay_within_few_blocks() {
        let b = Blocks::new(vec![10, 0, 7, 10, 3, 10], 8);
        let n = b.len();
        let mut out = vec![0; n];
        let seq = b.order(3, 1, &mut out).unwrap();
        let mut sorted = out.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        assert_ne!(out, (0..n).collect::<Vec<_>>());
        for w in out.chunks(8) {
            let mut blocks: Vec<usize> = w.iter().map(|&i| b.block_of(i).unwrap()).collect();
            blocks.sort_unstable();
            blocks.dedup();
            assert!(blocks.len() <= b.span(), "{w:?} spans {blocks:?}");
        }
        let mut again = vec![0; n];
        assert_eq!(b.order(3, 1, &mut again), Some(seq));
        assert_eq!(again, out);
        b.order(3, 2, &mut again);
        assert_ne!(again, out, "each epoch has its own order");
    }

    #[test]
    fn a_buffer_that_holds_the_set_leaves_the_order_to_the_trainer() {
        let b = Blocks::new(vec![4, 4], 8);
        let mut out = vec![7; 8];
        assert!(b.order(1, 0, &mut out).is_none());
        assert_eq!(out, vec![7; 8]);
    }

    #[test]
    fn blocks_are_found_past_empty_ones() {
        let b = Blocks::new(vec![2, 0, 0, 3], 2);
        let of: Vec<Option<usize>> = (0..6).map(|i| b.block_of(i)).collect();
        assert_eq!(of, [Some(0), Some(0), Some(3), Some(3), Some(3), None]);
    }
}
