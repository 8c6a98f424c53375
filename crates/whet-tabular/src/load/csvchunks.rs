//! A CSV table larger than the memory budget, converted to a Parquet file a part at a time, so
//! that it streams as a Parquet main table does ([`crate::stream`]).
//!
//! The text (decompressed, decoded to UTF-8) is cut at record ends — a newline outside quoted
//! fields, found as polars splits records: a quote opens a field only at the field's start, and
//! `""` inside a quoted field is a quote — into parts of about a given size. Each part, the
//! header in front, is read by [`read_csv_bytes`], the code that reads a whole file: the first
//! part, which holds at least `infer_rows` records (the rows the types are inferred from),
//! gives every column's type, and the other parts are read with those types. So each part's
//! frame is the whole file's frame at those rows, errors and skipped rows name the file's
//! lines, and the warnings count the whole file. Each part becomes a row group.
//!
//! Memory: a part being read from the file, one queued, and one parsed (its text, polars'
//! frame and the row group being compressed).

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use polars::prelude::*;
use whet_core::Progress;

use super::{
    Dialect, LoadReport, TableFormat, TableSpec, TextCounts, decode_text,
    duplicate_header_warnings, is_gzip, read_csv_bytes, unterminated_quote,
};
use crate::error::{Error, Result};

/// A CSV table converted to a Parquet file ([`to_parquet`]), removed with its folder when
/// this is dropped.
#[derive(Debug)]
pub(crate) struct Converted {
    /// The Parquet file, every row of the CSV table (at most its `limit`), read as loading
    /// reads the CSV file.
    pub(crate) spec: TableSpec,
    /// What reading the CSV file did: rows, skipped rows, warnings.
    pub(crate) report: LoadReport,
    folder: PathBuf,
}

impl Drop for Converted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// Bytes of text in a part, for a memory budget of `budget` bytes: a sixteenth of it (the
/// text, polars' frame of it and the next part's text stay within a fifth of the budget),
/// between 1 MiB and 256 MiB.
pub(crate) fn part_bytes(budget: u64) -> usize {
    (budget / 16).clamp(1 << 20, 256 << 20) as usize
}

