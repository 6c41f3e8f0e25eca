//! The caret: where the cursor is, the other end of the selection, and the display column
//! vertical moves aim for. Positions are char indexes of the buffer; what a motion means in
//! the text is [`App`](crate::app::App)'s business (it knows the buffer and the layout), the
//! caret only keeps the three positions consistent.

use std::ops::Range;

/// The cursor, the selection anchor and the goal column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caret {
    pos: usize,
    /// The other end of the selection, when there is one.
    anchor: Option<usize>,
    /// The display column vertical moves aim for.
    goal_col: Option<usize>,
}

impl Caret {
    /// Where the cursor is.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The other end of the selection, when there is one (it may equal [`pos`](Self::pos)).
    pub fn anchor(&self) -> Option<usize> {
        self.anchor
    }

    /// The selected chars, when the selection is not empty.
    pub fn selection(&self) -> Option<Range<usize>> {
        let a = self.anchor?;
        (a != self.pos).then(|| a.min(self.pos)..a.max(self.pos))
    }

    /// After typing or deleting: the cursor at `pos`, no selection, no goal column.
    pub fn place(&mut self, pos: usize) {
        self.pos = pos;
        self.anchor = None;
        self.goal_col = None;
    }

    /// The cursor at `pos` without a selection; the goal column of vertical moves stays.
    pub fn jump_to(&mut self, pos: usize) {
        self.pos = pos;
        self.anchor = None;
    }

    /// Moves the cursor only (the anchor, if any, stays where it is).
    pub fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// Selects `anchor..pos` (either order), the cursor at `pos`.
    pub fn select(&mut self, anchor: usize, pos: usize) {
        self.anchor = Some(anchor);
        self.pos = pos;
    }

    /// A selecting move starts here unless a selection is already being extended.
    pub fn start_selection(&mut self) {
        self.anchor.get_or_insert(self.pos);
    }

    pub fn clear_selection(&mut self) {
        self.anchor = None;
    }

    /// The goal column of a vertical move: the one kept from the previous vertical move, or
    /// `col()` (the cursor's current column) for the first one.
    pub fn goal_col(&mut self, col: impl FnOnce() -> usize) -> usize {
        *self.goal_col.get_or_insert_with(col)
    }

    /// A horizontal move ends a run of vertical ones.
    pub fn forget_goal(&mut self) {
        self.goal_col = None;
    }

    /// The text changed: `map` moves each position to where its char went.
    pub fn map(&mut self, map: impl Fn(usize) -> usize) {
        self.pos = map(self.pos);
        self.anchor = self.anchor.map(map);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_is_ordered_and_never_empty() {
        let mut c = Caret::default();
        c.set_pos(5);
        assert_eq!(c.selection(), None);
        c.start_selection();
        assert_eq!((c.anchor(), c.selection()), (Some(5), None));
        c.set_pos(2);
        assert_eq!(c.selection(), Some(2..5));
        // Extending keeps the first anchor.
        c.start_selection();
        c.set_pos(9);
        assert_eq!(c.selection(), Some(5..9));
        c.select(7, 3);
        assert_eq!((c.pos(), c.selection()), (3, Some(3..7)));
        c.clear_selection();
        assert_eq!((c.pos(), c.selection()), (3, None));
    }

    #[test]
    fn goal_column_lasts_until_forgotten_or_placed() {
        let mut c = Caret::default();
        assert_eq!(c.goal_col(|| 4), 4);
        assert_eq!(c.goal_col(|| 9), 4);
        c.jump_to(1);
        assert_eq!(c.goal_col(|| 9), 4, "a jump keeps the goal column");
        c.forget_goal();
        assert_eq!(c.goal_col(|| 9), 9);
        c.place(0);
        assert_eq!(c.goal_col(|| 2), 2);
    }

    #[test]
    fn map_moves_cursor_and_anchor() {
        let mut c = Caret::default();
        c.select(2, 6);
        c.map(|p| if p > 3 { p + 10 } else { p });
        assert_eq!((c.anchor(), c.pos()), (Some(2), 16));
        c.place(4);
        c.map(|p| p + 1);
        assert_eq!((c.anchor(), c.pos()), (None, 5));
    }
}
