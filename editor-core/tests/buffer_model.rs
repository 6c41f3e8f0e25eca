//! The shared property test of every [`TextBuffer`]: random edits, slices and position
//! conversions, including out-of-range and reversed positions, must give exactly what a plain
//! `String` model says: the same text, the same values and the same `PosError`s, and never panic.
//! Plus deterministic edge cases (empty text, emoji and CRLF across leaf boundaries, positions
//! inside a char or a surrogate pair).

use std::fmt::Debug;
use std::ops::Range;

use editor_core::{GapBuffer, PosError, RopeBuffer, TextBuffer};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------------------------
// The model: a `String` and the documented semantics, written out the slow, obvious way.
// ---------------------------------------------------------------------------------------------

struct Model {
    text: String,
}

impl Model {
    fn chars(&self) -> Vec<char> {
        self.text.chars().collect()
    }
    fn len_chars(&self) -> usize {
        self.text.chars().count()
    }
    fn len_utf16(&self) -> usize {
        self.text.chars().map(char::len_utf16).sum()
    }
    fn len_lines(&self) -> usize {
        self.text.matches('\n').count() + 1
    }
    fn byte_of(&self, c: usize) -> usize {
        self.text
            .char_indices()
            .nth(c)
            .map_or(self.text.len(), |(b, _)| b)
    }
    fn check_pos(&self, pos: usize) -> Result<(), PosError> {
        let len = self.len_chars();
        if pos > len {
            return Err(PosError::Char { pos, len });
        }
        Ok(())
    }
    fn check_range(&self, r: &Range<usize>) -> Result<(), PosError> {
        if r.start > r.end {
            return Err(PosError::Reversed {
                start: r.start,
                end: r.end,
            });
        }
        self.check_pos(r.end)
    }
    fn insert(&mut self, pos: usize, s: &str) -> Result<(), PosError> {
        self.check_pos(pos)?;
        let b = self.byte_of(pos);
        self.text.insert_str(b, s);
        Ok(())
    }
    fn remove(&mut self, r: Range<usize>) -> Result<(), PosError> {
        self.check_range(&r)?;
        let (a, b) = (self.byte_of(r.start), self.byte_of(r.end));
        self.text.replace_range(a..b, "");
        Ok(())
    }
    fn replace(&mut self, r: Range<usize>, s: &str) -> Result<(), PosError> {
        self.check_range(&r)?;
        let (a, b) = (self.byte_of(r.start), self.byte_of(r.end));
        self.text.replace_range(a..b, s);
        Ok(())
    }
    fn slice(&self, r: Range<usize>) -> Result<String, PosError> {
        self.check_range(&r)?;
        Ok(self.text[self.byte_of(r.start)..self.byte_of(r.end)].to_owned())
    }
    fn char_at(&self, c: usize) -> Result<char, PosError> {
        let len = self.len_chars();
        self.chars()
            .get(c)
            .copied()
            .ok_or(PosError::CharIndex { pos: c, len })
    }
    fn char_to_byte(&self, c: usize) -> Result<usize, PosError> {
        self.check_pos(c)?;
        Ok(self.byte_of(c))
    }
    fn byte_to_char(&self, b: usize) -> Result<usize, PosError> {
        if b > self.text.len() {
            return Err(PosError::Byte {
                pos: b,
                len: self.text.len(),
            });
        }
        if !self.text.is_char_boundary(b) {
            return Err(PosError::NotCharBoundary { pos: b });
        }
        Ok(self.text[..b].chars().count())
    }
    fn char_to_utf16(&self, c: usize) -> Result<usize, PosError> {
        self.check_pos(c)?;
        Ok(self.chars()[..c].iter().map(|ch| ch.len_utf16()).sum())
    }
    fn utf16_to_char(&self, u: usize) -> Result<usize, PosError> {
        let len = self.len_utf16();
        if u > len {
            return Err(PosError::Utf16 { pos: u, len });
        }
        let mut acc = 0;
        for (i, ch) in self.text.chars().enumerate() {
            if acc == u {
                return Ok(i);
            }
            acc += ch.len_utf16();
            if acc > u {
                return Err(PosError::InsideSurrogatePair { pos: u });
            }
        }
        Ok(self.len_chars())
    }
    fn char_to_line(&self, c: usize) -> Result<usize, PosError> {
        self.check_pos(c)?;
        Ok(self.chars()[..c].iter().filter(|&&ch| ch == '\n').count())
    }
    fn line_to_char(&self, line: usize) -> Result<usize, PosError> {
        let len = self.len_lines();
        if line >= len {
            return Err(PosError::Line { line, len });
        }
        if line == 0 {
            return Ok(0);
        }
        let nth_newline = self
            .text
            .chars()
            .enumerate()
            .filter(|&(_, ch)| ch == '\n')
            .nth(line - 1);
        Ok(nth_newline.map(|(i, _)| i + 1).expect("line < len_lines"))
    }
    fn char_to_line_col(&self, c: usize) -> Result<(usize, usize), PosError> {
        let line = self.char_to_line(c)?;
        Ok((line, c - self.line_to_char(line)?))
    }
    fn line_col_to_char(&self, line: usize, col: usize) -> Result<usize, PosError> {
        let start = self.line_to_char(line)?;
        let len = self.chars()[start..]
            .iter()
            .take_while(|&&ch| ch != '\n')
            .count();
        if col > len {
            return Err(PosError::Column { line, col, len });
        }
        Ok(start + col)
    }
}

