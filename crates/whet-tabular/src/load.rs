//! Loading tables: CSV, gzip-compressed CSV and Parquet, with schema inference, per-column type
//! overrides, configurable missing markers, a row limit, and located errors for malformed rows.
//!
//! polars parses the file; when it fails, the bytes are scanned once more with the same schema to
//! find the first offending line and field (polars' own message carries no line number). With
//! `skip_bad_rows: true` every offending line is removed and counted instead.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub(crate) mod csvchunks;

/// A column type that can be forced on a CSV column instead of the inferred one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// Boolean (`true`/`false`).
    Bool,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// Text.
    Str,
    /// A calendar date (`2013-01-01`).
    Date,
    /// A date and time (`2013-01-01T10:00:00`), microseconds.
    Datetime,
}

impl ColumnType {
    /// The polars type.
    pub fn dtype(self) -> DataType {
        match self {
            ColumnType::Bool => DataType::Boolean,
            ColumnType::I32 => DataType::Int32,
            ColumnType::I64 => DataType::Int64,
            ColumnType::F32 => DataType::Float32,
            ColumnType::F64 => DataType::Float64,
            ColumnType::Str => DataType::String,
            ColumnType::Date => DataType::Date,
            ColumnType::Datetime => DataType::Datetime(TimeUnit::Microseconds, None),
        }
    }
}

/// The file format of a table; by default taken from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    /// Comma-separated text (optionally gzip-compressed when the name ends in `.gz`).
    Csv,
    /// Gzip-compressed CSV.
    CsvGz,
    /// Apache Parquet.
    Parquet,
}

impl TableFormat {
    /// The format implied by a file name, if any.
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".csv.gz") || name.ends_with(".tsv.gz") {
            Some(Self::CsvGz)
        } else if name.ends_with(".csv") || name.ends_with(".tsv") || name.ends_with(".txt") {
            Some(Self::Csv)
        } else if name.ends_with(".parquet") || name.ends_with(".pq") {
            Some(Self::Parquet)
        } else {
            None
        }
    }
}

fn default_missing() -> Vec<String> {
    vec!["NA".into(), String::new()]
}
/// Most rows `infer_rows` may ask for (the rows are read into memory to infer the types).
pub const MAX_INFER_ROWS: usize = 1_000_000;

fn default_infer_rows() -> usize {
    10_000
}
fn default_true() -> bool {
    true
}

/// Reads a one-character CSV setting: one printable ASCII character or a tab, written as
/// itself or, for a tab, also as the two characters `\t` (what a single-quoted YAML string
/// gives).
fn csv_char(text: &str, what: &str) -> std::result::Result<u8, String> {
    let b = match text {
        "\\t" => b'\t',
        t if t.len() == 1 => t.as_bytes()[0],
        _ => {
            return Err(format!(
                "{what} must be one character (like \",\", \";\", \"|\" or \"\\t\"), found {text:?}"
            ));
        }
    };
    if b == b'\t' || (b.is_ascii_graphic() || b == b' ') {
        Ok(b)
    } else {
        Err(format!(
            "{what} must be a printable ASCII character or a tab, found {text:?}"
        ))
    }
}

/// A CSV field delimiter: one ASCII character (`","` by default, `";"`, `"|"`, `"\t"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiter(u8);

impl Delimiter {
    /// The delimiter `c`.
    ///
    /// # Errors
    /// A message when `c` is not a printable ASCII character or a tab.
    pub fn new(c: char) -> std::result::Result<Self, String> {
        csv_char(c.encode_utf8(&mut [0; 4]), "the delimiter").map(Self)
    }

    /// The byte.
    pub fn byte(self) -> u8 {
        self.0
    }
}

impl Default for Delimiter {
    fn default() -> Self {
        Self(b',')
    }
}

/// The quote character of a CSV file: one ASCII character (`"\""` by default), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote(Option<u8>);

impl Quote {
    /// Quoting with `c`.
    ///
    /// # Errors
    /// A message when `c` is not a printable ASCII character.
    pub fn new(c: char) -> std::result::Result<Self, String> {
        csv_char(c.encode_utf8(&mut [0; 4]), "the quote").map(|b| Self(Some(b)))
    }

    /// No quoting: every `"` is text.
    pub fn none() -> Self {
        Self(None)
    }

    /// The byte, `None` for no quoting.
    pub fn byte(self) -> Option<u8> {
        self.0
    }
}

impl Default for Quote {
    fn default() -> Self {
        Self(Some(b'"'))
    }
}

impl Serialize for Delimiter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&(self.0 as char).to_string())
    }
}

impl<'de> Deserialize<'de> for Delimiter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        csv_char(&text, "the delimiter")
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Delimiter {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Delimiter".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "One ASCII character (`,`, `;`, `|`, a tab as `\\t`).",
            "type": "string",
            "minLength": 1,
            "maxLength": 2
        })
    }
}

impl Serialize for Quote {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Some(b) => s.serialize_str(&(b as char).to_string()),
            None => s.serialize_str("none"),
        }
    }
}

impl<'de> Deserialize<'de> for Quote {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "none" {
            return Ok(Self(None));
        }
        csv_char(&text, "the quote (or `none`)")
            .map(|b| Self(Some(b)))
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Quote {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quote".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "One ASCII character, or `none` for no quoting.",
            "type": "string",
            "minLength": 1
        })
    }
}

/// The text encoding of a CSV file; anything but UTF-8 is decoded to UTF-8 before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum TextEncoding {
    /// UTF-8 (ASCII included); the default.
    #[default]
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    /// ISO-8859-1: each byte is the character of that code point.
    #[serde(rename = "latin-1", alias = "latin1", alias = "iso-8859-1")]
    Latin1,
    /// Windows-1252 (Latin-1 with `€`, `‘`, `’`, `“`, `”`… in 0x80–0x9F), as encoding_rs
    /// decodes it (the WHATWG table).
    #[serde(rename = "windows-1252", alias = "cp1252")]
    Windows1252,
}

/// The delimiter and quote a CSV file is split with, for whet's own scans of the bytes (ragged
/// rows, open quotes, the offending field) which must split it as polars does.
#[derive(Debug, Clone, Copy)]
struct Dialect {
    sep: u8,
    quote: Option<u8>,
}

impl Dialect {
    #[cfg(test)]
    const COMMA: Dialect = Dialect {
        sep: b',',
        quote: Some(b'"'),
    };

