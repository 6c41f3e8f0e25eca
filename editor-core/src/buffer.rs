//! The text buffer interface every quire client shares, and its position errors.
//!
//! Positions in the public API are `char` indexes (Unicode scalar values), the unit the editing
//! traces and people count in. Conversions reach the other units: UTF-8 bytes (storage), UTF-16
//! code units (the unit Yjs uses on the wire) and line/column (the unit editors display).
//!
//! Lines are separated by `'\n'` only. A `"\r\n"` line ending therefore leaves the `'\r'` as the
//! last char of its line; every implementation agrees on this, so positions never drift between
//! the rope, the gap buffer and the CRDT.
//!
//! Invariants every implementation upholds (checked by the shared property test in
//! `tests/buffer_model.rs` against a plain `String`):
//! - the content is always valid UTF-8, and `len_*` equal the counts of `to_string()`;
//! - no method panics on any position: out-of-range input returns [`PosError`];
//! - `chunks()` concatenated equals `to_string()`, and no chunk is empty.

use std::ops::Range;

/// Why a position or range was refused. Each variant names the valid range, so an error shown to a
/// user (or returned by the REST API) says what would have been accepted.
///
/// # Examples
///
/// ```
/// use editor_core::{GapBuffer, PosError, TextBuffer};
///
/// let mut buf = GapBuffer::from_text("héllo");
/// let err = buf.insert(9, "!").unwrap_err();
/// assert_eq!(err, PosError::Char { pos: 9, len: 5 });
/// assert_eq!(err.to_string(), "char position 9 is out of range: valid positions are 0..=5");
/// // `é` is two bytes: byte 2 is inside it.
/// assert_eq!(buf.byte_to_char(2), Err(PosError::NotCharBoundary { pos: 2 }));
/// // The refused edit left the text as it was.
/// assert_eq!(buf.to_text(), "héllo");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PosError {
    #[error("char position {pos} is out of range: valid positions are 0..={len}")]
    Char { pos: usize, len: usize },
    #[error(
        "char index {pos} is out of range: the text has {len} chars, so valid indexes are 0..{len}"
    )]
    CharIndex { pos: usize, len: usize },
    #[error("byte position {pos} is out of range: valid positions are 0..={len}")]
    Byte { pos: usize, len: usize },
    #[error("byte position {pos} is inside a UTF-8 sequence; use a char boundary")]
    NotCharBoundary { pos: usize },
    #[error("UTF-16 position {pos} is out of range: valid positions are 0..={len}")]
    Utf16 { pos: usize, len: usize },
    #[error("UTF-16 position {pos} is inside a surrogate pair; use a code point boundary")]
    InsideSurrogatePair { pos: usize },
    #[error("line {line} is out of range: valid lines are 0..{len}")]
    Line { line: usize, len: usize },
    #[error("column {col} is out of range for line {line}: valid columns are 0..={len}")]
    Column { line: usize, col: usize, len: usize },
    #[error("range {start}..{end} is reversed: the start must not exceed the end")]
    Reversed { start: usize, end: usize },
}

/// A mutable UTF-8 text addressed by char index.
///
/// `Default` is the empty text. All methods that take a position validate it first and leave the
/// buffer unchanged on error. The invariants every implementation upholds are listed in the
/// [module documentation](self).
///
/// # Examples
///
/// Code written against the trait runs on every buffer, with the same positions:
///
/// ```
/// use editor_core::{GapBuffer, RopeBuffer, TextBuffer};
///
/// fn edit<B: TextBuffer>() -> B {
///     let mut buf = B::from_text("hello\nworld");
///     buf.insert(5, ", you").unwrap();
///     buf.replace(11..16, "🌍").unwrap();
///     buf
/// }
///
/// for text in [edit::<GapBuffer>().to_text(), edit::<RopeBuffer>().to_text()] {
///     assert_eq!(text, "hello, you\n🌍");
/// }
/// let buf: GapBuffer = edit();
/// assert_eq!((buf.len_chars(), buf.len_bytes(), buf.len_utf16()), (12, 15, 13));
/// assert_eq!(buf.len_lines(), 2);
/// // The globe is one char, four UTF-8 bytes and a UTF-16 surrogate pair.
/// assert_eq!(buf.char_to_byte(12).unwrap(), 15);
/// assert_eq!(buf.char_to_utf16(12).unwrap(), 13);
/// assert_eq!(buf.char_to_line_col(11).unwrap(), (1, 0));
/// assert_eq!(buf.line_col_to_char(0, 10).unwrap(), 10);
/// assert_eq!(buf.slice(7..10).unwrap(), "you");
/// assert_eq!(buf.chunks().collect::<String>(), buf.to_text());
/// ```
pub trait TextBuffer: Default + Clone {
    /// A short name for reports and benchmarks ("rope", "gap").
    const NAME: &'static str;

