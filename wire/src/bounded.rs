//! Decoding that costs what the bytes are worth.
//!
//! Yjs encodings carry element counts ahead of the elements, and yrs reserves room for the
//! claimed count before reading any element: an 8-byte frame claiming 2^28 clients made it
//! reserve (and clear) ~512 MB. A nested `Any` value also recursed once per level, so a frame of
//! nested arrays could exhaust the stack, which aborts the process.
//!
//! [`decode_update`] runs yrs' own `Update::decode` through [`BoundedV1`], a v1 decoder that
//! refuses a count larger than the bytes left to hold its elements (every element takes at least
//! one byte) and decodes `Any` values itself, without reserving ahead and at most
//! [`MAX_ANY_DEPTH`] levels deep. [`check_counts`] does the same for the counts that yrs'
//! `MessageReader` decodes (state vectors and awareness updates) before they reach yrs.
//!
//! Invariant: for an input of `n` bytes, no reservation made while decoding exceeds a small
//! constant times `n` elements, so the memory a message costs is proportional to its size.

use std::collections::HashMap;
use std::sync::Arc;

use yrs::encoding::read::{Cursor, Error, Read};
use yrs::encoding::varint::VarInt;
use yrs::updates::decoder::{Decode, Decoder};
use yrs::{Any, ClientID, Number, Update, ID};

/// Deepest nesting of arrays and maps accepted inside an `Any` value (JSON parsers stop at 128;
/// an editor's attributes are a level or two deep).
pub const MAX_ANY_DEPTH: usize = 64;

/// Content references of an item whose content starts with an element count: JSON (2) and
/// Any (8), as yrs' `ItemContent::decode` numbers them (`info & 0b1111`).
const COUNTED_CONTENT: [u8; 2] = [2, 8];
/// Legacy JSON content.
const JSON_CONTENT: u8 = 2;
/// The last content type Yjs decodes (`contentRefs`: 1 deleted … 9 subdocument).
const MAX_YJS_CONTENT: u8 = 9;
/// The last shared type Yjs decodes (`typeRefs`: 0 array … 6 XML text).
const MAX_YJS_TYPE_REF: u8 = 6;
/// Yjs' XML hook, which the two libraries encode differently.
const XML_HOOK_TYPE_REF: u8 = 5;
/// Block infos without content: GC (0) and Skip (10).
const GC_INFO: u8 = 0;
const SKIP_INFO: u8 = 10;

/// Decodes a v1 update with every claimed count checked against the bytes present.
pub fn decode_update(bytes: &[u8]) -> Result<Update, Error> {
    Update::decode(&mut BoundedV1::new(bytes))
}

/// Checks the counts inside one message payload that yrs' `MessageReader` decodes eagerly:
/// a state vector (SyncStep1) holds `count` pairs of varints, an awareness update `count`
/// entries of two varints and a string, so each entry takes at least `min_entry_bytes`.
pub(crate) fn check_counts(payload: &[u8], min_entry_bytes: usize) -> Result<(), String> {
    let mut cursor = Cursor::new(payload);
    let count: u64 = cursor.read_var().map_err(|e| e.to_string())?;
    let left = payload.len() - cursor.next;
    if count > (left / min_entry_bytes) as u64 {
        return Err(format!(
            "claims {count} entries but only {left} bytes follow"
        ));
    }
    Ok(())
}

fn too_many(what: &str, count: u64, left: usize) -> Error {
    Error::Custom(format!(
        "update claims {count} {what} but only {left} bytes follow"
    ))
}

/// Largest integer lib0 (Yjs' encoding) decodes: JavaScript's `Number.MAX_SAFE_INTEGER`.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// yrs' v1 decoder with bounds: see the module documentation.
///
/// It also follows each block's clock, so that an item naming an origin of its own client at
/// its own clock or later is refused: yrs takes one, and Yjs fails on it at every sync.
pub struct BoundedV1<'a> {
    cursor: Cursor<'a>,
    /// `read_var` calls so far: the first one of an update is its client count.
    var_reads: u64,
    /// The last `read_var` value, as unsigned: the block count, when `read_client` follows.
    last_var: u64,
    /// The current item's content opens with a count (the next `read_len`).
    counted_content: bool,
    /// The client of the blocks being read, and the clock of the current block.
    client: u64,
    clock: u64,
    /// The next `read_var` is the first block's clock (it follows `read_client`).
    clock_next: bool,
    /// The current block's length, once known (added to `clock` at the next block).
    len: u64,
    /// What gives the current block's length: the next `read_len` or `read_var` (GC, Skip,
    /// deleted, JSON and Any content), the last string (string content), or nothing (1).
    len_from: LenFrom,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LenFrom {
    Count,
    Var,
    String,
    One,
}

