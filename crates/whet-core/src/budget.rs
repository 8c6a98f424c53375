//! The memory budget: how many bytes a run may hold at once, and the check every crate makes
//! before a large allocation, so a request too big for the machine ends in a clear error (the
//! estimate, the budget and the key to change) instead of an allocation abort.
//!
//! - [`Budget`] is a number of bytes and where it came from: `--max-memory` ([`Budget::parse`])
//!   or the machine ([`Budget::from_system`]: a fraction of the physical memory, the cgroup
//!   limit and the address-space limit `ulimit -v`, whichever is smallest).
//! - [`Budget::check`] compares an estimate with the budget and returns a [`BudgetError`].
//! - The process has one current budget ([`current`], set once by the binary with [`set`]), like
//!   rayon's global thread pool: the crates that allocate read it where they estimate, so no
//!   signature between the crates carries it.
//!
//! Estimates are made with saturating arithmetic ([`product`]): a count of `u64::MAX` gives an
//! estimate of `u64::MAX` bytes, never an overflow.
//!
//! ```
//! use whet_core::budget::Budget;
//! let b = Budget::parse("2GiB").unwrap();
//! assert_eq!(b.bytes(), 2 << 30);
//! assert!(b.check("the network's weights", 1 << 20, "model.hidden").is_ok());
//! let e = b.check("the network's weights", 3 << 30, "model.hidden").unwrap_err();
//! assert!(e.to_string().contains("3.0 GiB"), "{e}");
//! ```

use std::fmt;
use std::sync::{OnceLock, RwLock};

/// Fraction of the physical memory (or the cgroup limit) the default budget allows.
pub const PHYSICAL_FRACTION: f64 = 0.6;
/// Fraction of the address-space limit (`ulimit -v`) the default budget allows: the rest is for
/// the program, its thread stacks and the allocator's arenas, which count against that limit
/// without being data.
pub const ADDRESS_SPACE_FRACTION: f64 = 0.5;
/// The budget when the machine tells nothing (no `/proc/meminfo`): 4 GiB.
pub const FALLBACK_BYTES: u64 = 4 << 30;

/// Where a budget's number came from (shown in [`BudgetError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetSource {
    /// Given with `--max-memory` (or [`Budget::parse`] / [`Budget::new`]).
    Option,
    /// Given by the run file's `memory:` key ([`MemorySize`]).
    RunFile,
    /// [`PHYSICAL_FRACTION`] of the physical memory (`/proc/meminfo`).
    Physical,
    /// [`PHYSICAL_FRACTION`] of the cgroup memory limit (`/sys/fs/cgroup/memory.max`).
    Cgroup,
    /// [`ADDRESS_SPACE_FRACTION`] of the address-space limit (`ulimit -v`).
    AddressSpace,
    /// [`FALLBACK_BYTES`]: the machine's memory could not be read.
    Fallback,
}

impl fmt::Display for BudgetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BudgetSource::Option => "set with --max-memory",
            BudgetSource::RunFile => "set with `memory:` in the run file",
            BudgetSource::Physical => "60 % of the physical memory",
            BudgetSource::Cgroup => "60 % of the cgroup memory limit",
            BudgetSource::AddressSpace => "half of the address-space limit `ulimit -v`",
            BudgetSource::Fallback => "the default when the machine's memory cannot be read",
        })
    }
}

/// A number of bytes a run may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    bytes: u64,
    source: BudgetSource,
}

/// An estimate over the budget: what needed the memory, how much, the budget and the key or
/// option that changes the estimate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} needs about {} of memory, more than the budget of {} ({origin}): change `{key}`, or raise the budget with `--max-memory`",
    show_bytes(*estimate),
    show_bytes(*budget)
)]
pub struct BudgetError {
    /// What the memory is for (`the network's weights and optimizer state`).
    pub what: String,
    /// The estimate in bytes.
    pub estimate: u64,
    /// The budget in bytes.
    pub budget: u64,
    /// Where the budget came from.
    pub origin: BudgetSource,
    /// The run-file key or option that changes the estimate (`model.hidden`, `train.epochs`).
    pub key: String,
}

/// A memory size in a run file (`memory: 8GiB`): what [`Budget::parse`] reads, as text or a
/// number of bytes. [`MemorySize::budget`] is the budget it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySize(u64);

impl MemorySize {
    /// Reads a size as [`Budget::parse`] does.
    ///
    /// # Errors
    /// [`SizeError`] for what is not a size.
    pub fn parse(text: &str) -> Result<MemorySize, SizeError> {
        Budget::parse(text).map(|b| MemorySize(b.bytes()))
    }

    /// The bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// The budget of this size, from the run file.
    pub fn budget(self) -> Budget {
        Budget {
            bytes: self.0,
            source: BudgetSource::RunFile,
        }
    }
}

