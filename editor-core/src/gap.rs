//! [`GapBuffer`]: quire's default text buffer, a flat list of small gap buffers ("leaves").
//!
//! # Design
//!
//! The text is cut into leaves of at most `max_leaf` UTF-8 bytes (4 KiB by default, see
//! [`DEFAULT_LEAF_CAPACITY`]), kept in order in one `Vec`. Each leaf is a classic gap buffer: one
//! byte array holding the text before the gap, the gap, then the text after it. A leaf caches its
//! counts (bytes, chars, UTF-16 code units, `'\n'`s) and the number of chars before its gap. The
//! buffer keeps the totals and a *cursor*: the index of the leaf edited last and the offsets, in
//! every unit, at which that leaf starts.
//!
//! An edit at the cursor leaf's gap (typing, backspacing: 81–98% of the edits of the recorded
//! traces land exactly where the previous one ended) is a bounds check, a copy into the gap and a
//! few additions; no tree to walk or rebalance, no counts to propagate. An edit a little further
//! away converts its char position to a byte position by counting from the gap, and moves the gap
//! there (a `memmove` of the bytes in between, at most one leaf). An edit in another leaf first walks the leaf counts from the cursor,
//! the start or the end, whichever is nearer: O(number of leaves), ~10 µs across the ~25,000
//! leaves of a 100 MB text.
//!
//! Queries (`&self`) use the cursor as a starting point but do not move it, so a `GapBuffer` has no
//! interior mutability: it is `Sync` and can sit behind an `RwLock`. Within a leaf they count from
//! whichever end (or the gap) is nearer, with the SIMD counters of the `str_indices` crate (the
//! ones ropey uses).
//!
//! # Invariants
//!
//! Checked after every operation of the property test by [`GapBuffer::check_invariants`]:
//!
//! 1. Each leaf's bytes before the gap, and each leaf's bytes after the gap, are valid UTF-8 on
//!    their own: leaves are only cut, and gaps only moved, at char boundaries. So a char (and so
//!    a UTF-16 surrogate pair, and so a valid position in any unit) never straddles a leaf or a
//!    gap.
//! 2. No leaf is empty; the empty text has no leaf at all.
//! 3. Every leaf's byte array, gap included, is at most `max_leaf` bytes (`max_leaf` is at least
//!    8, so any char fits), so whatever fits in a gap may be written there.
//! 4. Any two adjacent leaves together hold more than `max_leaf / 4` bytes, so there are at most
//!    `8 * len_bytes / max_leaf + 1` leaves: a leaf that shrinks is merged with a neighbour when
//!    the pair falls under that bound.
//! 5. Each leaf's cached counts (bytes, chars, UTF-16 units, `'\n'`s, chars before the gap) equal
//!    the counts of its text, and the buffer's totals equal the sums over its leaves.
//! 6. The cursor names an existing leaf (or leaf 0 of an empty buffer), and its offsets are the
//!    sums of the counts of the leaves before it.
//!
//! A leaf that an insertion would overflow is first offered to the neighbour at that boundary;
//! otherwise its text and the inserted text are re-cut into balanced leaves (about half full each
//! after typing, full ones for a large paste or [`TextBuffer::from_text`]). Leaf arrays grow by
//! doubling up to `max_leaf`, so a freshly loaded text costs its own size plus ~2% for the leaf
//! list, not `max_leaf` per leaf.
//!
//! # GapBuffer or RopeBuffer?
//!
//! Measured on the 2-core rust-svc machine; see BENCHMARKS.md ("Trace replay (editor-core)") and
//! `examples/large_file.rs`:
//!
//! - **Editing sessions** (the four recorded traces): `GapBuffer` replays them 5–8× faster than
//!   `RopeBuffer`, 5–7× faster than ropey itself, and in 0.65–0.8× the time of jumprope's
//!   buffered rope, because nearly every edit lands in the gap the previous one left.
//! - **Large files** (100 MB): opening takes 70–130 ms, like ropey; a keystroke plus the
//!   conversions and `chunks_in` of a 50-line redraw takes ~4 µs on average (ropey 4.5–7 µs); an
//!   edit and redraw at a random far position ~12 µs (ropey ~10 µs). All far below a 16 ms frame.
//!   Larger leaves would be worse here (16 KiB: ~9 µs per keystroke, 64 KiB: 24–32 µs), since a
//!   line lookup counts within a leaf.
//! - **Prefer [`RopeBuffer`](crate::RopeBuffer)** when the text is cloned often (snapshots for
//!   readers on other threads, snapshot-based undo): ropey clones in O(1) by sharing leaves, while
//!   cloning a 100 MB `GapBuffer` copies it (60–90 ms). Also for workloads of scattered edits all
//!   over texts far beyond 100 MB, where ropey's O(log n) lookup overtakes a walk over the leaf
//!   list (at 100 MB the two are already about even).

use std::fmt;
use std::ops::{Add, AddAssign, Range, Sub, SubAssign};

use crate::buffer::{check_range, PosError, TextBuffer};

/// The default maximum leaf size in bytes, chosen by measuring: on the sequential traces 2–16 KiB
/// replay alike, while the three-cursor `clownschool_flat` trace wants small leaves (each jump
/// moves a gap across up to one leaf: 0.30 ms at 4 KiB, 0.58 ms at 32 KiB), and so does a redraw
/// of a 100 MB file (line lookups count within a leaf). 4 KiB keeps the leaf list of 100 MB at
/// ~25,000 entries, a walk of ~10 µs.
pub const DEFAULT_LEAF_CAPACITY: usize = 4 * 1024;

/// The smallest accepted leaf size: any char (≤ 4 bytes) fits, and so do two.
const MIN_LEAF_CAPACITY: usize = 8;

