//! Test-only [`TextBuffer`] over a `String` whose chunks are tiny and irregular (1..=`max_chunk`
//! chars, lengths drawn from a seed), so streaming code meets chunk boundaries everywhere: inside
//! patterns, inside words, next to multi-byte chars.

use std::ops::Range;

use crate::buffer::{check_range, PosError, TextBuffer};

#[derive(Debug, Clone, Default)]
pub(crate) struct ChunkyBuffer {
    text: String,
    max_chunk: usize,
    seed: u64,
}

impl ChunkyBuffer {
    pub(crate) fn with_chunking(text: &str, max_chunk: usize, seed: u64) -> Self {
        ChunkyBuffer {
            text: text.to_string(),
            max_chunk: max_chunk.max(1),
            seed,
        }
    }

    /// Byte ranges of the chunks; boundaries depend only on the text, the seed and `max_chunk`.
    fn chunk_ranges(&self) -> Vec<Range<usize>> {
        let max = self.max_chunk.max(1) as u64;
        let mut out = Vec::new();
        let mut state = self.seed ^ 0x9E37_79B9_7F4A_7C15;
        let mut start = 0;
        let mut left = 0u64;
        for (i, _) in self.text.char_indices() {
            if left == 0 {
                if i > start {
                    out.push(start..i);
                }
                start = i;
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                left = 1 + (state >> 33) % max;
            }
            left -= 1;
        }
        if self.text.len() > start {
            out.push(start..self.text.len());
        }
        out
    }

    fn check_char(&self, pos: usize) -> Result<usize, PosError> {
        let len = self.len_chars();
        if pos > len {
            return Err(PosError::Char { pos, len });
        }
        Ok(self
            .text
            .char_indices()
            .nth(pos)
            .map_or(self.text.len(), |(b, _)| b))
    }
}

impl TextBuffer for ChunkyBuffer {
    const NAME: &'static str = "chunky";

    fn from_text(text: &str) -> Self {
        ChunkyBuffer::with_chunking(text, 3, 0)
    }

    fn len_chars(&self) -> usize {
        self.text.chars().count()
    }

    fn len_bytes(&self) -> usize {
        self.text.len()
    }

    fn len_utf16(&self) -> usize {
        self.text.encode_utf16().count()
    }

    fn len_lines(&self) -> usize {
        self.text.matches('\n').count() + 1
    }

    fn insert(&mut self, char_idx: usize, text: &str) -> Result<(), PosError> {
        let b = self.check_char(char_idx)?;
        self.text.insert_str(b, text);
        Ok(())
    }

    fn remove(&mut self, range: Range<usize>) -> Result<(), PosError> {
        check_range(&range, self.len_chars())?;
        let s = self.check_char(range.start)?;
        let e = self.check_char(range.end)?;
        self.text.replace_range(s..e, "");
        Ok(())
    }

    fn char_at(&self, char_idx: usize) -> Result<char, PosError> {
        let len = self.len_chars();
        self.text.chars().nth(char_idx).ok_or(PosError::Char {
            pos: char_idx,
            len: len.saturating_sub(1),
        })
    }

    fn chunks(&self) -> impl Iterator<Item = &str> + '_ {
        self.chunk_ranges().into_iter().map(|r| &self.text[r])
    }

    fn chunks_in(&self, range: Range<usize>) -> Result<impl Iterator<Item = &str> + '_, PosError> {
        check_range(&range, self.len_chars())?;
        let s = self.check_char(range.start)?;
        let e = self.check_char(range.end)?;
        Ok(self
            .chunk_ranges()
            .into_iter()
            .map(move |r| r.start.max(s)..r.end.min(e))
            .filter(|r| r.start < r.end)
            .map(|r| &self.text[r]))
    }

    fn char_to_byte(&self, char_idx: usize) -> Result<usize, PosError> {
        self.check_char(char_idx)
    }

    fn byte_to_char(&self, byte_idx: usize) -> Result<usize, PosError> {
        if byte_idx > self.text.len() {
            return Err(PosError::Byte {
                pos: byte_idx,
                len: self.text.len(),
            });
        }
        if !self.text.is_char_boundary(byte_idx) {
            return Err(PosError::NotCharBoundary { pos: byte_idx });
        }
        Ok(self.text[..byte_idx].chars().count())
    }

    fn char_to_utf16(&self, char_idx: usize) -> Result<usize, PosError> {
        let b = self.check_char(char_idx)?;
        Ok(self.text[..b].encode_utf16().count())
    }

    fn utf16_to_char(&self, utf16_idx: usize) -> Result<usize, PosError> {
        let len = self.len_utf16();
        if utf16_idx > len {
            return Err(PosError::Utf16 {
                pos: utf16_idx,
                len,
            });
        }
        let mut units = 0;
        for (i, c) in self.text.chars().enumerate() {
            if units == utf16_idx {
                return Ok(i);
            }
            units += c.len_utf16();
            if units > utf16_idx {
                return Err(PosError::InsideSurrogatePair { pos: utf16_idx });
            }
        }
        Ok(self.len_chars())
    }

    fn char_to_line(&self, char_idx: usize) -> Result<usize, PosError> {
        let b = self.check_char(char_idx)?;
        Ok(self.text[..b].matches('\n').count())
    }

    fn line_to_char(&self, line: usize) -> Result<usize, PosError> {
        let len = self.len_lines();
        if line >= len {
            return Err(PosError::Line { line, len });
        }
        if line == 0 {
            return Ok(0);
        }
        let (b, _) = self
            .text
            .match_indices('\n')
            .nth(line - 1)
            .expect("line < len_lines");
        Ok(self.text[..=b].chars().count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_small_and_cover_the_text() {
        let text = "héllo wörld 🎉 ab\ncd";
        for max in 1..5 {
            for seed in 0..5 {
                let b = ChunkyBuffer::with_chunking(text, max, seed);
                let chunks: Vec<&str> = b.chunks().collect();
                assert_eq!(chunks.concat(), text);
                assert!(chunks
                    .iter()
                    .all(|c| !c.is_empty() && c.chars().count() <= max));
                let part: String = b.chunks_in(2..9).unwrap().collect();
                assert_eq!(part, text.chars().skip(2).take(7).collect::<String>());
            }
        }
    }
}
