//! Reading run files: size and encoding checks, typed parsing with located errors, a key-path
//! index for errors found after parsing, and did-you-mean hints.
//!
//! Every error names the file, the line and column, the key path (`augment.ops[2].rotate.p`),
//! what was found and what is allowed. Hostile input is refused early: files over
//! [`MAX_RUN_FILE_BYTES`], invalid UTF-8, alias bombs and deep nesting (parser budgets).

use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest run file accepted. Real run files are a few KiB; this refuses generated or hostile
/// files before any parsing.
pub const MAX_RUN_FILE_BYTES: u64 = 1 << 20;

/// Nesting deeper than this is refused (real run files nest about 6 levels).
pub const MAX_DEPTH: usize = 64;

/// A run file's text and where it came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file as given on the command line.
    pub path: PathBuf,
    /// Its text (valid UTF-8).
    pub text: String,
}

/// An error in a run file, located as precisely as possible.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// Key path (`augment.ops[2].rotate.p`), empty for the whole document.
    pub key_path: String,
    /// What is wrong and what is allowed.
    pub message: String,
    /// A did-you-mean or other hint.
    pub hint: Option<String>,
    /// The offending line(s) with a caret, when known.
    pub snippet: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((l, c)) = self.position {
            write!(f, ":{l}:{c}")?;
        }
        write!(f, ": ")?;
        if !self.key_path.is_empty() {
            write!(f, "at `{}`: ", self.key_path)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        if let Some(s) = &self.snippet {
            write!(f, "\n{s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Several config errors (validation reports all problems at once).
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        if n > 1 {
            writeln!(f, "{n} problems in the run file:")?;
        }
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Source {
    /// Reads a run file, refusing files that are too large or not UTF-8.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file (and, for bad UTF-8, the line and column).
    pub fn read(path: &Path) -> Result<Source, ConfigError> {
        let whole = |message: String| ConfigError {
            file: path.to_path_buf(),
            position: None,
            key_path: String::new(),
            message,
            hint: None,
            snippet: None,
        };
        use whet_core::input::InputError;
        let bytes =
            whet_core::input::read_capped(path, "run files", MAX_RUN_FILE_BYTES).map_err(|e| {
                match e {
                    InputError::NotAFile {
                        what: "a folder", ..
                    } => whole("is a folder; expected a YAML run file".into()),
                    InputError::TooLarge { found, .. } => whole(format!(
                        "the run file {found}; run files are limited to {MAX_RUN_FILE_BYTES} bytes \
                     (1 MiB): data belongs in data files referenced by path, not in the run file"
                    )),
                    InputError::Io { source, .. } => {
                        whole(format!("cannot read the run file: {source}"))
                    }
                    other => whole(format!("the run file {}", other.reason())),
                }
            })?;
        Self::from_bytes(path, bytes)
    }

    /// Wraps bytes already in memory (checked like [`Source::read`]).
    ///
    /// # Errors
    /// Too large, or not UTF-8.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Source, ConfigError> {
        if bytes.len() as u64 > MAX_RUN_FILE_BYTES {
            return Err(ConfigError {
                file: path.to_path_buf(),
                position: None,
                key_path: String::new(),
                message: format!("the run file is {} bytes; the limit is 1 MiB", bytes.len()),
                hint: None,
                snippet: None,
            });
        }
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Source {
                path: path.to_path_buf(),
                text,
            }),
            Err(e) => {
                let good = e.utf8_error().valid_up_to();
                let bytes = e.as_bytes();
                let line = 1 + bytes[..good].iter().filter(|&&b| b == b'\n').count();
                let line_start = bytes[..good]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                let col = 1 + String::from_utf8_lossy(&bytes[line_start..good])
                    .chars()
                    .count();
                Err(ConfigError {
                    file: path.to_path_buf(),
                    position: Some((line, col)),
                    key_path: String::new(),
                    message: format!(
                        "the file is not valid UTF-8 (byte 0x{:02x} at offset {good}); save it as UTF-8",
                        bytes[good]
                    ),
                    hint: None,
                    snippet: None,
                })
            }
        }
    }

    /// The 1-based `line` with a caret under 1-based `col`, and the line before it.
    pub fn snippet(&self, line: usize, col: usize) -> Option<String> {
        let lines: Vec<&str> = self.text.lines().collect();
        let text = lines.get(line.checked_sub(1)?)?;
        let width = line.to_string().len();
        let mut out = String::new();
        if line >= 2
            && let Some(prev) = lines.get(line - 2)
        {
            out.push_str(&format!("{:>width$} | {}\n", line - 1, prev));
        }
        out.push_str(&format!("{line:>width$} | {text}\n"));
        let pad: String = text
            .chars()
            .take(col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!("{:>width$} | {pad}^", ""));
        Some(out)
    }

    /// A located error at `key_path`, positioned with `index` (exact key, or the nearest
    /// enclosing one that exists in the file).
    pub fn error_at(&self, index: &PathIndex, key_path: &str, message: String) -> ConfigError {
        let position = index.lookup(key_path);
        ConfigError {
            file: self.path.clone(),
            position,
            key_path: key_path.to_string(),
            hint: None,
            snippet: position.and_then(|(l, c)| self.snippet(l, c)),
            message,
        }
    }
}