    fn of(spec: &TableSpec) -> Self {
        Self {
            sep: spec.delimiter.0,
            quote: spec.quote.0,
        }
    }

    /// `s` without the quote characters around it.
    fn unquote(self, s: &str) -> &str {
        match self.quote {
            Some(q) => s.trim_matches(q as char),
            None => s,
        }
    }

    fn quote_char(self) -> char {
        self.quote.map_or('"', char::from)
    }
}

/// Decodes a Latin-1 or Windows-1252 file's bytes to UTF-8 (UTF-8 is returned as it is; its
/// check is [`read_csv_bytes`]'s). Decoding needs a second copy of the text, at most 2 (Latin-1)
/// or 3 (Windows-1252) bytes per byte, which is checked against the memory budget first.
fn decode_text(path: &Path, bytes: Vec<u8>, encoding: TextEncoding) -> Result<Vec<u8>> {
    if encoding == TextEncoding::Utf8 || bytes.is_ascii() {
        return Ok(bytes);
    }
    let per_byte: u64 = match encoding {
        TextEncoding::Latin1 => 2,
        _ => 3,
    };
    whet_core::budget::check(
        format!("`{}` decoded to UTF-8", path.display()),
        (bytes.len() as u64).saturating_mul(per_byte),
        "--max-memory",
    )?;
    Ok(match encoding {
        TextEncoding::Latin1 => {
            let mut out = vec![0u8; bytes.len() * 2];
            let n = encoding_rs::mem::convert_latin1_to_utf8(&bytes, &mut out);
            out.truncate(n);
            out
        }
        _ => encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(&bytes)
            .0
            .into_owned()
            .into_bytes(),
    })
}

/// How to load one table. In YAML either a path (`flights: data/flights.csv.gz`) or a map
/// (`flights: { path: ..., missing: [NA], types: { year: i32 }, limit: 50000 }`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// The file (`.csv`, `.csv.gz`, `.parquet`); relative paths are resolved against the YAML
    /// file's folder by the CLI.
    pub path: PathBuf,
    /// Format; default: from the file name.
    #[serde(default)]
    pub format: Option<TableFormat>,
    /// Field values read as missing (CSV only). Default `["NA", ""]`; `""` means empty fields.
    /// Also accepted as `null_values`.
    #[serde(default = "default_missing", alias = "null_values")]
    pub missing: Vec<String>,
    /// The field delimiter (CSV only): one ASCII character, e.g. `";"`, `"|"` or `"\t"`
    /// (tab). Default `","`.
    #[serde(default)]
    pub delimiter: Delimiter,
    /// The quote character (CSV only): one ASCII character, or `none` for a file whose fields
    /// are never quoted (a `"` is then text). Default `"\""`.
    #[serde(default)]
    pub quote: Quote,
    /// The text encoding (CSV only): `utf-8` (default), `latin-1` (ISO-8859-1) or
    /// `windows-1252`; other encodings are decoded to UTF-8 before parsing.
    #[serde(default)]
    pub encoding: TextEncoding,
    /// Per-column type overrides (CSV only), e.g. `{ year: i32 }`.
    #[serde(default)]
    pub types: BTreeMap<String, ColumnType>,
    /// Read only the first `limit` rows. Default: all.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Rows read to infer column types (CSV), 1 to 1,000,000. Default 10000.
    #[serde(default = "default_infer_rows")]
    pub infer_rows: usize,
    /// Parse ISO-8601 dates and datetimes into date/datetime columns (CSV). Default true.
    #[serde(default = "default_true")]
    pub parse_dates: bool,
    /// Skip malformed rows (and count them) instead of failing. Default false.
    #[serde(default)]
    pub skip_bad_rows: bool,
}

impl TableSpec {
    /// A spec with every option at its default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            format: None,
            missing: default_missing(),
            delimiter: Delimiter::default(),
            quote: Quote::default(),
            encoding: TextEncoding::default(),
            types: BTreeMap::new(),
            limit: None,
            infer_rows: default_infer_rows(),
            parse_dates: true,
            skip_bad_rows: false,
        }
    }

    /// Resolves a relative `path` against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.path.is_relative() {
            self.path = base.join(&self.path);
        }
    }

    /// The format: explicit, else from the file name.
    ///
    /// # Errors
    /// [`Error::UnknownFormat`] when neither gives one.
    pub fn resolved_format(&self) -> Result<TableFormat> {
        self.format
            .or_else(|| TableFormat::from_path(&self.path))
            .ok_or_else(|| Error::UnknownFormat {
                path: self.path.clone(),
            })
    }
}

/// The map form of [`TableSpec`] (deserialisation and schema helper; fields as there).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
struct TableSpecMap {
    /// The file (`.csv`, `.csv.gz`, `.parquet`).
    path: PathBuf,
    /// Format; default: from the file name.
    #[serde(default)]
    format: Option<TableFormat>,
    /// Field values read as missing (CSV). Default `["NA", ""]`. Also accepted as
    /// `null_values`.
    #[serde(default = "default_missing", alias = "null_values")]
    missing: Vec<String>,
    /// The field delimiter (CSV): one ASCII character (`";"`, `"|"`, `"\t"`). Default `","`.
    #[serde(default)]
    delimiter: Delimiter,
    /// The quote character (CSV): one ASCII character, or `none`. Default `"\""`.
    #[serde(default)]
    quote: Quote,
    /// The text encoding (CSV): `utf-8` (default), `latin-1` or `windows-1252`.
    #[serde(default)]
    encoding: TextEncoding,
    /// Per-column type overrides (CSV).
    #[serde(default)]
    types: BTreeMap<String, ColumnType>,
    /// Read only the first `limit` rows.
    #[serde(default)]
    limit: Option<usize>,
    /// Rows read to infer column types (CSV), 1 to 1,000,000. Default 10000.
    #[serde(default = "default_infer_rows")]
    infer_rows: usize,
    /// Parse ISO-8601 dates (CSV). Default true.
    #[serde(default = "default_true")]
    parse_dates: bool,
    /// Skip and count malformed rows. Default false.
    #[serde(default)]
    skip_bad_rows: bool,
}

impl JsonSchema for TableSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TableSpec".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let map = g.subschema_for::<TableSpecMap>();
        schemars::json_schema!({
            "description": "A table: a file path, or a map with `path` and options.",
            "anyOf": [ { "type": "string" }, map ]
        })
    }
}

