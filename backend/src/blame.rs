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
        let mut unsorted = Vec::new();
        let mut names: HashMap<String, Arc<str>> = HashMap::new();
        for row in rows {
            if row.seq <= self.upto {
                continue;
            }
            let ids = match &row.ids {
                RowIds::Inserted(bytes) => IdSet::decode_v1(bytes).ok(),
                RowIds::Update(bytes) => Update::decode_v1(bytes).ok().map(|u| u.insertions(true)),
            };
            let author = row.author.map(|a| {
                names
                    .entry(a)
                    .or_insert_with_key(|a| Arc::from(a.as_str()))
                    .clone()
            });
            let index = self.rows.len() as u32;
            self.rows.push((row.seq, author));
            let Some(ids) = ids else { continue };
            for (client, ranges) in ids.iter() {
                let list = self.clients.entry(client.get()).or_default();
                for range in ranges.iter() {
                    if list.last().is_some_and(|last| last.0 > range.start) {
                        unsorted.push(client.get());
                    }
                    list.push((range.start, range.end, index));
                }
            }
        }
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
        let mut index = BlameIndex::default();
        index.extend(rows, 3);
        let spans = blame(&server, &index, &HashMap::new());
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
