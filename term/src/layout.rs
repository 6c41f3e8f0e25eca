//! How text lays out on a terminal row: grapheme clusters (unicode-segmentation) and their display
//! widths (unicode-width), tabs, control characters.
//!
//! The cursor sits between grapheme clusters, so `é` written as `e` + U+0301, a flag (two regional
//! indicators) or `👍🏽` (emoji + skin tone) are crossed with one key press. A cluster's width is
//! what unicode-width says — the same crate ratatui uses to place cells, so the two never
//! disagree: CJK and emoji take two columns. Tabs stop at multiples of the tab width. Control
//! characters show as `^X` (two columns); a cluster of width 0 (a combining mark at the start of
//! a line, a zero-width space) is drawn on a dotted circle `◌` so it still occupies a column and
//! the cursor can be seen on it.
//!
//! Every function looks at one line only, and at most [`WINDOW`] chars around a position, so a
//! huge file costs nothing here; a line longer than that is segmented from a window start that
//! may not be a true cluster boundary, which only matters for a cluster spanning it.

use std::ops::Range;

use editor_core::{GapBuffer, TextBuffer};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// How far (in chars) around a position cluster boundaries are looked for.
pub const WINDOW: usize = 1024;

/// One cluster as shown on screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell<'a> {
    /// The cluster's chars in the buffer.
    pub chars: Range<usize>,
    /// What is drawn (the cluster itself, spaces for a tab, `^X`, `◌` + mark).
    pub symbol: Symbol<'a>,
    /// The display column where it starts (from the line's start).
    pub col: usize,
    /// How many columns it takes (≥ 1).
    pub width: usize,
}

/// What a cell shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Symbol<'a> {
    /// The cluster, as is.
    Text(&'a str),
    /// Blank columns (a tab).
    Blank,
    /// A visible stand-in (control characters, zero-width clusters), shown dimmed.
    Escaped(String),
}

/// Lays out `text`, whose first char is char `start` of the buffer and sits at display column
/// `col`, cluster by cluster.
pub fn cells(text: &str, start: usize, col: usize, tab_width: usize) -> Cells<'_> {
    Cells {
        graphemes: text.graphemes(true),
        pos: start,
        col,
        tab_width: tab_width.max(1),
    }
}

/// Iterator returned by [`cells`].
pub struct Cells<'a> {
    graphemes: unicode_segmentation::Graphemes<'a>,
    pos: usize,
    col: usize,
    tab_width: usize,
}

impl<'a> Iterator for Cells<'a> {
    type Item = Cell<'a>;

    fn next(&mut self) -> Option<Cell<'a>> {
        let g = self.graphemes.next()?;
        let n = g.chars().count();
        let (symbol, width) = shape(g, self.col, self.tab_width);
        let cell = Cell {
            chars: self.pos..self.pos + n,
            symbol,
            col: self.col,
            width,
        };
        self.pos += n;
        self.col += width;
        Some(cell)
    }
}

/// The symbol and width of cluster `g` at column `col`.
fn shape(g: &str, col: usize, tab_width: usize) -> (Symbol<'_>, usize) {
    let mut chars = g.chars();
    let first = chars.next().unwrap_or(' ');
    if first == '\t' {
        return (Symbol::Blank, tab_width - col % tab_width);
    }
    if first.is_control() && chars.next().is_none() {
        let shown = match first as u32 {
            0x7f => "^?".to_string(),
            c @ 0..=0x1f => format!("^{}", char::from_u32(c + 0x40).unwrap_or('?')),
            _ => "\u{fffd}".to_string(),
        };
        let width = shown.width();
        return (Symbol::Escaped(shown), width);
    }
    match g.width() {
        0 => (Symbol::Escaped(format!("\u{25cc}{g}")), 1),
        w => (Symbol::Text(g), w),
    }
}

/// The char range of `line` without its `'\n'`.
pub fn line_range(buf: &GapBuffer, line: usize) -> Range<usize> {
    let start = buf.line_to_char(line).unwrap_or(buf.len_chars());
    let end = if line + 1 < buf.len_lines() {
        buf.line_to_char(line + 1)
            .map_or(buf.len_chars(), |n| n - 1)
    } else {
        buf.len_chars()
    };
    start..end
}

