//! The editor's state and what every key does to it.
//!
//! One [`App`] edits one text: a local file or a live document. The text lives in an
//! editor-core [`GapBuffer`]; every change of it — typed, pasted, replaced, undone, or received
//! from a collaborator — goes through [`App::edit`], which keeps the word index, the undo
//! history (local files) or the yrs replica (live documents), and every position that refers to
//! the text (cursor, selection anchor, current search match, completion word) in step.
//!
//! App's state is private: the cursor and selection are a [`Caret`], what is on screen a
//! [`Viewport`], what was copied a [`Clipboard`]; the search bar and the completion popup keep
//! their own state and answer keys with actions ([`SearchAction`], [`PopupAction`]) applied here.
//! The view and the runner read through accessors.
//!
//! Positions are char indexes of the buffer. The cursor always sits on a grapheme cluster
//! boundary after a move (see [`layout`]); a collaborator's edit may leave it inside one, which
//! is harmless.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind};
use editor_core::search::{replace_all_with, Searcher};
use editor_core::trie::WordIndex;
use editor_core::undo::{Edit, History};
use editor_core::{GapBuffer, PosError, TextBuffer};

use crate::caret::Caret;
use crate::clipboard::Clipboard;
use crate::complete::{self, Popup, PopupAction};
use crate::file::{self, Format, Stamp};
use crate::keymap::{self, Action, Motion};
use crate::layout;
use crate::live::{Change, Conn, Peer, Session, User};
use crate::net::NetEvent;
use crate::search::{SearchAction, SearchBar};
use crate::viewport::Viewport;

/// Files up to this size get their word index built before the editor opens; bigger ones in
/// the background (completion says so until it is ready).
pub const SYNC_INDEX_BYTES: usize = 4 << 20;
/// How long a status message stays.
const MESSAGE_FOR: Duration = Duration::from_secs(8);
/// The local copy of a live document is written this long after the last change.
const COPY_DELAY: Duration = Duration::from_secs(1);

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tab_width: usize,
    pub user: User,
}

/// Everything the editor's loop receives.
pub enum AppEvent {
    Term(TermEvent),
    Net(NetEvent),
    /// The background word index of a big file is ready.
    Words(Box<BuiltIndex>),
}

/// A word index built on a copy of the text as it was opened.
pub struct BuiltIndex {
    pub index: WordIndex,
    pub copy: GapBuffer,
}

/// The autocomplete index, or the edits made while it is being built.
pub enum Words {
    Ready(WordIndex),
    Building(Vec<(Range<usize>, String)>),
}

impl Words {
    /// Replaces `range` of `buf` by `text`, keeping the index in step.
    pub(crate) fn apply(
        &mut self,
        buf: &mut GapBuffer,
        range: Range<usize>,
        text: &str,
    ) -> Result<(), PosError> {
        match self {
            Words::Ready(index) => index.apply_edit(buf, range, text),
            Words::Building(log) => {
                buf.replace(range.clone(), text)?;
                log.push((range, text.to_string()));
                Ok(())
            }
        }
    }
}

/// A local file being edited.
pub struct FileDoc {
    pub path: PathBuf,
    format: Format,
    /// Why saving is refused (not UTF-8, binary).
    pub read_only: Option<String>,
    stamp: Option<Stamp>,
    pub new_file: bool,
}

/// A live document.
pub struct LiveDoc {
    pub session: Session,
    /// `--save FILE`: the local copy.
    pub copy: Option<PathBuf>,
    copy_due: Option<Instant>,
}

/// What the editor edits.
pub enum Doc {
    File(FileDoc),
    Live(Box<LiveDoc>),
}

/// A question on the message line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    QuitUnsaved,
    QuitUnsynced,
    Overwrite,
    SaveCopyAs(String),
}

/// Where keys go.
pub enum Mode {
    Edit,
    Search(Box<SearchBar>),
    Ask(Question),
}

/// How a message is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

/// The editor.
pub struct App {
    buf: GapBuffer,
    words: Words,
    caret: Caret,
    viewport: Viewport,
    settings: Settings,
    doc: Doc,
    history: History,
    /// Changed since the last save (local files).
    modified: bool,
    clipboard: Clipboard,
    mode: Mode,
    popup: Option<Popup>,
    message: Option<(String, Level, Instant)>,
    quit: bool,
    started: Instant,
    /// Bumped by every change of the text.
    version: u64,
    /// `(anchor, cursor, version)` last published to collaborators.
    published: Option<(usize, usize, u64)>,
    /// The text of a big file, handed to the background index builder.
    index_job: Option<String>,
    /// Colour the text by who typed it (Ctrl-T, live documents).
    authors_on: bool,
    /// Who typed what, as of a text version and when computed.
    authors: Option<(u64, Instant, Vec<AuthorRun>)>,
}