impl<'a> BoundedV1<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        BoundedV1 {
            cursor: Cursor::new(bytes),
            var_reads: 0,
            last_var: 0,
            counted_content: false,
            client: 0,
            clock: 0,
            clock_next: false,
            len: 0,
            len_from: LenFrom::One,
        }
    }

    /// An unsigned varint read straight from the cursor, at most what Yjs can decode.
    fn uvar(&mut self) -> Result<u64, Error> {
        let value: u64 = self.cursor.read_var()?;
        if value > MAX_SAFE_INTEGER {
            return Err(Error::Custom(format!(
                "{value} is larger than Yjs clients can decode (2^53 - 1)"
            )));
        }
        Ok(value)
    }

    /// An origin of the current item: not its own client's at its own clock or later.
    fn read_origin(&mut self) -> Result<ID, Error> {
        let id = self.read_id()?;
        if id.client.get() == self.client && u64::from(id.clock) >= self.clock {
            return Err(Error::Custom(format!(
                "an item at clock {} of client {} names its own future ({}) as origin",
                self.clock, self.client, id.clock
            )));
        }
        Ok(id)
    }

    fn left(&self) -> usize {
        self.cursor.buf.len() - self.cursor.next
    }

    fn read_id(&mut self) -> Result<ID, Error> {
        let client = self.uvar()?;
        let clock: u32 = self.cursor.read_var()?;
        Ok(ID::new(ClientID::new(client), clock))
    }

    fn read_any_at(&mut self, depth: usize) -> Result<Any, Error> {
        Ok(match self.cursor.read_u8()? {
            127 => Any::Undefined,
            126 => Any::Null,
            125 => Any::Number(Number::Int(self.cursor.read_var::<i64>()?)),
            124 => Any::Number(Number::Float(self.cursor.read_f32()? as f64)),
            123 => Any::Number(Number::Float(self.cursor.read_f64()?)),
            122 => Any::Number(Number::Int(self.cursor.read_i64()?)),
            121 => Any::Bool(false),
            120 => Any::Bool(true),
            119 => Any::String(Arc::from(self.cursor.read_string()?)),
            118 => {
                let len = self.nested_len(depth)?;
                let mut map = HashMap::new();
                for _ in 0..len {
                    let key = self.cursor.read_string()?.to_owned();
                    let value = self.read_any_at(depth + 1)?;
                    map.insert(key, value);
                }
                Any::Map(Arc::new(map))
            }
            117 => {
                let len = self.nested_len(depth)?;
                let mut arr = Vec::new();
                for _ in 0..len {
                    arr.push(self.read_any_at(depth + 1)?);
                }
                Any::Array(Arc::from(arr))
            }
            116 => Any::Buffer(Arc::from(self.cursor.read_buf()?)),
            _ => return Err(Error::UnexpectedValue),
        })
    }

    /// The length of a nested array or map at `depth`, checked against depth and bytes.
    fn nested_len(&mut self, depth: usize) -> Result<u64, Error> {
        if depth >= MAX_ANY_DEPTH {
            return Err(Error::Custom(format!(
                "a value nests more than {MAX_ANY_DEPTH} levels deep"
            )));
        }
        let len: u64 = self.cursor.read_var()?;
        if len > self.left() as u64 {
            return Err(too_many("values", len, self.left()));
        }
        Ok(len)
    }
}

/// Unsigned LEB128 value of a varint's bytes, saturating (signed varints give some value; only
/// counts, which are unsigned, are checked).
fn unsigned_value(bytes: &[u8]) -> u64 {
    let mut value: u64 = 0;
    for (i, b) in bytes.iter().enumerate() {
        let part = u64::from(b & 0x7f);
        if i >= 10 || (i == 9 && part > 1) {
            return u64::MAX;
        }
        value |= part << (7 * i);
    }
    value
}

