//! The text mirror: an editor-core buffer and word index holding a yrs document's text, so
//! REST reads, search and autocomplete never walk the CRDT, and autocomplete's index is updated
//! word by word rather than rebuilt.
//!
//! Two ways to keep it current:
//! - [`Mirror::sync`], what the document actor uses: given the document's text, it diffs it
//!   against the mirror (common prefix and suffix, then the middle) and applies only the
//!   differences, re-counting only the words around them. The actor calls it when something
//!   reads the mirror or on its 1-second tick, so one sync covers any number of updates, and
//!   applying a received update stays at yrs' ~1–2 µs. (A yrs text observer would hand over
//!   each update's delta, but yrs computes every delta by walking the text's whole item list:
//!   ~400 µs per update at the end of the automerge-paper trace, 200× the cost of applying it.)
//!   The actor's own REST edits are applied to the mirror directly, as edits, with no walk.
//! - [`Mirror::attach`]: an observer that applies each transaction's delta, with the chars each
//!   inserted and deleted; for replays of the op log that need per-update counts (history).
//!
//! Embedded objects in the text (a rich-text client's images, not something quire's clients
//! make) count one position in yrs; the mirror holds U+FFFC OBJECT REPLACEMENT CHARACTER for
//! each, so char positions in the API stay aligned with the CRDT's.

use std::sync::{Arc, Mutex, MutexGuard};

use editor_core::trie::WordIndex;
use editor_core::{GapBuffer, PosError, TextBuffer};
use yrs::types::text::{Diff, YChange};
use yrs::types::Delta;
use yrs::{Any, Doc, Observable, Out, ReadTxn, Text, TextRef, Transact};

/// The name of the shared text quire serves (crate quire-wire).
pub use quire_wire::TEXT_NAME;

/// What the mirror holds for an embedded (non-text) item.
pub const EMBED: char = '\u{FFFC}';

const OBSERVER_KEY: &str = "quire-mirror";

/// A document's text as an editor-core buffer, with its word index.
#[derive(Debug, Default, Clone)]
pub struct Mirror {
    buf: GapBuffer,
    words: WordIndex,
    /// Chars inserted and deleted since [`Mirror::take_counts`] was last called.
    inserted: u64,
    deleted: u64,
}

/// The mirror as the actor and the document's observer share it.
#[derive(Debug, Clone, Default)]
pub struct SharedMirror(Arc<Mutex<Mirror>>);

impl SharedMirror {
    pub fn lock(&self) -> MutexGuard<'_, Mirror> {
        // The mirror is rebuilt from yrs whenever a change does not fit it, so a panic while it
        // was held cannot leave anything that later reads would trust.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Mirror {
    pub fn from_text(text: &str) -> Mirror {
        let buf = GapBuffer::from_text(text);
        let words = WordIndex::build(&buf);
        Mirror {
            buf,
            words,
            inserted: 0,
            deleted: 0,
        }
    }

    /// Mirrors `doc`'s text from now on: fills a mirror with its current text and registers an
    /// observer that applies every later change.
    pub fn attach(doc: &Doc) -> SharedMirror {
        let text = doc.get_or_insert_text(TEXT_NAME);
        let shared = SharedMirror(Arc::new(Mutex::new(Mirror::from_text(&text_of(
            &doc.transact(),
            &text,
        )))));
        let observed = shared.clone();
        text.observe(OBSERVER_KEY, move |txn, event| {
            let mut mirror = observed.lock();
            if let Err(err) = mirror.apply_delta(event.delta(txn)) {
                // A change that does not fit (a client split a surrogate pair, say): read the
                // whole text once rather than serve a wrong one.
                tracing::warn!(%err, "text mirror out of step; rebuilding it from the document");
                let old_len = mirror.len_chars() as u64;
                let (ins, del) = (mirror.inserted, mirror.deleted);
                *mirror = Mirror::from_text(&text_of(txn, event.target()));
                let new_len = mirror.len_chars() as u64;
                mirror.inserted = ins + new_len.saturating_sub(old_len);
                mirror.deleted = del + old_len.saturating_sub(new_len);
            }
        });
        shared
    }

    /// Makes the mirror hold `text`, changing only what differs.
    pub fn sync(&mut self, text: &str) {
        let old = self.buf.to_text();
        for e in crate::edit::diff(&old, text) {
            self.apply_edit(&e);
        }
    }

    /// Applies one edit (checked by the caller against this text).
    pub fn apply_edit(&mut self, e: &crate::edit::Edit) {
        let (pos, end) = (e.pos as usize, (e.pos + e.delete) as usize);
        if self
            .words
            .apply_edit(&mut self.buf, pos..end, &e.insert)
            .is_err()
        {
            // Unreachable for checked edits; never leave a wrong text behind.
            let mut text = self.buf.to_text();
            let bytes = |c: usize| text.char_indices().nth(c).map_or(text.len(), |(b, _)| b);
            let (from, to) = (bytes(pos), bytes(end));
            if from <= to {
                text.replace_range(from..to, &e.insert);
            }
            *self = Mirror::from_text(&text);
        }
    }