/// A run of chars and who typed it (`None`: unknown).
pub type AuthorRun = (Range<usize>, Option<String>);

/// Above this many chars who-typed-what stays off: it walks the whole text after each change.
pub const AUTHORS_MAX_CHARS: usize = 200_000;
/// Names published since the last walk show up within this long even without a text change.
const AUTHORS_REFRESH: Duration = Duration::from_secs(1);

fn map_pos(p: usize, range: &Range<usize>, inserted: usize) -> usize {
    if p <= range.start {
        p
    } else if p >= range.end {
        p - (range.end - range.start) + inserted
    } else {
        range.start
    }
}

impl App {
    fn with(buf: GapBuffer, words: Words, doc: Doc, settings: Settings) -> App {
        App {
            buf,
            words,
            caret: Caret::default(),
            viewport: Viewport::default(),
            settings,
            doc,
            history: History::new(),
            modified: false,
            clipboard: Clipboard::default(),
            mode: Mode::Edit,
            popup: None,
            message: None,
            quit: false,
            started: Instant::now(),
            version: 0,
            published: None,
            index_job: None,
            authors_on: false,
            authors: None,
        }
    }

    /// Opens `path` (a missing file is a new, empty one).
    pub fn open_file(path: &Path, settings: Settings) -> io::Result<App> {
        let loaded = file::load(path)?;
        let buf = GapBuffer::from_text(&loaded.text);
        let big = loaded.text.len() > SYNC_INDEX_BYTES;
        let words = if big {
            Words::Building(Vec::new())
        } else {
            Words::Ready(WordIndex::build(&buf))
        };
        let doc = Doc::File(FileDoc {
            path: path.to_path_buf(),
            format: loaded.format,
            read_only: loaded.read_only.clone(),
            stamp: loaded.stamp,
            new_file: loaded.new_file,
        });
        let mut app = App::with(buf, words, doc, settings);
        if big {
            app.index_job = Some(loaded.text);
        }
        match (&loaded.read_only, loaded.new_file) {
            (Some(why), _) => app.warn(format!("{}: {why}", path.display())),
            (None, true) => app.info(format!("{}: new file (created when saved)", path.display())),
            (None, false) => app.info(HELP.to_string()),
        }
        Ok(app)
    }

    /// Edits a live document (empty until the server's state arrives).
    pub fn open_live(session: Session, copy: Option<PathBuf>, settings: Settings) -> App {
        let doc = Doc::Live(Box::new(LiveDoc {
            session,
            copy,
            copy_due: None,
        }));
        let mut app = App::with(
            GapBuffer::default(),
            Words::Ready(WordIndex::new()),
            doc,
            settings,
        );
        app.info(HELP.to_string());
        app
    }

    /// The text of a big file whose word index should be built in the background, once.
    pub fn take_index_job(&mut self) -> Option<String> {
        self.index_job.take()
    }

    /// Builds the index for [`take_index_job`](Self::take_index_job)'s text (on any thread).
    pub fn build_index(text: String) -> BuiltIndex {
        let copy = GapBuffer::from_text(&text);
        drop(text);
        let index = WordIndex::build(&copy);
        BuiltIndex { index, copy }
    }

    pub fn info(&mut self, msg: impl Into<String>) {
        self.message = Some((msg.into(), Level::Info, Instant::now()));
    }