// ---------------------------------------------------------------------------------------------
// Generated input.
// ---------------------------------------------------------------------------------------------

/// Text pieces: ASCII, 2- and 3-byte UTF-8, emoji outside the BMP, and all line endings.
const PIECES: &[&str] = &[
    "a",
    "b",
    "x",
    "Z",
    " ",
    "0",
    "é",
    "ß",
    "ü",
    "中",
    "文",
    "字",
    "😀",
    "🎉",
    "🦀",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "hello",
    "ä中😀",
    "\n\n",
];

fn text(pieces: Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), pieces).prop_map(|v| v.concat())
}

/// A position as generated; mapped onto the current length when the op runs so it usually lands
/// in range, sometimes just past the end, and sometimes absurdly far.
#[derive(Debug, Clone, Copy)]
struct P(u32);

impl P {
    fn at(self, len: usize) -> usize {
        match self.0 % 16 {
            0 => len + 1 + (self.0 as usize >> 4) % 3,
            1 => usize::MAX - (self.0 as usize >> 4) % 2,
            2 => len,
            3 => 0,
            _ => (self.0 as usize >> 4) % (len + 1),
        }
    }
}

fn p() -> impl Strategy<Value = P> {
    any::<u32>().prop_map(P)
}

#[derive(Debug, Clone)]
enum Op {
    Insert(P, String),
    Remove(P, P),
    Replace(P, P, String),
    /// Types the pieces one by one from a position on, like a user would.
    Type(P, Vec<&'static str>),
    /// Deletes `n` chars one at a time backwards from a position, like Backspace.
    Backspace(P, u8),
    /// Deletes `n` chars one at a time at a position, like the Delete key.
    Delete(P, u8),
    Slice(P, P),
    ChunksIn(P, P),
    CharAt(P),
    CharToByte(P),
    ByteToChar(P),
    CharToUtf16(P),
    Utf16ToChar(P),
    CharToLine(P),
    LineToChar(P),
    CharToLineCol(P),
    LineColToChar(P, P),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (p(), text(0..8)).prop_map(|(a, s)| Op::Insert(a, s)),
        1 => (p(), text(8..60)).prop_map(|(a, s)| Op::Insert(a, s)),
        3 => (p(), p()).prop_map(|(a, b)| Op::Remove(a, b)),
        2 => (p(), p(), text(0..10)).prop_map(|(a, b, s)| Op::Replace(a, b, s)),
        2 => (p(), prop::collection::vec(prop::sample::select(PIECES), 1..30)).prop_map(|(a, v)| Op::Type(a, v)),
        1 => (p(), any::<u8>()).prop_map(|(a, n)| Op::Backspace(a, n % 24)),
        1 => (p(), any::<u8>()).prop_map(|(a, n)| Op::Delete(a, n % 24)),
        2 => (p(), p()).prop_map(|(a, b)| Op::Slice(a, b)),
        2 => (p(), p()).prop_map(|(a, b)| Op::ChunksIn(a, b)),
        1 => p().prop_map(Op::CharAt),
        1 => p().prop_map(Op::CharToByte),
        2 => p().prop_map(Op::ByteToChar),
        1 => p().prop_map(Op::CharToUtf16),
        2 => p().prop_map(Op::Utf16ToChar),
        1 => p().prop_map(Op::CharToLine),
        1 => p().prop_map(Op::LineToChar),
        1 => p().prop_map(Op::CharToLineCol),
        1 => (p(), p()).prop_map(|(a, b)| Op::LineColToChar(a, b)),
    ]
}

