//! What a run reads ([`Run::input_paths`]) and the check that its outputs never overlap it
//! ([`Run::check_output`], through [`whet_core::outputs::check`]).

use crate::error::Result;
use crate::runfile::{Run, RunData};
use std::path::{Path, PathBuf};
use whet_core::outputs::{self, Input, OutputKind};

/// What part an input plays in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputRole {
    /// The run file itself, or the pretrain run file.
    RunFile,
    /// Data: an IDX file, an image folder, a table.
    Data,
    /// A checkpoint the run starts from, or the pretrain run's output folder that holds it.
    Checkpoint,
}

/// One file or folder a run reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInput {
    /// The run-file key that names it (`data.tables.flights`), or `the run file`.
    pub key: String,
    /// Its path (resolved against the run file's folder).
    pub path: PathBuf,
    /// What it is.
    pub role: InputRole,
}

impl Run {
    /// Every file and folder this run reads: the IDX files, image folders and tables of train
    /// and test, the transfer checkpoint, the pretrain run file and output folder, and the run
    /// file itself.
    pub fn input_paths(&self) -> Vec<RunInput> {
        let mut out = Vec::new();
        let mut push = |key: String, path: &Path, role| {
            out.push(RunInput {
                key,
                path: path.to_path_buf(),
                role,
            })
        };
        match self.data() {
            RunData::Images { images, .. } => {
                let test = images.test.as_ref().map(|t| ("test", t));
                for (name, s) in std::iter::once(("train", &images.train)).chain(test) {
                    if let Some(idx) = &s.idx {
                        let key = format!("data.images.{name}.idx");
                        push(format!("{key}.images"), &idx.images, InputRole::Data);
                        push(format!("{key}.labels"), &idx.labels, InputRole::Data);
                    }
                    if let Some(f) = &s.folder {
                        let key = format!("data.images.{name}.folder.path");
                        push(key, &f.path, InputRole::Data);
                    }
                    if let Some(f) = &s.shards {
                        // A pattern (`train-*.tar`) reads files of its folder.
                        let key = format!("data.images.{name}.shards.path");
                        let pattern = f
                            .path
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().contains('*'));
                        match f.path.parent() {
                            Some(dir) if pattern => push(key, dir, InputRole::Data),
                            _ => push(key, &f.path, InputRole::Data),
                        }
                    }
                }
            }
            RunData::Tables(cfg) => {
                for (name, t) in &cfg.data.tables {
                    push(format!("data.tables.{name}"), &t.path, InputRole::Data);
                }
            }
        }
        let file = self.file();
        if let Some(t) = &file.train.transfer {
            let key = "train.transfer.checkpoint".into();
            push(key, &t.checkpoint, InputRole::Checkpoint);
        }
        if let Some(p) = &file.pretrain {
            push("pretrain.pipeline".into(), &p.pipeline, InputRole::RunFile);
            push("pretrain.out".into(), &p.out, InputRole::Checkpoint);
        }
        // Last, so an output holding both the data and the run file is reported by the data.
        if self.path().is_file() {
            push("the run file".into(), self.path(), InputRole::RunFile);
        }
        out
    }

    /// Checks that `out`, an output folder of this run, neither equals, contains nor lies inside
    /// any of [`Run::input_paths`] (symlinks followed) and is not an existing regular file.
    /// `run`, `ablate` and `export` call it before any work.
    ///
    /// # Errors
    /// [`crate::Error::Output`] naming the output, the input and its key.
    pub fn check_output(&self, out: &Path) -> Result<()> {
        self.check_output_as(out, OutputKind::Folder)
    }

    /// [`Run::check_output`] for an output of the given kind (`preview` writes one file).
    pub(crate) fn check_output_as(&self, out: &Path, kind: OutputKind) -> Result<()> {
        let inputs: Vec<Input> = self
            .input_paths()
            .into_iter()
            .map(|i| Input::new(i.key, i.path))
            .collect();
        outputs::check(out, kind, &inputs)?;
        Ok(())
    }
}
