//! Output folder locks: a command that writes into a folder first takes an advisory lock on
//! `FOLDER/.whet.lock`, so two processes never write one folder at once (two runs into one
//! `--out` would leave the metrics of one and the model of the other).
//!
//! The lock is `flock(2)` through [`std::fs::File::try_lock`]: the kernel releases it when the
//! holder exits, however it exits, so a killed process never leaves a stale lock. The holder
//! writes its process id into the file, and a second process fails at once with a
//! [`LockError::Held`] naming that pid. Dropping the [`FolderLock`] removes the file (and the
//! folder, when the lock created it and nothing was written into it).
//!
//! Taking the lock also cleans up what killed writers left in the folder: temporary files of
//! processes that no longer run ([`crate::fsx::remove_dead_temps`]) and their staging folders
//! ([`crate::publish`]). Whoever holds the lock is the only whet process writing there, so this
//! never races with a live writer of the same folder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a locked folder.
pub const LOCK_FILE: &str = ".whet.lock";

/// Why a folder could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "the folder `{}` is in use by another whet process ({}); wait for it to finish, or write \
         somewhere else (lock file `{}`)",
        folder.display(),
        holder_text(*pid),
        folder.join(LOCK_FILE).display()
    )]
    Held {
        /// The locked folder.
        folder: PathBuf,
        /// The holder's process id, when it could be read from the lock file.
        pid: Option<u32>,
    },
    /// The folder or its lock file could not be created or locked.
    #[error("{action} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The folder or lock file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("pid {p}"),
        None => "pid not yet written".into(),
    }
}

/// A held lock on a folder; released (and its file removed) on drop.
#[derive(Debug)]
pub struct FolderLock {
    file: File,
    path: PathBuf,
    folder: PathBuf,
    created_folder: bool,
}

impl FolderLock {
    /// Creates `folder` if needed and locks it without waiting, then removes what killed
    /// writers left in it (see the module docs).
    ///
    /// # Errors
    /// [`LockError::Held`] when another process holds the lock (even another handle in this
    /// process: locks are per open file); [`LockError::Io`] when the folder or the lock file
    /// cannot be created (a file where the folder should be, permissions…).
    pub fn acquire(folder: &Path) -> Result<FolderLock, LockError> {
        let io_err = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| LockError::Io {
                action,
                path,
                source,
            }
        };
        let path = folder.join(LOCK_FILE);
        // A holder removes the file before it unlocks; a process that opened the old file and
        // then got its lock must try again with the new one (at most a few times: each retry
        // means another process finished meanwhile).
        let mut attempts = 0;
        loop {
            attempts += 1;
            let created_folder = !folder.exists();
            std::fs::create_dir_all(folder)
                .map_err(io_err("creating the output folder", folder))?;
            let mut file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
            {
                Ok(f) => f,
                // The folder was removed by a holder that had created it: start again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 100 => continue,
                Err(e) => return Err(io_err("opening the lock file", &path)(e)),
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    return Err(LockError::Held {
                        folder: folder.to_path_buf(),
                        pid: text.trim().parse().ok(),
                    });
                }
                Err(TryLockError::Error(e)) => {
                    return Err(io_err("locking", &path)(e));
                }
            }
            if !same_file(&file, &path) && attempts < 100 {
                continue;
            }
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .map_err(io_err("writing the lock file", &path))?;
            crate::fsx::remove_dead_temps(folder);
            crate::publish::remove_dead_stages(folder);
            return Ok(FolderLock {
                file,
                path,
                folder: folder.to_path_buf(),
                created_folder,
            });
        }
    }

    /// The locked folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }
}

/// Whether the open `file` is still the one at `path` (the holder before us may have removed
/// it after we opened it).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // Removed while still locked, so a process waiting on this file sees it is stale.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
        if self.created_folder {
            // Only succeeds when the folder is empty: a command that failed before writing
            // anything leaves no folder behind.
            let _ = std::fs::remove_dir(&self.folder);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_naming_the_holder_and_is_free_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let a = FolderLock::acquire(&out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join(LOCK_FILE)).unwrap().trim(),
            std::process::id().to_string()
        );
        match FolderLock::acquire(&out) {
            Err(e @ LockError::Held { pid: Some(p), .. }) => {
                assert_eq!(p, std::process::id());
                let text = e.to_string();
                assert!(text.contains(&format!("pid {p}")), "{text}");
                assert!(text.contains(&out.display().to_string()), "{text}");
            }
            other => panic!("expected Held, got {other:?}"),
        }
        std::fs::write(out.join("result.txt"), "x").unwrap();
        drop(a);
        assert!(!out.join(LOCK_FILE).exists());
        let b = FolderLock::acquire(&out).unwrap();
        drop(b);
        assert!(out.join("result.txt").exists());
    }

    #[test]
    fn a_lock_that_wrote_nothing_leaves_no_folder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("new");
        drop(FolderLock::acquire(&out).unwrap());
        assert!(!out.exists());
        // An existing folder stays.
        std::fs::create_dir(&out).unwrap();
        drop(FolderLock::acquire(&out).unwrap());
        assert!(out.is_dir());
    }

    #[test]
    fn a_stale_lock_file_of_a_dead_process_is_taken_over() {
        // What a killed holder leaves: the file with its pid, unlocked (the kernel released it).
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "4294967295\n").unwrap();
        let l = FolderLock::acquire(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LOCK_FILE))
                .unwrap()
                .trim(),
            std::process::id().to_string()
        );
        drop(l);
    }

    #[test]
    fn a_file_in_the_way_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        assert!(matches!(FolderLock::acquire(&f), Err(LockError::Io { .. })));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn taking_the_lock_removes_dead_writers_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let dead_tmp = dir.path().join(".metrics.json.4294967295.Ab12Cd.tmp");
        let dead_stage = dir.path().join(".whet-stage-4294967295.tmp");
        std::fs::write(&dead_tmp, "x").unwrap();
        std::fs::create_dir(&dead_stage).unwrap();
        let l = FolderLock::acquire(dir.path()).unwrap();
        assert!(!dead_tmp.exists());
        assert!(!dead_stage.exists());
        drop(l);
    }
}
