//! Who wrote what: authors' names and colours, and blame — the text as spans, each with the
//! author and the version that typed it.
//!
//! Every char of a Yjs text is an item id `(client, clock)`. Each op-log row records the ids it
//! inserted (`ops.inserted`, yrs' `IdSet`) and its author; [`BlameIndex`] maps ids back to rows,
//! and yrs' `diff_range` against an empty snapshot yields the text item by item with each item's
//! id. Text whose row names no author (it arrived before its client's name did) is attributed
//! by its client id (`doc_authors`, learned from awareness and tokens).
//!
//! Invariants:
//! - The index holds every stored row with `seq <= upto`; it only grows (rows compacted away
//!   stay in it, so text they typed keeps its version).
//! - Spans cover the text exactly, in order, with no two neighbours alike.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use utoipa::ToSchema;
use yrs::types::text::YChange;
use yrs::updates::decoder::Decode;
use yrs::{Any, Doc, IdSet, Out, ReadTxn, Snapshot, Text, Transact, Update, ID};

use crate::mirror::TEXT_NAME;
use crate::store::{InsertedRow, RowIds, Store, StoreError};

/// Longest author name, in chars.
pub const MAX_AUTHOR_CHARS: usize = 100;

/// An author's name as given (token subject, awareness name), checked: trimmed, 1 to 100 chars,
/// no control characters.
pub fn check_author(name: &str) -> Result<String, String> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_AUTHOR_CHARS {
        return Err(format!(
            "a subject must be 1 to {MAX_AUTHOR_CHARS} chars (got {chars})"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("a subject must not contain control characters".into());
    }
    Ok(name.to_string())
}

/// The `user.name` an awareness state publishes (y-codemirror.next's format, which the browser
/// and terminal editors use), if it is a usable name.
pub fn awareness_name(json: &str) -> Option<Arc<str>> {
    if !json.contains("\"name\"") {
        return None;
    }
    let state: serde_json::Value = serde_json::from_str(json).ok()?;
    let name = state.get("user")?.get("name")?.as_str()?;
    check_author(name).ok().map(Arc::from)
}

/// A stable colour for an author (`#rrggbb`): the same name gets the same colour on every
/// server and in every client ([`quire_wire::author_color`]).
pub fn color_of(author: &str) -> String {
    quire_wire::author_color(author)
}

/// Which op-log row inserted each Yjs id of a document.
#[derive(Debug, Default)]
pub struct BlameIndex {
    /// Every stored row up to here is in the index.
    upto: i64,
    /// Per client, `(clock start, clock end, row)` sorted by start; `row` indexes `rows`.
    clients: HashMap<u64, Vec<(u32, u32, u32)>>,
    /// `(seq, author)` of each row indexed.
    rows: Vec<(i64, Option<Arc<str>>)>,
}

impl BlameIndex {
    pub fn upto(&self) -> i64 {
        self.upto
    }

    /// Adds rows stored after `upto` (in order), then `upto` moves to `to`.
    pub fn extend(&mut self, rows: Vec<InsertedRow>, to: i64) {
        let mut names: HashMap<String, Arc<str>> = HashMap::new();
        let mut unsorted = Vec::new();
        for row in rows {
            if row.seq <= self.upto {
                continue;
            }
            let author = row.author.map(|a| {
                names
                    .entry(a)
                    .or_insert_with_key(|a| Arc::from(a.as_str()))
                    .clone()
            });
            let ranges = ids_of(&row.ids);
            self.push_row(row.seq, author, &ranges, &mut unsorted);
        }
        self.finish(unsorted, to);
    }

    /// Adds a blame segment (see [`encode_segment`]) covering the rows up to `to`; the index
    /// is left as it was when the segment does not decode.
    pub fn extend_segment(&mut self, data: &[u8], to: i64) -> Result<(), SegmentError> {
        let mut r = Reader(data);
        let authors: Vec<Arc<str>> = (0..r.count()?)
            .map(|_| r.string().map(Arc::from))
            .collect::<Result<_, _>>()?;
        let clients: Vec<u64> = (0..r.count()?)
            .map(|_| r.varint())
            .collect::<Result<_, _>>()?;
        let mut rows = Vec::new();
        for _ in 0..r.count()? {
            let seq = r.varint()? as i64;
            let author = match r.varint()? as usize {
                0 => None,
                i => Some(authors.get(i - 1).ok_or(SegmentError)?.clone()),
            };
            let ranges = (0..r.count()?)
                .map(|_| {
                    let client = *clients.get(r.varint()? as usize).ok_or(SegmentError)?;
                    let start = u32::try_from(r.varint()?).map_err(|_| SegmentError)?;
                    let len = u32::try_from(r.varint()?).map_err(|_| SegmentError)?;
                    Ok((client, start, start.checked_add(len).ok_or(SegmentError)?))
                })
                .collect::<Result<Vec<_>, SegmentError>>()?;
            rows.push((seq, author, ranges));
        }
        let mut unsorted = Vec::new();
        for (seq, author, ranges) in rows {
            if seq > self.upto {
                self.push_row(seq, author, &ranges, &mut unsorted);
            }
        }
        self.finish(unsorted, to);
        Ok(())
    }

    fn push_row(
        &mut self,
        seq: i64,
        author: Option<Arc<str>>,
        ranges: &[(u64, u32, u32)],
        unsorted: &mut Vec<u64>,
    ) {
        let index = self.rows.len() as u32;
        self.rows.push((seq, author));
        for &(client, start, end) in ranges {
            let list = self.clients.entry(client).or_default();
            if list.last().is_some_and(|last| last.0 > start) {
                unsorted.push(client);
            }
            list.push((start, end, index));
        }
    }

    fn finish(&mut self, unsorted: Vec<u64>, to: i64) {
        for client in unsorted {
            if let Some(list) = self.clients.get_mut(&client) {
                list.sort_unstable();
            }
        }
        self.upto = self.upto.max(to);
    }

    /// The row that inserted `(client, clock)` and where its range ends.
    fn find(&self, client: u64, clock: u32) -> Option<(u32, u32)> {
        let list = self.clients.get(&client)?;
        let i = list.partition_point(|r| r.0 <= clock);
        let (_, end, row) = *list.get(i.checked_sub(1)?)?;
        (clock < end).then_some((row, end))
    }
}

/// The clock ranges a row inserted, as `(client, start, end)`.
fn ids_of(ids: &RowIds) -> Vec<(u64, u32, u32)> {
    let set = match ids {
        RowIds::Inserted(bytes) => IdSet::decode_v1(bytes).ok(),
        RowIds::Update(bytes) => Update::decode_v1(bytes).ok().map(|u| u.insertions(true)),
    };
    let Some(set) = set else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (client, ranges) in set.iter() {
        for range in ranges.iter() {
            out.push((client.get(), range.start, range.end));
        }
    }
    out
}

/// Rows per blame segment at most.
const SEGMENT_ROWS: i64 = 20_000;

/// A blame segment that does not decode (the rows are read instead).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("blame segment does not decode")]
pub struct SegmentError;

/// The rows' authors and inserted ids, compactly: LEB128 counts and values; a table of author
/// names and of client ids, then per row its version, its author (index + 1; 0: none) and its
/// ranges as (client index, start, length).
pub fn encode_segment(rows: &[InsertedRow]) -> Vec<u8> {
    let mut authors: Vec<&str> = Vec::new();
    let mut clients: Vec<u64> = Vec::new();
    let mut client_index: HashMap<u64, u64> = HashMap::new();
    let mut body = Vec::new();
    write_varint(&mut body, rows.len() as u64);
    for row in rows {
        write_varint(&mut body, row.seq as u64);
        let author = match row.author.as_deref() {
            None => 0,
            Some(a) => match authors.iter().position(|x| *x == a) {
                Some(i) => i + 1,
                None => {
                    authors.push(a);
                    authors.len()
                }
            },
        };
        write_varint(&mut body, author as u64);
        let ranges = ids_of(&row.ids);
        write_varint(&mut body, ranges.len() as u64);
        for (client, start, end) in ranges {
            let i = *client_index.entry(client).or_insert_with(|| {
                clients.push(client);
                clients.len() as u64 - 1
            });
            write_varint(&mut body, i);
            write_varint(&mut body, u64::from(start));
            write_varint(&mut body, u64::from(end - start));
        }
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    write_varint(&mut out, authors.len() as u64);
    for a in authors {
        write_varint(&mut out, a.len() as u64);
        out.extend_from_slice(a.as_bytes());
    }
    write_varint(&mut out, clients.len() as u64);
    for c in clients {
        write_varint(&mut out, c);
    }
    out.extend_from_slice(&body);
    out
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, SegmentError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first().ok_or(SegmentError)?;
            self.0 = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(SegmentError)
    }

    /// A count, checked against the bytes left (each item takes at least one).
    fn count(&mut self) -> Result<usize, SegmentError> {
        let n = self.varint()?;
        if n > self.0.len() as u64 {
            return Err(SegmentError);
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String, SegmentError> {
        let n = self.count()?;
        let (bytes, rest) = self.0.split_at(n);
        self.0 = rest;
        String::from_utf8(bytes.to_vec()).map_err(|_| SegmentError)
    }
}

/// Writes blame segments for the document's rows up to `upto` that have none yet (with each
/// snapshot), so the first blame of a long history reads a few blobs, not every row.
pub async fn save_segments(store: &Store, id: &str, upto: i64) -> Result<(), StoreError> {
    let mut after = store.blame_segments_end(id).await?;
    while after < upto {
        let end = (after + SEGMENT_ROWS).min(upto);
        let rows = store.inserted(id, after, end).await?;
        let data = tokio::task::spawn_blocking(move || encode_segment(&rows))
            .await
            .unwrap_or_default();
        if data.is_empty() {
            return Ok(());
        }
        store.save_blame_segment(id, after, end, &data).await?;
        after = end;
    }
    Ok(())
}

/// A run of text typed by one author in one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Span {
    /// Char positions, end exclusive.
    pub start: u64,
    pub end: u64,
    /// Who typed it; null when unknown.
    pub author: Option<String>,
    /// The version (op-log row) that typed it; null when that row was compacted away before it
    /// was indexed.
    pub version: Option<i64>,
}

/// Blame of `doc` (built as of some version): its text as spans. `authors` names clients whose
/// rows name nobody. CPU work: run it off the async threads for big documents.
pub fn blame(doc: &Doc, index: &BlameIndex, authors: &HashMap<u64, Arc<str>>) -> Vec<Span> {
    let text = doc.get_or_insert_text(TEXT_NAME);
    let mut txn = doc.transact_mut();
    let now = txn.snapshot();
    // Against an empty snapshot every visible item counts as added, so each chunk comes with
    // its item's id.
    let chunks = text.diff_range(
        &mut txn,
        Some(&now),
        Some(&Snapshot::default()),
        |c: YChange| c.id,
    );
    let mut spans: Vec<Span> = Vec::new();
    let mut pos = 0u64;
    let mut push = |len: u64, author: Option<&Arc<str>>, version: Option<i64>, pos: &mut u64| {
        if len == 0 {
            return;
        }
        let author = author.map(|a| a.to_string());
        match spans.last_mut() {
            Some(last) if last.author == author && last.version == version => last.end += len,
            _ => spans.push(Span {
                start: *pos,
                end: *pos + len,
                author,
                version,
            }),
        }
        *pos += len;
    };
    for chunk in chunks {
        let Out::Any(Any::String(s)) = &chunk.insert else {
            continue;
        };
        let Some(ID { client, clock }) = chunk.ychange else {
            push(s.chars().count() as u64, None, None, &mut pos);
            continue;
        };
        let client = client.get();
        let by_client = authors.get(&client);
        let mut clock = clock;
        let mut chars = s.chars().peekable();
        while chars.peek().is_some() {
            let (row, end) = match index.find(client, clock) {
                Some((row, end)) => (Some(&index.rows[row as usize]), end),
                // Not indexed: up to the next indexed range, or the rest of the item.
                None => (None, next_start(index, client, clock)),
            };
            let mut len = 0u64;
            while clock < end {
                let Some(c) = chars.next() else { break };
                clock += c.len_utf16() as u32;
                len += 1;
            }
            let author = row.and_then(|r| r.1.as_ref()).or(by_client);
            push(len, author, row.map(|r| r.0), &mut pos);
        }
    }
    spans
}

fn next_start(index: &BlameIndex, client: u64, clock: u32) -> u32 {
    index
        .clients
        .get(&client)
        .and_then(|list| list.iter().map(|r| r.0).find(|&start| start > clock))
        .unwrap_or(u32::MAX)
}

/// Blame indexes of recently asked-for documents, brought up to date on each use.
#[derive(Default)]
pub struct IndexCache {
    docs: Mutex<Vec<(String, Arc<tokio::sync::Mutex<BlameIndex>>)>>,
}

/// Documents whose index is kept.
const CACHED_DOCS: usize = 16;

impl IndexCache {
    /// Document `id`'s index, holding every row up to `version`.
    pub async fn get(
        &self,
        store: &Store,
        id: &str,
        version: i64,
    ) -> Result<tokio::sync::OwnedMutexGuard<BlameIndex>, StoreError> {
        let entry = {
            let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
            // Most recently used last.
            let entry = match docs.iter().position(|(d, _)| d == id) {
                Some(i) => docs.remove(i).1,
                None => Arc::default(),
            };
            docs.push((id.to_string(), entry.clone()));
            if docs.len() > CACHED_DOCS {
                docs.remove(0);
            }
            entry
        };
        let mut index = entry.lock_owned().await;
        if index.upto() < version {
            let started = std::time::Instant::now();
            // Segments first, in order and without gaps; then the rows after the last one.
            for (after, upto, data) in store.blame_segments(id, index.upto(), version).await? {
                if after != index.upto() {
                    continue;
                }
                if let Err(err) = index.extend_segment(&data, upto) {
                    tracing::warn!(doc = id, after, upto, %err, "blame segment skipped");
                    break;
                }
            }
            let rows = store.inserted(id, index.upto(), version).await?;
            let read = started.elapsed();
            let count = rows.len();
            index.extend(rows, version);
            tracing::debug!(
                doc = id,
                rows = count,
                read_ms = read.as_secs_f64() * 1e3,
                total_ms = started.elapsed().as_secs_f64() * 1e3,
                "blame index extended"
            );
        }
        Ok(index)
    }

    /// Forgets a document (deleted).
    pub fn forget(&self, id: &str) {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        docs.retain(|(d, _)| d != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::encoder::Encode;
    use yrs::{GetString, Options, TextRef};

    fn client(id: u64) -> (Doc, TextRef) {
        let doc = Doc::with_options(Options {
            client_id: yrs::ClientID::new(id),
            offset_kind: yrs::OffsetKind::Utf16,
            ..Options::default()
        });
        let text = doc.get_or_insert_text(TEXT_NAME);
        (doc, text)
    }

    fn row(seq: i64, author: &str, update: &[u8]) -> InsertedRow {
        let ids = Update::decode_v1(update).unwrap().insertions(true);
        InsertedRow {
            seq,
            author: Some(author.into()),
            ids: RowIds::Inserted(ids.encode_v1()),
        }
    }

    #[test]
    fn each_char_goes_to_the_row_and_author_that_typed_it() {
        let server = Doc::new();
        let (alice, at) = client(1);
        let (bob, bt) = client(2);
        let mut rows = Vec::new();
        let apply = |update: Vec<u8>, seq: i64, who: &str, rows: &mut Vec<InsertedRow>| {
            server
                .transact_mut()
                .apply_update(Update::decode_v1(&update).unwrap())
                .unwrap();
            rows.push(row(seq, who, &update));
            update
        };
        let u1 = {
            let mut t = alice.transact_mut();
            at.insert(&mut t, 0, "héllo 🌍");
            t.encode_update_v1()
        };
        let u1 = apply(u1, 1, "alice", &mut rows);
        bob.transact_mut()
            .apply_update(Update::decode_v1(&u1).unwrap())
            .unwrap();
        let u2 = {
            let mut t = bob.transact_mut();
            bt.insert(&mut t, 5, ", bob");
            t.encode_update_v1()
        };
        apply(u2, 2, "bob", &mut rows);
        // Alice types on after her own text: yrs merges her items, the rows stay apart.
        let u3 = {
            let mut t = alice.transact_mut();
            at.insert(&mut t, 0, "¡");
            t.encode_update_v1()
        };
        apply(u3, 3, "alice", &mut rows);
        let segment = encode_segment(&rows);
        let mut index = BlameIndex::default();
        index.extend(rows, 3);
        let spans = blame(&server, &index, &HashMap::new());
        // The same from a blame segment; a damaged one is refused and changes nothing.
        let mut from_segment = BlameIndex::default();
        from_segment.extend_segment(&segment, 3).unwrap();
        assert_eq!(blame(&server, &from_segment, &HashMap::new()), spans);
        let mut untouched = BlameIndex::default();
        for cut in [1, segment.len() / 2, segment.len() - 1] {
            assert!(untouched.extend_segment(&segment[..cut], 3).is_err());
        }
        assert_eq!((untouched.upto(), untouched.rows.len()), (0, 0));
        let text = server
            .get_or_insert_text(TEXT_NAME)
            .get_string(&server.transact());
        assert_eq!(text, "¡héllo, bob 🌍");
        let got: Vec<(String, &str, i64)> = spans
            .iter()
            .map(|s| {
                let part: String = text
                    .chars()
                    .skip(s.start as usize)
                    .take((s.end - s.start) as usize)
                    .collect();
                (part, s.author.as_deref().unwrap(), s.version.unwrap())
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("¡".to_string(), "alice", 3),
                ("héllo".to_string(), "alice", 1),
                (", bob".to_string(), "bob", 2),
                (" 🌍".to_string(), "alice", 1),
            ]
        );
        assert_eq!(spans.last().unwrap().end, text.chars().count() as u64);
    }

    #[test]
    fn rows_without_an_author_fall_back_to_the_client_name() {
        let server = Doc::new();
        let (carol, ct) = client(7);
        let update = {
            let mut t = carol.transact_mut();
            ct.insert(&mut t, 0, "abc");
            t.encode_update_v1()
        };
        server
            .transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        let mut index = BlameIndex::default();
        index.extend(
            vec![InsertedRow {
                seq: 1,
                author: None,
                ids: RowIds::Update(update),
            }],
            1,
        );
        let authors = HashMap::from([(7u64, Arc::from("carol"))]);
        let spans = blame(&server, &index, &authors);
        assert_eq!(
            spans,
            vec![Span {
                start: 0,
                end: 3,
                author: Some("carol".into()),
                version: Some(1)
            }]
        );
        // Not indexed at all: no version, still carol's.
        let spans = blame(&server, &BlameIndex::default(), &authors);
        assert_eq!(spans[0].version, None);
        assert_eq!(spans[0].author.as_deref(), Some("carol"));
    }

    #[test]
    fn names_are_checked_and_colours_are_stable() {
        assert_eq!(check_author("  Ada ").unwrap(), "Ada");
        assert!(check_author("").is_err());
        assert!(check_author("a\u{7}b").is_err());
        assert!(check_author(&"x".repeat(101)).is_err());
        assert_eq!(color_of("ada"), color_of("ada"));
        assert_ne!(color_of("ada"), color_of("bob"));
        assert!(color_of("ada").starts_with('#') && color_of("ada").len() == 7);
        assert_eq!(
            awareness_name(r##"{"user":{"name":"Ada","color":"#fff"},"cursor":null}"##).as_deref(),
            Some("Ada")
        );
        assert_eq!(awareness_name(r#"{"cursor":null}"#), None);
        assert_eq!(awareness_name(r#"{"user":{"name":""}}"#), None);
    }
}
