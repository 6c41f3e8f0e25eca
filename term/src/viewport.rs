//! The viewport: which part of the text is on screen — the first line, the first display
//! column, and the size of the text area at the last draw (Page Up/Down move by it).

/// The first line and column on screen and the text area's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewport {
    top: usize,
    left: usize,
    rows: usize,
    cols: usize,
}

impl Default for Viewport {
    /// Until the first draw says otherwise, a classic 80 × 20 terminal's text area.
    fn default() -> Viewport {
        Viewport {
            top: 0,
            left: 0,
            rows: 20,
            cols: 80,
        }
    }
}

impl Viewport {
    /// The first line on screen.
    pub fn top(&self) -> usize {
        self.top
    }

    /// The first display column on screen.
    pub fn left(&self) -> usize {
        self.left
    }

    /// Text rows at the last draw.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Text columns at the last draw.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// How many lines Page Up/Down move: a screen less one, so a line stays in view.
    pub fn page(&self) -> usize {
        self.rows.max(2) - 1
    }

    /// Scrolls `n` lines up (stops at the first line).
    pub fn scroll_up(&mut self, n: usize) {
        self.top = self.top.saturating_sub(n);
    }

    /// Scrolls `n` lines down (stops with `last_line` on top).
    pub fn scroll_down(&mut self, n: usize, last_line: usize) {
        self.top = (self.top + n).min(last_line);
    }

    /// Takes the text area's size (`rows` × `cols`) and scrolls as little as needed for
    /// `line` and display column `col` to be on screen. `last_line` is the text's last line.
    pub fn follow(&mut self, rows: usize, cols: usize, line: usize, col: usize, last_line: usize) {
        self.rows = rows.max(1);
        self.cols = cols.max(1);
        self.top = self.top.min(last_line);
        if line < self.top {
            self.top = line;
        } else if line >= self.top + self.rows {
            self.top = line + 1 - self.rows;
        }
        if col < self.left {
            self.left = col;
        } else if col >= self.left + self.cols {
            self.left = col + 1 - self.cols;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_cursor_scrolling_as_little_as_possible() {
        let mut v = Viewport::default();
        v.follow(10, 20, 5, 3, 100);
        assert_eq!((v.top(), v.left(), v.rows(), v.cols()), (0, 0, 10, 20));
        v.follow(10, 20, 10, 20, 100);
        assert_eq!((v.top(), v.left()), (1, 1));
        v.follow(10, 20, 40, 0, 100);
        assert_eq!((v.top(), v.left()), (31, 0));
        v.follow(10, 20, 30, 0, 100);
        assert_eq!(v.top(), 30);
        // The text shrank under the viewport.
        v.follow(10, 20, 2, 0, 3);
        assert_eq!(v.top(), 2);
        // A zero-sized area counts as one cell.
        v.follow(0, 0, 2, 0, 3);
        assert_eq!((v.rows(), v.cols(), v.page()), (1, 1, 1));
    }

    #[test]
    fn pages_keep_a_line_and_stay_in_the_text() {
        let mut v = Viewport::default();
        assert_eq!(v.page(), 19);
        v.scroll_down(19, 30);
        v.scroll_down(19, 30);
        assert_eq!(v.top(), 30);
        v.scroll_up(19);
        assert_eq!(v.top(), 11);
        v.scroll_up(19);
        assert_eq!(v.top(), 0);
    }
}