/// Smallest array a leaf that has to grow is given, so typing into a tiny leaf doesn't reallocate
/// on every keystroke.
const MIN_GROWTH: usize = 64;

/// Up to this many chars, a position just after the start of a half is found by stepping over
/// bytes instead of calling the SIMD counter.
const FORWARD_WALK_CHARS: usize = 8;

/// Up to this many chars, a position before the gap (or near the end of a half) is found by
/// stepping backwards over bytes instead of counting forwards from the start.
const BACKWARD_WALK_CHARS: usize = 64;

/// The counts of a piece of text in each unit the API speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Metrics {
    bytes: usize,
    chars: usize,
    utf16: usize,
    /// The number of `'\n'`.
    lines: usize,
}

impl Add for Metrics {
    type Output = Metrics;
    #[inline]
    fn add(self, o: Metrics) -> Metrics {
        Metrics {
            bytes: self.bytes + o.bytes,
            chars: self.chars + o.chars,
            utf16: self.utf16 + o.utf16,
            lines: self.lines + o.lines,
        }
    }
}

impl Sub for Metrics {
    type Output = Metrics;
    #[inline]
    fn sub(self, o: Metrics) -> Metrics {
        Metrics {
            bytes: self.bytes - o.bytes,
            chars: self.chars - o.chars,
            utf16: self.utf16 - o.utf16,
            lines: self.lines - o.lines,
        }
    }
}

impl AddAssign for Metrics {
    #[inline]
    fn add_assign(&mut self, o: Metrics) {
        *self = *self + o;
    }
}

impl SubAssign for Metrics {
    #[inline]
    fn sub_assign(&mut self, o: Metrics) {
        *self = *self - o;
    }
}

/// Counts `s` in every unit.
#[inline(always)]
fn measure(s: &str) -> Metrics {
    match s.as_bytes() {
        [] => Metrics::default(),
        // A one-byte `str` is ASCII: the typing and deleting of a single char, the common case.
        &[b] => Metrics {
            bytes: 1,
            chars: 1,
            utf16: 1,
            lines: usize::from(b == b'\n'),
        },
        _ => measure_long(s),
    }
}

#[inline(never)]
fn measure_long(s: &str) -> Metrics {
    let bytes = s.as_bytes();
    if bytes.len() < 32 {
        let (mut chars, mut surrogates, mut lines) = (0, 0, 0);
        for &b in bytes {
            chars += usize::from(b & 0xC0 != 0x80);
            // In valid UTF-8, only the lead byte of a 4-byte sequence is >= 0xF0.
            surrogates += usize::from(b >= 0xF0);
            lines += usize::from(b == b'\n');
        }
        Metrics {
            bytes: bytes.len(),
            chars,
            utf16: chars + surrogates,
            lines,
        }
    } else {
        let chars = str_indices::chars::count(s);
        Metrics {
            bytes: bytes.len(),
            chars,
            utf16: chars + str_indices::utf16::count_surrogates(s),
            lines: str_indices::lines_lf::count_breaks(s),
        }
    }
}

#[inline]
fn is_char_start(b: u8) -> bool {
    b & 0xC0 != 0x80
}

/// The byte offset of char `n` in `s`, which holds `s_chars` chars (`n <= s_chars`).
#[inline]
fn nth_char_byte(s: &str, s_chars: usize, n: usize) -> usize {
    debug_assert!(n <= s_chars);
    let from_end = s_chars - n;
    if n <= FORWARD_WALK_CHARS {
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut left = n;
        // Stop on the start of char `n` (or at the end): skip `n` starts, then continuation bytes.
        while left > 0 {
            i += 1;
            if i == bytes.len() || is_char_start(bytes[i]) {
                left -= 1;
            }
        }
        i
    } else if from_end < n && from_end <= BACKWARD_WALK_CHARS {
        let bytes = s.as_bytes();
        let mut i = bytes.len();
        let mut left = from_end;
        while left > 0 {
            i -= 1;
            left -= usize::from(is_char_start(bytes[i]));
        }
        i
    } else {
        str_indices::chars::to_byte_idx(s, n)
    }
}

/// One gap buffer. The text is `buf[..gap_start]` followed by `buf[gap_end..]`.
#[derive(Clone)]
struct Leaf {
    buf: Box<[u8]>,
    gap_start: usize,
    gap_end: usize,
    /// Chars in `buf[..gap_start]`.
    front_chars: usize,
    /// Counts of the whole leaf text.
    m: Metrics,
}

impl Leaf {
    /// A leaf holding the concatenation of `parts` (whose counts are `m`), gap at the end.
    fn from_parts(parts: &[&str], m: Metrics) -> Leaf {
        let mut buf = Vec::with_capacity(m.bytes);
        for p in parts {
            buf.extend_from_slice(p.as_bytes());
        }
        debug_assert_eq!(buf.len(), m.bytes);
        Leaf {
            buf: buf.into_boxed_slice(),
            gap_start: m.bytes,
            gap_end: m.bytes,
            front_chars: m.chars,
            m,
        }
    }

    #[inline]
    #[allow(unsafe_code)] // skips re-validating UTF-8 on every read: invariant 1 holds it
    fn front(&self) -> &str {
        // SAFETY: invariant 1 — the bytes before the gap are valid UTF-8: they were only ever
        // written from `&str`s, and the gap only moves to char boundaries.
        unsafe { std::str::from_utf8_unchecked(&self.buf[..self.gap_start]) }
    }

    #[inline]
    #[allow(unsafe_code)] // as `front`
    fn back(&self) -> &str {
        // SAFETY: invariant 1, as for `front`.
        unsafe { std::str::from_utf8_unchecked(&self.buf[self.gap_end..]) }
    }