    pub fn warn(&mut self, msg: impl Into<String>) {
        self.message = Some((msg.into(), Level::Warn, Instant::now()));
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The live session, if this is a live document.
    pub fn session(&mut self) -> Option<&mut Session> {
        match &mut self.doc {
            Doc::Live(l) => Some(&mut l.session),
            Doc::File(_) => None,
        }
    }

    /// Why the text may not be edited now, if it may not.
    pub fn read_only(&self) -> Option<String> {
        match &self.doc {
            Doc::File(f) => f.read_only.clone(),
            Doc::Live(l) => match (&l.session.conn, &l.session.denied) {
                (Conn::Refused { reason }, _) => {
                    Some(format!("the server refused the document: {reason}"))
                }
                (_, Some(reason)) => Some(format!("the server refuses edits: {reason}")),
                _ => None,
            },
        }
    }

    /// The text.
    pub fn buf(&self) -> &GapBuffer {
        &self.buf
    }

    /// The file or live document being edited.
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// Where keys go.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// Shows or hides who typed what (live documents).
    pub fn toggle_authors(&mut self) {
        if !matches!(self.doc, Doc::Live(_)) {
            self.info("Ctrl-T shows who typed what in live documents");
            return;
        }
        self.authors_on = !self.authors_on;
        self.authors = None;
        if !self.authors_on {
            self.info("authors hidden");
        } else if self.buf.len_chars() > AUTHORS_MAX_CHARS {
            self.info(format!(
                "authors are shown for documents up to {AUTHORS_MAX_CHARS} chars"
            ));
        } else {
            self.info("text coloured by who typed it (Ctrl-T to hide)");
        }
    }

    /// Who typed the chars in `visible`, when shown: runs and their authors (`None`: unknown).
    pub fn authors_in(&mut self, visible: Range<usize>) -> Vec<AuthorRun> {
        if !self.authors_on || self.buf.len_chars() > AUTHORS_MAX_CHARS {
            return Vec::new();
        }
        let stale = self.authors.as_ref().is_none_or(|(version, at, _)| {
            *version != self.version || at.elapsed() >= AUTHORS_REFRESH
        });
        if stale {
            let version = self.version;
            let Some(session) = self.session() else {
                return Vec::new();
            };
            let mut at = 0;
            let runs = session
                .authorship()
                .into_iter()
                .map(|(len, who)| {
                    at += len;
                    (at - len..at, who)
                })
                .collect();
            self.authors = Some((version, Instant::now(), runs));
        }
        let Some((_, _, runs)) = &self.authors else {
            return Vec::new();
        };
        let first = runs.partition_point(|(r, _)| r.end <= visible.start);
        runs[first..]
            .iter()
            .take_while(|(r, _)| r.start < visible.end)
            .cloned()
            .collect()
    }

    /// The collaborators' cursors and names (none for a local file).
    pub fn peers(&mut self) -> Vec<Peer> {
        match &mut self.doc {
            Doc::Live(l) => l.session.peers(&self.buf).to_vec(),
            Doc::File(_) => Vec::new(),
        }
    }

    /// The search bar's counter ([`SearchBar::count`]); `None` without a search bar too.
    pub fn search_count(&mut self) -> Option<(Option<usize>, usize)> {
        match &mut self.mode {
            Mode::Search(bar) => bar.count(&self.buf),
            _ => None,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Changed since the last save (local files).
    pub fn is_modified(&self) -> bool {
        self.modified
    }

    /// The open completion popup.
    pub fn popup(&self) -> Option<&Popup> {
        self.popup.as_ref()
    }

    /// The status message: its text, how it is shown and when it was set.
    pub fn message(&self) -> Option<&(String, Level, Instant)> {
        self.message.as_ref()
    }

    /// The user quit: the loop ends.
    pub fn quits(&self) -> bool {
        self.quit
    }

    /// The cursor and the selection.
    pub fn caret(&self) -> &Caret {
        &self.caret
    }

    /// Where the cursor is (a char index).
    pub fn cursor(&self) -> usize {
        self.caret.pos()
    }

    /// Puts the cursor at `pos` (clamped to the text), with no selection.
    pub fn set_cursor(&mut self, pos: usize) {
        self.caret.jump_to(pos.min(self.buf.len_chars()));
    }

    /// The part of the text on screen.
    pub fn viewport(&self) -> &Viewport {
        &self.viewport
    }

    /// The selected chars, when the selection is not empty.
    pub fn selection(&self) -> Option<Range<usize>> {
        self.caret.selection()
    }

    // ----- changing the text -----

    /// Replaces `range` by `text`. `by_user` edits are refused when read-only, recorded for
    /// undo (local) or sent to collaborators (live); others come from the replica. Every
    /// position into the text is moved along. Returns whether the edit was made.
    pub fn edit(&mut self, range: Range<usize>, text: &str, by_user: bool) -> bool {
        if by_user {
            if let Some(why) = self.read_only() {
                self.warn(format!("read-only: {why}"));
                return false;
            }
        }
        let len = self.buf.len_chars();
        let range = range.start.min(len)..range.end.min(len).max(range.start.min(len));
        if range.is_empty() && text.is_empty() {
            return false;
        }
        if by_user {
            let now = self.now_ms();
            match &mut self.doc {
                Doc::Live(l) => l.session.local_edit(&self.buf, range.clone(), text),
                Doc::File(_) => {
                    let deleted = self.buf.slice(range.clone()).unwrap_or_default();
                    self.history.record_at(
                        Edit {
                            pos: range.start,
                            deleted,
                            inserted: text.to_string(),
                        },
                        now,
                    );
                }
            }
        }
        if let Err(e) = self.words.apply(&mut self.buf, range.clone(), text) {
            self.warn(format!("edit refused: {e}"));
            return false;
        }
        let n = text.chars().count();
        let map = |p| map_pos(p, &range, n);
        self.caret.map(map);
        if let Mode::Search(bar) = &mut self.mode {
            bar.text_changed(map);
        }
        if let Some(p) = &mut self.popup {
            p.text_changed(map);
        }
        self.changed();
        true
    }

    fn changed(&mut self) {
        self.version += 1;
        match &mut self.doc {
            Doc::File(_) => self.modified = true,
            Doc::Live(l) => {
                l.session.text_changed();
                if l.copy.is_some() {
                    l.copy_due = Some(Instant::now() + COPY_DELAY);
                }
            }
        }
    }

    /// Types `text` over the selection or at the cursor.
    fn type_text(&mut self, text: &str) {
        let cursor = self.caret.pos();
        let range = self.selection().unwrap_or(cursor..cursor);
        if self.edit(range.clone(), text, true) {
            self.caret.place(range.start + text.chars().count());
        }
    }

    fn delete_range(&mut self, range: Range<usize>) -> bool {
        let done = self.edit(range.clone(), "", true);
        if done {
            self.caret.place(range.start);
        }
        done
    }

    /// Applies what collaborators (or live undo) changed; returns where the last change ended.
    fn apply_changes(&mut self) -> Option<usize> {
        let batches = self.session()?.take_changes();
        let mut last = None;
        let mut reload = false;
        'batches: for steps in batches {
            let (mut u16, mut at) = (0usize, 0usize);
            for step in steps {
                match step {
                    Change::Retain(n) => {
                        u16 += n as usize;
                        match self.buf.utf16_to_char(u16) {
                            Ok(c) => at = c,
                            Err(_) => {
                                reload = true;
                                break 'batches;
                            }
                        }
                    }
                    Change::Insert(s) => {
                        self.edit(at..at, &s, false);
                        u16 += s.encode_utf16().count();
                        at += s.chars().count();
                        last = Some(at);
                    }
                    Change::Delete(n) => match self.buf.utf16_to_char(u16 + n as usize) {
                        Ok(end) => {
                            self.edit(at..end, "", false);
                            last = Some(at);
                        }
                        Err(_) => {
                            reload = true;
                            break 'batches;
                        }
                    },
                    Change::Reload => {
                        reload = true;
                        break 'batches;
                    }
                }
            }
        }
        if reload {
            self.reload_from_replica();
        }
        last
    }

    /// Makes the buffer equal to the replica's text by replacing what differs between their
    /// common prefix and suffix (for changes that cannot be mirrored step by step).
    fn reload_from_replica(&mut self) {
        let Some(session) = self.session() else {
            return;
        };
        session.take_changes();
        let new = session.text();
        let old = self.buf.to_text();
        let prefix = old
            .chars()
            .zip(new.chars())
            .take_while(|(a, b)| a == b)
            .count();
        let (old_n, new_n) = (old.chars().count(), new.chars().count());
        let suffix = old
            .chars()
            .rev()
            .zip(new.chars().rev())
            .take_while(|(a, b)| a == b)
            .count()
            .min(old_n - prefix)
            .min(new_n - prefix);
        let insert: String = new
            .chars()
            .skip(prefix)
            .take(new_n - prefix - suffix)
            .collect();
        self.edit(prefix..old_n - suffix, &insert, false);
    }

    // ----- events -----

    /// Handles one event from the loop.
    pub fn handle(&mut self, event: AppEvent) {
        match event {
            AppEvent::Term(TermEvent::Key(key)) => self.on_key(key),
            AppEvent::Term(TermEvent::Paste(text)) => self.on_paste(&text),
            AppEvent::Term(_) => {}
            AppEvent::Net(ev) => {
                if let Some(s) = self.session() {
                    s.handle(ev);
                }
                self.apply_changes();
            }
            AppEvent::Words(built) => self.index_ready(*built),
        }
    }

    fn index_ready(&mut self, built: BuiltIndex) {
        let BuiltIndex {
            mut index,
            mut copy,
        } = built;
        if let Words::Building(log) = &mut self.words {
            for (range, text) in log.drain(..) {
                let _ = index.apply_edit(&mut copy, range, &text);
            }
            self.words = Words::Ready(index);
        }
    }

    /// Time-driven work: message expiry, awareness renewal, the live copy.
    pub fn tick(&mut self, now: Instant) {
        if let Some((_, _, at)) = &self.message {
            if now.duration_since(*at) > MESSAGE_FOR {
                self.message = None;
            }
        }
        let mut notices = Vec::new();
        let mut write_copy = false;
        if let Doc::Live(l) = &mut self.doc {
            l.session.tick(now);
            notices = std::mem::take(&mut l.session.notices);
            if l.copy_due.is_some_and(|due| now >= due) {
                l.copy_due = None;
                write_copy = true;
            }
        }
        for n in notices {
            self.warn(n);
        }
        if write_copy {
            self.write_copy(false);
        }
        self.publish_cursor();
    }

    /// Tells collaborators where the cursor is, if it moved.
    pub fn publish_cursor(&mut self) {
        let cursor = self.caret.pos();
        let key = (self.caret.anchor().unwrap_or(cursor), cursor, self.version);
        if self.published == Some(key) {
            return;
        }
        if let Doc::Live(l) = &mut self.doc {
            l.session.publish_cursor(&self.buf, key.0, key.1);
            self.published = Some(key);
        }
    }

    fn on_paste(&mut self, text: &str) {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        match &mut self.mode {
            Mode::Search(bar) => {
                let line = text.lines().next().unwrap_or("");
                let action = bar.paste(line, &self.buf);
                self.apply_search(action);
            }
            Mode::Ask(Question::SaveCopyAs(name)) => {
                name.push_str(text.lines().next().unwrap_or(""))
            }
            Mode::Ask(_) => {}
            Mode::Edit => {
                self.popup = None;
                self.seal();
                self.type_text(&text);
                self.seal();
            }
        }
    }

    fn on_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        match self.mode {
            Mode::Search(_) => self.search_key(&key),
            Mode::Ask(_) => self.ask_key(&key),
            Mode::Edit => {
                if self.popup.is_some() && self.popup_key(&key) {
                    return;
                }
                if let Some(action) = keymap::action(&key) {
                    self.act(action);
                }
            }
        }
    }

    fn seal(&mut self) {
        self.history.seal();
        if let Some(s) = self.session() {
            s.seal();
        }
    }

    /// Does what a key in the text means.
    pub fn act(&mut self, action: Action) {
        let keeps_popup = matches!(action, Action::Insert(c) if editor_core::trie::is_word_char(c))
            || action == Action::Backspace;
        if !matches!(
            action,
            Action::Insert(_) | Action::Backspace | Action::Delete | Action::Tab
        ) {
            self.seal();
        }
        match action {
            Action::Move { motion, select } => self.move_cursor(motion, select),
            Action::Insert(c) => self.type_text(c.encode_utf8(&mut [0; 4])),
            Action::Newline => {
                let cursor = self.caret.pos();
                let (_, line) = layout::line_of(&self.buf, cursor);
                let upto = cursor.min(line.start + layout::WINDOW);
                let head = self.buf.slice(line.start..upto).unwrap_or_default();
                let indent: String = head
                    .chars()
                    .take_while(|c| *c == ' ' || *c == '\t')
                    .collect();
                self.type_text(&format!("\n{indent}"));
            }
            Action::Tab => {
                if self.selection().is_some() || !self.complete(true) {
                    self.type_text("\t");
                }
            }
            Action::Backspace => match self.selection() {
                Some(r) => {
                    self.delete_range(r);
                }
                None if self.caret.pos() > 0 => {
                    let cursor = self.caret.pos();
                    let from = layout::prev_boundary(&self.buf, cursor);
                    self.delete_range(from..cursor);
                }
                None => {}
            },
            Action::Delete => match self.selection() {
                Some(r) => {
                    self.delete_range(r);
                }
                None if self.caret.pos() < self.buf.len_chars() => {
                    let cursor = self.caret.pos();
                    let to = layout::next_boundary(&self.buf, cursor);
                    self.delete_range(cursor..to);
                }
                None => {}
            },
            Action::SelectAll => self.caret.select(0, self.buf.len_chars()),
            Action::Copy => self.copy(false),
            Action::Cut => self.copy(true),
            Action::Paste => self.paste(),
            Action::Undo => self.undo(true),
            Action::Redo => self.undo(false),
            Action::Find => self.open_search(),
            Action::Complete => {
                self.complete(false);
                return;
            }
            Action::Save => self.save(false),
            Action::Authors => self.toggle_authors(),
            Action::Quit => self.ask_quit(),
            Action::Escape => {
                self.caret.clear_selection();
                self.popup = None;
            }
        }
        if self.popup.is_some() {
            self.popup = if keeps_popup {
                self.completions()
            } else {
                None
            };
        }
    }

    fn move_cursor(&mut self, motion: Motion, select: bool) {
        let from = self.caret.pos();
        if select {
            self.caret.start_selection();
        } else if let Some(sel) = self.selection() {
            self.caret.clear_selection();
            match motion {
                Motion::Left => {
                    self.caret.set_pos(sel.start);
                    return;
                }
                Motion::Right => {
                    self.caret.set_pos(sel.end);
                    return;
                }
                _ => {}
            }
        } else {
            self.caret.clear_selection();
        }
        let buf = &self.buf;
        let tab = self.settings.tab_width;
        let vertical = matches!(
            motion,
            Motion::Up | Motion::Down | Motion::PageUp | Motion::PageDown
        );
        let goal = if vertical {
            self.caret.goal_col(|| layout::col_of(buf, from, tab))
        } else {
            0
        };
        let line = buf.char_to_line(from.min(buf.len_chars())).unwrap_or(0);
        let last = buf.len_lines() - 1;
        let page = self.viewport.page();
        let to = match motion {
            Motion::Left => layout::prev_boundary(buf, from),
            Motion::Right => layout::next_boundary(buf, from),
            Motion::Up if line == 0 => 0,
            Motion::Up => layout::pos_at_col(buf, line - 1, goal, tab),
            Motion::Down if line == last => buf.len_chars(),
            Motion::Down => layout::pos_at_col(buf, line + 1, goal, tab),
            Motion::PageUp => {
                self.viewport.scroll_up(page);
                layout::pos_at_col(buf, line.saturating_sub(page), goal, tab)
            }
            Motion::PageDown => {
                self.viewport.scroll_down(page, last);
                layout::pos_at_col(buf, (line + page).min(last), goal, tab)
            }
            Motion::WordLeft => layout::word_left(buf, from),
            Motion::WordRight => layout::word_right(buf, from),
            Motion::Home => {
                let range = layout::line_range(buf, line);
                let upto = range.end.min(range.start + layout::WINDOW);
                let head = buf.slice(range.start..upto).unwrap_or_default();
                let first =
                    range.start + head.chars().take_while(|c| *c == ' ' || *c == '\t').count();
                if from == first {
                    range.start
                } else {
                    first
                }
            }
            Motion::End => layout::line_range(buf, line).end,
            Motion::DocStart => 0,
            Motion::DocEnd => buf.len_chars(),
        };
        self.caret.set_pos(to);
        if !vertical {
            self.caret.forget_goal();
        }
    }

    fn copy(&mut self, cut: bool) {
        let range = self
            .clipboard
            .copy(&self.buf, self.caret.selection(), self.caret.pos());
        let n = self.clipboard.text().chars().count();
        if cut {
            if self.delete_range(range) {
                self.info(format!("cut {n} chars"));
            }
        } else {
            self.info(format!("copied {n} chars"));
        }
    }

    fn paste(&mut self) {
        if self.clipboard.is_empty() {
            self.info("the clipboard is empty");
            return;
        }
        let text = self.clipboard.text().to_string();
        if self.clipboard.holds_lines() && self.selection().is_none() {
            let cursor = self.caret.pos();
            let (_, line) = layout::line_of(&self.buf, cursor);
            if self.edit(line.start..line.start, &text, true) {
                self.caret.set_pos(cursor + text.chars().count());
            }
        } else {
            self.type_text(&text);
        }
        self.seal();
    }

    fn undo(&mut self, undo: bool) {
        let verb = if undo { "undo" } else { "redo" };
        let moved_to = if let Doc::Live(l) = &mut self.doc {
            let done = if undo {
                l.session.undo()
            } else {
                l.session.redo()
            };
            if done {
                self.apply_changes().or(Some(self.caret.pos()))
            } else {
                None
            }
        } else {
            let App {
                buf,
                words,
                history,
                ..
            } = self;
            let apply = |b: &mut GapBuffer, r: Range<usize>, t: &str| words.apply(b, r, t);
            let result = if undo {
                history.undo_with(buf, apply)
            } else {
                history.redo_with(buf, apply)
            };
            match result {
                Ok(Some(pos)) => {
                    self.changed();
                    Some(pos)
                }
                Ok(None) => None,
                Err(e) => {
                    self.warn(format!("{verb} failed: {e}"));
                    return;
                }
            }
        };
        match moved_to {
            Some(pos) => {
                self.caret.jump_to(pos.min(self.buf.len_chars()));
                self.popup = None;
                if let Mode::Search(bar) = &mut self.mode {
                    bar.text_changed(|p| p);
                }
            }
            None => self.info(format!("nothing to {verb}")),
        }
    }

    // ----- search and completion -----

    fn open_search(&mut self) {
        let bar = SearchBar::open(&self.buf, self.selection(), self.caret.pos());
        let action = bar.jump();
        self.popup = None;
        self.mode = Mode::Search(Box::new(bar));
        self.apply_search(action);
    }

    fn search_key(&mut self, key: &KeyEvent) {
        let Mode::Search(bar) = &mut self.mode else {
            return;
        };
        let action = bar.key(key, &self.buf, self.caret.pos());
        self.apply_search(action);
    }

    fn apply_search(&mut self, action: SearchAction) {
        match action {
            SearchAction::None => {}
            SearchAction::Jump(m) => self.caret.select(m.start, m.end),
            SearchAction::Unselect => self.caret.clear_selection(),
            SearchAction::Replace { range, with } => self.replace_match(range, &with),
            SearchAction::ReplaceAll { searcher, with } => self.replace_all(&searcher, &with),
            SearchAction::Info(msg) => self.info(msg),
            SearchAction::Close => self.mode = Mode::Edit,
        }
    }

    /// Replaces the current match (one undo step) and moves on to the next.
    fn replace_match(&mut self, range: Range<usize>, with: &str) {
        self.seal();
        if self.edit(range.clone(), with, true) {
            let end = range.start + with.chars().count();
            self.caret.jump_to(end);
            if let Mode::Search(bar) = &mut self.mode {
                let more = bar.replaced(&self.buf, end);
                let action = bar.jump();
                if !more {
                    self.info("no more matches");
                }
                self.apply_search(action);
            }
        }
        self.seal();
    }

    /// Replaces every match with editor-core's `replace_all_with`: one undo step.
    fn replace_all(&mut self, searcher: &Searcher, with: &str) {
        if let Some(why) = self.read_only() {
            self.warn(format!("read-only: {why}"));
            return;
        }
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
        let result = replace_all_with(buf, searcher, with, history, |b, r, t| {
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
                    bar.replaced_all();
                }
                self.info(format!("replaced {n} matches"));
            }
            Err(e) => self.warn(format!("replace all stopped: {e}")),
        }
    }

