//! A structural check of a Parquet file before polars reads it.
//!
//! polars 0.55 trusts the lengths and counts it decodes: a list length in the Thrift footer goes
//! straight to `Vec::with_capacity`, and a negative `i32` count in a page header becomes a
//! `usize` near 2^64 from which a validity bitmap of about 2^61 bytes is sized. On stable Rust a
//! failed allocation aborts the process, which no error handling can catch. This module walks the
//! file's footer and every page header (with seeks, never reading page data) and refuses a file
//! whose declared sizes cannot be true, with the byte offset of the first one.
//!
//! Formats: the Thrift compact protocol
//! (<https://github.com/apache/thrift/blob/master/doc/specs/thrift-compact-protocol.md>) and the
//! Parquet metadata (`parquet.thrift` of apache/parquet-format: `FileMetaData`, `RowGroup`,
//! `ColumnChunk`, `ColumnMetaData`, `PageHeader`).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Error, Result};

/// Deepest nesting of structs, lists and maps accepted in a footer or page header.
const MAX_DEPTH: usize = 64;
/// Largest uncompressed page polars is asked to allocate (and `i32::MAX` is the format's limit).
const MAX_PAGE_BYTES: i64 = 2 << 30;
/// First read of a page header; doubled while the header does not fit, up to [`MAX_HEADER`].
const HEADER_WINDOW: usize = 512;
/// Largest page header accepted (statistics of long strings make headers large).
const MAX_HEADER: usize = 16 << 20;

/// A violation found by the walker: the file offset and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt {
    /// Byte offset in the file.
    pub offset: u64,
    /// What is wrong, with the numbers.
    pub message: String,
    /// The walk ran out of bytes (a longer read may succeed for a page header).
    pub eof: bool,
}

type Walk<T> = std::result::Result<T, Corrupt>;

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Thrift compact-protocol types (the low nibble of a field header).
mod ty {
    pub const STOP: u8 = 0;
    pub const TRUE: u8 = 1;
    pub const FALSE: u8 = 2;
    pub const BYTE: u8 = 3;
    pub const I16: u8 = 4;
    pub const I32: u8 = 5;
    pub const I64: u8 = 6;
    pub const DOUBLE: u8 = 7;
    pub const BINARY: u8 = 8;
    pub const LIST: u8 = 9;
    pub const SET: u8 = 10;
    pub const MAP: u8 = 11;
    pub const STRUCT: u8 = 12;
    pub const UUID: u8 = 13;
}

