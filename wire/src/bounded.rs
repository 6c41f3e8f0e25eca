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

/// yrs' v1 decoder with bounds: see the module documentation.
pub struct BoundedV1<'a> {
    cursor: Cursor<'a>,
    /// `read_var` calls so far: the first one of an update is its client count.
    var_reads: u64,
    /// The last `read_var` value, as unsigned: the block count, when `read_client` follows.
    last_var: u64,
    /// The current item's content opens with a count (the next `read_len`).
    counted_content: bool,
}

impl<'a> BoundedV1<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        BoundedV1 {
            cursor: Cursor::new(bytes),
            var_reads: 0,
            last_var: 0,
            counted_content: false,
        }
    }

    fn left(&self) -> usize {
        self.cursor.buf.len() - self.cursor.next
    }

    fn read_id(&mut self) -> Result<ID, Error> {
        let client: u64 = self.cursor.read_var()?;
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

    fn read_var<T: VarInt>(&mut self) -> Result<T, Error> {
        let start = self.cursor.next;
        let value = T::read(&mut self.cursor)?;
        self.last_var = unsigned_value(&self.cursor.buf[start..self.cursor.next]);
        self.var_reads += 1;
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
        self.cursor.read_var()
    }

    fn read_left_id(&mut self) -> Result<ID, Error> {
        self.read_id()
    }

    fn read_right_id(&mut self) -> Result<ID, Error> {
        self.read_id()
    }

    /// Only `Update::decode` reads a client this way, right after the client's block count.
    fn read_client(&mut self) -> Result<ClientID, Error> {
        if self.last_var > self.left() as u64 {
            return Err(too_many("blocks", self.last_var, self.left()));
        }
        let client: u64 = self.cursor.read_var()?;
        Ok(ClientID::new(client))
    }

    fn read_info(&mut self) -> Result<u8, Error> {
        let info = self.cursor.read_u8()?;
        self.counted_content =
            info != GC_INFO && info != SKIP_INFO && COUNTED_CONTENT.contains(&(info & 0b1111));
        Ok(info)
    }

    fn read_parent_info(&mut self) -> Result<bool, Error> {
        let info: u32 = self.cursor.read_var()?;
        Ok(info == 1)
    }

    fn read_type_ref(&mut self) -> Result<u8, Error> {
        self.cursor.read_u8()
    }

    fn read_len(&mut self) -> Result<u32, Error> {
        let len: u32 = self.cursor.read_var()?;
        if std::mem::take(&mut self.counted_content) && len as usize > self.left() {
            return Err(too_many("values", len.into(), self.left()));
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

    #[test]
    fn varint_values() {
        assert_eq!(unsigned_value(&[0x05]), 5);
        assert_eq!(unsigned_value(&[0x80, 0x01]), 128);
        assert_eq!(unsigned_value(&[0x80, 0x80, 0x80, 0x80, 0x01]), 1 << 28);
        assert_eq!(unsigned_value(&[0xff; 11]), u64::MAX);
    }
}