    #[inline]
    fn gap_len(&self) -> usize {
        self.gap_end - self.gap_start
    }

    /// The byte offset (in the leaf text) of the leaf's char `c` (`c <= m.chars`).
    #[inline]
    fn char_to_byte(&self, c: usize) -> usize {
        let fc = self.front_chars;
        if c == fc {
            self.gap_start
        } else if c < fc {
            nth_char_byte(self.front(), fc, c)
        } else {
            self.gap_start + nth_char_byte(self.back(), self.m.chars - fc, c - fc)
        }
    }

    /// Whether text offset `b` (`b <= m.bytes`) is a char boundary.
    #[inline]
    fn is_char_boundary(&self, b: usize) -> bool {
        if b >= self.m.bytes {
            return true;
        }
        let byte = if b < self.gap_start {
            self.buf[b]
        } else {
            self.buf[self.gap_end + b - self.gap_start]
        };
        is_char_start(byte)
    }

    /// The chars before text offset `b` (a char boundary).
    fn chars_before(&self, b: usize) -> usize {
        let gs = self.gap_start;
        let count = str_indices::chars::count;
        if b <= gs {
            if b <= gs - b {
                count(&self.front()[..b])
            } else {
                self.front_chars - count(&self.front()[b..])
            }
        } else if b - gs <= self.m.bytes - b {
            self.front_chars + count(&self.back()[..b - gs])
        } else {
            self.m.chars - count(&self.back()[b - gs..])
        }
    }

    /// `f` applied to the text before offset `b` (a char boundary), where `f` is additive over
    /// concatenation and `total` is its value for the whole leaf; counts the shorter side.
    fn count_before(&self, b: usize, total: usize, f: impl Fn(&str) -> usize) -> usize {
        let gs = self.gap_start;
        let (front, back) = (self.front(), self.back());
        if b <= self.m.bytes / 2 {
            if b <= gs {
                f(&front[..b])
            } else {
                f(front) + f(&back[..b - gs])
            }
        } else if b <= gs {
            total - f(&front[b..]) - f(back)
        } else {
            total - f(&back[b - gs..])
        }
    }

    /// UTF-16 code units before text offset `b` (a char boundary).
    fn utf16_before(&self, b: usize) -> usize {
        let surrogates = self.m.utf16 - self.m.chars;
        self.chars_before(b)
            + self.count_before(b, surrogates, str_indices::utf16::count_surrogates)
    }

    /// `'\n'`s before text offset `b` (a char boundary).
    fn lines_before(&self, b: usize) -> usize {
        self.count_before(b, self.m.lines, str_indices::lines_lf::count_breaks)
    }

    /// The leaf's char at UTF-16 offset `u` (`u <= m.utf16`), or `None` if `u` falls between
    /// the two halves of a surrogate pair.
    fn utf16_to_char(&self, u: usize) -> Option<usize> {
        let (front, back) = (self.front(), self.back());
        // UTF-16 length of the front half, counting whichever half is shorter.
        let front_utf16 = if front.len() <= back.len() {
            str_indices::utf16::count(front)
        } else {
            self.m.utf16 - str_indices::utf16::count(back)
        };
        let (half, base_chars, local) = if u <= front_utf16 {
            (front, 0, u)
        } else {
            (back, self.front_chars, u - front_utf16)
        };
        let b = str_indices::utf16::to_byte_idx(half, local);
        let prefix = &half[..b];
        let chars = str_indices::chars::count(prefix);
        if chars + str_indices::utf16::count_surrogates(prefix) != local {
            return None;
        }
        Some(base_chars + chars)
    }

    /// The text offset just after the leaf's `k`-th `'\n'` (0-based; `k < m.lines`).
    fn byte_after_newline(&self, k: usize) -> usize {
        let (front, back) = (self.front(), self.back());
        let front_lines = if front.len() <= back.len() {
            str_indices::lines_lf::count_breaks(front)
        } else {
            self.m.lines - str_indices::lines_lf::count_breaks(back)
        };
        if k < front_lines {
            str_indices::lines_lf::to_byte_idx(front, k + 1)
        } else {
            self.gap_start + str_indices::lines_lf::to_byte_idx(back, k + 1 - front_lines)
        }
    }

    /// The char at the leaf's char `c` (`c < m.chars`).
    fn char_at(&self, c: usize) -> Option<char> {
        let b = self.char_to_byte(c);
        if b < self.gap_start {
            self.front()[b..].chars().next()
        } else {
            self.back()[b - self.gap_start..].chars().next()
        }
    }

    /// The text in offsets `a..b` (char boundaries, `a <= b`) as the two parts either side of the
    /// gap (either may be empty).
    #[inline]
    fn slices(&self, a: usize, b: usize) -> [&str; 2] {
        let gs = self.gap_start;
        let front = &self.front()[a.min(gs)..b.min(gs)];
        let back = &self.back()[a.max(gs) - gs..b.max(gs) - gs];
        [front, back]
    }

    /// Moves the gap to text offset `b`, a char boundary that is the leaf's char `c`.
    #[inline]
    fn move_gap(&mut self, b: usize, c: usize) {
        let (gs, ge) = (self.gap_start, self.gap_end);
        if b < gs {
            let n = gs - b;
            self.buf.copy_within(b..gs, ge - n);
            self.gap_start = b;
            self.gap_end = ge - n;
        } else if b > gs {
            let n = b - gs;
            self.buf.copy_within(ge..ge + n, gs);
            self.gap_start = gs + n;
            self.gap_end = ge + n;
        }
        self.front_chars = c;
    }

