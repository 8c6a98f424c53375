//! Tables loaded once per process ([`LoadedTables`]): the cells of an ablation (and the folds of
//! a k-fold run) prepare their data from the same files with the same settings, and reading and
//! parsing a table (a gzipped CSV with timestamps takes a second or more) is then done once
//! instead of once per cell.

use crate::Result;
use crate::load::{LoadReport, TableSpec};
use polars::prelude::DataFrame;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// What tells a file's contents apart without reading them: its size, its modification time
/// (nanoseconds on the usual file systems) and, on Unix, its device and inode (a file replaced by
/// a rename is another inode).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileId {
    len: u64,
    modified: Option<SystemTime>,
    node: (u64, u64),
}

impl FileId {
    /// `None` for what is not a regular file (a named pipe is read once) or cannot be looked
    /// at (loading then reports why).
    fn of(path: &Path) -> Option<FileId> {
        let m = std::fs::metadata(path).ok()?;
        if !m.is_file() {
            return None;
        }
        #[cfg(unix)]
        let node = {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        };
        #[cfg(not(unix))]
        let node = (0, 0);
        Some(FileId {
            len: m.len(),
            modified: m.modified().ok(),
            node,
        })
    }
}

struct Entry {
    spec: TableSpec,
    file: FileId,
    df: DataFrame,
    report: LoadReport,
    bytes: u64,
}

/// How many bytes of loaded tables a [`LoadedTables`] keeps.
#[derive(Debug, Clone, Copy)]
enum Room {
    /// A quarter of the memory budget in force when a table is added
    /// ([`whet_core::budget::current`]).
    BudgetQuarter,
    /// This many bytes.
    Bytes(u64),
}

/// Tables loaded by [`crate::prepare`], kept for the next preparation in the same process that
/// loads the same file with the same settings ([`TableSpec`] equal, the file unchanged: same
/// size, modification time and inode). A kept table is handed out as a clone of its frame, which
/// shares the columns' memory, so the results are those of reading the file again.
///
/// Tables are kept while together they hold at most a quarter of the memory budget (or the room
/// given to [`LoadedTables::with_room`]); a table that does not fit is read every time. A
/// `LoadedTables` is shared by threads: a table is read without a lock held, so two
/// preparations that start at once may both read it (the first kept).
pub struct LoadedTables {
    room: Room,
    entries: Mutex<Vec<Entry>>,
    /// Files read through it.
    reads: std::sync::atomic::AtomicUsize,
}

impl Default for LoadedTables {
    /// [`LoadedTables::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LoadedTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedTables")
            .field("room", &self.room)
            .field("tables", &self.len())
            .field("held", &self.held())
            .field("reads", &self.reads())
            .finish()
    }
}

impl LoadedTables {
    /// Keeps tables within a quarter of the memory budget.
    pub fn new() -> Self {
        LoadedTables {
            room: Room::BudgetQuarter,
            entries: Mutex::new(Vec::new()),
            reads: Default::default(),
        }
    }

    /// Keeps tables within `bytes` (their frames' estimated size); `0` keeps none.
    pub fn with_room(bytes: u64) -> Self {
        LoadedTables {
            room: Room::Bytes(bytes),
            entries: Mutex::new(Vec::new()),
            reads: Default::default(),
        }
    }

    /// Keeps nothing: every load reads its file.
    pub fn none() -> Self {
        Self::with_room(0)
    }