/// Converts the CSV table `spec` to a Parquet file in the new folder `folder` (removed again
/// when the result is dropped, or when converting fails), parts of about `part` bytes of text
/// at a time (see the module documentation). `progress` counts the file's bytes read.
///
/// # Errors
/// Those of [`crate::load_table`] for the same file (with the file's lines), [`Error::EmptyTable`]
/// for a table without rows, [`Error::MalformedRow`] for a record longer than 64 parts (a
/// quoted field never closed), write errors.
pub(crate) fn to_parquet(
    spec: &TableSpec,
    folder: &Path,
    part: usize,
    progress: &dyn Progress,
) -> Result<Converted> {
    let path = &spec.path;
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(folder).map_err(|source| Error::Io {
        path: folder.to_path_buf(),
        source,
    })?;
    let mut converted = Converted {
        spec: TableSpec::new(folder.join("table.parquet")),
        report: LoadReport {
            path: path.clone(),
            rows: 0,
            columns: 0,
            skipped_rows: 0,
            skipped_examples: Vec::new(),
            warnings: Vec::new(),
        },
        folder: folder.to_path_buf(),
    };
    converted.spec.format = Some(TableFormat::Parquet);
    // Streamed from the file: no cap on its size (the memory used does not grow with it).
    let file = whet_core::input::open_input(path, "tables", u64::MAX)?;
    let total = match file.kind() {
        whet_core::input::InputKind::Regular(len) => Some(len),
        whet_core::input::InputKind::Fifo => None,
    };
    let read = Arc::new(AtomicU64::new(0));
    let mut peek = std::io::BufReader::with_capacity(
        1 << 20,
        Counting {
            inner: file,
            read: read.clone(),
        },
    );
    let gz = spec.resolved_format()? == TableFormat::CsvGz || is_gzip(peek.fill_buf().map_err(io)?);
    let text: Box<dyn Read + Send> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(peek))
    } else {
        Box::new(peek)
    };
    let d = Dialect::of(spec);
    let mut texts = Texts::new(text, d, path, part);
    let out = std::fs::File::create(&converted.spec.path).map_err(|source| Error::Io {
        path: converted.spec.path.clone(),
        source,
    })?;
    let mut out = Shared(Arc::new(std::sync::Mutex::new(
        std::io::BufWriter::with_capacity(1 << 20, out),
    )));
    let mut writer = crate::export::TableWriter::new(out.clone(), crate::ExportFormat::Parquet)?;
    progress.begin("stream: CSV to Parquet", total);
    // The first part: the header and at least `infer_rows` records (the header is one).
    let Some((first, first_line)) = texts.next(spec.infer_rows.max(1) + 1)? else {
        return Err(Error::EmptyTable { path: path.clone() });
    };
    let header = first[..header_end(&first, d)].to_vec();
    let header_lines = header.iter().filter(|&&b| b == b'\n').count();
    converted.report.warnings =
        duplicate_header_warnings(path, &decode_text(path, header.clone(), spec.encoding)?, d);
    let mut counts = TextCounts::default();
    let mut remaining = spec.limit;
    let mut schema: Option<SchemaRef> = None;
    let mut rows = 0usize;
    let mut seen = 0u64;
    let mut each = |text: Vec<u8>, first_line: usize| -> Result<bool> {
        // The part with the header in front (the first part has it).
        let text = if schema.is_none() {
            text
        } else {
            let mut t = Vec::with_capacity(header.len() + text.len());
            t.extend_from_slice(&header);
            t.extend_from_slice(&text);
            t
        };
        let text = decode_text(path, text, spec.encoding)?;
        let mut part_spec = spec.clone();
        part_spec.limit = remaining;
        let chunk = schema
            .clone()
            .map(|s| (s, first_line.saturating_sub(header_lines + 1)));
        let (mut df, skipped, examples) = read_csv_bytes(path, text, &part_spec, chunk)?;
        if schema.is_none() {
            schema = Some(df.schema().clone());
            converted.report.columns = df.width();
        }
        converted.report.skipped_rows += skipped;
        let room = 5usize.saturating_sub(converted.report.skipped_examples.len());
        converted
            .report
            .skipped_examples
            .extend(examples.into_iter().take(room));
        counts.add(&df, spec, rows);
        rows += df.height();
        if let Some(r) = &mut remaining {
            *r = r.saturating_sub(df.height());
        }
        if df.height() > 0 {
            writer.write(&mut df)?;
        }
        let now = read.load(Ordering::Relaxed);
        progress.advance(now - seen);
        seen = now;
        Ok(remaining != Some(0))
    };
    // The parts after the first are cut on a thread of their own (reading, decompressing,
    // finding record ends), one part ahead of the parsing.
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(Vec<u8>, usize)>>(1);
        let cutter = s.spawn(move || {
            loop {
                let next = texts.next(1).transpose();
                let Some(next) = next else { break };
                let failed = next.is_err();
                if tx.send(next).is_err() || failed {
                    break;
                }
            }
        });
        let mut more = each(first, first_line)?;
        while more {
            match rx.recv() {
                Ok(next) => {
                    let (text, line) = next?;
                    more = each(text, line)?;
                }
                Err(_) => break,
            }
        }
        // Dropping the receiver stops a cutter still reading (past the `limit`).
        drop(rx);
        cutter
            .join()
            .map_err(|_| Error::Config("the thread cutting a CSV file into parts panicked".into()))
    })?;
    progress.end();
    if rows == 0 {
        return Err(Error::EmptyTable { path: path.clone() });
    }
    writer.finish()?;
    out.flush().map_err(|source| Error::Io {
        path: converted.spec.path.clone(),
        source,
    })?;
    converted.report.rows = rows;
    converted.report.warnings.extend(counts.warnings(path));
    Ok(converted)
}

/// The Parquet file being written, buffered, shared with its writer (to be flushed when the
/// writer is done).
#[derive(Clone)]
struct Shared(Arc<std::sync::Mutex<std::io::BufWriter<std::fs::File>>>);

impl Write for Shared {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .flush()
    }
}

/// A reader that counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The text of a CSV file cut into parts of whole records.
struct Texts {
    reader: Box<dyn Read + Send>,
    d: Dialect,
    path: PathBuf,
    /// Text read past the last part's end: the start of a record, scanned up to `scan.pos`.
    carry: Vec<u8>,
    scan: Scan,
    eof: bool,
    /// The file's line (1-based) where `carry` starts.
    line: usize,
    /// Bytes of text a part is cut at (at the last record end once it has them).
    part: usize,
}

