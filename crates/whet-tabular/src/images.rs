//! Image shards as Parquet, in the layout of Hugging Face `datasets`: an `image` column of
//! structs `{bytes: binary, path: string}`, a `label` integer column, and the class names in
//! the file's `huggingface` key-value metadata (`info.features.label.names`). whet-image
//! decodes the images; this module only moves the columns (whet-image has no Parquet reader,
//! and `whet` wires the two).

use crate::error::{Error, Result};
use polars::prelude::*;
use std::path::Path;

/// The rows of an image shard: for each image its name (`image.path`), its encoded bytes
/// (`image.bytes`) and its label, plus the class names the file declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRows {
    /// `image.path` of each row (empty when null).
    pub names: Vec<String>,
    /// `image.bytes` of each row.
    pub bytes: Vec<Vec<u8>>,
    /// `label` of each row.
    pub labels: Vec<u32>,
    /// `info.features.label.names` from the `huggingface` metadata, when present.
    pub class_names: Option<Vec<String>>,
}

/// The metadata key Hugging Face `datasets` stores its features under.
const HF_KEY: &str = "huggingface";

fn bad(path: &Path, message: String) -> Error {
    Error::ImageShard {
        path: path.to_path_buf(),
        message,
    }
}

fn open(path: &Path) -> Result<ParquetReader<std::fs::File>> {
    crate::parquet_guard::check_parquet(path)?;
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(ParquetReader::new(file))
}

/// Runs a polars read, turning a panic of the decoder into [`Error::CorruptTable`].
fn guarded<T>(path: &Path, f: impl FnOnce() -> PolarsResult<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|source| Error::ReadTable {
            path: path.to_path_buf(),
            source,
        }),
        Err(p) => {
            let detail = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Error::CorruptTable {
                path: path.to_path_buf(),
                format: "Parquet ",
                detail: detail.lines().next().unwrap_or("").to_string(),
            })
        }
    }
}

/// The number of rows of an image shard, from its footer.
///
/// # Errors
/// A file that cannot be read or fails the structural check.
pub fn count_image_parquet(path: &Path) -> Result<usize> {
    let mut reader = open(path)?;
    guarded(path, || reader.num_rows())
}

/// Reads an image shard.
///
/// # Errors
/// [`Error::ImageShard`] naming the column when `image` is not a struct with a binary `bytes`
/// field, `label` is missing, not an integer, null or negative in some row, or the
/// `huggingface` metadata is not JSON; read errors.
pub fn read_image_parquet(path: &Path) -> Result<ImageRows> {
    let mut reader = open(path)?;
    let class_names = {
        let meta = guarded(path, || reader.get_metadata().cloned())?;
        match meta
            .key_value_metadata
            .iter()
            .flatten()
            .find(|kv| kv.key == HF_KEY)
            .and_then(|kv| kv.value.as_deref())
        {
            Some(text) => hf_class_names(text).map_err(|e| {
                bad(
                    path,
                    format!("the `{HF_KEY}` metadata is not the JSON `datasets` writes: {e}"),
                )
            })?,
            None => None,
        }
    };
    let df = guarded(path, || {
        reader
            .with_columns(Some(vec!["image".into(), "label".into()]))
            .finish()
    })
    .map_err(|e| match e {
        Error::ReadTable { .. } => bad(
            path,
            format!(
                "expected the columns `image` (struct of `bytes` and `path`) and `label` \
                 (integer), as Hugging Face `datasets` writes them: {e}"
            ),
        ),
        other => other,
    })?;
    let image = df
        .column("image")
        .map_err(|_| bad(path, "no `image` column".into()))?;
    let image = image.struct_().map_err(|_| {
        bad(
            path,
            format!(
                "column `image` is {}, expected a struct of `bytes` (binary) and `path` (string)",
                image.dtype()
            ),
        )
    })?;
    let fields = image.fields_as_series();
    let field = |name: &str| fields.iter().find(|s| s.name().as_str() == name);
    let bytes_col =
        field("bytes").ok_or_else(|| bad(path, "column `image` has no `bytes` field".into()))?;
    let bytes_ca = bytes_col.binary().map_err(|_| {
        bad(
            path,
            format!(
                "field `image.bytes` is {}, expected binary",
                bytes_col.dtype()
            ),
        )
    })?;
    let names: Vec<String> = match field("path") {
        Some(p) => {
            let p = p
                .cast(&DataType::String)
                .map_err(|source| Error::ReadTable {
                    path: path.to_path_buf(),
                    source,
                })?;
            p.str()
                .map_err(|source| Error::ReadTable {
                    path: path.to_path_buf(),
                    source,
                })?
                .iter()
                .map(|v| v.unwrap_or("").to_string())
                .collect()
        }
        None => vec![String::new(); df.height()],
    };
    let label = df
        .column("label")
        .map_err(|_| bad(path, "no `label` column".into()))?;
    if !label.dtype().is_integer() {
        return Err(bad(
            path,
            format!("column `label` is {}, expected integers", label.dtype()),
        ));
    }
    let label = label
        .cast(&DataType::Int64)
        .map_err(|source| Error::ReadTable {
            path: path.to_path_buf(),
            source,
        })?;
    let mut labels = Vec::with_capacity(df.height());
    for (row, v) in label
        .i64()
        .map_err(|source| Error::ReadTable {
            path: path.to_path_buf(),
            source,
        })?
        .iter()
        .enumerate()
    {
        match v.map(u32::try_from) {
            Some(Ok(l)) => labels.push(l),
            _ => {
                return Err(bad(
                    path,
                    format!(
                        "row {row}: `label` is {}, expected a class number 0, 1, …",
                        v.map_or("null".into(), |v| v.to_string())
                    ),
                ));
            }
        }
    }
    let mut bytes = Vec::with_capacity(df.height());
    for (row, b) in bytes_ca.iter().enumerate() {
        match b {
            Some(b) => bytes.push(b.to_vec()),
            None => {
                return Err(bad(
                    path,
                    format!("row {row}: `image.bytes` is null, expected the encoded image"),
                ));
            }
        }
    }
    Ok(ImageRows {
        names,
        bytes,
        labels,
        class_names,
    })
}

