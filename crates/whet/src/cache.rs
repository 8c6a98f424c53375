//! The stage cache: results of deterministic stages (loaded and prepared tables, offline
//! augmented image sets) stored under a key made of the content of their inputs, their
//! configuration and the code version, so ablation variants that share a prefix of stages
//! compute it once.
//!
//! An entry is one file `<stage>-<key>.bin`: the magic `WHETCACHE2`, the SHA-256 of everything
//! after it, a little-endian `u64` header length, a JSON header (`meta` plus the blob index),
//! then the blobs. The checksum is verified on every read: a damaged or truncated entry is
//! recomputed (and rewritten) with a warning, so a flipped byte never reaches a result. An entry
//! of an older format is a silent miss.
//!
//! Entries are written atomically (a uniquely named temporary file renamed into place), so two
//! processes that compute one entry at once both write whole files and the last rename wins;
//! as an entry is a function of its key, either is the right one.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use whet_core::Progress;

const MAGIC: &[u8; 10] = b"WHETCACHE2";
/// What every entry format starts with (`WHETCACHE` and a format digit).
const MAGIC_FAMILY: &[u8; 9] = b"WHETCACHE";
/// Length of the SHA-256 checksum after the magic.
const SUM_LEN: usize = 32;

/// Code version mixed into every key: a new whet version never reads an older entry.
pub const CODE_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-cache2");

/// Why a stored entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Written in an earlier entry format: a plain miss.
    OldFormat,
    /// Damaged: the reason, for the warning.
    Corrupt(String),
}

/// A cache entry: a typed header (JSON) and named binary blobs.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Bundle {
    /// The header, a serialised typed struct (see [`Bundle::new`] and [`Bundle::meta`]).
    meta: Vec<u8>,
    /// Named blobs (arrays as little-endian bytes).
    blobs: Vec<(String, Vec<u8>)>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    /// The typed header's JSON text.
    meta: String,
    blobs: Vec<(String, u64)>,
}

