//! quire's wire contract, written once for the server, the terminal editor and the tests: the
//! Yjs sync protocol and awareness as `yrs::sync` implements them, plus what quire adds around
//! it — the shared text's name, documents measured in UTF-16, document id rules, close codes and
//! the answer to a peer's SyncStep1.
//!
//! A frame may hold several messages (we accept that); we send one message per frame because the
//! y-websocket 3 client decodes exactly one per frame. Frames are checked for truncation before
//! they are decoded ([`decode_frame`], [`decode_messages`]): yrs alone would accept the messages
//! before a cut one and silently drop the rest.

mod bounded;

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use quire_holdback::Holdback;
use yrs::encoding::read::Cursor;
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::updates::decoder::DecoderV1;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, OffsetKind, Options, ReadTxn, StateVector, Transact, Update};

/// The name of the shared text quire serves: `ydoc.getText('content')`.
pub const TEXT_NAME: &str = "content";

/// Updates still waiting in a [`Holdback`] are sent one message each to a syncing peer up to
/// this many; more go as one merged update, so a long out-of-order burst cannot overflow the
/// peer's queue (see [`sync_reply`]).
pub const MAX_SEPARATE_UNSETTLED: usize = 64;

/// WebSocket close codes quire uses, with the reason sent beside them.
pub mod close {
    /// Server shutting down; reconnect later.
    pub const GOING_AWAY: u16 = 1001;
    /// A text frame: the protocol is binary.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A frame that does not decode, or an update the CRDT rejects.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The connection's updates cost the document far more work than their size explains
    /// (see the server's `limits::WorkDebt`).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message over the configured size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Something failed on the server's side.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The client did not keep up with the document's updates; reconnecting resyncs it.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The document was deleted (through the REST API); it will not come back under this id.
    pub const DOCUMENT_DELETED: u16 = 4404;
    /// The connection's access token expired or was revoked; reconnect with a new one.
    pub const TOKEN_EXPIRED: u16 = 4401;
    /// The connection sent more messages per second than `--max-messages-per-sec` allows,
    /// beyond its burst.
    pub const RATE_LIMITED: u16 = 4429;
}

/// Longest document id accepted.
pub const MAX_DOC_ID_LEN: usize = 128;

/// An author's colour (`#rrggbb`) in history and blame: the same name gets the same colour from
/// the server, the terminal editor and the browser (web/src/authors.js computes it alike).
pub fn author_color(author: &str) -> String {
    // FNV-1a: stable across builds and languages, unlike std's hasher.
    let mut hash: u32 = 0x811c_9dc5;
    for b in author.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let hue = f64::from(hash % 360);
    let (s, l) = (0.65, 0.42);
    let c = (1.0 - (2.0 * l - 1.0_f64).abs()) * s;
    let x = c * (1.0 - ((hue / 60.0) % 2.0 - 1.0).abs());
    let m = l - c / 2.0;
    let (r, g, b) = match hue as u32 / 60 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let byte = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    format!("#{:02x}{:02x}{:02x}", byte(r), byte(g), byte(b))
}

/// Checks a document id: 1–128 characters of `A-Z a-z 0-9 . _ -`.
pub fn validate_doc_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_DOC_ID_LEN {
        return Err(format!(
            "document id must be 1 to {MAX_DOC_ID_LEN} characters long (got {})",
            id.chars().count()
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "document id may only contain A-Z a-z 0-9 . _ - (found {bad:?})"
        ));
    }
    Ok(())
}

/// The options every quire document starts from: offsets in UTF-16 code units, as Yjs counts,
/// so text positions and deltas agree with what browser clients count. Callers that need more
/// (a client id, no garbage collection) start from these.
pub fn doc_options() -> Options {
    Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    }
}

/// A fresh replica as a Yjs browser client holds it ([`doc_options`], random client id).
pub fn new_doc() -> Doc {
    Doc::with_options(doc_options())
}

/// [`new_doc`] with a chosen client id (replays that must be exact).
pub fn new_doc_with_client_id(client_id: ClientID) -> Doc {
    Doc::with_options(Options {
        client_id,
        ..doc_options()
    })
}