    fn room(&self) -> u64 {
        match self.room {
            Room::BudgetQuarter => whet_core::budget::current().bytes() / 4,
            Room::Bytes(b) => b,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        // An entry is pushed whole or not at all: a panic elsewhere leaves the list usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tables kept.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no table is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many times a table file was read through it (kept tables handed out again are not
    /// counted).
    pub fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Estimated bytes of the tables kept.
    pub fn held(&self) -> u64 {
        self.entries().iter().map(|e| e.bytes).sum()
    }

    /// The rows of the table `spec` (a table without rows is refused, as a run's tables are):
    /// the kept frame when the same file with the same settings was loaded before and has not
    /// changed since, otherwise the file read, and kept when it fits in the room.
    ///
    /// # Errors
    /// Those of [`crate::load_table`], and [`crate::Error::EmptyTable`].
    pub(crate) fn load(&self, spec: &TableSpec) -> Result<(DataFrame, LoadReport)> {
        let room = self.room();
        let before = (room > 0).then(|| FileId::of(&spec.path)).flatten();
        if let Some(id) = &before
            && let Some(e) = self
                .entries()
                .iter()
                .find(|e| e.file == *id && e.spec == *spec)
        {
            return Ok((e.df.clone(), e.report.clone()));
        }
        // Read with no lock held: a thread waiting inside the read may run another preparation
        // (rayon's work stealing) that loads tables too.
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (df, report) = crate::load::load_rows(spec)?;
        // Kept only when the file did not change while it was read.
        if let Some(id) = before
            && FileId::of(&spec.path).as_ref() == Some(&id)
        {
            let bytes = df.estimated_size() as u64;
            let mut entries = self.entries();
            // An older version of the file is never asked for again.
            entries.retain(|e| e.spec != *spec || e.file == id);
            let held: u64 = entries.iter().map(|e| e.bytes).sum();
            let known = entries.iter().any(|e| e.spec == *spec);
            if !known && held.saturating_add(bytes) <= room {
                entries.push(Entry {
                    spec: spec.clone(),
                    file: id,
                    df: df.clone(),
                    report: report.clone(),
                    bytes,
                });
            }
        }
        Ok((df, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    /// The file's modification time moved past the one it had (some file systems keep whole
    /// seconds), so that a rewrite is seen as one.
    fn touch_later(path: &Path) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        let t = f.metadata().unwrap().modified().unwrap() + std::time::Duration::from_secs(5);
        f.set_modified(t).unwrap();
    }

    #[test]
    fn a_table_is_read_once_while_its_file_and_settings_stay() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        write(&p, "a,b\n1,x\n2,y\n");
        let loaded = LoadedTables::with_room(1 << 20);
        let spec = TableSpec::new(&p);
        let (first, rep) = loaded.load(&spec).unwrap();
        assert_eq!((loaded.len(), first.height(), rep.rows), (1, 2, 2));
        // Not read again: the kept frame, the same column buffers.
        let (again, rep2) = loaded.load(&spec).unwrap();
        assert!(again.equals_missing(&first));
        assert_eq!(rep2, rep);
        assert_eq!((loaded.len(), loaded.reads()), (1, 1));
        let ptr = |df: &DataFrame| {
            df.column("a")
                .unwrap()
                .as_materialized_series()
                .i64()
                .unwrap()
                .downcast_iter()
                .next()
                .unwrap()
                .values()
                .as_ptr()
        };
        assert_eq!(ptr(&again), ptr(&first), "the kept columns, not a new read");

        // Other settings: another table.
        let mut limited = spec.clone();
        limited.limit = Some(1);
        let (one, _) = loaded.load(&limited).unwrap();
        assert_eq!((one.height(), loaded.len()), (1, 2));

        // The file rewritten: read again, the old version dropped.
        write(&p, "a,b\n7,z\n");
        touch_later(&p);
        let (new, rep3) = loaded.load(&spec).unwrap();
        assert_eq!((new.height(), rep3.rows), (1, 1));
        assert_ne!(ptr(&new), ptr(&first));
        assert_eq!(loaded.len(), 2);
        let (new2, _) = loaded.load(&spec).unwrap();
        assert_eq!(ptr(&new2), ptr(&new));
        assert_eq!(loaded.reads(), 3);
    }

    #[test]
    fn tables_past_the_room_are_read_every_time_and_errors_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        write(&p, "a\n1\n2\n3\n");
        for loaded in [LoadedTables::none(), LoadedTables::with_room(8)] {
            let (df, _) = loaded.load(&TableSpec::new(&p)).unwrap();
            assert_eq!(df.height(), 3);
            let (df, _) = loaded.load(&TableSpec::new(&p)).unwrap();
            assert_eq!(df.height(), 3);
            assert!(loaded.is_empty(), "{loaded:?}");
            assert_eq!((loaded.held(), loaded.reads()), (0, 2));
        }
        let loaded = LoadedTables::with_room(1 << 20);
        let empty = dir.path().join("empty.csv");
        write(&empty, "a\n");
        let e = loaded.load(&TableSpec::new(&empty)).unwrap_err();
        assert!(matches!(e, crate::Error::EmptyTable { .. }), "{e}");
        assert!(
            loaded
                .load(&TableSpec::new(dir.path().join("gone.csv")))
                .is_err()
        );
        assert!(loaded.is_empty());
        loaded.load(&TableSpec::new(&p)).unwrap();
        assert!(loaded.held() > 0 && loaded.held() <= 1 << 20);
    }
}
