//! The search bar (Ctrl-F): incremental find with editor-core's KMP [`Searcher`], next and
//! previous with wrap-around, a case toggle, replace and replace-all. [`SearchBar`] is its state;
//! a key changes the bar and returns a [`SearchAction`] for the editor to apply (the editor
//! makes the replacements: it owns the text, the undo history and the replica).
//!
//! Nothing here keeps a list of all matches: the view asks for the matches inside the rows it
//! draws ([`SearchBar::matches_in`]), and the "3 of 12" counter walks the matches once per query
//! or text change, stopping at [`COUNT_LIMIT`] — a one-letter query over 100 MB would otherwise
//! make millions of them.
//!
//! Big texts: the counter of a text over [`COUNT_NOW_BYTES`] waits until typing pauses for
//! [`COUNT_DELAY`] (a rare word means a walk over the whole text), and a query that extends one
//! without a match is known to have none without searching (every occurrence of the longer
//! query would be one of the shorter) — also after backspacing back to it.

use std::ops::Range;
use std::time::{Duration, Instant};

use crossterm::event::KeyEvent;
use editor_core::search::{Query, Searcher};
use editor_core::{GapBuffer, TextBuffer};

use crate::keymap::{self, FieldKey};

/// The counter stops here and shows "10000+".
pub const COUNT_LIMIT: usize = 10_000;
/// Texts up to this size are counted at once.
pub const COUNT_NOW_BYTES: usize = 8 << 20;
/// Bigger ones once the query has not changed for this long.
pub const COUNT_DELAY: Duration = Duration::from_millis(300);

/// Which input field has the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Find,
    Replace,
}

/// The open search bar.
pub struct SearchBar {
    pub query: String,
    /// The replacement, once Ctrl-R showed its field.
    pub replacement: Option<String>,
    pub focus: Field,
    pub case_sensitive: bool,
    searcher: Searcher,
    /// Where the search started: typing searches forward from here.
    origin: usize,
    /// The match the cursor is on.
    pub current: Option<Range<usize>>,
    /// `(index of current, total)`, computed when asked after a change.
    count: Option<(Option<usize>, usize)>,
    /// When the query, the current match or the text last changed.
    changed_at: Instant,
    /// A query known to have no match in the text as it is, with the current case setting.
    no_match: Option<String>,
}

impl SearchBar {
    /// A search starting at char `origin`, prefilled with `query` (the selection, if any).
    pub fn new(origin: usize, query: String) -> SearchBar {
        let mut bar = SearchBar {
            query,
            replacement: None,
            focus: Field::Find,
            case_sensitive: false,
            searcher: Searcher::new(Query::default()),
            origin,
            current: None,
            count: None,
            changed_at: Instant::now(),
            no_match: None,
        };
        bar.compile();
        bar
    }

    fn compile(&mut self) {
        self.searcher = Query::new(self.query.clone())
            .case_insensitive(!self.case_sensitive)
            .compile();
        self.invalidate();
    }

    fn invalidate(&mut self) {
        self.count = None;
        self.changed_at = Instant::now();
    }

    /// Types `c` into the query and searches again.
    pub fn push(&mut self, c: char, buf: &GapBuffer) {
        self.query.push(c);
        self.refresh(buf);
    }

    /// Deletes the query's last char and searches again.
    pub fn pop(&mut self, buf: &GapBuffer) {
        self.query.pop();
        self.refresh(buf);
    }

    pub fn searcher(&self) -> &Searcher {
        &self.searcher
    }

    /// The query changed: find its first match at or after the origin, wrapping around.
    pub fn refresh(&mut self, buf: &GapBuffer) {
        self.compile();
        let known_absent = self
            .no_match
            .as_deref()
            .is_some_and(|q| self.query.starts_with(q));
        if known_absent {
            self.current = None;
            self.count = Some((None, 0));
            return;
        }
        self.current = self.first_from(buf, self.origin);
        if self.current.is_none() && !self.query.is_empty() {
            self.no_match = Some(self.query.clone());
        }
    }

