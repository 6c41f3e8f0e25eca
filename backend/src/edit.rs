//! Text edits in char positions, as the REST API takes them, turned into yrs operations.
//!
//! A request's edits apply in order, each position counted in the text as the previous edit of
//! the same request left it. They are checked and converted to UTF-16 offsets (the unit of the
//! server's yrs documents, as of Yjs) against an editor-core buffer before anything changes, so a
//! request with one bad edit changes nothing.
//!
//! Edits against an older version are applied by `versions::edits_at`: the document as of that
//! version is rebuilt from the op log and the edits are made there by a new yrs client; the
//! resulting update then merges into the live document like a concurrent editor's, which is
//! what OT's rebase would do, with the CRDT's guarantees.

use std::time::{Duration, Instant};

use editor_core::{GapBuffer, PosError, TextBuffer};
use serde::{Deserialize, Serialize};
use similar::{Algorithm, DiffOp};
use yrs::{Text, TextRef, TransactionMut};

/// Longest a diff for a whole-text replacement may take before it settles for a coarser (still
/// correct) edit script.
const DIFF_DEADLINE: Duration = Duration::from_millis(20);

/// Above this many chars on either side, the middle of a replacement is diffed line by line
/// (a char-level diff holds a slice per char).
const CHAR_DIFF_MAX: usize = 100_000;

/// One edit: delete `delete` chars at `pos`, then insert `insert` there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    /// Char (Unicode code point) position in the text as the previous edits of the request left it.
    #[serde(deserialize_with = "json_u64")]
    #[schema(minimum = 0)]
    pub pos: u64,
    /// Chars to delete at `pos`.
    #[serde(default, deserialize_with = "json_u64")]
    #[schema(minimum = 0)]
    pub delete: u64,
    /// Text to insert at `pos` (after the deletion).
    #[serde(default)]
    pub insert: String,
}

/// A non-negative JSON integer; `3.0` counts (JSON Schema calls it an integer too).
pub fn json_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        })
        .ok_or_else(|| {
            serde::de::Error::custom(format!("expected a non-negative integer, got {n}"))
        })
}

/// A JSON integer; `3.0` counts (JSON Schema calls it an integer too).
pub fn json_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < i64::MAX as f64)
                .map(|f| f as i64)
        })
        .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {n}")))
}

