//! Joins declared in the config: left, inner, full, semi and anti, on one or several keys, with a
//! declared cardinality that is checked on the data and a report of unmatched rows.

use polars::prelude::*;
use polars_arrow::bitmap::Bitmap;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::Issues;

use crate::error::{Error, Result};

/// The kind of join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinHow {
    /// Keep every left row; right columns are missing where nothing matches.
    #[default]
    Left,
    /// Keep matching rows only.
    Inner,
    /// Keep every row of both sides.
    Full,
    /// Keep left rows that have a match (no right columns added).
    Semi,
    /// Keep left rows that have no match (no right columns added).
    Anti,
}

/// The relation the keys are declared to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cardinality {
    /// Keys are unique on both sides.
    OneToOne,
    /// Keys are unique on the right side (a lookup table).
    ManyToOne,
}

fn default_suffix() -> String {
    "_right".into()
}

/// `- join: { with: weather, on: [origin, time_hour], how: left, cardinality: many_to_one }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// Name of the right table (a key of `data.tables`).
    pub with: String,
    /// Key columns with the same name on both sides.
    #[serde(default)]
    pub on: Vec<String>,
    /// Left key columns when the names differ (with `right_on`, same length).
    #[serde(default)]
    pub left_on: Vec<String>,
    /// Right key columns when the names differ (with `left_on`, same length).
    #[serde(default)]
    pub right_on: Vec<String>,
    /// Kind of join. Default `left`.
    #[serde(default)]
    pub how: JoinHow,
    /// Suffix for right columns whose names clash with left ones. Default `_right`.
    #[serde(default = "default_suffix")]
    pub suffix: String,
    /// Declared cardinality, checked before joining. Default: none declared (only a
    /// many-to-many join is refused).
    #[serde(default)]
    pub cardinality: Option<Cardinality>,
    /// Allow a join whose keys repeat on both sides (it multiplies rows). Default false.
    #[serde(default)]
    pub allow_many_to_many: bool,
}

impl JoinReport {
    /// Adds what joining more left rows with the same right table did (a table joined batch by
    /// batch: the counts of the left rows add up; the right's are the same each time).
    pub(crate) fn add(&mut self, more: &JoinReport) {
        self.rows_before += more.rows_before;
        self.rows_after += more.rows_after;
        self.unmatched_left += more.unmatched_left;
        self.null_keys_left += more.null_keys_left;
    }
}

impl JoinConfig {
    /// A left join on `on` with defaults: [`JoinConfig::left`] for borrowed names.
    pub fn new(with: &str, on: &[&str]) -> Self {
        Self::left(with, on.iter().copied())
    }

    /// Left and right key names.
    pub fn keys(&self) -> (Vec<String>, Vec<String>) {
        if self.on.is_empty() {
            (self.left_on.clone(), self.right_on.clone())
        } else {
            (self.on.clone(), self.on.clone())
        }
    }

    /// Cross-field checks.
    pub fn validate(&self) -> Issues {
        let mut is = Issues::new();
        let named = !self.left_on.is_empty() || !self.right_on.is_empty();
        is.check(self.on.is_empty() == named, "", || {
            "give either `on` or both `left_on` and `right_on`".into()
        });
        is.check(
            self.left_on.len() == self.right_on.len(),
            "right_on",
            || {
                format!(
                    "`left_on` has {} columns but `right_on` has {}",
                    self.left_on.len(),
                    self.right_on.len()
                )
            },
        );
        is.check(!self.suffix.is_empty(), "suffix", || {
            "must not be empty".into()
        });
        is
    }
}

/// What a join did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinReport {
    /// The right table.
    pub with: String,
    /// Kind of join.
    pub how: JoinHow,
    /// Left rows before.
    pub rows_before: usize,
    /// Rows after.
    pub rows_after: usize,
    /// Right table rows.
    pub right_rows: usize,
    /// Left rows with no matching right row (null keys never match).
    pub unmatched_left: usize,
    /// Right rows with no matching left row.
    pub unmatched_right: usize,
    /// Left rows with a missing value in a key.
    pub null_keys_left: usize,
}

fn dup_count(df: &DataFrame, keys: &[String]) -> Result<(usize, String)> {
    let sel = df.select(keys.iter().map(|s| s.as_str()))?;
    let dup = sel.is_duplicated()?;
    let n = dup.sum().unwrap_or(0) as usize;
    let example = if n > 0 {
        let first = sel.filter(&dup)?.slice(0, 1);
        let parts: Vec<String> = first
            .columns()
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c.name(),
                    c.get(0).map(|v| v.to_string()).unwrap_or_default()
                )
            })
            .collect();
        parts.join(", ")
    } else {
        String::new()
    };
    Ok((n, example))
}

/// The number of matching row pairs of a join of `left` and `right` on these keys: the sum over
/// key values of the left count times the right count (null keys never match), from the key
/// counts alone, saturating.
fn matched_pairs(left: &DataFrame, right: &DataFrame, lk: &[String], rk: &[String]) -> Result<u64> {
    let names: Vec<String> = (0..lk.len()).map(|i| format!("__whet_key{i}")).collect();
    let counts = |df: &DataFrame, keys: &[String], count: &str| -> Result<DataFrame> {
        let gb = df.group_by(keys.iter().map(String::as_str))?;
        let n: Vec<u64> = gb.get_groups().iter().map(|g| g.len() as u64).collect();
        let mut cols = gb.keys();
        for (c, name) in cols.iter_mut().zip(&names) {
            c.rename(name.as_str().into());
        }
        cols.push(Column::new(count.into(), n));
        Ok(DataFrame::new_infer_height(cols)?)
    };
    let l = counts(left, lk, "__whet_left")?;
    let r = counts(right, rk, "__whet_right")?;
    let both = l.join(&r, &names, &names, JoinArgs::new(JoinType::Inner), None)?;
    let a = both.column("__whet_left")?.u64()?;
    let b = both.column("__whet_right")?.u64()?;
    Ok(a.into_no_null_iter()
        .zip(b.into_no_null_iter())
        .fold(0u64, |s, (x, y)| s.saturating_add(x.saturating_mul(y))))
}

fn null_key_rows(df: &DataFrame, keys: &[String]) -> Result<usize> {
    if let [k] = keys {
        return Ok(df.column(k)?.null_count());
    }
    let mut mask: Option<BooleanChunked> = None;
    for k in keys {
        let m = df.column(k)?.is_null();
        mask = Some(match mask {
            None => m,
            Some(prev) => &prev | &m,
        });
    }
    Ok(mask.map(|m| m.sum().unwrap_or(0) as usize).unwrap_or(0))
}