    pub fn toggle_case(&mut self, buf: &GapBuffer) {
        self.case_sensitive = !self.case_sensitive;
        self.no_match = None;
        if let Some(c) = &self.current {
            self.origin = c.start;
        }
        self.refresh(buf);
    }

    fn first_from(&self, buf: &GapBuffer, from: usize) -> Option<Range<usize>> {
        let from = from.min(buf.len_chars());
        let found = self.searcher.find_next(buf, from).ok().flatten();
        let found = found.or_else(|| self.searcher.find_next(buf, 0).ok().flatten());
        found.map(|m| m.chars)
    }

    /// Moves to the next match after the current one (or after `cursor`), wrapping around.
    pub fn next(&mut self, buf: &GapBuffer, cursor: usize) -> Option<Range<usize>> {
        let from = match &self.current {
            Some(c) if c.end > c.start => c.end,
            _ => cursor,
        };
        self.current = self.first_from(buf, from);
        self.invalidate();
        self.current.clone()
    }

    /// Moves to the match before the current one (or before `cursor`), wrapping around.
    pub fn prev(&mut self, buf: &GapBuffer, cursor: usize) -> Option<Range<usize>> {
        let before = self.current.as_ref().map_or(cursor, |c| c.start);
        let found = self
            .searcher
            .find_prev(buf, before.min(buf.len_chars()))
            .ok()
            .flatten()
            .or_else(|| self.searcher.find_prev(buf, buf.len_chars()).ok().flatten());
        self.current = found.map(|m| m.chars);
        self.invalidate();
        self.current.clone()
    }

    /// The current match if it still matches (the text may have changed under it).
    pub fn current_valid(&self, buf: &GapBuffer) -> Option<Range<usize>> {
        let c = self.current.clone()?;
        let m = self.searcher.find_next(buf, c.start).ok().flatten()?;
        (m.chars.start == c.start).then_some(m.chars)
    }

    /// The text changed: the counter must be recomputed; `map` moves the current match.
    pub fn text_changed(&mut self, map: impl Fn(usize) -> usize) {
        self.invalidate();
        self.no_match = None;
        if let Some(c) = &self.current {
            self.current = Some(map(c.start)..map(c.end));
        }
        self.origin = map(self.origin);
    }

    /// `(which match is current, 1-based, and how many there are)`, the total capped at
    /// [`COUNT_LIMIT`] + 1; `None` while a big text waits for a pause in typing.
    pub fn count(&mut self, buf: &GapBuffer) -> Option<(Option<usize>, usize)> {
        if self.count.is_none()
            && (buf.len_bytes() <= COUNT_NOW_BYTES || self.changed_at.elapsed() >= COUNT_DELAY)
        {
            self.count = Some(self.count_now(buf));
        }
        self.count
    }

    fn count_now(&self, buf: &GapBuffer) -> (Option<usize>, usize) {
        if self.current.is_none() {
            return (None, 0);
        }
        let mut index = None;
        let mut total = 0;
        for m in self.searcher.find_iter(buf) {
            total += 1;
            if Some(m.chars.start) == self.current.as_ref().map(|c| c.start) {
                index = Some(total);
            }
            if total > COUNT_LIMIT {
                break;
            }
        }
        (index, total)
    }

