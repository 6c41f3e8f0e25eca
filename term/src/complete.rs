//! The completion popup: the document's words that start with the word before the cursor,
//! most frequent first, from editor-core's [`WordIndex`] (a trie kept up to date edit by edit).
//!
//! The word being typed is itself in the index (it is in the text), so the prefix itself is
//! never offered. Accepting replaces the whole word around the cursor, so completing in the
//! middle of a word does not leave its tail behind. [`Popup`] is its state; a key returns a
//! [`PopupAction`] for the editor to apply.

use std::ops::Range;

use crossterm::event::{KeyCode, KeyEvent};
use editor_core::trie::{is_word_char, WordIndex};
use editor_core::{GapBuffer, TextBuffer};

/// How many completions the popup shows.
pub const SHOWN: usize = 8;
/// The longest prefix looked at.
const MAX_WORD: usize = 256;

/// The open popup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Popup {
    /// The chars the chosen word replaces: the word around the cursor.
    pub word: Range<usize>,
    pub prefix: String,
    /// `(word, occurrences)`, best first.
    pub items: Vec<(String, u32)>,
    pub selected: usize,
}

/// The word chars before `cursor` (the prefix) and the whole word around it.
pub fn word_at(buf: &GapBuffer, cursor: usize) -> Option<(Range<usize>, String)> {
    let from = cursor.saturating_sub(MAX_WORD);
    let before = buf.slice(from..cursor).ok()?;
    let prefix: String = {
        let mut rev: Vec<char> = before
            .chars()
            .rev()
            .take_while(|c| is_word_char(*c))
            .collect();
        rev.reverse();
        rev.into_iter().collect()
    };
    if prefix.is_empty() {
        return None;
    }
    let start = cursor - prefix.chars().count();
    let to = (cursor + MAX_WORD).min(buf.len_chars());
    let after = buf.slice(cursor..to).ok()?;
    let end = cursor + after.chars().take_while(|c| is_word_char(*c)).count();
    Some((start..end, prefix))
}

/// The popup for the word before `cursor`, or `None` when there is no prefix or nothing
/// completes it.
pub fn open(buf: &GapBuffer, index: &WordIndex, cursor: usize) -> Option<Popup> {
    let (word, prefix) = word_at(buf, cursor)?;
    let items: Vec<(String, u32)> = index
        .top_k(&prefix, SHOWN + 1)
        .into_iter()
        .filter(|(w, _)| *w != prefix)
        .take(SHOWN)
        .collect();
    if items.is_empty() {
        return None;
    }
    Some(Popup {
        word,
        prefix,
        items,
        selected: 0,
    })
}

impl Popup {
    pub fn up(&mut self) {
        self.selected = (self.selected + self.items.len() - 1) % self.items.len();
    }

    pub fn down(&mut self) {
        self.selected = (self.selected + 1) % self.items.len();
    }

    pub fn chosen(&self) -> &str {
        &self.items[self.selected].0
    }
}

/// What a key in the completion popup asks of the editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PopupAction {
    /// Not a popup key: it goes to the text.
    Pass,
    /// Handled in the popup (the choice moved).
    None,
    /// Replace `range` with `word` and close the popup.
    Accept { range: Range<usize>, word: String },
    /// Close the popup.
    Close,
}

impl Popup {
    /// Handles `key`.
    pub fn key(&mut self, key: &KeyEvent) -> PopupAction {
        match key.code {
            KeyCode::Up => self.up(),
            KeyCode::Down => self.down(),
            KeyCode::Enter | KeyCode::Tab => return self.accept(),
            KeyCode::Esc => return PopupAction::Close,
            _ => return PopupAction::Pass,
        }
        PopupAction::None
    }

    /// Taking the chosen word.
    pub fn accept(&self) -> PopupAction {
        PopupAction::Accept {
            range: self.word.clone(),
            word: self.chosen().to_string(),
        }
    }

    /// The text changed: `map` moves the word being completed.
    pub fn text_changed(&mut self, map: impl Fn(usize) -> usize) {
        self.word = map(self.word.start)..map(self.word.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_other_words_with_the_prefix() {
        let buf = GapBuffer::from_text("alpha alpine alpha al");
        let index = WordIndex::build(&buf);
        let p = open(&buf, &index, 21).unwrap();
        assert_eq!(p.prefix, "al");
        assert_eq!(p.word, 19..21);
        assert_eq!(
            p.items,
            vec![("alpha".to_string(), 2), ("alpine".to_string(), 1)]
        );
        // In the middle of a word: the whole word is replaced.
        let p = open(&buf, &index, 8).unwrap();
        assert_eq!((p.word, p.prefix.as_str()), (6..12, "al"));
        // "alpha" is complete: nothing longer starts with it.
        assert!(open(&buf, &index, 5).is_none());
        assert!(open(&GapBuffer::from_text("x "), &WordIndex::new(), 2).is_none());
    }

    #[test]
    fn keys_move_the_choice_and_accept_it() {
        let buf = GapBuffer::from_text("alpha alpine alpha al");
        let index = WordIndex::build(&buf);
        let mut p = open(&buf, &index, 21).unwrap();
        let key = |code| KeyEvent::from(code);
        assert_eq!(p.key(&key(KeyCode::Down)), PopupAction::None);
        assert_eq!(p.chosen(), "alpine");
        assert_eq!(p.key(&key(KeyCode::Down)), PopupAction::None);
        assert_eq!(p.key(&key(KeyCode::Up)), PopupAction::None);
        assert_eq!(p.key(&key(KeyCode::Char('x'))), PopupAction::Pass);
        assert_eq!(p.key(&key(KeyCode::Esc)), PopupAction::Close);
        p.text_changed(|p| p + 1);
        assert_eq!(
            p.key(&key(KeyCode::Tab)),
            PopupAction::Accept {
                range: 20..22,
                word: "alpine".into()
            }
        );
    }
}