    /// Reallocates so the gap holds at least `need` bytes (the caller guarantees the text then
    /// still fits in `max_leaf`).
    #[cold]
    fn grow(&mut self, need: usize, max_leaf: usize) {
        let len = self.m.bytes;
        let cap = (self.buf.len() * 2)
            .max(MIN_GROWTH)
            .min(max_leaf)
            .max(len + need);
        let mut buf = vec![0u8; cap].into_boxed_slice();
        let back_len = self.buf.len() - self.gap_end;
        buf[..self.gap_start].copy_from_slice(&self.buf[..self.gap_start]);
        buf[cap - back_len..].copy_from_slice(&self.buf[self.gap_end..]);
        self.gap_end = cap - back_len;
        self.buf = buf;
    }

    /// Inserts `text` (counts `m`) at the leaf's char `c`; the caller guarantees it fits.
    #[inline(always)]
    fn insert(&mut self, c: usize, text: &str, m: Metrics, max_leaf: usize) {
        let b = self.char_to_byte(c);
        self.move_gap(b, c);
        if self.gap_len() < text.len() {
            self.grow(text.len(), max_leaf);
        }
        self.write_at_gap(text.as_bytes(), m);
    }

    /// Writes `bytes` (a whole `str`, counts `m`) into the gap, which must be large enough.
    #[inline(always)]
    fn write_at_gap(&mut self, bytes: &[u8], m: Metrics) {
        let gs = self.gap_start;
        match bytes {
            &[b] => self.buf[gs] = b,
            _ => self.buf[gs..gs + bytes.len()].copy_from_slice(bytes),
        }
        self.gap_start += bytes.len();
        self.front_chars += m.chars;
        self.m += m;
    }

    /// Removes the char just before the gap (Backspace) and returns its counts; there must be one.
    #[inline(always)]
    fn remove_char_before_gap(&mut self) -> Metrics {
        let mut i = self.gap_start - 1;
        while !is_char_start(self.buf[i]) {
            i -= 1;
        }
        let m = Self::one_char(&self.buf[i..self.gap_start]);
        self.gap_start = i;
        self.front_chars -= 1;
        self.m -= m;
        m
    }

    /// Removes the char just after the gap (Delete) and returns its counts; there must be one.
    #[inline(always)]
    fn remove_char_after_gap(&mut self) -> Metrics {
        let mut j = self.gap_end + 1;
        while j < self.buf.len() && !is_char_start(self.buf[j]) {
            j += 1;
        }
        let m = Self::one_char(&self.buf[self.gap_end..j]);
        self.gap_end = j;
        self.m -= m;
        m
    }

    /// The counts of `bytes`, the UTF-8 encoding of one char.
    #[inline(always)]
    fn one_char(bytes: &[u8]) -> Metrics {
        Metrics {
            bytes: bytes.len(),
            chars: 1,
            utf16: 1 + usize::from(bytes.len() == 4),
            lines: usize::from(bytes[0] == b'\n'),
        }
    }

    /// Removes the leaf's chars `c0..c1` and returns their counts.
    #[inline]
    fn remove(&mut self, c0: usize, c1: usize) -> Metrics {
        // Bring the gap into the range (moving it as little as possible), then widen it.
        if c1 < self.front_chars {
            let b = self.char_to_byte(c1);
            self.move_gap(b, c1);
        } else if c0 > self.front_chars {
            let b = self.char_to_byte(c0);
            self.move_gap(b, c0);
        }
        let fc = self.front_chars;
        let (front, back) = (self.front(), self.back());
        let b0 = if c0 == fc {
            front.len()
        } else {
            nth_char_byte(front, fc, c0)
        };
        let k = if c1 == fc {
            0
        } else {
            nth_char_byte(back, self.m.chars - fc, c1 - fc)
        };
        let removed = measure(&front[b0..]) + measure(&back[..k]);
        self.gap_start = b0;
        self.gap_end += k;
        self.front_chars = c0;
        self.m -= removed;
        removed
    }
}

/// The leaf edited last and the offsets at which it starts.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    leaf: usize,
    start: Metrics,
}

/// A text as a flat list of gap-buffer leaves with a cursor on the last edited one; see the
/// [module documentation](self) for the design, its invariants and when to prefer
/// [`RopeBuffer`](crate::RopeBuffer).
///
/// # Examples
///
/// ```
/// use editor_core::{GapBuffer, TextBuffer};
///
/// let mut buf = GapBuffer::from_text("fn main() {}\n");
/// // Typing lands in the gap the previous keystroke left.
/// for (i, c) in "println!();".chars().enumerate() {
///     buf.insert(11 + i, &c.to_string()).unwrap();
/// }
/// assert_eq!(buf.to_text(), "fn main() {println!();}\n");
/// buf.remove(11..22).unwrap();
/// assert_eq!(buf.to_text(), "fn main() {}\n");
/// assert_eq!(buf.char_to_line(13).unwrap(), 1);
/// assert_eq!(buf.leaf_capacity(), editor_core::gap::DEFAULT_LEAF_CAPACITY);
///
/// // A long text is cut into leaves; the invariants hold after every edit.
/// let mut big = GapBuffer::from_text_with_leaf_capacity(&"abcdefgh\n".repeat(100), 64);
/// assert!(big.leaf_count() > 1);
/// big.replace(5..600, "").unwrap();
/// assert_eq!(big.len_chars(), 900 - 595);
/// assert_eq!(big.check_invariants(), Ok(()));
/// ```
#[derive(Clone)]
pub struct GapBuffer {
    leaves: Vec<Leaf>,
    total: Metrics,
    cursor: Cursor,
    max_leaf: usize,
}