    /// Keys the completion popup takes; returns false for keys that go to the text.
    fn popup_key(&mut self, key: &KeyEvent) -> bool {
        let Some(popup) = &mut self.popup else {
            return false;
        };
        match popup.key(key) {
            PopupAction::Pass => return false,
            PopupAction::None => {}
            PopupAction::Close => self.popup = None,
            PopupAction::Accept { range, word } => {
                self.popup = None;
                self.accept_completion(range, &word);
            }
        }
        true
    }

    /// The completion popup for the word before the cursor, if anything completes it.
    fn completions(&self) -> Option<Popup> {
        match &self.words {
            Words::Ready(index) => complete::open(&self.buf, index, self.caret.pos()),
            Words::Building(_) => None,
        }
    }

    /// Opens the completion popup (Tab: completes at once when one word fits). Returns whether
    /// there was anything to complete.
    fn complete(&mut self, tab: bool) -> bool {
        if matches!(self.words, Words::Building(_)) {
            if !tab {
                self.info("still indexing the words of this file…");
            }
            return false;
        }
        match self.completions() {
            Some(p) if tab && p.items.len() == 1 => {
                if let PopupAction::Accept { range, word } = p.accept() {
                    self.accept_completion(range, &word);
                }
                true
            }
            Some(p) => {
                self.popup = Some(p);
                true
            }
            None => {
                if !tab {
                    self.info("no completions");
                }
                false
            }
        }
    }

