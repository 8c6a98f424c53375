//! Output folders never overlap inputs: [`check`] refuses an output that equals, contains or lies
//! inside an input file or folder (compared after resolving symlinks), and [`mark`] puts the
//! [`OUTPUT_MARKER`] file into every output folder, so loaders that walk folders of data
//! ([`is_output_folder`]) can skip what whet wrote.

use crate::fsx::FsError;
use std::io;
use std::path::{Component, Path, PathBuf};

/// The file whet writes into every output folder first; image folder loaders skip a
/// sub-folder that holds it.
pub const OUTPUT_MARKER: &str = ".whet-output";

const MARKER_TEXT: &str = "This folder was written by whet. Image folder loaders skip a folder holding this file,\nso whet never trains on its own outputs.\n";

/// Whether `dir` holds the [`OUTPUT_MARKER`] (it is a folder whet wrote).
pub fn is_output_folder(dir: &Path) -> bool {
    dir.join(OUTPUT_MARKER).exists()
}

/// What the output is: a folder (`run`, `ablate`, `export`, `apply`) or one file (`preview`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// A folder, created if missing; an existing regular file there is refused.
    Folder,
    /// One file, replaced if it exists.
    File,
}

/// An input of a command: what it is (a run-file key such as `data.tables.flights`, or
/// `the run file`) and its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// What the input is, for messages.
    pub what: String,
    /// The path, as the command has it.
    pub path: PathBuf,
}

impl Input {
    /// An input named `what` at `path`.
    pub fn new(what: impl Into<String>, path: impl Into<PathBuf>) -> Input {
        Input {
            what: what.into(),
            path: path.into(),
        }
    }
}

/// How an output lies relative to an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// They are the same file or folder.
    Equal,
    /// The input is inside the output folder.
    Contains,
    /// The output is inside the input folder.
    Inside,
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Overlap::Equal => "is",
            Overlap::Contains => "contains",
            Overlap::Inside => "lies inside",
        })
    }
}

/// Why an output cannot be written where it was asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// A folder output given as the path of an existing file.
    #[error("--out `{}` is an existing file; give a folder (new, or one whet wrote before)", out.display())]
    IsFile {
        /// The output as given.
        out: PathBuf,
    },
    /// An output whose path runs through an existing file (`data.csv/out`): it cannot be made.
    #[error("--out `{}` cannot be made: a part of its path is a file, not a folder; give a folder path", out.display())]
    ThroughFile {
        /// The output as given.
        out: PathBuf,
    },
    /// The output overlaps an input.
    #[error(
        "--out `{}` {overlap} the input `{}` ({what}){}: writing there would overwrite the input or train on the outputs; choose an --out outside every input file and folder",
        out.display(),
        input.display(),
        resolved_note(out, resolved_out, input, resolved_input)
    )]
    Overlap {
        /// The output as given.
        out: PathBuf,
        /// The output, resolved.
        resolved_out: PathBuf,
        /// The input as given.
        input: PathBuf,
        /// The input, resolved.
        resolved_input: PathBuf,
        /// What the input is.
        what: String,
        /// How they overlap.
        overlap: Overlap,
    },
    /// A path could not be resolved.
    #[error("resolving `{}`: {source}", path.display())]
    Resolve {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// ` (resolved: A and B)` when symlinks or relative parts made the paths differ from how they
/// were given.
fn resolved_note(out: &Path, ro: &Path, input: &Path, ri: &Path) -> String {
    if out == ro && input == ri {
        String::new()
    } else {
        format!(" (resolved: `{}` and `{}`)", ro.display(), ri.display())
    }
}

/// The absolute form of `path` with every symlink followed, also when `path` does not exist
/// yet: its nearest existing ancestor is canonicalised and the rest appended (`..` in the rest
/// removes the part before it; a dangling symlink on the way is followed to where it points).
///
/// # Errors
/// The current folder cannot be read, or symlinks loop.
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    resolve_depth(path, 0)
}

fn resolve_depth(path: &Path, depth: usize) -> io::Result<PathBuf> {
    if depth > 40 {
        return Err(io::Error::other("too many levels of symbolic links"));
    }
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut prefix = abs.clone();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    let mut base = loop {
        match prefix.canonicalize() {
            Ok(p) => break p,
            Err(_) => {
                if let Ok(meta) = std::fs::symlink_metadata(&prefix)
                    && meta.file_type().is_symlink()
                {
                    // A dangling symlink: writing through it would create its target.
                    let target = std::fs::read_link(&prefix)?;
                    let target = match prefix.parent() {
                        Some(parent) if target.is_relative() => parent.join(target),
                        _ => target,
                    };
                    break resolve_depth(&target, depth + 1)?;
                }
                let Some(last) = prefix.components().next_back() else {
                    break prefix;
                };
                rest.push(last.as_os_str().to_os_string());
                if !prefix.pop() {
                    // A root that does not resolve: nothing left to canonicalise.
                    break prefix;
                }
            }
        }
    };
    for part in rest.iter().rev() {
        match Path::new(part).components().next() {
            Some(Component::ParentDir) => {
                base.pop();
            }
            Some(Component::CurDir) | None => {}
            _ => base.push(part),
        }
    }
    Ok(base)
}

