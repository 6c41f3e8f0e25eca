//! Keys to actions. The whole key map is here, so README's key table and this file can be
//! compared line by line.
//!
//! | key | action |
//! |---|---|
//! | arrows, Home/End, PgUp/PgDn | move (Home toggles between the first non-blank and column 1) |
//! | Ctrl-←/→ (or Alt-b/f) | word left/right |
//! | Ctrl-Home/End | start/end of the document |
//! | Shift + any move | extend the selection |
//! | Ctrl-A | select all |
//! | Ctrl-C / Ctrl-X / Ctrl-V | copy / cut / paste (the line when nothing is selected); a terminal paste is inserted as is |
//! | Ctrl-Z / Ctrl-Y | undo / redo |
//! | Ctrl-F | find (then: Enter/↓ next, ↑ previous, Alt-C case, Ctrl-R replace, Alt-A replace all, Esc) |
//! | Ctrl-Space, or Tab after a word prefix | complete the word |
//! | Ctrl-S | save (live mode: write the local copy) |
//! | Ctrl-T | live mode: colour the text by who typed it (again: plain) |
//! | Ctrl-Q | quit (asks when something is unsaved) |

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// A cursor motion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Motion {
    Left,
    Right,
    Up,
    Down,
    WordLeft,
    WordRight,
    Home,
    End,
    PageUp,
    PageDown,
    DocStart,
    DocEnd,
}

/// What a key does in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Move { motion: Motion, select: bool },
    Insert(char),
    Newline,
    Tab,
    Backspace,
    Delete,
    SelectAll,
    Copy,
    Cut,
    Paste,
    Undo,
    Redo,
    Find,
    Complete,
    Save,
    Authors,
    Quit,
    Escape,
}

/// The action of `key` while editing text; `None` for keys that do nothing.
pub fn action(key: &KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let select = key.modifiers.contains(KeyModifiers::SHIFT);
    let mv = |motion| Some(Action::Move { motion, select });
    match key.code {
        KeyCode::Left if ctrl || alt => mv(Motion::WordLeft),
        KeyCode::Right if ctrl || alt => mv(Motion::WordRight),
        KeyCode::Home if ctrl => mv(Motion::DocStart),
        KeyCode::End if ctrl => mv(Motion::DocEnd),
        KeyCode::Left => mv(Motion::Left),
        KeyCode::Right => mv(Motion::Right),
        KeyCode::Up => mv(Motion::Up),
        KeyCode::Down => mv(Motion::Down),
        KeyCode::Home => mv(Motion::Home),
        KeyCode::End => mv(Motion::End),
        KeyCode::PageUp => mv(Motion::PageUp),
        KeyCode::PageDown => mv(Motion::PageDown),
        KeyCode::Enter => Some(Action::Newline),
        KeyCode::Tab => Some(Action::Tab),
        KeyCode::BackTab => None,
        KeyCode::Backspace => Some(Action::Backspace),
        KeyCode::Delete => Some(Action::Delete),
        KeyCode::Esc => Some(Action::Escape),
        KeyCode::Char(c) if ctrl => match c.to_ascii_lowercase() {
            'a' => Some(Action::SelectAll),
            'c' => Some(Action::Copy),
            'x' => Some(Action::Cut),
            'v' => Some(Action::Paste),
            'z' => Some(Action::Undo),
            'y' => Some(Action::Redo),
            'f' => Some(Action::Find),
            's' => Some(Action::Save),
            't' => Some(Action::Authors),
            'q' => Some(Action::Quit),
            // A bare line feed (some terminals' Enter in raw mode) arrives as Ctrl-J.
            'j' => Some(Action::Newline),
            ' ' | '@' => Some(Action::Complete),
            _ => None,
        },
        KeyCode::Char('b') if alt => mv(Motion::WordLeft),
        KeyCode::Char('f') if alt => mv(Motion::WordRight),
        KeyCode::Char(_) if alt => None,
        KeyCode::Char(c) => Some(Action::Insert(c)),
        _ => None,
    }
}

/// What a key does in a one-line input field (the search bar, a prompt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKey {
    Insert(char),
    Backspace,
    /// Enter.
    Accept,
    Cancel,
    Next,
    Prev,
    /// Tab: switch between the find and replace fields.
    SwitchField,
    ToggleCase,
    /// Ctrl-R: show the replace field.
    Replace,
    ReplaceAll,
    Other,
}

/// The meaning of `key` in an input field.
pub fn field_key(key: &KeyEvent) -> Option<FieldKey> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    Some(match key.code {
        KeyCode::Esc => FieldKey::Cancel,
        KeyCode::Enter => FieldKey::Accept,
        KeyCode::Backspace => FieldKey::Backspace,
        KeyCode::Down | KeyCode::F(3) => FieldKey::Next,
        KeyCode::Up => FieldKey::Prev,
        KeyCode::Tab | KeyCode::BackTab => FieldKey::SwitchField,
        KeyCode::Char(c) if ctrl => match c.to_ascii_lowercase() {
            'n' | 'g' => FieldKey::Next,
            'p' => FieldKey::Prev,
            'r' => FieldKey::Replace,
            't' => FieldKey::ToggleCase,
            'a' => FieldKey::ReplaceAll,
            'q' | 'f' => FieldKey::Cancel,
            _ => FieldKey::Other,
        },
        KeyCode::Char(c) if alt => match c.to_ascii_lowercase() {
            'c' => FieldKey::ToggleCase,
            'a' => FieldKey::ReplaceAll,
            'r' => FieldKey::Replace,
            _ => FieldKey::Other,
        },
        KeyCode::Char(c) => FieldKey::Insert(c),
        _ => FieldKey::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    #[test]
    fn control_keys() {
        assert_eq!(
            action(&key(KeyCode::Char('s'), KeyModifiers::CONTROL)),
            Some(Action::Save)
        );
        // Ctrl-Space arrives as NUL, which crossterm reports as Ctrl+' '.
        assert_eq!(
            action(&key(KeyCode::Char(' '), KeyModifiers::CONTROL)),
            Some(Action::Complete)
        );
        assert_eq!(
            action(&key(
                KeyCode::Right,
                KeyModifiers::SHIFT | KeyModifiers::CONTROL
            )),
            Some(Action::Move {
                motion: Motion::WordRight,
                select: true
            })
        );
        assert_eq!(
            action(&key(KeyCode::Char('é'), KeyModifiers::NONE)),
            Some(Action::Insert('é'))
        );
        assert_eq!(
            field_key(&key(KeyCode::Char('c'), KeyModifiers::ALT)),
            Some(FieldKey::ToggleCase)
        );
    }
}
