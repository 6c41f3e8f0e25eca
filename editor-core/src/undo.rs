//! Undo/redo for a local editor: a stack of steps, each step one or more [`Edit`]s undone
//! together.
//!
//! # Grouping
//! Typing is recorded one keystroke at a time but undone a run at a time. A recorded edit joins
//! the previous step when all of these hold:
//! - both are *typing edits*: inserting exactly one char, or deleting exactly one char;
//! - it continues the run: an insert right where the previous insert ended, a delete of the char
//!   just before the previous delete (backspace), or a delete at the same position (forward
//!   delete); inserts and deletes never mix, nor do backspaces and forward deletes;
//! - it does not cross a boundary: a `'\n'` (typed or deleted) is always a step of its own, and
//!   typing a whitespace char right after a non-whitespace one starts a new step, so undo removes
//!   a word (with the spaces typed before it) at a time;
//! - if both carry timestamps ([`History::record_at`]), they are at most
//!   [`group_timeout_ms`](History::with_group_timeout) apart (default 1000 ms);
//! - nothing sealed the run in between: [`History::seal`] (call it on cursor moves the history
//!   cannot see, such as clicks), an undo or redo, or a group.
//!
//! Compound changes (replace-all, auto-indent, a paste that also moved text) are one step:
//! record them between [`begin_group`](History::begin_group) and
//! [`end_group`](History::end_group), or pass them to [`record_group`](History::record_group).
//!
//! Any new edit clears the redo stack.
//!
//! # Applying
//! Undo and redo go through the [`TextBuffer`] trait. If the buffer refuses an edit (it was
//! changed behind the history's back), the edits of that step already applied are rolled back,
//! the step stays where it was, and the error is returned. [`History::undo_with`] and
//! [`History::redo_with`] let the caller route the edits through something else, e.g.
//! [`WordIndex::apply_edit`](crate::trie::WordIndex::apply_edit), so the autocomplete index
//! follows undo too.

use std::ops::Range;

use crate::buffer::{PosError, TextBuffer};

/// One change at char position `pos`: `deleted` was removed there and `inserted` put in its
/// place. Storing both texts makes every edit invertible without looking at the buffer.
///
/// Invariant (the caller's to keep): `deleted` is exactly the text at `pos` before the edit, so
/// [`inverse`](Self::inverse) applied after it restores that text.
///
/// # Examples
///
/// ```
/// use editor_core::undo::Edit;
/// use editor_core::{GapBuffer, TextBuffer};
///
/// let mut buf = GapBuffer::from_text("hello world");
/// let edit = Edit { pos: 6, deleted: "world".into(), inserted: "there".into() };
/// assert_eq!(edit.deleted_range(), 6..11);
/// edit.apply(&mut buf).unwrap();
/// assert_eq!(buf.to_text(), "hello there");
/// edit.inverse().apply(&mut buf).unwrap();
/// assert_eq!(buf.to_text(), "hello world");
/// assert_eq!(Edit::insert(0, "x").inverse(), Edit::delete(0, "x"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edit {
    /// Char position where both texts start.
    pub pos: usize,
    /// The text removed, kept so that undo can put it back.
    pub deleted: String,
    /// The text put in its place.
    pub inserted: String,
}

impl Edit {
    /// An edit that inserts `text` at `pos`.
    pub fn insert(pos: usize, text: impl Into<String>) -> Self {
        Edit {
            pos,
            deleted: String::new(),
            inserted: text.into(),
        }
    }

    /// An edit that deletes `text`, which starts at `pos`.
    pub fn delete(pos: usize, text: impl Into<String>) -> Self {
        Edit {
            pos,
            deleted: text.into(),
            inserted: String::new(),
        }
    }

    /// The edit that takes the text back to how it was before this one.
    pub fn inverse(&self) -> Edit {
        Edit {
            pos: self.pos,
            deleted: self.inserted.clone(),
            inserted: self.deleted.clone(),
        }
    }