/// Checks that `out` can be written without touching an input: it may not equal, contain or lie
/// inside any of `inputs` (all compared resolved: symlinks followed, relative paths made
/// absolute), and a [`OutputKind::Folder`] may not be an existing regular file. Nothing is
/// created.
///
/// # Errors
/// [`OutputError::IsFile`], [`OutputError::ThroughFile`], [`OutputError::Overlap`] (the first
/// input that overlaps), or
/// [`OutputError::Resolve`].
pub fn check(out: &Path, kind: OutputKind, inputs: &[Input]) -> Result<(), OutputError> {
    match std::fs::metadata(out) {
        Ok(m) if kind == OutputKind::Folder && !m.is_dir() => {
            return Err(OutputError::IsFile {
                out: out.to_path_buf(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(OutputError::ThroughFile {
                out: out.to_path_buf(),
            });
        }
        _ => {}
    }
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OutputError::Resolve { path, source }
    };
    let resolved_out = resolve(out).map_err(err(out))?;
    for i in inputs {
        let resolved_input = resolve(&i.path).map_err(err(&i.path))?;
        let overlap = if resolved_out == resolved_input {
            Overlap::Equal
        } else if resolved_input.starts_with(&resolved_out) {
            Overlap::Contains
        } else if resolved_out.starts_with(&resolved_input) {
            Overlap::Inside
        } else {
            continue;
        };
        return Err(OutputError::Overlap {
            out: out.to_path_buf(),
            resolved_out,
            input: i.path.clone(),
            resolved_input,
            what: i.what.clone(),
            overlap,
        });
    }
    Ok(())
}

/// Creates the output folder `out` if missing and writes the [`OUTPUT_MARKER`] into it (once).
/// Call after [`check`] and before writing anything else.
///
/// # Errors
/// The folder or the marker cannot be written.
pub fn mark(out: &Path) -> Result<(), FsError> {
    std::fs::create_dir_all(out).map_err(|source| FsError {
        action: "creating the output folder",
        path: out.to_path_buf(),
        source,
    })?;
    let marker = out.join(OUTPUT_MARKER);
    if !marker.exists() {
        crate::fsx::atomic_write(&marker, MARKER_TEXT.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlap(out: &Path, input: &Path) -> Option<Overlap> {
        let kind = if out.is_file() {
            OutputKind::File
        } else {
            OutputKind::Folder
        };
        match check(out, kind, &[Input::new("data", input)]) {
            Ok(()) => None,
            Err(OutputError::Overlap { overlap, .. }) => Some(overlap),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn refuses_equal_containing_and_inside() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("data/images/cat")).unwrap();
        std::fs::write(d.join("data/t.csv"), "a\n").unwrap();
        assert_eq!(
            overlap(&d.join("data"), &d.join("data/t.csv")),
            Some(Overlap::Contains)
        );
        assert_eq!(
            overlap(&d.join("data/images"), &d.join("data/images")),
            Some(Overlap::Equal)
        );
        assert_eq!(
            overlap(&d.join("data/images/new/run"), &d.join("data/images")),
            Some(Overlap::Inside)
        );
        assert_eq!(
            overlap(&d.join("data/t.csv"), &d.join("data/t.csv")),
            Some(Overlap::Equal)
        );
        assert_eq!(overlap(&d.join("out"), &d.join("data")), None);
        // A sibling whose name starts the same is not inside.
        assert_eq!(overlap(&d.join("data2"), &d.join("data")), None);
        // `..` in a part that does not exist yet.
        assert_eq!(
            overlap(&d.join("new/../data"), &d.join("data/t.csv")),
            Some(Overlap::Contains)
        );
    }

    #[test]
    fn follows_symlinks_also_dangling_ones() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("images/cat")).unwrap();
        std::os::unix::fs::symlink(d.join("images"), d.join("link")).unwrap();
        assert_eq!(
            overlap(&d.join("link"), &d.join("images")),
            Some(Overlap::Equal)
        );
        assert_eq!(
            overlap(&d.join("link/new"), &d.join("images")),
            Some(Overlap::Inside)
        );
        std::os::unix::fs::symlink(d.join("images/not-yet"), d.join("dangling")).unwrap();
        assert_eq!(
            overlap(&d.join("dangling"), &d.join("images")),
            Some(Overlap::Inside)
        );
    }

    #[test]
    fn refuses_a_file_for_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        assert!(matches!(
            check(&f, OutputKind::Folder, &[]),
            Err(OutputError::IsFile { .. })
        ));
        assert!(check(&f, OutputKind::File, &[]).is_ok());
        assert!(matches!(
            check(&f.join("out"), OutputKind::Folder, &[]),
            Err(OutputError::ThroughFile { .. })
        ));
    }

    #[test]
    fn message_names_both_paths() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("t.csv"), "a\n").unwrap();
        let e = check(
            d,
            OutputKind::Folder,
            &[Input::new("data.tables.t", d.join("t.csv"))],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(&d.display().to_string())
                && e.contains("t.csv")
                && e.contains("data.tables.t")
                && e.contains("contains"),
            "{e}"
        );
    }

    #[test]
    fn mark_writes_the_marker_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a/b");
        mark(&out).unwrap();
        assert!(is_output_folder(&out));
        mark(&out).unwrap();
        assert!(!is_output_folder(dir.path()));
    }
}
