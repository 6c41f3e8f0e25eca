//! The replica driven directly, as mini-redis tests `Frame`: messages in, rows and frames out.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use yrs::sync::{Awareness, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::{ClientID, GetString, ReadTxn, StateVector, Text, Transact, Update};

use super::*;
use crate::edit::Edit;
use crate::protocol::{self, close, decode_messages, Incoming};
use crate::store::{OpRow, StoredDoc};

fn replica() -> Replica {
    Replica::load(
        Arc::from("doc"),
        &StoredDoc::default(),
        ReplicaLimits::default(),
    )
}

/// A client's update inserting `text` at `pos`, from client id `client`, after `base`.
fn client_update(client: u64, base: &yrs::Doc, pos: u32, text: &str) -> Vec<u8> {
    let doc = quire_wire::new_doc_with_client_id(ClientID::new(client));
    let state = base
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    doc.transact_mut()
        .apply_update(Update::decode_v1(&state).unwrap())
        .unwrap();
    let sv = doc.transact().state_vector();
    let t = doc.get_or_insert_text(crate::mirror::TEXT_NAME);
    t.insert(&mut doc.transact_mut(), pos, text);
    let update = doc.transact().encode_diff_v1(&sv);
    update
}

fn incoming_update(bytes: Vec<u8>) -> Incoming {
    let frame = protocol::update(bytes);
    protocol::decode_frame(&frame).unwrap().pop().unwrap()
}

/// Frames per connection, in delivery order.
fn delivered(outbox: &Outbox) -> HashMap<ConnId, Vec<Bytes>> {
    let mut out: HashMap<ConnId, Vec<Bytes>> = HashMap::new();
    for (conn, frame) in outbox.deliveries() {
        out.entry(conn).or_default().push(frame.clone());
    }
    out
}

fn messages(frames: &[Bytes]) -> Vec<Message> {
    frames
        .iter()
        .flat_map(|f| decode_messages(f).unwrap())
        .collect()
}

#[test]
fn join_queues_sync_step1_for_that_connection_only() {
    let mut r = replica();
    r.join(1, None);
    let out = delivered(&r.take_outbox());
    assert_eq!(out.len(), 1, "only the joiner gets frames: {out:?}");
    let msgs = messages(&out[&1]);
    assert!(
        matches!(msgs.as_slice(), [Message::Sync(SyncMessage::SyncStep1(_))]),
        "{msgs:?}"
    );
}

#[test]
fn an_update_becomes_one_row_relayed_to_everyone_else() {
    let mut r = replica();
    r.join(1, None);
    r.join(2, None);
    r.join(3, None);
    r.take_outbox();
    let update = client_update(7, r.doc(), 0, "hello");
    r.receive(1, incoming_update(update.clone()));
    let ops = r.take_ops();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].seq, 1);
    assert_eq!(ops[0].update_v1, update);
    assert_eq!(ops[0].origin.as_deref(), Some("conn-1"));
    assert_eq!(r.last_seq(), 1);
    let out = delivered(&r.take_outbox());
    assert!(
        !out.contains_key(&1),
        "the sender does not get its own update back"
    );
    for conn in [2, 3] {
        let msgs = messages(&out[&conn]);
        assert!(
            matches!(msgs.as_slice(), [Message::Sync(SyncMessage::Update(u))] if *u == update),
            "{msgs:?}"
        );
    }
    assert_eq!(r.text(None).unwrap().text, "hello");
}

#[test]
fn a_resent_update_makes_no_row_and_no_relay() {
    let mut r = replica();
    r.join(1, None);
    r.join(2, None);
    let update = client_update(7, r.doc(), 0, "x");
    r.receive(1, incoming_update(update.clone()));
    r.take_ops();
    r.take_outbox();
    r.receive(2, incoming_update(update));
    assert!(r.take_ops().is_empty());
    assert!(r.take_outbox().is_empty());
    assert_eq!(r.last_seq(), 1);
}