/// The line holding `pos`, and that line's char range.
pub fn line_of(buf: &GapBuffer, pos: usize) -> (usize, Range<usize>) {
    let line = buf.char_to_line(pos.min(buf.len_chars())).unwrap_or(0);
    (line, line_range(buf, line))
}

/// The chars of `range` (which must lie in one line), at most [`WINDOW`] on each side of `pos`.
fn window(buf: &GapBuffer, line: &Range<usize>, pos: usize) -> (usize, String) {
    let start = line.start.max(pos.saturating_sub(WINDOW));
    let end = line.end.min(pos + WINDOW);
    (start, buf.slice(start..end).unwrap_or_default())
}

/// The cluster boundary after `pos` (the next line's start when `pos` ends its line).
pub fn next_boundary(buf: &GapBuffer, pos: usize) -> usize {
    let len = buf.len_chars();
    if pos >= len {
        return len;
    }
    let (_, line) = line_of(buf, pos);
    if pos >= line.end {
        return pos + 1;
    }
    let (start, text) = window(buf, &line, pos);
    let mut at = start;
    for g in text.graphemes(true) {
        at += g.chars().count();
        if at > pos {
            return at;
        }
    }
    line.end
}

/// The cluster boundary before `pos` (the previous line's end when `pos` starts its line).
pub fn prev_boundary(buf: &GapBuffer, pos: usize) -> usize {
    if pos == 0 {
        return 0;
    }
    let pos = pos.min(buf.len_chars());
    let (_, line) = line_of(buf, pos);
    if pos <= line.start {
        return pos - 1;
    }
    let (start, text) = window(buf, &line, pos);
    let mut at = start;
    let mut last = start;
    for g in text.graphemes(true) {
        if at >= pos {
            break;
        }
        last = at;
        at += g.chars().count();
    }
    last
}

/// The start of the cluster holding `pos` (`pos` itself when it is a boundary).
pub fn snap(buf: &GapBuffer, pos: usize) -> usize {
    let pos = pos.min(buf.len_chars());
    let (_, line) = line_of(buf, pos);
    if pos <= line.start || pos >= line.end {
        return pos;
    }
    let before = prev_boundary(buf, pos);
    let after = next_boundary(buf, before);
    if after == pos {
        pos
    } else {
        before
    }
}

/// The display column of `pos` in its line.
pub fn col_of(buf: &GapBuffer, pos: usize, tab_width: usize) -> usize {
    let pos = pos.min(buf.len_chars());
    let (_, line) = line_of(buf, pos);
    let text = buf.slice(line.start..pos).unwrap_or_default();
    cells(&text, line.start, 0, tab_width)
        .last()
        .map_or(0, |c| c.col + c.width)
}

/// The position in `line` whose cluster covers display column `col`, or the line's end when the
/// line is shorter.
pub fn pos_at_col(buf: &GapBuffer, line: usize, col: usize, tab_width: usize) -> usize {
    let range = line_range(buf, line);
    let end = range.end.min(range.start + col.saturating_mul(2) + WINDOW);
    let text = buf.slice(range.start..end).unwrap_or_default();
    for cell in cells(&text, range.start, 0, tab_width) {
        if cell.col + cell.width > col {
            return cell.chars.start;
        }
    }
    end
}

/// Chars in a run of the same class, for word moves: word chars, other visible chars, blanks.
fn class(c: char) -> u8 {
    if editor_core::trie::is_word_char(c) {
        2
    } else if c.is_whitespace() {
        0
    } else {
        1
    }
}

