//! Knuth–Morris–Pratt search that streams over a buffer's chunks: the text is never copied into
//! one `String`, and a match may span any number of chunk boundaries (the automaton's state is
//! carried from one chunk to the next).
//!
//! # What matches
//! - Matches are reported left to right and never overlap: after a match the search resumes at its
//!   end, so case-sensitive [`Searcher::find_all`] returns exactly the matches of
//!   `str::match_indices`.
//! - Case-insensitive search compares chars under Unicode *simple* case folding, one char to one
//!   char ([`fold_char`]): `K`, `k` and the Kelvin sign `K` match each other, `ς`, `σ` and `Σ`
//!   match each other, but `ß` does not match `ss` (that needs full folding), so a match always
//!   has as many chars as the pattern.
//! - Whole-word search accepts an occurrence only if the char just before it and the char just
//!   after it (the real neighbours in the buffer, also when searching a sub-range) are not word
//!   chars in the sense of [`is_word_char`] — the same notion autocomplete uses. Candidates are
//!   examined left to right and the first acceptable one wins, so in `xa-a-a` the whole word `a-a`
//!   is found at 3 even though the occurrence at 1 (preceded by `x`) overlaps it.
//! - The empty pattern matches nothing: every query returns no match and replace-all replaces
//!   nothing (an editor's search box that was cleared should highlight nothing).
//!
//! # Speed
//! Case-sensitive search runs KMP on UTF-8 bytes: a byte-level occurrence of a valid UTF-8
//! pattern in valid UTF-8 text always starts and ends on char boundaries, so byte matches are
//! char matches. Whenever the automaton is in its start state no partial match is pending, and the
//! searcher may skip ahead to the next position where an occurrence could start: it uses
//! memchr's "packed pair" prefilter (the two pattern bytes its frequency table ranks rarest,
//! compared at their offsets 16 or 32 positions at a time with SSE2/AVX2; `memchr` on one of
//! them plus a check of the other elsewhere; plain `memchr` for one-byte patterns). No
//! occurrence starts at a position the prefilter passes over, so restarting the automaton where
//! it stops reports exactly the matches of byte-by-byte stepping; the automaton alone decides
//! what matches, and its state crosses chunk boundaries. Chars are counted (vectorised) only in
//! chunks that hold a match, the first such chunk after a match-free stretch asking the buffer
//! for its starting char index, so a sparse search reads each byte about once.
//!
//! Case-insensitive search runs KMP on folded chars, with a similar skip (`memchr2` on the lower
//! and upper case of the rarest of the pattern's leading ASCII chars whose case variants are all
//! ASCII — every ASCII char but `k` and `s`, which also match `K` and `ſ`).
//!
//! [`is_word_char`]: crate::trie::is_word_char

use std::collections::VecDeque;
use std::iter::Peekable;
use std::ops::Range;

use crate::buffer::{check_range, PosError, TextBuffer};
use crate::trie::is_word_char;
use crate::undo::{Edit, History};

/// What to look for, before it is compiled into a [`Searcher`].
///
/// # Examples
///
/// ```
/// use editor_core::search::Query;
///
/// let q = Query::new("Foo").case_insensitive(true).whole_word(true);
/// assert_eq!((q.pattern.as_str(), q.case_insensitive, q.whole_word), ("Foo", true, true));
/// assert_eq!(Query::new("Foo"), Query { pattern: "Foo".into(), ..Query::default() });
/// let searcher = q.compile();
/// assert_eq!(searcher.query().pattern, "Foo");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// Matched literally: no wildcards or regex syntax, so any user text can be searched as is.
    pub pattern: String,
    /// Compare under simple case folding ([`fold_char`]).
    pub case_insensitive: bool,
    /// Only accept occurrences not touching word chars on either side.
    pub whole_word: bool,
}

impl Query {
    /// A case-sensitive, substring query for `pattern`.
    pub fn new(pattern: impl Into<String>) -> Self {
        Query {
            pattern: pattern.into(),
            case_insensitive: false,
            whole_word: false,
        }
    }

    /// Sets case-insensitive matching (simple case folding, see [`fold_char`]).
    pub fn case_insensitive(mut self, on: bool) -> Self {
        self.case_insensitive = on;
        self
    }

    /// Sets whole-word matching (see the module docs).
    pub fn whole_word(mut self, on: bool) -> Self {
        self.whole_word = on;
        self
    }

    /// Builds the failure table once, for as many searches as needed.
    pub fn compile(self) -> Searcher {
        Searcher::new(self)
    }
}

/// One match, in the units callers need without a second conversion: chars for the editor API,
/// bytes for storage-level work.
///
/// Invariants: `chars` and `bytes` cover the same text, and `chars` is as long as the pattern in
/// chars (case folding is one char to one char).
///
/// # Examples
///
/// ```
/// use editor_core::search::{Match, Query};
/// use editor_core::{GapBuffer, TextBuffer};
///
/// let buf = GapBuffer::from_text("déjà vu, déjà");
/// let found = Query::new("déjà").compile().find_all(&buf);
/// assert_eq!(
///     found,
///     [Match { chars: 0..4, bytes: 0..6 }, Match { chars: 9..13, bytes: 11..17 }]
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Match {
    /// Char positions, the unit of the editor API and of [`TextBuffer`].
    pub chars: Range<usize>,
    /// UTF-8 byte offsets, free to report since the search runs on bytes.
    pub bytes: Range<usize>,
}