fn check_columns(df: &DataFrame, cols: &[String], context: &str) -> Result<()> {
    for c in cols {
        if df.column(c).is_err() {
            return Err(Error::ColumnNotFound {
                column: c.clone(),
                context: context.into(),
                available: df
                    .get_column_names()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            });
        }
    }
    Ok(())
}

const MATCH: &str = "__whet_match__";

/// Right row of each key value of a many-to-one lookup: a direct table when the key values are
/// dense (the usual ids), a hash map otherwise.
enum Lookup {
    Dense { min: i64, rows: Vec<IdxSize> },
    Hashed(PlHashMap<i64, IdxSize>),
}

/// Marks "no right row" in [`Lookup::Dense`]'s slots.
const NO_ROW: IdxSize = IdxSize::MAX;

impl Lookup {
    /// `None` when a key value repeats (the caller then leaves the join to polars).
    fn build(keys: &Int64Chunked) -> Option<Lookup> {
        let n = keys.len();
        if n >= NO_ROW as usize {
            return None;
        }
        let (Some(min), Some(max)) = (keys.min(), keys.max()) else {
            return Some(Lookup::Hashed(PlHashMap::default()));
        };
        let span = (max as i128 - min as i128) as u128 + 1;
        // A direct table costs 4 bytes per possible value: use it while that stays within a
        // few times the right table's own key column.
        if span <= (8 * n as u128).max(1024) {
            let mut rows = vec![NO_ROW; span as usize];
            for (row, k) in keys.iter().enumerate() {
                if let Some(k) = k {
                    let slot = &mut rows[(k - min) as usize];
                    if *slot != NO_ROW {
                        return None;
                    }
                    *slot = row as IdxSize;
                }
            }
            Some(Lookup::Dense { min, rows })
        } else {
            let mut map = PlHashMap::with_capacity(n);
            for (row, k) in keys.iter().enumerate() {
                if let Some(k) = k
                    && map.insert(k, row as IdxSize).is_some()
                {
                    return None;
                }
            }
            Some(Lookup::Hashed(map))
        }
    }

    /// The right row of each key of `keys` into `out`, `miss` (at least the right table's height,
    /// so no row of it) where there is none.
    fn get_many(&self, keys: &[i64], out: &mut [IdxSize], miss: IdxSize) {
        match self {
            Lookup::Dense { min, rows } => {
                for (o, &k) in out.iter_mut().zip(keys) {
                    // Wrapping: keys below `min` become huge and miss the table.
                    let at = k.wrapping_sub(*min) as u64;
                    let row = usize::try_from(at).ok().and_then(|at| rows.get(at));
                    // Absent keys' slots hold `NO_ROW`, above every `miss`.
                    *o = row.map_or(miss, |&r| r.min(miss));
                }
            }
            Lookup::Hashed(map) => {
                for (o, &k) in out.iter_mut().zip(keys) {
                    *o = map.get(&k).copied().unwrap_or(miss);
                }
            }
        }
    }
}

/// The key column as 64-bit integers whose equality is the key's equality, or `None` for a key
/// type the fast path does not cover.
fn int_key(c: &Column) -> Result<Option<Int64Chunked>> {
    let dtype = c.dtype();
    let covered = matches!(
        dtype,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::Date
            | DataType::Datetime(..)
    );
    if !covered {
        return Ok(None);
    }
    let phys = c.as_materialized_series().to_physical_repr();
    let phys = if phys.dtype() == &DataType::Int64 {
        phys.into_owned()
    } else {
        phys.cast(&DataType::Int64)?
    };
    Ok(Some(phys.i64()?.clone()))
}

/// Rows of the left table a parallel job of the fast left join covers. A multiple of 8, so a
/// piece's bits of a validity mask are whole bytes.
const PIECE: usize = 1 << 16;

/// The left key column as its chunks' values (with their null masks), read by row range.
struct LeftKeys<'a> {
    /// (first row, values, validity) of each chunk.
    chunks: Vec<(usize, &'a [i64], Option<&'a Bitmap>)>,
    len: usize,
}

impl<'a> LeftKeys<'a> {
    fn new(keys: &'a Int64Chunked) -> Self {
        let mut start = 0;
        let chunks = keys
            .downcast_iter()
            .map(|a| {
                let c = (start, a.values().as_slice(), a.validity());
                start += a.len();
                c
            })
            .collect();
        LeftKeys { chunks, len: start }
    }

    /// The right row of each left row from `start` on, `miss` for a null key or a key absent
    /// on the right, written to `out` (as many rows as it holds).
    fn probe(&self, lookup: &Lookup, miss: IdxSize, start: usize, out: &mut [IdxSize]) {
        let mut c = self
            .chunks
            .partition_point(|(s, k, _)| s + k.len() <= start);
        let (mut at, mut done) = (start, 0);
        while done < out.len() {
            let (first, keys, valid) = self.chunks[c];
            let off = at - first;
            let n = (keys.len() - off).min(out.len() - done);
            let dst = &mut out[done..done + n];
            lookup.get_many(&keys[off..off + n], dst, miss);
            if let Some(valid) = valid {
                for (d, ok) in dst.iter_mut().zip(valid.clone().sliced(off, n).iter()) {
                    if !ok {
                        *d = miss;
                    }
                }
            }
            (at, done, c) = (at + n, done + n, c + 1);
        }
    }
}

/// A right column's output for one piece of left rows: filled from the piece's right rows
/// (`miss` where there is none). Type-erased, so that one pass over the left rows fills the
/// columns of every numeric type.
trait PieceSink: Send {
    fn fill(&mut self, rows: &[IdxSize]);
}

/// One numeric right column's share of a piece: its values (with one more, zero and not
/// valid, at the `miss` row, so that the copy needs no test per row) and validity when it has
/// nulls, and the piece's part of the gathered values and of their validity bytes.
struct ColumnPiece<'a, N> {
    src: &'a [N],
    src_valid: Option<&'a [bool]>,
    dst: &'a mut [N],
    dst_valid: Option<&'a mut [u8]>,
}

impl<N: Copy + Send + Sync> PieceSink for ColumnPiece<'_, N> {
    fn fill(&mut self, rows: &[IdxSize]) {
        populate(self.dst);
        for (d, &r) in self.dst.iter_mut().zip(rows) {
            *d = self.src[r as usize];
        }
        if let (Some(bytes), Some(ok)) = (self.dst_valid.as_deref_mut(), self.src_valid) {
            pack_bits(rows, bytes, |r| ok[r as usize]);
        }
    }
}

