//! The wire protocol: the Yjs sync protocol and awareness as `yrs::sync` implements them, plus
//! what quire adds around it (document id rules, close codes, panic containment).
//!
//! A frame may hold several messages (we accept that); we send one message per frame because the
//! y-websocket 3 client decodes exactly one per frame.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use yrs::encoding::read::Cursor;
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::Update;

/// WebSocket close codes quire uses, with the reason sent beside them.
pub mod close {
    /// Server shutting down; reconnect later.
    pub const GOING_AWAY: u16 = 1001;
    /// A text frame: the protocol is binary.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A frame that does not decode, or an update the CRDT rejects.
    pub const INVALID_PAYLOAD: u16 = 1007;
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

/// A message from a client, decoded and validated before it reaches the document actor.
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

/// Decodes every message of one binary frame. All or nothing: one bad message refuses the frame,
/// so a half-valid frame never changes a document. Auth and custom messages are ignored.
pub fn decode_frame(frame: &[u8]) -> Result<Vec<Incoming>, DecodeError> {
    // yrs decodes untrusted bytes; a panic there must cost this frame, not the server.
    catch_unwind(AssertUnwindSafe(|| decode_frame_inner(frame))).unwrap_or(Err(DecodeError::Panic))
}

fn decode_frame_inner(frame: &[u8]) -> Result<Vec<Incoming>, DecodeError> {
    if frame.is_empty() {
        return Err(DecodeError::Malformed("empty frame".into()));
    }
    check_framing(frame)?;
    let mut decoder = DecoderV1::new(Cursor::new(frame));
    let mut out = Vec::new();
    for msg in MessageReader::new(&mut decoder) {
        let msg = msg.map_err(|e| DecodeError::Malformed(e.to_string()))?;
        match msg {
            Message::Sync(SyncMessage::SyncStep1(sv)) => out.push(Incoming::SyncStep1(sv)),
            Message::Sync(SyncMessage::SyncStep2(bytes) | SyncMessage::Update(bytes)) => {
                let update = Update::decode_v1(&bytes)
                    .map_err(|e| DecodeError::InvalidUpdate(e.to_string()))?;
                out.push(Incoming::Update { bytes, update });
            }
            Message::Awareness(update) => out.push(Incoming::Awareness(update)),
            Message::AwarenessQuery => out.push(Incoming::AwarenessQuery),
            Message::Auth(_) | Message::Custom(..) => {}
        }
    }
    Ok(out)
}

/// Walks the message boundaries of a frame as y-protocols lays them out, so that a frame whose
/// last message is cut short is refused whole: yrs' `MessageReader` stops silently at a
/// truncated message, which would accept the messages before it and drop the rest.
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
                let _: u8 = cursor.read_var().map_err(malformed)?;
                cursor.read_buf().map_err(malformed)?;
            }
            // Auth: a reason string follows "permission denied" (0).
            2 => {
                if cursor.read_var::<u8>().map_err(malformed)? == 0 {
                    cursor.read_string().map_err(malformed)?;
                }
            }
            // Awareness query: no payload.
            3 => {}
            // Awareness (1) and custom messages: one payload.
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

pub fn sync_step1(sv: &yrs::StateVector) -> Bytes {
    encode(&Message::Sync(SyncMessage::SyncStep1(sv.clone())))
}

pub fn sync_step2(update: Vec<u8>) -> Bytes {
    encode(&Message::Sync(SyncMessage::SyncStep2(update)))
}

/// `[2][0] reason`: the protocol's permission-denied message (y-protocols `auth`), sent for a
/// refused update.
pub fn permission_denied(reason: &str) -> Bytes {
    Bytes::from(Message::Auth(Some(reason.to_string())).encode_v1())
}

pub fn update(update: Vec<u8>) -> Bytes {
    encode(&Message::Sync(SyncMessage::Update(update)))
}

pub fn awareness(update: yrs::sync::AwarenessUpdate) -> Bytes {
    encode(&Message::Awareness(update))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