// ---------------------------------------------------------------------------------------------
// The shared check.
// ---------------------------------------------------------------------------------------------

/// Compares every observable of `buf` with the model.
fn same_state<B: TextBuffer>(
    buf: &B,
    model: &Model,
    check: &dyn Fn(&B) -> Result<(), String>,
) -> Result<(), TestCaseError> {
    check(buf).map_err(TestCaseError::fail)?;
    prop_assert_eq!(buf.len_chars(), model.len_chars());
    prop_assert_eq!(buf.len_bytes(), model.text.len());
    prop_assert_eq!(buf.len_utf16(), model.len_utf16());
    prop_assert_eq!(buf.len_lines(), model.len_lines());
    let chunks: Vec<&str> = buf.chunks().collect();
    prop_assert!(
        chunks.iter().all(|c| !c.is_empty()),
        "empty chunk in {:?}",
        chunks
    );
    prop_assert_eq!(chunks.concat(), model.text.as_str());
    prop_assert_eq!(buf.to_text(), model.text.as_str());
    Ok(())
}

/// Runs `ops` on `buf` (which holds `initial`) and on the model, comparing every result.
fn check_against_model<B: TextBuffer + Debug>(
    mut buf: B,
    initial: &str,
    ops: &[Op],
    check: &dyn Fn(&B) -> Result<(), String>,
) -> Result<(), TestCaseError> {
    let mut model = Model {
        text: initial.to_owned(),
    };
    same_state(&buf, &model, check)?;
    for op in ops {
        let (len, bytes, len16, lines) = (
            model.len_chars(),
            model.text.len(),
            model.len_utf16(),
            model.len_lines(),
        );
        match op {
            Op::Insert(a, s) => {
                let a = a.at(len);
                prop_assert_eq!(
                    buf.insert(a, s),
                    model.insert(a, s),
                    "insert({}, {:?})",
                    a,
                    s
                );
            }
            Op::Remove(a, b) => {
                let r = a.at(len)..b.at(len);
                prop_assert_eq!(
                    buf.remove(r.clone()),
                    model.remove(r.clone()),
                    "remove({:?})",
                    r
                );
            }
            Op::Replace(a, b, s) => {
                let r = a.at(len)..b.at(len);
                prop_assert_eq!(
                    buf.replace(r.clone(), s),
                    model.replace(r.clone(), s),
                    "replace({:?}, {:?})",
                    r,
                    s
                );
            }
            Op::Type(a, pieces) => {
                let mut at = a.at(len);
                for piece in pieces {
                    prop_assert_eq!(
                        buf.insert(at, piece),
                        model.insert(at, piece),
                        "typing at {}",
                        at
                    );
                    at = at.saturating_add(piece.chars().count());
                }
            }
            Op::Backspace(a, n) => {
                let mut at = a.at(len);
                for _ in 0..*n {
                    let r = at.saturating_sub(1)..at;
                    prop_assert_eq!(
                        buf.remove(r.clone()),
                        model.remove(r.clone()),
                        "backspace {:?}",
                        r
                    );
                    at = at.saturating_sub(1);
                }
            }
            Op::Delete(a, n) => {
                let at = a.at(len);
                for _ in 0..*n {
                    let r = at..at.saturating_add(1);
                    prop_assert_eq!(
                        buf.remove(r.clone()),
                        model.remove(r.clone()),
                        "delete {:?}",
                        r
                    );
                }
            }
            Op::Slice(a, b) => {
                let r = a.at(len)..b.at(len);
                prop_assert_eq!(
                    buf.slice(r.clone()),
                    model.slice(r.clone()),
                    "slice({:?})",
                    r
                );
            }
            Op::ChunksIn(a, b) => {
                let r = a.at(len)..b.at(len);
                let got = buf.chunks_in(r.clone()).map(|it| it.collect::<Vec<_>>());
                match (got, model.slice(r.clone())) {
                    (Ok(chunks), Ok(want)) => {
                        prop_assert!(
                            chunks.iter().all(|c| !c.is_empty()),
                            "empty chunk in {:?}",
                            chunks
                        );
                        prop_assert_eq!(chunks.concat(), want, "chunks_in({:?})", r);
                    }
                    (Err(got), Err(want)) => prop_assert_eq!(got, want, "chunks_in({:?})", r),
                    (got, want) => {
                        prop_assert!(false, "chunks_in({:?}): {:?} vs {:?}", r, got, want)
                    }
                }
            }
            Op::CharAt(a) => {
                let a = a.at(len);
                prop_assert_eq!(buf.char_at(a), model.char_at(a), "char_at({})", a);
            }
            Op::CharToByte(a) => {
                let a = a.at(len);
                prop_assert_eq!(
                    buf.char_to_byte(a),
                    model.char_to_byte(a),
                    "char_to_byte({})",
                    a
                );
            }
            Op::ByteToChar(a) => {
                let a = a.at(bytes);
                prop_assert_eq!(
                    buf.byte_to_char(a),
                    model.byte_to_char(a),
                    "byte_to_char({})",
                    a
                );
            }
            Op::CharToUtf16(a) => {
                let a = a.at(len);
                prop_assert_eq!(
                    buf.char_to_utf16(a),
                    model.char_to_utf16(a),
                    "char_to_utf16({})",
                    a
                );
            }
            Op::Utf16ToChar(a) => {
                let a = a.at(len16);
                prop_assert_eq!(
                    buf.utf16_to_char(a),
                    model.utf16_to_char(a),
                    "utf16_to_char({})",
                    a
                );
            }
            Op::CharToLine(a) => {
                let a = a.at(len);
                prop_assert_eq!(
                    buf.char_to_line(a),
                    model.char_to_line(a),
                    "char_to_line({})",
                    a
                );
            }
            Op::LineToChar(a) => {
                let a = a.at(lines);
                prop_assert_eq!(
                    buf.line_to_char(a),
                    model.line_to_char(a),
                    "line_to_char({})",
                    a
                );
            }
            Op::CharToLineCol(a) => {
                let a = a.at(len);
                prop_assert_eq!(
                    buf.char_to_line_col(a),
                    model.char_to_line_col(a),
                    "char_to_line_col({})",
                    a
                );
            }
            Op::LineColToChar(l, c) => {
                let l = l.at(lines);
                let c = c.at(8);
                prop_assert_eq!(
                    buf.line_col_to_char(l, c),
                    model.line_col_to_char(l, c),
                    "line_col_to_char({}, {})",
                    l,
                    c
                );
            }
        }
        same_state(&buf, &model, check)?;
    }
    // Every position of the final text (a sample of them for large texts, where the model's O(n)
    // conversions would make this quadratic).
    let sample = |end: usize| {
        (0..=end)
            .step_by(if end <= 1000 { 1 } else { end / 40 })
            .chain([end.saturating_sub(1), end, end + 1])
    };
    for c in sample(model.len_chars()) {
        prop_assert_eq!(buf.char_to_byte(c), model.char_to_byte(c));
        prop_assert_eq!(buf.char_to_utf16(c), model.char_to_utf16(c));
        prop_assert_eq!(buf.char_to_line(c), model.char_to_line(c));
        prop_assert_eq!(buf.char_at(c), model.char_at(c));
    }
    for b in sample(model.text.len()) {
        prop_assert_eq!(
            buf.byte_to_char(b),
            model.byte_to_char(b),
            "byte_to_char({})",
            b
        );
    }
    for u in sample(model.len_utf16()) {
        prop_assert_eq!(
            buf.utf16_to_char(u),
            model.utf16_to_char(u),
            "utf16_to_char({})",
            u
        );
    }
    for l in sample(model.len_lines()) {
        prop_assert_eq!(
            buf.line_to_char(l),
            model.line_to_char(l),
            "line_to_char({})",
            l
        );
    }
    Ok(())
}

