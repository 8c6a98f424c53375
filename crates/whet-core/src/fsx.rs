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

/// The prefix of the temporary sibling used while writing `path`: `.NAME.`; a random part and
/// `.tmp` follow (`.metrics.json.Ab12Cd.tmp`), so two writers of one path (two threads of one
/// process, say) never share a temporary file. The leading dot hides it from `ls` and from
/// whet's own folder scans.
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.")
}

/// Whether `name` is a temporary file left by [`atomic_write_with`] (for instance by a process
/// that was killed mid-write): it starts with a dot and ends with `.tmp`.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Writes `path` atomically with the bytes produced by `write`.
///
/// The bytes go to a uniquely named temporary file in the same folder (see [`is_temp_name`]),
/// which is flushed, synced and renamed over `path`. Parent folders are created. On any error the
/// temporary file is removed and `path` is left as it was; a kill leaves `path` as it was plus at
/// most one hidden `.tmp` file.
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
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => {
            fs::create_dir_all(parent).map_err(err("creating folder", parent))?;
            parent
        }
        None => Path::new("."),
    };
    // Dropping `tmp` on an early return deletes the temporary file.
    let tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .suffix(".tmp")
        .tempfile_in(parent)
        .map_err(err("creating a temporary file in", parent))?;
    let tmp_path = tmp.path().to_path_buf();
    let (file, tmp_path_guard) = tmp.into_parts();
    let mut w = BufWriter::with_capacity(1 << 16, file);
    write(&mut w)?;
    w.flush().map_err(err("writing", &tmp_path))?;
    let file = w.into_inner().map_err(|e| FsError {
        action: "writing",
        path: tmp_path.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(err("syncing", &tmp_path))?;
    drop(file);
    tmp_path_guard
        .persist(path)
        .map_err(|e| err("renaming into place", path)(e.error))?;
    Ok(())
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

    #[test]
    fn concurrent_writers_of_one_path_never_mix_bytes() {
        // With a per-process temporary name two threads wrote into the same temporary file and
        // could rename a mixture into place.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("shared.bin");
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..50 {
                        atomic_write(p, &vec![t; 200_000]).unwrap();
                    }
                });
            }
        });
        let bytes = fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 200_000);
        assert!(
            bytes.iter().all(|&b| b == bytes[0]),
            "bytes of two writers mixed"
        );
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "temporary files left behind: {left:?}");
    }

    #[test]
    fn temporary_names_are_recognised() {
        assert!(is_temp_name(
            &(temp_prefix(Path::new("a/metrics.json")) + "x1Y2.tmp")
        ));
        assert!(!is_temp_name("metrics.json"));
    }
}