impl serde::Serialize for MemorySize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for MemorySize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = MemorySize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a memory size, e.g. `8GiB`, `500MB` or a number of bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MemorySize, E> {
                MemorySize::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MemorySize, E> {
                if v == 0 {
                    return Err(E::custom(SizeError("0".into())));
                }
                Ok(MemorySize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MemorySize, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(SizeError(v.to_string())))
                    .and_then(|v| self.visit_u64(v))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl schemars::JsonSchema for MemorySize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MemorySize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "integer"],
            "minimum": 1,
            "description": "A memory size: a positive number with an optional unit (B; KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB or K, M, G, T in powers of 1024), e.g. `8GiB`, `500MB`, or a number of bytes."
        })
    }
}

/// A size a user wrote that is not one (see [`Budget::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a memory size: expected a positive number with an optional unit, e.g. `8GiB`, `500MB`, `1.5G` or `1048576` (bytes)"
)]
pub struct SizeError(pub String);

impl Budget {
    /// A budget of `bytes` bytes, as given by the user.
    pub fn new(bytes: u64) -> Budget {
        Budget {
            bytes,
            source: BudgetSource::Option,
        }
    }

    /// The number of bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where the number came from.
    pub fn source(&self) -> BudgetSource {
        self.source
    }

    /// Parses a size: a positive number (decimals allowed) and an optional unit, case
    /// insensitive, spaces allowed between: `B`; `KB`, `MB`, `GB`, `TB` (powers of 1000);
    /// `KiB`, `MiB`, `GiB`, `TiB` and the short `K`, `M`, `G`, `T` (powers of 1024).
    ///
    /// # Errors
    /// [`SizeError`] for anything else, zero, or more than `u64::MAX` bytes.
    pub fn parse(text: &str) -> Result<Budget, SizeError> {
        let err = || SizeError(text.to_string());
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num.parse().map_err(|_| err())?;
        let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "kb" => 1e3,
            "mb" => 1e6,
            "gb" => 1e9,
            "tb" => 1e12,
            "k" | "kib" => 1024.0,
            "m" | "mib" => 1024.0 * 1024.0,
            "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
            "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            _ => return Err(err()),
        };
        let bytes = (value * scale).floor();
        if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
            return Err(err());
        }
        Ok(Budget::new(bytes as u64))
    }

    /// The default budget of this machine and process: the smallest of
    /// [`PHYSICAL_FRACTION`] of the physical memory, the same fraction of the cgroup limit, and
    /// [`ADDRESS_SPACE_FRACTION`] of `ulimit -v`; [`FALLBACK_BYTES`] when none can be read.
    pub fn from_system() -> Budget {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let cgroup = read("/sys/fs/cgroup/memory.max")
            .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
        Budget::from_texts(
            read("/proc/meminfo").as_deref(),
            cgroup.as_deref(),
            read("/proc/self/limits").as_deref(),
        )
    }

    /// [`Budget::from_system`] from the texts of `/proc/meminfo`, the cgroup memory limit and
    /// `/proc/self/limits` (each `None` when it could not be read).
    pub fn from_texts(
        meminfo: Option<&str>,
        cgroup_max: Option<&str>,
        limits: Option<&str>,
    ) -> Budget {
        let frac = |v: u64, f: f64| (v as f64 * f) as u64;
        let mut best = Budget {
            bytes: FALLBACK_BYTES,
            source: BudgetSource::Fallback,
        };
        let mut offer = |bytes: u64, source: BudgetSource| {
            if best.source == BudgetSource::Fallback || bytes < best.bytes {
                best = Budget {
                    bytes: bytes.max(1),
                    source,
                };
            }
        };
        if let Some(kb) = meminfo.and_then(mem_total_kib) {
            offer(
                frac(kb.saturating_mul(1024), PHYSICAL_FRACTION),
                BudgetSource::Physical,
            );
        }
        // cgroup v1 reports "no limit" as a number near i64::MAX.
        if let Some(v) = cgroup_max.and_then(|t| t.trim().parse::<u64>().ok())
            && v < 1 << 60
        {
            offer(frac(v, PHYSICAL_FRACTION), BudgetSource::Cgroup);
        }
        if let Some(v) = limits.and_then(address_space_limit) {
            offer(frac(v, ADDRESS_SPACE_FRACTION), BudgetSource::AddressSpace);
        }
        best
    }

    /// `Ok` when `estimate` bytes fit in the budget; otherwise a [`BudgetError`] naming `what`
    /// needs the memory and the `key` (run-file key path or option) that changes it.
    ///
    /// # Errors
    /// [`BudgetError`] when `estimate` is larger than the budget.
    pub fn check(
        &self,
        what: impl Into<String>,
        estimate: u64,
        key: impl Into<String>,
    ) -> Result<(), BudgetError> {
        if estimate <= self.bytes {
            return Ok(());
        }
        Err(BudgetError {
            what: what.into(),
            estimate,
            budget: self.bytes,
            origin: self.source,
            key: key.into(),
        })
    }
}