/// `info.features.label.names` of a `huggingface` metadata value, if there.
fn hf_class_names(text: &str) -> std::result::Result<Option<Vec<String>>, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_str(text)?;
    Ok(v.pointer("/info/features/label/names")
        .and_then(|n| n.as_array())
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_string))
                .collect()
        }))
}

/// Writes an image shard to `path` atomically (zstd), in the layout [`read_image_parquet`]
/// reads: row `i` is `names[i]`, `bytes[i]`, `labels[i]`, with `class_names` in the
/// `huggingface` metadata. The images are borrowed, never copied before polars takes them.
///
/// # Errors
/// [`Error::Config`] when the columns differ in length; polars or write errors.
pub fn write_image_parquet(
    path: &Path,
    names: &[&str],
    bytes: &[&[u8]],
    labels: &[u32],
    class_names: Option<&[String]>,
) -> Result<()> {
    let n = bytes.len();
    if names.len() != n || labels.len() != n {
        return Err(Error::Config(format!(
            "image shard rows: {} names, {} images, {} labels",
            names.len(),
            n,
            labels.len()
        )));
    }
    let bytes = BinaryChunked::from_slice("bytes".into(), bytes).into_series();
    let names = Series::new("path".into(), names);
    let image = StructChunked::from_series("image".into(), n, [bytes, names].iter())?;
    let labels: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
    let mut df = DataFrame::new(
        n,
        vec![
            image.into_series().into_column(),
            Series::new("label".into(), labels).into_column(),
        ],
    )?;
    let mut features = serde_json::json!({
        "image": { "_type": "Image" },
        "label": { "dtype": "int64", "_type": "Value" },
    });
    if let Some(names) = class_names {
        features["label"] = serde_json::json!({ "names": names, "_type": "ClassLabel" });
    }
    let meta = serde_json::json!({ "info": { "features": features } }).to_string();
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf)
        .with_compression(ParquetCompression::Zstd(None))
        .with_key_value_metadata(Some(KeyValueMetadata::from_static(vec![(
            HF_KEY.into(),
            meta,
        )])))
        .finish(&mut df)?;
    whet_core::fsx::atomic_write(path, &buf)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_rows_round_trip_with_class_names() {
        let dir = tempfile::tempdir().unwrap();
        let rows = ImageRows {
            names: vec!["a.png".into(), "b.jpg".into()],
            bytes: vec![vec![1, 2, 3], vec![]],
            labels: vec![1, 0],
            class_names: Some(vec!["cat".into(), "dog".into()]),
        };
        let p = dir.path().join("s.parquet");
        let write = |rows: &ImageRows| {
            let names: Vec<&str> = rows.names.iter().map(String::as_str).collect();
            let bytes: Vec<&[u8]> = rows.bytes.iter().map(Vec::as_slice).collect();
            write_image_parquet(
                &p,
                &names,
                &bytes,
                &rows.labels,
                rows.class_names.as_deref(),
            )
            .unwrap();
        };
        write(&rows);
        assert_eq!(count_image_parquet(&p).unwrap(), 2);
        assert_eq!(read_image_parquet(&p).unwrap(), rows);
        let plain = ImageRows {
            class_names: None,
            ..rows
        };
        write(&plain);
        assert_eq!(read_image_parquet(&p).unwrap(), plain);
    }

    #[test]
    fn tables_that_are_not_image_shards_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        let write = |df: &mut DataFrame| {
            let mut buf = Vec::new();
            ParquetWriter::new(&mut buf).finish(df).unwrap();
            std::fs::write(&p, buf).unwrap();
        };
        write(&mut df!("image" => ["x"], "label" => [1i64]).unwrap());
        let e = read_image_parquet(&p).unwrap_err().to_string();
        assert!(e.contains("`image`") && e.contains("struct"), "{e}");
        let bytes = BinaryChunked::from_slice("bytes".into(), &[&b"x"[..]]).into_series();
        let image = StructChunked::from_series("image".into(), 1, [bytes].iter()).unwrap();
        let mut df = DataFrame::new(
            1,
            vec![
                image.into_series().into_column(),
                Series::new("label".into(), [-1i64]).into_column(),
            ],
        )
        .unwrap();
        write(&mut df);
        let e = read_image_parquet(&p).unwrap_err().to_string();
        assert!(e.contains("row 0") && e.contains("-1"), "{e}");
        write(&mut df!("x" => [1i64]).unwrap());
        let e = read_image_parquet(&p).unwrap_err().to_string();
        assert!(e.contains("`image`"), "{e}");
    }
}