impl Default for GapBuffer {
    fn default() -> Self {
        GapBuffer::with_leaf_capacity(DEFAULT_LEAF_CAPACITY)
    }
}

impl fmt::Debug for GapBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GapBuffer")
            .field("len_chars", &self.total.chars)
            .field("len_bytes", &self.total.bytes)
            .field("len_lines", &(self.total.lines + 1))
            .field("leaves", &self.leaves.len())
            .field("max_leaf", &self.max_leaf)
            .finish()
    }
}

/// A text given as consecutive `&str` pieces, to be cut into leaves without concatenating it
/// first.
struct Pieces<'a> {
    parts: &'a [&'a str],
    len: usize,
}

impl<'a> Pieces<'a> {
    fn new(parts: &'a [&'a str]) -> Self {
        Pieces {
            parts,
            len: parts.iter().map(|p| p.len()).sum(),
        }
    }

    fn is_char_boundary(&self, mut pos: usize) -> bool {
        for p in self.parts {
            if pos <= p.len() {
                return p.is_char_boundary(pos);
            }
            pos -= p.len();
        }
        pos == 0
    }

    /// The sub-slices of the parts that make up `a..b` (char boundaries).
    fn range(&self, a: usize, b: usize) -> impl Iterator<Item = &'a str> + '_ {
        let mut offset = 0;
        self.parts.iter().filter_map(move |p| {
            let (start, end) = (offset, offset + p.len());
            offset = end;
            let (lo, hi) = (a.max(start), b.min(end));
            (lo < hi).then(|| &p[lo - start..hi - start])
        })
    }
}

/// Cuts the concatenation of `parts` into leaves of at most `max_leaf` bytes, as few as possible
/// and balanced in size, appending them to `out`.
fn build_leaves(parts: &[&str], max_leaf: usize, out: &mut Vec<Leaf>) {
    let text = Pieces::new(parts);
    if text.len == 0 {
        return;
    }
    let mut left = text.len.div_ceil(max_leaf - 4);
    let mut prev = 0;
    let mut pieces: Vec<&str> = Vec::with_capacity(parts.len());
    while prev < text.len {
        let rem = text.len - prev;
        let want = rem.div_ceil(left.max(1)).min(max_leaf);
        let mut end = prev + want;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end <= prev {
            // Fewer bytes wanted than the next char has: take that one char.
            end = prev + 1;
            while !text.is_char_boundary(end) {
                end += 1;
            }
        }
        pieces.clear();
        pieces.extend(text.range(prev, end));
        let m = pieces
            .iter()
            .fold(Metrics::default(), |acc, p| acc + measure(p));
        out.push(Leaf::from_parts(&pieces, m));
        prev = end;
        left = left.saturating_sub(1);
    }
}

impl GapBuffer {
    /// An empty buffer whose leaves hold at most `max_leaf_bytes` (at least 8). The default is
    /// [`DEFAULT_LEAF_CAPACITY`]; tests use tiny leaves to exercise splits and merges.
    #[doc(hidden)]
    pub fn with_leaf_capacity(max_leaf_bytes: usize) -> Self {
        GapBuffer {
            leaves: Vec::new(),
            total: Metrics::default(),
            cursor: Cursor::default(),
            max_leaf: max_leaf_bytes.max(MIN_LEAF_CAPACITY),
        }
    }

    /// [`TextBuffer::from_text`] with leaves of at most `max_leaf_bytes`.
    #[doc(hidden)]
    pub fn from_text_with_leaf_capacity(text: &str, max_leaf_bytes: usize) -> Self {
        let mut buf = GapBuffer::with_leaf_capacity(max_leaf_bytes);
        build_leaves(&[text], buf.max_leaf, &mut buf.leaves);
        buf.total = buf
            .leaves
            .iter()
            .fold(Metrics::default(), |acc, l| acc + l.m);
        buf
    }

    /// The number of leaves (for tests and benchmarks).
    #[doc(hidden)]
    pub fn leaf_count(&self) -> usize {
        self.leaves.len()
    }

    /// The maximum leaf size in bytes.
    pub fn leaf_capacity(&self) -> usize {
        self.max_leaf
    }

