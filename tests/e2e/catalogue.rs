//! The catalogue of bad DATA inputs (issue 8): each case makes its files in a temporary folder,
//! runs the real `whet` binary, and checks the exit code (2 bad input, 1 a run that fails), a
//! fragment of the message (the file and the place), that nothing panicked, and that earlier
//! results in the output folder are left byte for byte as they were (no partial or temp files).

use crate::util::{repo, whet};
use polars::prelude::{DataFrame, IntoColumn, NamedFrom, ParquetWriter, Series, df};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A small tabular run file over `main.csv` (columns x1, x2, cat, y) in the case folder.
pub(crate) fn tab_run(tables: &str, target: &str, steps: &str) -> String {
    format!(
        r#"name: cat
seed: 1
data:
  tables:
{tables}
  main: main
  target: {target}
steps:
{steps}
split: {{ method: random, test: 0.2, validation: 0.2 }}
model:
  task: binary
  hidden:
    - {{ dense: 4, activation: relu }}
train:
  optimizer: {{ adam: {{ lr: 0.01 }} }}
  batch_size: 16
  epochs: 1
"#
    )
}

pub(crate) fn good_csv(rows: usize) -> String {
    let mut s = String::from("id,x1,x2,cat,y\n");
    for i in 0..rows {
        s.push_str(&format!(
            "{i},{},{},{},{}\n",
            i as f64 * 0.5,
            (i * 7 % 11) as f64,
            ["a", "b", "c"][i % 3],
            (i * 13 % 7 > 3) as u8
        ));
    }
    s
}

pub(crate) const MAIN: &str = "    main: main.csv";
pub(crate) const TARGET: &str = "{ column: y, threshold: 0.5 }";
pub(crate) const STEPS: &str = "  - normalize: { method: zscore }";

/// An image run file over a folder `imgs/` (8x8 grey) or IDX files `images.idx` / `labels.idx`.
pub(crate) fn img_run(source: &str) -> String {
    format!(
        r#"name: cat
seed: 1
data:
  images:
    train: {source}
    test: {source}
model:
  task: classification
  hidden:
    - {{ dense: 4, activation: relu }}
train:
  optimizer: {{ adam: {{ lr: 0.01 }} }}
  batch_size: 8
  epochs: 1
"#
    )
}

const IDX: &str = "{ idx: { images: images.idx, labels: labels.idx } }";
pub(crate) const FOLDER: &str = "{ folder: { path: imgs, width: 8, height: 8 } }";

pub(crate) fn idx_bytes(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

fn gzip(b: &[u8]) -> Vec<u8> {
    // A stored (uncompressed) gzip member written by hand keeps the test free of flate2:
    // header, one final stored block, CRC-32 and size.
    let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut rest = b;
    loop {
        let n = rest.len().min(65535);
        let last = n == rest.len();
        v.push(last as u8);
        v.extend_from_slice(&(n as u16).to_le_bytes());
        v.extend_from_slice(&(!(n as u16)).to_le_bytes());
        v.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if last {
            break;
        }
    }
    let mut crc = 0xffff_ffffu32;
    for &byte in b {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    v.extend_from_slice(&(!crc).to_le_bytes());
    v.extend_from_slice(&(b.len() as u32).to_le_bytes());
    v
}

/// 40 valid 8x8 images with labels 0..3.
fn idx_pair(n_labels: u32) -> (Vec<u8>, Vec<u8>) {
    let px: Vec<u8> = (0..40 * 64).map(|i| (i * 37 % 251) as u8).collect();
    let labels: Vec<u8> = (0..n_labels).map(|i| (i % 4) as u8).collect();
    (
        idx_bytes(0x803, &[40, 8, 8], &px),
        idx_bytes(0x801, &[n_labels], &labels),
    )
}

/// An 8x8 grey PNG whose header (IHDR) declares `w` x `h`: the decoder must refuse the size
/// before it allocates `w * h` bytes.
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let small = png(8, 8, 1);
    let mut out = small[..8].to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    // The rest (IDAT, IEND) of the small image: 8 signature + 25 IHDR bytes in.
    out.extend_from_slice(&small[33..]);
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    let mut crc = 0xffff_ffffu32;
    for &b in &body {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    out.extend_from_slice(&body);
    out.extend_from_slice(&(!crc).to_be_bytes());
}

/// A grey 16x16 JPEG (the image crate's encoder, as whet-cli links it).
fn jpeg() -> Vec<u8> {
    let img = image::GrayImage::from_fn(16, 16, |x, y| image::Luma([(x * 13 + y * 7) as u8]));
    let mut c = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut c, image::ImageFormat::Jpeg)
        .unwrap();
    c.into_inner()
}

/// The table of `good_csv` as Parquet (zstd, polars' default), with `edit` applied first.
fn parquet_with(rows: usize, edit: fn(DataFrame) -> DataFrame) -> Vec<u8> {
    let n = rows as i64;
    let df = df!(
        "id" => (0..n).collect::<Vec<_>>(),
        "x1" => (0..n).map(|i| i as f64 * 0.5).collect::<Vec<_>>(),
        "x2" => (0..n).map(|i| (i * 7 % 11) as f64).collect::<Vec<_>>(),
        "cat" => (0..n).map(|i| ["a", "b", "c"][(i % 3) as usize]).collect::<Vec<_>>(),
        "y" => (0..n).map(|i| (i * 13 % 7 > 3) as i64).collect::<Vec<_>>(),
    )
    .unwrap();
    let mut df = edit(df);
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf).finish(&mut df).unwrap();
    buf
}