/// A compiled [`Query`]: the KMP failure table plus the skip heuristic's choice of bytes.
///
/// Invariants: the engine is fixed by the query (empty pattern: matches nothing; case-sensitive:
/// KMP on bytes; case-insensitive: KMP on folded chars) and never changes, so one searcher can
/// serve any number of searches on any buffers.
///
/// # Examples
///
/// ```
/// use editor_core::search::Query;
/// use editor_core::{GapBuffer, TextBuffer};
///
/// let buf = GapBuffer::from_text("Cat, cat, concat, CAT");
/// let s = Query::new("cat").case_insensitive(true).whole_word(true).compile();
/// let starts: Vec<usize> = s.find_all(&buf).iter().map(|m| m.chars.start).collect();
/// assert_eq!(starts, [0, 5, 18]);
/// // From a cursor, forwards and backwards.
/// assert_eq!(s.find_next(&buf, 1).unwrap().map(|m| m.chars), Some(5..8));
/// assert_eq!(s.find_prev(&buf, 18).unwrap().map(|m| m.chars), Some(5..8));
/// // In a selection: the chars around it still decide what is a whole word.
/// let inside: Vec<_> = s.find_in(&buf, 4..21).unwrap().map(|m| m.chars).collect();
/// assert_eq!(inside, [5..8, 18..21]);
/// // The empty pattern finds nothing.
/// assert!(Query::new("").compile().find_all(&buf).is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Searcher {
    query: Query,
    engine: Engine,
    /// Length of the pattern (and of every match) in chars.
    pattern_chars: usize,
}

#[derive(Debug, Clone)]
enum Engine {
    Empty,
    Exact(Exact),
    Folded(Folded),
}

/// KMP over UTF-8 bytes.
#[derive(Debug, Clone)]
struct Exact {
    pat: Vec<u8>,
    fail: Vec<u32>,
    prefilter: Prefilter,
}

/// Finds the next position where an occurrence may start, for [`Exact::skip`].
#[derive(Debug, Clone)]
enum Prefilter {
    /// One-byte patterns: `memchr`.
    Byte(u8),
    /// memchr's "packed pair" prefilter: the two bytes of the pattern its frequency table ranks
    /// rarest, compared at their offsets 32 (AVX2) or 16 (SSE2) positions at a time; the generic
    /// finder takes over for the last few dozen bytes of a chunk, which the vector code refuses.
    #[cfg(target_arch = "x86_64")]
    Avx2(
        memchr::arch::x86_64::avx2::packedpair::Finder,
        memchr::arch::all::packedpair::Finder,
    ),
    #[cfg(target_arch = "x86_64")]
    Sse2(
        memchr::arch::x86_64::sse2::packedpair::Finder,
        memchr::arch::all::packedpair::Finder,
    ),
    /// The same pair, found with `memchr` on the first byte and a check of the second.
    Generic(memchr::arch::all::packedpair::Finder),
}

/// KMP over case-folded chars.
#[derive(Debug, Clone)]
struct Folded {
    pat: Vec<char>,
    fail: Vec<u32>,
    skip: Option<FoldSkip>,
}

/// A pattern char at byte offset `at` whose every case variant is one of `needles` (ASCII),
/// plus optionally a second such char, checked (ASCII case-insensitively) before a candidate is
/// handed to the automaton.
#[derive(Debug, Clone)]
struct FoldSkip {
    at: usize,
    needles: [u8; 2],
    count: usize,
    second: Option<(usize, u8)>,
}

/// The one-to-one case fold used by case-insensitive search.
///
/// Unicode's simple case folding (`CaseFolding.txt`, statuses C and S), computed from std's case
/// mappings as `lowercase(uppercase(c))`, each step kept only when it yields a single char, plus
/// three exceptions: the Turkic `İ` and `ı` fold to themselves (Unicode folds them only under
/// Turkic rules) and the three S mappings added in Unicode 15 (`ΐ`→`ΐ`, `ΰ`→`ΰ`, `ﬅ`→`ﬆ`).
/// This agrees with the equivalence classes of Unicode 14's simple folding for every char
/// (checked once against Python's `str.casefold`); chars std knows but that table did not are
/// folded by the same rule.
///
/// # Examples
///
/// ```
/// use editor_core::search::fold_char;
///
/// assert_eq!(fold_char('K'), fold_char('k'));
/// assert_eq!(fold_char('\u{212A}'), fold_char('k')); // Kelvin sign
/// assert_eq!(fold_char('Σ'), fold_char('ς'));
/// assert_eq!(fold_char('İ'), 'İ'); // Turkic: folds only under Turkic rules
/// assert_eq!(fold_char('7'), '7');
/// ```
pub fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    match c {
        '\u{130}' | '\u{131}' => return c,
        '\u{1FD3}' => return '\u{390}',
        '\u{1FE3}' => return '\u{3B0}',
        '\u{FB05}' => return '\u{FB06}',
        _ => {}
    }
    let upper = single(c.to_uppercase()).unwrap_or(c);
    single(upper.to_lowercase())
        .or_else(|| single(c.to_lowercase()))
        .unwrap_or(c)
}

fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
    let c = it.next()?;
    it.next().is_none().then_some(c)
}

/// How common a byte is in typical text and code (higher = more common); the case-insensitive
/// skip looks for the pattern's least common leading byte so it stops rarely.
fn byte_rank(b: u8) -> u8 {
    match b {
        b' ' => 255,
        b'e' => 250,
        b't' | b'a' | b'o' => 245,
        b'i' | b'n' | b's' | b'r' | b'h' => 240,
        b'l' | b'd' | b'c' | b'u' | b'\n' => 230,
        b'm' | b'f' | b'p' | b'g' | b'w' | b'y' | b'b' | b',' | b'.' => 220,
        b'v' | b'k' | b'_' | b'(' | b')' | b';' | b'=' | b'"' | b'\'' | b'\t' | b'-' | b'/'
        | b':' => 200,
        b'0'..=b'9' => 190,
        b'A'..=b'Z' => 185,
        b'x' | b'j' | b'q' | b'z' => 170,
        0x80..=0xBF => 160,
        0x21..=0x7E => 150,
        0xC2..=0xF4 => 140,
        _ => 10,
    }
}

fn failure<T: PartialEq>(pat: &[T]) -> Vec<u32> {
    let mut fail = vec![0u32; pat.len()];
    let mut k = 0usize;
    for i in 1..pat.len() {
        while k > 0 && pat[i] != pat[k] {
            k = fail[k - 1] as usize;
        }
        if pat[i] == pat[k] {
            k += 1;
        }
        fail[i] = k as u32;
    }
    fail
}

