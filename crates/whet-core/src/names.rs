//! Names that become path components: the one check every user- or data-derived name goes
//! through before it is joined onto a path ([`check_component`], [`join`]), and the reversible
//! encoding of names that cannot be written as they are ([`encode_component`],
//! [`decode_component`]).
//!
//! A valid name ([`check_component`]) is 1 to [`MAX_NAME_BYTES`] bytes of UTF-8, is not `.` or
//! `..`, and holds no `/`, no `\` and no control character (U+0000 to U+001F, U+007F: NUL,
//! newline, carriage return, tab…). Such a name is one folder or file name on every Unix file
//! system and cannot climb out of the folder it is joined to.
//!
//! Names that come from data (image class names) are not refused but encoded: `%`, `/`, `\`,
//! control characters and a leading `.` are written as `%XX` (upper-case hex of the byte), and
//! the empty name as `%`. The encoding is injective, so two distinct names never share a folder,
//! and [`decode_component`] gives the name back.

use std::path::{Path, PathBuf};

/// The longest valid name, in bytes (file systems allow 255; the rest leaves room for suffixes
/// such as `.tmp`).
pub const MAX_NAME_BYTES: usize = 200;

/// The longest encoded name, in bytes: the file-system limit on one path component (`NAME_MAX`).
pub const MAX_ENCODED_BYTES: usize = 255;

/// What a valid name is, for error messages.
pub const VALID_NAME: &str = "a name is 1 to 200 bytes, not `.` or `..`, without `/`, `\\` or control characters (letters, digits, `-`, `_`, `=`, `.` and spaces are fine)";

/// Why a name cannot be a path component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// The name is `.` or `..`, which name a folder itself or its parent.
    #[error("`{0}` names a folder itself or its parent, not a new folder")]
    Dots(String),
    /// The name holds a path separator.
    #[error("`{name}` holds the path separator `{separator}`")]
    Separator {
        /// The name (control characters escaped).
        name: String,
        /// The separator found.
        separator: char,
    },
    /// The name holds a control character.
    #[error("`{name}` holds the control character U+{code:04X}")]
    Control {
        /// The name (control characters escaped).
        name: String,
        /// The first control character's code point.
        code: u32,
    },
    /// The name (or its encoding) is longer than a path component may be.
    #[error("`{name}` is {bytes} bytes long; the limit is {limit} bytes")]
    TooLong {
        /// The start of the name (control characters escaped).
        name: String,
        /// Its length in bytes.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}

/// The name as shown in messages: control characters escaped, cut after 60 characters.
fn shown(name: &str) -> String {
    let mut s: String = name.chars().take(60).collect();
    if s.len() < name.len() {
        s.push('…');
    }
    s.escape_debug().to_string()
}

fn is_control(c: char) -> bool {
    (c as u32) < 0x20 || c as u32 == 0x7f
}

/// Checks that `name` can be one path component (see the module docs for the rules).
///
/// # Errors
/// The first rule `name` breaks.
pub fn check_component(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(NameError::Dots(name.to_string()));
    }
    if let Some(separator) = name.chars().find(|c| matches!(c, '/' | '\\')) {
        return Err(NameError::Separator {
            name: shown(name),
            separator,
        });
    }
    if let Some(c) = name.chars().find(|&c| is_control(c)) {
        return Err(NameError::Control {
            name: shown(name),
            code: c as u32,
        });
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong {
            name: shown(name),
            bytes: name.len(),
            limit: MAX_NAME_BYTES,
        });
    }
    Ok(())
}

/// `base/name`, after [`check_component`]: the one way a name joins a path, so a bad name can
/// never climb out of `base`.
///
/// # Errors
/// As [`check_component`].
pub fn join(base: &Path, name: &str) -> Result<PathBuf, NameError> {
    check_component(name)?;
    Ok(base.join(name))
}

/// Whether byte `b` at `index` is written as `%XX`.
fn escaped(b: u8, index: usize) -> bool {
    matches!(b, b'%' | b'/' | b'\\') || b < 0x20 || b == 0x7f || (index == 0 && b == b'.')
}

/// Encodes `name` as a path component that [`decode_component`] turns back into `name`:
/// `%`, `/`, `\`, control characters and a leading `.` become `%XX`, the empty name `%`; every
/// other character is kept. Distinct names give distinct encodings.
///
/// # Errors
/// [`NameError::TooLong`] when the encoding is over [`MAX_ENCODED_BYTES`].
pub fn encode_component(name: &str) -> Result<String, NameError> {
    if name.is_empty() {
        return Ok("%".into());
    }
    let mut out = String::with_capacity(name.len());
    for (i, c) in name.char_indices() {
        if c.is_ascii() && escaped(c as u8, i) {
            out.push_str(&format!("%{:02X}", c as u8));
        } else {
            out.push(c);
        }
    }
    if out.len() > MAX_ENCODED_BYTES {
        return Err(NameError::TooLong {
            name: shown(name),
            bytes: out.len(),
            limit: MAX_ENCODED_BYTES,
        });
    }
    Ok(out)
}