// A string or a map, without `#[serde(untagged)]` (which would lose the map's error messages):
// the visitor sees which one it got and hands a map to the derived, `deny_unknown_fields` parser.
impl<'de> Deserialize<'de> for TableSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TableSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a file path or a map with `path` and options")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<TableSpec, E> {
                Ok(TableSpec::new(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<TableSpec, A::Error> {
                let m =
                    TableSpecMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                if m.quote.0 == Some(m.delimiter.0) {
                    return Err(serde::de::Error::custom(format!(
                        "`delimiter` and `quote` are both `{}`: give them different characters (or `quote: none`)",
                        (m.delimiter.0 as char).escape_default()
                    )));
                }
                Ok(TableSpec {
                    path: m.path,
                    format: m.format,
                    missing: m.missing,
                    delimiter: m.delimiter,
                    quote: m.quote,
                    encoding: m.encoding,
                    types: m.types,
                    limit: m.limit,
                    infer_rows: m.infer_rows,
                    parse_dates: m.parse_dates,
                    skip_bad_rows: m.skip_bad_rows,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The largest table file read, in bytes (and the largest a `.csv.gz` may decompress to):
/// 16 GiB. Only regular files are read (and, for CSV, named pipes up to this size).
pub const MAX_TABLE_BYTES: u64 = 16 << 30;

/// What loading one table did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The file.
    pub path: PathBuf,
    /// Rows loaded.
    pub rows: usize,
    /// Columns loaded.
    pub columns: usize,
    /// Malformed rows skipped (with `skip_bad_rows`).
    pub skipped_rows: usize,
    /// The first few skipped lines with the reason.
    pub skipped_examples: Vec<String>,
    /// What the user should know about the file that did not stop loading (duplicate column
    /// names renamed, a numeric column read as text because of a few cells), each naming the
    /// file, the column and the cell.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// [`load_table`] for a run's tables and `apply`'s data: a table without rows is refused
/// ([`Error::EmptyTable`]) instead of failing later at the target or the split.
pub(crate) fn load_rows(spec: &TableSpec) -> Result<(DataFrame, LoadReport)> {
    let (df, report) = load_table(spec)?;
    if df.height() == 0 {
        return Err(Error::EmptyTable {
            path: spec.path.clone(),
        });
    }
    Ok((df, report))
}

/// Loads a table as described by `spec`.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::MalformedRow`] for a malformed CSV row
/// (file, line, column, value, expected type), [`Error::ReadTable`] for other parse failures,
/// [`Error::UnknownFormat`] for an unknown extension, [`Error::CorruptParquet`] for a Parquet file
/// whose footer or page headers declare impossible sizes (checked before polars reads it),
/// [`Error::CorruptTable`] when a reader panics on the file.
pub fn load_table(spec: &TableSpec) -> Result<(DataFrame, LoadReport)> {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    // polars' readers panic on some corrupt files (whet-fuzz found failed asserts, out-of-range
    // slices and `unwrap`s in its thrift, page and bitmap decoders). Such a panic is a corrupt
    // input, not a bug in whet: it becomes an error naming the file. (The aborts that cannot be
    // caught are refused before polars reads the file, by `check_parquet`.)
    match catch_unwind(AssertUnwindSafe(|| load_table_unguarded(spec))) {
        Ok(r) => r,
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            let format = match spec.resolved_format() {
                Ok(TableFormat::Parquet) => "Parquet ",
                _ => "",
            };
            Err(Error::CorruptTable {
                path: spec.path.clone(),
                format,
                detail: text.lines().next().unwrap_or_default().to_string(),
            })
        }
    }
}

fn load_table_unguarded(spec: &TableSpec) -> Result<(DataFrame, LoadReport)> {
    let path = &spec.path;
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    // A device or folder is refused by what it is, before its name is looked at.
    let kind = whet_core::input::check_input(path)?;
    let format = spec.resolved_format()?;
    let mut warnings = Vec::new();
    let (df, skipped, examples) = match format {
        TableFormat::Parquet => {
            // Only a regular file within the cap: Parquet is read with seeks, which a pipe
            // cannot do, and a device is never read.
            let len = whet_core::input::InputError::no_pipe(
                path,
                kind,
                "Parquet files are read with seeks (footer first)",
            )?;
            if len > MAX_TABLE_BYTES {
                // `open_input` words the refusal.
                whet_core::input::open_input(path, "tables", MAX_TABLE_BYTES)?;
            }
            // polars aborts the process on some corrupt footers and page headers: refuse them.
            crate::parquet_guard::check_parquet(path)?;
            let file = std::fs::File::open(path).map_err(io)?;
            let mut reader = ParquetReader::new(file);
            if let Some(n) = spec.limit {
                reader = reader.with_slice(Some((0, n)));
            }
            let df = reader.finish().map_err(|source| Error::ReadTable {
                path: path.clone(),
                source,
            })?;
            (df, 0, Vec::new())
        }
        TableFormat::Csv | TableFormat::CsvGz => {
            let raw = whet_core::input::read_capped(path, "tables", MAX_TABLE_BYTES)?;
            let bytes = if format == TableFormat::CsvGz || is_gzip(&raw) {
                let mut out = Vec::with_capacity(raw.len().saturating_mul(4));
                // The decompressed text is capped like a plain file (one byte more tells
                // "exactly the cap" from "more").
                flate2::read::MultiGzDecoder::new(&raw[..])
                    .take(MAX_TABLE_BYTES + 1)
                    .read_to_end(&mut out)
                    .map_err(io)?;
                if out.len() as u64 > MAX_TABLE_BYTES {
                    return Err(whet_core::input::InputError::TooLarge {
                        path: path.clone(),
                        what: "tables",
                        found: format!(
                            "decompresses to more than {}",
                            whet_core::input::human_bytes(MAX_TABLE_BYTES)
                        ),
                        cap: MAX_TABLE_BYTES,
                    }
                    .into());
                }
                out
            } else {
                raw
            };
            let bytes = decode_text(path, bytes, spec.encoding)?;
            warnings.extend(duplicate_header_warnings(path, &bytes, Dialect::of(spec)));
            read_csv_bytes(path, bytes, spec, None)?
        }
    };
    if format != TableFormat::Parquet {
        warnings.extend(text_column_warnings(path, &df, spec));
    }
    let report = LoadReport {
        path: path.clone(),
        rows: df.height(),
        columns: df.width(),
        skipped_rows: skipped,
        skipped_examples: examples,
        warnings,
    };
    Ok((df, report))
}

/// Rows [`scan_column`] reads at most.
pub const SCAN_ROWS: usize = 10_000;

/// Bytes of a CSV table's head (after decompression) [`scan_column`] reads at most: 16 MiB.
pub const SCAN_BYTES: u64 = 16 << 20;

/// The first rows of one column of a table ([`scan_head`]): the number of rows read with the
/// column, or `None` when the table has no column of that name (it may come from a join).
///
/// # Errors
/// Those of [`scan_head`].
pub fn scan_column(spec: &TableSpec, column: &str, rows: usize) -> Result<Option<(usize, Series)>> {
    let df = scan_head(spec, rows)?;
    Ok(df
        .column(column)
        .ok()
        .map(|c| (df.height(), c.as_materialized_series().clone())))
}

/// The first rows of a table, read cheaply for checks made before a run (`whet validate`): at
/// most `rows` rows (and at most the table's `limit`), from at most [`SCAN_BYTES`] of a CSV
/// file's head, read with the table's options (missing markers, types); a Parquet file's
/// first rows. Every column of the table is there, as loading names it.
///
/// # Errors
/// The errors of [`load_table`] on the head read (a head cut inside a quoted field is an
/// error too), and [`Error::Budget`] when [`SCAN_BYTES`] do not fit in the memory budget.
pub fn scan_head(spec: &TableSpec, rows: usize) -> Result<DataFrame> {
    let rows = spec.limit.map_or(rows, |l| l.min(rows));
    let mut head_spec = spec.clone();
    head_spec.limit = Some(rows);
    let df = match spec.resolved_format()? {
        TableFormat::Parquet => load_table(&head_spec)?.0,
        TableFormat::Csv | TableFormat::CsvGz => {
            // The head's bytes, polars' copy of them and the frame.
            whet_core::budget::check(
                "the head of a table read to check it before the run",
                SCAN_BYTES.saturating_mul(3),
                "--max-memory",
            )?;
            let path = &spec.path;
            let io = |source| Error::Io {
                path: path.clone(),
                source,
            };
            let file = whet_core::input::open_input(path, "tables", MAX_TABLE_BYTES)?;
            let mut peek = std::io::BufReader::new(file);
            let gz = {
                use std::io::BufRead;
                is_gzip(peek.fill_buf().map_err(io)?)
            };
            let reader: Box<dyn Read> = if gz {
                Box::new(flate2::read::MultiGzDecoder::new(peek))
            } else {
                Box::new(peek)
            };
            let mut head = Vec::new();
            let mut lines = 0usize;
            let mut buf = [0u8; 64 << 10];
            let mut reader = reader.take(SCAN_BYTES);
            'read: loop {
                let n = reader.read(&mut buf).map_err(io)?;
                if n == 0 {
                    break;
                }
                for (i, &b) in buf[..n].iter().enumerate() {
                    if b == b'\n' {
                        lines += 1;
                        // The header and `rows` data lines.
                        if lines > rows {
                            head.extend_from_slice(&buf[..=i]);
                            break 'read;
                        }
                    }
                }
                head.extend_from_slice(&buf[..n]);
            }
            if head.len() as u64 >= SCAN_BYTES
                && let Some(end) = head.iter().rposition(|&b| b == b'\n')
            {
                // A cut line would be a malformed row.
                head.truncate(end + 1);
            }
            let head = decode_text(path, head, spec.encoding)?;
            read_csv_bytes(path, head, &head_spec, None)?.0
        }
    };
    Ok(df)
}

/// Header names that appear more than once: polars keeps the first and renames the others
/// (`x_duplicated_0`), so a feature would silently change name.
fn duplicate_header_warnings(path: &Path, bytes: &[u8], d: Dialect) -> Vec<String> {
    let header = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let names: Vec<String> = split_fields(header.strip_suffix(b"\r").unwrap_or(header), d)
        .into_iter()
        .map(|f| d.unquote(&String::from_utf8_lossy(f)).to_string())
        .collect();
    let mut seen: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, n) in names.iter().enumerate() {
        seen.entry(n.as_str()).or_default().push(i + 1);
    }
    seen.into_iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(name, at)| {
            let renamed: Vec<String> = (0..at.len() - 1)
                .map(|k| format!("`{name}_duplicated_{k}`"))
                .collect();
            format!(
                "`{}` line 1: the column name `{name}` appears {} times (fields {}); the later ones are read as {}: give each column its own name",
                path.display(),
                at.len(),
                at.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", "),
                renamed.join(", ")
            )
        })
        .collect()
}