impl Read for BoundedV1<'_> {
    fn read_exact(&mut self, len: usize) -> Result<&[u8], Error> {
        self.cursor.read_exact(len)
    }

    fn read_u8(&mut self) -> Result<u8, Error> {
        self.cursor.read_u8()
    }

    fn read_string(&mut self) -> Result<&str, Error> {
        let s = self.cursor.read_string()?;
        if self.len_from == LenFrom::String {
            // String content is an item's last read: the last string read is its content.
            self.len = s.encode_utf16().count() as u64;
        }
        Ok(s)
    }

    fn read_var<T: VarInt>(&mut self) -> Result<T, Error> {
        let start = self.cursor.next;
        let value = T::read(&mut self.cursor)?;
        self.last_var = unsigned_value(&self.cursor.buf[start..self.cursor.next]);
        self.var_reads += 1;
        // yrs reads only unsigned values through here (counts, clocks, lengths, clients).
        if self.last_var > MAX_SAFE_INTEGER {
            return Err(Error::Custom(format!(
                "{} is larger than Yjs clients can decode (2^53 - 1)",
                self.last_var
            )));
        }
        if std::mem::take(&mut self.clock_next) {
            self.clock = self.last_var;
            self.len = 0;
        } else if self.len_from == LenFrom::Var {
            self.len = self.last_var;
            self.len_from = LenFrom::One;
        }
        // An update opens with its client count; each client takes at least three bytes.
        if self.var_reads == 1 && self.last_var > (self.left() / 3) as u64 {
            return Err(too_many("clients", self.last_var, self.left()));
        }
        Ok(value)
    }
}