fn no_check<B>(_: &B) -> Result<(), String> {
    Ok(())
}

fn gap_check(buf: &GapBuffer) -> Result<(), String> {
    buf.check_invariants()
}

/// Leaf sizes for the gap buffer: tiny ones split and merge on almost every edit.
fn leaf_capacity() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(8),
        Just(9),
        Just(12),
        Just(16),
        Just(31),
        Just(64),
        Just(256),
        Just(32 * 1024)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn rope_matches_model(initial in text(0..40), ops in prop::collection::vec(op(), 1..40)) {
        check_against_model(RopeBuffer::from_text(&initial), &initial, &ops, &no_check)?;
    }

    #[test]
    fn gap_matches_model(cap in leaf_capacity(), initial in text(0..40), ops in prop::collection::vec(op(), 1..40)) {
        check_against_model(GapBuffer::from_text_with_leaf_capacity(&initial, cap), &initial, &ops, &gap_check)?;
    }

    #[test]
    fn gap_built_by_edits_matches_model(cap in leaf_capacity(), ops in prop::collection::vec(op(), 1..40)) {
        check_against_model(GapBuffer::with_leaf_capacity(cap), "", &ops, &gap_check)?;
    }
}

proptest! {
    // Large texts: a generated pattern repeated up to 1,000 times (up to tens of thousands of
    // chars, hundreds of leaves), so walks between far leaves and the cursor are exercised too.
    #![proptest_config(ProptestConfig::with_cases(10))]

    #[test]
    fn large_texts_match_model(
        cap in prop_oneof![Just(16usize), Just(200), Just(4096), Just(32 * 1024)],
        pattern in text(1..40),
        repeat in 100usize..1000,
        ops in prop::collection::vec(op(), 1..16),
    ) {
        let initial = pattern.repeat(repeat);
        check_against_model(RopeBuffer::from_text(&initial), &initial, &ops, &no_check)?;
        check_against_model(GapBuffer::from_text_with_leaf_capacity(&initial, cap), &initial, &ops, &gap_check)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic edge cases, for both buffers.
// ---------------------------------------------------------------------------------------------

/// Runs `f` on a rope, a default gap buffer and gap buffers with small leaves, all holding `text`.
fn for_all(text: &str, f: impl Fn(&dyn Fn() -> Box<dyn Buf>)) {
    f(&|| Box::new(RopeBuffer::from_text(text)));
    f(&|| Box::new(GapBuffer::from_text(text)));
    for cap in [8, 9, 13] {
        f(&|| Box::new(GapBuffer::from_text_with_leaf_capacity(text, cap)));
    }
}

/// An object-safe view of `TextBuffer` for the table-driven tests.
trait Buf {
    fn name(&self) -> &'static str;
    fn text(&self) -> String;
    fn chunks(&self) -> Vec<String>;
    fn conv(&self) -> Conv<'_>;
    fn ins(&mut self, at: usize, s: &str) -> Result<(), PosError>;
    fn rem(&mut self, r: Range<usize>) -> Result<(), PosError>;
}

struct Conv<'a> {
    char_to_byte: Box<dyn Fn(usize) -> Result<usize, PosError> + 'a>,
    byte_to_char: Box<dyn Fn(usize) -> Result<usize, PosError> + 'a>,
    char_to_utf16: Box<dyn Fn(usize) -> Result<usize, PosError> + 'a>,
    utf16_to_char: Box<dyn Fn(usize) -> Result<usize, PosError> + 'a>,
    char_to_line: Box<dyn Fn(usize) -> Result<usize, PosError> + 'a>,
    line_to_char: Box<dyn Fn(usize) -> Result<usize, PosError> + 'a>,
    char_at: Box<dyn Fn(usize) -> Result<char, PosError> + 'a>,
    slice: Box<dyn Fn(Range<usize>) -> Result<String, PosError> + 'a>,
    line_col_to_char: Box<dyn Fn(usize, usize) -> Result<usize, PosError> + 'a>,
    lens: [usize; 4],
}

impl<B: TextBuffer> Buf for B {
    fn name(&self) -> &'static str {
        B::NAME
    }
    fn text(&self) -> String {
        self.to_text()
    }
    fn chunks(&self) -> Vec<String> {
        TextBuffer::chunks(self).map(str::to_owned).collect()
    }
    fn conv(&self) -> Conv<'_> {
        Conv {
            char_to_byte: Box::new(|i| self.char_to_byte(i)),
            byte_to_char: Box::new(|i| self.byte_to_char(i)),
            char_to_utf16: Box::new(|i| self.char_to_utf16(i)),
            utf16_to_char: Box::new(|i| self.utf16_to_char(i)),
            char_to_line: Box::new(|i| self.char_to_line(i)),
            line_to_char: Box::new(|i| self.line_to_char(i)),
            char_at: Box::new(|i| self.char_at(i)),
            slice: Box::new(|r| TextBuffer::slice(self, r)),
            line_col_to_char: Box::new(|l, c| self.line_col_to_char(l, c)),
            lens: [
                self.len_chars(),
                self.len_bytes(),
                self.len_utf16(),
                self.len_lines(),
            ],
        }
    }
    fn ins(&mut self, at: usize, s: &str) -> Result<(), PosError> {
        TextBuffer::insert(self, at, s)
    }
    fn rem(&mut self, r: Range<usize>) -> Result<(), PosError> {
        TextBuffer::remove(self, r)
    }
}