    /// A buffer holding `text`.
    fn from_text(text: &str) -> Self;

    fn len_chars(&self) -> usize;
    fn len_bytes(&self) -> usize;
    /// Length in UTF-16 code units (what Yjs calls the length of a `Y.Text`).
    fn len_utf16(&self) -> usize;
    /// Number of lines: the count of `'\n'` plus one (an empty text has one empty line).
    fn len_lines(&self) -> usize;

    /// Inserts `text` so that its first char ends up at `char_idx`.
    fn insert(&mut self, char_idx: usize, text: &str) -> Result<(), PosError>;

    /// Removes the chars in `range`.
    fn remove(&mut self, range: Range<usize>) -> Result<(), PosError>;

    /// Replaces the chars in `range` by `text`.
    fn replace(&mut self, range: Range<usize>, text: &str) -> Result<(), PosError> {
        check_range(&range, self.len_chars())?;
        self.remove(range.clone())?;
        self.insert(range.start, text)
    }

    /// The chars in `range` as a `String`.
    fn slice(&self, range: Range<usize>) -> Result<String, PosError> {
        let mut out = String::new();
        for chunk in self.chunks_in(range)? {
            out.push_str(chunk);
        }
        Ok(out)
    }

    /// The char at `char_idx`.
    fn char_at(&self, char_idx: usize) -> Result<char, PosError>;

    /// The whole text as chunks, in order, without copying.
    fn chunks(&self) -> impl Iterator<Item = &str> + '_;

    /// The chars in `range` as chunks, in order, without copying.
    fn chunks_in(&self, range: Range<usize>) -> Result<impl Iterator<Item = &str> + '_, PosError>;

    fn char_to_byte(&self, char_idx: usize) -> Result<usize, PosError>;
    fn byte_to_char(&self, byte_idx: usize) -> Result<usize, PosError>;
    fn char_to_utf16(&self, char_idx: usize) -> Result<usize, PosError>;
    fn utf16_to_char(&self, utf16_idx: usize) -> Result<usize, PosError>;
    /// The line that holds `char_idx` (`len_chars()` is on the last line).
    fn char_to_line(&self, char_idx: usize) -> Result<usize, PosError>;
    /// The char index where `line` starts.
    fn line_to_char(&self, line: usize) -> Result<usize, PosError>;

    /// `(line, column)` of `char_idx`, both zero-based, the column counted in chars.
    fn char_to_line_col(&self, char_idx: usize) -> Result<(usize, usize), PosError> {
        let line = self.char_to_line(char_idx)?;
        Ok((line, char_idx - self.line_to_char(line)?))
    }

    /// The char index of `(line, col)`. A column may point at the line's end (before its `'\n'`),
    /// not past it.
    fn line_col_to_char(&self, line: usize, col: usize) -> Result<usize, PosError> {
        let start = self.line_to_char(line)?;
        let end = if line + 1 < self.len_lines() {
            self.line_to_char(line + 1)? - 1
        } else {
            self.len_chars()
        };
        if col > end - start {
            return Err(PosError::Column {
                line,
                col,
                len: end - start,
            });
        }
        Ok(start + col)
    }

    /// The whole text as a `String`.
    fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.len_bytes());
        for chunk in self.chunks() {
            out.push_str(chunk);
        }
        out
    }
}

/// Checks that `range` is ordered and ends within `len` chars.
///
/// # Examples
///
/// ```
/// use editor_core::buffer::check_range;
/// use editor_core::PosError;
///
/// assert_eq!(check_range(&(2..5), 5), Ok(()));
/// assert_eq!(check_range(&(2..6), 5), Err(PosError::Char { pos: 6, len: 5 }));
/// #[allow(clippy::reversed_empty_ranges)]
/// let reversed = 4..2;
/// assert_eq!(check_range(&reversed, 5), Err(PosError::Reversed { start: 4, end: 2 }));
/// ```
pub fn check_range(range: &Range<usize>, len: usize) -> Result<(), PosError> {
    if range.start > range.end {
        return Err(PosError::Reversed {
            start: range.start,
            end: range.end,
        });
    }
    if range.end > len {
        return Err(PosError::Char {
            pos: range.end,
            len,
        });
    }
    Ok(())
}