/// One KMP transition from state `q` (< pattern length) on `x`.
#[inline(always)]
fn step<T: PartialEq + Copy>(pat: &[T], fail: &[u32], mut q: usize, x: T) -> usize {
    loop {
        if pat[q] == x {
            return q + 1;
        }
        if q == 0 {
            return 0;
        }
        q = fail[q - 1] as usize;
    }
}

#[inline]
fn count_chars(s: &str) -> usize {
    s.chars().count()
}

impl Exact {
    fn new(pattern: &str) -> Self {
        let pat = pattern.as_bytes().to_vec();
        Exact {
            fail: failure(&pat),
            prefilter: Prefilter::new(&pat),
            pat,
        }
    }

    /// The first position at or after `j` where an occurrence may start, given that the automaton
    /// is in its start state at `j` (no partial match pending): every position the prefilter
    /// passes over lacks one of the pattern's bytes at its offset, so restarting the automaton at
    /// the returned position reports the same matches as stepping byte by byte. Positions whose
    /// pair bytes would lie past the chunk's end are left to normal stepping.
    #[inline]
    fn skip(&self, bytes: &[u8], j: usize) -> usize {
        let rest = &bytes[j..];
        match &self.prefilter {
            Prefilter::Byte(b) => memchr::memchr(*b, rest).map_or(bytes.len(), |k| j + k),
            #[cfg(target_arch = "x86_64")]
            Prefilter::Avx2(f, g) => {
                let found = if rest.len() < f.min_haystack_len() {
                    g.find_prefilter(rest)
                } else {
                    f.find_prefilter(rest)
                };
                found.map_or_else(|| pair_tail(bytes, j, g.pair()), |k| j + k)
            }
            #[cfg(target_arch = "x86_64")]
            Prefilter::Sse2(f, g) => {
                let found = if rest.len() < f.min_haystack_len() {
                    g.find_prefilter(rest)
                } else {
                    f.find_prefilter(rest)
                };
                found.map_or_else(|| pair_tail(bytes, j, g.pair()), |k| j + k)
            }
            Prefilter::Generic(g) => g
                .find_prefilter(rest)
                .map_or_else(|| pair_tail(bytes, j, g.pair()), |k| j + k),
        }
    }
}

/// Where to resume stepping when a pair prefilter found nothing: the first position whose pair
/// bytes do not both lie inside the chunk.
#[inline]
fn pair_tail(bytes: &[u8], j: usize, pair: &memchr::arch::all::packedpair::Pair) -> usize {
    let reach = usize::from(pair.index1().max(pair.index2()));
    bytes.len().saturating_sub(reach).max(j)
}

impl Prefilter {
    fn new(pat: &[u8]) -> Self {
        use memchr::arch::all::packedpair::{Finder, Pair};
        let Some(pair) = Pair::new(pat) else {
            return Prefilter::Byte(pat[0]);
        };
        let Some(generic) = Finder::with_pair(pat, pair) else {
            return Prefilter::Byte(pat[0]);
        };
        #[cfg(target_arch = "x86_64")]
        {
            use memchr::arch::x86_64::{avx2, sse2};
            if let Some(f) = avx2::packedpair::Finder::with_pair(pat, pair) {
                return Prefilter::Avx2(f, generic);
            }
            if let Some(f) = sse2::packedpair::Finder::with_pair(pat, pair) {
                return Prefilter::Sse2(f, generic);
            }
        }
        Prefilter::Generic(generic)
    }
}

impl Folded {
    fn new(pattern: &str) -> Self {
        let pat: Vec<char> = pattern.chars().map(fold_char).collect();
        // Chars whose case variants are all single ASCII bytes: a prefix of them fixes byte offsets.
        let fixed = |c: char| c.is_ascii() && c != 'k' && c != 's';
        let prefix = pat.iter().take_while(|&&c| fixed(c)).count();
        let rank = |i: &usize| (byte_rank(pat[*i] as u8), *i);
        let skip = (0..prefix).min_by_key(rank).map(|i| {
            let b = pat[i] as u8;
            let upper = b.to_ascii_uppercase();
            let second = (0..prefix)
                .filter(|&k| pat[k] != pat[i])
                .min_by_key(rank)
                .map(|k| (k, pat[k] as u8));
            FoldSkip {
                at: i,
                needles: [b, upper],
                count: if upper == b { 1 } else { 2 },
                second,
            }
        });
        Folded {
            fail: failure(&pat),
            pat,
            skip,
        }
    }
}

impl FoldSkip {
    /// Like [`Exact::skip`], for the folded automaton; returns a char boundary.
    #[inline]
    fn skip(&self, bytes: &[u8], j: usize) -> usize {
        let n = bytes.len();
        let mut from = j + self.at;
        let s = loop {
            if from >= n {
                // Occurrences starting from here on have their skip byte in a later chunk.
                break from - self.at;
            }
            let hit = if self.count == 1 {
                memchr::memchr(self.needles[0], &bytes[from..])
            } else {
                memchr::memchr2(self.needles[0], self.needles[1], &bytes[from..])
            };
            let Some(k) = hit else { break n - self.at };
            let s = from + k - self.at;
            if let Some((at2, b2)) = self.second {
                if s + at2 < n && bytes[s + at2].to_ascii_lowercase() != b2 {
                    from += k + 1;
                    continue;
                }
            }
            break s;
        };
        // Candidates start on char boundaries; a continuation byte here cannot start a match.
        let mut s = s;
        while s < n && (bytes[s] & 0xC0) == 0x80 {
            s += 1;
        }
        s
    }
}

impl Searcher {
    /// Compiles `query`.
    pub fn new(query: Query) -> Self {
        let engine = if query.pattern.is_empty() {
            Engine::Empty
        } else if query.case_insensitive {
            Engine::Folded(Folded::new(&query.pattern))
        } else {
            Engine::Exact(Exact::new(&query.pattern))
        };
        let pattern_chars = query.pattern.chars().count();
        Searcher {
            query,
            engine,
            pattern_chars,
        }
    }