impl Bundle {
    /// A bundle whose header is `meta`.
    pub fn new<M: Serialize>(meta: &M) -> Result<Self> {
        Ok(Bundle {
            meta: serde_json::to_vec(meta).map_err(|e| {
                Error::Invalid(format!("a stage-cache header cannot be written: {e}"))
            })?,
            blobs: Vec::new(),
        })
    }
    /// The header as `M`, or `None` when it is not one (an entry from another version).
    pub fn meta<M: DeserializeOwned>(&self) -> Option<M> {
        serde_json::from_slice(&self.meta).ok()
    }
    /// Adds a blob of bytes.
    pub fn push_bytes(&mut self, name: &str, data: Vec<u8>) {
        self.blobs.push((name.to_string(), data));
    }
    /// The blob called `name`.
    pub fn blob(&self, name: &str) -> Option<&[u8]> {
        self.blobs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }
    /// Adds an `f32` slice as a blob.
    pub fn push_f32(&mut self, name: &str, data: &[f32]) {
        let mut b = Vec::with_capacity(data.len() * 4);
        for v in data {
            b.extend_from_slice(&v.to_le_bytes());
        }
        self.blobs.push((name.to_string(), b));
    }
    /// Reads an `f32` blob.
    pub fn f32(&self, name: &str) -> Option<Vec<f32>> {
        let b = self.blob(name)?;
        (b.len() % 4 == 0).then(|| {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }
    /// Adds a `u32` slice as a blob.
    pub fn push_u32(&mut self, name: &str, data: &[u32]) {
        let mut b = Vec::with_capacity(data.len() * 4);
        for v in data {
            b.extend_from_slice(&v.to_le_bytes());
        }
        self.blobs.push((name.to_string(), b));
    }
    /// Reads a `u32` blob.
    pub fn u32(&self, name: &str) -> Option<Vec<u32>> {
        let b = self.blob(name)?;
        (b.len() % 4 == 0).then(|| {
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let header = Header {
            meta: String::from_utf8_lossy(&self.meta).into_owned(),
            blobs: self
                .blobs
                .iter()
                .map(|(n, b)| (n.clone(), b.len() as u64))
                .collect(),
        };
        let h = serde_json::to_vec(&header)
            .map_err(|e| Error::Invalid(format!("a stage-cache header cannot be written: {e}")))?;
        let body = MAGIC.len() + SUM_LEN;
        let mut out = Vec::with_capacity(
            body + 8 + h.len() + self.blobs.iter().map(|b| b.1.len()).sum::<usize>(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[0; SUM_LEN]);
        out.extend_from_slice(&(h.len() as u64).to_le_bytes());
        out.extend_from_slice(&h);
        for (_, b) in &self.blobs {
            out.extend_from_slice(b);
        }
        let sum = Sha256::digest(&out[body..]);
        out[MAGIC.len()..body].copy_from_slice(&sum);
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> std::result::Result<Bundle, Damage> {
        let corrupt = |why: &str| Damage::Corrupt(why.to_string());
        let Some(rest) = bytes.strip_prefix(MAGIC) else {
            return Err(
                if bytes.starts_with(MAGIC_FAMILY) && bytes.len() >= MAGIC.len() {
                    Damage::OldFormat
                } else if bytes.is_empty() {
                    corrupt("the file is empty")
                } else {
                    corrupt("it does not start with a whet cache header")
                },
            );
        };
        let (sum, body) = rest
            .split_at_checked(SUM_LEN)
            .ok_or_else(|| corrupt("it is truncated"))?;
        if Sha256::digest(body).as_slice() != sum {
            return Err(corrupt("its checksum does not match its content"));
        }
        // Past the checksum, the bytes are what whet wrote: a failure below is a format bug,
        // reported the same way.
        let malformed = || corrupt("its layout is not valid");
        let (len, rest) = body.split_at_checked(8).ok_or_else(malformed)?;
        let len = usize::try_from(u64::from_le_bytes(len.try_into().map_err(|_| malformed())?))
            .map_err(|_| malformed())?;
        let (h, mut rest) = rest.split_at_checked(len).ok_or_else(malformed)?;
        let header: Header = serde_json::from_slice(h).map_err(|_| malformed())?;
        let mut blobs = Vec::with_capacity(header.blobs.len());
        for (name, n) in header.blobs {
            let n = usize::try_from(n).map_err(|_| malformed())?;
            let (b, r) = rest.split_at_checked(n).ok_or_else(malformed)?;
            blobs.push((name, b.to_vec()));
            rest = r;
        }
        if !rest.is_empty() {
            return Err(malformed());
        }
        Ok(Bundle {
            meta: header.meta.into_bytes(),
            blobs,
        })
    }
}

/// Builds a cache key from labelled parts (config JSON, file hashes, seeds…).
#[derive(Debug, Clone)]
pub(crate) struct KeyBuilder(Sha256);

impl Default for KeyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyBuilder {
    /// A key seeded with the code version.
    pub fn new() -> Self {
        let mut h = Sha256::new();
        h.update(CODE_VERSION.as_bytes());
        KeyBuilder(h)
    }
    /// Mixes in a labelled string.
    pub fn part(mut self, label: &str, value: &str) -> Self {
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value.as_bytes());
        self
    }
    /// Mixes in raw bytes, length-prefixed like [`KeyBuilder::part`].
    pub fn bytes(mut self, label: &str, value: &[u8]) -> Self {
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value);
        self
    }
    /// Mixes in a serialisable value (its JSON).
    pub fn json<T: Serialize>(self, label: &str, value: &T) -> Self {
        // Config types serialise without fail (no maps with non-string keys).
        let s = serde_json::to_string(value).unwrap_or_default();
        self.part(label, &s)
    }
    /// Mixes in the content of a file (SHA-256 of its bytes).
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn file(self, label: &str, path: &Path) -> Result<Self> {
        let digest = hash_file(path)?;
        Ok(self.part(label, &digest))
    }
    /// The key as hex.
    pub fn finish(self) -> String {
        hex(&self.0.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file's bytes, as hex.
///
/// # Errors
/// The file cannot be read.
pub fn hash_file(path: &Path) -> Result<String> {
    use std::io::Read;
    // Hashing streams, so no cap is needed; `open_input` still refuses devices and folders.
    let mut f = whet_core::input::open_input(path, "data files", u64::MAX)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(Error::io("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// whet's cache folder: `$WHET_CACHE_DIR`, or `$HOME/.cache/whet` (`None` without either). The
/// stage cache lives there, and a streamed table's training rows under `rows/` while it trains.
pub fn cache_root() -> Option<PathBuf> {
    std::env::var_os("WHET_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("whet")))
}

/// What the runs of one process keep for reuse: the stage cache's folder on disk (or nothing
/// when it is off), and, in memory whether or not the folder is on, the tables loaded by the
/// runs ([`whet_tabular::LoadedTables`], shared by the clones of a `Cache`), so that the cells of
/// an ablation read each table file once.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: Option<PathBuf>,
    tables: std::sync::Arc<whet_tabular::LoadedTables>,
}

impl Cache {
    /// The cache at [`cache_root`]; off when `enabled` is false.
    pub fn new(enabled: bool) -> Self {
        if !enabled {
            return Self::off();
        }
        Self::in_dir(cache_root())
    }
    /// A cache in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self::in_dir(Some(dir.into()))
    }
    /// A disabled cache (loaded tables are still kept in memory).
    pub fn off() -> Self {
        Self::in_dir(None)
    }
    fn in_dir(dir: Option<PathBuf>) -> Self {
        Cache {
            dir,
            tables: Default::default(),
        }
    }
    /// The tables loaded by this process's runs, kept within a quarter of the memory budget.
    pub fn tables(&self) -> &whet_tabular::LoadedTables {
        &self.tables
    }
    /// Whether the cache is on.
    pub fn enabled(&self) -> bool {
        self.dir.is_some()
    }

    fn path(&self, stage: &str, key: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{stage}-{key}.bin")))
    }

    /// The entry for `key`, if present and intact. A damaged entry (checksum mismatch,
    /// truncated, empty, unreadable) is a miss reported through `progress.warn`, so the caller
    /// recomputes it and its `put` replaces the entry; an entry of an older format is a silent
    /// miss.
    pub(crate) fn get(&self, stage: &str, key: &str, progress: &dyn Progress) -> Option<Bundle> {
        let p = self.path(stage, key)?;
        if let Some(dir) = &self.dir {
            // Also on a hit: a writer killed after its entry was in place may have left others'
            // temporary files, and a run that only reads would otherwise never remove them.
            whet_core::fsx::remove_dead_temps(dir);
        }
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                progress.warn(&format!(
                    "the stage cache entry `{}` cannot be read ({e}); recomputing it",
                    p.display()
                ));
                return None;
            }
        };
        match Bundle::decode(&bytes) {
            Ok(b) => Some(b),
            Err(Damage::OldFormat) => None,
            Err(Damage::Corrupt(why)) => {
                progress.warn(&format!(
                    "the stage cache entry `{}` is damaged ({why}); recomputing it",
                    p.display()
                ));
                None
            }
        }
    }

    /// Stores an entry (atomically). A failure to write is reported but not fatal to the caller's
    /// work: the caller may ignore it.
    ///
    /// # Errors
    /// The entry could not be written.
    pub(crate) fn put(&self, stage: &str, key: &str, bundle: &Bundle) -> Result<()> {
        let Some(p) = self.path(stage, key) else {
            return Ok(());
        };
        if let Some(dir) = &self.dir {
            // Temporary files of writers killed mid-write; live writers' files are left.
            whet_core::fsx::remove_dead_temps(dir);
        }
        whet_core::fsx::atomic_write(&p, &bundle.encode()?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let mut b = Bundle::new(&3usize).unwrap();
        b.push_f32("x", &[1.0, -2.5, 3.25]);
        b.push_u32("y", &[7, 8]);
        let key = KeyBuilder::new().part("cfg", "a").finish();
        let warned = Warnings::default();
        assert!(cache.get("t", &key, &warned).is_none());
        cache.put("t", &key, &b).unwrap();
        let got = cache.get("t", &key, &warned).unwrap();
        assert_eq!(got, b);
        assert_eq!(got.f32("x").unwrap(), vec![1.0, -2.5, 3.25]);
        assert_eq!(got.meta::<usize>(), Some(3));
        assert_eq!(got.u32("y").unwrap(), vec![7, 8]);
        assert!(
            warned.0.lock().unwrap().is_empty(),
            "a miss and a hit do not warn"
        );
        // Truncate the entry: it must be recomputed, not misread.
        let p = dir.path().join(format!("t-{key}.bin"));
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        assert!(cache.get("t", &key, &warned).is_none());
        assert_eq!(warned.0.lock().unwrap().len(), 1);
    }

    /// Collects warnings.
    #[derive(Default)]
    struct Warnings(std::sync::Mutex<Vec<String>>);
    impl Progress for Warnings {
        fn begin(&self, _: &str, _: Option<u64>) {}
        fn advance(&self, _: u64) {}
        fn message(&self, _: &str) {}
        fn end(&self) {}
        fn warn(&self, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
    }

    fn entry() -> Vec<u8> {
        let mut b = Bundle::new(&"meta").unwrap();
        b.push_f32("x", &(0..1000).map(|i| i as f32 * 0.25).collect::<Vec<_>>());
        b.encode().unwrap()
    }

    #[test]
    fn every_damage_is_detected_and_warned_about() {
        let good = entry();
        assert!(Bundle::decode(&good).is_ok());
        // Flipped bytes anywhere after the magic: in the checksum, the header, the blobs.
        for at in [
            MAGIC.len(),
            MAGIC.len() + SUM_LEN + 3,
            good.len() / 2,
            good.len() - 64,
        ] {
            let mut bad = good.clone();
            for b in &mut bad[at..at + 64] {
                *b ^= 0xA5;
            }
            assert!(
                matches!(Bundle::decode(&bad), Err(Damage::Corrupt(_))),
                "64 bytes flipped at {at} went unnoticed"
            );
        }
        for len in [0, 5, MAGIC.len(), MAGIC.len() + 10, good.len() - 1] {
            assert!(
                matches!(Bundle::decode(&good[..len]), Err(Damage::Corrupt(_))),
                "truncated to {len} bytes went unnoticed"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(Bundle::decode(&longer), Err(Damage::Corrupt(_))));
        // An entry of the previous format (no checksum) is a silent miss.
        let mut old = b"WHETCACHE1".to_vec();
        old.extend_from_slice(&good[MAGIC.len() + SUM_LEN..]);
        assert_eq!(Bundle::decode(&old), Err(Damage::OldFormat));

        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let warned = Warnings::default();
        let p = dir.path().join("t-k.bin");
        std::fs::write(&p, &old).unwrap();
        assert!(cache.get("t", "k", &warned).is_none());
        assert!(
            warned.0.lock().unwrap().is_empty(),
            "old format: no warning"
        );
        std::fs::write(&p, b"").unwrap();
        assert!(cache.get("t", "k", &warned).is_none());
        let w = warned.0.lock().unwrap().clone();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("t-k.bin") && w[0].contains("empty"), "{w:?}");
    }

    #[test]
    fn keys_change_with_config_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("data.csv");
        std::fs::write(&f, "a\n1\n").unwrap();
        let k1 = KeyBuilder::new()
            .part("cfg", "x")
            .file("data", &f)
            .unwrap()
            .finish();
        let k2 = KeyBuilder::new()
            .part("cfg", "y")
            .file("data", &f)
            .unwrap()
            .finish();
        std::fs::write(&f, "a\n2\n").unwrap();
        let k3 = KeyBuilder::new()
            .part("cfg", "x")
            .file("data", &f)
            .unwrap()
            .finish();
        assert_ne!(k1, k2);
        assert_ne!(k1, k3);
        // Labels are length-prefixed: moving a boundary changes the key.
        assert_ne!(
            KeyBuilder::new().part("ab", "c").finish(),
            KeyBuilder::new().part("a", "bc").finish()
        );
    }

    #[test]
    fn disabled_cache_stores_nothing() {
        let cache = Cache::off();
        cache.put("t", "k", &Bundle::default()).unwrap();
        assert!(cache.get("t", "k", &Warnings::default()).is_none());
        assert!(!cache.enabled());
    }
}
