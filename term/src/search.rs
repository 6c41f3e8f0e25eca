//! The search bar (Ctrl-F): incremental find with editor-core's KMP [`Searcher`], next and
//! previous with wrap-around, a case toggle, replace and replace-all. [`SearchBar`] is its state;
//! the `impl App` block at the end is what its keys do to the editor (replace-all goes through
//! editor-core's `replace_all_with`, one undo step).
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
use editor_core::search::{replace_all_with, Query, Searcher};
use editor_core::undo::History;
use editor_core::{GapBuffer, TextBuffer};

use crate::app::{App, Doc, Mode};
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

/// What the search bar's keys do to the editor.
impl App {
    pub(crate) fn open_search(&mut self) {
        let sel = self.selection();
        let query = sel
            .clone()
            .filter(|r| r.len() <= 200)
            .and_then(|r| self.buf.slice(r).ok())
            .filter(|s| !s.contains('\n'))
            .unwrap_or_default();
        let origin = sel.map_or(self.caret.pos(), |r| r.start);
        let mut bar = SearchBar::new(origin, query);
        if !bar.query.is_empty() {
            bar.refresh(&self.buf);
        }
        self.popup = None;
        self.mode = Mode::Search(Box::new(bar));
        self.show_match();
    }

    /// Selects the current match.
    pub(crate) fn show_match(&mut self) {
        if let Mode::Search(bar) = &self.mode {
            if let Some(m) = &bar.current {
                self.caret.select(m.start, m.end);
            }
        }
    }

    pub(crate) fn search_key(&mut self, key: &KeyEvent) {
        let Some(k) = keymap::field_key(key) else {
            return;
        };
        let Mode::Search(bar) = &mut self.mode else {
            return;
        };
        let buf = &self.buf;
        match k {
            FieldKey::Insert(c) => match bar.focus {
                Field::Find => bar.push(c, buf),
                Field::Replace => bar.replacement.get_or_insert_with(String::new).push(c),
            },
            FieldKey::Backspace => match bar.focus {
                Field::Find => bar.pop(buf),
                Field::Replace => {
                    bar.replacement.get_or_insert_with(String::new).pop();
                }
            },
            FieldKey::Accept if bar.focus == Field::Replace => {
                self.replace_one();
                return;
            }
            FieldKey::Accept | FieldKey::Next => {
                bar.next(buf, self.caret.pos());
            }
            FieldKey::Prev => {
                bar.prev(buf, self.caret.pos());
            }
            FieldKey::SwitchField => {
                if bar.replacement.is_some() {
                    bar.focus = match bar.focus {
                        Field::Find => Field::Replace,
                        Field::Replace => Field::Find,
                    };
                }
            }
            FieldKey::ToggleCase => bar.toggle_case(buf),
            FieldKey::Replace => {
                bar.replacement.get_or_insert_with(String::new);
                bar.focus = match bar.focus {
                    Field::Find => Field::Replace,
                    Field::Replace => Field::Find,
                };
            }
            FieldKey::ReplaceAll => {
                self.replace_all();
                return;
            }
            FieldKey::Cancel => {
                self.mode = Mode::Edit;
                return;
            }
            FieldKey::Other => return,
        }
        if let Mode::Search(bar) = &self.mode {
            if bar.current.is_none() && !bar.query.is_empty() {
                self.caret.clear_selection();
            }
        }
        self.show_match();
    }

    fn replace_one(&mut self) {
        let Mode::Search(bar) = &self.mode else {
            return;
        };
        let replacement = bar.replacement.clone().unwrap_or_default();
        let Some(m) = bar.current_valid(&self.buf) else {
            if let Mode::Search(bar) = &mut self.mode {
                bar.next(&self.buf, self.caret.pos());
            }
            self.show_match();
            return;
        };
        self.seal();
        if self.edit(m.clone(), &replacement, true) {
            let end = m.start + replacement.chars().count();
            self.caret.jump_to(end);
            if let Mode::Search(bar) = &mut self.mode {
                bar.current = None;
                if bar.next(&self.buf, end).is_none() {
                    self.info("no more matches");
                }
            }
            self.show_match();
        }
        self.seal();
    }

    fn replace_all(&mut self) {
        let Mode::Search(bar) = &self.mode else {
            return;
        };
        let Some(replacement) = bar.replacement.clone() else {
            self.info("Ctrl-R first, to type the replacement");
            return;
        };
        if let Some(why) = self.read_only() {
            self.warn(format!("read-only: {why}"));
            return;
        }
        let searcher = bar.searcher().clone();
        let mut scratch = History::new();
        let App {
            buf,
            words,
            history,
            doc,
            ..
        } = self;
        let (history, mut session) = match doc {
            Doc::File(_) => (history, None),
            Doc::Live(l) => (&mut scratch, Some(&mut l.session)),
        };
        if let Some(s) = session.as_deref_mut() {
            s.seal();
        }
        let result = replace_all_with(buf, &searcher, &replacement, history, |b, r, t| {
            if let Some(s) = session.as_deref_mut() {
                s.local_edit(b, r.clone(), t);
            }
            words.apply(b, r, t)
        });
        if let Some(s) = session {
            s.seal();
        }
        match result {
            Ok(0) => self.info("no matches"),
            Ok(n) => {
                self.caret
                    .jump_to(self.caret.pos().min(self.buf.len_chars()));
                self.changed();
                if let Mode::Search(bar) = &mut self.mode {
                    bar.current = None;
                    bar.text_changed(|p| p);
                }
                self.info(format!("replaced {n} matches"));
            }
            Err(e) => self.warn(format!("replace all stopped: {e}")),
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
}