fn parquet(rows: usize) -> Vec<u8> {
    parquet_with(rows, |df| df)
}

/// Where a Parquet file's footer (thrift metadata) starts: the data pages lie before it.
fn parquet_footer_start(b: &[u8]) -> usize {
    let n = b.len();
    let len = u32::from_le_bytes([b[n - 8], b[n - 7], b[n - 6], b[n - 5]]) as usize;
    n - 8 - len
}

const PARQUET: &str = "    main: main.parquet";

fn parquet_case(dir: &Path, bytes: Vec<u8>, target: &str) -> Vec<String> {
    write(dir, "main.parquet", bytes);
    write(dir, "run.yaml", tab_run(PARQUET, target, STEPS));
    run_args(dir)
}

/// A PNG (grey, `w`x`h`, `channels` 1 or 3) written by hand: stored zlib, so no encoder needed.
pub(crate) fn png(w: u32, h: u32, channels: u8) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0);
        for x in 0..w * channels as u32 {
            raw.push(((x * 31 + y * 17) % 256) as u8);
        }
    }
    // zlib: header, stored blocks, Adler-32.
    let mut z = vec![0x78, 0x01];
    let mut rest = &raw[..];
    loop {
        let n = rest.len().min(65535);
        let last = n == rest.len();
        z.push(last as u8);
        z.extend_from_slice(&(n as u16).to_le_bytes());
        z.extend_from_slice(&(!(n as u16)).to_le_bytes());
        z.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if last {
            break;
        }
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, if channels == 1 { 0 } else { 2 }, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

pub(crate) fn image_folder(dir: &Path, extra: &[(&str, Vec<u8>)]) {
    for class in ["a", "b"] {
        let d = dir.join("imgs").join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..10 {
            std::fs::write(d.join(format!("{i:02}.png")), png(8, 8, 1)).unwrap();
        }
    }
    for (name, bytes) in extra {
        std::fs::write(dir.join("imgs").join(name), bytes).unwrap();
    }
}

struct Case {
    name: &'static str,
    /// Writes the inputs into the case folder; returns the arguments after `whet`.
    setup: fn(&Path) -> Vec<String>,
    code: i32,
    /// Fragments the output (stderr + stdout) must contain.
    expect: &'static [&'static str],
}

pub(crate) fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

pub(crate) fn run_args(dir: &Path) -> Vec<String> {
    vec![
        "run".into(),
        dir.join("run.yaml").display().to_string(),
        "--out".into(),
        dir.join("out").display().to_string(),
    ]
}

pub(crate) fn tab_case(dir: &Path, csv: &str, target: &str, steps: &str) -> Vec<String> {
    write(dir, "main.csv", csv);
    write(dir, "run.yaml", tab_run(MAIN, target, steps));
    run_args(dir)
}

fn idx_case(dir: &Path, images: Vec<u8>, labels: Vec<u8>) -> Vec<String> {
    write(dir, "images.idx", images);
    write(dir, "labels.idx", labels);
    write(dir, "run.yaml", img_run(IDX));
    run_args(dir)
}

