//! The completion popup: the document's words that start with the word before the cursor,
//! most frequent first, from editor-core's [`WordIndex`] (a trie kept up to date edit by edit).
//!
//! The word being typed is itself in the index (it is in the text), so the prefix itself is
//! never offered. Accepting replaces the whole word around the cursor, so completing in the
//! middle of a word does not leave its tail behind. [`Popup`] is its state; the `impl App` block
//! is what its keys do to the editor.

use std::ops::Range;

use crossterm::event::{KeyCode, KeyEvent};
use editor_core::trie::{is_word_char, WordIndex};
use editor_core::{GapBuffer, TextBuffer};

use crate::app::{App, Words};

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

/// What completion does to the editor.
impl App {
    /// Keys the completion popup takes; returns false for keys that go to the text.
    pub(crate) fn popup_key(&mut self, key: &KeyEvent) -> bool {
        let Some(popup) = &mut self.popup else {
            return false;
        };
        match key.code {
            KeyCode::Up => popup.up(),
            KeyCode::Down => popup.down(),
            KeyCode::Enter | KeyCode::Tab => {
                let popup = self.popup.take().expect("checked above");
                self.accept_completion(&popup);
            }
            KeyCode::Esc => self.popup = None,
            _ => return false,
        }
        true
    }

    /// The completion popup for the word before the cursor, if anything completes it.
    pub(crate) fn completions(&self) -> Option<Popup> {
        match &self.words {
            Words::Ready(index) => open(&self.buf, index, self.caret.pos()),
            Words::Building(_) => None,
        }
    }

    /// Opens the completion popup (Tab: completes at once when one word fits). Returns whether
    /// there was anything to complete.
    pub(crate) fn complete(&mut self, tab: bool) -> bool {
        if matches!(self.words, Words::Building(_)) {
            if !tab {
                self.info("still indexing the words of this file…");
            }
            return false;
        }
        match self.completions() {
            Some(p) if tab && p.items.len() == 1 => {
                self.accept_completion(&p);
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

    fn accept_completion(&mut self, popup: &Popup) {
        let word = popup.chosen().to_string();
        self.seal();
        if self.edit(popup.word.clone(), &word, true) {
            self.caret.jump_to(popup.word.start + word.chars().count());
        }
        self.seal();
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
}