    /// Checks every invariant of the module documentation, describing the first one broken.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut sum = Metrics::default();
        let mut cursor_ok = self.leaves.is_empty() && self.cursor.leaf == 0;
        for (i, leaf) in self.leaves.iter().enumerate() {
            let front = std::str::from_utf8(&leaf.buf[..leaf.gap_start])
                .map_err(|e| format!("leaf {i}: text before the gap is not UTF-8: {e}"))?;
            let back = std::str::from_utf8(&leaf.buf[leaf.gap_end..])
                .map_err(|e| format!("leaf {i}: text after the gap is not UTF-8: {e}"))?;
            let m = measure(front) + measure(back);
            if m != leaf.m {
                return Err(format!(
                    "leaf {i}: cached counts {:?}, actual {:?}",
                    leaf.m, m
                ));
            }
            if leaf.front_chars != front.chars().count() {
                return Err(format!(
                    "leaf {i}: front_chars {} is wrong",
                    leaf.front_chars
                ));
            }
            if m.bytes == 0 {
                return Err(format!("leaf {i} is empty"));
            }
            if leaf.buf.len() > self.max_leaf {
                return Err(format!(
                    "leaf {i}'s array is {} > {} bytes",
                    leaf.buf.len(),
                    self.max_leaf
                ));
            }
            if i + 1 < self.leaves.len()
                && m.bytes + self.leaves[i + 1].m.bytes <= self.max_leaf / 4
            {
                return Err(format!("leaves {i} and {} should have been merged", i + 1));
            }
            if i == self.cursor.leaf {
                if self.cursor.start != sum {
                    return Err(format!(
                        "cursor start {:?}, actual {:?}",
                        self.cursor.start, sum
                    ));
                }
                cursor_ok = true;
            }
            sum += m;
        }
        if sum != self.total {
            return Err(format!("totals {:?}, sum of leaves {:?}", self.total, sum));
        }
        if !cursor_ok {
            return Err(format!(
                "cursor leaf {} of {} leaves",
                self.cursor.leaf,
                self.leaves.len()
            ));
        }
        Ok(())
    }

    /// The leaf holding position `t` in the unit `key` selects, and that leaf's start offsets.
    /// The buffer must not be empty and `t <= key(total)`.
    ///
    /// The cursor leaf is taken if `t` falls in it (or at its end, unless `strict`). Otherwise the
    /// leaf with `start <= t < end` is returned, or the last leaf if `t` is the end of the text.
    /// `strict` callers guarantee `t < key(total)`.
    #[inline]
    fn seek(&self, t: usize, strict: bool, key: impl Fn(&Metrics) -> usize) -> (usize, Metrics) {
        let n = self.leaves.len();
        let Cursor {
            leaf: ci,
            start: cs,
        } = self.cursor;
        let c_start = key(&cs);
        let c_end = c_start + key(&self.leaves[ci].m);
        if c_start <= t && (t < c_end || (!strict && t == c_end)) {
            return (ci, cs);
        }
        self.seek_slow(t, key, n, ci, cs, c_start)
    }

    #[inline(never)]
    fn seek_slow(
        &self,
        t: usize,
        key: impl Fn(&Metrics) -> usize,
        n: usize,
        ci: usize,
        cs: Metrics,
        c_start: usize,
    ) -> (usize, Metrics) {
        let total = key(&self.total);
        if t >= total {
            let last = n - 1;
            return (last, self.total - self.leaves[last].m);
        }
        // Start from the cursor, the beginning or the end, whichever is nearer.
        let (mut i, mut s) = if t >= c_start {
            if t - c_start <= total - t {
                (ci, cs)
            } else {
                (n, self.total)
            }
        } else if t <= c_start - t {
            (0, Metrics::default())
        } else {
            (ci, cs)
        };
        if key(&s) <= t {
            loop {
                let m = self.leaves[i].m;
                if t < key(&s) + key(&m) {
                    return (i, s);
                }
                s += m;
                i += 1;
            }
        } else {
            loop {
                i -= 1;
                s -= self.leaves[i].m;
                if key(&s) <= t {
                    return (i, s);
                }
            }
        }
    }

    /// From leaf `i` starting at `s`, walks forward to the first leaf whose end is at or after
    /// char `c`.
    fn seek_forward(&self, mut i: usize, mut s: Metrics, c: usize) -> (usize, Metrics) {
        while i + 1 < self.leaves.len() && c > s.chars + self.leaves[i].m.chars {
            s += self.leaves[i].m;
            i += 1;
        }
        (i, s)
    }

    /// The leaf before leaf `i` (which starts at `s`) and its start, or leaf 0 if `i == 0`: a
    /// position that restructuring leaves `i..` cannot invalidate.
    fn anchor_before(&self, i: usize, s: Metrics) -> (usize, Metrics) {
        if i == 0 {
            (0, Metrics::default())
        } else {
            (i - 1, s - self.leaves[i - 1].m)
        }
    }

    /// Restores invariants 2 and 4 after leaves `lo..hi` changed (drops empty leaves, merges small
    /// neighbours), then points the cursor at char `c`, walking from `anchor`.
    fn fixup(&mut self, lo: usize, mut hi: usize, anchor: (usize, Metrics), c: usize) {
        let mut k = lo;
        while k < hi.min(self.leaves.len()) {
            if self.leaves[k].m.bytes == 0 {
                self.leaves.remove(k);
                hi -= 1;
            } else {
                k += 1;
            }
        }
        let quarter = self.max_leaf / 4;
        let mut j = lo.saturating_sub(1);
        while j < hi && j + 1 < self.leaves.len() {
            let (a, b) = (&self.leaves[j], &self.leaves[j + 1]);
            if a.m.bytes + b.m.bytes <= quarter {
                let merged =
                    Leaf::from_parts(&[a.front(), a.back(), b.front(), b.back()], a.m + b.m);
                self.leaves[j] = merged;
                self.leaves.remove(j + 1);
                hi = hi.saturating_sub(1).max(j + 1);
            } else {
                j += 1;
            }
        }
        self.cursor = if self.leaves.is_empty() {
            Cursor::default()
        } else {
            let (leaf, start) = self.seek_forward(anchor.0, anchor.1, c);
            Cursor { leaf, start }
        };
    }

    /// Inserts where leaf `i` (starting at `s`) is too full: re-cuts its text and `text` into
    /// balanced leaves.
    #[cold]
    fn insert_split(&mut self, i: usize, s: Metrics, local: usize, text: &str, m: Metrics) {
        let anchor = self.anchor_before(i, s);
        let leaf = &mut self.leaves[i];
        let b = leaf.char_to_byte(local);
        leaf.move_gap(b, local);
        let mut new = Vec::new();
        let leaf = &self.leaves[i];
        build_leaves(&[leaf.front(), text, leaf.back()], self.max_leaf, &mut new);
        let k = new.len();
        self.leaves.splice(i..i + 1, new);
        self.total += m;
        self.fixup(i, i + k, anchor, s.chars + local + m.chars);
    }

    #[inline(never)]
    fn insert_slow(&mut self, char_idx: usize, text: &str) -> Result<(), PosError> {
        if char_idx > self.total.chars {
            return Err(self.char_error(char_idx));
        }
        if text.is_empty() {
            return Ok(());
        }
        let m = measure(text);
        if self.leaves.is_empty() {
            build_leaves(&[text], self.max_leaf, &mut self.leaves);
            self.total = m;
            let (leaf, start) = self.seek_forward(0, Metrics::default(), m.chars);
            self.cursor = Cursor { leaf, start };
            return Ok(());
        }
        let (i, s) = self.seek(char_idx, false, |m| m.chars);
        let local = char_idx - s.chars;
        let max = self.max_leaf;
        let leaf = &self.leaves[i];
        if leaf.m.bytes + text.len() <= max {
            self.leaves[i].insert(local, text, m, max);
            self.total += m;
            self.cursor = Cursor { leaf: i, start: s };
            return Ok(());
        }
        // Full leaf: at a boundary, a neighbour with room may take the text instead.
        if local == leaf.m.chars
            && i + 1 < self.leaves.len()
            && self.leaves[i + 1].m.bytes + text.len() <= max
        {
            let start = s + leaf.m;
            self.leaves[i + 1].insert(0, text, m, max);
            self.total += m;
            self.cursor = Cursor { leaf: i + 1, start };
            return Ok(());
        }
        if local == 0 && i > 0 && self.leaves[i - 1].m.bytes + text.len() <= max {
            let prev = &mut self.leaves[i - 1];
            let start = s - prev.m;
            let end = prev.m.chars;
            prev.insert(end, text, m, max);
            self.total += m;
            self.cursor = Cursor { leaf: i - 1, start };
            return Ok(());
        }
        self.insert_split(i, s, local, text, m);
        Ok(())
    }

    #[inline(never)]
    fn remove_slow(&mut self, range: Range<usize>) -> Result<(), PosError> {
        check_range(&range, self.total.chars)?;
        if range.is_empty() {
            return Ok(());
        }
        let (c0, c1) = (range.start, range.end);
        let (i, s) = self.seek(c0, true, |m| m.chars);
        let local0 = c0 - s.chars;
        let leaf_chars = self.leaves[i].m.chars;
        if c1 - s.chars <= leaf_chars {
            let removed = self.leaves[i].remove(local0, c1 - s.chars);
            self.total -= removed;
            let bytes = self.leaves[i].m.bytes;
            let quarter = self.max_leaf / 4;
            let small = bytes == 0
                || (bytes <= quarter
                    && ((i > 0 && bytes + self.leaves[i - 1].m.bytes <= quarter)
                        || (i + 1 < self.leaves.len()
                            && bytes + self.leaves[i + 1].m.bytes <= quarter)));
            if small {
                let anchor = self.anchor_before(i, s);
                self.fixup(i, i + 1, anchor, c0);
            } else {
                self.cursor = Cursor { leaf: i, start: s };
            }
            return Ok(());
        }
        // The range spans leaves: cut the tail of leaf i, drop whole leaves, cut the head of the
        // last one.
        let anchor = self.anchor_before(i, s);
        let mut removed = self.leaves[i].remove(local0, leaf_chars);
        let mut rem = c1 - (s.chars + leaf_chars);
        let mut j = i + 1;
        while rem > 0 && self.leaves[j].m.chars <= rem {
            removed += self.leaves[j].m;
            rem -= self.leaves[j].m.chars;
            j += 1;
        }
        if rem > 0 {
            removed += self.leaves[j].remove(0, rem);
        }
        self.leaves.drain(i + 1..j);
        self.total -= removed;
        self.fixup(i, i + 2, anchor, c0);
        Ok(())
    }

    fn char_error(&self, pos: usize) -> PosError {
        PosError::Char {
            pos,
            len: self.total.chars,
        }
    }
}