    /// The char range this edit replaces, in the text before it.
    pub fn deleted_range(&self) -> Range<usize> {
        self.pos..self.pos + self.deleted.chars().count()
    }

    /// Applies the edit to `buf` (which must hold `deleted` at `pos`).
    pub fn apply<B: TextBuffer>(&self, buf: &mut B) -> Result<(), PosError> {
        buf.replace(self.deleted_range(), &self.inserted)
    }

    fn is_noop(&self) -> bool {
        self.deleted == self.inserted
    }
}

#[derive(Debug, Clone)]
struct Step {
    /// In the order they were applied.
    edits: Vec<Edit>,
    /// Where the cursor goes when this step is undone.
    undo_cursor: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Typing; the next char continues the run at `end`. `space` = the last char was whitespace.
    Insert { end: usize, space: bool },
    /// Single-char deletes starting at `pos`; `back` is known once the second delete arrives.
    Delete { pos: usize, back: Option<bool> },
}

/// The undo and redo stacks of one local editor.
///
/// Invariants: no step is empty; applying the undo stack's steps inverted, newest first, takes
/// the buffer back to where recording began; any new edit empties the redo stack.
///
/// # Examples
///
/// ```
/// use editor_core::undo::History;
/// use editor_core::{GapBuffer, TextBuffer};
///
/// let mut buf = GapBuffer::default();
/// let mut history = History::new();
/// // Typed one keystroke at a time, undone a word at a time.
/// for (i, c) in "hi there".chars().enumerate() {
///     history.apply(&mut buf, i..i, &c.to_string()).unwrap();
/// }
/// assert_eq!(history.undo(&mut buf).unwrap(), Some(2));
/// assert_eq!(buf.to_text(), "hi");
/// assert_eq!(history.redo(&mut buf).unwrap(), Some(8));
/// assert_eq!(buf.to_text(), "hi there");
///
/// // A compound change is one step.
/// history.begin_group();
/// history.apply(&mut buf, 0..2, "Hi").unwrap();
/// history.apply(&mut buf, 8..8, "!").unwrap();
/// history.end_group();
/// assert_eq!(buf.to_text(), "Hi there!");
/// history.undo(&mut buf).unwrap();
/// assert_eq!(buf.to_text(), "hi there");
/// assert!(history.can_redo());
/// ```
#[derive(Debug, Clone)]
pub struct History {
    undo: Vec<Step>,
    redo: Vec<Step>,
    /// Nesting depth and edits of the open group.
    group: Option<(usize, Vec<Edit>)>,
    /// The typing run the top undo step may still absorb.
    run: Option<Run>,
    last_time: Option<u64>,
    timeout_ms: u64,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

fn single_char(s: &str) -> Option<char> {
    let mut it = s.chars();
    let c = it.next()?;
    it.next().is_none().then_some(c)
}

impl History {
    /// An empty history that groups typing up to 1 s between keystrokes.
    pub fn new() -> Self {
        History::with_group_timeout(1000)
    }

    /// An empty history that breaks typing runs at pauses longer than `ms` (for edits recorded
    /// with timestamps).
    pub fn with_group_timeout(ms: u64) -> Self {
        History {
            undo: Vec::new(),
            redo: Vec::new(),
            group: None,
            run: None,
            last_time: None,
            timeout_ms: ms,
        }
    }

    /// The pause that breaks a typing run, in milliseconds.
    pub fn group_timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    /// Whether there is anything to undo (an open group counts once it holds an edit).
    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty() || self.group.as_ref().is_some_and(|(_, e)| !e.is_empty())
    }

    /// Whether there is anything to redo.
    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    /// Ends the current typing run, so the next edit starts a new step (e.g. after the cursor
    /// was moved with the mouse).
    pub fn seal(&mut self) {
        self.run = None;
    }

    /// Starts a compound change: edits recorded until the matching [`end_group`](Self::end_group)
    /// form one step. Groups nest; only the outermost one makes the step.
    pub fn begin_group(&mut self) {
        self.run = None;
        match &mut self.group {
            Some((depth, _)) => *depth += 1,
            None => self.group = Some((1, Vec::new())),
        }
    }