/// Backs the whole pages of `dst` with memory in one call before a pass writes them
/// (`MADV_POPULATE_WRITE`, Linux 5.14 and later), instead of one page fault per 4 KiB page
/// as the pass first touches each: the join's outputs are fresh zeroed memory (hundreds of
/// MB for ten million rows), and a profile of the 1-thread join had two thirds of its gather's
/// samples in page faults. What the memory holds does not change; where the call fails (an
/// older kernel, another page size) the pages fault in on first write as before.
fn populate<N>(dst: &mut [N]) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = dst.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(dst);
        let (lo, hi) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
        if hi > lo {
            // SAFETY: [lo, hi) lies inside `dst`, borrowed mutably here; MADV_POPULATE_WRITE
            // only maps the range's pages writable (zero-filled if they were not present),
            // never changing their contents, and its result is not needed.
            #[allow(unsafe_code)]
            unsafe {
                libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_POPULATE_WRITE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = dst;
}

/// Bits of `rows` (one piece) set where `set(row)`, packed into `bytes` (bit `i % 8` of byte
/// `i / 8`, arrow's order).
fn pack_bits(rows: &[IdxSize], bytes: &mut [u8], set: impl Fn(IdxSize) -> bool) {
    for (b, rs) in bytes.iter_mut().zip(rows.chunks(8)) {
        *b = rs
            .iter()
            .enumerate()
            .fold(0u8, |acc, (i, &r)| acc | (u8::from(set(r)) << i));
    }
}

/// A column's values and, when it has nulls, its validity (as `V`s).
type Values<N, V> = (Vec<N>, Option<Vec<V>>);

/// The right columns of one numeric type that whet gathers, type-erased ([`Group`]).
trait Gather {
    /// The group's columns' positions among the right columns.
    fn positions(&self) -> &[usize];
    /// Adds a sink per column to every piece's list (`pieces[p]`: rows `p * PIECE..`).
    fn sinks<'a>(&'a mut self, pieces: &mut [Vec<Box<dyn PieceSink + 'a>>]);
    /// The gathered columns with their positions among the right columns; `mask` (the matched
    /// rows) is the validity of a column without nulls of its own.
    fn finish(self: Box<Self>, rows: usize, mask: &Option<Bitmap>) -> Vec<(usize, Column)>;
}

/// The right columns of type `T` (at positions `at`), their values as [`ColumnPiece`] reads
/// them, and their outputs (`rows` values each, the type's zero where nothing matched, and
/// validity bytes for a column with nulls).
struct Group<T: PolarsNumericType> {
    at: Vec<usize>,
    names: Vec<PlSmallStr>,
    sources: Vec<Values<T::Native, bool>>,
    out: Vec<Values<T::Native, u8>>,
}

impl<T: PolarsNumericType> Group<T> {
    /// The columns of `right` of type `T` set up for `rows` left rows, or `None` when there
    /// are none.
    fn of(right: &[&Column], rows: usize) -> Result<Option<Box<dyn Gather>>> {
        let dtype = T::get_static_dtype();
        let at: Vec<usize> = (0..right.len())
            .filter(|&i| right[i].dtype() == &dtype)
            .collect();
        if at.is_empty() {
            return Ok(None);
        }
        let mut group = Group::<T> {
            names: Vec::with_capacity(at.len()),
            sources: Vec::with_capacity(at.len()),
            out: Vec::with_capacity(at.len()),
            at,
        };
        for &i in &group.at {
            let c = right[i].as_materialized_series().unpack::<T>()?;
            let mut values: Vec<T::Native> = c.into_no_null_iter().collect();
            values.push(T::Native::default());
            let valid = (c.null_count() > 0).then(|| {
                let mut v: Vec<bool> = c.iter().map(|x| x.is_some()).collect();
                v.push(false);
                v
            });
            let bytes = valid.as_ref().map(|_| vec![0u8; rows.div_ceil(8)]);
            group.out.push((vec![T::Native::default(); rows], bytes));
            group.sources.push((values, valid));
            group.names.push(c.name().clone());
        }
        Ok(Some(Box::new(group)))
    }
}

impl<T: PolarsNumericType> Gather for Group<T> {
    fn positions(&self) -> &[usize] {
        &self.at
    }

    fn sinks<'a>(&'a mut self, pieces: &mut [Vec<Box<dyn PieceSink + 'a>>]) {
        for ((src, src_valid), (dst, dst_valid)) in self.sources.iter().zip(&mut self.out) {
            let mut bytes = dst_valid.as_mut().map(|b| b.chunks_mut(PIECE / 8));
            for (piece, dst) in pieces.iter_mut().zip(dst.chunks_mut(PIECE)) {
                piece.push(Box::new(ColumnPiece {
                    src: src.as_slice(),
                    src_valid: src_valid.as_deref(),
                    dst,
                    dst_valid: bytes.as_mut().and_then(Iterator::next),
                }));
            }
        }
    }

    fn finish(self: Box<Self>, rows: usize, mask: &Option<Bitmap>) -> Vec<(usize, Column)> {
        let Group { at, names, out, .. } = *self;
        at.into_iter()
            .zip(names)
            .zip(out)
            .map(|((i, name), (values, valid))| {
                let validity = match valid {
                    Some(bytes) => Some(Bitmap::from_u8_vec(bytes, rows)),
                    None => mask.clone(),
                };
                let ca = ChunkedArray::<T>::from_vec_validity(name, values, validity);
                (i, ca.into_column())
            })
            .collect()
    }
}

/// Left join of `left` with `right` on one integer key whose values are unique on the right
/// (`lookup`, built from the right keys): the left columns are kept as they are (no copy) and
/// the right columns are gathered by a lookup of every left key, in one parallel pass over the
/// left rows a piece at a time: right columns of a plain numeric type ([`Group`]) are copied
/// by whet from each piece's right rows; for the others (text, dates, booleans…) the pass
/// writes the right row of every left row, from which polars gathers them. Returns the joined
/// frame and the number of left rows without a match, or `None` when the left key's type is
/// not covered (polars' join then does the work).
///
/// Same output as polars' coalescing left join that keeps the left order: the left columns,
/// then the right ones without the key, `suffix` added to names already on the left; null keys
/// never match.
fn left_join_unique_int(
    left: &DataFrame,
    right: &DataFrame,
    (lk, rk): (&str, &str),
    lookup: &Lookup,
    suffix: &str,
) -> Result<Option<(DataFrame, usize)>> {
    let Some(lkeys) = int_key(left.column(lk)?)? else {
        return Ok(None);
    };
    let keys = LeftKeys::new(&lkeys);
    let n = keys.len;
    let values: Vec<&Column> = right
        .columns()
        .iter()
        .filter(|c| c.name().as_str() != rk)
        .collect();
    let mut groups: Vec<Box<dyn Gather>> = [
        Group::<Float64Type>::of(&values, n)?,
        Group::<Float32Type>::of(&values, n)?,
        Group::<Int64Type>::of(&values, n)?,
        Group::<Int32Type>::of(&values, n)?,
        Group::<UInt64Type>::of(&values, n)?,
        Group::<UInt32Type>::of(&values, n)?,
    ]
    .into_iter()
    .flatten()
    .collect();
    // The other right columns (text, booleans, dates…).
    let rest: Vec<usize> = (0..values.len())
        .filter(|i| !groups.iter().any(|g| g.positions().contains(i)))
        .collect();
    // The right row of every left row, for polars' gather of the other columns (masked where
    // there is none); every value is written by the pass below.
    let mut idx: Option<Vec<IdxSize>> = (!rest.is_empty()).then(|| vec![0; n]);
    let mut matched = vec![0u8; n.div_ceil(8)];
    // One pass over the left rows, a piece at a time: the piece's right rows are found once
    // (into a buffer reused per worker) and every output filled from them.
    let miss = right.height() as IdxSize;
    let pieces = n.div_ceil(PIECE);
    let mut sinks: Vec<Vec<Box<dyn PieceSink + '_>>> = (0..pieces).map(|_| Vec::new()).collect();
    for g in &mut groups {
        g.sinks(&mut sinks);
    }
    let mut idx_pieces = idx.as_mut().map(|v| v.chunks_mut(PIECE));
    let jobs: Vec<_> = sinks
        .into_iter()
        .zip(matched.chunks_mut(PIECE / 8))
        .map(|(s, m)| (s, m, idx_pieces.as_mut().and_then(Iterator::next)))
        .collect();
    jobs.into_par_iter().enumerate().for_each_init(
        || vec![0 as IdxSize; PIECE],
        |rows, (p, (mut sinks, matched, idx))| {
            let rows = &mut rows[..(n - p * PIECE).min(PIECE)];
            keys.probe(lookup, miss, p * PIECE, rows);
            for s in &mut sinks {
                s.fill(rows);
            }
            if let Some(idx) = idx {
                // `miss` rows are masked out of the index below: polars never reads them.
                populate(idx);
                idx.copy_from_slice(rows);
            }
            pack_bits(rows, matched, |r| r != miss);
        },
    );
    let hits: usize = matched.iter().map(|b| b.count_ones() as usize).sum();
    // Null where a left row has no right row, for the columns without nulls of their own; no
    // mask when every row matched.
    let mask = (hits < n).then(|| Bitmap::from_u8_vec(matched, n));
    let mut gathered: Vec<(usize, Column)> = Vec::with_capacity(values.len());
    for g in groups {
        gathered.extend(g.finish(n, &mask));
    }
    if let Some(idx) = idx {
        // Unmatched rows gather a null (their index, `miss`, is masked out and never read:
        // polars' gathers look at an index's value only where its bit is set); when every
        // row matched, the indices have no mask (a gather without one copies value by value,
        // not checking each index's bit).
        let arr = IdxCa::from_vec(PlSmallStr::EMPTY, idx)
            .downcast_into_iter()
            .next()
            .expect("from_vec makes one chunk")
            .with_validity(mask.clone());
        let idx = IdxCa::with_chunk(PlSmallStr::EMPTY, arr);
        let taken: Vec<PolarsResult<(usize, Column)>> = rest
            .into_par_iter()
            .map(|i| Ok((i, values[i].take(&idx)?)))
            .collect();
        for t in taken {
            gathered.push(t?);
        }
    }
    gathered.sort_by_key(|(i, _)| *i);
    let mut columns = left.columns().to_vec();
    for (_, mut c) in gathered {
        if left.column(c.name()).is_ok() {
            c.rename(format!("{}{suffix}", c.name()).into());
        }
        columns.push(c);
    }
    Ok(Some((DataFrame::new(left.height(), columns)?, n - hits)))
}

/// The join keys of `cfg`, checked: present on both sides, of one type.
fn check_keys(
    left: &DataFrame,
    right: &DataFrame,
    cfg: &JoinConfig,
) -> Result<(Vec<String>, Vec<String>)> {
    let (lk, rk) = cfg.keys();
    check_columns(left, &lk, &format!("join with `{}` (left keys)", cfg.with))?;
    check_columns(
        right,
        &rk,
        &format!("join with `{}` (right keys)", cfg.with),
    )?;
    for (l, r) in lk.iter().zip(&rk) {
        let (lt, rt) = (left.column(l)?.dtype(), right.column(r)?.dtype());
        if lt != rt {
            return Err(Error::KeyType {
                with: cfg.with.clone(),
                left: l.clone(),
                left_type: lt.to_string(),
                right: r.clone(),
                right_type: rt.to_string(),
            });
        }
    }
    Ok((lk, rk))
}

/// The checks [`join`] makes before a join whose left side is read in batches (`left` has the
/// left columns and no rows needed): keys present, of one type, and unique on the right (a
/// batch cannot count the left's repeats).
pub(crate) fn check_streamed(left: &DataFrame, right: &DataFrame, cfg: &JoinConfig) -> Result<()> {
    let (_, rk) = check_keys(left, right, cfg)?;
    let (right_dups, right_example) = dup_count(right, &rk)?;
    if right_dups > 0 {
        if let Some(card) = cfg.cardinality {
            return Err(Error::Cardinality {
                with: cfg.with.clone(),
                declared: format!("{card:?}").to_lowercase(),
                side: "right",
                duplicates: right_dups,
                example: right_example,
            });
        }
        return Err(Error::CannotStream {
            key: format!("join with `{}`", cfg.with),
            reason: format!(
                "the main table is larger than the memory budget and is joined batch by batch, \
                 which needs each right key once; {right_dups} right rows repeat a key (e.g. \
                 {right_example}): deduplicate `{}` on {rk:?}",
                cfg.with
            ),
        });
    }
    Ok(())
}

/// Joins `left` with `right` as `cfg` says and reports what happened.
///
/// # Errors
/// [`Error::ColumnNotFound`] for a missing key, [`Error::KeyType`] for keys of different types,
/// [`Error::Cardinality`] when the declared cardinality does not hold, [`Error::ManyToMany`] when
/// keys repeat on both sides and `allow_many_to_many` is false.
pub fn join(
    left: &DataFrame,
    right: &DataFrame,
    cfg: &JoinConfig,
) -> Result<(DataFrame, JoinReport)> {
    RightSide::new(left, right, cfg)?.join(left)
}

/// The right side of a join, checked and indexed once: what [`join`] does with the right table
/// before it looks at the left rows. A table read in batches joins every batch through one.
pub(crate) struct RightSide<'a> {
    right: &'a DataFrame,
    cfg: &'a JoinConfig,
    keys: (Vec<String>, Vec<String>),
    right_dups: usize,
    right_example: String,
    /// The right row of each key, for a left join on one integer key unique on the right.
    lookup: Option<Lookup>,
}

impl<'a> RightSide<'a> {
    /// Checks the keys of `cfg` on `left`'s columns (its rows are not read) and `right`,
    /// counts the right's repeated keys, and indexes the right's key when the join is a left
    /// join on one integer key unique on the right.
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`], [`Error::KeyType`].
    pub(crate) fn new(left: &DataFrame, right: &'a DataFrame, cfg: &'a JoinConfig) -> Result<Self> {
        let (lk, rk) = check_keys(left, right, cfg)?;
        let lookup = if cfg.how == JoinHow::Left && rk.len() == 1 {
            int_key(right.column(&rk[0])?)?
                .filter(|k| k.null_count() <= 1)
                .and_then(|k| Lookup::build(&k))
        } else {
            None
        };
        // A lookup is built only from keys that never repeat, nulls included (polars'
        // `is_duplicated`, which `dup_count` uses, counts two null keys as a repeat): nothing
        // to count then.
        let (right_dups, right_example) = match lookup {
            Some(_) => (0, String::new()),
            None => dup_count(right, &rk)?,
        };
        Ok(RightSide {
            right,
            cfg,
            keys: (lk, rk),
            right_dups,
            right_example,
            lookup,
        })
    }

    /// Joins `left` (with the columns given to [`RightSide::new`]) as [`join`] does.
    ///
    /// # Errors
    /// Those of [`join`].
    pub(crate) fn join(&self, left: &DataFrame) -> Result<(DataFrame, JoinReport)> {
        let (right, cfg) = (self.right, self.cfg);
        let (lk, rk) = (&self.keys.0, &self.keys.1);
        let (right_dups, right_example) = (self.right_dups, self.right_example.clone());
        join_checked(
            left,
            right,
            cfg,
            (lk, rk),
            (right_dups, right_example),
            self.lookup.as_ref(),
        )
    }
}

/// The joins of a table read in batches: each `join` step's right side checked and indexed at
/// the step's first batch ([`RightSide`]), every batch joined through it, and what the joins
/// did summed over the batches.
pub(crate) struct Joins<'a> {
    /// The right side of each `join` step, by step index.
    sides: std::collections::BTreeMap<usize, RightSide<'a>>,
    /// What each step's joins did, since the last [`Joins::restart`].
    reports: std::collections::BTreeMap<usize, JoinReport>,
    /// Whether the table comes in more than one batch: the checks a batch cannot make on the
    /// whole left side are then refused first ([`check_streamed`]).
    batched: bool,
}

impl<'a> Joins<'a> {
    /// No join prepared yet; `batched` when the left table comes in more than one batch.
    pub(crate) fn new(batched: bool) -> Self {
        Joins {
            sides: std::collections::BTreeMap::new(),
            reports: std::collections::BTreeMap::new(),
            batched,
        }
    }

    /// Joins one batch `left` at step `index` (`cfg`) with its table from `tables`.
    ///
    /// # Errors
    /// [`Error::UnknownTable`], the errors of [`join`], and of [`check_streamed`] for a batched
    /// table.
    pub(crate) fn join(
        &mut self,
        index: usize,
        cfg: &'a JoinConfig,
        left: DataFrame,
        tables: &'a std::collections::BTreeMap<String, DataFrame>,
    ) -> Result<DataFrame> {
        use std::collections::btree_map::Entry;
        let side = match self.sides.entry(index) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let right = tables.get(&cfg.with).ok_or_else(|| Error::UnknownTable {
                    name: cfg.with.clone(),
                    available: tables.keys().cloned().collect(),
                })?;
                if self.batched {
                    check_streamed(&left, right, cfg)?;
                }
                e.insert(RightSide::new(&left, right, cfg)?)
            }
        };
        let (out, rep) = side.join(&left)?;
        match self.reports.entry(index) {
            Entry::Occupied(mut e) => e.get_mut().add(&rep),
            Entry::Vacant(e) => {
                e.insert(rep);
            }
        }
        Ok(out)
    }

    /// A new pass over the table: the reports start again.
    pub(crate) fn restart(&mut self) {
        self.reports.clear();
    }

    /// What the joins did since the last [`Joins::restart`], in step order.
    pub(crate) fn take_reports(&mut self) -> Vec<JoinReport> {
        std::mem::take(&mut self.reports).into_values().collect()
    }
}

/// [`join`] after [`RightSide::new`].
fn join_checked(
    left: &DataFrame,
    right: &DataFrame,
    cfg: &JoinConfig,
    (lk, rk): (&[String], &[String]),
    (right_dups, right_example): (usize, String),
    lookup: Option<&Lookup>,
) -> Result<(DataFrame, JoinReport)> {
    let needs_left = cfg.cardinality == Some(Cardinality::OneToOne) || right_dups > 0;
    let (left_dups, left_example) =
        if needs_left && !matches!(cfg.how, JoinHow::Semi | JoinHow::Anti) {
            dup_count(left, lk)?
        } else {
            (0, String::new())
        };
    let declared = |c: Cardinality| format!("{c:?}").to_lowercase();
    if let Some(card) = cfg.cardinality {
        if right_dups > 0 {
            return Err(Error::Cardinality {
                with: cfg.with.clone(),
                declared: declared(card),
                side: "right",
                duplicates: right_dups,
                example: right_example,
            });
        }
        if card == Cardinality::OneToOne && left_dups > 0 {
            return Err(Error::Cardinality {
                with: cfg.with.clone(),
                declared: declared(card),
                side: "left",
                duplicates: left_dups,
                example: left_example,
            });
        }
    }
    if right_dups > 0 && left_dups > 0 && !cfg.allow_many_to_many {
        return Err(Error::ManyToMany {
            with: cfg.with.clone(),
            left_dups,
            right_dups,
        });
    }
    if right_dups > 0 && left_dups > 0 {
        // Keys repeat on both sides: the output is counted from the key counts before joining.
        let rows = matched_pairs(left, right, lk, rk)?
            .saturating_add((left.height() + right.height()) as u64);
        let width = (left.width() + right.width()) as u64;
        whet_core::budget::check(
            format!(
                "the many-to-many join with `{}` (up to {rows} rows of {width} columns)",
                cfg.with
            ),
            whet_core::budget::product(&[rows, width, 8]),
            "join.on",
        )?;
    }
    let rows_before = left.height();
    let null_keys_left = null_key_rows(left, lk)?;
    let how = match cfg.how {
        JoinHow::Left => JoinType::Left,
        JoinHow::Inner => JoinType::Inner,
        JoinHow::Full => JoinType::Full,
        JoinHow::Semi => JoinType::Semi,
        JoinHow::Anti => JoinType::Anti,
    };
    let mut args = JoinArgs::new(how)
        .with_suffix(Some(cfg.suffix.as_str().into()))
        .with_coalesce(JoinCoalesce::CoalesceColumns);
    // A fixed row order whatever the thread count (determinism rule).
    args.maintain_order = if cfg.how == JoinHow::Full {
        MaintainOrderJoin::LeftRight
    } else {
        MaintainOrderJoin::Left
    };
    let mut report = JoinReport {
        with: cfg.with.clone(),
        how: cfg.how,
        rows_before,
        rows_after: 0,
        right_rows: right.height(),
        unmatched_left: 0,
        unmatched_right: 0,
        null_keys_left,
    };
    // The usual lookup-table join (many-to-one on one integer key) skips polars' join, which
    // would gather every left column again to keep the left order.
    if let Some(lookup) = lookup
        && let Some((out, unmatched)) =
            left_join_unique_int(left, right, (&lk[0], &rk[0]), lookup, &cfg.suffix)?
    {
        report.unmatched_left = unmatched;
        report.rows_after = out.height();
        return Ok((out, report));
    }
    let out = match cfg.how {
        JoinHow::Left | JoinHow::Full | JoinHow::Inner => {
            // Marker columns count matches without a second (anti) join.
            let mut r = right.clone();
            r.with_column(Column::new_scalar(
                MATCH.into(),
                Scalar::from(true),
                r.height(),
            ))?;
            let mut l = left.clone();
            let lm = format!("{MATCH}left");
            if cfg.how == JoinHow::Full {
                l.with_column(Column::new_scalar(
                    lm.as_str().into(),
                    Scalar::from(true),
                    l.height(),
                ))?;
            }
            let mut out = l.join(&r, lk, rk, args, None)?;
            let matched = out.column(MATCH)?.as_materialized_series().is_not_null();
            if cfg.how == JoinHow::Full {
                let has_left = out.column(&lm)?.as_materialized_series().is_not_null();
                let only_left = &has_left & &!&matched;
                let only_right = &matched & &!&has_left;
                report.unmatched_left = only_left.sum().unwrap_or(0) as usize;
                report.unmatched_right = only_right.sum().unwrap_or(0) as usize;
                out = out.drop(&lm)?;
            } else if cfg.how == JoinHow::Left {
                report.unmatched_left = (!&matched).sum().unwrap_or(0) as usize;
            } else {
                report.unmatched_left = rows_before.saturating_sub(out.height());
            }
            out.drop(MATCH)?
        }
        JoinHow::Semi => {
            let out = left.join(right, lk, rk, args, None)?;
            report.unmatched_left = rows_before - out.height();
            out
        }
        JoinHow::Anti => {
            let out = left.join(right, lk, rk, args, None)?;
            report.unmatched_left = out.height();
            out
        }
    };
    report.rows_after = out.height();
    Ok((out, report))
}

impl JoinConfig {
    /// A left join with the table `with` on the columns `on` (same names on both sides); the
    /// other settings take their defaults (suffix `_right`, any cardinality).
    pub fn left(with: impl Into<String>, on: impl IntoIterator<Item = impl Into<String>>) -> Self {
        JoinConfig {
            with: with.into(),
            on: on.into_iter().map(Into::into).collect(),
            left_on: vec![],
            right_on: vec![],
            how: JoinHow::Left,
            suffix: default_suffix(),
            cardinality: None,
            allow_many_to_many: false,
        }
    }

    /// Sets the suffix of right-hand columns whose names clash.
    pub fn with_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }

    /// Requires the join's key cardinality (checked on the data).
    pub fn with_cardinality(mut self, cardinality: Cardinality) -> Self {
        self.cardinality = Some(cardinality);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mapping a buffer's pages changes none of its values: fresh zeroed memory stays zero and
    /// written values stay, at unaligned starts and ends as well as whole pages.
    #[test]
    fn populate_keeps_what_the_memory_holds() {
        let mut fresh = vec![0u64; 100_003];
        populate(&mut fresh[3..]);
        assert!(fresh.iter().all(|&v| v == 0));
        let mut written: Vec<u32> = (0..70_001).collect();
        for (lo, hi) in [(0, 70_001), (1, 69_999), (1_000, 1_001), (5, 5)] {
            populate(&mut written[lo..hi]);
        }
        assert!(written.iter().enumerate().all(|(i, &v)| v == i as u32));
    }

    #[test]
    fn matched_pairs_come_from_the_key_counts() {
        // Key 1: 3 x 2 pairs, key 2: 1 x 4, key 3 only on the left, nulls never match.
        let left =
            df!("k" => [Some(1i64), Some(1), Some(1), Some(2), Some(3), None, None]).unwrap();
        let right =
            df!("k" => [Some(1i64), Some(1), Some(2), Some(2), Some(2), Some(2), None]).unwrap();
        let k = ["k".to_string()];
        assert_eq!(matched_pairs(&left, &right, &k, &k).unwrap(), 3 * 2 + 4);
        // Two keys: (1, a) x2 on the left, x3 on the right; (1, b) only on the left.
        let l2 = df!("a" => [1i64, 1, 1], "b" => ["a", "a", "b"]).unwrap();
        let r2 = df!("a" => [1i64, 1, 1, 2], "b" => ["a", "a", "a", "b"]).unwrap();
        let ab = ["a".to_string(), "b".to_string()];
        assert_eq!(matched_pairs(&l2, &r2, &ab, &ab).unwrap(), 6);
    }

    // Hand-checked tables: left keys 1, 2, 2, 3, null; right keys 1, 2, 4 (unique).
    fn tables() -> (DataFrame, DataFrame) {
        let left = df!(
            "k" => [Some(1i64), Some(2), Some(2), Some(3), None],
            "x" => [10.0, 20.0, 21.0, 30.0, 99.0],
        )
        .unwrap();
        let right = df!(
            "k" => [1i64, 2, 4],
            "x" => [0.1, 0.2, 0.4],
            "y" => ["a", "b", "d"],
        )
        .unwrap();
        (left, right)
    }

    fn cfg(how: JoinHow) -> JoinConfig {
        let mut c = JoinConfig::new("r", &["k"]);
        c.how = how;
        c.cardinality = Some(Cardinality::ManyToOne);
        c
    }

    #[test]
    fn left_join_keeps_rows_and_reports_unmatched() {
        let (l, r) = tables();
        let (out, rep) = join(&l, &r, &cfg(JoinHow::Left)).unwrap();
        assert_eq!(out.height(), 5);
        assert_eq!(rep.rows_before, 5);
        assert_eq!(rep.rows_after, 5);
        // key 3 and the null key find nothing.
        assert_eq!(rep.unmatched_left, 2);
        assert_eq!(rep.null_keys_left, 1);
        let names: Vec<String> = out
            .get_column_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(names, ["k", "x", "x_right", "y"]);
        // Left order is kept; values hand-checked.
        let y: Vec<Option<&str>> = out.column("y").unwrap().str().unwrap().iter().collect();
        let k: Vec<Option<i64>> = out.column("k").unwrap().i64().unwrap().iter().collect();
        let mut pairs: Vec<(Option<i64>, Option<&str>)> = k.into_iter().zip(y).collect();
        pairs.sort();
        assert_eq!(
            pairs,
            [
                (None, None),
                (Some(1), Some("a")),
                (Some(2), Some("b")),
                (Some(2), Some("b")),
                (Some(3), None)
            ]
        );
    }

    #[test]
    fn inner_semi_anti_full() {
        let (l, r) = tables();
        let (o, rep) = join(&l, &r, &cfg(JoinHow::Inner)).unwrap();
        assert_eq!((o.height(), rep.unmatched_left), (3, 2));
        let (o, rep) = join(&l, &r, &cfg(JoinHow::Semi)).unwrap();
        assert_eq!((o.height(), o.width(), rep.unmatched_left), (3, 2, 2));
        let (o, rep) = join(&l, &r, &cfg(JoinHow::Anti)).unwrap();
        assert_eq!((o.height(), rep.unmatched_left), (2, 2));
        let (o, rep) = join(&l, &r, &cfg(JoinHow::Full)).unwrap();
        // 5 left rows + the right row with key 4.
        assert_eq!(o.height(), 6);
        assert_eq!((rep.unmatched_left, rep.unmatched_right), (2, 1));
    }

    #[test]
    fn declared_cardinality_is_checked() {
        let (l, _) = tables();
        let dup_right = df!("k" => [1i64, 1, 2], "z" => [1, 2, 3]).unwrap();
        let e = join(&l, &dup_right, &cfg(JoinHow::Left))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("right keys are not unique") && e.contains("k=1"),
            "{e}"
        );
        let mut c = cfg(JoinHow::Left);
        c.cardinality = None;
        let e = join(&l, &dup_right, &c).unwrap_err().to_string();
        assert!(e.contains("many-to-many"), "{e}");
        c.allow_many_to_many = true;
        let (o, _) = join(&l, &dup_right, &c).unwrap();
        assert_eq!(o.height(), 6); // key 1 doubles, both 2s match once, 3 and null stay
        let mut c = cfg(JoinHow::Left);
        c.cardinality = Some(Cardinality::OneToOne);
        let (_, r) = tables();
        let e = join(&l, &r, &c).unwrap_err().to_string();
        assert!(e.contains("left keys are not unique"), "{e}");
    }

    #[test]
    fn different_key_names_and_several_keys() {
        let l = df!("a" => ["x", "y", "x"], "b" => [1i64, 1, 2], "v" => [1, 2, 3]).unwrap();
        let r = df!("aa" => ["x", "x"], "bb" => [1i64, 2], "w" => [7, 8]).unwrap();
        let mut c = JoinConfig::new("r", &[]);
        c.left_on = vec!["a".into(), "b".into()];
        c.right_on = vec!["aa".into(), "bb".into()];
        let (o, rep) = join(&l, &r, &c).unwrap();
        assert_eq!(rep.unmatched_left, 1);
        let w: Vec<Option<i32>> = o.column("w").unwrap().i32().unwrap().iter().collect();
        assert_eq!(w, [Some(7), None, Some(8)]);
        assert!(c.validate().is_empty());
        let e = join(&l, &r, &JoinConfig::new("r", &["nope"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`nope` not found"), "{e}");
    }

    /// polars' own left join with the arguments of the general path.
    fn polars_left(l: &DataFrame, r: &DataFrame, lk: &str, rk: &str) -> DataFrame {
        let mut args = JoinArgs::new(JoinType::Left)
            .with_suffix(Some("_right".into()))
            .with_coalesce(JoinCoalesce::CoalesceColumns);
        args.maintain_order = MaintainOrderJoin::Left;
        l.join(r, [lk], [rk], args, None).unwrap()
    }

    fn check_fast_path(l: &DataFrame, r: &DataFrame, lk: &str, rk: &str) {
        let keys = int_key(r.column(rk).unwrap())
            .unwrap()
            .expect("covered key type");
        let lookup = Lookup::build(&keys).expect("unique right keys");
        let (fast, unmatched) = left_join_unique_int(l, r, (lk, rk), &lookup, "_right")
            .unwrap()
            .expect("covered key type");
        let slow = polars_left(l, r, lk, rk);
        assert_eq!(fast.get_column_names(), slow.get_column_names());
        assert!(fast.equals_missing(&slow), "{fast}\n{slow}");
        let matched = slow.column("m").unwrap().is_not_null().sum().unwrap_or(0) as usize;
        assert_eq!(unmatched, l.height() - matched);
    }

    #[test]
    fn unique_int_fast_path_matches_polars() {
        // Dense keys (direct table), with a null on each side, a name clash and a key absent
        // on the right.
        let l = df!(
            "k" => [Some(3i64), None, Some(0), Some(3), Some(7), Some(-1)],
            "x" => [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        )
        .unwrap();
        let r = df!(
            "k" => [Some(0i64), Some(3), None, Some(5)],
            "x" => [Some(0.5), None, Some(9.0), Some(1.5)],
            "m" => [true, true, true, true],
        )
        .unwrap();
        check_fast_path(&l, &r, "k", "k");
        // Sparse keys (hash map), including the extremes of i64.
        let l = df!(
            "a" => [Some(i64::MIN), Some(i64::MAX), None, Some(1 << 40), Some(5)],
            "v" => [1, 2, 3, 4, 5],
        )
        .unwrap();
        let r = df!(
            "b" => [i64::MAX, 1 << 40, i64::MIN, 7],
            "a" => ["p", "q", "s", "t"],
            "m" => [true, true, true, true],
        )
        .unwrap();
        check_fast_path(&l, &r, "a", "b");
        // Narrower integers and dates go through their 64-bit values; empty sides work.
        let l = df!("k" => [Some(2i32), Some(1), None], "v" => [1, 2, 3]).unwrap();
        let r = df!("k" => [1i32, 2], "m" => [true, false]).unwrap();
        check_fast_path(&l, &r, "k", "k");
        let dates = |d: &[i32]| {
            Int32Chunked::from_slice("k".into(), d)
                .into_date()
                .into_column()
        };
        let l = DataFrame::new(
            3,
            vec![
                dates(&[19000, 19001, 5]),
                Column::new("v".into(), [1, 2, 3]),
            ],
        )
        .unwrap();
        let r = DataFrame::new(
            2,
            vec![dates(&[19001, 19000]), Column::new("m".into(), [1.0, 2.0])],
        )
        .unwrap();
        check_fast_path(&l, &r, "k", "k");
        check_fast_path(&l.head(Some(0)), &r, "k", "k");
        check_fast_path(&l, &r.head(Some(0)), "k", "k");
        // Repeated right keys and other key types are left to polars.
        let dup = df!("k" => [1i32, 1], "m" => [true, false]).unwrap();
        let keys = int_key(dup.column("k").unwrap()).unwrap().unwrap();
        assert!(Lookup::build(&keys).is_none());
        let text = df!("k" => ["a"]).unwrap();
        assert!(int_key(text.column("k").unwrap()).unwrap().is_none());
        // The right side counts repeats only without a lookup, which it builds for unique
        // keys with at most one null: two null keys are a repeat, as polars counts them.
        let cfg = JoinConfig::new("right", &["k"]);
        let l = df!("k" => [Some(1i64), None], "v" => [1, 2]).unwrap();
        let side = |keys: &[Option<i64>]| {
            let r = df!("k" => keys, "m" => vec![1.0; keys.len()]).unwrap();
            let s = RightSide::new(&l, &r, &cfg).unwrap();
            (s.lookup.is_some(), s.right_dups, s.right_example.clone())
        };
        assert_eq!(side(&[Some(1), None, Some(2)]), (true, 0, String::new()));
        assert_eq!(side(&[Some(1), None, None]), (false, 2, "k=null".into()));
        assert_eq!(side(&[Some(1), Some(1)]), (false, 2, "k=1".into()));
    }

    #[test]
    fn fast_path_report_and_frame_from_join() {
        // Many left rows (several parallel pieces, two chunks) on 1,000 dense keys, a tenth of
        // them missing on the right.
        let n = 200_000;
        let make = |lo: usize, hi: usize| {
            df!(
                "key" => (lo..hi)
                    .map(|i| (i % 97 != 0).then_some((i * 7919 % 1000) as i64))
                    .collect::<Vec<_>>(),
                "x" => (lo..hi).map(|i| i as f64).collect::<Vec<_>>(),
            )
            .unwrap()
        };
        let mut l = make(0, 70_001);
        l.vstack_mut(&make(70_001, n)).unwrap();
        assert_eq!((l.height(), l.column("key").unwrap().n_chunks()), (n, 2));
        let rk: Vec<i64> = (0..1000).filter(|k| k % 10 != 3).collect();
        let r0: Vec<f64> = rk.iter().map(|&k| k as f64 * 0.5).collect();
        // Right columns of every type the join copies itself (two of one type, some with
        // nulls of their own, one named as a left column) and of types it leaves to polars.
        let r = df!(
            "key" => &rk,
            "r0" => r0,
            "x" => rk.iter().map(|&k| (k % 7 != 0).then_some(k as f64)).collect::<Vec<_>>(),
            "f" => rk.iter().map(|&k| k as f32 / 3.0).collect::<Vec<_>>(),
            "i" => rk.iter().map(|&k| (k % 5 != 0).then_some(-k)).collect::<Vec<_>>(),
            "j" => rk.iter().map(|&k| (k % 3 != 0).then_some(k as i32 - 500)).collect::<Vec<_>>(),
            "u" => rk.iter().map(|&k| k as u64 * 3).collect::<Vec<_>>(),
            "w" => rk.iter().map(|&k| k as u32).collect::<Vec<_>>(),
            "s" => rk.iter().map(|&k| format!("k{k}")).collect::<Vec<_>>(),
            "b" => rk.iter().map(|&k| k % 2 == 0).collect::<Vec<_>>(),
        )
        .unwrap();
        let (out, rep) = join(&l, &r, &JoinConfig::new("right", &["key"])).unwrap();
        let slow = polars_left(&l, &r, "key", "key");
        assert_eq!(out.get_column_names(), slow.get_column_names());
        assert!(out.equals_missing(&slow));
        let expect = slow.column("r0").unwrap().null_count();
        assert_eq!(rep.unmatched_left, expect);
        assert_eq!(rep.null_keys_left, l.column("key").unwrap().null_count());
        assert_eq!((rep.rows_before, rep.rows_after), (n, n));
        // Only numeric columns (no polars gather), only other ones, and only the key.
        for cols in [&["key", "r0", "i"][..], &["key", "s"], &["key"]] {
            let r = r.select(cols.iter().copied()).unwrap();
            let (out, rep) = join(&l, &r, &JoinConfig::new("right", &["key"])).unwrap();
            assert!(
                out.equals_missing(&polars_left(&l, &r, "key", "key")),
                "{cols:?}"
            );
            assert_eq!(rep.unmatched_left, expect, "{cols:?}");
        }
        // Every left row matched: the gathered columns have no mask.
        let all = l.drop_nulls::<String>(None).unwrap();
        let r = df!("key" => (0..1000i64).collect::<Vec<_>>(), "r0" => vec![1.5; 1000]).unwrap();
        let (out, rep) = join(&all, &r, &JoinConfig::new("right", &["key"])).unwrap();
        assert_eq!(rep.unmatched_left, 0);
        assert_eq!(out.column("r0").unwrap().null_count(), 0);
        assert!(out.equals_missing(&polars_left(&all, &r, "key", "key")));
    }
}