    /// Applies one transaction's delta (positions in UTF-16 code units of the text before it).
    pub fn apply_delta(&mut self, delta: &[Delta]) -> Result<(), PosError> {
        // Position in UTF-16 units of the text as edited so far.
        let mut at = 0usize;
        for d in delta {
            match d {
                Delta::Retain(n, _) => at += *n as usize,
                Delta::Deleted(n) => {
                    let start = self.buf.utf16_to_char(at)?;
                    let end = self.buf.utf16_to_char(at + *n as usize)?;
                    self.words.apply_edit(&mut self.buf, start..end, "")?;
                    self.deleted += (end - start) as u64;
                }
                Delta::Inserted(value, _) => {
                    let start = self.buf.utf16_to_char(at)?;
                    let embed;
                    let s = match value {
                        Out::Any(Any::String(s)) => &**s,
                        _ => {
                            embed = EMBED.to_string();
                            &embed
                        }
                    };
                    self.words.apply_edit(&mut self.buf, start..start, s)?;
                    self.inserted += s.chars().count() as u64;
                    at += s.encode_utf16().count();
                }
            }
        }
        Ok(())
    }

    /// `(inserted, deleted)` chars since the last call.
    pub fn take_counts(&mut self) -> (u64, u64) {
        let counts = (self.inserted, self.deleted);
        self.inserted = 0;
        self.deleted = 0;
        counts
    }

    pub fn buffer(&self) -> &GapBuffer {
        &self.buf
    }

    pub fn words(&self) -> &WordIndex {
        &self.words
    }

    pub fn len_chars(&self) -> usize {
        self.buf.len_chars()
    }

    pub fn text(&self) -> String {
        self.buf.to_text()
    }
}

/// The text of `text` with embeds as [`EMBED`] (yrs' `get_string` drops them, which would shift
/// every position after one).
pub fn text_of<T: ReadTxn>(txn: &T, text: &TextRef) -> String {
    let mut out = String::new();
    for Diff { insert, .. } in text.diff(txn, YChange::identity) {
        match insert {
            Out::Any(Any::String(s)) => out.push_str(&s),
            _ => out.push(EMBED),
        }
    }
    out
}

/// The text of a whole document (see [`text_of`]).
pub fn doc_text(doc: &Doc) -> String {
    let text = doc.get_or_insert_text(TEXT_NAME);
    text_of(&doc.transact(), &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quire_wire::new_doc as utf16_doc;
    use yrs::updates::decoder::Decode;
    use yrs::{GetString, StateVector, Update};

    /// Random edits (non-BMP text included) from two peers, exchanged as updates: the mirror
    /// of a third document that receives them always equals its yrs text, and the word index
    /// equals one built from scratch.
    #[test]
    fn mirror_follows_remote_updates() {
        let server = utf16_doc();
        let mirror = Mirror::attach(&server);
        let peers = [utf16_doc(), utf16_doc()];
        let pieces = ["a", "héllo ", "😀", "日本 ", "𝄞x", "\n", "word_1 ", "🦀🦀"];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..300 {
            let peer = &peers[round % 2];
            let text = peer.get_or_insert_text(TEXT_NAME);
            let update = {
                let mut txn = peer.transact_mut();
                let s = text.get_string(&txn);
                let chars: Vec<char> = s.chars().collect();
                let units = |c: usize| chars[..c].iter().map(|c| c.len_utf16()).sum::<usize>();
                if chars.len() > 5 && next(3) == 0 {
                    let pos = next(chars.len() - 1);
                    let len = 1 + next((chars.len() - pos).min(4));
                    let (a, b) = (units(pos), units(pos + len));
                    text.remove_range(&mut txn, a as u32, (b - a) as u32);
                } else {
                    let pos = next(chars.len() + 1);
                    text.insert(&mut txn, units(pos) as u32, pieces[next(pieces.len())]);
                }
                txn.encode_update_v1()
            };
            for target in [&server, &peers[(round + 1) % 2]] {
                target
                    .transact_mut()
                    .apply_update(Update::decode_v1(&update).unwrap())
                    .unwrap();
            }
            let m = mirror.lock();
            assert_eq!(m.text(), doc_text(&server), "round {round}");
        }
        let m = mirror.lock();
        let fresh = WordIndex::build(m.buffer());
        for prefix in ["", "h", "w", "日", "a"] {
            assert_eq!(m.words().top_k(prefix, 50), fresh.top_k(prefix, 50));
        }
        // A late document built from the whole state mirrors the same text.
        let late = utf16_doc();
        let state = server
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        late.transact_mut()
            .apply_update(Update::decode_v1(&state).unwrap())
            .unwrap();
        assert_eq!(Mirror::attach(&late).lock().text(), m.text());
    }

    #[test]
    fn sync_updates_text_and_words() {
        let mut m = Mirror::from_text("alpha beta gamma beta");
        m.sync("alpha betamax gamma 😀 beta delta");
        assert_eq!(m.text(), "alpha betamax gamma 😀 beta delta");
        let fresh = WordIndex::build(m.buffer());
        assert_eq!(m.words().top_k("", 50), fresh.top_k("", 50));
        m.sync("");
        assert_eq!(m.words().top_k("", 50), vec![]);
    }

    #[test]
    fn counts_inserted_and_deleted_chars() {
        let doc = utf16_doc();
        let mirror = Mirror::attach(&doc);
        let text = doc.get_or_insert_text(TEXT_NAME);
        text.insert(&mut doc.transact_mut(), 0, "a😀b");
        assert_eq!(mirror.lock().take_counts(), (3, 0));
        // Delete the emoji (2 UTF-16 units) and insert two chars.
        {
            let mut txn = doc.transact_mut();
            text.remove_range(&mut txn, 1, 2);
            text.insert(&mut txn, 1, "xy");
        }
        assert_eq!(mirror.lock().take_counts(), (2, 1));
        assert_eq!(mirror.lock().text(), "axyb");
    }
}
