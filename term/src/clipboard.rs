//! The editor's clipboard: the copied text, and whether it is whole lines — copied with no
//! selection — which paste at the start of the cursor's line instead of at the cursor.

use std::ops::Range;

use editor_core::{GapBuffer, TextBuffer};

use crate::layout;

/// What Ctrl-C / Ctrl-X copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clipboard {
    text: String,
    /// Whole lines (copied without a selection).
    lines: bool,
}

impl Clipboard {
    /// Copies the selection, or without one the cursor's whole line (with its line break,
    /// unless it is the last line). Returns the chars copied, for a cut to delete.
    pub fn copy(
        &mut self,
        buf: &GapBuffer,
        selection: Option<Range<usize>>,
        cursor: usize,
    ) -> Range<usize> {
        let (range, lines) = match selection {
            Some(r) => (r, false),
            None => {
                let (line, mut r) = layout::line_of(buf, cursor);
                if line + 1 < buf.len_lines() {
                    r.end += 1;
                }
                (r, true)
            }
        };
        self.text = buf.slice(range.clone()).unwrap_or_default();
        self.lines = lines;
        range
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Whether it holds whole lines, which paste at the start of the cursor's line.
    pub fn holds_lines(&self) -> bool {
        self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_selection_or_the_whole_line() {
        let buf = GapBuffer::from_text("one\ntwo\nthree");
        let mut c = Clipboard::default();
        assert!(c.is_empty());
        assert_eq!(c.copy(&buf, Some(1..6), 0), 1..6);
        assert_eq!((c.text(), c.holds_lines()), ("ne\ntw", false));
        assert_eq!(c.copy(&buf, None, 5), 4..8);
        assert_eq!((c.text(), c.holds_lines()), ("two\n", true));
        // The last line has no line break to take.
        assert_eq!(c.copy(&buf, None, 10), 8..13);
        assert_eq!((c.text(), c.holds_lines()), ("three", true));
    }
}
