//! Atomic writes: results are written to a temporary file in the destination's folder, flushed,
//! and renamed over the destination. A crash or a kill leaves either the old file or the new one,
//! never a half-written file (rename is atomic within one file system on POSIX).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// An I/O error with the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{action} `{}`: {source}", path.display())]
pub struct FsError {
    /// What was being done ("writing", "creating folder", …).
    pub action: &'static str,
    /// The file or folder.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

fn err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The temporary sibling used while writing `path`: `.NAME.tmp-PID`.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = format!(".{name}.tmp-{}", std::process::id());
    match path.parent() {
        Some(p) => p.join(tmp),
        None => PathBuf::from(tmp),
    }
}

/// Writes `path` atomically with the bytes produced by `write`.
///
/// Parent folders are created. On any error the temporary file is removed and `path` is left as
/// it was.
///
/// # Errors
/// Any I/O error, with the path it concerns; an error returned by `write` is passed through.
pub fn atomic_write_with<E>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<FsError>,
{
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(err("creating folder", parent))?;
    }
    let tmp = temp_path_for(path);
    let result = (|| {
        let file = File::create(&tmp).map_err(err("creating", &tmp))?;
        let mut w = BufWriter::with_capacity(1 << 16, file);
        write(&mut w)?;
        w.flush().map_err(err("writing", &tmp))?;
        let file = w.into_inner().map_err(|e| FsError {
            action: "writing",
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(err("syncing", &tmp))?;
        fs::rename(&tmp, path).map_err(err("renaming into place", path))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically.
///
/// # Errors
/// Any I/O error, with the path it concerns.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    atomic_write_with(path, |w| w.write_all(bytes).map_err(err("writing", path)))
}

/// Maps an `io::Error` from inside an [`atomic_write_with`] closure to an [`FsError`] on `path`.
pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FsError + '_ {
    err("writing", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/out.txt");
        atomic_write(&p, b"one").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn failed_write_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        atomic_write(&p, b"old").unwrap();
        let r: Result<(), FsError> = atomic_write_with(&p, |w| {
            w.write_all(b"partial").unwrap();
            Err(FsError {
                action: "test",
                path: p.clone(),
                source: io::Error::other("boom"),
            })
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