/// A message from a peer, decoded and validated before it reaches a document.
#[derive(Debug)]
pub enum Incoming {
    SyncStep1(yrs::StateVector),
    /// SyncStep2 or Update: raw bytes (stored and relayed as they came) and the decoded update.
    Update {
        bytes: Vec<u8>,
        update: Update,
    },
    Awareness(yrs::sync::AwarenessUpdate),
    AwarenessQuery,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("invalid update: {0}")]
    InvalidUpdate(String),
    #[error("decoder panicked on this input")]
    Panic,
}

pub use bounded::{decode_update, MAX_ANY_DEPTH};

/// Decodes every message of one binary frame from a client, as the server takes them. All or
/// nothing: one bad message (or an empty frame) refuses the frame, so a half-valid frame never
/// changes a document. Auth and custom messages are ignored. What decoding costs is bounded by
/// the frame's size ([`decode_update`]).
pub fn decode_frame(frame: &[u8]) -> Result<Vec<Incoming>, DecodeError> {
    // yrs decodes untrusted bytes; a panic there must cost this frame, not the process.
    catch_unwind(AssertUnwindSafe(|| {
        decode_frame_inner(frame, true).map(|(msgs, _)| msgs)
    }))
    .unwrap_or(Err(DecodeError::Panic))
}

/// [`decode_frame`] for a connection that may not change the document: updates are dropped
/// without being decoded, and counted when they carry anything (anything but the empty update
/// `[0, 0]`, which a client with nothing new sends in answer to SyncStep1).
pub fn decode_frame_read_only(frame: &[u8]) -> Result<(Vec<Incoming>, usize), DecodeError> {
    catch_unwind(AssertUnwindSafe(|| decode_frame_inner(frame, false)))
        .unwrap_or(Err(DecodeError::Panic))
}

/// The empty update in the v1 encoding: no clients, an empty delete set.
const EMPTY_UPDATE_V1: [u8; 2] = [0, 0];

fn decode_frame_inner(
    frame: &[u8],
    decode_updates: bool,
) -> Result<(Vec<Incoming>, usize), DecodeError> {
    if frame.is_empty() {
        return Err(DecodeError::Malformed("empty frame".into()));
    }
    check_framing(frame)?;
    let mut decoder = DecoderV1::new(Cursor::new(frame));
    let mut out = Vec::new();
    let mut refused = 0;
    for msg in MessageReader::new(&mut decoder) {
        let msg = msg.map_err(|e| DecodeError::Malformed(e.to_string()))?;
        match msg {
            Message::Sync(SyncMessage::SyncStep1(sv)) => out.push(Incoming::SyncStep1(sv)),
            Message::Sync(SyncMessage::SyncStep2(bytes) | SyncMessage::Update(bytes)) => {
                if !decode_updates {
                    refused += usize::from(bytes[..] != EMPTY_UPDATE_V1);
                    continue;
                }
                let update =
                    decode_update(&bytes).map_err(|e| DecodeError::InvalidUpdate(e.to_string()))?;
                out.push(Incoming::Update { bytes, update });
            }
            Message::Awareness(update) => out.push(Incoming::Awareness(update)),
            Message::AwarenessQuery => out.push(Incoming::AwarenessQuery),
            Message::Auth(_) | Message::Custom(..) => {}
        }
    }
    Ok((out, refused))
}

/// Decodes every message of one binary frame as a client takes them from the server: all of
/// them, SyncStep2 apart from Update and permission-denied (auth) reasons included; updates are
/// left encoded. All or nothing, like [`decode_frame`], with the same truncation check. An empty
/// frame holds no messages.
pub fn decode_messages(frame: &[u8]) -> Result<Vec<Message>, DecodeError> {
    catch_unwind(AssertUnwindSafe(|| {
        check_framing(frame)?;
        let mut decoder = DecoderV1::new(Cursor::new(frame));
        MessageReader::new(&mut decoder)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DecodeError::Malformed(e.to_string()))
    }))
    .unwrap_or(Err(DecodeError::Panic))
}