impl Decoder for BoundedV1<'_> {
    fn reset_ds_cur_val(&mut self) {}

    fn read_ds_clock(&mut self) -> Result<u32, Error> {
        self.cursor.read_var()
    }

    fn read_ds_len(&mut self) -> Result<u32, Error> {
        let len: u32 = self.cursor.read_var()?;
        // Yjs fails on an empty deleted range; no encoder writes one.
        if len == 0 {
            return Err(Error::Custom("an empty range in the delete set".into()));
        }
        Ok(len)
    }

    fn read_left_id(&mut self) -> Result<ID, Error> {
        self.read_origin()
    }

    fn read_right_id(&mut self) -> Result<ID, Error> {
        self.read_origin()
    }

    /// Only `Update::decode` reads a client this way, right after the client's block count.
    fn read_client(&mut self) -> Result<ClientID, Error> {
        if self.last_var > self.left() as u64 {
            return Err(too_many("blocks", self.last_var, self.left()));
        }
        let client = self.uvar()?;
        self.client = client;
        self.clock_next = true;
        Ok(ClientID::new(client))
    }

    fn read_info(&mut self) -> Result<u8, Error> {
        let info = self.cursor.read_u8()?;
        // Yjs takes the content type from the low five bits (yrs from four) and knows 1..=9;
        // yrs also takes 11 (its own "move"). Anything else would be stored and relayed to
        // browsers that cannot decode it.
        let content = info & 0b1_1111;
        if info != GC_INFO && info != SKIP_INFO && !(1..=MAX_YJS_CONTENT).contains(&content) {
            return Err(Error::Custom(format!(
                "content type {content} is not one Yjs clients decode"
            )));
        }
        // Legacy JSON content: yrs reads one string more than its count says (and writes as
        // many as it says), so the two libraries part ways on the bytes after it. Yjs writes
        // `ContentAny` instead since 13.0.
        if info != GC_INFO && info != SKIP_INFO && content == JSON_CONTENT {
            return Err(Error::Custom(
                "JSON content (legacy; Yjs and yrs decode it differently) is not accepted".into(),
            ));
        }
        self.counted_content = COUNTED_CONTENT.contains(&content);
        // The previous block ends where this one starts.
        self.clock += std::mem::take(&mut self.len);
        self.len = 1;
        self.len_from = match info {
            GC_INFO => LenFrom::Count,
            SKIP_INFO => LenFrom::Var,
            _ => match content {
                1 | 2 | 8 => LenFrom::Count,
                4 => LenFrom::String,
                _ => LenFrom::One,
            },
        };
        Ok(info)
    }

    fn read_parent_info(&mut self) -> Result<bool, Error> {
        let info: u32 = self.cursor.read_var()?;
        Ok(info == 1)
    }

    fn read_type_ref(&mut self) -> Result<u8, Error> {
        let type_ref = self.cursor.read_u8()?;
        // XML hooks (5): Yjs reads a name after the type, yrs does not.
        if type_ref > MAX_YJS_TYPE_REF || type_ref == XML_HOOK_TYPE_REF {
            return Err(Error::Custom(format!(
                "shared type {type_ref} is not one Yjs clients decode"
            )));
        }
        Ok(type_ref)
    }

    fn read_len(&mut self) -> Result<u32, Error> {
        let len: u32 = self.cursor.read_var()?;
        if std::mem::take(&mut self.counted_content) && len as usize > self.left() {
            return Err(too_many("values", len.into(), self.left()));
        }
        if self.len_from == LenFrom::Count {
            self.len = len.into();
            self.len_from = LenFrom::One;
        }
        Ok(len)
    }

    fn read_any(&mut self) -> Result<Any, Error> {
        self.read_any_at(0)
    }

    fn read_json(&mut self) -> Result<Any, Error> {
        Any::from_json(self.cursor.read_string()?)
    }

    fn read_key(&mut self) -> Result<Arc<str>, Error> {
        Ok(self.cursor.read_string()?.into())
    }

    fn read_to_end(&mut self) -> Result<&[u8], Error> {
        Ok(&self.cursor.buf[self.cursor.next..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::types::ToJson;
    use yrs::updates::decoder::Decode;
    use yrs::{Array, Doc, GetString, Map, ReadTxn, Text, Transact};

    /// Every update a real document produces decodes the same through the bounded decoder.
    #[test]
    fn decodes_what_yrs_encodes() {
        let doc = Doc::new();
        let text = doc.get_or_insert_text("content");
        let arr = doc.get_or_insert_array("a");
        let map = doc.get_or_insert_map("m");
        let nested = Any::from_json(r#"{"a":[1,2.5,"x",null,true,{"b":[]}],"n":-7}"#).unwrap();
        let mut updates = Vec::new();
        let mut step = |f: &dyn Fn(&mut yrs::TransactionMut)| {
            let before = doc.transact().state_vector();
            f(&mut doc.transact_mut());
            updates.push(doc.transact().encode_diff_v1(&before));
        };
        step(&|txn| text.insert(txn, 0, "hello wörld"));
        step(&|txn| text.remove_range(txn, 2, 3));
        step(&|txn| {
            arr.insert(txn, 0, nested.clone());
        });
        step(&|txn| {
            arr.insert(txn, 1, Any::Buffer(Arc::from(&b"\x00\x01"[..])));
        });
        step(&|txn| {
            map.insert(txn, "k", nested.clone());
        });
        updates.push(doc.transact().encode_diff_v1(&Default::default()));
        // Applied in turn to one replica through each decoder, they build the same document
        // (maps are compared as values: their encoding order is a HashMap's).
        let ours = Doc::new();
        let theirs = Doc::new();
        for bytes in &updates {
            ours.transact_mut()
                .apply_update(decode_update(bytes).unwrap())
                .unwrap();
            theirs
                .transact_mut()
                .apply_update(Update::decode_v1(bytes).unwrap())
                .unwrap();
            let view = |d: &Doc| {
                // Root types first: getting one needs the write lock.
                let (t, a, m) = (
                    d.get_or_insert_text("content"),
                    d.get_or_insert_array("a"),
                    d.get_or_insert_map("m"),
                );
                let txn = d.transact();
                (t.get_string(&txn), a.to_json(&txn), m.to_json(&txn))
            };
            assert_eq!(view(&ours), view(&theirs));
        }
        let (t, m) = (
            ours.get_or_insert_text("content"),
            ours.get_or_insert_map("m"),
        );
        let txn = ours.transact();
        assert_eq!(t.get_string(&txn), "he wörld");
        assert_eq!(
            m.to_json(&txn),
            Any::Map(Arc::new(HashMap::from([("k".to_string(), nested)])))
        );
    }

    #[test]
    fn counts_beyond_the_bytes_are_refused() {
        // 2^28 clients in five bytes.
        let err = decode_update(&[0x80, 0x80, 0x80, 0x80, 0x01]).unwrap_err();
        assert!(
            err.to_string().contains("claims 268435456 clients"),
            "{err}"
        );
        // One client claiming 2^28 blocks.
        let err = decode_update(&[1, 0x80, 0x80, 0x80, 0x80, 0x01, 1, 0]).unwrap_err();
        assert!(err.to_string().contains("blocks"), "{err}");
        assert!(check_counts(&[0x80, 0x80, 0x80, 0x80, 0x01], 2).is_err());
        assert!(check_counts(&[2, 1, 1, 2, 2], 2).is_ok());
        assert!(check_counts(&[3, 1, 1, 2, 2], 2).is_err());
    }

    /// One block of client 7 at clock `clock` with `info`, `origin` (if any, as client and
    /// clock), in root "content" when it has no origin, then `content`, then `delete_set`.
    fn block(clock: u8, info: u8, origin: Option<(u8, u8)>, content: &[u8], ds: &[u8]) -> Vec<u8> {
        let mut u = vec![1, 1, 7, clock, info];
        match origin {
            Some((client, clock)) => u.extend_from_slice(&[client, clock]),
            None => {
                u.extend_from_slice(&[1, 7]);
                u.extend_from_slice(b"content");
            }
        }
        u.extend_from_slice(content);
        u.extend_from_slice(ds);
        u
    }

    /// Each kind of update yrs takes and stock Yjs cannot (found by the mutation test in
    /// `tests/tests/malformed_storm.rs`), next to its honest form.
    #[test]
    fn what_yjs_cannot_decode_is_refused() {
        let refused = |u: &[u8], says: &str| {
            let err = decode_update(u).expect_err(says).to_string();
            assert!(err.contains(says), "{err:?} should say {says:?}");
            assert!(Update::decode_v1(u).is_ok(), "yrs takes it: {says}");
        };
        let string = [1, b'x'];
        assert!(decode_update(&block(0, 4, None, &string, &[0])).is_ok());
        // Content type 20 (yrs reads 4 bits: a string; Yjs 5 bits: nothing it knows); 11,
        // yrs' own "move".
        refused(&block(0, 0x14, None, &string, &[0]), "content type 20");
        // Shared types 5 (XML hook, encoded differently) and 15 (yrs' "undefined").
        assert!(decode_update(&block(0, 7, None, &[1], &[0])).is_ok());
        refused(&block(0, 7, None, &[5], &[0]), "shared type 5");
        refused(&block(0, 7, None, &[15], &[0]), "shared type 15");
        // An origin of its own client at its own clock or later; an earlier one is fine.
        assert!(decode_update(&block(3, 0x84, Some((7, 2)), &string, &[0])).is_ok());
        refused(
            &block(3, 0x84, Some((7, 3)), &string, &[0]),
            "its own future",
        );
        refused(
            &block(3, 0x84, Some((7, 9)), &string, &[0]),
            "its own future",
        );
        // A client id past 2^53 - 1.
        let mut big = vec![
            1, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 4, 1, 7,
        ];
        big.extend_from_slice(b"content");
        big.extend_from_slice(&[1, b'x', 0]);
        refused(&big, "larger than Yjs clients can decode");
        // An empty deleted range.
        assert!(decode_update(&block(0, 4, None, &string, &[1, 7, 1, 0, 1])).is_ok());
        refused(&block(0, 4, None, &string, &[1, 7, 1, 0, 0]), "empty range");
        // Legacy JSON content: yrs reads a string more than the count says.
        refused(
            &block(0, 2, None, &[0, 4, b't', b'r', b'u', b'e'], &[0]),
            "JSON content",
        );
    }

    #[test]
    fn varint_values() {
        assert_eq!(unsigned_value(&[0x05]), 5);
        assert_eq!(unsigned_value(&[0x80, 0x01]), 128);
        assert_eq!(unsigned_value(&[0x80, 0x80, 0x80, 0x80, 0x01]), 1 << 28);
        assert_eq!(unsigned_value(&[0xff; 11]), u64::MAX);
    }
}