    /// Replaces the word being completed (one undo step).
    fn accept_completion(&mut self, range: Range<usize>, word: &str) {
        self.seal();
        if self.edit(range.clone(), word, true) {
            self.caret.jump_to(range.start + word.chars().count());
        }
        self.seal();
    }

    // ----- saving and quitting -----

    fn save(&mut self, force: bool) {
        match &mut self.doc {
            Doc::File(f) => {
                if let Some(why) = &f.read_only {
                    let msg = format!("not saved: {why}");
                    self.warn(msg);
                    return;
                }
                if !force && Stamp::of(&f.path) != f.stamp {
                    self.mode = Mode::Ask(Question::Overwrite);
                    return;
                }
                match file::save(&f.path, &self.buf, f.format) {
                    Ok(stamp) => {
                        f.stamp = stamp;
                        f.new_file = false;
                        self.modified = false;
                        let msg = format!(
                            "saved {} ({} lines)",
                            f.path.display(),
                            self.buf.len_lines()
                        );
                        self.info(msg);
                    }
                    Err(e) => {
                        let msg = format!("could not save {}: {e}", f.path.display());
                        self.warn(msg);
                    }
                }
            }
            Doc::Live(l) => {
                if l.copy.is_some() {
                    self.write_copy(true);
                } else {
                    self.mode = Mode::Ask(Question::SaveCopyAs(String::new()));
                }
            }
        }
    }