    /// The query this searcher was compiled from.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// The first match that starts at or after char `from`. Calling it again from the previous
    /// match's end walks the same matches as [`find_all`](Self::find_all).
    pub fn find_next<B: TextBuffer>(
        &self,
        buf: &B,
        from: usize,
    ) -> Result<Option<Match>, PosError> {
        let len = buf.len_chars();
        check_range(&(from..len), len).map_err(|_| PosError::Char { pos: from, len })?;
        Ok(self.scan(buf, from..len, false)?.next())
    }

    /// The match that ends last among those ending at or before char `before` — an editor's
    /// "find previous" from a cursor or from the start of the current match. For a
    /// self-overlapping pattern this may be an occurrence that `find_all` skips (`aa` in `aaa`
    /// is found at 1..3).
    ///
    /// Scans backwards in windows that double in size, so the cost is proportional to the
    /// distance to the match, not to `before`.
    pub fn find_prev<B: TextBuffer>(
        &self,
        buf: &B,
        before: usize,
    ) -> Result<Option<Match>, PosError> {
        let len = buf.len_chars();
        if before > len {
            return Err(PosError::Char { pos: before, len });
        }
        let m = self.pattern_chars;
        if matches!(self.engine, Engine::Empty) || m > before {
            return Ok(None);
        }
        let mut window = (16 * 1024).max(2 * m);
        let mut end = before;
        let mut lo = before.saturating_sub(window);
        loop {
            if let Some(found) = self.scan(buf, lo..end, true)?.last() {
                return Ok(Some(found));
            }
            if lo == 0 {
                return Ok(None);
            }
            // Occurrences starting before `lo` end before `lo + m`.
            end = before.min(lo + m - 1);
            window = window.saturating_mul(2);
            lo = lo.saturating_sub(window);
        }
    }

    /// All matches, left to right, computed lazily.
    pub fn find_iter<'a, B: TextBuffer>(&'a self, buf: &'a B) -> impl Iterator<Item = Match> + 'a {
        self.scan(buf, 0..buf.len_chars(), false)
            .ok()
            .into_iter()
            .flatten()
    }

    /// All matches, left to right.
    pub fn find_all<B: TextBuffer>(&self, buf: &B) -> Vec<Match> {
        self.find_iter(buf).collect()
    }

    /// The matches lying entirely inside the char range `range` (search in a selection); the
    /// chars around the range still count for whole-word checks.
    pub fn find_in<'a, B: TextBuffer>(
        &'a self,
        buf: &'a B,
        range: Range<usize>,
    ) -> Result<impl Iterator<Item = Match> + 'a, PosError> {
        self.scan(buf, range, false)
    }

    fn scan<'a, B: TextBuffer>(
        &'a self,
        buf: &'a B,
        range: Range<usize>,
        overlapping: bool,
    ) -> Result<Scan<'a, B, impl Iterator<Item = &'a str> + 'a>, PosError> {
        let chunks = buf.chunks_in(range.clone())?.peekable();
        let whole_word = self.query.whole_word;
        let before = if whole_word && range.start > 0 {
            Some(buf.char_at(range.start - 1)?)
        } else {
            None
        };
        let after = if whole_word && range.end < buf.len_chars() {
            Some(buf.char_at(range.end)?)
        } else {
            None
        };
        let range_byte = buf.char_to_byte(range.start)?;
        let ring = match &self.engine {
            Engine::Folded(p) => vec![(0, '\0'); p.pat.len() + 1],
            _ => Vec::new(),
        };
        Ok(Scan {
            searcher: self,
            buf,
            chunks,
            chunk: "",
            chunk_byte: range_byte,
            j: 0,
            char_known: true,
            counted: 0,
            char_pos: range.start,
            q: 0,
            overlapping,
            keep_recent: whole_word && matches!(self.engine, Engine::Exact(_)),
            range_byte,
            range_char: range.start,
            before,
            after,
            prev_last: before,
            recent: VecDeque::new(),
            ring,
            done: false,
        })
    }
}

/// The streaming state of one search: the KMP state `q` plus enough context to report positions
/// and check word boundaries when a match spans chunks.
struct Scan<'a, B, I: Iterator<Item = &'a str>> {
    searcher: &'a Searcher,
    buf: &'a B,
    chunks: Peekable<I>,
    chunk: &'a str,
    /// Absolute byte offset of `chunk`.
    chunk_byte: usize,
    /// Next byte of `chunk` to read.
    j: usize,
    /// Whether `char_pos` is known. Byte search counts chars only in chunks that hold a match
    /// (and asks the buffer for the char index of such a chunk's start when the chunk before it
    /// was skipped without counting), so a sparse search does not count 100 MB of chars.
    char_known: bool,
    /// Bytes of `chunk` whose chars are included in `char_pos`.
    counted: usize,
    /// Absolute char index of `chunk[counted..]`.
    char_pos: usize,
    q: usize,
    overlapping: bool,
    /// Whether to keep `recent` (whole-word search on bytes).
    keep_recent: bool,
    range_byte: usize,
    range_char: usize,
    /// The chars just outside the scanned range (only looked up for whole-word search).
    before: Option<char>,
    after: Option<char>,
    /// The last char before `chunk`.
    prev_last: Option<char>,
    /// Earlier chunks reaching back at least a pattern length, to find the char before a match
    /// that started several chunks ago.
    recent: VecDeque<(&'a str, usize)>,
    /// Folded search: `(byte offset, char)` of the last `m + 1` chars, by char index mod `m + 1`.
    ring: Vec<(usize, char)>,
    done: bool,
}

impl<'a, B: TextBuffer, I: Iterator<Item = &'a str>> Scan<'a, B, I> {
    fn next_chunk(&mut self) -> bool {
        let Some(next) = self.chunks.next() else {
            return false;
        };
        if !self.chunk.is_empty() {
            if self.char_known && self.counted > 0 {
                self.char_pos += count_chars(&self.chunk[self.counted..]);
            } else {
                self.char_known = false;
            }
            self.prev_last = self.chunk.chars().next_back();
            if self.keep_recent {
                self.recent.push_back((self.chunk, self.chunk_byte));
            }
            self.chunk_byte += self.chunk.len();
            let keep_from = self
                .chunk_byte
                .saturating_sub(self.searcher.query.pattern.len() + 4);
            while self
                .recent
                .front()
                .is_some_and(|&(c, b)| b + c.len() < keep_from)
            {
                self.recent.pop_front();
            }
        }
        self.chunk = next;
        self.j = 0;
        self.counted = 0;
        true
    }