impl TextBuffer for GapBuffer {
    const NAME: &'static str = "gap";

    fn from_text(text: &str) -> Self {
        GapBuffer::from_text_with_leaf_capacity(text, DEFAULT_LEAF_CAPACITY)
    }

    fn len_chars(&self) -> usize {
        self.total.chars
    }

    fn len_bytes(&self) -> usize {
        self.total.bytes
    }

    fn len_utf16(&self) -> usize {
        self.total.utf16
    }

    fn len_lines(&self) -> usize {
        self.total.lines + 1
    }

    #[inline]
    fn insert(&mut self, char_idx: usize, text: &str) -> Result<(), PosError> {
        // Fast path, typing: at the cursor leaf's gap, with room in the gap.
        let Cursor {
            leaf: ci,
            start: cs,
        } = self.cursor;
        if let Some(leaf) = self.leaves.get_mut(ci) {
            if char_idx == cs.chars + leaf.front_chars && text.len() <= leaf.gap_len() {
                let m = measure(text);
                leaf.write_at_gap(text.as_bytes(), m);
                self.total += m;
                return Ok(());
            }
        }
        self.insert_slow(char_idx, text)
    }

    #[inline]
    fn remove(&mut self, range: Range<usize>) -> Result<(), PosError> {
        // Fast path, deleting inside the cursor leaf, which stays well above a quarter full.
        let Cursor {
            leaf: ci,
            start: cs,
        } = self.cursor;
        let (c0, c1) = (range.start, range.end);
        let quarter = self.max_leaf / 4;
        if let Some(leaf) = self.leaves.get_mut(ci) {
            if cs.chars <= c0
                && c0 < c1
                && c1 <= cs.chars + leaf.m.chars
                && leaf.m.bytes.saturating_sub(4 * (c1 - c0)) > quarter
            {
                let gap = cs.chars + leaf.front_chars;
                let removed = if c1 - c0 == 1 && c1 == gap {
                    leaf.remove_char_before_gap()
                } else if c1 - c0 == 1 && c0 == gap {
                    leaf.remove_char_after_gap()
                } else {
                    leaf.remove(c0 - cs.chars, c1 - cs.chars)
                };
                self.total -= removed;
                return Ok(());
            }
        }
        self.remove_slow(range)
    }
    fn char_at(&self, char_idx: usize) -> Result<char, PosError> {
        let len = self.total.chars;
        if char_idx >= len {
            return Err(PosError::CharIndex { pos: char_idx, len });
        }
        let (i, s) = self.seek(char_idx, true, |m| m.chars);
        // A valid leaf and in-range char always decode; the fallback is never taken.
        self.leaves[i]
            .char_at(char_idx - s.chars)
            .ok_or(PosError::CharIndex { pos: char_idx, len })
    }

