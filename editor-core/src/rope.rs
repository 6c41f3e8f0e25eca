//! [`RopeBuffer`]: the [`TextBuffer`] interface over a `ropey::Rope`.
//!
//! A B-tree of ~1 KB UTF-8 leaves with cached char/line/UTF-16 counts: every lookup and edit is
//! O(log n) wherever it lands, and clones are O(1) (shared leaves). The better choice when edits
//! jump all over a very large text or snapshots are taken often; see BENCHMARKS.md.

use std::ops::Range;

use ropey::Rope;

use crate::buffer::{check_range, PosError, TextBuffer};

/// A [`TextBuffer`] backed by a `ropey::Rope`.
///
/// Invariants: the buffer is exactly its rope (no state of its own), so every count and
/// conversion is ropey's, and the [`TextBuffer`] invariants hold because each method checks its
/// positions before calling ropey (whose methods panic on bad input). Clones share leaves.
///
/// # Examples
///
/// ```
/// use editor_core::{PosError, RopeBuffer, TextBuffer};
///
/// let mut buf = RopeBuffer::from_text("one\ntwo\n");
/// buf.remove(0..4).unwrap();
/// buf.insert(3, " three").unwrap();
/// assert_eq!(buf.to_text(), "two three\n");
/// assert_eq!(buf.len_lines(), 2);
/// assert_eq!(buf.line_to_char(1).unwrap(), 10);
/// assert_eq!(buf.remove(8..11), Err(PosError::Char { pos: 11, len: 10 }));
/// // ropey's own API stays reachable.
/// assert_eq!(buf.rope().line(0).to_string(), "two three\n");
/// ```
#[derive(Debug, Clone, Default)]
pub struct RopeBuffer {
    rope: Rope,
}

impl RopeBuffer {
    /// The underlying rope, for callers that want ropey's own API.
    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    fn check_char(&self, pos: usize) -> Result<(), PosError> {
        let len = self.rope.len_chars();
        if pos > len {
            return Err(PosError::Char { pos, len });
        }
        Ok(())
    }
}

impl TextBuffer for RopeBuffer {
    const NAME: &'static str = "rope";

    fn from_text(text: &str) -> Self {
        RopeBuffer {
            rope: Rope::from_str(text),
        }
    }

    fn len_chars(&self) -> usize {
        self.rope.len_chars()
    }

    fn len_bytes(&self) -> usize {
        self.rope.len_bytes()
    }

    fn len_utf16(&self) -> usize {
        self.rope.len_utf16_cu()
    }

    fn len_lines(&self) -> usize {
        self.rope.len_lines()
    }

    fn insert(&mut self, char_idx: usize, text: &str) -> Result<(), PosError> {
        self.check_char(char_idx)?;
        self.rope.insert(char_idx, text);
        Ok(())
    }

    fn remove(&mut self, range: Range<usize>) -> Result<(), PosError> {
        check_range(&range, self.rope.len_chars())?;
        self.rope.remove(range);
        Ok(())
    }

    fn char_at(&self, char_idx: usize) -> Result<char, PosError> {
        let len = self.rope.len_chars();
        if char_idx >= len {
            return Err(PosError::CharIndex { pos: char_idx, len });
        }
        Ok(self.rope.char(char_idx))
    }

    fn chunks(&self) -> impl Iterator<Item = &str> + '_ {
        self.rope.chunks().filter(|c| !c.is_empty())
    }

    fn chunks_in(&self, range: Range<usize>) -> Result<impl Iterator<Item = &str> + '_, PosError> {
        check_range(&range, self.rope.len_chars())?;
        Ok(self.rope.slice(range).chunks().filter(|c| !c.is_empty()))
    }

    fn char_to_byte(&self, char_idx: usize) -> Result<usize, PosError> {
        self.check_char(char_idx)?;
        Ok(self.rope.char_to_byte(char_idx))
    }

    fn byte_to_char(&self, byte_idx: usize) -> Result<usize, PosError> {
        let len = self.rope.len_bytes();
        if byte_idx > len {
            return Err(PosError::Byte { pos: byte_idx, len });
        }
        // ropey maps a byte inside a char to that char; quire refuses it instead.
        let char_idx = self.rope.byte_to_char(byte_idx);
        if self.rope.char_to_byte(char_idx) != byte_idx {
            return Err(PosError::NotCharBoundary { pos: byte_idx });
        }
        Ok(char_idx)
    }

    fn char_to_utf16(&self, char_idx: usize) -> Result<usize, PosError> {
        self.check_char(char_idx)?;
        Ok(self.rope.char_to_utf16_cu(char_idx))
    }

    fn utf16_to_char(&self, utf16_idx: usize) -> Result<usize, PosError> {
        let len = self.rope.len_utf16_cu();
        if utf16_idx > len {
            return Err(PosError::Utf16 {
                pos: utf16_idx,
                len,
            });
        }
        let char_idx = self.rope.utf16_cu_to_char(utf16_idx);
        if self.rope.char_to_utf16_cu(char_idx) != utf16_idx {
            return Err(PosError::InsideSurrogatePair { pos: utf16_idx });
        }
        Ok(char_idx)
    }

    fn char_to_line(&self, char_idx: usize) -> Result<usize, PosError> {
        self.check_char(char_idx)?;
        Ok(self.rope.char_to_line(char_idx))
    }

    fn line_to_char(&self, line: usize) -> Result<usize, PosError> {
        let len = self.rope.len_lines();
        if line >= len {
            return Err(PosError::Line { line, len });
        }
        Ok(self.rope.line_to_char(line))
    }
}
