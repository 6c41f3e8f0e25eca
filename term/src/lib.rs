//! quire's terminal editor (`quire`): a small editor for local files that also joins live
//! quire documents. editor-core does the text work (gap buffer, KMP search, trie
//! autocomplete, undo history); yrs does the collaboration (Yjs sync protocol, awareness,
//! undo of one's own edits); ratatui + crossterm draw it.
//!
//! # Layout (one file per concept)
//! - [`app`]: the editor's state and what each action does; every text change goes through
//!   [`app::App::edit`].
//! - [`caret`]: the cursor, selection anchor and goal column; [`viewport`]: what is on screen;
//!   [`clipboard`]: what was copied.
//! - [`view`]: drawing a frame (text, gutter, highlights, cursors, status bar, popup).
//! - [`keymap`]: keys to actions.
//! - [`layout`]: grapheme clusters, display widths, tabs.
//! - [`file`](mod@file): loading and saving files (UTF-8 checks, atomic saves).
//! - [`live`]: a live document — the yrs replica, sync protocol, awareness, undo.
//! - [`net`]: the WebSocket, reconnecting with backoff.
//! - [`search`]: the search bar; [`complete`]: the completion popup (each owns its state and
//!   answers a key with an action that [`app::App`] applies).
//! - [`runner`]: the terminal and the event loop.

pub mod app;
pub mod caret;
pub mod clipboard;
pub mod complete;
pub mod file;
pub mod keymap;
pub mod layout;
pub mod live;
pub mod net;
pub mod runner;
pub mod search;
pub mod view;
pub mod viewport;
