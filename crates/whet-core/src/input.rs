//! Opening input files: the one way whet reads a file it did not write.
//!
//! Only regular files are read, and named pipes (FIFOs), whose size is unknown, with a byte
//! cap. A folder, a character device (`/dev/zero`, `/dev/urandom`, a terminal), a block device
//! or a socket is refused before it is opened, with an error naming the path and what it is.
//! Every read is capped: a regular file larger than the cap is refused from its size, before
//! any byte is read, and a pipe that goes on past the cap fails when it gets there. So no input
//! can hang whet or grow a buffer until memory runs out.
//!
//! ```
//! # fn main() -> Result<(), whet_core::input::InputError> {
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("a.csv");
//! std::fs::write(&path, "x,y\n1,2\n").unwrap();
//! assert_eq!(whet_core::input::read_capped(&path, "tables", 1024)?, b"x,y\n1,2\n");
//! let err = whet_core::input::read_capped(std::path::Path::new("/dev/zero"), "tables", 1024)
//!     .unwrap_err();
//! assert!(err.to_string().contains("character device"));
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Why an input file cannot be read. Its text is "`PATH` REASON" ([`InputError::reason`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum InputError {
    /// The path is not a regular file (nor a named pipe).
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is (`a folder`, `a character device (such as /dev/zero)`…).
        what: &'static str,
        /// Extra advice for this kind (empty or starting with `; `).
        hint: &'static str,
    },
    /// A named pipe given where whet reads the file more than once.
    Pipe {
        /// The path.
        path: PathBuf,
        /// Why the file is read more than once.
        why: &'static str,
    },
    /// A regular file larger than the cap, or a pipe that went on past it.
    TooLarge {
        /// The path.
        path: PathBuf,
        /// What kind of input this is (`tables`, `checkpoints`…), plural.
        what: &'static str,
        /// `is 5 GiB (…)` (a regular file) or `gave more than 4 GiB` (a pipe).
        found: String,
        /// The cap in bytes.
        cap: u64,
    },
    /// The path cannot be inspected or read (missing, no permission, I/O error).
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.path().display(), self.reason())
    }
}

impl std::error::Error for InputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InputError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl InputError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            InputError::NotAFile { path, .. }
            | InputError::Pipe { path, .. }
            | InputError::TooLarge { path, .. }
            | InputError::Io { path, .. } => path,
        }
    }

    /// What is wrong, without the path (for messages that name the file already): `is a
    /// folder, not a regular file: …`.
    pub fn reason(&self) -> String {
        match self {
            InputError::NotAFile { what, hint, .. } => {
                format!("is {what}, not a regular file: give the path of a file{hint}")
            }
            InputError::Pipe { why, .. } => format!(
                "is a named pipe, but {why}: write the data to a regular file and give its path"
            ),
            InputError::TooLarge {
                what, found, cap, ..
            } => format!(
                "{found}; {what} are read up to {} ({cap} bytes)",
                human_bytes(*cap)
            ),
            InputError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => "does not exist".to_string(),
                _ => format!("cannot be read: {source}"),
            },
        }
    }

    /// Refuses a named pipe for an input that is read more than once (`why`), passing every
    /// other kind through.
    ///
    /// # Errors
    /// [`InputError::Pipe`] for a pipe.
    pub fn no_pipe(path: &Path, kind: InputKind, why: &'static str) -> Result<u64, InputError> {
        match kind {
            InputKind::Regular(len) => Ok(len),
            InputKind::Fifo => Err(InputError::Pipe {
                path: path.to_path_buf(),
                why,
            }),
        }
    }

    /// This error as an [`std::io::Error`] (for readers that only carry I/O errors); its text
    /// is this error's text, and [`InputError::from_io`] gets it back.
    pub fn into_io(self) -> std::io::Error {
        match self {
            InputError::Io { source, .. } => source,
            other => std::io::Error::other(other),
        }
    }

    /// The [`InputError`] inside an I/O error made by [`InputError::into_io`] or returned by a
    /// [`CappedReader`]; any other I/O error is given back.
    ///
    /// # Errors
    /// The I/O error, when it does not hold an [`InputError`].
    pub fn from_io(e: std::io::Error) -> Result<InputError, std::io::Error> {
        if e.get_ref().is_some_and(|inner| inner.is::<InputError>()) {
            let inner = e.into_inner().expect("checked above");
            Ok(*inner.downcast::<InputError>().expect("checked above"))
        } else {
            Err(e)
        }
    }
}

