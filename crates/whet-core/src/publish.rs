//! Staged folder publish: a command that writes several files into an output folder writes them
//! into a hidden staging folder inside it first, then moves them into place, so a failure or a
//! kill leaves the earlier outputs whole.
//!
//! The staging folder is `OUT/.whet-stage-PID.tmp`. A file is replaced by one rename. A folder
//! cannot be renamed over a non-empty folder, so the earlier one is first moved aside into the
//! staging folder (`.replaced-NAME`) and deleted with it at the end; if the process is killed
//! between the two renames, the next publish into `OUT` puts the earlier folder back (the stages
//! of processes that no longer run are cleaned up first), so it is never lost.

use crate::fsx::FsError;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;

const PREFIX: &str = ".whet-stage-";

fn fs_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Runs `write` into a staging folder inside `out` (created if missing), then moves what it
/// wrote into `out`, replacing earlier outputs of the same names. A failure while writing leaves
/// `out` as it was; so does a destination that cannot be replaced (a folder where a file goes, or
/// the reverse), which is checked before anything moves. Nothing is written outside `out`.
///
/// # Errors
/// `write`'s error, or an [`FsError`] naming the path that could not be created or moved.
pub fn staged<T, E: From<FsError>>(
    out: &Path,
    write: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    staged_removing(out, |stage| write(stage).map(|v| (v, Vec::new())))
}

/// [`staged`], where `write` also returns names of entries in `out` that the new output makes
/// obsolete (files an earlier output wrote that this one does not replace). At the commit they
/// are moved into the staging folder before anything new moves in, and deleted with it; a kill
/// midway leaves them either in `out` or gone, never restored over the new output.
///
/// # Errors
/// As [`staged`].
pub fn staged_removing<T, E: From<FsError>>(
    out: &Path,
    write: impl FnOnce(&Path) -> Result<(T, Vec<OsString>), E>,
) -> Result<T, E> {
    std::fs::create_dir_all(out).map_err(fs_err("creating the output folder", out))?;
    remove_dead_stages(out);
    let stage = out.join(format!("{PREFIX}{}.tmp", std::process::id()));
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .map_err(fs_err("removing a stale staging folder", &stage))?;
    }
    std::fs::create_dir(&stage).map_err(fs_err("creating the staging folder", &stage))?;
    let result = write(&stage)
        .and_then(|(v, obsolete)| commit(&stage, out, &obsolete).map(|()| v).map_err(E::from));
    if let Err(e) = std::fs::remove_dir_all(&stage)
        && e.kind() != io::ErrorKind::NotFound
    {
        eprintln!(
            "warning: could not remove the staging folder `{}`: {e}",
            stage.display()
        );
    }
    result
}

/// Removes the staging folders that killed publishes left in `out`: those whose process no
/// longer runs, after putting back what they had moved aside. Liveness is read from `/proc`;
/// where there is no `/proc`, nothing is removed (the folders are hidden and nothing reads
/// them). Failures are ignored: the folders are only clutter.
pub(crate) fn remove_dead_stages(out: &Path) {
    let Ok(rd) = std::fs::read_dir(out) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.strip_suffix(".tmp"))
        else {
            continue;
        };
        let dead = pid
            .parse()
            .ok()
            .and_then(crate::fsx::process_alive)
            .is_some_and(|alive| !alive);
        if dead && e.path().is_dir() {
            restore_replaced(&e.path(), out);
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The name an earlier output folder `name` takes inside the staging folder while it is being
/// replaced.
fn replaced_name(name: &OsStr) -> OsString {
    let mut n = OsString::from(".replaced-");
    n.push(name);
    n
}

/// Puts back the earlier output folders that a killed publish had moved aside
/// (`.replaced-NAME` in its staging folder) but not yet replaced: those whose `NAME` is missing
/// from `out`.
fn restore_replaced(stage: &Path, out: &Path) {
    let Ok(rd) = std::fs::read_dir(stage) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(orig) = name.to_str().and_then(|n| n.strip_prefix(".replaced-")) else {
            continue;
        };
        let dest = out.join(orig);
        if std::fs::symlink_metadata(&dest).is_err() {
            let _ = std::fs::rename(e.path(), &dest);
        }
    }
}

