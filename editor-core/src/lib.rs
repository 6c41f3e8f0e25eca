//! quire's text core, shared by the server, the terminal editor and the REST API.
//! No async, no I/O: plain data structures with written-down invariants.
//!
//! # Layout
//! - [`buffer`]: the [`TextBuffer`] interface (char positions; byte, UTF-16 and line/column
//!   conversions) and [`PosError`].
//! - [`rope`]: [`RopeBuffer`], the interface over `ropey`.
//! - [`gap`]: [`GapBuffer`], gap buffers in a flat list of leaves; the default buffer.
//! - [`search`]: Knuth–Morris–Pratt search streaming over a buffer's chunks.
//! - [`trie`]: the word trie and the incrementally maintained word index behind autocomplete.
//! - [`undo`]: undo/redo history for a local editor, grouping typing runs.

pub mod buffer;
pub mod gap;
pub mod rope;
pub mod search;
pub mod trie;
pub mod undo;

#[cfg(test)]
mod testing;

pub use buffer::{PosError, TextBuffer};
pub use gap::GapBuffer;
pub use rope::RopeBuffer;

/// The buffer quire uses unless told otherwise (see BENCHMARKS.md for why).
///
/// # Examples
///
/// ```
/// use editor_core::{DefaultBuffer, TextBuffer};
///
/// let mut buf = DefaultBuffer::default();
/// buf.insert(0, "quire").unwrap();
/// assert_eq!(buf.to_text(), "quire");
/// assert_eq!(DefaultBuffer::NAME, "gap");
/// ```
pub type DefaultBuffer = GapBuffer;
