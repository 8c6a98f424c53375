//! Atomic writes: results are written to a temporary file in the destination's folder, flushed,
//! and renamed over the destination. A crash or a kill leaves either the old file or the new one,
//! never a half-written file (rename is atomic within one file system on POSIX).
//!
//! Files are created with mode `0666` less the umask, like any Unix tool (a temporary file's
//! default would be `0600`); folders with `0777` less the umask. A temporary file's name carries
//! the writer's process id (`.NAME.PID.RAND.tmp`), so [`remove_dead_temps`] can clean up what a
//! killed process left without touching the files of a process still writing.

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

/// The prefix of the temporary sibling used while writing `path`: `.NAME.PID.`; a random part
/// and `.tmp` follow (`.metrics.json.4242.Ab12Cd.tmp`), so two writers of one path (two threads
/// of one process, say) never share a temporary file, and the writer's process can be told from
/// the name. The leading dot hides it from `ls` and from whet's own folder scans.
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.{}.", std::process::id())
}

/// Whether `name` is a temporary file left by [`atomic_write_with`] (for instance by a process
/// that was killed mid-write): it starts with a dot and ends with `.tmp`.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// The id of the process that wrote the temporary file `name` (`.NAME.PID.RAND.tmp`), or `None`
/// when `name` is not one (an older temporary name without a pid included).
pub fn temp_writer_pid(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(3, '.');
    let _rand = parts.next()?;
    let pid = parts.next()?;
    let _name = parts.next().filter(|n| !n.is_empty())?;
    pid.parse().ok()
}

/// Whether process `pid` runs, read from `/proc`; `None` where there is no `/proc` (nothing can
/// be said, so callers leave files alone).
pub fn process_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(proc.join(pid.to_string()).exists())
}

/// How deep [`remove_dead_temps`] looks below its folder: an ablation's cells are at
/// `runs/VARIANT/seed-N`, three levels down; nothing whet writes directly lies deeper.
const TEMP_SCAN_DEPTH: usize = 3;

/// Removes, in `dir` and its subfolders up to three levels down (hidden folders and symbolic
/// links are not entered), the temporary files of [`atomic_write_with`] whose writing process
/// no longer runs (killed mid-write). Files of running processes, files without a pid in their
/// name and everything else are left. Failures are ignored (the files are hidden clutter that
/// nothing reads). Returns how many files were removed.
pub fn remove_dead_temps(dir: &Path) -> usize {
    let mut removed = 0;
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(kind) = e.file_type() else {
                continue;
            };
            if kind.is_dir() {
                let hidden = e.file_name().to_string_lossy().starts_with('.');
                if !hidden && depth < TEMP_SCAN_DEPTH {
                    stack.push((e.path(), depth + 1));
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(temp_writer_pid) else {
                continue;
            };
            if process_alive(pid) == Some(false) && fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// Permissions of a new file: `0666`, less the umask (the kernel applies it at creation).
#[cfg(unix)]
fn new_file_permissions() -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(0o666)
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
    let prefix = temp_prefix(path);
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    builder.permissions(new_file_permissions());
    let tmp = builder
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
        let name = temp_prefix(Path::new("a/metrics.json")) + "x1Y2.tmp";
        assert!(is_temp_name(&name));
        assert!(!is_temp_name("metrics.json"));
        assert_eq!(temp_writer_pid(&name), Some(std::process::id()));
        assert_eq!(temp_writer_pid(".a.b.c.77.R4nd.tmp"), Some(77));
        assert_eq!(temp_writer_pid(".metrics.json.Ab12Cd.tmp"), None);
        assert_eq!(temp_writer_pid(".77.R4nd.tmp"), None);
        assert_eq!(temp_writer_pid("metrics.json"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn only_dead_writers_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("runs/a");
        fs::create_dir_all(&sub).unwrap();
        // u32::MAX is above the kernel's pid limit: never a running process.
        let dead = sub.join(".metrics.json.4294967295.Ab12Cd.tmp");
        let alive = sub.join(format!(".model.bin.{}.Xy12Zz.tmp", std::process::id()));
        let old_style = dir.path().join(".curves.csv.Ab12Cd.tmp");
        let user = dir.path().join("notes.4294967295.tmp");
        for p in [&dead, &alive, &old_style, &user] {
            fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_dead_temps(dir.path()), 1);
        assert!(!dead.exists());
        assert!(alive.exists() && old_style.exists() && user.exists());
    }

    #[test]
    #[cfg(unix)]
    fn new_files_follow_the_umask_not_0600() {
        use std::os::unix::fs::PermissionsExt;
        // The process's umask cannot be read without changing it (no libc here); whatever it
        // is, a file created through `atomic_write` must have the bits a plain `File::create`
        // gets, which are `0666 & !umask`.
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        fs::File::create(&plain).unwrap();
        let ours = dir.path().join("ours");
        atomic_write(&ours, b"x").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ours), mode(&plain));
    }
}
