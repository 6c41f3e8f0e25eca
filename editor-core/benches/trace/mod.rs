//! Loading and replaying the editing traces of `shared/traces/sequential` (format in
//! `shared/traces/README.md`). Shared by `benches/replay.rs` (as `mod trace;`) and
//! `examples/replay.rs` (through `#[path]`), so each uses only part of it.
#![allow(dead_code)]

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use editor_core::{PosError, TextBuffer};
use flate2::read::GzDecoder;
use serde::Deserialize;

/// One edit: at char `pos`, delete `del` chars, then insert `ins`.
#[derive(Debug, Clone, Deserialize)]
pub struct Patch(pub usize, pub usize, pub String);

#[derive(Debug, Clone, Deserialize)]
pub struct Txn {
    pub patches: Vec<Patch>,
}

/// A sequential editing trace.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    #[serde(default)]
    pub start_content: String,
    pub end_content: String,
    pub txns: Vec<Txn>,
}

/// Why a trace could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    Open(PathBuf, std::io::Error),
    Gzip(PathBuf, std::io::Error),
    Json(PathBuf, serde_json::Error),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Open(p, e) => write!(f, "cannot open trace {}: {e}", p.display()),
            LoadError::Gzip(p, e) => write!(f, "{} is not a readable gzip file: {e}", p.display()),
            LoadError::Json(p, e) => write!(
                f,
                "{} is not an editing trace (expected JSON {{\"startContent\", \"endContent\", \
                 \"txns\": [{{\"patches\": [[pos, del, ins], ...]}}]}}): {e}",
                p.display()
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// Why a replay failed: the patch that a buffer refused.
#[derive(Debug)]
pub struct ReplayError {
    pub txn: usize,
    pub patch: usize,
    pub pos: usize,
    pub del: usize,
    pub error: PosError,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "txn {} patch {} (pos {}, delete {}) was refused: {}",
            self.txn, self.patch, self.pos, self.del, self.error
        )
    }
}

impl std::error::Error for ReplayError {}

impl Trace {
    /// Reads a gzipped JSON trace.
    pub fn load(path: &Path) -> Result<Trace, LoadError> {
        let file = File::open(path).map_err(|e| LoadError::Open(path.to_owned(), e))?;
        let mut json = Vec::new();
        GzDecoder::new(BufReader::new(file))
            .read_to_end(&mut json)
            .map_err(|e| LoadError::Gzip(path.to_owned(), e))?;
        serde_json::from_slice(&json).map_err(|e| LoadError::Json(path.to_owned(), e))
    }

    /// All patches in order, flattened out of their transactions.
    pub fn patches(&self) -> impl Iterator<Item = &Patch> + '_ {
        self.txns.iter().flat_map(|t| t.patches.iter())
    }

    pub fn patch_count(&self) -> usize {
        self.txns.iter().map(|t| t.patches.len()).sum()
    }

    /// Replays the trace into a fresh `B` through the [`TextBuffer`] interface.
    pub fn replay<B: TextBuffer>(&self) -> Result<B, ReplayError> {
        let mut buf = B::from_text(&self.start_content);
        for (t, txn) in self.txns.iter().enumerate() {
            for (p, Patch(pos, del, ins)) in txn.patches.iter().enumerate() {
                let (pos, del) = (*pos, *del);
                let fail = |error| ReplayError {
                    txn: t,
                    patch: p,
                    pos,
                    del,
                    error,
                };
                if del > 0 {
                    buf.remove(pos..pos.saturating_add(del)).map_err(fail)?;
                }
                if !ins.is_empty() {
                    buf.insert(pos, ins).map_err(fail)?;
                }
            }
        }
        Ok(buf)
    }
}

/// Where `text` and `expected` first differ, as a message (`None` if equal).
pub fn first_difference(text: &str, expected: &str) -> Option<String> {
    if text == expected {
        return None;
    }
    let at = text
        .chars()
        .zip(expected.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let around = |s: &str| {
        s.chars()
            .skip(at.saturating_sub(20))
            .take(40)
            .collect::<String>()
    };
    Some(format!(
        "result has {} chars, endContent has {}; first difference at char {at}: got {:?}, expected {:?}",
        text.chars().count(),
        expected.chars().count(),
        around(text),
        around(expected),
    ))
}