fn parser_options() -> serde_saphyr::Options {
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = 20_000;
    alias_limits.max_replay_stack_depth = 16;
    alias_limits.max_alias_expansions_per_anchor = 100;
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_events: 200_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: MAX_DEPTH,
            max_documents: 1,
        },
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::Error,
        alias_limits: alias_limits,
        // YAML 1.2 booleans only: with the YAML 1.1 forms, a column named `y` or `n` stayed a
        // string in the typed parse but became `true`/`false` in the value tree that ablation
        // variants are built from, so every variant of such a run file failed to load.
        strict_booleans: true,
    }
}

/// Parses a run file into `T`, with the key path and position of the first error.
///
/// # Errors
/// The first syntax or type error, located and with a did-you-mean hint where it applies.
pub fn parse<T: DeserializeOwned>(src: &Source) -> Result<T, ConfigError> {
    let mut key_path = String::new();
    let result: Result<T, serde_saphyr::Error> =
        serde_saphyr::with_deserializer_from_str_with_options(&src.text, parser_options(), |de| {
            serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
                key_path = e.path().to_string();
                e.into_inner()
            })
        });
    result.map_err(|e| {
        let position = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize));
        if key_path == "." || key_path == "?" {
            key_path.clear();
        }
        let message = explain(
            clean_message(&e.without_snippet().to_string()),
            &key_path,
            &src.text,
        );
        ConfigError {
            file: src.path.clone(),
            position,
            hint: did_you_mean(&message),
            snippet: position.and_then(|(l, c)| src.snippet(l, c)),
            key_path,
            message,
        }
    })
}

/// Parses a run file into a generic value tree (used by ablation variants).
///
/// # Errors
/// Syntax errors, located.
pub fn parse_value(src: &Source) -> Result<serde_json::Value, ConfigError> {
    parse::<serde_json::Value>(src)
}

/// Strips serde-saphyr's own "line N column M:" prefix and snippet (we print our own).
fn clean_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw).trim();
    let first = first.strip_prefix("error:").unwrap_or(first).trim();
    let first = match first.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(rest, |(_, m)| m),
        None => first,
    };
    let mut first = first.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    // serde-saphyr appends " at line N, column M"; the position is shown separately.
    if let Some(i) = first.rfind(" at line ")
        && first[i + 9..]
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == ' ' || c.is_ascii_alphabetic())
    {
        first.truncate(i);
    }
    if first.starts_with("duplicate mapping key") {
        return format!("{first} (each key may appear once in a mapping)");
    }
    first
}