/// How polars reads a field: by its id, whatever type its header declares (so a field whose
/// header lies must be read the way polars will read it, not skipped by its declared type).
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `read_i8`: one byte.
    I8,
    /// `read_i16/i32/i64`: a zigzag varint.
    Int,
    /// A varint length and that many bytes.
    Bin,
    /// A bool: polars takes it from the field header (the field must be declared bool).
    Bool,
    /// A struct with the fields polars reads by id (others are skipped by declared type).
    Struct(&'static [(i16, Kind)]),
    /// A list whose elements polars reads as this kind, whatever the list header declares.
    List(&'static Kind),
}

/// Thrift structs as polars 0.55 reads them (`parquet.thrift` field ids).
mod schema {
    use super::Kind::{self, Bin, Bool, I8, Int, List, Struct};
    const E: Kind = Struct(&[]);
    const TIME_UNIT: Kind = Struct(&[(1, E), (2, E), (3, E)]);
    const LOGICAL: Kind = Struct(&[
        (1, E),
        (2, E),
        (3, E),
        (4, E),
        (5, Struct(&[(1, Int), (2, Int)])),
        (6, E),
        (7, Struct(&[(1, Bool), (2, TIME_UNIT)])),
        (8, Struct(&[(1, Bool), (2, TIME_UNIT)])),
        (10, Struct(&[(1, I8), (2, Bool)])),
        (11, E),
        (12, E),
        (13, E),
        (14, E),
        (15, E),
    ]);
    const SCHEMA_ELEMENT: Kind = Struct(&[
        (1, Int),
        (2, Int),
        (3, Int),
        (4, Bin),
        (5, Int),
        (6, Int),
        (7, Int),
        (8, Int),
        (9, Int),
        (10, LOGICAL),
    ]);
    pub(super) const STATISTICS: Kind = Struct(&[
        (1, Bin),
        (2, Bin),
        (3, Int),
        (4, Int),
        (5, Bin),
        (6, Bin),
        (7, Bool),
        (8, Bool),
    ]);
    pub(super) const COLUMN_META: &[(i16, Kind)] = &[
        (1, Int),
        (2, List(&Int)),
        (3, List(&Bin)),
        (4, Int),
        (5, Int),
        (6, Int),
        (7, Int),
        (9, Int),
        (10, Int),
        (11, Int),
        (12, STATISTICS),
        (14, Int),
        (15, Int),
    ];
    pub(super) const COLUMN_CHUNK: &[(i16, Kind)] = &[
        (1, Bin),
        (2, Int),
        (3, Struct(COLUMN_META)),
        (4, Int),
        (5, Int),
        (6, Int),
        (7, Int),
    ];
    pub(super) const ROW_GROUP: &[(i16, Kind)] = &[
        (1, List(&Struct(COLUMN_CHUNK))),
        (2, Int),
        (3, Int),
        (4, List(&Struct(&[(1, Int), (2, Bool), (3, Bool)]))),
        (5, Int),
        (6, Int),
        (7, Int),
    ];
    pub(super) const FILE_META: &[(i16, Kind)] = &[
        (1, Int),
        (2, List(&SCHEMA_ELEMENT)),
        (3, Int),
        (4, List(&Struct(ROW_GROUP))),
        (5, List(&Struct(&[(1, Bin), (2, Bin)]))),
        (6, Bin),
        (7, List(&Struct(&[(1, E), (2, E)]))),
    ];
    // PageHeader as polars-parquet-format's generated reader reads it (also by id).
    pub(super) const DATA_PAGE: &[(i16, Kind)] =
        &[(1, Int), (2, Int), (3, Int), (4, Int), (5, STATISTICS)];
    pub(super) const DICT_PAGE: &[(i16, Kind)] = &[(1, Int), (2, Int), (3, Bool)];
    pub(super) const DATA_PAGE_V2: &[(i16, Kind)] = &[
        (1, Int),
        (2, Int),
        (3, Int),
        (4, Int),
        (5, Int),
        (6, Int),
        (7, Bool),
        (8, STATISTICS),
    ];
    pub(super) const PAGE_HEADER: &[(i16, Kind)] = &[
        (1, Int),
        (2, Int),
        (3, Int),
        (4, Int),
        (5, Struct(DATA_PAGE)),
        (6, E),
        (7, Struct(DICT_PAGE)),
        (8, Struct(DATA_PAGE_V2)),
    ];
}

/// A bounds-checked reader of Thrift compact-protocol bytes at a known file offset.
pub(crate) struct Thrift<'a> {
    buf: &'a [u8],
    pos: usize,
    /// File offset of `buf[0]`.
    base: u64,
    /// `footer` or `page header`: used in messages.
    what: &'static str,
}

impl<'a> Thrift<'a> {
    pub(crate) fn new(buf: &'a [u8], base: u64, what: &'static str) -> Self {
        Self {
            buf,
            pos: 0,
            base,
            what,
        }
    }

    /// Bytes consumed so far.
    pub(crate) fn consumed(&self) -> usize {
        self.pos
    }

    fn at(&self, pos: usize) -> u64 {
        self.base + pos as u64
    }

    fn fail(&self, pos: usize, message: String) -> Corrupt {
        Corrupt {
            offset: self.at(pos),
            message,
            eof: false,
        }
    }

    fn eof(&self, start: usize, need: &str) -> Corrupt {
        Corrupt {
            offset: self.at(start),
            message: format!(
                "{need} runs past the end of the {}-byte {}",
                thousands(self.buf.len() as u64),
                self.what
            ),
            eof: true,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Walk<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.eof(self.pos, "a value"))?;
        self.pos += 1;
        Ok(b)
    }

    fn skip(&mut self, n: usize, start: usize, need: &str) -> Walk<()> {
        if n > self.remaining() {
            return Err(self.eof(start, need));
        }
        self.pos += n;
        Ok(())
    }