/// Moves every entry of `stage` into `out`, replacing earlier outputs of the same name (see the
/// module docs for folders), after moving the `obsolete` entries of `out` into `stage`.
fn commit(stage: &Path, out: &Path, obsolete: &[OsString]) -> Result<(), FsError> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(stage).map_err(fs_err("listing the staging folder", stage))? {
        entries.push(
            e.map_err(fs_err("listing the staging folder", stage))?
                .path(),
        );
    }
    entries.sort();
    for src in &entries {
        let dest = out.join(src.file_name().unwrap_or_default());
        if let Ok(meta) = std::fs::symlink_metadata(&dest)
            && meta.is_dir() != src.is_dir()
        {
            let what = if meta.is_dir() { "folder" } else { "file" };
            return Err(FsError {
                action: "writing",
                path: dest,
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "a {what} of that name is in the way (nothing was changed in `{}`)",
                        out.display()
                    ),
                ),
            });
        }
    }
    for name in obsolete {
        let old = out.join(name);
        let replaced = entries
            .iter()
            .any(|e| e.file_name() == Some(name.as_os_str()));
        let mut parts = Path::new(name).components();
        let plain =
            matches!(parts.next(), Some(std::path::Component::Normal(_))) && parts.next().is_none();
        if replaced || !plain {
            continue;
        }
        if std::fs::symlink_metadata(&old).is_ok() {
            let mut aside = OsString::from(".obsolete-");
            aside.push(name);
            std::fs::rename(&old, stage.join(aside))
                .map_err(fs_err("moving an obsolete earlier output aside", &old))?;
        }
    }
    for src in &entries {
        let dest = out.join(src.file_name().unwrap_or_default());
        if src.is_dir() && dest.is_dir() {
            let aside = stage.join(replaced_name(src.file_name().unwrap_or_default()));
            std::fs::rename(&dest, &aside)
                .map_err(fs_err("moving the earlier output aside", &dest))?;
            if let Err(e) = std::fs::rename(src, &dest) {
                let _ = std::fs::rename(&aside, &dest);
                return Err(fs_err("moving the output into place at", &dest)(e));
            }
            continue;
        }
        std::fs::rename(src, &dest).map_err(fs_err("moving the output into place at", &dest))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_a_folder_keeps_only_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        std::fs::create_dir_all(out.join("train")).unwrap();
        std::fs::write(out.join("train/old.csv"), "old").unwrap();
        staged::<_, FsError>(out, |stage| {
            std::fs::create_dir_all(stage.join("train")).map_err(fs_err("t", stage))?;
            std::fs::write(stage.join("train/new.csv"), "new").map_err(fs_err("t", stage))?;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("train/new.csv")).unwrap(),
            "new"
        );
        assert!(!out.join("train/old.csv").exists());
        let names: Vec<_> = std::fs::read_dir(out).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "staging leftovers: {names:?}");
    }

    #[test]
    fn a_failed_write_leaves_the_earlier_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        std::fs::write(out.join("a.csv"), "old").unwrap();
        let r = staged::<(), FsError>(out, |stage| {
            std::fs::write(stage.join("a.csv"), "new").unwrap();
            Err(fs_err("writing", stage)(io::Error::other("disk full")))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_to_string(out.join("a.csv")).unwrap(), "old");
        assert_eq!(std::fs::read_dir(out).unwrap().count(), 1);
    }

    #[test]
    fn obsolete_entries_are_removed_at_the_commit_only() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        std::fs::create_dir_all(out.join("train")).unwrap();
        std::fs::write(out.join("train/0.png"), "old").unwrap();
        std::fs::write(out.join("test.csv"), "old").unwrap();
        std::fs::write(out.join("keep.txt"), "user").unwrap();
        let obsolete = || vec![OsString::from("train"), OsString::from("test.csv")];
        // A failed write removes nothing.
        let r = staged_removing::<(), FsError>(out, |_| {
            Err(fs_err("writing", out)(io::Error::other("disk full")))
        });
        assert!(r.is_err());
        assert!(out.join("train/0.png").exists() && out.join("test.csv").exists());
        staged_removing::<_, FsError>(out, |stage| {
            std::fs::write(stage.join("test.csv"), "new").map_err(fs_err("t", stage))?;
            std::fs::write(stage.join("train.npy"), "new").map_err(fs_err("t", stage))?;
            Ok(((), obsolete()))
        })
        .unwrap();
        assert!(!out.join("train").exists(), "obsolete folder removed");
        assert_eq!(
            std::fs::read_to_string(out.join("test.csv")).unwrap(),
            "new",
            "a replaced entry is the new one, not removed"
        );
        assert!(out.join("keep.txt").exists() && out.join("train.npy").exists());
        assert_eq!(std::fs::read_dir(out).unwrap().count(), 3);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_folder_moved_aside_by_a_killed_publish_is_put_back() {
        // What a kill between "move the earlier folder aside" and "rename the new one into
        // place" leaves: `train` missing, the earlier one inside a dead process's stage.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let dead = out.join(format!("{PREFIX}4294967295.tmp"));
        std::fs::create_dir_all(dead.join(".replaced-train")).unwrap();
        std::fs::write(dead.join(".replaced-train/old.csv"), "old").unwrap();
        std::fs::create_dir_all(dead.join("test")).unwrap();
        remove_dead_stages(out);
        assert_eq!(
            std::fs::read_to_string(out.join("train/old.csv")).unwrap(),
            "old"
        );
        assert!(!dead.exists());
        assert!(
            !out.join("test").exists(),
            "unfinished new output is not promoted"
        );
    }
}