#[test]
fn empty_buffer() {
    for_all("", |make| {
        let mut b = make();
        let c = b.conv();
        assert_eq!(c.lens, [0, 0, 0, 1], "{}", b.name());
        assert_eq!((c.char_to_byte)(0), Ok(0));
        assert_eq!((c.char_to_byte)(1), Err(PosError::Char { pos: 1, len: 0 }));
        assert_eq!((c.byte_to_char)(0), Ok(0));
        assert_eq!((c.byte_to_char)(1), Err(PosError::Byte { pos: 1, len: 0 }));
        assert_eq!((c.char_to_utf16)(0), Ok(0));
        assert_eq!((c.utf16_to_char)(0), Ok(0));
        assert_eq!(
            (c.utf16_to_char)(1),
            Err(PosError::Utf16 { pos: 1, len: 0 })
        );
        assert_eq!((c.char_to_line)(0), Ok(0));
        assert_eq!((c.line_to_char)(0), Ok(0));
        assert_eq!((c.line_to_char)(1), Err(PosError::Line { line: 1, len: 1 }));
        assert_eq!((c.char_at)(0), Err(PosError::CharIndex { pos: 0, len: 0 }));
        assert_eq!((c.slice)(0..0), Ok(String::new()));
        assert_eq!((c.slice)(0..1), Err(PosError::Char { pos: 1, len: 0 }));
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 1..0;
        assert_eq!(
            (c.slice)(reversed.clone()),
            Err(PosError::Reversed { start: 1, end: 0 })
        );
        assert_eq!((c.line_col_to_char)(0, 0), Ok(0));
        assert_eq!(
            (c.line_col_to_char)(0, 1),
            Err(PosError::Column {
                line: 0,
                col: 1,
                len: 0
            })
        );
        drop(c);
        assert!(b.chunks().is_empty());
        assert_eq!(b.rem(0..0), Ok(()));
        assert_eq!(b.rem(0..1), Err(PosError::Char { pos: 1, len: 0 }));
        assert_eq!(
            b.rem(reversed),
            Err(PosError::Reversed { start: 1, end: 0 })
        );
        assert_eq!(b.ins(1, "x"), Err(PosError::Char { pos: 1, len: 0 }));
        assert_eq!(b.ins(0, ""), Ok(()));
        assert!(b.chunks().is_empty());
        assert_eq!(b.ins(0, "x"), Ok(()));
        assert_eq!(b.rem(0..1), Ok(()));
        assert_eq!(b.text(), "");
        assert!(b.chunks().is_empty());
    });
}