/// An edit in UTF-16 offsets, checked against the text it applies to.
#[derive(Debug, Clone)]
pub struct Planned {
    at: u32,
    delete: u32,
    insert: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum EditError {
    #[error("edits[{index}]: {source}")]
    Position { index: usize, source: PosError },
    #[error("edits[{index}]: deleting {delete} chars at position {pos} runs past the end of the {len}-char text: at most {max} can be deleted there")]
    PastEnd {
        index: usize,
        pos: u64,
        delete: u64,
        len: usize,
        max: usize,
    },
    #[error("the edits would make the text longer than yrs can address (2^32 UTF-16 units)")]
    TooLong,
}

/// Checks `edits` in order against `buf` and converts them to UTF-16 offsets.
pub fn plan(buf: &GapBuffer, edits: &[Edit]) -> Result<Vec<Planned>, EditError> {
    match edits {
        [] => Ok(Vec::new()),
        // The common case needs no copy of the text.
        [one] => Ok(plan_one(buf, 0, one)?.into_iter().collect()),
        _ => {
            let mut scratch = buf.clone();
            let mut out = Vec::with_capacity(edits.len());
            for (index, e) in edits.iter().enumerate() {
                out.extend(plan_one(&scratch, index, e)?);
                let pos = e.pos as usize;
                scratch
                    .replace(pos..pos + e.delete as usize, &e.insert)
                    .map_err(|source| EditError::Position { index, source })?;
            }
            Ok(out)
        }
    }
}

/// The edit in UTF-16 offsets; `None` for one that changes nothing (still checked).
fn plan_one(buf: &GapBuffer, index: usize, e: &Edit) -> Result<Option<Planned>, EditError> {
    let len = buf.len_chars();
    if e.pos > len as u64 {
        return Err(EditError::Position {
            index,
            source: PosError::Char {
                pos: usize::try_from(e.pos).unwrap_or(usize::MAX),
                len,
            },
        });
    }
    let pos = e.pos as usize;
    if e.delete > (len - pos) as u64 {
        return Err(EditError::PastEnd {
            index,
            pos: e.pos,
            delete: e.delete,
            len,
            max: len - pos,
        });
    }
    let end = pos + e.delete as usize;
    let position = |source| EditError::Position { index, source };
    let at = buf.char_to_utf16(pos).map_err(position)?;
    let to = buf.char_to_utf16(end).map_err(position)?;
    let added = e.insert.encode_utf16().count();
    if buf.len_utf16() - (to - at) + added > u32::MAX as usize {
        return Err(EditError::TooLong);
    }
    Ok((to > at || added > 0).then(|| Planned {
        at: at as u32,
        delete: (to - at) as u32,
        insert: e.insert.clone(),
    }))
}

/// Applies planned edits to `text` inside `txn`, in order.
pub fn apply(txn: &mut TransactionMut, text: &TextRef, planned: &[Planned]) {
    for p in planned {
        if p.delete > 0 {
            text.remove_range(txn, p.at, p.delete);
        }
        if !p.insert.is_empty() {
            text.insert(txn, p.at, &p.insert);
        }
    }
}

/// Edits that turn `old` into `new` (applied in order), touching as little as it can: the
/// common prefix and suffix stay, and the middle is diffed (chars, or lines for long texts)
/// within a deadline, so text that did not change keeps its CRDT identity and live editors'
/// cursors in it stay where they were.
pub fn diff(old: &str, new: &str) -> Vec<Edit> {
    let prefix = old
        .chars()
        .zip(new.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum::<usize>();
    let (old_rest, new_rest) = (&old[prefix..], &new[prefix..]);
    let suffix = old_rest
        .chars()
        .rev()
        .zip(new_rest.chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum::<usize>();
    let old_mid = &old_rest[..old_rest.len() - suffix];
    let new_mid = &new_rest[..new_rest.len() - suffix];
    let base = old[..prefix].chars().count() as u64;
    if old_mid.is_empty() && new_mid.is_empty() {
        return Vec::new();
    }
    if old_mid.is_empty() || new_mid.is_empty() {
        return vec![Edit {
            pos: base,
            delete: old_mid.chars().count() as u64,
            insert: new_mid.to_string(),
        }];
    }
    let by_lines = old_mid.len().max(new_mid.len()) > CHAR_DIFF_MAX * 4
        || old_mid.chars().count() > CHAR_DIFF_MAX;
    let (old_t, new_t) = (tokens(old_mid, by_lines), tokens(new_mid, by_lines));
    let ops = similar::capture_diff_slices_deadline(
        Algorithm::Myers,
        &old_t,
        &new_t,
        Some(Instant::now() + DIFF_DEADLINE),
    );
    // Char offsets of each token of the new text (ops name token indexes).
    let mut new_at = Vec::with_capacity(new_t.len() + 1);
    let mut acc = 0u64;
    new_at.push(0);
    for t in &new_t {
        acc += t.chars().count() as u64;
        new_at.push(acc);
    }
    let chars_in = |toks: &[&str]| toks.iter().map(|t| t.chars().count() as u64).sum::<u64>();
    let mut edits: Vec<Edit> = Vec::new();
    // Where the next op applies, in tokens of the new text: counted here rather than read from
    // the ops' `new_index`, which similar's Myers can report wrongly for a `Delete` (seen:
    // `Delete { new_index: 2 }` before an `Equal` at new index 0), misplacing the edit.
    let mut cursor = 0usize;
    for op in ops {
        // After the edits so far the text is new[..cursor] + old[old_index..], so each edit's
        // position is at `cursor`.
        let (new_index, old_range, new_range) = match op {
            DiffOp::Equal { len, .. } => {
                cursor += len;
                continue;
            }
            DiffOp::Delete {
                old_index, old_len, ..
            } => (cursor, old_index..old_index + old_len, cursor..cursor),
            DiffOp::Insert { new_len, .. } => {
                let at = cursor;
                cursor += new_len;
                (at, 0..0, at..at + new_len)
            }
            DiffOp::Replace {
                old_index,
                old_len,
                new_len,
                ..
            } => {
                let at = cursor;
                cursor += new_len;
                (at, old_index..old_index + old_len, at..at + new_len)
            }
        };
        let edit = Edit {
            pos: base + new_at[new_index],
            delete: chars_in(&old_t[old_range]),
            insert: new_t[new_range].concat(),
        };
        // A delete followed by an insert at the same place is one replacement.
        match edits.last_mut() {
            Some(last) if last.pos == edit.pos && last.insert.is_empty() => {
                last.delete += edit.delete;
                last.insert = edit.insert;
            }
            _ => edits.push(edit),
        }
    }
    edits
}

/// `s` as lines (each with its `'\n'`) or as chars.
fn tokens(s: &str, by_lines: bool) -> Vec<&str> {
    if by_lines {
        s.split_inclusive('\n').collect()
    } else {
        s.char_indices()
            .map(|(i, c)| &s[i..i + c.len_utf8()])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_to_string(text: &str, edits: &[Edit]) -> String {
        let mut buf = GapBuffer::from_text(text);
        for e in edits {
            let pos = e.pos as usize;
            buf.replace(pos..pos + e.delete as usize, &e.insert)
                .unwrap();
        }
        buf.to_text()
    }

    #[test]
    fn diff_turns_old_into_new() {
        let cases = [
            ("", ""),
            ("", "abc"),
            ("abc", ""),
            ("abc", "abc"),
            ("abc", "aXc"),
            ("hello world", "hello brave new world"),
            ("a😀b🦀c", "a🦀b😀c"),
            ("one\ntwo\nthree\n", "one\n2\nthree\nfour\n"),
            ("The quick brown fox", "A quick brown dog!"),
            ("𝄞𝄞𝄞", "𝄞x𝄞"),
            // similar's Myers reports this Delete at new index 2 instead of 0 (found by the
            // simulation through the text mirror's sync).
            (
                "ééae\u{301}🦀abcéa中文\n\\",
                "ée\u{301}e\u{301}\\céa中文\n\\",
            ),
        ];
        for (old, new) in cases {
            let edits = diff(old, new);
            assert_eq!(
                apply_to_string(old, &edits),
                new,
                "{old:?} -> {new:?}: {edits:?}"
            );
        }
        // Only the changed middle is touched.
        assert_eq!(
            diff("keep THIS keep", "keep that keep"),
            vec![Edit {
                pos: 5,
                delete: 4,
                insert: "that".into()
            }]
        );
    }

    #[test]
    fn diff_of_long_texts_goes_by_lines() {
        let old: String = (0..30_000).map(|i| format!("line {i}\n")).collect();
        let new = old.replace("line 7\n", "line seven\n") + "tail";
        let edits = diff(&old, &new);
        assert_eq!(apply_to_string(&old, &edits), new);
    }

    #[test]
    fn plan_checks_every_edit_in_order() {
        let buf = GapBuffer::from_text("a😀b");
        let edits = [
            Edit {
                pos: 1,
                delete: 1,
                insert: "xy".into(),
            },
            Edit {
                pos: 4,
                delete: 0,
                insert: "!".into(),
            },
        ];
        let planned = plan(&buf, &edits).unwrap();
        assert_eq!((planned[0].at, planned[0].delete), (1, 2));
        assert_eq!((planned[1].at, planned[1].delete), (4, 0));
        let err = plan(
            &buf,
            &[Edit {
                pos: 4,
                delete: 0,
                insert: String::new(),
            }],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("valid positions are 0..=3"),
            "{err}"
        );
        let err = plan(
            &buf,
            &[Edit {
                pos: 2,
                delete: 5,
                insert: String::new(),
            }],
        )
        .unwrap_err();
        assert!(err.to_string().contains("at most 1"), "{err}");
    }
}