impl Texts {
    fn new(reader: Box<dyn Read + Send>, d: Dialect, path: &Path, part: usize) -> Self {
        Texts {
            reader,
            d,
            path: path.to_path_buf(),
            carry: Vec::new(),
            scan: Scan::default(),
            eof: false,
            line: 1,
            part,
        }
    }

    /// The next part, at least the part's bytes and `records` non-empty records but for the
    /// file's last part, and the file's line it starts at; `None` at the end of the file.
    fn next(&mut self, records: usize) -> Result<Option<(Vec<u8>, usize)>> {
        let mut text = std::mem::take(&mut self.carry);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let stopped = self
                .scan
                .run(&text, self.d, self.eof, Some((self.part, records)));
            let end = self.scan.end;
            if stopped || self.eof {
                let end = if stopped { end } else { text.len() };
                if end == 0 {
                    return Ok(None);
                }
                if text.len() > self.part.saturating_mul(4) {
                    // A first part grown to hold the rows the types are inferred from.
                    whet_core::budget::check(
                        format!(
                            "the first {records} records of `{}`, read together",
                            self.path.display()
                        ),
                        (end as u64).saturating_mul(3),
                        "the table's `infer_rows`",
                    )?;
                }
                self.carry = text.split_off(end);
                self.scan.cut(end);
                let line = self.line;
                self.line += text.iter().filter(|&&b| b == b'\n').count();
                return Ok(Some((text, line)));
            }
            if text.len() - end > self.part.saturating_mul(64) {
                // One record over 64 parts: a quote that is never closed, most likely.
                let open = &text[end..];
                let (line, field) = unterminated_quote(open, self.d).unwrap_or((1, 1));
                let before = text[..end].iter().filter(|&&b| b == b'\n').count();
                return Err(Error::MalformedRow {
                    path: self.path.clone(),
                    line: self.line + before + line - 1,
                    column: "?".into(),
                    field,
                    message: format!(
                        "a record runs over {} without ending (a quoted field opens here and is \
                         not closed within it: add the closing quote, or set the table's \
                         `quote: none` if the quote is text here)",
                        whet_core::budget::show_bytes(open.len() as u64)
                    ),
                });
            }
            let n = self.reader.read(&mut buf).map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
            if n == 0 {
                self.eof = true;
            }
            text.extend_from_slice(&buf[..n]);
        }
    }
}

/// Where records end in CSV text that starts at a record's start, scanned as the text grows.
/// Records end as polars ends them: at a newline outside a quoted field; a quote opens a field
/// only at its start, and `""` inside a quoted field is a quote.
#[derive(Debug, Clone, Copy)]
struct Scan {
    /// The next byte to scan.
    pos: usize,
    in_quotes: bool,
    /// At a field's start (where a quote opens a quoted field).
    at_start: bool,
    /// The record being scanned has a character (other than `\r`).
    nonempty: bool,
    /// The position after the newline of the last record end (0: none yet).
    end: usize,
    /// Non-empty records up to `end`.
    records: usize,
}

impl Default for Scan {
    fn default() -> Self {
        Scan {
            pos: 0,
            in_quotes: false,
            at_start: true,
            nonempty: false,
            end: 0,
            records: 0,
        }
    }
}

impl Scan {
    /// Scans `text` from `pos` on, to its end, or with `stop: (bytes, records)` to the first
    /// record end past `bytes` bytes and `records` non-empty records (then `true`). A quote
    /// inside a quoted field that is the text's last byte is left for the next call, unless
    /// `eof`: whether it closes the field depends on the byte after it.
    fn run(&mut self, text: &[u8], d: Dialect, eof: bool, stop: Option<(usize, usize)>) -> bool {
        let mut i = self.pos;
        while i < text.len() {
            let c = text[i];
            if self.in_quotes {
                if Some(c) == d.quote {
                    match text.get(i + 1) {
                        Some(&n) if n == c => i += 1,
                        None if !eof => break,
                        _ => self.in_quotes = false,
                    }
                }
            } else if c == b'\n' {
                self.end = i + 1;
                if self.nonempty {
                    self.records += 1;
                }
                (self.at_start, self.nonempty) = (true, false);
                if stop.is_some_and(|(bytes, records)| self.end >= bytes && self.records >= records)
                {
                    self.pos = i + 1;
                    return true;
                }
            } else {
                if Some(c) == d.quote && self.at_start {
                    self.in_quotes = true;
                }
                self.at_start = c == d.sep;
                if c != b'\r' {
                    self.nonempty = true;
                }
            }
            i += 1;
        }
        self.pos = i;
        false
    }