#[test]
fn positions_inside_a_char_or_a_surrogate_pair() {
    // a=1 byte, é=2, 中=3, 😀=4 bytes (2 UTF-16 units).
    for_all("aé中😀b", |make| {
        let b = make();
        let c = b.conv();
        assert_eq!(c.lens, [5, 11, 6, 1]);
        for (byte, want) in [
            (0, Ok(0)),
            (1, Ok(1)),
            (3, Ok(2)),
            (6, Ok(3)),
            (10, Ok(4)),
            (11, Ok(5)),
        ] {
            assert_eq!((c.byte_to_char)(byte), want, "{} byte {byte}", b.name());
        }
        for byte in [2, 4, 5, 7, 8, 9] {
            assert_eq!(
                (c.byte_to_char)(byte),
                Err(PosError::NotCharBoundary { pos: byte }),
                "{}",
                b.name()
            );
        }
        assert_eq!(
            (c.byte_to_char)(12),
            Err(PosError::Byte { pos: 12, len: 11 })
        );
        assert_eq!((c.utf16_to_char)(3), Ok(3));
        assert_eq!(
            (c.utf16_to_char)(4),
            Err(PosError::InsideSurrogatePair { pos: 4 }),
            "{}",
            b.name()
        );
        assert_eq!((c.utf16_to_char)(5), Ok(4));
        assert_eq!((c.utf16_to_char)(6), Ok(5));
        assert_eq!(
            (c.utf16_to_char)(7),
            Err(PosError::Utf16 { pos: 7, len: 6 })
        );
        assert_eq!((c.char_to_utf16)(3), Ok(3));
        assert_eq!((c.char_to_utf16)(4), Ok(5));
        assert_eq!((c.char_to_utf16)(5), Ok(6));
        assert_eq!((c.char_at)(3), Ok('😀'));
        assert_eq!((c.char_at)(5), Err(PosError::CharIndex { pos: 5, len: 5 }));
    });
}