/// The name `component` encodes, when it is exactly what [`encode_component`] writes for some
/// name; `None` otherwise (a folder someone else named, such as `50%` or `.git`, which is then
/// best taken as it is).
pub fn decode_component(component: &str) -> Option<String> {
    if component == "%" {
        return Some(String::new());
    }
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(out).ok()?;
    (encode_component(&name).ok()? == component).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn check_refuses_each_rule() {
        assert_eq!(check_component(""), Err(NameError::Empty));
        assert!(matches!(check_component("."), Err(NameError::Dots(_))));
        assert!(matches!(check_component(".."), Err(NameError::Dots(_))));
        for bad in ["../../../x", "/abs/path", "a\\b", "x/"] {
            assert!(
                matches!(check_component(bad), Err(NameError::Separator { .. })),
                "{bad}"
            );
        }
        for bad in ["a\0b", "a\nb", "a\rb", "tab\there", "del\u{7f}"] {
            assert!(
                matches!(check_component(bad), Err(NameError::Control { .. })),
                "{bad:?}"
            );
        }
        let long = "a".repeat(201);
        assert!(matches!(
            check_component(&long),
            Err(NameError::TooLong { bytes: 201, .. })
        ));
        // 200 bytes of two-byte characters: valid; one more byte: not.
        assert!(check_component(&"é".repeat(100)).is_ok());
        assert!(check_component(&format!("{}x", "é".repeat(100))).is_err());
        for ok in [
            "baseline",
            "lr=0.01",
            "no-elastic",
            "...",
            ".hidden",
            "a b",
            "ü",
        ] {
            assert!(check_component(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn messages_escape_control_characters() {
        let e = check_component("a\nb").unwrap_err().to_string();
        assert!(e.contains("a\\nb") && e.contains("U+000A"), "{e}");
        let e = check_component(&"x".repeat(300)).unwrap_err().to_string();
        assert!(e.contains("300 bytes") && e.contains("200"), "{e}");
    }

    #[test]
    fn join_refuses_what_check_refuses() {
        let base = Path::new("/out/runs");
        assert_eq!(join(base, "a").unwrap(), Path::new("/out/runs/a"));
        assert!(join(base, "..").is_err());
        assert!(join(base, "/etc").is_err());
    }

    #[test]
    fn encoding_examples() {
        let enc = |s: &str| encode_component(s).unwrap();
        assert_eq!(enc("x\\y"), "x%5Cy");
        assert_eq!(enc("x%5Cy"), "x%255Cy");
        assert_eq!(enc("1"), "1");
        assert_eq!(enc(""), "%");
        assert_eq!(enc("."), "%2E");
        assert_eq!(enc(".."), "%2E.");
        assert_eq!(enc("a/b"), "a%2Fb");
        assert_eq!(enc("a\nb"), "a%0Ab");
        assert_eq!(enc("ü.x"), "ü.x");
        assert_eq!(decode_component("x%5Cy").as_deref(), Some("x\\y"));
        assert_eq!(decode_component("%").as_deref(), Some(""));
        // Not what the encoder writes: taken as they are by the caller.
        for other in ["50%", "a%2fb", ".git", "%2", "%G1", "a%41"] {
            assert_eq!(decode_component(other), None, "{other}");
        }
        assert!(encode_component(&"%".repeat(86)).is_err());
    }

    proptest! {
        #[test]
        fn encode_round_trips_and_is_a_component(name in "\\PC{0,40}|[%./\\\\\\x00-\\x1f\\x7fa]{0,40}") {
            let e = encode_component(&name).unwrap();
            prop_assert_eq!(decode_component(&e), Some(name.clone()));
            prop_assert!(!e.is_empty() && e != "." && e != "..");
            prop_assert!(!e.contains(['/', '\\']) && !e.chars().any(is_control));
            prop_assert!(!e.starts_with('.'));
        }

        #[test]
        fn encode_is_injective(
            a in "[%./\\\\\\na-c5CE]{0,8}",
            b in "[%./\\\\\\na-c5CE]{0,8}",
        ) {
            let (ea, eb) = (encode_component(&a).unwrap(), encode_component(&b).unwrap());
            prop_assert_eq!(a == b, ea == eb);
        }
    }
}