    /// The scan of the text after `end` (where the text was cut at a record end).
    fn cut(&mut self, end: usize) {
        self.pos -= end;
        self.end = 0;
        self.records = 0;
    }
}

/// The position after the first record (the header) of CSV text.
fn header_end(text: &[u8], d: Dialect) -> usize {
    records_end(text, d, 1)
}

/// The position after the `records`-th non-empty record of CSV text (its end when it has
/// fewer).
pub(super) fn records_end(text: &[u8], d: Dialect, records: usize) -> usize {
    let mut scan = Scan::default();
    if scan.run(text, d, true, Some((0, records))) {
        scan.end
    } else {
        text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table read, or why not.
    type Loaded = Result<(DataFrame, LoadReport)>;

    /// `text` written to `name` in `dir`, read whole by [`crate::load_table`] and converted in
    /// parts of `part` bytes: the two results (the converted file read back).
    fn both(
        dir: &Path,
        name: &str,
        text: &[u8],
        spec: impl Fn(&mut TableSpec),
        part: usize,
    ) -> (Loaded, Loaded) {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let mut s = TableSpec::new(&path);
        spec(&mut s);
        let whole = crate::load_table(&s);
        let parts = to_parquet(
            &s,
            &dir.join(format!("{name}-parts")),
            part,
            &whet_core::NoProgress,
        )
        .map(|c| {
            let df = crate::load_table(&c.spec).unwrap().0;
            assert!(crate::stream::row_groups(&c.spec).unwrap().len() > 1 || df.height() < 8);
            (df, c.report.clone())
        });
        (whole, parts)
    }

    fn same(r: (Loaded, Loaded)) -> DataFrame {
        let (whole, parts) = r;
        let (a, ra) = whole.unwrap();
        let (b, rb) = parts.unwrap();
        assert_eq!(a.schema(), b.schema());
        assert!(a.equals_missing(&b), "{a}\n{b}");
        assert_eq!(ra, rb);
        a
    }

    /// The test table of [`parts_read_as_the_whole_file`]: `x` is a number but in row 150
    /// (`cell`); with `multiline`, every fourth `name` spans two lines.
    fn table(cell: &str, multiline: bool) -> String {
        let mut text = String::from("id,name,x,when\r\n");
        for i in 0..200 {
            let name = match i % 4 {
                0 if multiline => "\"two\nlines\"".to_string(),
                1 => "\"a \"\"quoted\"\", b\"".to_string(),
                2 => format!("plain{i}"),
                _ => String::new(),
            };
            let x = if i == 150 {
                cell.into()
            } else {
                format!("{i}.5")
            };
            text += &format!("{i},{name},{x},2024-01-{:02}\r\n", i % 28 + 1);
            if i % 50 == 0 {
                text += "\r\n";
            }
        }
        text
    }

    /// Quoted fields with newlines, `""` escapes and separators, cut across parts of 16
    /// bytes; CRLF lines and empty lines; the types inferred from the first `infer_rows`
    /// records (which the first part holds), a later `n/a` read as missing as a whole file
    /// reads it, and a later `nope` an error naming the file's line.
    #[test]
    fn parts_read_as_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = table("n/a", true);
        let df = same(both(
            dir.path(),
            "q.csv",
            text.as_bytes(),
            |s| {
                s.infer_rows = 20;
                s.missing.push("n/a".into());
            },
            16,
        ));
        // As the whole read: polars reads each empty CRLF line as a row of missing values.
        assert_eq!(df.height(), 204);
        assert_eq!(
            df.column("name").unwrap().str().unwrap().get(0),
            Some("two\nlines")
        );
        assert_eq!(df.column("x").unwrap().dtype(), &DataType::Float64);
        assert_eq!(df.column("x").unwrap().null_count(), 5);
        assert_eq!(df.column("when").unwrap().dtype(), &DataType::Date);
        // Line 155: the header, 150 records and the empty lines after records 0, 50 and 100.
        let (whole, parts) = both(
            dir.path(),
            "q2.csv",
            table("nope", false).as_bytes(),
            |s| s.infer_rows = 20,
            16,
        );
        let (a, b) = (
            whole.unwrap_err().to_string(),
            parts.unwrap_err().to_string(),
        );
        assert_eq!(a, b);
        assert!(a.contains("line 155"), "{a}");
    }

    /// Malformed rows far into the file: the error names the same line as a whole read; with
    /// `skip_bad_rows`, the same rows are skipped and counted, the first five named; `limit`
    /// stops at the same row; Latin-1 text is decoded part by part.
    #[test]
    fn errors_skipped_rows_limit_and_encoding_as_a_whole_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("a,b,c\n");
        for i in 0..1000 {
            match i {
                400 | 700 | 701 | 702 | 703 | 704 | 900 => text += &format!("{i},x{i},1\n"),
                555 => text += "1,2\n",
                _ => text += &format!("{i},{},{}\n", i * 2, i % 7),
            }
        }
        // (Without the short row: a whole read names the first short row of the file before
        // any cell that does not parse, the parts the first problem of the first part that has
        // one.)
        let (whole, parts) = both(
            dir.path(),
            "bad.csv",
            text.replace("1,2\n", "1,2,3\n").as_bytes(),
            |s| s.infer_rows = 10,
            64,
        );
        let (a, b) = (
            whole.unwrap_err().to_string(),
            parts.unwrap_err().to_string(),
        );
        assert_eq!(a, b);
        assert!(a.contains("line 402"), "{a}");
        let df = same(both(
            dir.path(),
            "skip.csv",
            text.as_bytes(),
            |s| {
                s.infer_rows = 10;
                s.skip_bad_rows = true;
            },
            64,
        ));
        assert_eq!(df.height(), 1000 - 8);
        let df = same(both(
            dir.path(),
            "limit.csv",
            text.as_bytes(),
            |s| {
                s.infer_rows = 10;
                s.limit = Some(300);
            },
            64,
        ));
        assert_eq!(df.height(), 300);
        let mut latin = b"city,n\n".to_vec();
        for i in 0..300 {
            latin.extend_from_slice(b"Z\xfcrich,");
            latin.extend_from_slice(format!("{i}\n").as_bytes());
        }
        let df = same(both(
            dir.path(),
            "latin.csv",
            &latin,
            |s| {
                s.infer_rows = 10;
                s.encoding = crate::load::TextEncoding::Latin1;
            },
            64,
        ));
        assert_eq!(
            df.column("city").unwrap().str().unwrap().get(299),
            Some("Zürich")
        );
    }

    /// A quote that is never closed: located, not read to the end of memory.
    #[test]
    fn an_open_quote_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("a,b\n1,2\n3,\"open\n");
        for i in 0..5000 {
            text += &format!("{i},{i}\n");
        }
        let path = dir.path().join("open.csv");
        std::fs::write(&path, &text).unwrap();
        let mut s = TableSpec::new(&path);
        s.infer_rows = 1;
        let e = to_parquet(&s, &dir.path().join("p"), 64, &whet_core::NoProgress)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
        assert!(
            !dir.path().join("p").exists(),
            "the folder goes when converting fails"
        );
    }

    /// Record ends: quotes open only at a field's start, `""` inside, a quote as the text's
    /// last byte waits for the next byte.
    #[test]
    fn records_end_outside_quotes() {
        let d = Dialect {
            sep: b',',
            quote: Some(b'"'),
        };
        let ends = |t: &str| {
            let mut s = Scan::default();
            s.run(t.as_bytes(), d, false, None);
            (s.end, s.records)
        };
        assert_eq!(ends("a,b\n1,2\n3"), (8, 2));
        assert_eq!(ends("a,\"x\ny\"\n1"), (8, 1));
        assert_eq!(ends("a,\"x\"\"\ny\"\n"), (10, 1));
        assert_eq!(ends("a,b\"c\nd\n"), (8, 2));
        assert_eq!(ends("\n\r\na\n"), (5, 1));
        // `"x"` then the text ends: whether the quote closes waits for the next byte.
        let mut s = Scan::default();
        s.run(b"a,\"x\"", d, false, None);
        assert_eq!(s.pos, 4);
        s.run(b"a,\"x\"\"\n\"\n", d, false, None);
        assert_eq!((s.end, s.records), (9, 1));
    }
}