    fn varint(&mut self) -> Walk<u64> {
        let start = self.pos;
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| self.eof(start, "a varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.fail(start, "a varint longer than 10 bytes".into()))
    }

    fn zigzag(&mut self) -> Walk<i64> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A count (list size, binary length) that must fit in the bytes left: every element takes
    /// at least `min_bytes` bytes.
    fn count(
        &mut self,
        n: u64,
        start: usize,
        min_bytes: u64,
        kind: &str,
        unit: &str,
    ) -> Walk<usize> {
        let left = self.remaining() as u64;
        if n.saturating_mul(min_bytes) > left {
            return Err(self.fail(
                start,
                format!(
                    "{kind} of {} {unit} cannot fit in the {} bytes left of the {}-byte {}",
                    thousands(n),
                    thousands(left),
                    thousands(self.buf.len() as u64),
                    self.what
                ),
            ));
        }
        Ok(n as usize)
    }

    /// Reads an integer field as polars does (a zigzag varint, whatever the declared type).
    fn int(&mut self) -> Walk<i64> {
        self.zigzag()
    }

    /// Reads a value the way polars reads it: by the schema's kind. `declared` is the field
    /// header's type (`None` for a list element).
    fn read_kind(&mut self, kind: Kind, declared: Option<u8>, id: i16, depth: usize) -> Walk<()> {
        let start = self.pos;
        match kind {
            Kind::I8 => self.byte().map(drop),
            Kind::Int => self.varint().map(drop),
            Kind::Bin => {
                let n = self.varint()?;
                let n = self.count(n, start, 1, "a string", "bytes")?;
                self.skip(n, start, "a string")
            }
            Kind::Bool => match declared {
                Some(ty::TRUE | ty::FALSE) => Ok(()),
                _ => Err(self.fail(
                    start,
                    format!(
                        "field {id} must be a bool but is declared as thrift type {declared:?}"
                    ),
                )),
            },
            Kind::Struct(fields) => {
                self.walk_struct(depth + 1, fields, &mut |_, _, _, _| Ok(false))
            }
            Kind::List(elem) => {
                let (n, _) = self.list_header()?;
                if depth + 1 > MAX_DEPTH {
                    return Err(self.fail(
                        start,
                        format!("nesting deeper than {MAX_DEPTH} structs, lists and maps"),
                    ));
                }
                for _ in 0..n {
                    self.read_kind(*elem, None, id, depth + 1)?;
                }
                Ok(())
            }
        }
    }

    /// Skips one value of type `t` at nesting `depth`, checking every length.
    fn skip_value(&mut self, t: u8, depth: usize) -> Walk<()> {
        if depth > MAX_DEPTH {
            return Err(self.fail(
                self.pos,
                format!("nesting deeper than {MAX_DEPTH} structs, lists and maps"),
            ));
        }
        let start = self.pos;
        match t {
            ty::TRUE | ty::FALSE => Ok(()),
            ty::BYTE => self.byte().map(drop),
            ty::I16 | ty::I32 | ty::I64 => self.varint().map(drop),
            ty::DOUBLE => self.skip(8, start, "a double"),
            ty::UUID => self.skip(16, start, "a uuid"),
            ty::BINARY => {
                let n = self.varint()?;
                let n = self.count(n, start, 1, "a string", "bytes")?;
                self.skip(n, start, "a string")
            }
            ty::LIST | ty::SET => {
                let (n, elem) = self.list_header()?;
                for _ in 0..n {
                    self.skip_elem(elem, depth + 1)?;
                }
                Ok(())
            }
            ty::MAP => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                let n = self.count(n, start, 2, "a map", "entries")?;
                for _ in 0..n {
                    self.skip_elem(kv >> 4, depth + 1)?;
                    self.skip_elem(kv & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            ty::STRUCT => self.walk_struct(depth + 1, &[], &mut |_, _, _, _| Ok(false)),
            other => Err(self.fail(start, format!("unknown thrift type {other}"))),
        }
    }

    /// A list element: booleans take one byte each inside lists.
    fn skip_elem(&mut self, t: u8, depth: usize) -> Walk<()> {
        if t == ty::TRUE || t == ty::FALSE {
            self.byte().map(drop)
        } else {
            self.skip_value(t, depth)
        }
    }

    /// Reads a list/set header: `(size, element type)`, the size checked against the bytes left.
    fn list_header(&mut self) -> Walk<(usize, u8)> {
        let start = self.pos;
        let h = self.byte()?;
        let elem = h & 0x0f;
        let n = if h >> 4 == 15 {
            self.varint()?
        } else {
            u64::from(h >> 4)
        };
        let n = self.count(n, start, 1, "a list", "elements")?;
        Ok((n, elem))
    }

    /// Walks a struct (after its opening, up to and including the stop byte). `field` is called
    /// with `(reader, field id, type, depth)` and returns whether it consumed the value; otherwise
    /// a field of `fields` is read as polars reads it, and any other is skipped by its type.
    fn walk_struct(
        &mut self,
        depth: usize,
        fields: &'static [(i16, Kind)],
        field: &mut dyn FnMut(&mut Self, i16, u8, usize) -> Walk<bool>,
    ) -> Walk<()> {
        if depth > MAX_DEPTH {
            return Err(self.fail(
                self.pos,
                format!("nesting deeper than {MAX_DEPTH} structs, lists and maps"),
            ));
        }
        let mut last = 0i16;
        loop {
            let start = self.pos;
            let h = self.byte()?;
            let t = h & 0x0f;
            if t == ty::STOP {
                return Ok(());
            }
            let id = if h >> 4 == 0 {
                let id = self.zigzag()?;
                if !(i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&id) {
                    return Err(self.fail(start, format!("field id {id} is not an i16")));
                }
                id as i16
            } else {
                last.wrapping_add(i16::from(h >> 4))
            };
            last = id;
            if !field(self, id, t, depth)? {
                match fields.iter().find(|(f, _)| *f == id) {
                    Some(&(_, kind)) => self.read_kind(kind, Some(t), id, depth)?,
                    None => self.skip_value(t, depth)?,
                }
            }
        }
    }

    /// Walks a list of structs (whatever element type the header declares, as polars reads
    /// it), calling `each` on every element.
    fn struct_list(
        &mut self,
        depth: usize,
        each: &mut dyn FnMut(&mut Self, usize) -> Walk<()>,
    ) -> Walk<()> {
        let (n, _) = self.list_header()?;
        for _ in 0..n {
            each(self, depth + 1)?;
        }
        Ok(())
    }
}

/// What the page walk needs from one `ColumnChunk`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ChunkMeta {
    /// `ColumnChunk.file_path` is set: the data is in another file.
    pub external: bool,
    /// `ColumnChunk.meta_data` is present.
    pub has_meta: bool,
    /// `ColumnMetaData.num_values` (5).
    pub num_values: i64,
    /// `ColumnMetaData.total_uncompressed_size` (6).
    pub total_uncompressed_size: i64,
    /// `ColumnMetaData.total_compressed_size` (7).
    pub total_compressed_size: i64,
    /// `ColumnMetaData.data_page_offset` (9).
    pub data_page_offset: i64,
    /// `ColumnMetaData.dictionary_page_offset` (11).
    pub dictionary_page_offset: Option<i64>,
}

/// What the page walk needs from one `RowGroup`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RowGroupMeta {
    /// `RowGroup.num_rows` (3).
    pub num_rows: i64,
    /// `RowGroup.columns` (1).
    pub columns: Vec<ChunkMeta>,
}

fn column_meta(r: &mut Thrift<'_>, depth: usize, c: &mut ChunkMeta) -> Walk<()> {
    c.has_meta = true;
    r.walk_struct(depth + 1, schema::COLUMN_META, &mut |r, id, _, _| {
        let slot = match id {
            5 => &mut c.num_values,
            6 => &mut c.total_uncompressed_size,
            7 => &mut c.total_compressed_size,
            9 => &mut c.data_page_offset,
            11 => {
                c.dictionary_page_offset = Some(r.int()?);
                return Ok(true);
            }
            _ => return Ok(false),
        };
        *slot = r.int()?;
        Ok(true)
    })
}

/// Walks a whole `FileMetaData` and returns its row groups' page-walk facts.
pub(crate) fn walk_footer(r: &mut Thrift<'_>) -> Walk<Vec<RowGroupMeta>> {
    let mut groups = Vec::new();
    r.walk_struct(0, schema::FILE_META, &mut |r, id, _, depth| {
        if id != 4 {
            return Ok(false);
        }
        r.struct_list(depth, &mut |r, depth| {
            let mut g = RowGroupMeta::default();
            r.walk_struct(depth, schema::ROW_GROUP, &mut |r, id, _, depth| match id {
                3 => {
                    g.num_rows = r.int()?;
                    Ok(true)
                }
                1 => {
                    r.struct_list(depth, &mut |r, depth| {
                        let mut c = ChunkMeta::default();
                        r.walk_struct(
                            depth,
                            schema::COLUMN_CHUNK,
                            &mut |r, id, _, depth| match id {
                                1 => {
                                    c.external = true;
                                    Ok(false)
                                }
                                3 => column_meta(r, depth, &mut c).map(|()| true),
                                _ => Ok(false),
                            },
                        )?;
                        g.columns.push(c);
                        Ok(())
                    })?;
                    Ok(true)
                }
                _ => Ok(false),
            })?;
            groups.push(g);
            Ok(())
        })?;
        Ok(true)
    })?;
    Ok(groups)
}

/// The counts of one `PageHeader` (absent fields are 0 / `None`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PageMeta {
    /// `PageHeader.type` (1).
    pub page_type: i64,
    /// `uncompressed_page_size` (2).
    pub uncompressed: i64,
    /// `compressed_page_size` (3).
    pub compressed: i64,
    /// `num_values` of the data (5), dictionary (7) or v2 data (8) page header.
    pub num_values: Option<i64>,
    /// v2: `num_nulls` (2), `num_rows` (3), `definition_levels_byte_length` (5),
    /// `repetition_levels_byte_length` (6).
    pub v2: Option<[i64; 4]>,
}