    /// Ends a compound change started with [`begin_group`](Self::begin_group) (extra calls are
    /// ignored).
    pub fn end_group(&mut self) {
        let Some((depth, edits)) = &mut self.group else {
            return;
        };
        *depth -= 1;
        if *depth > 0 {
            return;
        }
        let edits = std::mem::take(edits);
        self.group = None;
        if let Some(first) = edits.first() {
            let undo_cursor = first.pos + first.deleted.chars().count();
            self.undo.push(Step { edits, undo_cursor });
        }
        self.run = None;
    }

    /// Records already-applied `edits` (in the order they were applied) as one step.
    pub fn record_group(&mut self, edits: impl IntoIterator<Item = Edit>) {
        self.begin_group();
        for e in edits {
            self.record(e);
        }
        self.end_group();
    }

    /// Records an edit the caller has already applied to the buffer.
    pub fn record(&mut self, edit: Edit) {
        self.push(edit, None);
    }

    /// Records an already-applied edit made at `now_ms` (any monotonic clock in milliseconds),
    /// so a pause in typing ends the run.
    pub fn record_at(&mut self, edit: Edit, now_ms: u64) {
        self.push(edit, Some(now_ms));
    }

    /// Replaces `range` of `buf` by `text` and records the edit.
    pub fn apply<B: TextBuffer>(
        &mut self,
        buf: &mut B,
        range: Range<usize>,
        text: &str,
    ) -> Result<(), PosError> {
        let edit = Edit {
            pos: range.start,
            deleted: buf.slice(range.clone())?,
            inserted: text.to_string(),
        };
        buf.replace(range, text)?;
        self.record(edit);
        Ok(())
    }

    /// [`apply`](Self::apply) with a timestamp, see [`record_at`](Self::record_at).
    pub fn apply_at<B: TextBuffer>(
        &mut self,
        buf: &mut B,
        range: Range<usize>,
        text: &str,
        now_ms: u64,
    ) -> Result<(), PosError> {
        let edit = Edit {
            pos: range.start,
            deleted: buf.slice(range.clone())?,
            inserted: text.to_string(),
        };
        buf.replace(range, text)?;
        self.record_at(edit, now_ms);
        Ok(())
    }

    fn push(&mut self, edit: Edit, now: Option<u64>) {
        if edit.is_noop() {
            return;
        }
        self.redo.clear();
        if let Some((_, edits)) = &mut self.group {
            edits.push(edit);
            return;
        }
        let paused = match (now, self.last_time) {
            (Some(now), Some(last)) => now.saturating_sub(last) > self.timeout_ms,
            _ => false,
        };
        if now.is_some() {
            self.last_time = now;
        }
        let typed = if edit.deleted.is_empty() {
            single_char(&edit.inserted)
        } else {
            None
        };
        let deleted = if edit.inserted.is_empty() {
            single_char(&edit.deleted)
        } else {
            None
        };
        if !paused && self.try_extend_run(&edit, typed, deleted) {
            return;
        }
        self.run = match (typed, deleted) {
            (Some('\n'), _) | (_, Some('\n')) => None,
            (Some(c), _) => Some(Run::Insert {
                end: edit.pos + 1,
                space: c.is_whitespace(),
            }),
            (_, Some(_)) => Some(Run::Delete {
                pos: edit.pos,
                back: None,
            }),
            _ => None,
        };
        let undo_cursor = edit.pos + edit.deleted.chars().count();
        self.undo.push(Step {
            edits: vec![edit],
            undo_cursor,
        });
    }