#[test]
fn emoji_at_leaf_boundaries() {
    // Leaves of 8 bytes hold exactly two emoji: every leaf boundary and every gap sits between
    // surrogate pairs.
    let text = "😀🎉🦀😀🎉🦀😀";
    let gap = GapBuffer::from_text_with_leaf_capacity(text, 8);
    gap.check_invariants().unwrap();
    assert!(gap.leaf_count() >= 4, "{gap:?}");
    for_all(text, |make| {
        let mut b = make();
        {
            let c = b.conv();
            for i in 0..=7 {
                assert_eq!((c.char_to_utf16)(i), Ok(2 * i), "{}", b.name());
                assert_eq!((c.utf16_to_char)(2 * i), Ok(i), "{}", b.name());
                assert_eq!((c.char_to_byte)(i), Ok(4 * i), "{}", b.name());
                if i < 7 {
                    assert_eq!(
                        (c.utf16_to_char)(2 * i + 1),
                        Err(PosError::InsideSurrogatePair { pos: 2 * i + 1 })
                    );
                    for k in 1..4 {
                        assert_eq!(
                            (c.byte_to_char)(4 * i + k),
                            Err(PosError::NotCharBoundary { pos: 4 * i + k })
                        );
                    }
                }
            }
            assert_eq!((c.slice)(1..6), Ok("🎉🦀😀🎉🦀".to_owned()));
        }
        // Edits at each boundary keep the pairs whole.
        b.ins(2, "é").unwrap();
        b.ins(5, "🎉").unwrap();
        b.rem(0..1).unwrap();
        assert_eq!(b.text(), "🎉é🦀😀🎉🎉🦀😀");
        assert!(b.chunks().iter().all(|c| !c.is_empty()));
        assert_eq!(b.chunks().concat(), b.text());
    });
}