/// Text columns whose values are numbers but for a few cells: one bad cell (`12a`, `n/a`)
/// turns a numeric column into text, which is then not used as a feature. Names the column,
/// the first such cell and its line.
fn text_column_warnings(path: &Path, df: &DataFrame, spec: &TableSpec) -> Vec<String> {
    let mut counts = TextCounts::default();
    counts.add(df, spec, 0);
    counts.warnings(path)
}

/// The values of each text column of a table that are numbers and that are not, counted part
/// by part ([`TextCounts::add`]), for [`text_column_warnings`].
#[derive(Debug, Default)]
pub(crate) struct TextCounts {
    /// Per text column, in the table's order.
    columns: Vec<TextCount>,
}

/// The counts of one text column ([`TextCounts`]).
#[derive(Debug)]
struct TextCount {
    name: String,
    /// Values that are numbers.
    numbers: usize,
    /// Values that are not.
    others: usize,
    /// The first value that is not a number: its data row (0-based) and the value.
    first: Option<(usize, String)>,
}

impl TextCounts {
    /// Counts the text columns of `df` (not those `spec.types` declares), whose first row is
    /// the table's data row `first_row` (0-based).
    pub(crate) fn add(&mut self, df: &DataFrame, spec: &TableSpec, first_row: usize) {
        for c in df.columns() {
            if c.dtype() != &DataType::String || spec.types.contains_key(c.name().as_str()) {
                continue;
            }
            let Ok(ca) = c.str() else { continue };
            let i = match self
                .columns
                .iter()
                .position(|e| e.name == c.name().as_str())
            {
                Some(i) => i,
                None => {
                    self.columns.push(TextCount {
                        name: c.name().to_string(),
                        numbers: 0,
                        others: 0,
                        first: None,
                    });
                    self.columns.len() - 1
                }
            };
            let count = &mut self.columns[i];
            for (row, v) in ca.iter().enumerate() {
                let Some(v) = v else { continue };
                if v.trim().parse::<f64>().is_ok() {
                    count.numbers += 1;
                } else {
                    count.others += 1;
                    if count.first.is_none() {
                        count.first = Some((first_row + row, v.to_string()));
                    }
                }
            }
        }
    }