/// Walks the message boundaries of a frame as y-protocols lays them out, so that a frame whose
/// last message is cut short is refused whole: yrs' `MessageReader` stops silently at a
/// truncated message, which would accept the messages before it and drop the rest. It also
/// checks the counts that `MessageReader` decodes eagerly (a SyncStep1's state vector, an
/// awareness update) against the bytes that follow them: yrs reserves room for a claimed count
/// before reading it.
fn check_framing(frame: &[u8]) -> Result<(), DecodeError> {
    use yrs::encoding::read::Read;
    let malformed = |e: yrs::encoding::read::Error| {
        DecodeError::Malformed(format!("truncated or malformed message: {e}"))
    };
    let mut cursor = Cursor::new(frame);
    while cursor.has_content() {
        let tag: u8 = cursor.read_var().map_err(malformed)?;
        match tag {
            // Sync: sub-tag and payload (an unknown sub-tag is refused by the decoder).
            0 => {
                let sub: u8 = cursor.read_var().map_err(malformed)?;
                let payload = cursor.read_buf().map_err(malformed)?;
                if sub == 0 {
                    // Pairs of varints: client and clock.
                    bounded::check_counts(payload, 2)
                        .map_err(|e| DecodeError::Malformed(format!("state vector {e}")))?;
                }
            }
            // Awareness: entries of a client, a clock and a JSON string.
            1 => {
                let payload = cursor.read_buf().map_err(malformed)?;
                bounded::check_counts(payload, 3)
                    .map_err(|e| DecodeError::Malformed(format!("awareness update {e}")))?;
            }
            // Auth: a reason string follows "permission denied" (0).
            2 => {
                if cursor.read_var::<u8>().map_err(malformed)? == 0 {
                    cursor.read_string().map_err(malformed)?;
                }
            }
            // Awareness query: no payload.
            3 => {}
            // Custom messages: one payload.
            _ => {
                cursor.read_buf().map_err(malformed)?;
            }
        }
    }
    Ok(())
}

/// Encodes one message as one frame.
pub fn encode(msg: &Message) -> Bytes {
    Bytes::from(msg.encode_v1())
}

/// `[0][0] stateVector`: SyncStep1.
pub fn sync_step1(sv: &yrs::StateVector) -> Bytes {
    encode(&Message::Sync(SyncMessage::SyncStep1(sv.clone())))
}

/// `[0][1] update`: SyncStep2.
pub fn sync_step2(update: Vec<u8>) -> Bytes {
    encode(&Message::Sync(SyncMessage::SyncStep2(update)))
}

/// `[2][0] reason`: the protocol's permission-denied message (y-protocols `auth`), sent for a
/// refused update.
pub fn permission_denied(reason: &str) -> Bytes {
    Bytes::from(Message::Auth(Some(reason.to_string())).encode_v1())
}

/// `[0][2] update`: an Update message (v1 encoding).
pub fn update(update: Vec<u8>) -> Bytes {
    encode(&Message::Sync(SyncMessage::Update(update)))
}

/// `[1] update`: an awareness update.
pub fn awareness(update: yrs::sync::AwarenessUpdate) -> Bytes {
    encode(&Message::Awareness(update))
}