    /// The char after the byte `j` of the current chunk, looking into the next chunk if needed.
    fn char_at_or_after(&mut self, j: usize) -> Option<char> {
        if j < self.chunk.len() {
            return self.chunk[j..].chars().next();
        }
        match self.chunks.peek() {
            Some(next) => next.chars().next(),
            None => self.after,
        }
    }

    /// The char before absolute byte `b`, which is at most a pattern length before `chunk`.
    fn char_before_byte(&self, b: usize) -> Option<char> {
        if b == self.range_byte {
            return self.before;
        }
        if b > self.chunk_byte {
            return self.chunk[..b - self.chunk_byte].chars().next_back();
        }
        if b == self.chunk_byte {
            return self.prev_last;
        }
        let &(c, cb) = self.recent.iter().rev().find(|&&(_, cb)| cb < b)?;
        c[..b - cb].chars().next_back()
    }

    fn scan_exact(&mut self, p: &Exact) -> Option<Match> {
        let bytes = self.chunk.as_bytes();
        let n = bytes.len();
        let m = p.pat.len();
        let mut j = self.j;
        let mut q = self.q;
        while j < n {
            if q == 0 {
                j = p.skip(bytes, j);
                if j >= n {
                    break;
                }
            }
            q = step(&p.pat, &p.fail, q, bytes[j]);
            j += 1;
            if q == m {
                let end_byte = self.chunk_byte + j;
                let start_byte = end_byte - m;
                let ok = !self.searcher.query.whole_word
                    || (!self.char_before_byte(start_byte).is_some_and(is_word_char)
                        && !self.char_at_or_after(j).is_some_and(is_word_char));
                if ok {
                    if !self.char_known {
                        self.char_pos = self
                            .buf
                            .byte_to_char(self.chunk_byte)
                            .expect("chunks start on char boundaries");
                        self.counted = 0;
                        self.char_known = true;
                    }
                    self.char_pos += count_chars(&self.chunk[self.counted..j]);
                    self.counted = j;
                    self.j = j;
                    self.q = if self.overlapping {
                        p.fail[m - 1] as usize
                    } else {
                        0
                    };
                    let end_char = self.char_pos;
                    return Some(Match {
                        chars: end_char - self.searcher.pattern_chars..end_char,
                        bytes: start_byte..end_byte,
                    });
                }
                q = p.fail[m - 1] as usize;
            }
        }
        self.j = n;
        self.q = q;
        None
    }

    fn scan_folded(&mut self, p: &Folded) -> Option<Match> {
        let chunk = self.chunk;
        let bytes = chunk.as_bytes();
        let n = bytes.len();
        let m = p.pat.len();
        let ring_len = m + 1;
        let mut j = self.j;
        let mut q = self.q;
        let mut char_pos = self.char_pos;
        while j < n {
            if q == 0 {
                if let Some(skip) = &p.skip {
                    let s = skip.skip(bytes, j);
                    if s > j {
                        char_pos += count_chars(&chunk[j..s]);
                        let prev = chunk[..s].chars().next_back().expect("s > 0");
                        self.ring[(char_pos - 1) % ring_len] = (0, prev);
                        j = s;
                        if j >= n {
                            break;
                        }
                    }
                }
            }
            let b = bytes[j];
            let (c, len) = if b < 0x80 {
                (b as char, 1)
            } else {
                let c = chunk[j..].chars().next().expect("j < n is a char boundary");
                (c, c.len_utf8())
            };
            self.ring[char_pos % ring_len] = (self.chunk_byte + j, c);
            q = step(&p.pat, &p.fail, q, fold_char(c));
            j += len;
            char_pos += 1;
            if q == m {
                let start_char = char_pos - m;
                let ok = !self.searcher.query.whole_word || {
                    let prev = if start_char == self.range_char {
                        self.before
                    } else {
                        Some(self.ring[(start_char - 1) % ring_len].1)
                    };
                    !prev.is_some_and(is_word_char)
                        && !self.char_at_or_after(j).is_some_and(is_word_char)
                };
                if ok {
                    self.j = j;
                    self.counted = j;
                    self.char_pos = char_pos;
                    self.q = if self.overlapping {
                        p.fail[m - 1] as usize
                    } else {
                        0
                    };
                    return Some(Match {
                        chars: start_char..char_pos,
                        bytes: self.ring[start_char % ring_len].0..self.chunk_byte + j,
                    });
                }
                q = p.fail[m - 1] as usize;
            }
        }
        self.j = n;
        self.counted = n;
        self.char_pos = char_pos;
        self.q = q;
        None
    }
}

impl<'a, B: TextBuffer, I: Iterator<Item = &'a str>> Iterator for Scan<'a, B, I> {
    type Item = Match;

    fn next(&mut self) -> Option<Match> {
        let searcher = self.searcher;
        while !self.done {
            if self.j >= self.chunk.len() && !self.next_chunk() {
                break;
            }
            let found = match &searcher.engine {
                Engine::Empty => break,
                Engine::Exact(p) => self.scan_exact(p),
                Engine::Folded(p) => self.scan_folded(p),
            };
            if found.is_some() {
                return found;
            }
        }
        self.done = true;
        None
    }
}