    /// The warnings for the text columns that are mostly numbers.
    pub(crate) fn warnings(&self, path: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for TextCount {
            name,
            numbers,
            others,
            first,
        } in &self.columns
        {
            let (numbers, others) = (*numbers, *others);
            // "Mostly numbers": at least 9 in 10 values, and at most 10 cells of text.
            if let Some((row, value)) = first
                && others <= 10
                && numbers >= 9 * others
            {
                let shown: String = value.chars().take(40).collect();
                out.push(format!(
                    "`{}` column `{name}`: {others} of {} values are not numbers (the first is `{shown}`, data row {}, line {} if no field spans lines), so the column is read as text and is not used as a feature; fix the cell, or add its value to the table's `missing` markers",
                    path.display(),
                    numbers + others,
                    row + 1,
                    row + 2,
                ));
            }
        }
        out
    }
}

fn is_gzip(b: &[u8]) -> bool {
    b.len() > 2 && b[0] == 0x1f && b[1] == 0x8b
}

fn csv_options(
    spec: &TableSpec,
    overrides: Option<SchemaRef>,
    n_rows: Option<usize>,
) -> CsvReadOptions {
    let markers: Vec<PlSmallStr> = spec
        .missing
        .iter()
        .filter(|m| !m.is_empty())
        .map(|m| PlSmallStr::from(m.as_str()))
        .collect();
    let empty_is_missing = spec.missing.iter().any(|m| m.is_empty());
    let parse = CsvParseOptions::default()
        .with_separator(spec.delimiter.0)
        .with_quote_char(spec.quote.0)
        .with_null_values((!markers.is_empty()).then_some(NullValues::AllColumns(markers)))
        .with_missing_is_null(empty_is_missing)
        .with_try_parse_dates(spec.parse_dates);
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(spec.infer_rows.max(1)))
        .with_schema_overwrite(overrides)
        .with_n_rows(n_rows)
        .with_rechunk(true)
        .with_parse_options(parse)
}

fn overrides(spec: &TableSpec) -> Option<SchemaRef> {
    if spec.types.is_empty() {
        return None;
    }
    let schema: Schema = spec
        .types
        .iter()
        .map(|(k, t)| Field::new(k.as_str().into(), t.dtype()))
        .collect();
    Some(Arc::new(schema))
}

type CsvOut = (DataFrame, usize, Vec<String>);

/// Finds a quoted field that is never closed: `(line, field)` (1-based) where it opens.
///
/// A quote opens a field only at its start (after the start of the file, a comma or a newline);
/// inside, `""` is an escaped quote and a lone `"` closes it, as in RFC 4180 and polars. polars
/// 0.55 reads out of bounds (an abort, not an error) on a file that ends in an open quote, so
/// such files are refused before they reach it.
/// The name of the header's field `index` (0-based), or `?` when the header is shorter.
fn header_name(bytes: &[u8], index: usize, d: Dialect) -> String {
    let header = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    split_fields(header.strip_suffix(b"\r").unwrap_or(header), d)
        .get(index)
        .map_or_else(
            || "?".to_string(),
            |f| String::from_utf8_lossy(f).into_owned(),
        )
}

fn unterminated_quote(bytes: &[u8], d: Dialect) -> Option<(usize, usize)> {
    let q = d.quote?;
    let (mut line, mut field) = (1usize, 1usize);
    let mut open_at = None;
    let mut at_field_start = true;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if open_at.is_some() {
            if c == q {
                if bytes.get(i + 1) == Some(&q) {
                    i += 1;
                } else {
                    open_at = None;
                }
            } else if c == b'\n' {
                line += 1;
            }
        } else {
            match c {
                c if c == q && at_field_start => open_at = Some((line, field)),
                c if c == d.sep => field += 1,
                b'\n' => {
                    line += 1;
                    field = 1;
                }
                _ => {}
            }
            at_field_start = c == d.sep || c == b'\n';
            if c == q {
                at_field_start = false;
            }
        }
        i += 1;
    }
    open_at
}

/// The first record (within the first `limit` data rows) whose field count differs from the
/// header's: `(line, found, expected)`. polars pads short rows with nulls silently, so ragged
/// rows are found here. Quotes are tracked as in `split_fields`; empty lines are ignored.
fn first_ragged_row(
    bytes: &[u8],
    limit: Option<usize>,
    d: Dialect,
) -> Option<(usize, usize, usize)> {
    let mut expected = None;
    let (mut line, mut start_line, mut fields, mut nonempty) = (1usize, 1usize, 1usize, false);
    let mut in_quotes = false;
    let mut records = 0usize;
    let mut end = |fields: usize, nonempty: bool, start_line: usize| -> Option<Option<_>> {
        if !nonempty {
            return None;
        }
        match expected {
            None => expected = Some(fields),
            Some(e) => {
                records += 1;
                if limit.is_some_and(|l| records > l) {
                    return Some(None);
                }
                if fields != e {
                    return Some(Some((start_line, fields, e)));
                }
            }
        }
        None
    };
    for &c in bytes {
        match c {
            c if Some(c) == d.quote => {
                in_quotes = !in_quotes;
                nonempty = true;
            }
            c if c == d.sep && !in_quotes => {
                fields += 1;
                nonempty = true;
            }
            b'\n' => {
                line += 1;
                if !in_quotes {
                    if let Some(r) = end(fields, nonempty, start_line) {
                        return r;
                    }
                    (start_line, fields, nonempty) = (line, 1, false);
                }
            }
            b'\r' => {}
            _ => nonempty = true,
        }
    }
    end(fields, nonempty, start_line).flatten()
}