/// Walks one `PageHeader`.
pub(crate) fn walk_page_header(r: &mut Thrift<'_>) -> Walk<PageMeta> {
    let mut p = PageMeta::default();
    r.walk_struct(0, schema::PAGE_HEADER, &mut |r, id, _, depth| {
        match id {
            1 => p.page_type = r.int()?,
            2 => p.uncompressed = r.int()?,
            3 => p.compressed = r.int()?,
            5 | 7 => {
                let fields = if id == 5 {
                    schema::DATA_PAGE
                } else {
                    schema::DICT_PAGE
                };
                r.walk_struct(depth + 1, fields, &mut |r, id, _, _| {
                    if id == 1 {
                        p.num_values = Some(r.int()?);
                        return Ok(true);
                    }
                    Ok(false)
                })?
            }
            8 => {
                let mut v2 = [0i64; 4];
                r.walk_struct(depth + 1, schema::DATA_PAGE_V2, &mut |r, id, _, _| {
                    let slot = match id {
                        1 => {
                            p.num_values = Some(r.int()?);
                            return Ok(true);
                        }
                        2 => 0,
                        3 => 1,
                        5 => 2,
                        6 => 3,
                        _ => return Ok(false),
                    };
                    v2[slot] = r.int()?;
                    Ok(true)
                })?;
                p.v2 = Some(v2);
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

fn corrupt(path: &Path, part: String, c: Corrupt) -> Error {
    Error::CorruptParquet {
        path: path.to_path_buf(),
        part,
        offset: c.offset,
        message: c.message,
    }
}

/// Checks the structure of the Parquet file at `path`: magic bytes, footer length, every length
/// in the Thrift footer, and every page header of every column chunk (position, sizes, counts).
/// Reads only the footer and the page headers. Returns the uncompressed bytes the column chunks
/// declare (what reading every column costs, before polars' own overheads).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::CorruptParquet`] naming the file, the
/// byte offset and the violation.
pub fn check_parquet(path: &Path) -> Result<u64> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let bad = |part: &str, offset: u64, message: String| Error::CorruptParquet {
        path: path.to_path_buf(),
        part: part.to_string(),
        offset,
        message,
    };
    if len < 12 {
        return Err(bad(
            "file",
            0,
            format!("{len} bytes is shorter than the 12 bytes of an empty Parquet file"),
        ));
    }
    let mut head = [0u8; 4];
    file.read_exact(&mut head).map_err(io)?;
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::Start(len - 8)).map_err(io)?;
    file.read_exact(&mut tail).map_err(io)?;
    if &head != b"PAR1" {
        return Err(bad(
            "file",
            0,
            format!("starts with {head:02x?}, not the magic `PAR1`"),
        ));
    }
    if &tail[4..] != b"PAR1" {
        return Err(bad(
            "file",
            len - 4,
            format!("ends with {:02x?}, not the magic `PAR1`", &tail[4..]),
        ));
    }
    let footer_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if footer_len > len - 12 {
        return Err(bad(
            "footer",
            len - 8,
            format!(
                "a footer length of {} bytes does not fit in the {}-byte file",
                thousands(footer_len),
                thousands(len)
            ),
        ));
    }
    let footer_start = len - 8 - footer_len;
    let mut footer = vec![0u8; footer_len as usize];
    file.seek(SeekFrom::Start(footer_start)).map_err(io)?;
    file.read_exact(&mut footer).map_err(io)?;
    let mut r = Thrift::new(&footer, footer_start, "footer");
    let groups = walk_footer(&mut r).map_err(|c| corrupt(path, "footer".into(), c))?;
    let mut buf = Vec::new();
    let mut uncompressed = 0u64;
    for (gi, g) in groups.iter().enumerate() {
        if g.num_rows < 0 {
            return Err(bad(
                "footer",
                footer_start,
                format!("row group {gi} declares {} rows", thousands(g.num_rows)),
            ));
        }
        for (ci, c) in g.columns.iter().enumerate() {
            if c.external || !c.has_meta {
                continue;
            }
            check_chunk(&mut file, footer_start, c, &mut buf).map_err(|e| match e {
                ChunkError::Io(source) => io(source),
                ChunkError::Corrupt(c) => {
                    corrupt(path, format!("column chunk {ci} of row group {gi}"), c)
                }
            })?;
            // `check_chunk` refused negative sizes.
            uncompressed = uncompressed.saturating_add(c.total_uncompressed_size as u64);
        }
    }
    Ok(uncompressed)
}

enum ChunkError {
    Io(std::io::Error),
    Corrupt(Corrupt),
}

impl From<Corrupt> for ChunkError {
    fn from(c: Corrupt) -> Self {
        Self::Corrupt(c)
    }
}

fn check_chunk(
    file: &mut std::fs::File,
    data_end: u64,
    c: &ChunkMeta,
    buf: &mut Vec<u8>,
) -> std::result::Result<(), ChunkError> {
    let err = |offset: u64, message: String| {
        ChunkError::Corrupt(Corrupt {
            offset,
            message,
            eof: false,
        })
    };
    // polars reads the chunk from the dictionary page offset when it is set (as u64).
    let start = c.dictionary_page_offset.unwrap_or(c.data_page_offset);
    let size = c.total_compressed_size;
    if start < 4 || size < 0 || (start as u64).saturating_add(size as u64) > data_end {
        return Err(err(
            start.max(0) as u64,
            format!(
                "the column data at byte {} of {} bytes lies outside the {}-byte data part of the file",
                thousands(start),
                thousands(size),
                thousands(data_end)
            ),
        ));
    }
    if c.num_values < 0 || c.total_uncompressed_size < 0 {
        return Err(err(
            start as u64,
            format!(
                "the column metadata declares {} values and {} uncompressed bytes",
                thousands(c.num_values),
                thousands(c.total_uncompressed_size)
            ),
        ));
    }
    let end = start as u64 + size as u64;
    let max_page = c.total_uncompressed_size.min(MAX_PAGE_BYTES);
    let mut pos = start as u64;
    let mut values = 0i64;
    while pos < end {
        let mut window = HEADER_WINDOW;
        let (page, header_len) = loop {
            let n = (window as u64).min(end - pos) as usize;
            buf.resize(n, 0);
            file.seek(SeekFrom::Start(pos)).map_err(ChunkError::Io)?;
            file.read_exact(buf).map_err(ChunkError::Io)?;
            let mut r = Thrift::new(buf, pos, "page header window");
            match walk_page_header(&mut r) {
                Ok(p) => break (p, r.consumed() as u64),
                Err(e) if e.eof && n == window && window < MAX_HEADER => window *= 4,
                Err(mut e) => {
                    if e.eof {
                        e.message = format!(
                            "a page header runs past the end of the column chunk ({} bytes from byte {})",
                            thousands(size),
                            thousands(start)
                        );
                    }
                    return Err(e.into());
                }
            }
        };
        let body = end - pos - header_len;
        if page.compressed < 0 || page.compressed as u64 > body {
            return Err(err(
                pos,
                format!(
                    "a page of {} compressed bytes does not fit in the {} bytes left of the column chunk",
                    thousands(page.compressed),
                    thousands(body)
                ),
            ));
        }
        if page.uncompressed < 0 || page.uncompressed > max_page {
            return Err(err(
                pos,
                format!(
                    "a page of {} uncompressed bytes (valid: 0 to {}, the column chunk's uncompressed size)",
                    thousands(page.uncompressed),
                    thousands(max_page)
                ),
            ));
        }
        if let Some(n) = page.num_values {
            if n < 0 || n > c.num_values {
                return Err(err(
                    pos,
                    format!(
                        "a page of {} values (valid: 0 to {}, the column chunk's value count)",
                        thousands(n),
                        thousands(c.num_values)
                    ),
                ));
            }
            // Dictionary pages (type 2) count dictionary entries, not column values.
            if page.page_type != 2 {
                values = values.saturating_add(n);
                if values > c.num_values {
                    return Err(err(
                        pos,
                        format!(
                            "the pages hold more values ({}) than the column chunk declares ({})",
                            thousands(values),
                            thousands(c.num_values)
                        ),
                    ));
                }
            }
        }
        if let Some([nulls, rows, def, rep]) = page.v2 {
            let n = page.num_values.unwrap_or(0);
            let levels = def.saturating_add(rep);
            if nulls < 0
                || nulls > n
                || rows < 0
                || rows > n.max(0)
                || def < 0
                || rep < 0
                || levels > page.compressed.min(page.uncompressed)
            {
                return Err(err(
                    pos,
                    format!(
                        "a v2 data page of {} values declares {} nulls, {} rows and {} + {} level bytes in {} compressed / {} uncompressed bytes",
                        thousands(n),
                        thousands(nulls),
                        thousands(rows),
                        thousands(def),
                        thousands(rep),
                        thousands(page.compressed),
                        thousands(page.uncompressed)
                    ),
                ));
            }
        }
        pos += header_len + page.compressed as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zigzag varint.
    fn zz(v: i64) -> Vec<u8> {
        uvar(((v << 1) ^ (v >> 63)) as u64)
    }

    fn uvar(mut u: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (u & 0x7f) as u8;
            u >>= 7;
            if u == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    /// FileMetaData { 1: version, 2: schema [], 3: num_rows, 4: [RowGroup { 1: [ColumnChunk {
    /// 2: file_offset, 3: ColumnMetaData {...} }], 2: total_byte_size, 3: num_rows }] }
    fn footer(list_len: Option<u64>) -> Vec<u8> {
        let mut f = vec![0x15];
        f.extend(zz(2)); // 1: version
        f.push(0x19); // 2: list
        f.push(0x0c); // empty list of structs
        f.push(0x16);
        f.extend(zz(10)); // 3: num_rows
        f.push(0x19); // 4: row_groups
        match list_len {
            None => f.push(0x1c),
            Some(n) => {
                f.push(0xfc);
                f.extend(uvar(n));
            }
        }
        // RowGroup
        f.push(0x19); // 1: columns
        f.push(0x1c);
        // ColumnChunk
        f.push(0x26); // 2: file_offset
        f.extend(zz(4));
        f.push(0x1c); // 3: meta_data
        f.push(0x15); // 1: type
        f.extend(zz(1));
        f.push(0x19); // 2: encodings
        f.push(0x15);
        f.extend(zz(0));
        f.push(0x19); // 3: path_in_schema
        f.push(0x18);
        f.extend(uvar(1));
        f.push(b'x');
        f.push(0x15); // 4: codec
        f.extend(zz(0));
        f.push(0x16); // 5: num_values
        f.extend(zz(10));
        f.push(0x16); // 6
        f.extend(zz(60));
        f.push(0x16); // 7
        f.extend(zz(55));
        f.push(0x26); // 9
        f.extend(zz(4));
        f.push(0x00); // end ColumnMetaData
        f.push(0x00); // end ColumnChunk
        f.push(0x16); // 2: total_byte_size
        f.extend(zz(60));
        f.push(0x16); // 3: num_rows
        f.extend(zz(10));
        f.push(0x00); // end RowGroup
        f.push(0x00); // end FileMetaData
        f
    }

    #[test]
    fn valid_footer_yields_row_groups() {
        let f = footer(None);
        let mut r = Thrift::new(&f, 100, "footer");
        let groups = walk_footer(&mut r).unwrap();
        assert_eq!(r.consumed(), f.len());
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].num_rows, 10);
        let c = &groups[0].columns[0];
        assert_eq!(
            (
                c.num_values,
                c.total_uncompressed_size,
                c.total_compressed_size
            ),
            (10, 60, 55)
        );
        assert_eq!((c.data_page_offset, c.dictionary_page_offset), (4, None));
        assert!(c.has_meta && !c.external);
    }

    #[test]
    fn oversized_list_is_refused_with_its_offset() {
        let f = footer(Some(31_000_000_000));
        let mut r = Thrift::new(&f, 1000, "footer");
        let e = walk_footer(&mut r).unwrap_err();
        assert!(!e.eof);
        assert_eq!(e.offset, 1000 + 7, "{e:?}");
        assert!(
            e.message
                .contains("a list of 31,000,000,000 elements cannot fit"),
            "{}",
            e.message
        );
    }

    #[test]
    fn oversized_string_is_refused() {
        // { 1: binary of declared length 1000 } with 3 bytes after the length.
        // 6: created_by.
        let mut f = vec![0x68];
        f.extend(uvar(1000));
        f.extend(b"abc");
        let mut r = Thrift::new(&f, 0, "footer");
        let e = walk_footer(&mut r).unwrap_err();
        assert!(
            e.message.contains("a string of 1,000 bytes cannot fit"),
            "{e:?}"
        );
    }

    #[test]
    fn truncated_varint_and_truncated_struct_are_refused() {
        let f = [0x16, 0xff, 0xff];
        let e = walk_footer(&mut Thrift::new(&f, 0, "footer")).unwrap_err();
        assert!(
            e.eof && e.message.contains("a varint runs past the end"),
            "{e:?}"
        );
        let f = [
            0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        let e = walk_footer(&mut Thrift::new(&f, 0, "footer")).unwrap_err();
        assert!(e.message.contains("longer than 10 bytes"), "{e:?}");
        let mut f = footer(None);
        f.pop();
        let e = walk_footer(&mut Thrift::new(&f, 0, "footer")).unwrap_err();
        assert!(e.eof, "{e:?}");
    }

    #[test]
    fn depth_bomb_is_refused() {
        // Field 15 (unknown, skipped by type) of type struct, nested 100 times, then closed.
        let mut f = vec![0xfc];
        f.extend(vec![0x1c; 99]);
        f.extend(vec![0x00; 101]);
        let e = walk_footer(&mut Thrift::new(&f, 0, "footer")).unwrap_err();
        assert!(e.message.contains("nesting deeper than 64"), "{e:?}");
        // Lists of lists too.
        let mut f = vec![0xf9];
        f.extend(vec![0x19; 100]);
        let e = walk_footer(&mut Thrift::new(&f, 0, "footer")).unwrap_err();
        assert!(e.message.contains("nesting deeper than 64"), "{e:?}");
        // A 40-deep struct is fine.
        let mut f = vec![0xfc];
        f.extend(vec![0x1c; 39]);
        f.extend(vec![0x00; 41]);
        walk_footer(&mut Thrift::new(&f, 0, "footer")).unwrap();
    }

    #[test]
    fn fields_are_read_by_id_as_polars_reads_them() {
        // 4: row_groups declared as an i32, but polars reads a list there: a list of 2^31.
        let mut f = vec![0x45, 0xf9];
        f.extend(uvar(1 << 31));
        f.extend([0; 8]);
        let e = walk_footer(&mut Thrift::new(&f, 0, "footer")).unwrap_err();
        assert!(
            e.message.contains("a list of 2,147,483,648 elements"),
            "{e:?}"
        );
        assert_eq!(e.offset, 1);
        // A bool field (SortingColumn.descending) declared as i32 would panic in polars.
        let f = [0x49, 0x1c, 0x49, 0x1c, 0x15, 0x00, 0x15, 0x02, 0, 0, 0];
        let e = walk_footer(&mut Thrift::new(&f, 0, "footer")).unwrap_err();
        assert!(e.message.contains("field 2 must be a bool"), "{e:?}");
    }

    #[test]
    fn page_header_fields() {
        // { 1: type 0, 2: 100, 3: 80, 5: { 1: -8, 2: 0 } }
        let mut h = vec![0x15];
        h.extend(zz(0));
        h.push(0x15);
        h.extend(zz(100));
        h.push(0x15);
        h.extend(zz(80));
        h.push(0x2c);
        h.push(0x15);
        h.extend(zz(-8));
        h.push(0x15);
        h.extend(zz(0));
        h.extend([0, 0]);
        let mut r = Thrift::new(&h, 0, "page header");
        let p = walk_page_header(&mut r).unwrap();
        assert_eq!(r.consumed(), h.len());
        assert_eq!(
            (p.uncompressed, p.compressed, p.num_values),
            (100, 80, Some(-8))
        );
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(-1_234_567), "-1,234,567");
        assert_eq!(thousands(31_000_000_000i64), "31,000,000,000");
    }
}