    /// Writes the live document's local copy.
    fn write_copy(&mut self, announce: bool) {
        let Doc::Live(l) = &mut self.doc else {
            return;
        };
        let Some(path) = l.copy.clone() else {
            return;
        };
        l.copy_due = None;
        // Unasked, never replace a copy with a document that has not arrived (offline start).
        if !announce && self.version == 0 {
            return;
        }
        match file::save(&path, &self.buf, Format::default()) {
            Ok(_) if announce => self.info(format!("wrote a local copy to {}", path.display())),
            Ok(_) => {}
            Err(e) => self.warn(format!("could not write {}: {e}", path.display())),
        }
    }

    fn ask_quit(&mut self) {
        match &self.doc {
            Doc::File(_) if self.modified => self.mode = Mode::Ask(Question::QuitUnsaved),
            Doc::Live(l) if l.session.has_unsynced() => {
                self.mode = Mode::Ask(Question::QuitUnsynced)
            }
            _ => self.quit = true,
        }
    }

    fn ask_key(&mut self, key: &KeyEvent) {
        let Mode::Ask(question) = &mut self.mode else {
            return;
        };
        let yes = matches!(key.code, KeyCode::Char('y' | 'Y'));
        let no = matches!(key.code, KeyCode::Char('n' | 'N'));
        let cancel = key.code == KeyCode::Esc
            || matches!(key.code, KeyCode::Char('c' | 'C'))
                && !matches!(question, Question::SaveCopyAs(_));
        match question {
            Question::SaveCopyAs(name) => match key.code {
                KeyCode::Esc => self.mode = Mode::Edit,
                KeyCode::Backspace => {
                    name.pop();
                }
                KeyCode::Enter => {
                    let path = PathBuf::from(name.trim());
                    self.mode = Mode::Edit;
                    if !path.as_os_str().is_empty() {
                        if let Doc::Live(l) = &mut self.doc {
                            l.copy = Some(path);
                        }
                        self.write_copy(true);
                    }
                }
                KeyCode::Char(c) => name.push(c),
                _ => {}
            },
            Question::QuitUnsaved => {
                if yes {
                    self.mode = Mode::Edit;
                    self.save(false);
                    if !self.modified {
                        self.quit = true;
                    }
                } else if no {
                    self.quit = true;
                } else if cancel {
                    self.mode = Mode::Edit;
                }
            }
            Question::QuitUnsynced => {
                if yes {
                    self.quit = true;
                } else if no || cancel {
                    self.mode = Mode::Edit;
                }
            }
            Question::Overwrite => {
                self.mode = Mode::Edit;
                if yes {
                    self.save(true);
                }
            }
        }
    }

    /// Before exiting: the live copy is written, collaborators are told goodbye.
    pub fn shutdown(&mut self) {
        self.write_copy(false);
        if let Some(s) = self.session() {
            s.shutdown(Duration::from_secs(2));
        }
    }

    /// Scrolls so the cursor is on screen (`rows` × `cols` of text).
    pub fn scroll_to_cursor(&mut self, rows: usize, cols: usize) {
        let cursor = self.caret.pos();
        let line = self
            .buf
            .char_to_line(cursor.min(self.buf.len_chars()))
            .unwrap_or(0);
        let last = self.buf.len_lines() - 1;
        let col = layout::col_of(&self.buf, cursor, self.settings.tab_width);
        self.viewport.follow(rows, cols, line, col, last);
    }
}

/// Shown when a file opens.
pub const HELP: &str =
    "Ctrl-S save · Ctrl-Q quit · Ctrl-F find/replace · Ctrl-Space complete · Ctrl-Z/Y undo/redo";