/// The parser's messages that describe its state rather than the file, said in the user's
/// terms with the fix: a second YAML document, an empty file, a plain value where a mapping
/// belongs.
fn explain(message: String, key_path: &str, text: &str) -> String {
    const NEEDS: &str = "a run file is a mapping with at least `name`, `data`, `model` and \
                         `train` (see `whet schema --markdown` or docs/reference.md)";
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if message.contains("budget breached: Documents") {
        "the file holds more than one YAML document (a `---` line after content starts a new \
         one): a run file is one document; remove the `---`, or put each run in its own file"
            .into()
    } else if key_path.is_empty() && blank {
        format!("the run file is empty: {NEEDS}")
    } else if message == "expected mapping start" {
        if key_path.is_empty() {
            format!("the run file is a single value, not a mapping of keys: {NEEDS}")
        } else {
            "expected a mapping here (indented `key: value` lines), found a single value".into()
        }
    } else if message == "expected sequence start" {
        "expected a list here (`- item` lines or `[a, b]`), found a single value".into()
    } else {
        message
    }
}

/// For "unknown field `x`, expected one of a, b" and "unknown variant …" messages: the closest
/// allowed name, if one is close enough to be a likely typo.
pub fn did_you_mean(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (found, rest) = rest.split_once('`')?;
    let list = rest.split_once("expected").map(|(_, l)| l)?;
    let list = list.trim().trim_start_matches("one of").trim();
    let candidates: Vec<String> = list
        .split([',', ' '])
        .map(|s| s.trim_matches(|c: char| c == '`' || c == '.' || c.is_whitespace()))
        .filter(|s| !s.is_empty() && *s != "or")
        .map(str::to_string)
        .collect();
    whet_core::spec::closest(found, candidates.iter().map(String::as_str))
        .map(|c| format!("did you mean `{c}`?"))
}