    /// Merges `edit` into the top step if it continues the open typing run.
    fn try_extend_run(&mut self, edit: &Edit, typed: Option<char>, deleted: Option<char>) -> bool {
        let Some(run) = self.run else { return false };
        let Some(top) = self.undo.last_mut().and_then(|s| s.edits.last_mut()) else {
            return false;
        };
        match (run, typed, deleted) {
            (Run::Insert { end, space }, Some(c), _) => {
                if c == '\n' || edit.pos != end || (c.is_whitespace() && !space) {
                    return false;
                }
                top.inserted.push(c);
                self.run = Some(Run::Insert {
                    end: end + 1,
                    space: c.is_whitespace(),
                });
                true
            }
            (Run::Delete { pos, back }, _, Some(c)) => {
                if c == '\n' {
                    return false;
                }
                if edit.pos + 1 == pos && back != Some(false) {
                    top.deleted.insert(0, c);
                    top.pos = edit.pos;
                    // The step's undo cursor stays at the right end, where backspacing began.
                    self.run = Some(Run::Delete {
                        pos: edit.pos,
                        back: Some(true),
                    });
                    true
                } else if edit.pos == pos && back != Some(true) {
                    top.deleted.push(c);
                    self.run = Some(Run::Delete {
                        pos,
                        back: Some(false),
                    });
                    // Undoing a forward-delete run puts the cursor back where it stayed.
                    if let Some(step) = self.undo.last_mut() {
                        step.undo_cursor = pos;
                    }
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    }

    fn close_open_group(&mut self) {
        if let Some((depth, _)) = &mut self.group {
            *depth = 1;
            self.end_group();
        }
        self.run = None;
    }

    /// Undoes the last step; returns where the cursor should go, or `None` if there was nothing
    /// to undo. An open group is closed first.
    ///
    /// The cursor goes back to where the step began: the start of a typing run, the right end of
    /// a backspace run, the position of a forward-delete run; otherwise just after the text the
    /// step's first edit had removed (for replace-all, which edits from the end, the last match).
    pub fn undo<B: TextBuffer>(&mut self, buf: &mut B) -> Result<Option<usize>, PosError> {
        self.undo_with(buf, |b, range, text| b.replace(range, text))
    }

    /// Redoes the last undone step; returns where the cursor should go (after the last edit of
    /// the step), or `None` if there was nothing to redo.
    pub fn redo<B: TextBuffer>(&mut self, buf: &mut B) -> Result<Option<usize>, PosError> {
        self.redo_with(buf, |b, range, text| b.replace(range, text))
    }

    /// [`undo`](Self::undo), with every replacement (`range` of the current text becomes
    /// `text`) made by `apply` instead of `TextBuffer::replace`.
    pub fn undo_with<B, F>(&mut self, buf: &mut B, apply: F) -> Result<Option<usize>, PosError>
    where
        F: FnMut(&mut B, Range<usize>, &str) -> Result<(), PosError>,
    {
        self.close_open_group();
        let Some(step) = self.undo.pop() else {
            return Ok(None);
        };
        let inverse: Vec<Edit> = step.edits.iter().rev().map(Edit::inverse).collect();
        if let Err(e) = apply_all(buf, &inverse, apply) {
            self.undo.push(step);
            return Err(e);
        }
        let cursor = step.undo_cursor;
        self.redo.push(step);
        Ok(Some(cursor))
    }

    /// [`redo`](Self::redo), with replacements made by `apply`; see [`undo_with`](Self::undo_with).
    pub fn redo_with<B, F>(&mut self, buf: &mut B, apply: F) -> Result<Option<usize>, PosError>
    where
        F: FnMut(&mut B, Range<usize>, &str) -> Result<(), PosError>,
    {
        self.close_open_group();
        let Some(step) = self.redo.pop() else {
            return Ok(None);
        };
        if let Err(e) = apply_all(buf, &step.edits, apply) {
            self.redo.push(step);
            return Err(e);
        }
        let last = step.edits.last().expect("steps are never empty");
        let cursor = last.pos + last.inserted.chars().count();
        self.undo.push(step);
        Ok(Some(cursor))
    }
}

/// Applies `edits` in order; if one fails, reverts the ones already applied.
fn apply_all<B, F>(buf: &mut B, edits: &[Edit], mut apply: F) -> Result<(), PosError>
where
    F: FnMut(&mut B, Range<usize>, &str) -> Result<(), PosError>,
{
    for (i, e) in edits.iter().enumerate() {
        if let Err(err) = apply(buf, e.deleted_range(), &e.inserted) {
            for done in edits[..i].iter().rev() {
                let inv = done.inverse();
                // Best effort: these replacements just succeeded the other way round.
                let _ = apply(buf, inv.deleted_range(), &inv.inserted);
            }
            return Err(err);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testing::ChunkyBuffer;
    use crate::{GapBuffer, RopeBuffer};

    fn type_str<B: TextBuffer>(h: &mut History, buf: &mut B, mut pos: usize, s: &str) {
        for c in s.chars() {
            h.apply(buf, pos..pos, c.encode_utf8(&mut [0; 4])).unwrap();
            pos += 1;
        }
    }

    #[test]
    fn typing_groups_by_word() {
        let mut buf = RopeBuffer::default();
        let mut h = History::new();
        type_str(&mut h, &mut buf, 0, "hello world");
        assert_eq!(buf.to_text(), "hello world");
        assert_eq!(h.undo(&mut buf).unwrap(), Some(5));
        assert_eq!(buf.to_text(), "hello");
        assert_eq!(h.undo(&mut buf).unwrap(), Some(0));
        assert_eq!(buf.to_text(), "");
        assert_eq!(h.undo(&mut buf).unwrap(), None);
        assert_eq!(h.redo(&mut buf).unwrap(), Some(5));
        assert_eq!(h.redo(&mut buf).unwrap(), Some(11));
        assert_eq!(buf.to_text(), "hello world");
        assert_eq!(h.redo(&mut buf).unwrap(), None);
    }

    #[test]
    fn newline_is_its_own_step() {
        let mut buf = RopeBuffer::default();
        let mut h = History::new();
        type_str(&mut h, &mut buf, 0, "ab\ncd");
        h.undo(&mut buf).unwrap();
        assert_eq!(buf.to_text(), "ab\n");
        h.undo(&mut buf).unwrap();
        assert_eq!(buf.to_text(), "ab");
    }

    #[test]
    fn jumps_pauses_and_seal_break_runs() {
        let mut buf = RopeBuffer::from_text("0123456789");
        let mut h = History::new();
        h.apply(&mut buf, 2..2, "a").unwrap();
        h.apply(&mut buf, 8..8, "b").unwrap(); // cursor jump
        h.apply(&mut buf, 9..9, "c").unwrap();
        h.seal();
        h.apply(&mut buf, 10..10, "d").unwrap();
        h.apply_at(&mut buf, 11..11, "e", 0).unwrap();
        h.apply_at(&mut buf, 12..12, "f", 500).unwrap();
        h.apply_at(&mut buf, 13..13, "g", 5000).unwrap(); // pause
        assert_eq!(buf.to_text(), "01a23456bcdefg789");
        let mut texts = Vec::new();
        while h.undo(&mut buf).unwrap().is_some() {
            texts.push(buf.to_text());
        }
        assert_eq!(
            texts,
            [
                "01a23456bcdef789",
                "01a23456bc789",
                "01a23456789",
                "0123456789"
            ]
        );
    }

    #[test]
    fn backspace_and_delete_runs() {
        let mut buf = RopeBuffer::from_text("abcdef ghi");
        let mut h = History::new();
        for p in [5, 4, 3] {
            h.apply(&mut buf, p..p + 1, "").unwrap(); // backspaces
        }
        assert_eq!(buf.to_text(), "abc ghi");
        h.apply(&mut buf, 4..5, "").unwrap(); // forward deletes at a new place
        h.apply(&mut buf, 4..5, "").unwrap();
        assert_eq!(buf.to_text(), "abc i");
        assert_eq!(h.undo(&mut buf).unwrap(), Some(4));
        assert_eq!(buf.to_text(), "abc ghi");
        assert_eq!(h.undo(&mut buf).unwrap(), Some(6));
        assert_eq!(buf.to_text(), "abcdef ghi");
    }

    #[test]
    fn groups_and_redo_clearing() {
        let mut buf = RopeBuffer::from_text("x x x");
        let mut h = History::new();
        h.begin_group();
        h.apply(&mut buf, 4..5, "yy").unwrap();
        h.begin_group();
        h.apply(&mut buf, 2..3, "yy").unwrap();
        h.end_group();
        h.apply(&mut buf, 0..1, "yy").unwrap();
        h.end_group();
        h.end_group(); // ignored
        assert_eq!(buf.to_text(), "yy yy yy");
        // The cursor goes where the undo's last change happened: the group's first edit.
        assert_eq!(h.undo(&mut buf).unwrap(), Some(5));
        assert_eq!(buf.to_text(), "x x x");
        assert!(h.can_redo());
        h.apply(&mut buf, 0..0, "z").unwrap();
        assert!(!h.can_redo());
        assert_eq!(h.redo(&mut buf).unwrap(), None);
    }

    #[test]
    fn failed_undo_rolls_back() {
        let mut buf = RopeBuffer::from_text("abc");
        let mut h = History::new();
        h.record_group([Edit::insert(3, "d"), Edit::insert(100, "e")]);
        assert!(h.undo(&mut buf).is_err());
        assert_eq!(buf.to_text(), "abc");
        assert!(h.can_undo());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Edit(usize, usize, String),
        Seal,
        Undo,
        Redo,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (any::<usize>(), 0usize..3, "[ab \n]|é|🎉|[a-c]{2,3}|").prop_map(|(p, d, s)| Op::Edit(p, d, s)),
            1 => Just(Op::Seal),
            2 => Just(Op::Undo),
            1 => Just(Op::Redo),
        ]
    }

    fn check_history<B: TextBuffer>(initial: &str, ops: &[Op]) -> Result<(), TestCaseError> {
        let mut buf = B::from_text(initial);
        let mut h = History::new();
        // texts[i] = text after i steps; undo/redo must walk this list.
        let mut texts = vec![initial.to_string()];
        let mut at = 0;
        for op in ops {
            match op {
                Op::Edit(p, d, s) => {
                    let len = buf.len_chars();
                    let p = p % (len + 1);
                    let before = buf.to_text();
                    let steps = h.undo.len();
                    h.apply(&mut buf, p..(p + d).min(len), s).unwrap();
                    let after = buf.to_text();
                    if after != before {
                        texts.truncate(at + 1);
                        if h.undo.len() == steps {
                            texts[at] = after; // merged into the top step
                        } else {
                            texts.push(after);
                            at += 1;
                        }
                    }
                }
                Op::Seal => h.seal(),
                Op::Undo => {
                    let r = h.undo(&mut buf).unwrap();
                    prop_assert_eq!(r.is_some(), at > 0);
                    at = at.saturating_sub(1);
                    prop_assert_eq!(&buf.to_text(), &texts[at]);
                }
                Op::Redo => {
                    let r = h.redo(&mut buf).unwrap();
                    prop_assert_eq!(r.is_some(), at + 1 < texts.len());
                    if r.is_some() {
                        at += 1;
                    }
                    prop_assert_eq!(&buf.to_text(), &texts[at]);
                }
            }
        }
        while h.undo(&mut buf).unwrap().is_some() {}
        prop_assert_eq!(buf.to_text(), initial);
        while h.redo(&mut buf).unwrap().is_some() {}
        prop_assert_eq!(&buf.to_text(), texts.last().unwrap());
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn undo_all_restores_and_redo_replays(
            initial in "[ab é\n]{0,12}",
            ops in proptest::collection::vec(op(), 0..40),
        ) {
            check_history::<RopeBuffer>(&initial, &ops)?;
            check_history::<GapBuffer>(&initial, &ops)?;
            check_history::<ChunkyBuffer>(&initial, &ops)?;
        }
    }
}
