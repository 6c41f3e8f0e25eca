//! The bodies of quire's fuzz targets (`fuzz/fuzz_targets/*.rs`, run with cargo-fuzz on a
//! nightly toolchain) as plain functions, so the default `cargo test` can drive them too with a
//! bounded, seeded smoke run (`tests/tests/fuzz_smoke.rs`).
//!
//! Each function takes arbitrary bytes, does what the server does with such input, and panics
//! only when the server would misbehave: a panic escaping where the server has none contained,
//! or a broken invariant (a document that does not reload from its own encoding, a REST edit
//! that leaves the CRDT and the text mirror disagreeing).

use std::panic::{catch_unwind, AssertUnwindSafe};

use yrs::sync::Awareness;
use yrs::updates::decoder::Decode;
use yrs::{GetString, ReadTxn, StateVector, Transact, Update};

use crate::document::new_doc;
use crate::edit::{self, Edit};
use crate::mirror::{doc_text, Mirror, TEXT_NAME};
use crate::protocol::{decode_frame, Incoming};
use quire_holdback::Holdback;

/// The WebSocket message path: `protocol::decode_frame` on one frame, then every decoded
/// message applied to a document as the actor applies it (updates inside `catch_unwind`, a
/// rejected or panicking update ends the frame as it closes the connection). A document that
/// took every update must survive what a restart does to it: encoded whole, decoded into a
/// fresh document, the same text.
pub fn ws_frame(data: &[u8]) {
    // decode_frame contains decoder panics itself; one escaping would kill a connection task.
    let Ok(msgs) = decode_frame(data) else {
        return;
    };
    let mut awareness = Awareness::new(new_doc());
    let doc = awareness.doc().clone();
    let mut holdback = Holdback::default();
    let mut damaged = false;
    for msg in msgs {
        match msg {
            Incoming::SyncStep1(sv) => {
                // What the actor answers with (SyncStep2): must not panic on any state vector.
                let _ = doc.transact().encode_diff_v1(&sv);
            }
            Incoming::Update { bytes, update } => {
                // As `Actor::integrate`: pending blocks must encode, or the update is refused.
                let applied = catch_unwind(AssertUnwindSafe(|| {
                    let mut txn = doc.transact_mut();
                    let ok = holdback.apply(&mut txn, &bytes, update).is_ok();
                    if ok && txn.has_missing_updates() {
                        let sv = txn.state_vector();
                        let _ = txn.encode_state_as_update_v1(&sv);
                    }
                    ok
                }));
                if !matches!(applied, Ok(true)) {
                    // The actor kicks the connection and rebuilds the document from the store.
                    damaged = true;
                    break;
                }
            }
            Incoming::Awareness(update) => {
                let _ = awareness.apply_update(update);
            }
            Incoming::AwarenessQuery => {
                let _ = awareness.update();
            }
        }
    }
    if damaged {
        return;
    }
    // What a snapshot and reload do: the state as one update, into a fresh document.
    let (state, text, pending) = {
        let txn = doc.transact();
        let state = txn.encode_diff_v1(&StateVector::default());
        let text = txn.get_text(TEXT_NAME).map(|t| t.get_string(&txn));
        (
            state,
            text,
            txn.has_missing_updates() || !holdback.is_empty(),
        )
    };
    let reloaded = new_doc();
    let update = Update::decode_v1(&state).expect("the server's own encoding must decode");
    reloaded
        .transact_mut()
        .apply_update(update)
        .expect("the server's own encoding must apply");
    if !pending {
        let again = {
            let txn = reloaded.transact();
            txn.get_text(TEXT_NAME).map(|t| t.get_string(&txn))
        };
        assert_eq!(
            text.unwrap_or_default(),
            again.unwrap_or_default(),
            "a document does not reload to the same text"
        );
    }
}

/// The REST edit path: the first bytes (up to a NUL) are the document's text, the rest the
/// body of `POST /api/documents/{id}/edits`, parsed with the API's own request type. Accepted
/// edits are planned against the text mirror (`edit::plan`, which refuses out-of-range
/// positions) and applied to a yrs document exactly as the actor does; afterwards the CRDT's
/// text, the mirror's text and a plain-string model of the edits must agree.
pub fn rest_edits(data: &[u8]) {
    let (text, body) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let text = String::from_utf8_lossy(text).into_owned();
    if serde_json::from_slice::<crate::api::EditRequest>(body).is_err() {
        return;
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).expect("accepted by EditRequest, so JSON");
    let edits: Vec<Edit> = serde_json::from_value(value["edits"].clone())
        .expect("accepted by EditRequest, so its edits parse");
    apply_edits(&text, &edits);
}

/// Applies `edits` to a document holding `text` as the actor does, checking the CRDT, the
/// mirror and a plain-string model agree (or that the edits were refused as a whole).
pub fn apply_edits(text: &str, edits: &[Edit]) {
    let doc = new_doc();
    let ytext = doc.get_or_insert_text(TEXT_NAME);
    {
        let mut txn = doc.transact_mut();
        yrs::Text::insert(&ytext, &mut txn, 0, text);
    }
    let mut mirror = Mirror::from_text(text);
    let expected = model(text, edits);
    match edit::plan(mirror.buffer(), edits) {
        Err(_) => assert!(
            expected.is_none(),
            "edits in range were refused: {edits:?} on {} chars",
            text.chars().count()
        ),
        Ok(planned) => {
            let expected = expected.unwrap_or_else(|| {
                panic!(
                    "out-of-range edits were accepted: {edits:?} on {} chars",
                    text.chars().count()
                )
            });
            {
                let mut txn = doc.transact_mut();
                edit::apply(&mut txn, &ytext, &planned);
            }
            for e in edits {
                mirror.apply_edit(e);
            }
            assert_eq!(doc_text(&doc), expected, "CRDT text after {edits:?}");
            assert_eq!(mirror.text(), expected, "mirror text after {edits:?}");
        }
    }
}

/// The edits on a plain char vector; `None` if one is out of range.
fn model(text: &str, edits: &[Edit]) -> Option<String> {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let pos = usize::try_from(e.pos).ok()?;
        let del = usize::try_from(e.delete).ok()?;
        if pos > chars.len() || del > chars.len() - pos {
            return None;
        }
        chars.splice(pos..pos + del, e.insert.chars());
    }
    Some(chars.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_inputs() {
        ws_frame(&[0, 2, 2, 0, 0]);
        ws_frame(&[0, 0, 1, 5, 3]);
        ws_frame(&[
            1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        rest_edits(b"h\xc3\xa9llo \xf0\x9f\xa6\x80\0{\"edits\":[{\"pos\":6,\"delete\":1,\"insert\":\"x\"}]}");
        rest_edits(b"abc\0{\"edits\":[{\"pos\":4}]}");
        rest_edits(b"{\"edits\":[]}");
    }
}