    fn chunks(&self) -> impl Iterator<Item = &str> + '_ {
        self.leaves
            .iter()
            .flat_map(|l| [l.front(), l.back()])
            .filter(|c| !c.is_empty())
    }

    fn chunks_in(&self, range: Range<usize>) -> Result<impl Iterator<Item = &str> + '_, PosError> {
        check_range(&range, self.total.chars)?;
        let (leaves, lo, hi): (&[Leaf], usize, usize) = if range.is_empty() {
            (&[], 0, 0)
        } else {
            let (i, s) = self.seek(range.start, true, |m| m.chars);
            let lo = self.leaves[i].char_to_byte(range.start - s.chars);
            let (j, t) = self.seek_forward(i, s, range.end);
            let hi = self.leaves[j].char_to_byte(range.end - t.chars);
            (&self.leaves[i..=j], lo, hi)
        };
        let last = leaves.len().saturating_sub(1);
        Ok(leaves
            .iter()
            .enumerate()
            .flat_map(move |(k, leaf)| {
                let a = if k == 0 { lo } else { 0 };
                let b = if k == last { hi } else { leaf.m.bytes };
                leaf.slices(a, b)
            })
            .filter(|c| !c.is_empty()))
    }

    fn slice(&self, range: Range<usize>) -> Result<String, PosError> {
        let mut out = String::with_capacity(range.len().min(self.total.bytes));
        for chunk in self.chunks_in(range)? {
            out.push_str(chunk);
        }
        Ok(out)
    }

    fn char_to_byte(&self, char_idx: usize) -> Result<usize, PosError> {
        if char_idx > self.total.chars {
            return Err(self.char_error(char_idx));
        }
        if self.leaves.is_empty() {
            return Ok(0);
        }
        let (i, s) = self.seek(char_idx, false, |m| m.chars);
        Ok(s.bytes + self.leaves[i].char_to_byte(char_idx - s.chars))
    }

    fn byte_to_char(&self, byte_idx: usize) -> Result<usize, PosError> {
        if byte_idx > self.total.bytes {
            return Err(PosError::Byte {
                pos: byte_idx,
                len: self.total.bytes,
            });
        }
        if self.leaves.is_empty() {
            return Ok(0);
        }
        let (i, s) = self.seek(byte_idx, false, |m| m.bytes);
        let leaf = &self.leaves[i];
        let local = byte_idx - s.bytes;
        if !leaf.is_char_boundary(local) {
            return Err(PosError::NotCharBoundary { pos: byte_idx });
        }
        Ok(s.chars + leaf.chars_before(local))
    }

    fn char_to_utf16(&self, char_idx: usize) -> Result<usize, PosError> {
        if char_idx > self.total.chars {
            return Err(self.char_error(char_idx));
        }
        if self.leaves.is_empty() {
            return Ok(0);
        }
        let (i, s) = self.seek(char_idx, false, |m| m.chars);
        let leaf = &self.leaves[i];
        Ok(s.utf16 + leaf.utf16_before(leaf.char_to_byte(char_idx - s.chars)))
    }

    fn utf16_to_char(&self, utf16_idx: usize) -> Result<usize, PosError> {
        if utf16_idx > self.total.utf16 {
            return Err(PosError::Utf16 {
                pos: utf16_idx,
                len: self.total.utf16,
            });
        }
        if self.leaves.is_empty() {
            return Ok(0);
        }
        let (i, s) = self.seek(utf16_idx, false, |m| m.utf16);
        match self.leaves[i].utf16_to_char(utf16_idx - s.utf16) {
            Some(c) => Ok(s.chars + c),
            None => Err(PosError::InsideSurrogatePair { pos: utf16_idx }),
        }
    }

    fn char_to_line(&self, char_idx: usize) -> Result<usize, PosError> {
        if char_idx > self.total.chars {
            return Err(self.char_error(char_idx));
        }
        if self.leaves.is_empty() {
            return Ok(0);
        }
        let (i, s) = self.seek(char_idx, false, |m| m.chars);
        let leaf = &self.leaves[i];
        Ok(s.lines + leaf.lines_before(leaf.char_to_byte(char_idx - s.chars)))
    }

    fn line_to_char(&self, line: usize) -> Result<usize, PosError> {
        let len = self.total.lines + 1;
        if line >= len {
            return Err(PosError::Line { line, len });
        }
        if line == 0 {
            return Ok(0);
        }
        // The line starts just after the text's `line`-th '\n' (0-based: newline `line - 1`).
        let (i, s) = self.seek(line - 1, true, |m| m.lines);
        let leaf = &self.leaves[i];
        Ok(s.chars + leaf.chars_before(leaf.byte_after_newline(line - 1 - s.lines)))
    }

    fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.total.bytes);
        for chunk in self.chunks() {
            out.push_str(chunk);
        }
        out
    }
}