/// `1.5 GiB`, `12 MiB`, `300 bytes`: a byte count for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// What kind of input a path is, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A regular file of this many bytes.
    Regular(u64),
    /// A named pipe: its size is unknown until it ends.
    Fifo,
}

fn describe(t: std::fs::FileType) -> Option<(&'static str, &'static str)> {
    if t.is_dir() {
        Some(("a folder", ""))
    } else if t.is_char_device() {
        Some((
            "a character device (such as /dev/zero, /dev/urandom or a terminal)",
            "; devices never end, so whet does not read them",
        ))
    } else if t.is_block_device() {
        Some(("a block device", "; copy the data into a file first"))
    } else if t.is_socket() {
        Some(("a socket", ""))
    } else if t.is_file() || t.is_fifo() {
        None
    } else {
        Some(("not a file whet can read", ""))
    }
}

fn kind_of(path: &Path, meta: &std::fs::Metadata) -> Result<InputKind, InputError> {
    let t = meta.file_type();
    if let Some((what, hint)) = describe(t) {
        return Err(InputError::NotAFile {
            path: path.to_path_buf(),
            what,
            hint,
        });
    }
    Ok(if t.is_fifo() {
        InputKind::Fifo
    } else {
        InputKind::Regular(meta.len())
    })
}

/// Checks that `path` (symbolic links followed) is a regular file or a named pipe, without
/// opening it.
///
/// # Errors
/// [`InputError::NotAFile`] for a folder, device or socket; [`InputError::Io`] when the path
/// cannot be inspected (it does not exist, no permission).
pub fn check_input(path: &Path) -> Result<InputKind, InputError> {
    let meta = std::fs::metadata(path).map_err(|source| InputError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    kind_of(path, &meta)
}

/// An open input file whose reads stop with an error past a cap.
#[derive(Debug)]
pub struct CappedReader {
    file: File,
    path: PathBuf,
    what: &'static str,
    kind: InputKind,
    cap: u64,
    read: u64,
}

impl CappedReader {
    /// What the file is: a regular file (with its size) or a pipe.
    pub fn kind(&self) -> InputKind {
        self.kind
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file (a regular file's length is within the cap; reading it through this
    /// handle is not capped).
    pub fn into_file(self) -> File {
        self.file
    }

    fn too_large(&self) -> InputError {
        InputError::TooLarge {
            path: self.path.clone(),
            what: self.what,
            found: format!("gave more than {}", human_bytes(self.cap)),
            cap: self.cap,
        }
    }
}

impl Read for CappedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Read one byte past the cap at most, to tell "exactly the cap" from "more".
        let room = (self.cap - self.read.min(self.cap)).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.cap {
            return Err(self.too_large().into_io());
        }
        Ok(n)
    }
}

impl Seek for CappedReader {
    /// Seeking works on regular files (a pipe cannot seek); the cap counts bytes read, so
    /// seeking back and reading again counts them again.
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

/// Opens `path` for reading after [`check_input`], with reads capped at `cap` bytes; `what`
/// names the kind of input in the error (`tables`, `checkpoints`, plural). A regular file
/// larger than `cap` is refused here, from its size.
///
/// # Errors
/// [`InputError::NotAFile`], [`InputError::TooLarge`] or [`InputError::Io`].
pub fn open_input(path: &Path, what: &'static str, cap: u64) -> Result<CappedReader, InputError> {
    let io = |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Refuse devices and folders before opening them: opening a device can have effects.
    check_input(path)?;
    let file = File::open(path).map_err(io)?;
    // Check again on the open file, in case the path changed in between.
    let kind = kind_of(path, &file.metadata().map_err(io)?)?;
    if let InputKind::Regular(len) = kind
        && len > cap
    {
        return Err(InputError::TooLarge {
            path: path.to_path_buf(),
            what,
            found: format!("is {} ({len} bytes)", human_bytes(len)),
            cap,
        });
    }
    Ok(CappedReader {
        file,
        path: path.to_path_buf(),
        what,
        kind,
        cap,
        read: 0,
    })
}

/// Reads the whole of `path` (a regular file or a pipe) into memory, refusing more than `cap`
/// bytes; `what` names the kind of input in the error (plural).
///
/// # Errors
/// [`InputError::NotAFile`], [`InputError::TooLarge`] or [`InputError::Io`].
pub fn read_capped(path: &Path, what: &'static str, cap: u64) -> Result<Vec<u8>, InputError> {
    let mut r = open_input(path, what, cap)?;
    let mut out = match r.kind {
        InputKind::Regular(len) => Vec::with_capacity(usize::try_from(len).unwrap_or(0)),
        InputKind::Fifo => Vec::new(),
    };
    r.read_to_end(&mut out)
        .map_err(|e| match InputError::from_io(e) {
            Ok(e) => e,
            Err(source) => InputError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_regular_file_is_read_whole_within_its_cap() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"abcd").unwrap();
        assert_eq!(read_capped(&p, "tests", 4).unwrap(), b"abcd");
        assert_eq!(check_input(&p).unwrap(), InputKind::Regular(4));
    }

    #[test]
    fn a_regular_file_over_its_cap_is_refused_from_its_size() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, vec![0u8; 3000]).unwrap();
        let e = read_capped(&p, "tests", 2048).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, InputError::TooLarge { .. }), "{text}");
        assert!(text.contains("is 2.9 KiB (3000 bytes)"), "{text}");
        assert!(
            text.contains("tests are read up to 2 KiB (2048 bytes)"),
            "{text}"
        );
    }

    #[test]
    fn devices_folders_and_sockets_are_refused_by_name() {
        for (p, what) in [
            ("/dev/zero", "character device"),
            ("/dev/urandom", "character device"),
            ("/dev/null", "character device"),
            ("/", "a folder"),
        ] {
            let e = read_capped(Path::new(p), "tests", 1 << 20).unwrap_err();
            assert!(matches!(e, InputError::NotAFile { .. }), "{p}: {e}");
            assert!(e.to_string().contains(what), "{p}: {e}");
            assert!(e.to_string().contains(&format!("`{p}`")), "{p}: {e}");
        }
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("s");
        let _l = UnixListener::bind(&sock).unwrap();
        let e = check_input(&sock).unwrap_err();
        assert!(e.to_string().contains("a socket"), "{e}");
    }

    #[test]
    fn a_symlink_to_a_device_is_refused_as_the_device() {
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("data.csv");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = open_input(&link, "tables", 1 << 20).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        assert!(e.to_string().contains("data.csv"), "{e}");
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let e = read_capped(Path::new("/no/such/file.csv"), "tables", 10).unwrap_err();
        assert!(matches!(e, InputError::Io { .. }));
        assert!(e.to_string().contains("/no/such/file.csv"), "{e}");
    }

    #[test]
    fn a_pipe_is_read_up_to_its_cap_and_refused_past_it() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("p");
        // std has no mkfifo without libc; the mkfifo program is part of coreutils.
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            panic!("mkfifo is needed for this test");
        }
        assert_eq!(check_input(&fifo).unwrap(), InputKind::Fifo);
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                // Stops when the reader goes away (broken pipe).
                for _ in 0..64 {
                    if f.write_all(&[7u8; 1024]).is_err() {
                        break;
                    }
                }
            })
        };
        let e = read_capped(&fifo, "tests", 10_000).unwrap_err();
        writer.join().unwrap();
        let text = e.to_string();
        assert!(text.contains("gave more than 9.8 KiB"), "{text}");

        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                f.write_all(b"small").unwrap();
            })
        };
        assert_eq!(read_capped(&fifo, "tests", 10_000).unwrap(), b"small");
        writer.join().unwrap();
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(human_bytes(12), "12 bytes");
        assert_eq!(human_bytes(1024), "1 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(16 << 30), "16 GiB");
    }
}