/// Positions of every key and list item in a YAML document, by key path.
#[derive(Debug, Default, Clone)]
pub struct PathIndex {
    positions: HashMap<String, (usize, usize)>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

impl PathIndex {
    /// Indexes `text`. A document that fails to parse gives a partial index (parse errors are
    /// reported by [`parse`] first, so this only serves valid documents).
    pub fn build(text: &str) -> PathIndex {
        use serde_saphyr::granit_parser::{Event, Parser};
        let mut index = PathIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        let mut events = 0usize;
        // Path of the node that starts now, registering its position; advances the parent.
        fn node_path(
            stack: &mut [Frame],
            index: &mut PathIndex,
            pos: (usize, usize),
        ) -> Option<String> {
            match stack.last_mut() {
                None => Some(String::new()),
                Some(Frame::Seq { path, next }) => {
                    let p = format!("{path}[{next}]");
                    *next += 1;
                    index.positions.entry(p.clone()).or_insert(pos);
                    Some(p)
                }
                Some(Frame::Map { path, key }) => {
                    let k = key.take()?;
                    Some(if path.is_empty() {
                        k
                    } else {
                        format!("{path}.{k}")
                    })
                }
            }
        }
        while let Some(Ok((event, span))) = parser.next_event() {
            events += 1;
            if events > 200_000 || stack.len() > MAX_DEPTH {
                break;
            }
            let pos = (span.start.line(), span.start.col() + 1);
            match event {
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map { path, key }) = stack.last_mut()
                        && key.is_none()
                    {
                        let k = value.to_string();
                        let full = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        index.positions.entry(full).or_insert(pos);
                        *key = Some(k);
                        continue;
                    }
                    node_path(&mut stack, &mut index, pos);
                }
                Event::Alias(..) => {
                    node_path(&mut stack, &mut index, pos);
                }
                Event::MappingStart(..) => {
                    let path = node_path(&mut stack, &mut index, pos).unwrap_or_default();
                    stack.push(Frame::Map { path, key: None });
                }
                Event::SequenceStart(..) => {
                    let path = node_path(&mut stack, &mut index, pos).unwrap_or_default();
                    stack.push(Frame::Seq { path, next: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        index
    }

    /// Whether `key_path` itself (not only an enclosing key) is in the document.
    pub fn contains(&self, key_path: &str) -> bool {
        key_path.is_empty() || self.positions.contains_key(key_path)
    }

    /// The position of `key_path`, or of its nearest enclosing key that is in the file
    /// (a missing field is reported where its parent is).
    pub fn lookup(&self, key_path: &str) -> Option<(usize, usize)> {
        let mut p = key_path.to_string();
        loop {
            if let Some(&pos) = self.positions.get(&p) {
                return Some(pos);
            }
            let cut = p.rfind(['.', '['])?;
            p.truncate(cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        #[serde(default)]
        ops: Vec<Op>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[allow(dead_code)]
    enum Op {
        Rotate(Rot),
        Hflip(Rot),
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Rot {
        #[serde(default)]
        degrees: f64,
        #[serde(default = "one")]
        p: whet_core::Probability,
    }
    fn one() -> whet_core::Probability {
        whet_core::Probability::ONE
    }

    fn src(text: &str) -> Source {
        Source {
            path: "run.yaml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn locates_range_errors_with_key_path() {
        let e =
            parse::<Doc>(&src("name: a\nops:\n  - rotate: { degrees: 3, p: 1.5 }\n")).unwrap_err();
        assert_eq!(e.key_path, "ops[0].rotate.p");
        assert_eq!(e.position, Some((3, 30)));
        assert!(e.message.contains("[0, 1]"), "{}", e.message);
        assert!(
            e.to_string()
                .starts_with("run.yaml:3:30: at `ops[0].rotate.p`"),
            "{e}"
        );
    }

    #[test]
    fn suggests_field_and_op_names() {
        let e = parse::<Doc>(&src("name: a\nops:\n  - rotate: { degres: 3 }\n")).unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `degrees`?"), "{e}");
        let e = parse::<Doc>(&src("name: a\nops:\n  - rotat: {}\n")).unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `rotate`?"), "{e}");
        assert_eq!(e.position, Some((3, 5)));
        let e = parse::<Doc>(&src("name: a\nops:\n  - rotate: { degreesx: 3 }\n")).unwrap_err();
        assert!(!e.message.contains(" at line"), "{}", e.message);
        assert_eq!(e.hint.as_deref(), Some("did you mean `degrees`?"), "{e}");
        let e = parse::<Doc>(&src("nmae: a\n")).unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `name`?"));
        // Nothing close: no hint.
        let e = parse::<Doc>(&src("name: a\nzzzzzzzz: 1\n")).unwrap_err();
        assert_eq!(e.hint, None);
    }

    #[test]
    fn refuses_duplicates_and_alias_bombs() {
        let e = parse::<Doc>(&src("name: a\nname: b\n")).unwrap_err();
        assert!(e.message.contains("duplicate"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(2));
        let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
        for (i, c) in ('b'..='k').enumerate() {
            let prev = (b'a' + i as u8) as char;
            bomb.push_str(&format!("{c}: &{c} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        let t = std::time::Instant::now();
        let e = parse::<serde_json::Value>(&src(&bomb)).unwrap_err();
        assert!(t.elapsed().as_secs() < 5);
        assert!(
            e.message.to_lowercase().contains("alias") || e.message.contains("budget"),
            "{e}"
        );
    }

    #[test]
    fn refuses_deep_nesting() {
        let deep = format!("name: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse::<serde_json::Value>(&src(&deep)).is_err());
    }

    #[test]
    fn invalid_utf8_is_located() {
        let e =
            Source::from_bytes(Path::new("x.yaml"), b"name: a\nops: \xff\n".to_vec()).unwrap_err();
        assert_eq!(e.position, Some((2, 6)));
        assert!(e.message.contains("UTF-8"));
    }

    #[test]
    fn index_finds_keys_and_items() {
        let text =
            "name: a\naugment:\n  ops:\n    - rotate: { degrees: 12, p: 0.7 }\n    - hflip: {}\n";
        let idx = PathIndex::build(text);
        assert_eq!(idx.lookup("augment"), Some((2, 1)));
        assert_eq!(idx.lookup("augment.ops[1]"), Some((5, 7)));
        assert_eq!(idx.lookup("augment.ops[0].rotate.p"), Some((4, 30)));
        // Missing keys fall back to the nearest parent.
        assert_eq!(idx.lookup("augment.ops[1].hflip.p"), Some((5, 7)));
        assert_eq!(idx.lookup("model.hidden"), None);
    }
}