const SHARDS: &str = "{ shards: { path: x.tar, width: 8, height: 8 } }";

/// A tar file of `members` (name, bytes).
fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn shard_case(dir: &Path, tar: Vec<u8>) -> Vec<String> {
    write(dir, "x.tar", tar);
    write(dir, "run.yaml", img_run(SHARDS));
    run_args(dir)
}

const CASES: &[Case] = &[
    Case {
        name: "WebDataset shard: a sample without its .cls label",
        setup: |d| {
            shard_case(
                d,
                tar_of(&[
                    ("a.png", &png(8, 8, 1)),
                    ("b.png", &png(8, 8, 1)),
                    ("b.cls", b"1"),
                ]),
            )
        },
        code: 2,
        expect: &["x.tar", "sample `a` has no label", "a.cls"],
    },
    Case {
        name: "WebDataset shard: a corrupt PNG member",
        setup: |d| {
            let mut bad = png(8, 8, 1);
            let n = bad.len();
            bad[n / 2..].fill(0x5a);
            shard_case(d, tar_of(&[("a.png", &bad), ("a.cls", b"0")]))
        },
        code: 2,
        expect: &["x.tar/a.png"],
    },
    Case {
        name: "WebDataset shard: a member header declaring 1 TiB",
        setup: |d| {
            let mut h = tar::Header::new_gnu();
            h.set_path("a.png").unwrap();
            h.set_size(1 << 40);
            h.set_mode(0o644);
            h.set_cksum();
            let mut bytes = h.as_bytes().to_vec();
            bytes.extend_from_slice(&[0; 1024]);
            shard_case(d, bytes)
        },
        code: 2,
        expect: &["x.tar", "declares 1099511627776 bytes"],
    },
    Case {
        name: "WebDataset shard: not a tar file",
        setup: |d| shard_case(d, b"PK\x03\x04 a zip file, not a tar".repeat(30)),
        code: 2,
        expect: &["x.tar", "tar"],
    },
    Case {
        name: "Parquet shard whose image column holds text",
        setup: |d| {
            let mut df = df!("image" => ["a.png"], "label" => [0i64]).unwrap();
            let mut f = std::fs::File::create(d.join("x.parquet")).unwrap();
            ParquetWriter::new(&mut f).finish(&mut df).unwrap();
            write(
                d,
                "run.yaml",
                img_run("{ shards: { path: x.parquet, width: 8, height: 8 } }"),
            );
            run_args(d)
        },
        code: 2,
        expect: &["x.parquet", "column `image` is str", "struct of `bytes`"],
    },
    Case {
        name: "truncated IDX gzip",
        setup: |d| {
            let (i, l) = idx_pair(40);
            let gz = gzip(&i);
            idx_case(d, gz[..gz.len() / 2].to_vec(), l)
        },
        code: 2,
        expect: &["images.idx"],
    },
    Case {
        name: "corrupt IDX gzip",
        setup: |d| {
            let (i, l) = idx_pair(40);
            let mut gz = gzip(&i);
            // Break the stored block's length check (LEN vs NLEN).
            gz[12] ^= 0x55;
            idx_case(d, gz, l)
        },
        code: 2,
        expect: &["images.idx"],
    },
    Case {
        name: "wrong IDX magic",
        setup: |d| {
            let (mut i, l) = idx_pair(40);
            i[3] = 0x02;
            idx_case(d, i, l)
        },
        code: 2,
        expect: &["images.idx", "wrong magic number 0x00000802"],
    },
    Case {
        name: "label count does not match",
        setup: |d| {
            let (i, l) = idx_pair(39);
            idx_case(d, i, l)
        },
        code: 2,
        expect: &[
            "labels.idx",
            "has 39 labels",
            "has 40 images",
            "at `data.images.train.idx.labels`",
        ],
    },
    Case {
        name: "IDX header declares 100,000 x 100,000 images",
        setup: |d| {
            let i = idx_bytes(0x803, &[1, 100_000, 100_000], &[0; 64]);
            idx_case(d, i, idx_bytes(0x801, &[1], &[0]))
        },
        code: 2,
        expect: &["images.idx", "100000 x 100000", "more than the limit"],
    },
    Case {
        name: "corrupt PNG in an image folder",
        setup: |d| {
            let mut bad = png(8, 8, 1);
            let n = bad.len();
            bad[n / 2..].fill(0x5a);
            image_folder(d, &[("a/bad.png", bad)]);
            write(d, "run.yaml", img_run(FOLDER));
            run_args(d)
        },
        code: 2,
        expect: &["bad.png"],
    },
    Case {
        name: "corrupt JPEG in an image folder",
        setup: |d| {
            let bad = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xdb garbage".to_vec();
            image_folder(d, &[("b/bad.jpg", bad)]);
            write(d, "run.yaml", img_run(FOLDER));
            run_args(d)
        },
        code: 2,
        expect: &["bad.jpg"],
    },
    Case {
        name: "corrupt PNG with skip_bad: skipped and reported, the run goes on",
        setup: |d| {
            let mut bad = png(8, 8, 1);
            bad.truncate(30);
            image_folder(d, &[("a/bad.png", bad)]);
            write(
                d,
                "run.yaml",
                img_run("{ folder: { path: imgs, width: 8, height: 8, skip_bad: true } }"),
            );
            run_args(d)
        },
        code: 0,
        expect: &["bad.png"],
    },
    Case {
        name: "mixed sizes and channels in a folder: resized and converted as declared",
        setup: |d| {
            image_folder(
                d,
                &[("a/big.png", png(13, 5, 3)), ("b/rgb.png", png(8, 8, 3))],
            );
            write(d, "run.yaml", img_run(FOLDER));
            run_args(d)
        },
        code: 0,
        expect: &[],
    },
    Case {
        name: "truncated raw IDX (fewer pixels than the header declares)",
        setup: |d| {
            let (mut i, l) = idx_pair(40);
            i.truncate(16 + 20 * 64 + 5);
            idx_case(d, i, l)
        },
        code: 2,
        expect: &["images.idx"],
    },
    Case {
        name: "truncated PNG in an image folder",
        setup: |d| {
            let mut bad = png(8, 8, 1);
            bad.truncate(bad.len() - 20);
            image_folder(d, &[("a/bad.png", bad)]);
            write(d, "run.yaml", img_run(FOLDER));
            run_args(d)
        },
        code: 2,
        expect: &["bad.png"],
    },
    Case {
        name: "truncated JPEG in an image folder",
        setup: |d| {
            let mut bad = jpeg();
            bad.truncate(bad.len() / 2);
            image_folder(d, &[("b/bad.jpg", bad)]);
            write(d, "run.yaml", img_run(FOLDER));
            run_args(d)
        },
        code: 2,
        expect: &["bad.jpg"],
    },
    Case {
        name: "PNG header declaring 100,000 x 100,000 pixels",
        setup: |d| {
            image_folder(d, &[("a/huge.png", png_declaring(100_000, 100_000))]);
            write(d, "run.yaml", img_run(FOLDER));
            run_args(d)
        },
        code: 2,
        expect: &["huge.png", "limit exceeded"],
    },
    Case {
        name: "truncated CSV.gz",
        setup: |d| {
            let gz = gzip(good_csv(40).as_bytes());
            write(d, "main.csv.gz", &gz[..gz.len() * 2 / 3]);
            write(
                d,
                "run.yaml",
                tab_run("    main: main.csv.gz", TARGET, STEPS),
            );
            run_args(d)
        },
        code: 2,
        expect: &["main.csv.gz"],
    },
    Case {
        name: "truncated Parquet",
        setup: |d| {
            let b = parquet(40);
            parquet_case(d, b[..b.len() / 2].to_vec(), TARGET)
        },
        code: 2,
        expect: &["main.parquet", "PAR1"],
    },
    Case {
        name: "empty Parquet file",
        setup: |d| parquet_case(d, Vec::new(), TARGET),
        code: 2,
        expect: &["main.parquet"],
    },
    Case {
        name: "Parquet with a bad footer magic",
        setup: |d| {
            let mut b = parquet(40);
            let n = b.len();
            b[n - 1] = b'0';
            parquet_case(d, b, TARGET)
        },
        code: 2,
        expect: &["main.parquet", "PAR1"],
    },
    Case {
        name: "Parquet with corrupt data pages (bytes flipped before the footer)",
        setup: |d| {
            let mut b = parquet(40);
            let end = parquet_footer_start(&b);
            for x in &mut b[8..end] {
                *x ^= 0x5a;
            }
            parquet_case(d, b, TARGET)
        },
        code: 2,
        expect: &["main.parquet"],
    },
    Case {
        name: "Parquet on which polars' reader panics (an input kept by whet-fuzz)",
        setup: |d| {
            let crash = repo().join("crates/whet-fuzz/crashes/parquet/crash-135b1ac868004b3b");
            parquet_case(d, std::fs::read(crash).unwrap(), TARGET)
        },
        code: 2,
        expect: &["main.parquet", "corrupt data"],
    },
    Case {
        name: "type override on a Parquet table (CSV only: refused, not ignored)",
        setup: |d| {
            write(d, "main.parquet", parquet(40));
            write(
                d,
                "run.yaml",
                tab_run(
                    "    main: { path: main.parquet, types: { x1: str } }",
                    TARGET,
                    STEPS,
                ),
            );
            run_args(d)
        },
        code: 2,
        expect: &["data.tables.main.types", "main.parquet", "x1"],
    },
    Case {
        name: "Parquet target stored as text",
        setup: |d| {
            let b = parquet_with(40, |mut df| {
                let y: Vec<&str> = df
                    .column("y")
                    .unwrap()
                    .i64()
                    .unwrap()
                    .into_no_null_iter()
                    .map(|v| if v == 1 { "yes" } else { "no" })
                    .collect();
                df.with_column(Series::new("y".into(), y).into_column())
                    .unwrap();
                df
            });
            parquet_case(d, b, TARGET)
        },
        code: 2,
        expect: &["`y`", "str"],
    },
    Case {
        name: "infinity in a Parquet float column",
        setup: |d| {
            let b = parquet_with(40, |mut df| {
                let x: Vec<f64> = (0..40)
                    .map(|i| if i == 5 { f64::INFINITY } else { i as f64 })
                    .collect();
                df.with_column(Series::new("x1".into(), x).into_column())
                    .unwrap();
                df
            });
            parquet_case(d, b, TARGET)
        },
        code: 2,
        expect: &["x1", "non-finite"],
    },
    Case {
        name: "Parquet with no rows",
        setup: |d| parquet_case(d, parquet(0), TARGET),
        code: 2,
        expect: &["main.parquet", "no data rows"],
    },
    Case {
        name: "CSV with a ragged row",
        setup: |d| {
            let mut csv = good_csv(40);
            csv.push_str("40,1.0,2.0\n");
            tab_case(d, &csv, TARGET, STEPS)
        },
        code: 2,
        expect: &["main.csv", "line 42", "expected 5 fields"],
    },
    Case {
        name: "wrong type in a column",
        setup: |d| {
            let csv = good_csv(40).replacen("\n7,3.5,", "\n7,abc,", 1);
            write(d, "main.csv", csv);
            write(
                d,
                "run.yaml",
                tab_run(
                    "    main: { path: main.csv, types: { x1: f64 } }",
                    TARGET,
                    STEPS,
                ),
            );
            run_args(d)
        },
        code: 2,
        expect: &["main.csv", "line 9", "x1", "abc"],
    },
    Case {
        name: "join key missing from one table",
        setup: |d| {
            write(d, "main.csv", good_csv(40));
            write(d, "side.csv", "other,z\n1,2\n");
            write(
                d,
                "run.yaml",
                tab_run(
                    "    main: main.csv\n    side: side.csv",
                    TARGET,
                    "  - join: { with: side, on: [id], how: left }\n  - normalize: { method: zscore }",
                ),
            );
            run_args(d)
        },
        code: 2,
        expect: &["side", "id"],
    },
    Case {
        name: "target column that does not exist",
        setup: |d| tab_case(d, &good_csv(40), "{ column: nope, threshold: 0.5 }", STEPS),
        code: 2,
        expect: &["nope"],
    },
    Case {
        name: "target with one class",
        setup: |d| {
            let csv = good_csv(40).replace(",1\n", ",0\n");
            tab_case(d, &csv, TARGET, STEPS)
        },
        code: 2,
        expect: &["main.csv", "`y`", "single class"],
    },
    Case {
        name: "empty table after drop_rows",
        setup: |d| {
            let mut csv = String::from("id,x1,x2,cat,y\n");
            for i in 0..20 {
                csv.push_str(&format!("{i},NA,{i},a,{}\n", i % 2));
            }
            tab_case(
                d,
                &csv,
                TARGET,
                "  - drop_rows: { how: any }\n  - normalize: { method: zscore }",
            )
        },
        code: 2,
        expect: &["main.csv", "drop_rows", "no rows left"],
    },
    Case {
        name: "all-missing column",
        setup: |d| {
            let mut csv = String::from("id,x1,x2,cat,y\n");
            for i in 0..40 {
                csv.push_str(&format!("{i},{},NA,a,{}\n", i as f64 * 0.1, i % 2));
            }
            write(d, "main.csv", csv);
            write(
                d,
                "run.yaml",
                tab_run(
                    "    main: { path: main.csv, types: { x2: f64 } }",
                    TARGET,
                    "  - impute: { numeric: median }\n  - normalize: { method: zscore }",
                ),
            );
            run_args(d)
        },
        code: 2,
        expect: &["x2"],
    },
    Case {
        name: "infinity in a feature",
        setup: |d| {
            let csv = good_csv(40).replacen("\n5,2.5,", "\n5,inf,", 1);
            tab_case(d, &csv, TARGET, STEPS)
        },
        code: 2,
        expect: &["x1", "non-finite"],
    },
    Case {
        name: "NaN in a feature",
        setup: |d| {
            let csv = good_csv(40).replacen("\n5,2.5,", "\n5,NaN,", 1);
            tab_case(d, &csv, TARGET, STEPS)
        },
        code: 2,
        expect: &["x1", "non-finite"],
    },
    Case {
        name: "output folder under a regular file",
        setup: |d| {
            tab_case(d, &good_csv(40), TARGET, STEPS);
            vec![
                "run".into(),
                d.join("run.yaml").display().to_string(),
                "--out".into(),
                d.join("out/sentinel.txt/sub").display().to_string(),
            ]
        },
        code: 2,
        expect: &["sentinel.txt"],
    },
    Case {
        name: "export into a folder that cannot be written (/proc)",
        setup: |d| {
            tab_case(d, &good_csv(40), TARGET, STEPS);
            vec![
                "export".into(),
                d.join("run.yaml").display().to_string(),
                "--out".into(),
                "/proc/whet-export".into(),
                "--format".into(),
                "csv".into(),
            ]
        },
        code: 2,
        expect: &["/proc/whet-export"],
    },
    Case {
        name: "write error during export (a folder where a file must go)",
        setup: |d| {
            tab_case(d, &good_csv(40), TARGET, STEPS);
            // The export's manifest cannot replace a folder: the write fails midway, for root too.
            std::fs::create_dir_all(d.join("out/manifest.json/x")).unwrap();
            vec![
                "export".into(),
                d.join("run.yaml").display().to_string(),
                "--out".into(),
                d.join("out").display().to_string(),
                "--format".into(),
                "csv".into(),
            ]
        },
        code: 2,
        expect: &["manifest.json"],
    },
];