#[test]
fn crlf_across_leaves() {
    // With 8-byte leaves, "abc\r\ndef" is cut between the '\r' and the '\n'.
    let gap = GapBuffer::from_text_with_leaf_capacity("abc\r\ndef", 8);
    assert_eq!(
        TextBuffer::chunks(&gap).collect::<Vec<_>>(),
        ["abc\r", "\ndef"]
    );
    for_all("abc\r\ndef", |make| {
        let b = make();
        let c = b.conv();
        assert_eq!(c.lens, [8, 8, 8, 2]);
        // The '\r' is the last char of line 0; only '\n' ends a line.
        assert_eq!((c.char_to_line)(3), Ok(0));
        assert_eq!((c.char_to_line)(4), Ok(0));
        assert_eq!((c.char_to_line)(5), Ok(1));
        assert_eq!((c.line_to_char)(1), Ok(5));
        assert_eq!((c.line_col_to_char)(0, 4), Ok(4));
        assert_eq!(
            (c.line_col_to_char)(0, 5),
            Err(PosError::Column {
                line: 0,
                col: 5,
                len: 4
            })
        );
        assert_eq!((c.line_col_to_char)(1, 3), Ok(8));
        assert_eq!(
            (c.line_col_to_char)(2, 0),
            Err(PosError::Line { line: 2, len: 2 })
        );
    });
}

#[test]
fn errors_leave_the_buffer_unchanged() {
    for_all("line one\nline two é😀\n", |make| {
        let mut b = make();
        let before = b.text();
        assert!(b.ins(100, "x").is_err());
        assert!(b.rem(3..100).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 5..2;
        assert_eq!(
            b.rem(reversed),
            Err(PosError::Reversed { start: 5, end: 2 })
        );
        assert!(b.rem(usize::MAX - 1..usize::MAX).is_err());
        assert_eq!(b.text(), before, "{}", b.name());
    });
}

#[test]
fn gap_typing_splits_and_deleting_merges_leaves() {
    let mut gap = GapBuffer::with_leaf_capacity(64);
    let line = "typing é中😀\r\n";
    let mut model = String::new();
    for _ in 0..200 {
        for ch in line.chars() {
            let at = model.chars().count();
            gap.insert(at, ch.encode_utf8(&mut [0; 4])).unwrap();
            model.push(ch);
        }
    }
    gap.check_invariants().unwrap();
    assert_eq!(gap.to_text(), model);
    let leaves = gap.leaf_count();
    assert!(leaves > 50, "{gap:?}");
    // A typing run in the middle, then a long backspace across many leaves.
    let mid = gap.len_chars() / 2;
    for (k, ch) in "inserted".chars().enumerate() {
        gap.insert(mid + k, ch.encode_utf8(&mut [0; 4])).unwrap();
    }
    for k in (0..gap.len_chars() - 10).rev() {
        gap.remove(k..k + 1).unwrap();
    }
    gap.check_invariants().unwrap();
    assert_eq!(gap.len_chars(), 10);
    assert_eq!(gap.leaf_count(), 1, "{gap:?}");
    gap.remove(0..10).unwrap();
    assert_eq!(gap.leaf_count(), 0);
    gap.check_invariants().unwrap();
}

#[test]
fn gap_large_paste_and_far_queries() {
    let unit = "The quick brown fox é中😀\n";
    let big = unit.repeat(40_000); // ~1.2 MB
    let mut gap = GapBuffer::from_text(&big);
    gap.check_invariants().unwrap();
    let rope = RopeBuffer::from_text(&big);
    let n = big.chars().count();
    assert_eq!(gap.len_chars(), n);
    for c in [0, 1, n / 3, n / 2, n - 1, n] {
        assert_eq!(gap.char_to_byte(c), rope.char_to_byte(c));
        assert_eq!(gap.char_to_utf16(c), rope.char_to_utf16(c));
        assert_eq!(gap.char_to_line(c), rope.char_to_line(c));
    }
    for l in [0, 1, 20_000, 39_999, 40_000] {
        assert_eq!(gap.line_to_char(l), rope.line_to_char(l));
    }
    // Paste the whole text into its own middle.
    gap.insert(n / 2, &big).unwrap();
    gap.check_invariants().unwrap();
    assert_eq!(gap.len_chars(), 2 * n);
    assert_eq!(
        gap.slice(n / 2..n / 2 + unit.chars().count()).unwrap(),
        unit
    );
    gap.remove(10..2 * n - 10).unwrap();
    gap.check_invariants().unwrap();
    assert_eq!(gap.len_chars(), 20);
}

#[test]
fn gap_buffer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GapBuffer>();
}