/// Reads CSV text (a header line and records) as [`load_table`] reads a whole file: checked
/// for text that is not UTF-8, ragged rows and open quotes, parsed by polars with `spec`'s
/// options, malformed rows located (and skipped with `skip_bad_rows`).
///
/// `chunk` is for a part of a larger file ([`crate::csvchunks`]): the schema of the file's
/// first part (every column's type, instead of inferring and `spec.types`), and the file's
/// lines before the part's first record less the header's, added to every line an error or a
/// skipped row names.
pub(crate) fn read_csv_bytes(
    path: &Path,
    mut bytes: Vec<u8>,
    spec: &TableSpec,
    chunk: Option<(SchemaRef, usize)>,
) -> Result<CsvOut> {
    let d = Dialect::of(spec);
    if let Some(limit) = spec.limit {
        // The header and `limit` records: polars parses whole chunks even with a row limit, so
        // a malformed row past the limit would fail the read. (polars reads an empty line
        // ending in `\r` as a row, which this counts as empty: the text cut here holds at least
        // `limit` rows, of which polars keeps the first `limit`.)
        let end = csvchunks::records_end(&bytes, d, limit.saturating_add(1));
        bytes.truncate(end);
    }
    let (known, offset) = match chunk {
        Some((schema, offset)) => (Some(schema), offset),
        None => (None, 0),
    };
    // polars 0.55 reads out of bounds (an abort) on some files whose last byte is a quote
    // closing a field; a final newline avoids its end-of-input path (found by whet-fuzz).
    if bytes.last().is_some_and(|&b| b != b'\n') {
        bytes.push(b'\n');
    }
    if let Err(e) = std::str::from_utf8(&bytes) {
        let at = e.valid_up_to();
        let line_start = bytes[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let field = split_fields(&bytes[line_start..at], d).len();
        return Err(Error::MalformedRow {
            path: path.to_path_buf(),
            line: offset + 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count(),
            column: header_name(&bytes, field - 1, d),
            field,
            message: format!(
                "byte 0x{:02x} is not UTF-8 text (the file looks like Windows-1252 or Latin-1): set the table's `encoding: windows-1252` (or `latin-1`), or save it as UTF-8",
                bytes[at]
            ),
        });
    }
    let ragged = first_ragged_row(&bytes, spec.limit, d);
    if let (Some((line, found, expected)), false) = (ragged, spec.skip_bad_rows) {
        let column = header_name(&bytes, found, d);
        return Err(Error::MalformedRow {
            path: path.to_path_buf(),
            line: offset + line,
            column,
            field: found.min(expected) + 1,
            message: format!("expected {expected} fields (as in the header), found {found}"),
        });
    }
    if let Some((line, field)) = unterminated_quote(&bytes, d) {
        let column = header_name(&bytes, field - 1, d);
        return Err(Error::MalformedRow {
            path: path.to_path_buf(),
            line: offset + line,
            column,
            field,
            message: format!(
                "a quoted field opens here and is never closed (add the closing `{}`, or set the table's `quote: none` if `{}` is text here)",
                d.quote_char(),
                d.quote_char()
            ),
        });
    }
    let ov = known.clone().or_else(|| overrides(spec));
    let first = if let Some((line, found, expected)) = ragged {
        // skip_bad_rows: go straight to the diagnosis, which drops the ragged rows.
        Err(polars::error::PolarsError::ComputeError(
            format!("line {line}: expected {expected} fields, found {found}").into(),
        ))
    } else {
        csv_options(spec, ov.clone(), spec.limit)
            .into_reader_with_file_handle(Cursor::new(&bytes[..]))
            .finish()
    };
    let source = match first {
        Ok(df) => return Ok((df, 0, Vec::new())),
        Err(e) => e,
    };
    // Diagnose: infer the schema polars used from the first rows, then find offending lines.
    // Diagnose with the schema polars infers from the first rows. polars parses whole chunks
    // even with a row limit, so the head is cut from the bytes; when the bad row is inside the
    // head, shorter heads are tried.
    let head_of = |rows: usize| {
        let end = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(rows)
            .map_or(bytes.len(), |(i, _)| i + 1);
        csv_options(spec, ov.clone(), None)
            .into_reader_with_file_handle(Cursor::new(&bytes[..end]))
            .finish()
    };
    let schema = match known {
        // A part of a file: the types of its first part.
        Some(schema) => schema,
        None => {
            let mut rows = spec.infer_rows.max(1);
            let head = loop {
                match head_of(rows) {
                    Ok(df) => break df,
                    Err(e) if rows == 1 => {
                        return Err(Error::ReadTable {
                            path: path.to_path_buf(),
                            source: e,
                        });
                    }
                    Err(_) => rows = (rows / 10).max(1),
                }
            };
            head.schema().clone()
        }
    };
    let bad = scan_bad_rows(&bytes, &schema, spec, !spec.skip_bad_rows);
    if bad.is_empty() {
        return Err(Error::ReadTable {
            path: path.to_path_buf(),
            source,
        });
    }
    if !spec.skip_bad_rows {
        let b = &bad[0];
        return Err(Error::MalformedRow {
            path: path.to_path_buf(),
            line: offset + b.line,
            column: b.column.clone(),
            field: b.field,
            message: b.message.clone(),
        });
    }
    let examples = bad
        .iter()
        .take(5)
        .map(|b| {
            format!(
                "line {}, column `{}`: {}",
                offset + b.line,
                b.column,
                b.message
            )
        })
        .collect();
    let cleaned = remove_lines(&bytes, &bad);
    // Force the diagnosed schema so the cleaned file parses the same way.
    let full: Schema = schema
        .iter()
        .map(|(n, t)| Field::new(n.clone(), t.clone()))
        .collect();
    let df = csv_options(spec, Some(Arc::new(full)), spec.limit)
        .into_reader_with_file_handle(Cursor::new(&cleaned[..]))
        .finish()
        .map_err(|source| Error::ReadTable {
            path: path.to_path_buf(),
            source,
        })?;
    Ok((df, bad.len(), examples))
}

/// A malformed line found by [`scan_bad_rows`].
#[derive(Debug, Clone)]
struct BadRow {
    line: usize,
    column: String,
    field: usize,
    message: String,
}

fn split_fields(line: &[u8], d: Dialect) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    for (i, &c) in line.iter().enumerate() {
        match c {
            c if Some(c) == d.quote => in_quotes = !in_quotes,
            c if c == d.sep && !in_quotes => {
                out.push(&line[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&line[start..]);
    out
}

fn field_ok(raw: &[u8], dtype: &DataType, d: Dialect) -> bool {
    let s = std::str::from_utf8(raw).unwrap_or("");
    let s = d.unquote(s);
    match dtype {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => s.parse::<i64>().is_ok(),
        DataType::Float32 | DataType::Float64 => s.parse::<f64>().is_ok(),
        DataType::Boolean => matches!(s.to_ascii_lowercase().as_str(), "true" | "false"),
        _ => std::str::from_utf8(raw).is_ok(),
    }
}

fn scan_bad_rows(bytes: &[u8], schema: &Schema, spec: &TableSpec, first_only: bool) -> Vec<BadRow> {
    let names: Vec<(String, DataType)> = schema
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let markers: Vec<&[u8]> = spec.missing.iter().map(|m| m.as_bytes()).collect();
    let d = Dialect::of(spec);
    let mut bad = Vec::new();
    let limit = spec.limit.unwrap_or(usize::MAX);
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate().skip(1) {
        if i > limit {
            break;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let fields = split_fields(line, d);
        let lineno = i + 1;
        if fields.len() != names.len() {
            let (column, field) = if fields.len() > names.len() {
                ("?".to_string(), names.len() + 1)
            } else {
                (names[fields.len()].0.clone(), fields.len() + 1)
            };
            bad.push(BadRow {
                line: lineno,
                column,
                field,
                message: format!(
                    "expected {} fields (as in the header), found {}",
                    names.len(),
                    fields.len()
                ),
            });
        } else {
            for (j, (f, (name, dtype))) in fields.iter().zip(&names).enumerate() {
                if markers.contains(f) || field_ok(f, dtype, d) {
                    continue;
                }
                bad.push(BadRow {
                    line: lineno,
                    column: name.clone(),
                    field: j + 1,
                    message: format!(
                        "cannot parse `{}` as {dtype} (missing markers: {:?}; override the type with `types: {{ {name}: str }}`)",
                        String::from_utf8_lossy(f),
                        spec.missing
                    ),
                });
                break;
            }
        }
        if first_only && !bad.is_empty() {
            break;
        }
    }
    bad
}

fn remove_lines(bytes: &[u8], bad: &[BadRow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut next = bad.iter().map(|b| b.line).peekable();
    for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        if next.peek() == Some(&(i + 1)) {
            next.next();
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn unterminated_quote_is_located_not_passed_to_polars() {
        assert_eq!(unterminated_quote(b"a\n\"", Dialect::COMMA), Some((2, 1)));
        assert_eq!(
            unterminated_quote(b"a,b\n1,\"", Dialect::COMMA),
            Some((2, 2))
        );
        assert_eq!(
            unterminated_quote(b"a,b\n1,\"x\"\"y\n2,3\n", Dialect::COMMA),
            Some((2, 2))
        );
        assert_eq!(
            unterminated_quote(b"a,b\n1,\"x\"\"y\"\n2,3\n", Dialect::COMMA),
            None
        );
        assert_eq!(unterminated_quote(b"a\n5'11\"\n", Dialect::COMMA), None);
        assert_eq!(
            first_ragged_row(b"a,b\n1,2\n3\n", None, Dialect::COMMA),
            Some((3, 1, 2))
        );
        assert_eq!(
            first_ragged_row(b"a,b\n1,2\n\n\"x\ny\",3\r\n", None, Dialect::COMMA),
            None
        );
        assert_eq!(
            first_ragged_row(b"a,b\n1,2\n3\n", Some(1), Dialect::COMMA),
            None
        );
        assert_eq!(
            first_ragged_row(b"a,b\n1,2\n3,4,5", None, Dialect::COMMA),
            Some((3, 3, 2))
        );
        let dir = tempfile::tempdir().unwrap();
        // Found by whet-fuzz: a closing quote as the file's last byte aborted inside polars.
        let crash = Path::new(
            &std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../whet-fuzz/crashes/csv/abort-quote-at-eof-no-newline");
        let p = dir.path().join("crash.csv");
        std::fs::copy(crash, &p).unwrap();
        assert!(load_table(&TableSpec::new(&p)).is_err());
        let p = write(dir.path(), "q.csv", "a,b\n1,2\n3,\"");
        let e = load_table(&TableSpec::new(&p)).unwrap_err().to_string();
        assert!(
            e.contains("q.csv") && e.contains("line 3") && e.contains("never closed"),
            "{e}"
        );
    }

    #[test]
    fn spec_from_string_or_map() {
        let s: TableSpec = serde_json::from_str("\"a.csv\"").unwrap();
        assert_eq!(s, TableSpec::new("a.csv"));
        let m: TableSpec =
            serde_json::from_str(r#"{"path":"a.csv","missing":["?"],"limit":5}"#).unwrap();
        assert_eq!(m.missing, vec!["?"]);
        assert_eq!(m.limit, Some(5));
        let e = serde_json::from_str::<TableSpec>(r#"{"path":"a.csv","limt":5}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `limt`"), "{e}");
    }

    #[test]
    fn malformed_row_names_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("a,b\n");
        for i in 0..30 {
            text.push_str(&format!("{i},{}.5\n", i));
        }
        text.push_str("31,oops\n32,1.0\n");
        let p = write(dir.path(), "bad.csv", &text);
        let mut spec = TableSpec::new(&p);
        spec.infer_rows = 10;
        let e = load_table(&spec).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 32"), "{msg}");
        assert!(msg.contains("column `b`"), "{msg}");
        assert!(msg.contains("bad.csv"), "{msg}");
        spec.skip_bad_rows = true;
        let (df, rep) = load_table(&spec).unwrap();
        assert_eq!(df.height(), 31);
        assert_eq!(rep.skipped_rows, 1);
    }

    #[test]
    fn ragged_row_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "r.csv", "a,b\n1,2\n3,4,5\n6,7\n");
        let e = load_table(&TableSpec::new(&p)).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn missing_markers_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "m.csv", "a,b\n1,?\n2,x\n,y\n");
        let mut spec = TableSpec::new(&p);
        spec.missing = vec!["?".into(), "".into()];
        spec.types.insert("a".into(), ColumnType::F64);
        let (df, _) = load_table(&spec).unwrap();
        assert_eq!(df.column("a").unwrap().dtype(), &DataType::Float64);
        assert_eq!(df.column("a").unwrap().null_count(), 1);
        assert_eq!(df.column("b").unwrap().null_count(), 1);
    }

    #[test]
    fn semicolon_latin1_with_null_values() {
        let dir = tempfile::tempdir().unwrap();
        // Latin-1 bytes: `é` is 0xE9, `ü` 0xFC; `-` and `n/a` mark missing values.
        let mut bytes = b"x1;x2;cat;species\n1,5;2;caf\xe9;a\n-;3;M\xfcller;b\n".to_vec();
        bytes.extend_from_slice(b"4;n/a;\"x;y\";a\n");
        let p = dir.path().join("l.csv");
        std::fs::write(&p, &bytes).unwrap();
        let spec: TableSpec = serde_json::from_str(&format!(
            r#"{{"path": {:?}, "delimiter": ";", "encoding": "latin-1", "null_values": ["-", "n/a"]}}"#,
            p.to_str().unwrap()
        ))
        .unwrap();
        let (df, _) = load_table(&spec).unwrap();
        assert_eq!(df.width(), 4, "{df}");
        let cat: Vec<_> = df.column("cat").unwrap().str().unwrap().iter().collect();
        assert_eq!(cat, [Some("café"), Some("Müller"), Some("x;y")]);
        assert_eq!(df.column("x1").unwrap().null_count(), 1);
        assert_eq!(df.column("x2").unwrap().null_count(), 1);
        // The default (UTF-8) refuses the bytes and says which option reads them.
        let mut utf8 = spec.clone();
        utf8.encoding = TextEncoding::Utf8;
        let e = load_table(&utf8).unwrap_err().to_string();
        assert!(
            e.contains("encoding: windows-1252") && e.contains("line 2"),
            "{e}"
        );
        // The head read by `whet validate` decodes the same way.
        let head = scan_head(&spec, 2).unwrap();
        assert_eq!(
            head.column("cat").unwrap().str().unwrap().get(0),
            Some("café")
        );
    }

    #[test]
    fn windows_1252_differs_from_latin1_in_0x80_to_0x9f() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "w.csv", "");
        std::fs::write(&p, b"a,b\n\x80,1\n").unwrap();
        let mut spec = TableSpec::new(&p);
        spec.encoding = TextEncoding::Windows1252;
        let (df, _) = load_table(&spec).unwrap();
        assert_eq!(df.column("a").unwrap().str().unwrap().get(0), Some("€"));
        spec.encoding = TextEncoding::Latin1;
        let (df, _) = load_table(&spec).unwrap();
        assert_eq!(
            df.column("a").unwrap().str().unwrap().get(0),
            Some("\u{80}")
        );
    }

    #[test]
    fn tab_delimiter_no_quote_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.tsv.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, b"a\tb\n5'11\"\t2\n\"x\t4\n").unwrap();
        std::fs::write(&p, enc.finish().unwrap()).unwrap();
        let spec: TableSpec = serde_json::from_str(&format!(
            r#"{{"path": {:?}, "delimiter": "\\t", "quote": "none"}}"#,
            p.to_str().unwrap()
        ))
        .unwrap();
        assert_eq!(spec.delimiter.byte(), b'\t');
        assert_eq!(spec.quote.byte(), None);
        let (df, _) = load_table(&spec).unwrap();
        let a: Vec<_> = df.column("a").unwrap().str().unwrap().iter().collect();
        assert_eq!(a, [Some("5'11\""), Some("\"x")]);
        // A ragged row is found with the configured delimiter.
        let p2 = write(dir.path(), "r.csv", "a|b\n1|2\n3|4|5\n");
        let mut spec = TableSpec::new(&p2);
        spec.delimiter = Delimiter::new('|').unwrap();
        let e = load_table(&spec).unwrap_err().to_string();
        assert!(
            e.contains("line 3") && e.contains("expected 2 fields"),
            "{e}"
        );
    }

    #[test]
    fn csv_characters_are_checked() {
        let bad = |json: &str| {
            serde_json::from_str::<TableSpec>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(bad(r#"{"path":"a.csv","delimiter":";;"}"#).contains("one character"));
        assert!(bad(r#"{"path":"a.csv","delimiter":"é"}"#).contains("one character"));
        assert!(bad(r#"{"path":"a.csv","delimiter":"\n"}"#).contains("printable"));
        assert!(bad(r#"{"path":"a.csv","delimiter":";","quote":";"}"#).contains("different"));
        assert!(bad(r#"{"path":"a.csv","encoding":"utf-16"}"#).contains("latin-1"));
        assert!(
            bad(r#"{"path":"a.csv","missing":["?"],"null_values":["-"]}"#).contains("duplicate")
        );
        let s: TableSpec = serde_json::from_str(r#"{"path":"a.csv","quote":"'"}"#).unwrap();
        assert_eq!(s.quote, Quote::new('\'').unwrap());
        // Written back (manifests) and read again unchanged.
        let back: TableSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let none = TableSpec {
            quote: Quote::none(),
            delimiter: Delimiter::new('\t').unwrap(),
            ..TableSpec::new("a.csv")
        };
        let back: TableSpec = serde_json::from_str(&serde_json::to_string(&none).unwrap()).unwrap();
        assert_eq!(back, none);
    }

    #[test]
    fn one_column_with_a_semicolon_suggests_the_delimiter() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "s.csv", "x1;x2;species\n1;2;a\n");
        let (df, _) = load_table(&TableSpec::new(&p)).unwrap();
        let e = crate::stage::not_found(&df, "species", "target").to_string();
        assert!(e.contains("delimiter: \";\""), "{e}");
        let e = Error::ColumnNotFound {
            column: "y".into(),
            context: "target".into(),
            available: vec!["a".into(), "b;c".into()],
        }
        .to_string();
        assert!(!e.contains("delimiter"), "{e}");
    }

    #[test]
    fn gzip_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.csv.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, b"a,b\n1,2\n3,4\n5,6\n").unwrap();
        std::fs::write(&p, enc.finish().unwrap()).unwrap();
        let mut spec = TableSpec::new(&p);
        spec.limit = Some(2);
        let (df, rep) = load_table(&spec).unwrap();
        assert_eq!(df.height(), 2);
        assert_eq!(rep.rows, 2);
    }
}