/// The frames that answer a peer's SyncStep1 with state vector `sv`, in order: the integrated
/// state the peer lacks as SyncStep2, then every update still waiting in `holdback` as it came
/// (batched past [`MAX_SEPARATE_UNSETTLED`]). yrs' own encoding of pending state can misplace
/// blocks (crate quire-holdback), so it is never used. A peer that takes the frames through a
/// holdback of its own ends up with everything `doc` received.
pub fn sync_reply(doc: &Doc, holdback: &Holdback, sv: &StateVector) -> Vec<Bytes> {
    let diff = doc.transact().encode_diff_v1(sv);
    std::iter::once(sync_step2(diff))
        .chain(
            holdback
                .unsettled_batched(MAX_SEPARATE_UNSETTLED)
                .into_iter()
                .map(update),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::decoder::Decode;
    use yrs::{GetString, Text};

    #[test]
    fn doc_ids() {
        assert!(validate_doc_id("a").is_ok());
        assert!(validate_doc_id("My.doc_1-2").is_ok());
        assert!(validate_doc_id(&"x".repeat(128)).is_ok());
        assert!(validate_doc_id(&"x".repeat(129)).is_err());
        assert!(validate_doc_id("").is_err());
        assert!(validate_doc_id("a/b").is_err());
        assert!(validate_doc_id("é").is_err());
        assert!(validate_doc_id("a b").is_err());
    }

    #[test]
    fn malformed_frames_are_refused() {
        for frame in [
            &[][..],
            &[0][..],                         // sync tag, no sub-tag
            &[0, 7][..],                      // unknown sync sub-tag
            &[0, 0, 0xff][..],                // truncated varint
            &[0, 2, 5, 1, 2][..],             // update claims 5 bytes, has 2
            &[0, 2, 3, 0xff, 0xff, 0xff][..], // garbage update
            &[0, 2, 2, 0, 0, 0, 2, 0x80][..], // valid (empty) update, then a truncated one
            &[0, 2, 2, 0, 0, 1, 5, 1][..],    // valid update, then a cut awareness payload
            &[
                1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ][..], // huge length
        ] {
            assert!(decode_frame(frame).is_err(), "accepted {frame:?}");
        }
    }

    /// The client side refuses truncated frames whole too, rather than taking the messages
    /// before the cut.
    #[test]
    fn truncated_frames_are_refused_by_clients() {
        let mut frame = update(vec![0, 0]).to_vec();
        let first = frame.len();
        frame.extend_from_slice(&permission_denied("read-only"));
        assert_eq!(decode_messages(&frame).unwrap().len(), 2);
        for cut in 1..frame.len() {
            if cut == first {
                // Exactly the first message: a whole frame.
                assert_eq!(decode_messages(&frame[..cut]).unwrap().len(), 1);
                continue;
            }
            assert!(
                decode_messages(&frame[..cut]).is_err(),
                "accepted {:?}",
                &frame[..cut]
            );
        }
        assert!(decode_messages(&[0, 7, 0]).is_err());
        assert!(decode_messages(&[]).unwrap().is_empty());
    }

    #[test]
    fn several_messages_per_frame() {
        let sv = yrs::StateVector::default();
        let mut frame = sync_step1(&sv).to_vec();
        frame.extend_from_slice(&encode(&Message::AwarenessQuery));
        let msgs = decode_frame(&frame).unwrap();
        assert!(matches!(
            msgs[..],
            [Incoming::SyncStep1(_), Incoming::AwarenessQuery]
        ));
    }

    #[test]
    fn encoders_round_trip() {
        let doc = new_doc_with_client_id(ClientID::new(7));
        let text = doc.get_or_insert_text(TEXT_NAME);
        let bytes = {
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 0, "h😀");
            txn.encode_update_v1()
        };
        let sv = doc.transact().state_vector();

        let msgs = decode_frame(&sync_step1(&sv)).unwrap();
        assert!(matches!(&msgs[..], [Incoming::SyncStep1(got)] if *got == sv));
        for frame in [update(bytes.clone()), sync_step2(bytes.clone())] {
            let msgs = decode_frame(&frame).unwrap();
            assert!(matches!(&msgs[..], [Incoming::Update { bytes: got, .. }] if *got == bytes));
        }
        // The server ignores auth messages; clients read their reason.
        assert!(decode_frame(&permission_denied("no")).unwrap().is_empty());
        assert_eq!(
            decode_messages(&permission_denied("read-only token")).unwrap(),
            vec![Message::Auth(Some("read-only token".into()))]
        );
        assert_eq!(
            decode_messages(&sync_step2(bytes.clone())).unwrap(),
            vec![Message::Sync(SyncMessage::SyncStep2(bytes.clone()))]
        );

        let mut peers = yrs::sync::Awareness::new(doc.clone());
        peers.set_local_state_raw(r#"{"user":{"name":"a"}}"#);
        let au = peers.update().unwrap();
        let msgs = decode_frame(&awareness(au.clone())).unwrap();
        assert!(matches!(&msgs[..], [Incoming::Awareness(got)] if *got == au));
    }

    #[test]
    fn documents_count_utf16() {
        let doc = new_doc();
        let text = doc.get_or_insert_text(TEXT_NAME);
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "a😀b");
        // "a😀" is 3 UTF-16 code units: inserting there lands after the emoji.
        text.insert(&mut txn, 3, "|");
        assert_eq!(text.get_string(&txn), "a😀|b");
        assert_eq!(text.len(&txn), 5);
        assert_eq!(
            new_doc_with_client_id(ClientID::new(42)).client_id(),
            ClientID::new(42)
        );
    }

    /// A SyncStep1 is answered with the integrated state, then the waiting updates as they
    /// came; a peer taking them through its own holdback gets everything.
    #[test]
    fn sync_reply_sends_state_then_waiting_updates() {
        let author = new_doc_with_client_id(ClientID::new(1));
        let text = author.get_or_insert_text(TEXT_NAME);
        let updates: Vec<Vec<u8>> = ["a", "b", "c"]
            .iter()
            .map(|s| {
                let mut txn = author.transact_mut();
                text.push(&mut txn, s);
                txn.encode_update_v1()
            })
            .collect();
        let feed = |doc: &Doc, hb: &mut Holdback, bytes: &[u8]| {
            hb.apply(
                &mut doc.transact_mut(),
                bytes,
                Update::decode_v1(bytes).unwrap(),
            )
            .unwrap();
        };

        // The server has "a", and "c" waits for "b".
        let server = new_doc();
        let mut hb = Holdback::default();
        feed(&server, &mut hb, &updates[0]);
        feed(&server, &mut hb, &updates[2]);
        assert!(!hb.is_empty());

        let frames = sync_reply(&server, &hb, &StateVector::default());
        let msgs: Vec<Message> = frames
            .iter()
            .flat_map(|f| decode_messages(f).unwrap())
            .collect();
        let [Message::Sync(SyncMessage::SyncStep2(state)), Message::Sync(SyncMessage::Update(waiting))] =
            &msgs[..]
        else {
            panic!("unexpected reply {msgs:?}");
        };
        assert_eq!(*waiting, updates[2]);

        let peer = new_doc();
        let mut peer_hb = Holdback::default();
        feed(&peer, &mut peer_hb, state);
        feed(&peer, &mut peer_hb, waiting);
        assert_eq!(
            peer.get_or_insert_text(TEXT_NAME)
                .get_string(&peer.transact()),
            "a"
        );
        // "b" arrives: both ends release "c".
        feed(&server, &mut hb, &updates[1]);
        feed(&peer, &mut peer_hb, &updates[1]);
        assert!(hb.is_empty() && peer_hb.is_empty());
        assert_eq!(
            peer.get_or_insert_text(TEXT_NAME)
                .get_string(&peer.transact()),
            "abc"
        );

        // A peer that has everything gets an empty state and nothing else.
        let sv = peer.transact().state_vector();
        let frames = sync_reply(&server, &hb, &sv);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            decode_messages(&frames[0]).unwrap(),
            vec![Message::Sync(SyncMessage::SyncStep2(
                server.transact().encode_diff_v1(&sv)
            ))]
        );
    }

    /// Past the batch size the waiting updates go merged (when yrs' merge keeps every block
    /// in place), up to it one frame each.
    #[test]
    fn sync_reply_batches_waiting_updates() {
        let author = new_doc_with_client_id(ClientID::new(1));
        let text = author.get_or_insert_text(TEXT_NAME);
        let updates: Vec<Vec<u8>> = (0..=MAX_SEPARATE_UNSETTLED + 1)
            .map(|i| {
                let mut txn = author.transact_mut();
                text.push(&mut txn, &(i % 10).to_string());
                txn.encode_update_v1()
            })
            .collect();
        let server = new_doc();
        let mut hb = Holdback::default();
        // Without the first update everything else waits.
        let mut held = 0;
        for bytes in &updates[1..] {
            hb.apply(
                &mut server.transact_mut(),
                bytes,
                Update::decode_v1(bytes).unwrap(),
            )
            .unwrap();
            held += 1;
            let frames = sync_reply(&server, &hb, &StateVector::default());
            let expected = if held <= MAX_SEPARATE_UNSETTLED {
                held
            } else {
                1
            };
            assert_eq!(frames.len(), 1 + expected, "{held} waiting");
        }
    }
}