/// Where Ctrl-Right goes: past any blanks, then past the run of the class found there.
pub fn word_right(buf: &GapBuffer, pos: usize) -> usize {
    let len = buf.len_chars();
    let end = len.min(pos + WINDOW);
    let text = buf.slice(pos.min(len)..end).unwrap_or_default();
    let mut chars = text.chars().peekable();
    let mut at = pos;
    while chars.next_if(|c| class(*c) == 0).is_some() {
        at += 1;
    }
    if let Some(&c) = chars.peek() {
        let k = class(c);
        while chars.next_if(|c| class(*c) == k).is_some() {
            at += 1;
        }
    }
    if at == pos {
        next_boundary(buf, pos)
    } else {
        snap(buf, at)
    }
}

/// Where Ctrl-Left goes: back over blanks, then to the start of the run before them.
pub fn word_left(buf: &GapBuffer, pos: usize) -> usize {
    let start = pos.saturating_sub(WINDOW);
    let text = buf
        .slice(start..pos.min(buf.len_chars()))
        .unwrap_or_default();
    let mut chars = text.chars().rev().peekable();
    let mut at = pos;
    while chars.next_if(|c| class(*c) == 0).is_some() {
        at -= 1;
    }
    if let Some(&c) = chars.peek() {
        let k = class(c);
        while chars.next_if(|c| class(*c) == k).is_some() {
            at -= 1;
        }
    }
    if at == pos {
        prev_boundary(buf, pos)
    } else {
        snap(buf, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(s: &str) -> GapBuffer {
        GapBuffer::from_text(s)
    }

    fn stops(s: &str) -> Vec<usize> {
        let b = buf(s);
        let mut out = vec![0];
        let mut p = 0;
        while p < b.len_chars() {
            p = next_boundary(&b, p);
            out.push(p);
        }
        let mut back = vec![b.len_chars()];
        let mut p = b.len_chars();
        while p > 0 {
            p = prev_boundary(&b, p);
            back.push(p);
        }
        back.reverse();
        assert_eq!(out, back, "left and right stop at the same places in {s:?}");
        out
    }

    #[test]
    fn moves_by_grapheme_cluster() {
        // e + combining acute, a flag, thumbs up + skin tone, CJK.
        assert_eq!(stops("e\u{301}x"), vec![0, 2, 3]);
        assert_eq!(stops("🇫🇷a"), vec![0, 2, 3]);
        assert_eq!(stops("👍🏽b"), vec![0, 2, 3]);
        assert_eq!(stops("日本\n語"), vec![0, 1, 2, 3, 4]);
        assert_eq!(stops("a\r\nb"), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn widths_and_tabs() {
        let w: Vec<(usize, usize)> = cells("a\t日👍🏽\u{1}é", 0, 0, 4)
            .map(|c| (c.col, c.width))
            .collect();
        assert_eq!(w, vec![(0, 1), (1, 3), (4, 2), (6, 2), (8, 2), (10, 1)]);
        let b = buf("ab\tc\n日本x");
        assert_eq!(col_of(&b, 3, 4), 4);
        assert_eq!(col_of(&b, 3, 8), 8);
        assert_eq!(col_of(&b, 7, 4), 4);
        // Column 3 is the second half of 本: the cursor lands on 本.
        assert_eq!(pos_at_col(&b, 1, 3, 4), 6);
        assert_eq!(pos_at_col(&b, 1, 40, 4), 8);
        assert_eq!(pos_at_col(&b, 0, 3, 4), 2);
    }

    #[test]
    fn zero_width_clusters_still_take_a_column() {
        let c: Vec<Cell> = cells("\u{301}a", 0, 0, 4).collect();
        assert_eq!(c[0].width, 1);
        assert_eq!(c[0].symbol, Symbol::Escaped("\u{25cc}\u{301}".into()));
    }

    #[test]
    fn word_moves() {
        let b = buf("foo  bar.baz\nqux");
        assert_eq!(word_right(&b, 0), 3);
        assert_eq!(word_right(&b, 3), 8);
        assert_eq!(word_right(&b, 8), 9);
        assert_eq!(word_right(&b, 12), 16);
        assert_eq!(word_left(&b, 16), 13);
        assert_eq!(word_left(&b, 13), 9);
        assert_eq!(word_left(&b, 5), 0);
        assert_eq!(snap(&buf("e\u{301}"), 1), 0);
    }
}