/// `MemTotal` of `/proc/meminfo`, in KiB.
fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The soft "Max address space" of `/proc/self/limits` in bytes (`None` when unlimited).
fn address_space_limit(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max address space"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

static CURRENT: RwLock<Option<Budget>> = RwLock::new(None);
static SYSTEM: OnceLock<Budget> = OnceLock::new();

/// Sets the process's budget (the binary does it once, from `--max-memory`).
pub fn set(budget: Budget) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Some(budget);
}

/// The process's budget: the one given to [`set`], else [`Budget::from_system`] (read once).
pub fn current() -> Budget {
    match *CURRENT.read().unwrap_or_else(|e| e.into_inner()) {
        Some(b) => b,
        None => *SYSTEM.get_or_init(Budget::from_system),
    }
}

/// [`Budget::check`] against [`current`].
///
/// # Errors
/// [`BudgetError`] when `estimate` is larger than the budget.
pub fn check(
    what: impl Into<String>,
    estimate: u64,
    key: impl Into<String>,
) -> Result<(), BudgetError> {
    current().check(what, estimate, key)
}

/// The product of `factors`, saturating at `u64::MAX`: estimates never overflow.
pub fn product(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |a, &b| a.saturating_mul(b))
}

/// A number of bytes for people: `512 B`, `3.0 KiB`, `22.4 GiB`.
pub fn show_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        let p = |s: &str| Budget::parse(s).map(|b| b.bytes());
        assert_eq!(p("1048576"), Ok(1 << 20));
        assert_eq!(p("8GiB"), Ok(8 << 30));
        assert_eq!(p("8 gib"), Ok(8 << 30));
        assert_eq!(p("8G"), Ok(8 << 30));
        assert_eq!(p("500MB"), Ok(500_000_000));
        assert_eq!(p("1.5K"), Ok(1536));
        assert_eq!(p("2TB"), Ok(2_000_000_000_000));
        assert_eq!(p(" 64 b "), Ok(64));
        for bad in [
            "",
            "0",
            "0.2",
            "-1GB",
            "GB",
            "1.2.3G",
            "8 GiBs",
            "1e3",
            "99999999999T",
        ] {
            assert!(p(bad).is_err(), "{bad} parsed");
        }
        assert!(
            Budget::parse("lots")
                .unwrap_err()
                .to_string()
                .contains("8GiB"),
            "the error shows a valid example"
        );
    }

    const MEMINFO: &str = "MemTotal:       16384000 kB\nMemFree:         1000 kB\n";
    const LIMITS_UNLIMITED: &str = "Limit                     Soft Limit           Hard Limit           Units     \nMax address space         unlimited            unlimited            bytes     \n";
    const LIMITS_4G: &str = "Limit                     Soft Limit           Hard Limit           Units     \nMax address space         4096000000           unlimited            bytes     \n";

    #[test]
    fn default_is_the_smallest_of_physical_cgroup_and_address_space() {
        let phys = Budget::from_texts(Some(MEMINFO), Some("max\n"), Some(LIMITS_UNLIMITED));
        assert_eq!(phys.source(), BudgetSource::Physical);
        assert_eq!(phys.bytes(), 10_066_329_600); // 60 % of 16,384,000 KiB
        let cg = Budget::from_texts(Some(MEMINFO), Some("1073741824\n"), Some(LIMITS_UNLIMITED));
        assert_eq!(
            (cg.source(), cg.bytes()),
            (BudgetSource::Cgroup, 644_245_094)
        );
        // cgroup v1 "unlimited"
        let v1 = Budget::from_texts(Some(MEMINFO), Some("9223372036854771712"), None);
        assert_eq!(v1.source(), BudgetSource::Physical);
        let ulimit = Budget::from_texts(Some(MEMINFO), None, Some(LIMITS_4G));
        assert_eq!(
            (ulimit.source(), ulimit.bytes()),
            (BudgetSource::AddressSpace, 2_048_000_000)
        );
        let none = Budget::from_texts(None, None, None);
        assert_eq!(
            (none.source(), none.bytes()),
            (BudgetSource::Fallback, FALLBACK_BYTES)
        );
    }

    #[test]
    fn the_error_gives_estimate_budget_source_and_key() {
        let b = Budget::new(1 << 30);
        assert!(b.check("x", 1 << 30, "k").is_ok());
        let e = b
            .check("the offline copies", 47 << 30, "augment.copies")
            .unwrap_err();
        let text = e.to_string();
        for part in [
            "the offline copies",
            "47.0 GiB",
            "1.0 GiB",
            "--max-memory",
            "`augment.copies`",
        ] {
            assert!(text.contains(part), "{part} missing from: {text}");
        }
    }

    #[test]
    fn products_saturate() {
        assert_eq!(product(&[2, 3, 4]), 24);
        assert_eq!(product(&[u64::MAX, 2]), u64::MAX);
        assert_eq!(product(&[]), 1);
    }

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(show_bytes(512), "512 B");
        assert_eq!(show_bytes(3 << 10), "3.0 KiB");
        assert_eq!(show_bytes(u64::MAX), "16.0 EiB");
    }
}