#[test]
fn a_connection_joining_after_an_update_gets_it_only_through_its_sync() {
    let mut r = replica();
    r.join(1, None);
    r.take_outbox();
    r.receive(1, incoming_update(client_update(7, r.doc(), 0, "early")));
    r.join(2, None);
    let out = delivered(&r.take_outbox());
    let msgs = messages(&out[&2]);
    // Its SyncStep1 only: the relay queued before it joined is not for it.
    assert!(
        matches!(msgs.as_slice(), [Message::Sync(SyncMessage::SyncStep1(_))]),
        "{msgs:?}"
    );
    // Its SyncStep1 is answered with everything.
    r.receive(2, Incoming::SyncStep1(StateVector::default()));
    let out = delivered(&r.take_outbox());
    let doc = quire_wire::new_doc();
    for msg in messages(&out[&2]) {
        match msg {
            Message::Sync(SyncMessage::SyncStep2(u)) | Message::Sync(SyncMessage::Update(u)) => {
                doc.transact_mut()
                    .apply_update(Update::decode_v1(&u).unwrap())
                    .unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(crate::mirror::doc_text(&doc), "early");
}

#[test]
fn an_out_of_order_update_is_stored_held_and_sent_to_syncing_peers_as_it_came() {
    let base = quire_wire::new_doc_with_client_id(ClientID::new(9));
    let first = client_update(9, &base, 0, "ab");
    base.transact_mut()
        .apply_update(Update::decode_v1(&first).unwrap())
        .unwrap();
    let second = client_update(9, &base, 2, "cd");
    let mut r = replica();
    r.join(1, None);
    r.receive(1, incoming_update(second.clone()));
    assert_eq!(r.take_ops().len(), 1, "a held update is stored at once");
    assert!(r.has_pending());
    assert!(r.snapshot_due().is_none() && r.final_snapshot().is_none());
    r.take_outbox();
    r.join(2, None);
    r.receive(2, Incoming::SyncStep1(StateVector::default()));
    let msgs = messages(&delivered(&r.take_outbox())[&2]);
    assert!(
        msgs.iter()
            .any(|m| matches!(m, Message::Sync(SyncMessage::Update(u)) if *u == second)),
        "the held update goes to a syncing peer as it came: {msgs:?}"
    );
    r.receive(1, incoming_update(first));
    assert!(!r.has_pending());
    assert_eq!(r.text(None).unwrap().text, "abcd");
    assert_eq!(r.last_seq(), 2);
}

#[test]
fn an_update_yrs_refuses_closes_its_connection_and_nothing_is_stored() {
    let mut r = replica();
    r.join(1, None);
    r.join(2, None);
    r.receive(1, incoming_update(client_update(9, r.doc(), 0, "abc")));
    r.take_ops();
    r.take_outbox();
    // Decodes, but claims an insert whose parent is the text's own item <9#1> (found by
    // mutating a valid update; yrs: "block parent must be deleted or shared ref type").
    let bad = vec![1, 1, 10, 0, 3, 151, 0, 9, 1, 2, 88, 89, 0];
    r.receive(1, incoming_update(bad));
    assert!(r.take_ops().is_empty(), "nothing stored");
    assert!(!r.has_peer(1));
    let kicks = r.take_kicks();
    assert_eq!(kicks.len(), 1);
    assert_eq!(kicks[0].0, 1);
    assert_eq!(kicks[0].1.code, close::INVALID_PAYLOAD);
    assert!(
        kicks[0].1.reason.starts_with("invalid update:"),
        "{:?}",
        kicks[0].1
    );
    assert!(r.has_peer(2), "other connections stay");
    assert!(
        r.needs_reload(),
        "yrs may have been left half-way: reload from the store"
    );
    r.reload(&StoredDoc::default());
    assert!(!r.needs_reload());
}

#[test]
fn messages_from_a_connection_that_left_are_ignored() {
    let mut r = replica();
    r.join(1, None);
    let update = client_update(7, r.doc(), 0, "x");
    r.leave(1);
    r.receive(1, incoming_update(update));
    assert!(r.take_ops().is_empty());
    assert_eq!(r.last_seq(), 0);
}

#[test]
fn presence_is_relayed_to_all_and_removed_when_its_connection_leaves() {
    let mut r = replica();
    r.join(1, None);
    r.join(2, None);
    r.take_outbox();
    let mut client = Awareness::new(quire_wire::new_doc_with_client_id(ClientID::new(42)));
    client.set_local_state(r#"{"user":"ann"}"#).unwrap();
    let update = client.update().unwrap();
    r.receive(1, Incoming::Awareness(update));
    let out = delivered(&r.take_outbox());
    assert_eq!(
        out.len(),
        2,
        "echoed to the sender too (keeps a lone client alive)"
    );
    r.leave(1);
    let out = delivered(&r.take_outbox());
    let msgs = messages(&out[&2]);
    let Message::Awareness(removal) = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert_eq!(
        &*removal.clients[&ClientID::new(42)].json,
        "null",
        "its presence is removed"
    );
}

#[test]
fn a_connection_cannot_speak_for_another_connections_client() {
    let mut r = replica();
    r.join(1, None);
    r.join(2, None);
    let mut ann = Awareness::new(quire_wire::new_doc_with_client_id(ClientID::new(42)));
    ann.set_local_state(r#"{"user":"ann"}"#).unwrap();
    r.receive(1, Incoming::Awareness(ann.update().unwrap()));
    r.take_outbox();
    // Connection 2 forges client 42 (a higher clock, another name), and adds its own 7.
    let mut forger = Awareness::new(quire_wire::new_doc_with_client_id(ClientID::new(42)));
    for _ in 0..5 {
        forger.set_local_state(r#"{"user":"mallory"}"#).unwrap();
    }
    let mut forged = forger.update().unwrap();
    let mut own = Awareness::new(quire_wire::new_doc_with_client_id(ClientID::new(7)));
    own.set_local_state(r#"{"user":"bob"}"#).unwrap();
    forged.clients.extend(own.update().unwrap().clients);
    r.receive(2, Incoming::Awareness(forged));
    let out = delivered(&r.take_outbox());
    for frames in out.values() {
        for msg in messages(frames) {
            let Message::Awareness(update) = msg else {
                continue;
            };
            assert!(
                !update.clients.contains_key(&ClientID::new(42)),
                "the forged state was relayed"
            );
            assert!(
                update.clients.contains_key(&ClientID::new(7)),
                "bob's own state goes"
            );
        }
    }
    // Ann's state is still hers, and a forged removal changes nothing either.
    let mut removal = forger.update().unwrap();
    removal.clients.get_mut(&ClientID::new(42)).unwrap().json = "null".into();
    r.receive(2, Incoming::Awareness(removal));
    assert!(r.take_outbox().is_empty(), "nothing relayed");
    r.join(3, None);
    r.receive(3, Incoming::AwarenessQuery);
    let out = delivered(&r.take_outbox());
    let seen: Vec<String> = messages(&out[&3])
        .into_iter()
        .filter_map(|m| match m {
            Message::Awareness(u) => u
                .clients
                .get(&ClientID::new(42))
                .map(|e| e.json.to_string()),
            _ => None,
        })
        .collect();
    let anns = ann.update().unwrap().clients[&ClientID::new(42)]
        .json
        .to_string();
    assert!(
        !seen.is_empty() && seen.iter().all(|s| *s == anns),
        "{seen:?}"
    );
    // Once ann's connection leaves, the id is free again.
    r.leave(1);
    r.take_outbox();
    let mut again = Awareness::new(quire_wire::new_doc_with_client_id(ClientID::new(42)));
    for _ in 0..9 {
        again
            .set_local_state(r#"{"user":"ann, reconnected"}"#)
            .unwrap();
    }
    r.receive(2, Incoming::Awareness(again.update().unwrap()));
    assert!(!r.take_outbox().is_empty());
}

#[test]
fn presence_not_renewed_expires() {
    let mut r = replica();
    r.join(1, None);
    let mut client = Awareness::new(quire_wire::new_doc_with_client_id(ClientID::new(42)));
    client.set_local_state(r#"{"user":"ann"}"#).unwrap();
    r.receive(1, Incoming::Awareness(client.update().unwrap()));
    r.take_outbox();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    r.expire_awareness(now, 30_000);
    assert!(r.take_outbox().is_empty(), "fresh presence stays");
    r.expire_awareness(now + 31_000, 30_000);
    let msgs = messages(&delivered(&r.take_outbox())[&1]);
    assert!(
        matches!(msgs.as_slice(), [Message::Awareness(_)]),
        "{msgs:?}"
    );
}

#[test]
fn rest_edits_are_checked_recorded_and_relayed_to_everyone() {
    let mut r = replica();
    r.join(1, None);
    r.take_outbox();
    let applied = r
        .edit(
            None,
            &[Edit {
                pos: 0,
                delete: 0,
                insert: "héllo".into(),
            }],
            "rest",
        )
        .unwrap();
    assert_eq!((applied.version, applied.length), (1, 5));
    let ops = r.take_ops();
    assert_eq!(ops[0].chars, Some((5, 0)));
    assert_eq!(ops[0].origin.as_deref(), Some("rest"));
    assert_eq!(delivered(&r.take_outbox())[&1].len(), 1);
    let err = r
        .edit(
            None,
            &[Edit {
                pos: 6,
                delete: 0,
                insert: "!".into(),
            }],
            "rest",
        )
        .unwrap_err();
    assert!(matches!(err, DocError::Edit(_)), "{err}");
    assert!(matches!(
        r.edit(Some(0), &[], "rest"),
        Err(DocError::Stale { current: 1 })
    ));
    assert!(matches!(
        r.text(Some(5)),
        Err(DocError::UnknownVersion {
            version: 5,
            current: 1
        })
    ));
    let applied = r.replace_text("hello, world", "rest").unwrap();
    assert_eq!(applied.version, 2);
    assert_eq!(r.text(None).unwrap().text, "hello, world");
    assert_eq!(
        crate::mirror::doc_text(r.doc()),
        "hello, world",
        "the CRDT agrees with the mirror"
    );
}

#[test]
fn the_size_limit_refuses_without_closing() {
    let limits = ReplicaLimits {
        max_document_bytes: 64,
        ..ReplicaLimits::default()
    };
    let mut r = Replica::load(Arc::from("doc"), &StoredDoc::default(), limits);
    r.join(1, None);
    r.take_outbox();
    let big = client_update(7, r.doc(), 0, &"x".repeat(100));
    r.receive(1, incoming_update(big));
    assert!(r.take_ops().is_empty());
    assert!(r.has_peer(1), "not closed: it would resend for ever");
    let msgs = messages(&delivered(&r.take_outbox())[&1]);
    assert!(
        matches!(msgs.as_slice(), [Message::Auth(Some(_))]),
        "told why: {msgs:?}"
    );
    assert!(matches!(
        r.edit(
            None,
            &[Edit {
                pos: 0,
                delete: 0,
                insert: "y".repeat(100)
            }],
            "rest"
        ),
        Err(DocError::TooLarge(_))
    ));
}

#[test]
fn rows_and_snapshots_reload_to_the_same_document() {
    let mut r = replica();
    r.join(1, None);
    for (i, word) in ["one ", "two ", "three"].into_iter().enumerate() {
        let len = r.text(None).unwrap().text.chars().count() as u32;
        r.receive(
            1,
            incoming_update(client_update(10 + i as u64, r.doc(), len, word)),
        );
    }
    let rows: Vec<OpRow> = r
        .take_ops()
        .into_iter()
        .map(|op| OpRow {
            seq: op.seq,
            update_v1: op.update_v1,
        })
        .collect();
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "gap-free sequence"
    );
    let from_rows = StoredDoc {
        ops: rows.clone(),
        ..StoredDoc::default()
    };
    let mut again = Replica::load(Arc::from("doc"), &from_rows, ReplicaLimits::default());
    assert_eq!(again.last_seq(), 3);
    assert_eq!(again.text(None).unwrap().text, "one two three");
    let (seq, state) = r.final_snapshot().expect("rows since the last snapshot");
    let from_snapshot = StoredDoc {
        snapshot: Some((seq, state)),
        ..StoredDoc::default()
    };
    let mut again = Replica::load(Arc::from("doc"), &from_snapshot, ReplicaLimits::default());
    assert_eq!(again.last_seq(), 3);
    assert_eq!(again.text(None).unwrap().text, "one two three");
    // A reload (after yrs failed) keeps the connections.
    r.reload(&from_rows);
    assert!(r.has_peer(1));
    assert_eq!(r.text(None).unwrap().text, "one two three");
    let t = r.doc().get_or_insert_text(crate::mirror::TEXT_NAME);
    assert_eq!(t.get_string(&r.doc().transact()), "one two three");
}

#[test]
fn a_snapshot_is_due_past_the_thresholds() {
    let limits = ReplicaLimits {
        snapshot_ops: 2,
        snapshot_bytes: u64::MAX,
        ..ReplicaLimits::default()
    };
    let mut r = Replica::load(Arc::from("doc"), &StoredDoc::default(), limits);
    r.join(1, None);
    r.receive(1, incoming_update(client_update(7, r.doc(), 0, "a")));
    assert!(r.snapshot_due().is_none());
    r.receive(1, incoming_update(client_update(8, r.doc(), 1, "b")));
    let (seq, _) = r.snapshot_due().expect("two rows");
    assert_eq!(seq, 2);
    assert!(r.snapshot_due().is_none(), "counters restart");
}

#[test]
fn an_awareness_query_is_answered_to_the_asker() {
    let mut r = replica();
    r.join(1, None);
    r.join(2, None);
    r.take_outbox();
    r.receive(1, Incoming::AwarenessQuery);
    let out = delivered(&r.take_outbox());
    assert_eq!(out.keys().copied().collect::<Vec<_>>(), vec![1]);
}