/// Every file under `dir` with its bytes (folders as `None`).
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.insert(p.clone(), None);
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).ok());
            }
        }
    }
    out
}

#[test]
fn bad_data_inputs_fail_cleanly_and_leave_earlier_results() {
    let root = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let mut failures = Vec::new();
    for (k, case) in CASES.iter().enumerate() {
        let dir = root.path().join(format!("case-{k:02}"));
        std::fs::create_dir_all(dir.join("out")).unwrap();
        // Earlier results that a failure must leave as they were.
        std::fs::write(dir.join("out/metrics.json"), b"{\"earlier\": true}\n").unwrap();
        std::fs::write(dir.join("out/sentinel.txt"), b"earlier results\n").unwrap();
        let args = (case.setup)(&dir);
        let before = snapshot(&dir.join("out"));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = whet(&dir, &argv);
        let msg = format!("{}\n{}", r.stderr, r.stdout);
        let mut bad = Vec::new();
        if r.code != case.code {
            bad.push(format!("exit {} (want {})", r.code, case.code));
        }
        if msg.contains("panicked") {
            bad.push("panicked".into());
        }
        for frag in case.expect {
            if !msg.contains(frag) {
                bad.push(format!("message lacks `{frag}`"));
            }
        }
        if case.code != 0 {
            let after = snapshot(&dir.join("out"));
            if after != before {
                let changed: Vec<_> = after
                    .keys()
                    .chain(before.keys())
                    .filter(|p| after.get(*p) != before.get(*p))
                    .collect();
                bad.push(format!("the output folder changed: {changed:?}"));
            }
        }
        if !bad.is_empty() {
            failures.push(format!("{}: {}\n{msg}", case.name, bad.join("; ")));
        }
    }
    eprintln!(
        "catalogue: {} cases in {:.1} s",
        CASES.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn export_writes_nothing_outside_out() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    image_folder(&data, &[]);
    // Class folders named like path tricks must not lead the export out of --out.
    for evil in ["..a", ". .", "-rf"] {
        let c = data.join("imgs").join(evil);
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join("x.png"), png(8, 8, 1)).unwrap();
    }
    let run = img_run("{ folder: { path: imgs, width: 8, height: 8 } }");
    std::fs::write(data.join("run.yaml"), &run).unwrap();
    let before = snapshot(d);
    let out = d.join("exports/png");
    let r = whet(
        d,
        &[
            "export",
            data.join("run.yaml").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--format",
            "png",
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let after = snapshot(d);
    let outside: Vec<_> = after
        .keys()
        .filter(|p| !p.starts_with(&out) && !p.starts_with(d.join(".cache")))
        .filter(|p| before.get(*p) != after.get(*p))
        .filter(|p| **p != d.join("exports"))
        .collect();
    assert!(outside.is_empty(), "written outside --out: {outside:?}");
    assert!(
        after
            .keys()
            .any(|p| p.starts_with(&out) && p.extension().is_some_and(|e| e == "png")),
        "no PNG exported"
    );
}

#[test]
fn paths_in_a_run_file_resolve_against_its_folder() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let cfg = d.join("configs/nested");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::write(d.join("data/main.csv"), good_csv(60)).unwrap();
    std::fs::write(
        cfg.join("run.yaml"),
        tab_run("    main: ../../data/main.csv", TARGET, STEPS),
    )
    .unwrap();
    // Run from an unrelated folder: the CSV is found relative to the run file, not the cwd.
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let r = whet(
        &elsewhere,
        &["validate", cfg.join("run.yaml").to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    // And the same relative path from the cwd's point of view is not used.
    let mut f = std::fs::File::create(elsewhere.join("decoy.txt")).unwrap();
    writeln!(f, "not data").unwrap();
    let moved = d.join("configs/run.yaml");
    std::fs::copy(cfg.join("run.yaml"), &moved).unwrap();
    let r = whet(&cfg, &["validate", moved.to_str().unwrap()]);
    assert_eq!(
        r.code, 2,
        "one folder up, ../../data does not exist: {}",
        r.stderr
    );
    assert!(r.stderr.contains("main.csv"), "{}", r.stderr);
}

/// A disk that fills up during an export, simulated without root or a special file system: `ulimit
/// -f` caps the size of every file the process writes, so a write past the cap fails with EFBIG
/// ("File too large"), the same failure midway through a file as ENOSPC. `trap '' XFSZ` keeps the
/// kernel's SIGXFSZ from killing the process first (an ignored signal stays ignored across exec).
#[test]
fn export_on_a_full_disk_fails_cleanly_and_leaves_earlier_exports() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    write(d, "main.csv", good_csv(3000));
    write(d, "run.yaml", tab_run(MAIN, TARGET, STEPS));
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    write(&out, "train.csv", "an earlier export\n");
    write(&out, "manifest.json", "{\"earlier\": true}\n");
    let before = snapshot(&out);
    // 64 blocks: 32 KiB (dash counts 512-byte blocks), less than the exported train.csv.
    let r = std::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 64; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_whet"))
        .args([
            "export", "run.yaml", "--out", "out", "--format", "csv", "--quiet",
        ])
        .current_dir(d)
        .env("WHET_CACHE_DIR", d.join(".cache"))
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
    assert!(msg.contains("File too large"), "{msg}");
    assert!(msg.contains(".csv"), "the message names the file: {msg}");
    assert_eq!(
        snapshot(&out),
        before,
        "the earlier export changed or a partial file is left"
    );
}