    /// The matches lying in `range` (the rows on screen).
    pub fn matches_in(&self, buf: &GapBuffer, range: Range<usize>) -> Vec<Range<usize>> {
        match self.searcher.find_in(buf, range) {
            Ok(it) => it.take(2_000).map(|m| m.chars).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// What a key in the search bar asks of the editor.
#[derive(Debug, Clone)]
pub enum SearchAction {
    /// Nothing changes outside the bar.
    None,
    /// Select this match.
    Jump(Range<usize>),
    /// The query has no match: drop the selection.
    Unselect,
    /// Replace the current match, `range`, with `with` (then [`SearchBar::replaced`]).
    Replace { range: Range<usize>, with: String },
    /// Replace every match of `searcher` with `with`, in one undo step (then
    /// [`SearchBar::replaced_all`]).
    ReplaceAll {
        searcher: Box<Searcher>,
        with: String,
    },
    /// Tell the user this.
    Info(&'static str),
    /// Close the bar.
    Close,
}

/// The keys of the bar and what they ask of the editor.
impl SearchBar {
    /// The bar Ctrl-F opens: prefilled with the selection when it is one short line, searching
    /// from the selection's start or the cursor.
    pub fn open(buf: &GapBuffer, selection: Option<Range<usize>>, cursor: usize) -> SearchBar {
        let query = selection
            .clone()
            .filter(|r| r.len() <= 200)
            .and_then(|r| buf.slice(r).ok())
            .filter(|s| !s.contains('\n'))
            .unwrap_or_default();
        let origin = selection.map_or(cursor, |r| r.start);
        let mut bar = SearchBar::new(origin, query);
        if !bar.query.is_empty() {
            bar.refresh(buf);
        }
        bar
    }

    /// Selecting the current match, if there is one.
    pub fn jump(&self) -> SearchAction {
        self.current
            .clone()
            .map_or(SearchAction::None, SearchAction::Jump)
    }

    /// What the editor shows after a key: the current match selected, or no selection when
    /// the query matches nothing.
    fn shown(&self) -> SearchAction {
        match &self.current {
            None if !self.query.is_empty() => SearchAction::Unselect,
            _ => self.jump(),
        }
    }

    /// Handles `key`; `cursor` is where Next and Prev start without a current match.
    pub fn key(&mut self, key: &KeyEvent, buf: &GapBuffer, cursor: usize) -> SearchAction {
        let Some(k) = keymap::field_key(key) else {
            return SearchAction::None;
        };
        match k {
            FieldKey::Insert(c) => match self.focus {
                Field::Find => self.push(c, buf),
                Field::Replace => self.replacement.get_or_insert_with(String::new).push(c),
            },
            FieldKey::Backspace => match self.focus {
                Field::Find => self.pop(buf),
                Field::Replace => {
                    self.replacement.get_or_insert_with(String::new).pop();
                }
            },
            FieldKey::Accept if self.focus == Field::Replace => {
                return self.replace_current(buf, cursor);
            }
            FieldKey::Accept | FieldKey::Next => {
                self.next(buf, cursor);
            }
            FieldKey::Prev => {
                self.prev(buf, cursor);
            }
            FieldKey::SwitchField => {
                if self.replacement.is_some() {
                    self.switch_field();
                }
            }
            FieldKey::ToggleCase => self.toggle_case(buf),
            FieldKey::Replace => {
                self.replacement.get_or_insert_with(String::new);
                self.switch_field();
            }
            FieldKey::ReplaceAll => {
                return match &self.replacement {
                    Some(with) => SearchAction::ReplaceAll {
                        searcher: Box::new(self.searcher.clone()),
                        with: with.clone(),
                    },
                    None => SearchAction::Info("Ctrl-R first, to type the replacement"),
                };
            }
            FieldKey::Cancel => return SearchAction::Close,
            FieldKey::Other => return SearchAction::None,
        }
        self.shown()
    }

    fn switch_field(&mut self) {
        self.focus = match self.focus {
            Field::Find => Field::Replace,
            Field::Replace => Field::Find,
        };
    }

    /// Enter in the replace field: replace the current match if it still matches, else move
    /// on to the next one.
    fn replace_current(&mut self, buf: &GapBuffer, cursor: usize) -> SearchAction {
        match self.current_valid(buf) {
            Some(range) => SearchAction::Replace {
                range,
                with: self.replacement.clone().unwrap_or_default(),
            },
            None => {
                self.next(buf, cursor);
                self.jump()
            }
        }
    }

    /// The editor replaced the current match, up to `end`: on to the next match. Returns
    /// whether there is one.
    pub fn replaced(&mut self, buf: &GapBuffer, end: usize) -> bool {
        self.current = None;
        self.next(buf, end).is_some()
    }

    /// The editor replaced every match.
    pub fn replaced_all(&mut self) {
        self.current = None;
        self.text_changed(|p| p);
    }

    /// Pasted text (its first line) goes into the focused field.
    pub fn paste(&mut self, line: &str, buf: &GapBuffer) -> SearchAction {
        match self.focus {
            Field::Find => {
                self.query.push_str(line);
                self.refresh(buf);
                self.jump()
            }
            Field::Replace => {
                self.replacement
                    .get_or_insert_with(String::new)
                    .push_str(line);
                SearchAction::None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_wraps_and_counts() {
        let buf = GapBuffer::from_text("Foo bar foo baz foo");
        let mut bar = SearchBar::new(5, "foo".into());
        bar.refresh(&buf);
        assert_eq!(bar.current, Some(8..11));
        assert_eq!(bar.count(&buf), Some((Some(2), 3)));
        assert_eq!(bar.next(&buf, 0), Some(16..19));
        assert_eq!(bar.next(&buf, 0), Some(0..3));
        assert_eq!(bar.prev(&buf, 0), Some(16..19));
        bar.toggle_case(&buf);
        assert_eq!(bar.current, Some(16..19));
        assert_eq!(bar.count(&buf), Some((Some(2), 2)));
        // Extending a query without a match needs no search.
        bar.push('x', &buf);
        assert_eq!(
            (bar.current.clone(), bar.count(&buf)),
            (None, Some((None, 0)))
        );
        bar.push('y', &buf);
        assert_eq!(bar.query, "fooxy");
        assert_eq!(bar.count(&buf), Some((None, 0)));
        bar.pop(&buf);
        bar.pop(&buf);
        assert_eq!(bar.current, Some(16..19));
        assert_eq!(bar.matches_in(&buf, 0..12), vec![8..11]);
    }

    #[test]
    fn keys_return_what_the_editor_does() {
        use crossterm::event::{KeyCode, KeyModifiers};
        let buf = GapBuffer::from_text("one two one");
        let key = |c| KeyEvent::from(KeyCode::Char(c));
        let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
        let mut bar = SearchBar::open(&buf, Some(4..7), 4);
        assert_eq!(bar.query, "two");
        assert!(matches!(bar.jump(), SearchAction::Jump(r) if r == (4..7)));
        assert!(matches!(
            bar.key(&key('x'), &buf, 0),
            SearchAction::Unselect
        ));
        assert!(matches!(
            bar.key(&KeyEvent::from(KeyCode::Backspace), &buf, 0),
            SearchAction::Jump(r) if r == (4..7)
        ));
        // Replace-all needs a replacement first.
        assert!(matches!(
            bar.key(&ctrl('a'), &buf, 0),
            SearchAction::Info(_)
        ));
        bar.key(&ctrl('r'), &buf, 0);
        assert_eq!(bar.focus, Field::Replace);
        bar.key(&key('0'), &buf, 0);
        assert!(matches!(
            bar.key(&KeyEvent::from(KeyCode::Enter), &buf, 0),
            SearchAction::Replace { range, with } if range == (4..7) && with == "0"
        ));
        assert!(matches!(bar.paste("!", &buf), SearchAction::None));
        assert_eq!(bar.replacement.as_deref(), Some("0!"));
        assert!(matches!(
            bar.key(&ctrl('a'), &buf, 0),
            SearchAction::ReplaceAll { with, .. } if with == "0!"
        ));
        assert!(matches!(
            bar.key(&KeyEvent::from(KeyCode::Esc), &buf, 0),
            SearchAction::Close
        ));
    }
}