/// Replaces every match of `searcher` by `replacement`, last match first so earlier positions
/// stay valid, and records the whole change as one undo step. Returns the number of matches
/// replaced.
///
/// # Examples
///
/// ```
/// use editor_core::search::{replace_all, Query};
/// use editor_core::undo::History;
/// use editor_core::{GapBuffer, TextBuffer};
///
/// let mut buf = GapBuffer::from_text("let x = x + x_1;");
/// let mut history = History::new();
/// let s = Query::new("x").whole_word(true).compile();
/// assert_eq!(replace_all(&mut buf, &s, "total", &mut history).unwrap(), 2);
/// assert_eq!(buf.to_text(), "let total = total + x_1;");
/// // One undo step takes back every replacement.
/// history.undo(&mut buf).unwrap();
/// assert_eq!(buf.to_text(), "let x = x + x_1;");
/// ```
pub fn replace_all<B: TextBuffer>(
    buf: &mut B,
    searcher: &Searcher,
    replacement: &str,
    history: &mut History,
) -> Result<usize, PosError> {
    replace_all_with(buf, searcher, replacement, history, |b, range, text| {
        b.replace(range, text)
    })
}

/// [`replace_all`], with each replacement made by `apply` (e.g. through
/// [`WordIndex::apply_edit`](crate::trie::WordIndex::apply_edit) so autocomplete follows). If
/// `apply` fails, the replacements made so far stay applied and recorded as one step, and the
/// error is returned.
///
/// # Examples
///
/// ```
/// use editor_core::search::{replace_all_with, Query};
/// use editor_core::trie::WordIndex;
/// use editor_core::undo::History;
/// use editor_core::{GapBuffer, TextBuffer};
///
/// let mut buf = GapBuffer::from_text("colour, colours");
/// let mut index = WordIndex::build(&buf);
/// let mut history = History::new();
/// let s = Query::new("colour").compile();
/// let n = replace_all_with(&mut buf, &s, "color", &mut history, |b, range, text| {
///     index.apply_edit(b, range, text)
/// })
/// .unwrap();
/// assert_eq!((n, buf.to_text().as_str()), (2, "color, colors"));
/// // Autocomplete followed every replacement.
/// assert_eq!((index.count("colour"), index.count("color")), (0, 1));
/// ```
pub fn replace_all_with<B, F>(
    buf: &mut B,
    searcher: &Searcher,
    replacement: &str,
    history: &mut History,
    mut apply: F,
) -> Result<usize, PosError>
where
    B: TextBuffer,
    F: FnMut(&mut B, Range<usize>, &str) -> Result<(), PosError>,
{
    let matches = searcher.find_all(buf);
    if matches.is_empty() {
        return Ok(0);
    }
    history.begin_group();
    let mut result = Ok(matches.len());
    for m in matches.iter().rev() {
        let step = buf.slice(m.chars.clone()).and_then(|deleted| {
            apply(buf, m.chars.clone(), replacement)?;
            Ok(deleted)
        });
        match step {
            Ok(deleted) => history.record(Edit {
                pos: m.chars.start,
                deleted,
                inserted: replacement.to_string(),
            }),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    history.end_group();
    result
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testing::ChunkyBuffer;
    use crate::{GapBuffer, RopeBuffer};

    /// Brute-force model: char positions of the non-overlapping, leftmost acceptable matches.
    fn model(text: &str, q: &Query) -> Vec<Range<usize>> {
        let t: Vec<char> = text.chars().collect();
        let p: Vec<char> = q.pattern.chars().collect();
        let mut out = Vec::new();
        if p.is_empty() {
            return out;
        }
        let eq = |a: char, b: char| {
            if q.case_insensitive {
                fold_char(a) == fold_char(b)
            } else {
                a == b
            }
        };
        let mut i = 0;
        while i + p.len() <= t.len() {
            let hit = (0..p.len()).all(|k| eq(t[i + k], p[k]));
            let word_ok = !q.whole_word
                || ((i == 0 || !is_word_char(t[i - 1]))
                    && t.get(i + p.len()).is_none_or(|&c| !is_word_char(c)));
            if hit && word_ok {
                out.push(i..i + p.len());
                i += p.len();
            } else {
                i += 1;
            }
        }
        out
    }

    fn spans(ms: impl IntoIterator<Item = Match>) -> Vec<(usize, usize)> {
        ms.into_iter()
            .map(|m| (m.chars.start, m.chars.end))
            .collect()
    }

    fn char_to_byte(text: &str, c: usize) -> usize {
        text.char_indices().nth(c).map_or(text.len(), |(b, _)| b)
    }

    fn check_all<B: TextBuffer>(buf: &B, text: &str, q: &Query) -> Result<(), TestCaseError> {
        let s = q.clone().compile();
        let found = s.find_all(buf);
        let expect = model(text, q);
        let chars: Vec<Range<usize>> = found.iter().map(|m| m.chars.clone()).collect();
        prop_assert_eq!(&chars, &expect, "{} {:?} in {:?}", B::NAME, q, text);
        for m in &found {
            prop_assert_eq!(m.bytes.start, char_to_byte(text, m.chars.start));
            prop_assert_eq!(m.bytes.end, char_to_byte(text, m.chars.end));
        }
        if !q.case_insensitive && !q.whole_word && !q.pattern.is_empty() {
            let std: Vec<Range<usize>> = text
                .match_indices(&q.pattern)
                .map(|(b, p)| b..b + p.len())
                .collect();
            let bytes: Vec<Range<usize>> = found.iter().map(|m| m.bytes.clone()).collect();
            prop_assert_eq!(bytes, std);
        }
        // find_next from every position agrees with the model's leftmost acceptable match.
        let len = buf.len_chars();
        for from in 0..=len {
            let next = s.find_next(buf, from).unwrap().map(|m| m.chars);
            let want = model_from(text, q, from);
            prop_assert_eq!(next, want, "find_next({}) of {:?} in {:?}", from, q, text);
        }
        // find_prev: the acceptable occurrence (overlaps allowed) that ends last, at or before `before`.
        for before in 0..=len {
            let prev = s.find_prev(buf, before).unwrap().map(|m| m.chars);
            let want = occurrences(text, q).into_iter().rfind(|r| r.end <= before);
            prop_assert_eq!(prev, want, "find_prev({}) of {:?} in {:?}", before, q, text);
        }
        Ok(())
    }

    /// The model's first acceptable match starting at or after `from`.
    fn model_from(text: &str, q: &Query, from: usize) -> Option<Range<usize>> {
        occurrences(text, q).into_iter().find(|r| r.start >= from)
    }

    /// Every acceptable occurrence, overlaps included.
    fn occurrences(text: &str, q: &Query) -> Vec<Range<usize>> {
        let t: Vec<char> = text.chars().collect();
        let p: Vec<char> = q.pattern.chars().collect();
        if p.is_empty() {
            return Vec::new();
        }
        let eq = |a: char, b: char| {
            if q.case_insensitive {
                fold_char(a) == fold_char(b)
            } else {
                a == b
            }
        };
        (0..(t.len() + 1).saturating_sub(p.len()))
            .filter(|&i| {
                (0..p.len()).all(|k| eq(t[i + k], p[k]))
                    && (!q.whole_word
                        || ((i == 0 || !is_word_char(t[i - 1]))
                            && t.get(i + p.len()).is_none_or(|&c| !is_word_char(c))))
            })
            .map(|i| i..i + p.len())
            .collect()
    }

    #[test]
    fn basics() {
        let buf = RopeBuffer::from_text("abcabcab abc");
        let s = Query::new("abc").compile();
        let all: Vec<_> = s.find_all(&buf).into_iter().map(|m| m.chars).collect();
        assert_eq!(all, [0..3, 3..6, 9..12]);
        assert_eq!(s.find_next(&buf, 1).unwrap().unwrap().chars, 3..6);
        assert_eq!(s.find_prev(&buf, 9).unwrap().unwrap().chars, 3..6);
        assert_eq!(s.find_prev(&buf, 2).unwrap(), None);
        assert!(s.find_next(&buf, 13).is_err());
        assert!(s.find_prev(&buf, 13).is_err());
        let ww = Query::new("abc").whole_word(true).compile();
        assert_eq!(spans(ww.find_all(&buf)), [(9, 12)]);
        assert!(Query::new("").compile().find_all(&buf).is_empty());
        assert_eq!(Query::new("").compile().find_next(&buf, 0).unwrap(), None);
    }

    #[test]
    fn overlapping_patterns_follow_match_indices() {
        let buf = GapBuffer::from_text("aaaaa");
        let s = Query::new("aa").compile();
        assert_eq!(
            s.find_all(&buf)
                .into_iter()
                .map(|m| m.chars)
                .collect::<Vec<_>>(),
            [0..2, 2..4]
        );
        assert_eq!(s.find_prev(&buf, 5).unwrap().unwrap().chars, 3..5);
    }

    #[test]
    fn case_folding() {
        assert_eq!(fold_char('K'), 'k');
        assert_eq!(fold_char('\u{212A}'), 'k'); // Kelvin sign
        assert_eq!(fold_char('ſ'), 's');
        assert_eq!(fold_char('Σ'), fold_char('ς'));
        assert_eq!(fold_char('ẞ'), 'ß');
        assert_ne!(fold_char('İ'), fold_char('i'));
        assert_ne!(fold_char('ı'), fold_char('i'));
        let buf = RopeBuffer::from_text("Straße STRASSE ΣΊΣΥΦΟΣ σίσυφος");
        let q = |p: &str| Query::new(p).case_insensitive(true).compile();
        assert_eq!(q("straße").find_all(&buf).len(), 1);
        assert_eq!(q("ss").find_all(&buf).len(), 1);
        assert_eq!(q("σίσυφοσ").find_all(&buf).len(), 2);
        // Kelvin sign (3 bytes) matched by ASCII 'k': byte and char ranges differ in length.
        let buf = RopeBuffer::from_text("x\u{212A}ey KEY");
        let m = q("key").find_all(&buf);
        assert_eq!(
            m[0],
            Match {
                chars: 1..4,
                bytes: 1..6
            }
        );
        assert_eq!(
            m[1],
            Match {
                chars: 5..8,
                bytes: 7..10
            }
        );
    }

    /// The fast path assumes only U+017F and U+212A fold to ASCII from outside it.
    #[test]
    fn only_two_non_ascii_chars_fold_to_ascii() {
        let odd: Vec<char> = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|c| !c.is_ascii() && fold_char(*c).is_ascii())
            .collect();
        assert_eq!(odd, ['\u{17F}', '\u{212A}']);
    }

    #[test]
    fn whole_word_takes_the_first_acceptable_candidate() {
        let buf = RopeBuffer::from_text("xa-a-a");
        let s = Query::new("a-a").whole_word(true).compile();
        assert_eq!(spans(s.find_all(&buf)), [(3, 6)]);
        // Context outside a searched range still counts.
        let buf = RopeBuffer::from_text("foo_bar bar");
        let s = Query::new("bar").whole_word(true).compile();
        assert_eq!(spans(s.find_in(&buf, 4..11).unwrap()), [(8, 11)]);
        assert_eq!(s.find_next(&buf, 4).unwrap().unwrap().chars, 8..11);
    }

    #[test]
    fn matches_spanning_tiny_chunks() {
        let text = "héllo wörld 🎉🎉 héllo_wörld héllo";
        for max in 1..6 {
            for seed in 0..8 {
                let buf = ChunkyBuffer::with_chunking(text, max, seed);
                for q in [
                    Query::new("héllo"),
                    Query::new("🎉🎉 h"),
                    Query::new("HÉLLO").case_insensitive(true),
                    Query::new("héllo").whole_word(true),
                    Query::new("wörld").whole_word(true),
                    Query::new("WÖRLD").case_insensitive(true).whole_word(true),
                ] {
                    check_all(&buf, text, &q).unwrap();
                }
            }
        }
    }

    #[test]
    fn large_rope_and_far_find_prev() {
        let mut text = "lorem ipsum dolor sit amet ".repeat(4000);
        text.insert_str(37, "needle");
        text.push_str("néédle");
        let rope = RopeBuffer::from_text(&text);
        let gap = GapBuffer::from_text(&text);
        for q in [
            Query::new("needle"),
            Query::new("NÉÉDLE").case_insensitive(true),
            Query::new("amet l"),
        ] {
            let s = q.clone().compile();
            let expect = model(&text, &q);
            let got: Vec<_> = s.find_all(&rope).into_iter().map(|m| m.chars).collect();
            assert_eq!(got, expect);
            let got: Vec<_> = s.find_all(&gap).into_iter().map(|m| m.chars).collect();
            assert_eq!(got, expect);
        }
        let s = Query::new("needle").compile();
        let len = rope.len_chars();
        assert_eq!(s.find_prev(&rope, len).unwrap().unwrap().chars, 37..43);
        assert_eq!(s.find_prev(&gap, len).unwrap().unwrap().chars, 37..43);
    }

    #[test]
    fn replace_all_is_one_undo_step() {
        let mut buf = GapBuffer::from_text("one fish two fish red fish");
        let mut h = History::new();
        h.apply(&mut buf, 0..0, ">").unwrap();
        let s = Query::new("FISH").case_insensitive(true).compile();
        assert_eq!(replace_all(&mut buf, &s, "🐟", &mut h).unwrap(), 3);
        assert_eq!(buf.to_text(), ">one 🐟 two 🐟 red 🐟");
        assert_eq!(replace_all(&mut buf, &s, "x", &mut h).unwrap(), 0);
        h.undo(&mut buf).unwrap();
        assert_eq!(buf.to_text(), ">one fish two fish red fish");
        h.redo(&mut buf).unwrap();
        assert_eq!(buf.to_text(), ">one 🐟 two 🐟 red 🐟");
        h.undo(&mut buf).unwrap();
        h.undo(&mut buf).unwrap();
        assert_eq!(buf.to_text(), "one fish two fish red fish");
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("a"),
                Just("b"),
                Just("A"),
                Just(" "),
                Just("_"),
                Just("é"),
                Just("É"),
                Just("ß"),
                Just("k"),
                Just("\u{212A}"),
                Just("🎉"),
                Just("日"),
                Just("-"),
            ],
            0..40,
        )
        .prop_map(|v| v.concat())
    }

    fn pattern_strategy() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("a"),
                Just("b"),
                Just("A"),
                Just(" "),
                Just("é"),
                Just("É"),
                Just("K"),
                Just("🎉"),
                Just("-")
            ],
            0..4,
        )
        .prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(160))]

        #[test]
        fn agrees_with_models(
            text in text_strategy(),
            pattern in pattern_strategy(),
            ci in any::<bool>(),
            ww in any::<bool>(),
            max_chunk in 1usize..6,
            seed in any::<u64>(),
        ) {
            let q = Query { pattern, case_insensitive: ci, whole_word: ww };
            check_all(&ChunkyBuffer::with_chunking(&text, max_chunk, seed), &text, &q)?;
            check_all(&RopeBuffer::from_text(&text), &text, &q)?;
            check_all(&GapBuffer::from_text(&text), &text, &q)?;
        }

        #[test]
        fn long_texts_with_large_chunks(
            pieces in proptest::collection::vec(
                prop_oneof![Just("ab"), Just("ba"), Just("abab"), Just(" "), Just("é"), Just("x"), Just("🎉"), Just("A")],
                100..600,
            ),
            pattern in prop_oneof![Just("abab"), Just("ab é"), Just("🎉ab"), Just("babab"), Just("x"), Just("a a"), Just("éx")],
            ci in any::<bool>(),
            ww in any::<bool>(),
            max_chunk in 16usize..200,
            seed in any::<u64>(),
            probes in proptest::collection::vec(any::<usize>(), 8),
        ) {
            let text = pieces.concat();
            let q = Query { pattern: pattern.to_string(), case_insensitive: ci, whole_word: ww };
            let s = q.clone().compile();
            let len = text.chars().count();
            let (all, occ) = (model(&text, &q), occurrences(&text, &q));
            for max in [max_chunk, 1000] {
                let buf = ChunkyBuffer::with_chunking(&text, max, seed);
                let got: Vec<Range<usize>> = s.find_all(&buf).into_iter().map(|m| m.chars).collect();
                prop_assert_eq!(&got, &all);
                for p in probes.iter().map(|p| p % (len + 1)) {
                    let next = occ.iter().find(|r| r.start >= p).cloned();
                    prop_assert_eq!(s.find_next(&buf, p).unwrap().map(|m| m.chars), next);
                    let prev = occ.iter().rfind(|r| r.end <= p).cloned();
                    prop_assert_eq!(s.find_prev(&buf, p).unwrap().map(|m| m.chars), prev);
                }
            }
            if !ci && !ww {
                let rope = RopeBuffer::from_text(&text);
                let got: Vec<Range<usize>> = s.find_all(&rope).into_iter().map(|m| m.bytes).collect();
                let want: Vec<Range<usize>> = text.match_indices(pattern).map(|(b, p)| b..b + p.len()).collect();
                prop_assert_eq!(got, want);
            }
        }

        #[test]
        fn pattern_taken_from_the_text(
            text in text_strategy(),
            a in any::<usize>(),
            len in 1usize..6,
            max_chunk in 1usize..4,
            seed in any::<u64>(),
        ) {
            let chars: Vec<char> = text.chars().collect();
            prop_assume!(!chars.is_empty());
            let start = a % chars.len();
            let pattern: String = chars[start..(start + len).min(chars.len())].iter().collect();
            let buf = ChunkyBuffer::with_chunking(&text, max_chunk, seed);
            for (ci, ww) in [(false, false), (true, false), (false, true), (true, true)] {
                check_all(&buf, &text, &Query { pattern: pattern.clone(), case_insensitive: ci, whole_word: ww })?;
            }
        }
    }
}
