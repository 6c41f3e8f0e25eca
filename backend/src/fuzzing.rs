//! The bodies of quire's fuzz targets (`fuzz/fuzz_targets/*.rs`, run with cargo-fuzz on a
//! nightly toolchain) as plain functions, so the default `cargo test` can drive them too with a
//! bounded, seeded smoke run (`tests/tests/fuzz_smoke.rs`).
//!
//! Each function takes arbitrary bytes, does what the server does with such input, and panics
//! only when the server would misbehave: a panic escaping where the server has none contained,
//! or a broken invariant (a document that does not reload from its own encoding, a REST edit
//! that leaves the CRDT and the text mirror disagreeing).

use std::sync::Arc;

use yrs::updates::decoder::Decode;
use yrs::{GetString, ReadTxn, Transact, Update};

use crate::document::{server_doc, ConnId, DocError, Replica, ReplicaLimits};
use crate::edit::Edit;
use crate::mirror::{doc_text, TEXT_NAME};
use crate::protocol::decode_frame;
use crate::store::{OpRow, StoredDoc};

/// The connection a fuzz input arrives on.
const CONN: ConnId = 1;

fn empty_replica() -> Replica {
    Replica::load(
        Arc::from("fuzz"),
        &StoredDoc::default(),
        ReplicaLimits::default(),
    )
}

/// The WebSocket message path: `protocol::decode_frame` on one frame, then every decoded
/// message handed to a [`Replica`] exactly as the actor hands it (a rejected or panicking update
/// closes the connection, which ends the frame). A replica that took every update must survive
/// what a restart does to it: its state encoded whole and decoded into a fresh document gives
/// the same text, and so do the op-log rows it produced, loaded as the actor loads them.
pub fn ws_frame(data: &[u8]) {
    // decode_frame contains decoder panics itself; one escaping would kill a connection task.
    let Ok(msgs) = decode_frame(data) else {
        return;
    };
    let mut replica = empty_replica();
    replica.join(CONN, None);
    for msg in msgs {
        replica.receive(CONN, msg);
        if !replica.has_peer(CONN) {
            break;
        }
    }
    if replica.needs_reload() {
        // The actor reloads such a document from the store, which holds only good rows.
        return;
    }
    let text = replica
        .text(None)
        .expect("the current version is always readable")
        .text;
    assert_eq!(
        text,
        doc_text(replica.doc()),
        "the mirror and the CRDT disagree"
    );
    let pending = replica.has_pending();
    // What a snapshot and reload do: the state as one update, into a fresh document.
    let state = replica.encode_state();
    let reloaded = server_doc();
    let update = Update::decode_v1(&state).expect("the server's own encoding must decode");
    reloaded
        .transact_mut()
        .apply_update(update)
        .expect("the server's own encoding must apply");
    // What a restart without a snapshot does: the rows, through the holdback.
    let rows = StoredDoc {
        ops: replica
            .take_ops()
            .into_iter()
            .map(|op| OpRow {
                seq: op.seq,
                update_v1: op.update_v1,
            })
            .collect(),
        ..StoredDoc::default()
    };
    let mut from_rows = Replica::load(Arc::from("fuzz"), &rows, ReplicaLimits::default());
    assert_eq!(
        from_rows.last_seq(),
        replica.last_seq(),
        "rows are numbered one by one"
    );
    if !pending {
        let again = {
            let txn = reloaded.transact();
            txn.get_text(TEXT_NAME).map(|t| t.get_string(&txn))
        };
        assert_eq!(
            text,
            again.unwrap_or_default(),
            "a document does not reload to the same text"
        );
        assert_eq!(
            text,
            from_rows.text(None).expect("current").text,
            "a document does not reload from its rows to the same text"
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

/// Applies `edits` to a replica holding `text` as the actor does, checking the CRDT, the
/// mirror and a plain-string model agree (or that the edits were refused as a whole).
pub fn apply_edits(text: &str, edits: &[Edit]) {
    let mut replica = empty_replica();
    let seed = Edit {
        pos: 0,
        delete: 0,
        insert: text.to_string(),
    };
    replica
        .edit(None, &[seed], "fuzz")
        .expect("inserting at 0 into an empty document");
    let expected = model(text, edits);
    match replica.edit(None, edits, "fuzz") {
        Err(DocError::Edit(_)) => assert!(
            expected.is_none(),
            "edits in range were refused: {edits:?} on {} chars",
            text.chars().count()
        ),
        Err(err) => panic!("edits failed for another reason than their positions: {err}"),
        Ok(applied) => {
            let expected = expected.unwrap_or_else(|| {
                panic!(
                    "out-of-range edits were accepted: {edits:?} on {} chars",
                    text.chars().count()
                )
            });
            assert_eq!(applied.length, expected.chars().count() as u64);
            assert_eq!(
                doc_text(replica.doc()),
                expected,
                "CRDT text after {edits:?}"
            );
            let mirror = replica.text(None).expect("current").text;
            assert_eq!(mirror, expected, "mirror text after {edits:?}");
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
