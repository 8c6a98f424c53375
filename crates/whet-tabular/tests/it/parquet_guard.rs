//! The structural Parquet check in front of polars: corrupt files that made polars 0.55 abort the
//! process are refused with a located error (in-process: they no longer reach polars), and valid
//! files written with every codec, several row groups, small pages and nulls load unchanged.

use std::path::{Path, PathBuf};

use whet_tabular::polars::prelude::*;
use whet_tabular::{Error, TableSpec, load_table};

fn abort_inputs() -> Vec<PathBuf> {
    let dir = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../whet-fuzz/crashes/parquet-abort");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the kept abort inputs")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    files
}

#[test]
fn inputs_that_made_polars_abort_are_refused_with_a_located_error() {
    let files = abort_inputs();
    assert_eq!(files.len(), 8, "the 8 kept inputs");
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        let name = format!("{}.parquet", f.file_name().unwrap().to_string_lossy());
        let p = dir.path().join(&name);
        std::fs::copy(&f, &p).unwrap();
        for limit in [None, Some(5)] {
            let mut spec = TableSpec::new(&p);
            spec.limit = limit;
            let err = load_table(&spec).expect_err("a corrupt file");
            let msg = err.to_string();
            assert!(matches!(err, Error::CorruptParquet { .. }), "{name}: {msg}");
            assert!(msg.contains(&name) && msg.contains(" at byte "), "{msg}");
        }
    }
}

fn frame(n: usize) -> DataFrame {
    let mut df = df!(
        "id" => (0..n as i64).collect::<Vec<_>>(),
        "x" => (0..n).map(|i| if i % 11 == 3 { None } else { Some(i as f64 * 0.5) }).collect::<Vec<_>>(),
        "small" => (0..n).map(|i| (i % 5) as i32).collect::<Vec<_>>(),
        "cat" => (0..n).map(|i| if i % 13 == 4 { None } else { Some(["a", "bb", "ccc"][i % 3]) }).collect::<Vec<_>>(),
        "flag" => (0..n).map(|i| if i % 7 == 0 { None } else { Some(i % 2 == 0) }).collect::<Vec<_>>(),
        "text" => (0..n).map(|i| format!("row {i} {}", "z".repeat(i % 40))).collect::<Vec<_>>(),
    )
    .unwrap();
    let days = Series::new(
        "day".into(),
        (0..n as i32).map(|d| 15_706 + d).collect::<Vec<_>>(),
    )
    .cast(&DataType::Date)
    .unwrap();
    df.with_column(days.into_column()).unwrap();
    df
}

#[test]
fn valid_files_of_every_codec_and_layout_load_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let codecs = [
        ParquetCompression::Uncompressed,
        ParquetCompression::Snappy,
        ParquetCompression::Zstd(None),
        ParquetCompression::Lz4Raw,
        ParquetCompression::Gzip(None),
        ParquetCompression::Brotli(None),
    ];
    let mut k = 0;
    for n in [0usize, 1, 3_000] {
        let mut df = frame(n);
        for c in codecs {
            for (stats, group, page) in [
                (true, None, None),
                (false, Some(700), Some(64)),
                (true, Some(1_000), Some(4_096)),
            ] {
                let p = dir.path().join(format!("t{k}.parquet"));
                k += 1;
                let mut f = std::fs::File::create(&p).unwrap();
                ParquetWriter::new(&mut f)
                    .with_compression(c)
                    .with_statistics(if stats {
                        StatisticsOptions::full()
                    } else {
                        StatisticsOptions::empty()
                    })
                    .with_row_group_size(group)
                    .with_data_page_size(page)
                    .finish(&mut df)
                    .unwrap();
                drop(f);
                let (got, report) = load_table(&TableSpec::new(&p))
                    .unwrap_or_else(|e| panic!("{c:?} {group:?} {page:?}: {e}"));
                assert!(got.equals_missing(&df), "{c:?} {group:?} {page:?}");
                assert_eq!(report.rows, n);
            }
        }
    }
}

#[test]
fn truncated_and_bad_magic_files_are_refused_before_polars() {
    let dir = tempfile::tempdir().unwrap();
    let mut df = frame(50);
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf).finish(&mut df).unwrap();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("short", b"PAR1PAR1".to_vec(), "shorter than the 12 bytes"),
        (
            "head",
            [b"XXXX", &buf[4..]].concat(),
            "not the magic `PAR1`",
        ),
        (
            "tail",
            buf[..buf.len() - 1].to_vec(),
            "not the magic `PAR1`",
        ),
        (
            "footerlen",
            {
                let mut b = buf.clone();
                let l = b.len();
                b[l - 8..l - 4].copy_from_slice(&u32::MAX.to_le_bytes());
                b
            },
            "does not fit in the",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = dir.path().join(format!("{name}.parquet"));
        std::fs::write(&p, bytes).unwrap();
        let msg = load_table(&TableSpec::new(&p)).unwrap_err().to_string();
        assert!(
            msg.contains(want) && msg.contains(&format!("{name}.parquet")),
            "{msg}"
        );
    }
}
